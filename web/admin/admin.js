// web/admin/admin.js: the admin dashboard, one page served by superimap-api
// at /admin/ (README "Admin dashboard: the pages"). Plain JavaScript, no build step, no
// library: every view is built with DOM calls (text is always set as text,
// never parsed as HTML) from the admin JSON API under /admin/api, and the
// charts are SVG drawn here. Hash routes: #/fleet, #/partners,
// #/partners/<id>, #/providers, #/users, #/users/<uid>, #/deliveries,
// #/charts, #/admins.
//
// The session cookie is HttpOnly: the CSRF token comes from
// GET /admin/api/session and goes with every request that changes something
// (header X-CSRF-Token). A 401 sends the browser to the sign-in page.
//
// Elements the browser test (tests/browser/admin.mjs) finds have stable ids
// or data attributes: data-node-id, #drain-<node>, data-uid, #user-state,
// data-event-id, data-dead-id, data-admin, #secret-value.
//
// SPDX-License-Identifier: MIT
'use strict';

const session = {username: '', csrf: ''};
let refreshTimer = null;
// The fleet page refreshes itself only while someone uses the page: each
// refresh is a request that renews the session's idle end, so an
// unattended tab would otherwise never be signed out.
const REFRESH_IDLE_MS = 10 * 60 * 1000;
let lastInput = Date.now();
let notice = null; // said once the next view is drawn (after a move to it)

// ---- DOM and formatting ----

// h('tag.class#id', {attr: value, onclick: fn}, child, ...): an element.
function h(spec, attrs, ...children) {
    const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/.exec(spec);
    const el = document.createElement(m[1]);
    for (const part of m[2].match(/[.#][\w-]+/g) || []) {
        if (part[0] === '.')
            el.classList.add(part.slice(1));
        else
            el.id = part.slice(1);
    }
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false)
            continue;
        if (k.startsWith('on'))
            el.addEventListener(k.slice(2), v);
        else if (k === 'value')
            el.value = v;
        else
            el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const c of children.flat(Infinity)) {
        if (c === null || c === undefined || c === false)
            continue;
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
}

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {}))
        el.setAttribute(k, String(v));
    append(el, children);
    return el;
}

// A time from the API (ISO text, or ms since the epoch) as "2025-01-31 12:00:00".
function when(v) {
    if (v === null || v === undefined || v === '' || v === 0)
        return '—';
    const d = new Date(v);
    if (isNaN(d))
        return String(v);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

function ago(ms) {
    if (ms === null || ms === undefined)
        return '—';
    if (ms < 1000)
        return `${ms} ms ago`;
    if (ms < 120000)
        return `${Math.round(ms / 1000)} s ago`;
    if (ms < 7200000)
        return `${Math.round(ms / 60000)} min ago`;
    return `${Math.round(ms / 3600000)} h ago`;
}

function num(v) {
    return v === null || v === undefined ? '—' : Number(v).toLocaleString('en');
}

function table(headers, rows, cls) {
    return h('div.scroll', {}, h('table' + (cls ? '.' + cls : ''), {},
        h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td.muted', {colspan: headers.length}, 'None.')))));
}

// A label coloured by kind (default: the text itself) through admin.css.
function badge(text, kind) {
    return h('span.badge.' + String(kind || text).replace(/[^\w-]/g, '_'), {}, text);
}

function flash(text, kind) {
    const f = document.getElementById('flash');
    f.textContent = text;
    f.className = 'flash ' + (kind || 'ok');
}

function clearFlash() {
    const f = document.getElementById('flash');
    f.textContent = '';
    f.className = 'flash hidden';
}

// Asks text in the page's dialog; resolves true when confirmed.
function confirmed(text) {
    const d = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    return new Promise((resolve) => {
        d.addEventListener('close', () => resolve(d.returnValue === 'yes'), {once: true});
        d.returnValue = '';
        d.showModal();
    });
}

// ---- API ----

class ApiError extends Error {
    constructor(status, body) {
        const e = body && body.error;
        super(e ? `${e.message || e.code}${e.field ? ' (' + e.field + ')' : ''}` : `HTTP ${status}`);
        this.status = status;
    }
}

// method path [json body] -> the parsed answer (null for 204); throws
// ApiError. A 401 leaves for the sign-in page.
async function api(method, path, body) {
    const headers = {Accept: 'application/json'};
    if (method !== 'GET' && method !== 'HEAD')
        headers['X-CSRF-Token'] = session.csrf;
    if (body !== undefined)
        headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
        method, headers, credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
        location.assign('/admin/login');
        throw new ApiError(401, null);
    }
    const text = await res.text();
    let json = null;
    try {
        json = text ? JSON.parse(text) : null;
    } catch {
        json = null; // not JSON (a proxy's error page): the status says enough
    }
    if (!res.ok)
        throw new ApiError(res.status, json);
    return json;
}

function qs(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params))
        if (v !== undefined && v !== null && v !== '')
            p.set(k, v);
    const t = p.toString();
    return t ? '?' + t : '';
}

