// tests/browser/admin.mjs: the admin dashboard (web/admin) in headless
// Chromium (Debian's chromium, puppeteer-core 24.x), for
// tests/integration/test_admin_dashboard.c, which starts the fleet, makes
// the data (users, a delivered mail, dead letters, two admin accounts),
// runs this once and checks Redis and the webhook receiver afterwards.
//
// Environment: CHROMIUM, BASE (http://127.0.0.1:<api port>), SHOTS (the
// directory for one PNG per view), ADMIN_USER/ADMIN_PASSWORD (signs in),
// LOCK_USER/LOCK_PASSWORD (an account locked by wrong passwords), LOCK_SEC
// (how long the lock lasts), NODES (ids the fleet page must list, comma
// separated), DRAIN_NODE (the watcher drained from the page), OTHER_WATCHER,
// USERS_TOTAL (users the other watcher must hold after the drain), USER_UID
// and USER_EMAIL (a user with a delivered event), DEAD_ID (a dead letter
// replayed from the deliveries page), DEAD_DELETE_ID (one deleted there),
// DEAD_USER_UID and DEAD_USER_ID (a user and its dead letter, replayed from
// the user's page), PARTNER_NAME (the partner created), HOOK_URL (its
// new-mail URL).
//
// Prints one JSON line with what the pages showed; exits 1 with the reason
// on anything unexpected, including a page error or a Content-Security-
// Policy violation.
//
// SPDX-License-Identifier: MIT
import puppeteer from 'puppeteer-core';

const env = process.env;
const TIMEOUT = 20000;
const out = {shots: []};
const problems = [];

const browser = await puppeteer.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});

function step(text) {
    console.error(`step: ${text}`);
}

function must(cond, what) {
    if (!cond)
        throw new Error(what);
}

async function newPage(context) {
    const page = await (context || browser).newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.setViewport({width: 1280, height: 800});
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
        const t = m.text();
        if (/Content Security Policy|Refused to/i.test(t))
            problems.push(`CSP: ${t}`);
        if (m.type() === 'error')
            console.error(`console: ${t}`);
    });
    page.on('response', (res) => {
        const u = new URL(res.url());
        if (res.status() >= 400)
            console.error(`response: ${res.status()} ${u.pathname}`);
    });
    page.on('dialog', (d) => {
        problems.push(`unexpected browser dialog: ${d.message()}`);
        d.dismiss();
    });
    return page;
}

async function shot(page, name) {
    await page.screenshot({path: `${env.SHOTS}/${name}.png`, fullPage: true});
    out.shots.push(name);
}

// Opens hash route r of the dashboard and waits until its view is drawn.
async function view(page, r) {
    await page.evaluate((h) => {
        delete document.body.dataset.loaded;
        if (location.hash === h)
            window.dispatchEvent(new HashChangeEvent('hashchange'));
        else
            location.hash = h;
    }, r);
    await page.waitForFunction((h) => document.body.dataset.loaded === h.slice(1), {}, r);
    const err = await page.$('#view-error');
    if (err)
        throw new Error(`${r}: ${await err.evaluate((e) => e.textContent)}`);
}

// The data-<key> of the rows matching selector on route r and on each next
// page after it, a list per page.
async function pages(page, r, selector, key) {
    await view(page, r);
    const all = [];
    for (;;) {
        all.push(await page.$$eval(selector, (rows, k) => rows.map((x) => x.dataset[k]), key));
        if (!(await page.$('#next-page')) || all.length === 20)
            return all;
        const before = await page.evaluate(() => document.body.dataset.loaded);
        await page.click('#next-page');
        await page.waitForFunction((b) => (document.body.dataset.loaded || b) !== b, {}, before);
    }
}

// Clicks selector, then the page dialog's Confirm.
async function clickConfirmed(page, selector) {
    await page.click(selector);
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm-yes');
    await page.waitForFunction(() => !document.querySelector('#confirm[open]'));
}

