// Live scanning on the https portal: headless Chromium (playwright-core) in a phone's
// namespace, trusting the test certificate's key, with a fake camera that films a voucher's QR
// code (a Y4M file). Run by tests/portal_https.rs, which passes:
//   UPSTREAM_URL  a page on the "internet" (redirected to the portal while unpaid)
//   PORTAL_URL    the https portal, e.g. https://wifi.cafe-test.example
//   PORTAL_ADDR   the address its name resolves to (10.20.0.1)
//   SPKI          base64 SHA-256 of the certificate's public key (what Chromium trusts)
//   CAMERA_Y4M    the fake camera's video
//   ARTIFACTS     where screenshots go
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} must be set (run through tests/portal_https.rs)`);
  return v;
};

let browser;
after(async () => { await browser?.close(); });

async function launch(camera) {
  const portal = new URL(env('PORTAL_URL'));
  const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--host-resolver-rules=MAP ${portal.hostname} ${env('PORTAL_ADDR')}`,
    `--ignore-certificate-errors-spki-list=${env('SPKI')}`];
  if (camera) {
    args.push('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-video-capture=${env('CAMERA_Y4M')}`);
  }
  return chromium.launch({ executablePath: '/usr/bin/chromium', args });
}

test('without a camera the scan button stays hidden and the photo field remains', { timeout: 60000 }, async () => {
  browser = await launch(false);
  const page = await (await browser.newContext()).newPage();
  // Headless Chromium without a fake device has no camera: getUserMedia fails, the button goes.
  await page.goto(env('PORTAL_URL') + '/');
  await page.waitForSelector('#photo-box', { state: 'visible' });
  const scan = await page.$('#scan');
  if (await scan.isVisible()) {
    await scan.click();
    await page.waitForSelector('#scan-box', { state: 'hidden', timeout: 5000 });
  }
  assert.equal(await page.isVisible('#photo-button'), true);
  assert.equal(await page.isVisible('#code'), true);
  await browser.close();
  browser = undefined;
});

test('a phone scans the voucher live with its camera on the https portal and gets online', { timeout: 90000 }, async () => {
  browser = await launch(true);
  const ctx = await browser.newContext({
    viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: 'en-US',
  });
  const page = await ctx.newPage();
  await page.goto(env('UPSTREAM_URL'));
  assert.equal(new URL(page.url()).origin, env('PORTAL_URL'), 'redirected to the https portal');
  assert.equal(await page.evaluate(() => window.isSecureContext), true);
  await page.waitForSelector('#scan', { state: 'visible' });
  await page.screenshot({ path: `${env('ARTIFACTS')}/https-portal.png`, fullPage: true });
  const t0 = Date.now();
  await page.click('#scan');
  await page.waitForSelector('#online', { timeout: 30000 });
  console.log(`# scanned live and online in ${Date.now() - t0} ms`);
  await page.screenshot({ path: `${env('ARTIFACTS')}/https-scanned.png`, fullPage: true });
  await browser.close();
  browser = undefined;
});