// Runs fn (an async action of a button) and shows its error, if any.
async function act(fn) {
    try {
        clearFlash();
        await fn();
    } catch (e) {
        if (e.status !== 401)
            flash(e.message, 'error');
    }
}

// The fields of form as an object: text as typed, numbers for type=number,
// empty fields left out unless keepEmpty.
function formData(form, keepEmpty) {
    const out = {};
    for (const el of form.elements) {
        if (!el.name || el.type === 'submit')
            continue;
        if (el.value === '' && !keepEmpty)
            continue;
        out[el.name] = el.type === 'number' && el.value !== '' ? Number(el.value) : el.value;
    }
    return out;
}

function field(label, name, attrs) {
    return h('label', {}, h('span', {}, label), h('input', Object.assign({name}, attrs || {})));
}

function select(label, name, options, value) {
    return h('label', {}, h('span', {}, label),
        h('select', {name}, options.map(([v, t]) => h('option', {value: v, selected: v === value}, t))));
}

// The edit form (h() spec) of record rec with fields: on submit, PATCHes
// path with the fields that differ from rec, redraws the view and says done.
function editForm(spec, rec, path, fields, done) {
    return h(spec, {
        onsubmit: (e) => {
            e.preventDefault();
            act(async () => {
                const changed = {};
                for (const [k, v] of Object.entries(formData(e.target, true)))
                    if (String(v) !== String(rec[k] ?? ''))
                        changed[k] = v;
                if (!Object.keys(changed).length)
                    return flash('Nothing changed.');
                await api('PATCH', path, changed);
                await route();
                flash(done);
            });
        },
    }, fields, h('button.primary', {}, 'Save'));
}

// The one-time secret box: value shown once, with what it is.
function secretBox(title, value, note) {
    return h('div.secret#new-secret', {},
        h('strong', {}, title),
        h('code#secret-value', {}, value),
        h('p.muted', {}, note || 'Copy it now: it is not shown again.'));
}

// ---- Fleet ----

// Users per watcher as horizontal bars (SVG) on one scale, the largest
// watcher's users; a capacity inside that scale is drawn as a tick.
function watcherBars(watchers) {
    const W = 640, row = 26, left = 110;
    const max = Math.max(1, ...watchers.map((n) => n.users || 0));
    const svg = s('svg', {class: 'bars', viewBox: `0 0 ${W} ${row * watchers.length + 8}`,
        width: W, height: row * watchers.length + 8, role: 'img', 'aria-label': 'users per watcher'});
    watchers.forEach((n, i) => {
        const y = 4 + i * row, users = n.users || 0, cap = n.capacity || 0;
        const w = Math.max(users ? 2 : 0, ((W - left - 120) * users) / max);
        svg.append(s('text', {x: 0, y: y + 15, class: 'label'}, n.id));
        svg.append(s('rect', {x: left, y: y + 3, width: W - left - 120, height: 16, class: 'track'}));
        svg.append(s('rect', {x: left, y: y + 3, width: w, height: 16,
            class: cap && users > cap ? 'bar over' : 'bar', 'data-bar': n.id, 'data-users': users}));
        if (cap && cap <= max) {
            const cx = left + ((W - left - 120) * cap) / max;
            svg.append(s('line', {x1: cx, x2: cx, y1: y, y2: y + 22, class: 'cap'}));
        }
        svg.append(s('text', {x: W - 112, y: y + 15, class: 'label'},
            `${num(users)} / ${cap ? num(cap) : '—'}`));
    });
    return svg;
}