async function text(page, selector) {
    return page.$eval(selector, (e) => e.textContent.trim());
}

// Submits the sign-in form; returns the page's error text ('' when none).
async function signIn(page, user, password) {
    await page.goto(`${env.BASE}/admin/login`, {waitUntil: 'load'});
    await page.type('input[name=username]', user);
    await page.type('input[name=password]', password);
    await Promise.all([page.waitForNavigation({waitUntil: 'load'}), page.keyboard.press('Enter')]);
    const e = await page.$('#login-error');
    return e ? (await e.evaluate((x) => x.textContent)).trim() : '';
}

async function main() {
    const page = await newPage();

    step('an unsigned visit lands on the sign-in page');
    await page.goto(`${env.BASE}/admin/`, {waitUntil: 'load'});
    must(new URL(page.url()).pathname === '/admin/login', `/admin/ without a session ended at ${page.url()}`);
    await shot(page, 'login');

    step('sign in');
    const err = await signIn(page, env.ADMIN_USER, env.ADMIN_PASSWORD);
    must(err === '', `sign-in refused: ${err}`);
    must(new URL(page.url()).pathname === '/admin/', `signed in at ${page.url()}`);
    await page.waitForFunction(() => document.body.dataset.loaded === '/fleet');
    out.whoami = await text(page, '#whoami');

    step('the fleet lists the nodes');
    for (const id of env.NODES.split(','))
        await page.waitForSelector(`tr[data-node-id="${id}"]`);
    out.fleet_nodes = await page.$$eval('tr[data-node-id]', (rows) => rows.map((r) => r.dataset.nodeId));
    // Every user held by a watcher, once their heartbeats tell (the page
    // refreshes itself every 5 s).
    await page.waitForFunction((n) => [...document.querySelectorAll('rect[data-bar]')]
        .reduce((sum, r) => sum + Number(r.dataset.users), 0) === n,
    {timeout: 30000, polling: 500}, Number(env.USERS_TOTAL));
    out.fleet_users = await page.$$eval('rect[data-bar]', (bars) =>
        Object.fromEntries(bars.map((b) => [b.dataset.bar, Number(b.dataset.users)])));
    await shot(page, 'fleet');

    step('create a partner, its key shown once');
    await view(page, '#/partners');
    await page.click('details summary');
    await page.type('#partner-create input[name=name]', env.PARTNER_NAME);
    await page.type('#partner-create input[name=new_mail_webhook_url]', env.HOOK_URL);
    await page.click('#partner-create-submit');
    await page.waitForSelector('#secret-value');
    out.api_key = await text(page, '#secret-value');
    out.webhook_secret = await text(page, '#secret-webhook');
    await shot(page, 'partner-created');
    await page.click('#partner-open');
    await page.waitForFunction(() => /^\/partners\/\d+$/.test(document.body.dataset.loaded || ''));
    out.partner_id = Number((await page.evaluate(() => location.hash)).split('/')[2]);
    const body = await page.evaluate(() => document.body.innerText);
    out.key_shown_again = body.includes(out.api_key) || body.includes(out.webhook_secret);
    await shot(page, 'partner');
    await view(page, `#/partners?q=${encodeURIComponent(env.PARTNER_NAME.slice(0, 4).toLowerCase())}`);
    out.partner_found = (await page.$(`tr[data-partner-id="${out.partner_id}"]`)) !== null;
    await shot(page, 'partners');

    step('partners a page at a time');
    out.partner_pages = await pages(page, '#/partners?limit=1', 'tr[data-partner-id]', 'partnerId');

    step('edit the partner, rotate its key and secret');
    await view(page, `#/partners/${out.partner_id}`);
    await page.$eval('#partner-edit input[name=retry_schedule]', (e) => { e.value = '5,30,120'; });
    await page.$eval('#partner-edit input[name=webhook_concurrency]', (e) => { e.value = '4'; });
    await page.click('#partner-edit button');
    await page.waitForFunction(() => document.getElementById('flash').textContent === 'Saved.');
    out.edited_schedule = await page.$eval('#partner-edit input[name=retry_schedule]', (e) => e.value);
    await page.select('form[data-rotate=api_key] select', '0');
    await clickConfirmed(page, 'form[data-rotate=api_key] button');
    await page.waitForSelector('#secret-value');
    out.rotated_key = await text(page, '#secret-value');
    const keyStatus = (key) => page.evaluate(async (k) =>
        (await fetch('/api/v2/connections', {headers: {'x-api-key': k}})).status, key);
    out.old_key_status = await keyStatus(out.api_key);
    out.new_key_status = await keyStatus(out.rotated_key);
    await page.select('form[data-rotate=webhook_secret] select', '3600');
    await clickConfirmed(page, 'form[data-rotate=webhook_secret] button');
    await page.waitForFunction(() => document.querySelector('#secret-value')?.textContent.startsWith('whsec_'));
    out.rotated_secret = await text(page, '#secret-value');
    out.rotated_secret_note = await text(page, '#new-secret p');
    await shot(page, 'partner-rotated');
    await clickConfirmed(page, '#partner-delete');
    await page.waitForFunction(() => document.body.dataset.loaded === '/partners');
    out.partner_deleted_listed = (await page.$(`tr[data-partner-id="${out.partner_id}"]`)) !== null;

    step('providers: create, edit, delete');
    await view(page, '#/providers');
    await page.waitForSelector('tr[data-provider]');
    await page.click('details summary');
    await page.type('#provider-create input[name=code]', 'DASHP');
    await page.type('#provider-create input[name=imap_host]', 'imap.example.net');
    await page.type('#provider-create input[name=imap_port]', '993');
    await page.click('#provider-create button.primary');
    await page.waitForSelector('tr[data-provider="DASHP"]');
    await shot(page, 'providers');
    await page.click('tr[data-provider="DASHP"] button:not(.danger)');
    await page.$eval('#provider-edit input[name=imap_port]', (e) => { e.value = '1993'; });
    await page.click('#provider-edit button.primary');
    await page.waitForFunction(() => document.querySelector('tr[data-provider="DASHP"]')?.textContent.includes(':1993'));
    out.provider_edited = await text(page, 'tr[data-provider="DASHP"] td:nth-child(2)');
    await clickConfirmed(page, 'button[data-delete-provider="DASHP"]');
    await page.waitForFunction(() => !document.querySelector('tr[data-provider="DASHP"]'));

    step('users a page at a time');
    out.user_pages = await pages(page, `#/users?by=email&limit=${Number(env.USERS_TOTAL) - 2}`, 'tr[data-uid]', 'uid');

    step('find the user by email, its state and delivered event');
    await view(page, `#/users?q=${encodeURIComponent(env.USER_EMAIL.slice(0, 6))}&by=email`);
    await page.waitForSelector(`tr[data-uid="${env.USER_UID}"]`);
    await shot(page, 'users');
    await page.click(`tr[data-uid="${env.USER_UID}"] a`);
    await page.waitForFunction((u) => document.body.dataset.loaded === `/users/${u}`, {}, env.USER_UID);
    out.user_state = await text(page, '#user-state');
    out.user_mailboxes = await text(page, '#user-mailboxes');
    out.user_mailboxes_missing = await text(page, '#user-mailboxes-missing');
    out.user_events = await page.$$eval('tr.event', (rows) => rows.map((r) => ({
        id: r.dataset.eventId, state: r.dataset.eventState,
        attempts: document.querySelectorAll(`tr.attempt[data-attempt-of="${r.dataset.eventId}"]`).length,
    })));
    await shot(page, 'user');

    step('archive and restore the user');
    await clickConfirmed(page, '#user-archive');
    await page.waitForFunction(() => document.querySelector('#user-archived')?.textContent === 'yes');
    out.archived_state = await text(page, '#user-state');
    await page.click('#user-restore');
    await page.waitForFunction(() => document.querySelector('#user-archived')?.textContent === 'no');
    out.restored = true;

    step('dead letters a page at a time');
    out.dead_pages = await pages(page, '#/deliveries?limit=2', 'tr[data-dead-id]', 'deadId');

    step('deliveries: the dead letters, an .eml, replay, delete');
    await view(page, '#/deliveries');
    for (const id of [env.DEAD_ID, env.DEAD_DELETE_ID, env.DEAD_USER_ID])
        await page.waitForSelector(`tr[data-dead-id="${id}"]`);
    await shot(page, 'deliveries');
    const eml = await page.$eval(`a[data-eml="${env.DEAD_ID}"]`, async (a) => {
        const r = await fetch(a.href);
        return {status: r.status, type: r.headers.get('content-type'),
            disposition: r.headers.get('content-disposition'), text: await r.text()};
    });
    out.eml_status = eml.status;
    out.eml_type = eml.type;
    out.eml_disposition = eml.disposition;
    out.eml_subject = (/^Subject: (.*)$/m.exec(eml.text) || [, ''])[1].trim();
    await page.click(`button[data-replay="${env.DEAD_ID}"]`);
    await page.waitForFunction((id) => !document.querySelector(`tr[data-dead-id="${id}"]`), {}, env.DEAD_ID);
    out.replayed = env.DEAD_ID;
    await clickConfirmed(page, `button[data-delete-dead="${env.DEAD_DELETE_ID}"]`);
    await page.waitForFunction((id) => !document.querySelector(`tr[data-dead-id="${id}"]`), {}, env.DEAD_DELETE_ID);
    out.deleted = env.DEAD_DELETE_ID;

    step("a user's failed delivery: why, and replay from its page");
    await view(page, `#/users/${env.DEAD_USER_UID}`);
    const dead = `tr.event[data-event-id="${env.DEAD_USER_ID}"]`;
    out.dead_user_event_state = await page.$eval(dead, (r) => r.dataset.eventState);
    out.dead_user_attempts = await page.$$eval(`tr.attempt[data-attempt-of="${env.DEAD_USER_ID}"]`,
        (rows) => rows.map((r) => r.textContent));
    await page.click(`${dead} button[data-replay]`);
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.eventState !== 'dead', {}, dead);
    out.dead_user_replayed_state = await page.$eval(dead, (r) => r.dataset.eventState);

    step('charts');
    await view(page, '#/charts?minutes=60');
    out.chart_delivered = Number(await page.$eval('#chart-webhooks', (e) => e.dataset.sumDelivered));
    out.chart_mail = Number(await page.$eval('#chart-mail', (e) => e.dataset.sumMail));
    await shot(page, 'charts');

    step('admin accounts: create, disable, enable, delete');
    await view(page, '#/admins');
    await page.waitForSelector(`tr[data-admin="${env.ADMIN_USER}"]`);
    await page.type('#admin-create input[name=username]', 'temp-admin');
    await page.type('#admin-create input[name=password]', 'a passphrase of some length');
    await page.click('#admin-create button');
    await page.waitForSelector('tr[data-admin="temp-admin"]');
    await clickConfirmed(page, 'button[data-toggle-admin="temp-admin"]');
    await page.waitForFunction(() => document.querySelector('tr[data-admin="temp-admin"]')?.textContent.includes('disabled'));
    await shot(page, 'admins');
    await page.click('button[data-toggle-admin="temp-admin"]');
    await page.waitForFunction(() => document.querySelector('tr[data-admin="temp-admin"] .badge')?.textContent === 'active');
    await clickConfirmed(page, 'button[data-delete-admin="temp-admin"]');
    await page.waitForFunction(() => !document.querySelector('tr[data-admin="temp-admin"]'));
    out.temp_admin_deleted = true;

    step('a request without the CSRF token is refused');
    const csrf = await page.evaluate(async (hook) => {
        const r = await fetch('/admin/api/partners', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({name: 'csrf-probe', new_mail_webhook_url: hook})});
        let code = null;
        try {
            code = (await r.json()).error.code;
        } catch (e) {
            code = null;
        }
        return {status: r.status, code};
    }, env.HOOK_URL);
    out.csrf_status = csrf.status;
    out.csrf_code = csrf.code;

    step('drain a watcher from the fleet page');
    await view(page, '#/fleet');
    await clickConfirmed(page, `#drain-${env.DRAIN_NODE}`);
    await page.waitForFunction((d, o, n) => {
        const row = document.querySelector(`tr[data-node-id="${d}"]`);
        const bar = document.querySelector(`rect[data-bar="${o}"]`);
        return (!row || row.querySelector('[data-state=draining],[data-state=drain_requested]')) &&
            bar && Number(bar.dataset.users) === n;
    }, {timeout: 60000, polling: 500}, env.DRAIN_NODE, env.OTHER_WATCHER, Number(env.USERS_TOTAL));
    out.drained = true;
    await shot(page, 'fleet-drained');

    step('an unattended fleet page stops refreshing itself; input resumes it');
    let fleetCalls = 0;
    const countFleet = (req) => {
        if (new URL(req.url()).pathname === '/admin/api/fleet')
            fleetCalls++;
    };
    page.on('request', countFleet);
    // Eleven minutes without input, as the page's clock sees it.
    await page.evaluate(() => {
        const real = Date.now.bind(Date);
        Date.now = () => real() + 11 * 60 * 1000;
    });
    // Two refresh periods and more: at most the refresh already under way.
    await new Promise((resolve) => setTimeout(resolve, 11000));
    out.idle_fleet_requests = fleetCalls;
    const resumed = page.waitForRequest((req) => new URL(req.url()).pathname === '/admin/api/fleet',
        {timeout: 10000});
    await page.keyboard.press('Shift');
    await resumed;
    out.resumed_on_input = true;
    page.off('request', countFleet);

    step('five wrong passwords lock the account');
    const ctx = await browser.createBrowserContext();
    const lp = await newPage(ctx);
    out.wrong = [];
    for (let i = 0; i < 5; i++)
        out.wrong.push(await signIn(lp, env.LOCK_USER, `${env.LOCK_PASSWORD}-wrong`));
    out.unknown_user = await signIn(lp, 'nobody-here', `${env.LOCK_PASSWORD}-wrong`);
    const lockedAt = Date.now();
    out.locked = await signIn(lp, env.LOCK_USER, env.LOCK_PASSWORD);
    out.locked_path = new URL(lp.url()).pathname;
    await shot(lp, 'login-locked');
    if (Number(env.LOCK_SEC) > 0) {
        step('the lock ends');
        const deadline = lockedAt + (Number(env.LOCK_SEC) + 20) * 1000;
        let e = out.locked;
        while (e !== '' && Date.now() < deadline) {
            await lp.waitForNetworkIdle({idleTime: 1000});
            e = await signIn(lp, env.LOCK_USER, env.LOCK_PASSWORD);
        }
        out.unlocked_after_ms = e === '' ? Date.now() - lockedAt : null;
    }
    await ctx.close();

    step('sign out');
    await Promise.all([page.waitForNavigation({waitUntil: 'load'}), page.click('#sign-out')]);
    out.after_sign_out = new URL(page.url()).pathname;
    await page.goto(`${env.BASE}/admin/`, {waitUntil: 'load'});
    out.revisit = new URL(page.url()).pathname;
    out.session_status = await page.evaluate(async () => (await fetch('/admin/api/session')).status);
}

try {
    await main();
    must(problems.length === 0, problems.join('\n'));
} catch (e) {
    console.error(`browser test failed: ${e.stack || e}`);
    for (const p of problems)
        console.error(p);
    console.error(`so far: ${JSON.stringify(out)}`);
    await browser.close();
    process.exit(1);
}
await browser.close();
console.log(JSON.stringify(out));
