// A customer's phone, played by headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) inside the lab's client namespace. Run by tests/e2e.rs, which sets up the
// lab, starts wifiposd and issues the vouchers; it passes them in environment variables:
//   UPSTREAM_URL  a page on the "internet" (redirected to the portal while unpaid)
//   PORTAL_URL    the portal, e.g. http://10.20.0.1:2050
//   PHOTO_PNG     a photo of a printed voucher (rotated, noisy)
//   TOKEN_PASTE   a voucher token to paste
//   TOKEN_LINK    a voucher token to open as /v/<token>
//   TOKEN_FORGED  a forged token
//   ARTIFACTS     where screenshots go
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} must be set (run through tests/e2e.rs)`);
  return v;
};

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => { await browser?.close(); });

async function phone() {
  const ctx = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true,
    locale: 'en-US',
  });
  return ctx.newPage();
}

test('an unpaid phone opening any site lands on the portal, and a photo of the voucher gets it online', async () => {
  const page = await phone();
  await page.goto(env('UPSTREAM_URL'));
  assert.equal(new URL(page.url()).origin, new URL(env('PORTAL_URL')).origin, 'redirected to the portal');
  await page.waitForSelector('#photo-box', { state: 'visible' });
  assert.match(await page.textContent('h1'), /Welcome/);
  await page.screenshot({ path: `${env('ARTIFACTS')}/portal.png`, fullPage: true });
  // The photo button is a real button: a tap opens the camera / file picker.
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.click('#photo-button')]);
  await chooser.setFiles(env('PHOTO_PNG'));
  await page.waitForSelector('#online', { timeout: 15000 });
  assert.match(await page.textContent('#devices'), /1 \/ 3/);
  await page.screenshot({ path: `${env('ARTIFACTS')}/success.png`, fullPage: true });
  // Online now: the same site comes from the internet, not the portal. (A fresh browser
  // context: Chromium may hold a pre-connected socket that conntrack still maps to the portal.)
  const fresh = await phone();
  await fresh.goto(env('UPSTREAM_URL'));
  assert.match(await fresh.textContent('body'), /The internet/);
});

test('pasting a code and opening a voucher link both redeem', async () => {
  const page = await phone();
  await page.goto(env('PORTAL_URL') + '/');
  await page.fill('#code', `  ${env('TOKEN_PASTE')}  `);
  await page.click('button[type=submit]');
  await page.waitForSelector('#online');
  await page.goto(`${env('PORTAL_URL')}/v/${env('TOKEN_LINK')}`);
  await page.waitForSelector('#online');
  assert.match(await page.textContent('#left'), /h|min/);
});

test('a forged voucher gets a refusal page that says why', async () => {
  const page = await phone();
  await page.goto(env('PORTAL_URL') + '/');
  await page.fill('#code', env('TOKEN_FORGED'));
  await page.click('button[type=submit]');
  await page.waitForSelector('#refused');
  assert.equal(await page.getAttribute('#refused', 'data-reason'), 'bad_signature');
  assert.match(await page.textContent('#refused'), /not genuine/);
  await page.screenshot({ path: `${env('ARTIFACTS')}/refused.png`, fullPage: true });
});

test('the portal works with JavaScript off (typed code)', async () => {
  const ctx = await browser.newContext({ javaScriptEnabled: false });
  const page = await ctx.newPage();
  await page.goto(env('PORTAL_URL') + '/');
  assert.equal(await page.isVisible('#photo-box'), false, 'photo button hidden without JS');
  await page.fill('#code', 'not-a-voucher');
  await page.click('button[type=submit]');
  await page.waitForSelector('#refused');
  assert.equal(await page.getAttribute('#refused', 'data-reason'), 'malformed');
});