async function viewFleet(view) {
    const f = await api('GET', '/admin/api/fleet');
    const order = {api: 0, watcher: 1, dispatcher: 2};
    const nodes = (f.nodes || []).slice().sort((a, b) =>
        (order[a.role] ?? 3) - (order[b.role] ?? 3) || a.id.localeCompare(b.id));
    const watchers = nodes.filter((n) => n.role === 'watcher');
    const rows = nodes.map((n) => {
        const draining = n.draining || n.state === 'draining';
        const held = n.role === 'watcher' ? `${num(n.users)} users, ${num(n.sessions)} sessions`
            : n.role === 'dispatcher' ? `${num(n.shards)} shards` : '—';
        const canDrain = n.role !== 'api' && !draining && !n.drain_requested;
        return h('tr', {'data-node-id': n.id, 'data-role': n.role},
            h('td', {}, n.role),
            h('td.mono', {}, n.id),
            h('td', {}, n.version || '—'),
            h('td', {}, when(n.started_at)),
            h('td', {}, ago(n.heartbeat_age_ms)),
            h('td', {}, n.capacity === undefined ? '—' : num(n.capacity)),
            h('td', {}, held),
            h('td', {'data-state': draining ? 'draining' : n.drain_requested ? 'drain_requested' : 'active'},
                draining ? badge('draining') : n.drain_requested ? badge('drain requested', 'draining')
                    : badge(n.state || 'active', 'active')),
            h('td', {}, canDrain ? h('button.danger#drain-' + n.id, {
                onclick: () => act(async () => {
                    if (!await confirmed(`Drain ${n.role} ${n.id}? It finishes its work, hands it over and exits, as on SIGTERM.`))
                        return;
                    await api('POST', `/admin/api/fleet/${encodeURIComponent(n.id)}/drain`);
                    flash(`Drain of ${n.id} requested: it starts at its next heartbeat.`);
                    await route();
                }),
            }, 'Drain') : ''));
    });
    const counts = f.counts || {};
    view.replaceChildren(
        h('h1', {}, 'Fleet'),
        h('div.cards', {},
            card('Watchers', num(counts.watcher)), card('Dispatchers', num(counts.dispatcher)),
            card('APIs', num(counts.api)), card('Users', num(f.users_total), 'users-total'),
            card('Unassigned', num(f.users_unassigned), 'users-unassigned', f.users_unassigned > 0),
            card('Over capacity', num(f.users_over_capacity), 'users-over-capacity', f.users_over_capacity > 0)),
        table(['role', 'id', 'version', 'started', 'last heartbeat', 'capacity', 'holds', 'state', ''], rows, 'nodes'),
        h('h2', {}, 'Users per watcher'),
        watchers.length ? watcherBars(watchers) : h('p.muted', {}, 'No watcher is running.'),
        h('p.muted', {}, 'Bars: the users each watcher holds, on the scale of the busiest; after the slash, its capacity. Refreshed every 5 s while the page is in use (not after 10 minutes without input, so that an unattended session still ends).'));
    refreshTimer = setTimeout(() => {
        if (Date.now() - lastInput < REFRESH_IDLE_MS)
            route(true);
    }, 5000);
}

function card(title, value, id, warn) {
    return h('div.card' + (warn ? '.warn' : ''), id ? {id} : {}, h('span', {}, title), h('strong', {}, value));
}

// ---- Partners ----

const PARTNER_URLS = [
    ['new_mail_webhook_url', 'New mail webhook URL'],
    ['user_connected_webhook_url', 'User connected webhook URL'],
    ['user_disconnected_webhook_url', 'User disconnected webhook URL'],
    ['user_reauth_required_webhook_url', 'Re-auth required webhook URL'],
    ['success_url', 'Connect success URL'],
    ['failure_url', 'Connect failure URL'],
];

function partnerFields(p) {
    return [
        field('Name', 'name', {value: p.name || '', required: true, maxlength: 200}),
        PARTNER_URLS.map(([k, t]) => field(t, k, {value: p[k] || '', type: 'url'})),
        field('Retry schedule (seconds)', 'retry_schedule', {value: p.retry_schedule || '', placeholder: 'e.g. 5,30,120'}),
        field('Webhook concurrency', 'webhook_concurrency', {value: p.webhook_concurrency || '', type: 'number', min: 1, max: 1000}),
    ];
}

// Partners page: a search by name prefix and pages (50, or ?limit=) through
// the cursors kept in the hash's query (#/partners?q=&cursor=).
async function viewPartners(view, params) {
    const q = params.get('q') || '', cursor = params.get('cursor') || '', limit = params.get('limit') || '';
    const res = await api('GET', '/admin/api/partners' + qs({q, cursor, limit: limit || 50}));
    const list = res.partners || [];
    const next = res.next_cursor;
    const rows = list.map((p) => h('tr', {'data-partner-id': p.id},
        h('td', {}, p.id),
        h('td', {}, h('a', {href: `#/partners/${p.id}`}, p.name)),
        h('td.mono.clip', {}, p.new_mail_webhook_url || '—'),
        h('td', {}, when(p.created_at))));
    const search = h('form.inline#partner-search', {
        onsubmit: (e) => {
            e.preventDefault();
            location.hash = '#/partners' + qs({q: e.target.q.value});
        },
    }, h('input', {name: 'q', value: q, placeholder: 'name starts with…', type: 'search'}), h('button', {}, 'Search'));
    const create = h('form.grid#partner-create', {
        onsubmit: (e) => {
            e.preventDefault();
            act(async () => {
                const p = await api('POST', '/admin/api/partners', formData(e.target));
                view.replaceChildren(h('h1', {}, `Partner ${p.name} created`),
                    h('div.secret#new-secret', {},
                        h('strong', {}, 'API key'), h('code#secret-value', {}, p.api_key),
                        h('strong', {}, 'Webhook secret'), h('code#secret-webhook', {}, p.webhook_secret),
                        h('p.muted', {}, 'Copy them now: they are not shown again.')),
                    h('p', {}, h('a#partner-open', {href: `#/partners/${p.id}`}, 'Open the partner'),
                        ' · ', h('a', {href: '#/partners'}, 'All partners')));
            });
        },
    }, partnerFields({}), h('button.primary#partner-create-submit', {}, 'Create partner'));
    view.replaceChildren(
        h('h1', {}, 'Partners'), search,
        table(['id', 'name', 'new mail webhook', 'created'], rows, 'partners'),
        pager('#/partners', {q, limit}, cursor, next),
        h('details', {}, h('summary', {}, 'New partner'), create));
}

