// tests/browser/connect.mjs: the connect pages in a real browser, for
// tests/integration/test_api_connect.c (which sets up the api, the test
// OAuth2 provider, fake-imapd and the users, and checks Redis afterwards)
// and tests/integration/test_system_oauth2.c (a whole fleet, one step of
// the chain per run). Headless Chromium (Debian's chromium) driven by
// puppeteer-core 24.x.
//
// Environment: CHROMIUM (the browser), API_PORT (where connect.test:80 is
// mapped), MODE, and per mode:
//   (unset)  OAUTH_LINK, DENY_LINK (connect links of OAuth2 users),
//            PLAIN_LINK (a PLAIN user's), PLAIN_USER, PLAIN_PASSWORD; prints
//            {"oauth": <URL the consent ended at>, "deny": <URL>,
//            "plain_error": <the form's error text after a wrong password>,
//            "plain_saved_after_error": <URL after it>, "plain": <URL after
//            the right password>}
//   consent  LINK (a connect link), EMAIL (typed at the consent page, which
//            is allowed); prints {"url": <where the browser ended>}
//   visit    LINK (a disconnect link); prints {"url": <where it ended>}
// The partner's pages (https://partner.test/...) are answered here, never
// fetched. One JSON line on stdout; exits 1 with the reason on anything
// unexpected.
//
// SPDX-License-Identifier: MIT
import puppeteer from 'puppeteer-core';

const env = process.env;
const TIMEOUT = 20000;

const browser = await puppeteer.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
        '--no-sandbox',
        '--disable-dev-shm-usage',
        '--disable-gpu',
        `--host-resolver-rules=MAP connect.test:80 127.0.0.1:${env.API_PORT}`,
    ],
});

async function newPage() {
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.setRequestInterception(true);
    page.on('requestfailed', (req) => {
        const u = new URL(req.url());
        console.error(`request failed: ${u.origin}${u.pathname} ${req.failure()?.errorText}`);
    });
    page.on('response', (res) => {
        const u = new URL(res.url());
        console.error(`response: ${res.status()} ${u.origin}${u.pathname}`);
    });
    page.on('request', (req) => {
        if (req.url().startsWith('https://partner.test/'))
            req.respond({status: 200, contentType: 'text/html', body: '<p id="landed">partner</p>'});
        else
            req.continue();
    });
    return page;
}

// Clicks selector and waits for the navigation it starts to settle on url
// prefix want.
async function clickTo(page, selector, want) {
    await Promise.all([
        page.waitForNavigation({waitUntil: 'load'}),
        page.click(selector),
    ]);
    if (want !== undefined && !page.url().startsWith(want))
        await page.waitForFunction((w) => location.href.startsWith(w), {}, want);
    return page.url();
}

async function consent(link, decision, email = 'browser@example.com') {
    const page = await newPage();
    await page.goto(link, {waitUntil: 'load'});
    await page.waitForSelector('#allow');
    await page.$eval('#email', (e) => { e.value = ''; });
    await page.type('#email', email);
    const url = await clickTo(page, decision === 'allow' ? '#allow' : '#deny', 'https://partner.test/');
    await page.close();
    return url;
}

async function plain() {
    const page = await newPage();
    await page.goto(env.PLAIN_LINK, {waitUntil: 'load'});
    await page.waitForSelector('#connect');
    await page.$eval('#username', (e) => { e.value = ''; });
    await page.type('#username', env.PLAIN_USER);
    await page.type('#password', 'not-the-password');
    await clickTo(page, '#connect');
    const error = await page.$eval('#error', (e) => e.textContent);
    const afterError = page.url();
    await page.$eval('#password', (e) => { e.value = ''; });
    await page.type('#password', env.PLAIN_PASSWORD);
    const url = await clickTo(page, '#connect', 'https://partner.test/');
    await page.close();
    return {error, afterError, url};
}

// Opens link and waits until the redirects it starts end at the partner.
async function visit(link) {
    const page = await newPage();
    await page.goto(link, {waitUntil: 'load'});
    if (!page.url().startsWith('https://partner.test/'))
        await page.waitForFunction(() => location.href.startsWith('https://partner.test/'));
    const url = page.url();
    await page.close();
    return url;
}

async function suite() {
    console.error('step: consent, allow');
    const oauth = await consent(env.OAUTH_LINK, 'allow');
    console.error('step: consent, deny');
    const deny = await consent(env.DENY_LINK, 'deny');
    console.error('step: the PLAIN form');
    const p = await plain();
    return {oauth, deny, plain_error: p.error, plain_saved_after_error: p.afterError, plain: p.url};
}

let out;
try {
    if (env.MODE === 'consent') {
        console.error('step: consent, allow');
        out = {url: await consent(env.LINK, 'allow', env.EMAIL)};
    } else if (env.MODE === 'visit') {
        console.error('step: visit');
        out = {url: await visit(env.LINK)};
    } else {
        out = await suite();
    }
} catch (e) {
    console.error(`browser test failed: ${e.stack || e}`);
    await browser.close();
    process.exit(1);
}
await browser.close();
console.log(JSON.stringify(out));