// "Next" to the page after cursor (and back to the first).
function pager(base, params, cursor, next) {
    return h('p.pager', {},
        cursor ? h('a', {href: base + qs(params)}, '« First page') : '',
        cursor && next ? ' · ' : '',
        next ? h('a#next-page', {href: base + qs(Object.assign({}, params, {cursor: next}))}, 'Next page »') : '');
}

const GRACES = [['0', 'none: the old one stops now'], ['3600', '1 hour'], ['86400', '1 day'],
    ['604800', '7 days'], ['2592000', '30 days']];

async function viewPartner(view, id) {
    const p = await api('GET', `/admin/api/partners/${encodeURIComponent(id)}`);
    const edit = editForm('form.grid#partner-edit', p, `/admin/api/partners/${p.id}`, partnerFields(p), 'Saved.');
    const rotate = (what, path, label) => h('form.inline.rotate', {
        'data-rotate': what,
        onsubmit: (e) => {
            e.preventDefault();
            act(async () => {
                const grace = Number(e.target.grace_seconds.value);
                if (!await confirmed(`Rotate the ${label} of ${p.name}? ${grace ? 'The old one keeps working for the grace chosen.' : 'The old one stops working now.'}`))
                    return;
                const r = await api('POST', `/admin/api/partners/${p.id}/${path}`, {grace_seconds: grace});
                const until = r[`previous_${what}_valid_until`];
                document.getElementById('rotated').replaceChildren(secretBox(`New ${label}`, r[what],
                    `Copy it now: it is not shown again. ${until ? 'The previous one works until ' + when(until) + '.' : 'The previous one no longer works.'}`));
            });
        },
    }, h('span', {}, `Rotate the ${label}, keeping the old one for`),
    h('select', {name: 'grace_seconds'}, GRACES.map(([v, t]) => h('option', {value: v, selected: v === '86400'}, t))),
    h('button', {}, 'Rotate'));
    view.replaceChildren(
        h('p', {}, h('a', {href: '#/partners'}, '« Partners')),
        h('h1', {}, `${p.name} `, h('span.muted', {}, `#${p.id}`)),
        h('dl.facts', {},
            h('dt', {}, 'Created'), h('dd', {}, when(p.created_at)),
            h('dt', {}, 'Updated'), h('dd', {}, when(p.updated_at)),
            h('dt', {}, 'Previous API key valid until'), h('dd', {}, when(p.previous_api_key_valid_until)),
            h('dt', {}, 'Previous webhook secret valid until'), h('dd', {}, when(p.previous_webhook_secret_valid_until))),
        h('h2', {}, 'Settings'), edit,
        h('h2', {}, 'Credentials'),
        rotate('api_key', 'rotate-key', 'API key'),
        rotate('webhook_secret', 'rotate-webhook-secret', 'webhook secret'),
        h('div#rotated'),
        h('h2', {}, 'Delete'),
        h('p', {}, h('button.danger#partner-delete', {
            onclick: () => act(async () => {
                if (!await confirmed(`Delete partner ${p.name} with its connections, users and queued events? This cannot be undone.`))
                    return;
                await api('DELETE', `/admin/api/partners/${p.id}`);
                notice = `Partner ${p.name} deleted.`;
                location.hash = '#/partners';
            }),
        }, 'Delete partner')));
}

// ---- Providers ----

function providerFields(p, creating) {
    return [
        field('Code', 'code', {value: p.code || '', required: creating, disabled: !creating, maxlength: 64}),
        creating ? select('Preset', 'preset', [['', 'none'], ['gmail', 'Gmail'], ['microsoft', 'Microsoft']], '') : '',
        field('IMAP host', 'imap_host', {value: p.imap_host || ''}),
        field('IMAP port', 'imap_port', {value: p.imap_port || '', type: 'number', min: 1, max: 65535}),
        select('TLS', 'tls', [['implicit', 'implicit'], ['starttls', 'STARTTLS'], ['none', 'none']], p.tls || 'implicit'),
        select('Auth', 'auth', [['plain', 'plain'], ['oauth2', 'OAuth2']], p.auth || 'plain'),
        field('Max connections (0: no limit)', 'max_connections', {value: p.max_connections === undefined ? '' : p.max_connections, type: 'number', min: 0}),
        field('OAuth2 authorize URL', 'oauth2_authorize_url', {value: p.oauth2_authorize_url || '', type: 'url'}),
        field('OAuth2 token URL', 'oauth2_token_url', {value: p.oauth2_token_url || '', type: 'url'}),
        field('OAuth2 scope', 'oauth2_scope', {value: p.oauth2_scope || ''}),
        field('SMTP host (tracer mail)', 'smtp_host', {value: p.smtp_host || ''}),
        field('SMTP port', 'smtp_port', {value: p.smtp_port || '', type: 'number', min: 1, max: 65535}),
    ];
}

async function viewProviders(view) {
    const providers = await api('GET', '/admin/api/providers');
    const editor = h('div#provider-editor');
    const rows = providers.map((p) => h('tr', {'data-provider': p.code},
        h('td.mono', {}, p.code), h('td', {}, `${p.imap_host}:${p.imap_port}`), h('td', {}, p.tls),
        h('td', {}, p.auth), h('td', {}, num(p.connections_count)),
        h('td', {}, h('button', {onclick: () => editProvider(editor, p)}, 'Edit'), ' ',
            h('button.danger', {
                'data-delete-provider': p.code,
                onclick: () => act(async () => {
                    if (!await confirmed(`Delete provider ${p.code}?`))
                        return;
                    await api('DELETE', `/admin/api/providers/${encodeURIComponent(p.code)}`);
                    await route();
                    flash(`Provider ${p.code} deleted.`);
                }),
            }, 'Delete'))));
    const create = h('form.grid#provider-create', {
        onsubmit: (e) => {
            e.preventDefault();
            act(async () => {
                const p = await api('POST', '/admin/api/providers', formData(e.target));
                await route();
                flash(`Provider ${p.code} created.`);
            });
        },
    }, providerFields({}, true), h('button.primary', {}, 'Create provider'));
    view.replaceChildren(h('h1', {}, 'Providers'),
        table(['code', 'IMAP server', 'TLS', 'auth', 'connections', ''], rows, 'providers'),
        editor, h('details', {}, h('summary', {}, 'New provider'), create));
}

function editProvider(editor, p) {
    const form = editForm('form.grid#provider-edit', p, `/admin/api/providers/${encodeURIComponent(p.code)}`,
        providerFields(p, false), `Provider ${p.code} saved.`);
    editor.replaceChildren(h('h2', {}, `Edit ${p.code}`), form);
}

// ---- Users ----

// Users across partners by email, tag or login prefix, 50 a page (or ?limit=).
async function viewUsers(view, params) {
    const q = params.get('q') || '', by = params.get('by') || 'email', cursor = params.get('cursor') || '';
    const limit = params.get('limit') || '';
    const res = await api('GET', '/admin/api/users' + qs({q, by, cursor, limit: limit || 50}));
    const rows = (res.users || []).map((u) => h('tr', {'data-uid': u.uid},
        h('td', {}, h('a', {href: `#/users/${encodeURIComponent(u.uid)}`}, u.email || u.tag)),
        h('td', {}, u.tag), h('td', {}, u.username || '—'),
        h('td', {}, u.partner_name || u.partner_id), h('td', {}, u.provider),
        h('td', {}, badge(u.archived ? 'archived' : u.state)),
        h('td.clip', {}, u.last_error || '')));
    view.replaceChildren(h('h1', {}, 'Users'),
        h('form.inline#user-search', {
            onsubmit: (e) => {
                e.preventDefault();
                location.hash = '#/users' + qs({q: e.target.q.value, by: e.target.by.value});
            },
        }, h('input', {name: 'q', value: q, type: 'search', placeholder: 'starts with…', autofocus: true}),
        h('select', {name: 'by'}, [['email', 'email'], ['tag', 'tag'], ['login', 'login']].map(([v, t]) =>
            h('option', {value: v, selected: v === by}, t))),
        h('button', {}, 'Search')),
        table(['email', 'tag', 'login', 'partner', 'provider', 'state', 'last error'], rows, 'users'),
        pager('#/users', {q, by, limit}, cursor, res.next_cursor));
}

async function viewUser(view, uid) {
    const res = await api('GET', `/admin/api/users/${encodeURIComponent(uid)}`);
    const u = res.user;
    const action = (what) => h('button' + (what === 'archive' ? '.danger' : '.primary') + '#user-' + what, {
        onclick: () => act(async () => {
            if (what === 'archive' && !await confirmed(`Archive ${u.email || u.tag}? Its watcher logs out and ${u.partner_name} gets user_disconnected.`))
                return;
            await api('POST', `/admin/api/users/${encodeURIComponent(uid)}/${what}`);
            await route();
            flash(what === 'archive' ? 'User archived.' : 'User restored.');
        }),
    }, what === 'archive' ? 'Archive' : 'Restore');
    const events = (res.events || []).map((e) => [
        h('tr.event', {'data-event-id': e.id, 'data-event-state': e.state},
            h('td.mono', {}, e.id), h('td', {}, e.type), h('td', {}, badge(e.state)),
            h('td', {}, num(e.attempts)), h('td', {}, e.last_status || '—'),
            h('td.clip', {}, e.last_error || ''), h('td', {}, when(e.created_at)),
            h('td', {}, e.state === 'dead' ? h('button.primary', {
                'data-replay': e.id,
                onclick: () => act(async () => {
                    await api('POST', `/admin/api/dead-letters/${encodeURIComponent(e.id)}/replay`);
                    await route();
                    flash(`Event ${e.id} queued again.`);
                }),
            }, 'Replay') : '')),
        (e.attempts_log || []).map((a) => h('tr.attempt', {'data-attempt-of': e.id},
            h('td', {}, `↳ attempt ${a.attempt}`), h('td', {}, a.result), h('td', {}, badge(a.status || '—', a.result)),
            h('td', {}, a.latency_ms === undefined ? '—' : `${num(a.latency_ms)} ms`), h('td', {}, ''),
            h('td.clip', {}, a.error || ''), h('td', {}, when(a.at)), h('td', {}, ''))),
    ]);
    view.replaceChildren(
        h('p', {}, h('a', {href: '#/users'}, '« Users')),
        h('h1', {}, u.email || u.tag, ' ', badge(u.archived ? 'archived' : 'live')),
        h('dl.facts', {},
            h('dt', {}, 'State'), h('dd#user-state', {'data-state': u.state || 'idle'}, u.state || 'idle'),
            h('dt', {}, 'Last error'), h('dd#user-last-error', {}, u.last_error || '—'),
            h('dt', {}, 'Last login'), h('dd', {}, when(u.last_login_at)),
            h('dt', {}, 'Last mail'), h('dd', {}, when(u.last_email_at)),
            h('dt', {}, 'Connected'), h('dd', {}, when(u.connected_at)),
            h('dt', {}, 'Watched by'), h('dd#user-lease', {}, u.lease || '—'),
            h('dt', {}, 'Mailboxes'), h('dd#user-mailboxes', {}, (u.mailboxes || ['INBOX']).join(', ')),
            h('dt', {}, 'Not found'), h('dd#user-mailboxes-missing', {}, (u.mailboxes_missing || []).join(', ') || '—'),
            h('dt', {}, 'Archived'), h('dd#user-archived', {}, u.archived ? 'yes' : 'no'),
            h('dt', {}, 'Partner'), h('dd', {}, h('a', {href: `#/partners/${u.partner_id}`}, u.partner_name || u.partner_id)),
            h('dt', {}, 'Provider'), h('dd', {}, u.provider || '—'),
            h('dt', {}, 'Tag'), h('dd', {}, u.tag),
            h('dt', {}, 'Login'), h('dd', {}, u.username || '—'),
            h('dt', {}, 'Created'), h('dd', {}, when(u.created_at)),
            h('dt', {}, 'uid'), h('dd.mono', {}, u.uid)),
        h('p', {}, u.archived ? action('restore') : action('archive')),
        h('h2', {}, 'Recent events'),
        table(['event', 'type', 'state', 'attempts', 'last status', 'last error', 'created', ''], events.flat(2), 'events'));
}

// ---- Deliveries ----

// Deliveries; dead letters 100 a page (or ?limit=), older pages by
// #/deliveries?before=<ms>&after=<id>.
async function viewDeliveries(view, params) {
    const before = params.get('before') || '', after = params.get('after') || '', limit = params.get('limit') || '';
    const [queues, circuits, dead] = await Promise.all([
        api('GET', '/admin/api/queues'),
        api('GET', '/admin/api/circuits').catch((e) => ({error: e})),
        api('GET', '/admin/api/dead-letters' + qs({limit: limit || 100, before, after})),
    ]);
    const t = queues.totals || {};
    const partnerRows = (queues.partners || []).map((p) => h('tr', {'data-queue-partner': p.partner_id},
        h('td', {}, h('a', {href: `#/partners/${p.partner_id}`}, p.partner_id)),
        h('td', {}, num(p.ready)), h('td', {}, num(p.retry)), h('td', {}, when(p.oldest_at))));
    const circuitRows = (circuits.circuits || []).map((c) => h('tr', {'data-circuit': c.url},
        h('td.mono.clip', {}, c.url), h('td', {}, badge(c.state)), h('td', {}, num(c.failures)),
        h('td', {}, when(c.opened_at)), h('td', {}, when(c.until)), h('td', {}, c.node || '—'),
        h('td', {}, when(c.updated_at))));
    const deadRows = (dead.dead_letters || []).map((d) => {
        const e = d.event;
        return h('tr', {'data-dead-id': e.id},
            h('td.mono', {}, e.id), h('td', {}, e.type), h('td', {}, e.user_tag || '—'),
            h('td', {}, h('a', {href: `#/partners/${d.partner_id}`}, d.partner_id)),
            h('td', {}, num(e.attempts)), h('td', {}, e.last_status || '—'), h('td.clip', {}, e.last_error || ''),
            h('td', {}, when(d.died_at)),
            h('td.actions', {},
                h('button.primary', {
                    'data-replay': e.id,
                    onclick: () => act(async () => {
                        await api('POST', `/admin/api/dead-letters/${encodeURIComponent(e.id)}/replay`);
                        await route();
                        flash(`Event ${e.id} queued again.`);
                    }),
                }, 'Replay'), ' ',
                e.type === 'new_mail' ? h('a.button', {href: `/admin/api/dead-letters/${encodeURIComponent(e.id)}/eml`,
                    download: `${e.id}.eml`, 'data-eml': e.id}, '.eml') : '', ' ',
                h('button.danger', {
                    'data-delete-dead': e.id,
                    onclick: () => act(async () => {
                        if (!await confirmed(`Delete dead letter ${e.id}? It is never delivered then.`))
                            return;
                        await api('DELETE', `/admin/api/dead-letters/${encodeURIComponent(e.id)}`);
                        await route();
                        flash(`Dead letter ${e.id} deleted.`);
                    }),
                }, 'Delete')));
    });
    view.replaceChildren(h('h1', {}, 'Deliveries'),
        h('div.cards', {}, card('Ready', num(t.ready)), card('In flight', num(t.inflight)),
            card('Retrying', num(t.retry)), card('Dead', num(t.dead), 'dead-total', t.dead > 0),
            card('Oldest ready', t.oldest_ready_age_ms ? ago(t.oldest_ready_age_ms).replace(' ago', '') : '—')),
        h('h2', {}, 'Queues by partner'),
        table(['partner', 'ready', 'retrying', 'oldest waiting'], partnerRows, 'queues'),
        queues.partners_complete === false ? h('p.muted', {}, 'Retry sets too large to read whole: the retry counts and oldest times are of their first part.') : '',
        h('h2', {}, 'Circuits'),
        circuits.error ? h('p.muted', {}, `Circuits are not available: ${circuits.error.message}`)
            : table(['URL', 'state', 'failures', 'opened', 'until', 'node', 'changed'], circuitRows, 'circuits'),
        h('h2', {}, 'Dead letters'),
        table(['event', 'type', 'user', 'partner', 'attempts', 'last status', 'last error', 'died', ''], deadRows, 'dead'),
        h('p.pager', {},
            before ? h('a', {href: '#/deliveries' + qs({limit})}, '« Newest') : '',
            before && dead.next_before ? ' · ' : '',
            dead.next_before ? h('a#next-page', {href: '#/deliveries' + qs({limit, before: dead.next_before, after: dead.next_after})}, 'Older dead letters »') : ''));
}

// ---- Charts ----

// A line chart of series [{name, cls, values}] over times ts (ms).
function lineChart(id, title, ts, series, unit) {
    const W = 900, H = 220, L = 56, R = 16, T = 24, B = 28;
    const all = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
    const top = niceMax(Math.max(1, ...all));
    const x = (i) => L + ((W - L - R) * i) / Math.max(1, ts.length - 1);
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const totals = {};
    const svg = s('svg', {class: 'chart', id: 'chart-' + id, 'data-chart': id,
        viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': title});
    svg.append(s('text', {x: L, y: 14, class: 'title'}, title));
    for (let k = 0; k <= 4; k++) {
        const v = (top * k) / 4;
        svg.append(s('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid'}));
        svg.append(s('text', {x: L - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end'},
            `${Number(v.toFixed(2))}${unit || ''}`));
    }
    const step = Math.max(1, Math.ceil(ts.length / 8));
    for (let i = 0; i < ts.length; i += step)
        svg.append(s('text', {x: x(i), y: H - 8, class: 'axis', 'text-anchor': 'middle'},
            new Date(ts[i]).toISOString().slice(11, 16)));
    series.forEach((ser, j) => {
        let d = '', pen = false, sum = 0;
        const none = (v) => v === null || v === undefined;
        ser.values.forEach((v, i) => {
            if (none(v)) {
                pen = false;
                return;
            }
            sum += v;
            d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
            pen = true;
            if (none(ser.values[i - 1]) && none(ser.values[i + 1])) /* a lone minute: a dot */
                svg.append(s('circle', {cx: x(i), cy: y(v), r: 2.5, class: 'dot ' + ser.cls}));
        });
        totals[ser.name] = sum;
        svg.append(s('path', {d: d || 'M0,0', class: 'line ' + ser.cls, 'data-series': ser.name}));
        svg.append(s('rect', {x: W - R - 150, y: 6 + j * 14, width: 10, height: 10, class: 'key ' + ser.cls}));
        svg.append(s('text', {x: W - R - 134, y: 15 + j * 14, class: 'axis'}, ser.name));
    });
    for (const [k, v] of Object.entries(totals))
        svg.setAttribute('data-sum-' + k, String(Math.round(v)));
    return svg;
}

function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10])
        if (v <= m * p)
            return m * p;
    return 10 * p;
}

async function viewCharts(view, params) {
    const minutes = params.get('minutes') || '360';
    const res = await api('GET', '/admin/api/stats' + qs({minutes}));
    const m = res.minutes || [];
    const ts = m.map((r) => r.t);
    view.replaceChildren(h('h1', {}, 'Charts'),
        h('form.inline#chart-range', {},
            h('span', {}, 'Last'),
            h('select', {name: 'minutes', onchange: (e) => { location.hash = '#/charts' + qs({minutes: e.target.value}); }},
                [['60', '1 hour'], ['360', '6 hours'], ['1440', '24 hours'], ['2880', '48 hours']].map(([v, t]) =>
                    h('option', {value: v, selected: v === minutes}, t)))),
        lineChart('mail', 'New mail per minute', ts, [{name: 'mail', cls: 's1', values: m.map((r) => r.mail)}]),
        lineChart('webhooks', 'Webhooks per minute', ts, [
            {name: 'delivered', cls: 's2', values: m.map((r) => r.delivered)},
            {name: 'failed', cls: 's3', values: m.map((r) => r.failed)}]),
        lineChart('latency', 'Delivery latency', ts, [
            {name: 'p50', cls: 's1', values: m.map((r) => r.p50_ms)},
            {name: 'p99', cls: 's3', values: m.map((r) => r.p99_ms)}], ' ms'));
}

// ---- Admin accounts ----

async function viewAdmins(view) {
    const res = await api('GET', '/admin/api/admin-users');
    const rows = (res.admin_users || []).map((a) => {
        const name = encodeURIComponent(a.username);
        return h('tr', {'data-admin': a.username},
            h('td', {}, a.username, a.username === session.username ? h('span.muted', {}, ' (you)') : ''),
            h('td', {}, a.disabled ? badge('disabled') : badge('active')),
            h('td', {}, when(a.created_at)), h('td', {}, when(a.last_login_at)),
            h('td.actions', {},
                h('button', {
                    'data-toggle-admin': a.username,
                    onclick: () => act(async () => {
                        if (!a.disabled && !await confirmed(`Disable ${a.username}? Its sessions end now.`))
                            return;
                        await api('POST', `/admin/api/admin-users/${name}/${a.disabled ? 'enable' : 'disable'}`);
                        await route();
                    }),
                }, a.disabled ? 'Enable' : 'Disable'), ' ',
                h('button.danger', {
                    'data-delete-admin': a.username,
                    onclick: () => act(async () => {
                        if (!await confirmed(`Delete the admin account ${a.username}?`))
                            return;
                        await api('DELETE', `/admin/api/admin-users/${name}`);
                        await route();
                    }),
                }, 'Delete')));
    });
    view.replaceChildren(h('h1', {}, 'Admin accounts'),
        table(['username', 'state', 'created', 'last sign-in', ''], rows, 'admins'),
        h('h2', {}, 'New account'),
        h('form.grid#admin-create', {
            onsubmit: (e) => {
                e.preventDefault();
                act(async () => {
                    await api('POST', '/admin/api/admin-users', formData(e.target));
                    await route();
                    flash('Account created.');
                });
            },
        }, field('Username', 'username', {required: true, maxlength: 64, pattern: '[A-Za-z0-9._@-]+', autocomplete: 'off'}),
        field('Password (12 characters or more)', 'password', {type: 'password', required: true, minlength: 12, autocomplete: 'new-password'}),
        h('button.primary', {}, 'Create account')));
}

// ---- Routing ----

const ROUTES = [
    [/^\/fleet$/, 'fleet', viewFleet],
    [/^\/partners$/, 'partners', viewPartners],
    [/^\/partners\/(\d+)$/, 'partners', viewPartner],
    [/^\/providers$/, 'providers', viewProviders],
    [/^\/users$/, 'users', viewUsers],
    [/^\/users\/([^/]+)$/, 'users', viewUser],
    [/^\/deliveries$/, 'deliveries', viewDeliveries],
    [/^\/charts$/, 'charts', viewCharts],
    [/^\/admins$/, 'admins', viewAdmins],
];

// Draws the view of the hash; quiet (a timed refresh) keeps the flash.
async function route(quiet) {
    clearTimeout(refreshTimer);
    const raw = location.hash.replace(/^#/, '') || '/fleet';
    const [path, query] = raw.split('?');
    const view = document.getElementById('view');
    const hit = ROUTES.find(([re]) => re.test(path));
    if (!hit) {
        location.hash = '#/fleet';
        return;
    }
    const [re, nav, fn] = hit;
    for (const a of document.querySelectorAll('#nav a'))
        a.classList.toggle('active', a.dataset.nav === nav);
    const m = re.exec(path);
    const arg = m[1] !== undefined ? decodeURIComponent(m[1]) : new URLSearchParams(query || '');
    if (!quiet)
        clearFlash();
    try {
        await fn(view, arg, new URLSearchParams(query || ''));
        if (notice !== null)
            flash(notice);
        notice = null;
        document.body.dataset.view = nav;
        document.body.dataset.loaded = raw;
    } catch (e) {
        if (e.status === 401)
            return;
        view.replaceChildren(h('h1', {}, 'Not available'), h('p.error#view-error', {}, e.message));
        document.body.dataset.loaded = raw;
    }
}

async function start() {
    try {
        const me = await api('GET', '/admin/api/session');
        session.username = me.username;
        session.csrf = me.csrf_token;
    } catch (e) {
        if (e.status !== 401)
            flash(`The session could not be read: ${e.message}`, 'error');
        return;
    }
    document.getElementById('whoami').textContent = session.username;
    document.getElementById('csrf-field').value = session.csrf;
    window.addEventListener('hashchange', () => route());
    for (const ev of ['keydown', 'pointerdown', 'wheel', 'focus'])
        window.addEventListener(ev, () => {
            const idle = Date.now() - lastInput >= REFRESH_IDLE_MS;
            lastInput = Date.now();
            if (idle && document.body.dataset.view === 'fleet')
                route(true); /* back from idle: the fleet refreshes again */
        });
    await route();
}

start();
