// luci-app-wifipos in Debian's Chromium (playwright-core) with LuCI's real client side, served
// by ./server.mjs, which runs the real rpcd plugin against the lab's wifiposd and the real `uci`.
// Run by tests/luci_rpcd.rs (lab, daemon, vouchers, config directory); it passes, besides the
// server's variables: ROUTER_NS, REVOKE_NS/REVOKE_MAC (a paid phone to revoke), KEEP_NS/KEEP_MAC
// /KEEP_TOKEN (a paid phone that must stay online), CAPPED_MAC/CAPPED_URL (a phone on a voucher
// with a 500 MB cap, 2 Mbit/s down and 512 kbit/s up, that downloaded 1 MiB; SALE-C), a voucher
// whose 1 MiB ran out (SALE-U), BYTES_CASES (JSON [bytes, src/units.rs human_bytes] pairs),
// KEY_ID (the till key's id), SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { start, stop, log } from './server.mjs';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} must be set (run through tests/luci_rpcd.rs)`);
  return v;
};

let browser, base;
before(async () => {
  base = `http://127.0.0.1:${await start()}`;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});
after(async () => { await browser?.close(); stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function allowed() {
  const out = execFileSync('ip', ['netns', 'exec', env('ROUTER_NS'), 'nft', '-j', 'list', 'set', 'inet', 'wifipos', 'allowed']);
  return JSON.stringify(JSON.parse(out)).toLowerCase();
}

// HTTP status of the "internet" from a phone (0: refused or timed out).
function internet(ns) {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '3',
      'http://10.99.0.2:8080/generate_204']);
    return Number(out.toString());
  } catch {
    return 0;
  }
}

// A phone that should be online: retried, as a loaded machine can be slow to answer once.
async function online(ns) {
  for (let i = 0; i < 5; i++) {
    if (internet(ns) === 204) return true;
    await sleep(200);
  }
  return false;
}

async function until(what, cond, ms = 20000) {
  const t = Date.now();
  while (Date.now() - t < ms) {
    if (await cond()) return;
    await sleep(100);
  }
  assert.fail(`timed out waiting for ${what}`);
}

// A browser logged in through ubus `session login`, as rpcd's session object answers it.
async function login(user) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const r = await ctx.request.post(`${base}/ubus/`, {
    data: { jsonrpc: '2.0', id: 1, method: 'call',
      params: ['00000000000000000000000000000000', 'session', 'login', { username: user, password: env('PASSWORD') }] },
  });
  const [code, sess] = (await r.json()).result;
  assert.equal(code, 0, 'login accepted');
  await ctx.addCookies([{ name: 'sysauth_http', value: sess.ubus_rpc_session, url: base }]);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  return page;
}

async function open(page, name, selector) {
  await page.goto(`${base}/cgi-bin/luci/admin/services/wifipos/${name}`);
  await page.waitForSelector(selector, { timeout: 15000 });
  await page.waitForLoadState('networkidle');
}

// The row of the titled table under `root` that holds `text`: its cells' text as shown (lines
// apart) by column title.
function row(page, root, text) {
  return page.evaluate(([root, text]) => {
    const table = [...document.querySelectorAll(`${root} table`)].find((t) => t.querySelector('tr.table-titles'));
    const titles = [...table.querySelectorAll('tr.table-titles th')].map((h) => h.textContent.trim());
    const tr = [...table.querySelectorAll('tr')].find((r) => !r.classList.contains('table-titles') && r.textContent.includes(text));
    if (!tr) return null;
    const cells = [...tr.querySelectorAll('td')].map((c) => c.innerText.trim());
    return Object.fromEntries(titles.map((t, i) => [t, cells[i]]));
  }, [root, text]);
}

// "812 B", "1.40 MB", "2.31 GB" in MB.
function mb(text) {
  const m = /^(\d+(?:\.\d+)?) (B|kB|MB|GB|TB)$/.exec(text);
  assert.ok(m, `not an amount of bytes: ${text}`);
  return Number(m[1]) * { B: 1e-6, kB: 1e-3, MB: 1, GB: 1e3, TB: 1e6 }[m[2]];
}

const shot = (page, name) => page.screenshot({ path: `${env('SCREENSHOTS')}/luci-${name}.png`, fullPage: true });

test('a wrong password gets no session, and no page without one', async () => {
  const ctx = await browser.newContext();
  const r = await ctx.request.post(`${base}/ubus/`, {
    data: { jsonrpc: '2.0', id: 1, method: 'call',
      params: ['00000000000000000000000000000000', 'session', 'login', { username: 'root', password: 'wrong' }] },
  });
  assert.deepEqual((await r.json()).result, [6]);
  const p = await ctx.request.get(`${base}/cgi-bin/luci/admin/services/wifipos/devices`);
  assert.equal(p.status(), 403);
});

test('overview shows devices online, sales, the key id, firewall and clock', async () => {
  const page = await login('root');
  await open(page, 'overview', '#wifipos-overview');
  const text = await page.textContent('#wifipos-overview');
  // client, client2 and the capped client3; client4's voucher ran out of data.
  assert.match(text, /Devices online now\s*3/);
  assert.match(text, /Vouchers sold today\s*4/);
  assert.match(text, new RegExp(`Trusted till keys\\s*${env('KEY_ID')}`));
  assert.match(text, /Firewall table\s*intact/);
  assert.match(text, /Clock\s*synchronised/);
  // wifiposd doctor's banner: the router lacks the portal rule in fw4 (tests/luci_rpcd.rs).
  const doctor = await page.textContent('#wifipos-doctor');
  assert.match(doctor, /The router check found problems that keep guests out/);
  assert.match(doctor, /Blocks guests\s*firewall: fw4's zone guest refuses the portal port 2050/);
  assert.match(doctor, /Fix: .*\/usr\/libexec\/wifipos-firewall add/);
  assert.equal(await page.locator('#wifipos-doctor p[data-check]').count(), 1, 'only the firewall is flagged');
  // The menu: Services > Wi-Fi vouchers, with the five pages as tabs.
  assert.match(await page.textContent('#topmenu'), /Services/);
  assert.match(await page.textContent('#tabmenu'), /Overview.*Devices.*Vouchers.*Settings.*Events/s);
  await shot(page, 'overview');
});

test('the pages in German and Spanish, from the po files through LuCI\'s own _()', async () => {
  for (const [lang, online, tab, devices, data, speed, usedUp] of [
    ['de', 'Geräte jetzt online', 'Übersicht', 'Geräte', 'Daten (Download / Upload)', '2 Mbit/s Download, 512 kbit/s Upload', 'Datenvolumen aufgebraucht'],
    ['es', 'Dispositivos en línea ahora', 'Resumen', 'Dispositivos', 'Datos (bajada / subida)', '2 Mbit/s de bajada, 512 kbit/s de subida', 'datos agotados'],
  ]) {
    const page = await login('root');
    await page.context().addCookies([{ name: 'luci_lang', value: lang, url: base }]);
    await open(page, 'overview', '#wifipos-overview');
    assert.ok((await page.textContent('#wifipos-overview')).includes(online), lang);
    assert.ok((await page.textContent('#tabmenu')).includes(tab), lang);
    await open(page, 'devices', '#wifipos-devices');
    assert.ok((await page.textContent('#wifipos-devices h2')).includes(devices), lang);
    assert.ok((await page.textContent('#wifipos-devices table')).includes(data), lang);
    await open(page, 'vouchers', '#wifipos-vouchers');
    const t = await page.textContent('#wifipos-vouchers');
    assert.ok(t.includes(speed), `${lang}: ${speed}`);
    assert.ok(t.includes(usedUp), `${lang}: ${usedUp}`);
    // The RADIUS tab of Settings, its title and a field's description.
    await open(page, 'settings', '[id="widget.cbid.wifipos.main.venue"]');
    const [radius, secret] = { de: ['Filialkette (RADIUS)', 'Gemeinsames Geheimnis'],
      es: ['Cadena de locales (RADIUS)', 'Secreto compartido'] }[lang];
    await page.click(`text=${radius}`);
    assert.ok((await page.textContent('#maincontent')).includes(secret), `${lang}: ${secret}`);
  }
});

test('a read-only login cannot kick: buttons disabled, and the ACL refuses the call anyway', async () => {
  const page = await login('viewer');
  await open(page, 'devices', '#wifipos-devices');
  const kick = `[data-mac="${env('KEEP_MAC')}"] button[data-action=kick]`;
  assert.equal(await page.isDisabled(kick), true);
  assert.equal(await page.isDisabled(`[data-mac="${env('KEEP_MAC')}"] button[data-action=revoke]`), true);
  // Past the page: the same RPC from the browser is refused by the session's ACL.
  const answer = await page.evaluate((mac) => L.require('wifipos').then((w) => w.kick(mac))
    .then((r) => JSON.stringify(r), (e) => e.message), env('KEEP_MAC'));
  assert.match(answer, /Access denied/);
  assert.ok(allowed().includes(env('KEEP_MAC')), 'still allowed');
  assert.ok(!log.some((l) => l.method === 'kick'), 'the plugin never ran kick');
  // Reading works.
  assert.ok((await page.textContent('#wifipos-devices table')).includes(env('KEEP_MAC')));
});

test('Devices: data down / up per device, and a capped voucher\'s data of its cap', async () => {
  const page = await login('root');
  await open(page, 'devices', '#wifipos-devices');
  const capped = await row(page, '#wifipos-devices', env('CAPPED_MAC'));
  assert.ok(capped, 'the capped phone is listed');
  // It downloaded 1 MiB (iperf3 through the router) and sent little more than TCP's ACKs.
  const [mine, voucher] = capped['Data (down / up)'].split('\n');
  const [down, up] = mine.split(' / ');
  assert.ok(mb(down) >= 1.0 && mb(down) < 2, `down ${down}`);
  assert.ok(mb(up) > 0 && mb(up) < 0.5, `up ${up}`);
  // Below it, its voucher: all its devices (one here) of the cap, 500 MB as sold (477 MiB).
  const m = /^Voucher: (.+) of 500 MB$/.exec(voucher);
  assert.ok(m, voucher);
  assert.ok(mb(m[1]) >= mb(down) && mb(m[1]) < 2, voucher);
  // A voucher without a cap: the device's own data only.
  const keep = await row(page, '#wifipos-devices', env('KEEP_MAC'));
  assert.ok(!keep['Data (down / up)'].includes('\n'), keep['Data (down / up)']);
  const [kd, ku] = keep['Data (down / up)'].split(' / ');
  assert.ok(mb(kd) < 1 && mb(ku) < 1, keep['Data (down / up)']);
  // wifipos.bytes prints what the daemon's human_bytes prints, digit for digit.
  const cases = JSON.parse(env('BYTES_CASES'));
  assert.ok(cases.length > 10);
  const got = await page.evaluate((ns) => L.require('wifipos').then((w) => ns.map((n) => w.bytes(n))),
    cases.map((c) => c[0]));
  assert.deepEqual(got, cases.map((c) => c[1]));
});

test('Devices: revoking a paid phone takes it out of the kernel and its traffic stops', async () => {
  const page = await login('root');
  const mac = env('REVOKE_MAC');
  assert.ok(allowed().includes(mac));
  assert.ok(await online(env('REVOKE_NS')), 'online before');
  await open(page, 'devices', '#wifipos-devices');
  const rows = await page.textContent('#wifipos-devices table');
  assert.ok(rows.includes(mac) && rows.includes(env('KEEP_MAC')), rows);
  assert.match(rows, /SALE-R/);
  await shot(page, 'devices');
  await page.click(`[data-mac="${mac}"] button[data-action=revoke]`);
  await page.waitForSelector('.modal button[data-action=confirm]');
  assert.match(await page.textContent('.modal'), /Revoke voucher/);
  await page.click('.modal button[data-action=confirm]');
  await until('the MAC to leave the allowed set', () => !allowed().includes(mac));
  assert.equal(internet(env('REVOKE_NS')), 0, 'traffic stopped');
  assert.ok(allowed().includes(env('KEEP_MAC')), 'the other phone stays');
  assert.ok(await online(env('KEEP_NS')));
  // Extend from the same page: the duration field of the other phone's row, confirmed.
  await page.reload();
  await page.waitForSelector('#wifipos-devices');
  const keep = `[data-mac="${env('KEEP_MAC')}"]`;
  await page.fill(`${keep} input[data-field=duration]`, '1h');
  await page.click(`${keep} button[data-action=extend]`);
  assert.match(await page.textContent('.modal'), /Add 1h to voucher/);
  await page.click('.modal button[data-action=confirm]');
  // After the page reloads, the revoked phone is gone and the other has 2 h + 1 h left.
  await until('the list without the phone', async () => {
    const t = await page.textContent('#view').catch(() => '');
    return t.includes(env('KEEP_MAC')) && !t.includes(mac) && /2h 59m|3h 0m/.test(t);
  });
  assert.ok(log.some((l) => l.method === 'extend' && l.args.duration === '1h'));
});

test('Vouchers: recent vouchers and a pasted code looked up', async () => {
  const page = await login('root');
  await open(page, 'vouchers', '#wifipos-vouchers');
  const t = await page.textContent('#wifipos-vouchers');
  assert.match(t, /SALE-K/);
  assert.match(t, /revoked/);
  // Data and speed: the capped voucher with its limits, the one whose data ran out, and one
  // without limits.
  const c = await row(page, '#wifipos-vouchers', 'SALE-C');
  assert.match(c['Data'], /^\S+ MB of 500 MB$/);
  assert.ok(mb(c['Data'].split(' of ')[0]) >= 1.0);
  assert.equal(c['Speed'], '2 Mbit/s down, 512 kbit/s up');
  assert.match(c['State'], /^in use, .+ left$/);
  const u = await row(page, '#wifipos-vouchers', 'SALE-U');
  assert.equal(u['State'], 'data used up');
  const [used, cap] = u['Data'].split(' of ');
  assert.equal(cap, '1.05 MB', '1 MiB');
  assert.ok(mb(used) >= mb(cap), u['Data']);
  assert.equal(u['Speed'], '-');
  const k = await row(page, '#wifipos-vouchers', 'SALE-K');
  assert.ok(mb(k['Data']) < 1, k['Data']);
  assert.equal(k['Speed'], '-');
  await page.fill('#wifipos-code', `  ${env('KEEP_TOKEN')}  `);
  await page.click('button[data-action=lookup]');
  await page.waitForSelector('#wifipos-found');
  const found = await page.textContent('#wifipos-found');
  assert.match(found, /SALE-K/);
  assert.ok(found.includes(env('KEEP_MAC')), found);
  // The capped voucher's link: its data of the cap and its speeds.
  await page.fill('#wifipos-code', env('CAPPED_URL'));
  await page.click('button[data-action=lookup]');
  await until('the capped voucher', async () => /SALE-C/.test(await page.textContent('#wifipos-found').catch(() => '')));
  const capped = await page.textContent('#wifipos-found');
  assert.match(capped, /Data\s*\S+ MB of 500 MB/);
  assert.match(capped, /Speed\s*2 Mbit\/s down, 512 kbit\/s up/);
  assert.ok(capped.includes(env('CAPPED_MAC')), capped);
  await shot(page, 'vouchers');
});

test('Events: the log with a time filter', async () => {
  const page = await login('root');
  await open(page, 'events', '#wifipos-events');
  let t = await page.textContent('#wifipos-events');
  assert.match(t, /redeemed/);
  assert.match(t, /voucher_revoked/);
  assert.match(t, /data_used_up/);
  await page.selectOption('#wifipos-since', 'custom');
  await page.fill('#wifipos-since-custom', '9999-12-31');
  await page.click('button[data-action=show]');
  await until('an empty log', async () => /No events in this time/.test(await page.textContent('#wifipos-events')));
  await page.selectOption('#wifipos-since', '7d');
  await page.click('button[data-action=show]');
  await until('the week', async () => /redeemed/.test(await page.textContent('#wifipos-events')));
  t = await page.textContent('#wifipos-events');
  assert.match(t, /voucher_revoked/);
  await shot(page, 'events');
});

test('Settings: key ids as the router computes them; a new venue is saved, applied and shown by the portal', async () => {
  const page = await login('root');
  await open(page, 'settings', '[id="widget.cbid.wifipos.main.venue"]');
  assert.equal(await page.inputValue('[id="widget.cbid.wifipos.main.venue"]'), 'Café Test');
  // The saved key with its id; the form's key check (base64 of 32 bytes, id by SHA-256) agrees
  // with the router's and refuses what is not a key.
  assert.ok((await page.textContent('#maincontent')).includes(env('KEY_ID')));
  const ids = await page.evaluate((k) => L.require('wifipos').then((w) =>
    [w.keyId(k), w.keyId(k.slice(0, -2) + '=='), w.keyId('$(reboot)'), w.keyId(btoa('x'.repeat(31)))]), env('TRUSTED_KEY'));
  assert.deepEqual(ids, [env('KEY_ID'), null, null, null]);
  // In the form: a line that is not a key is marked and cannot be added.
  await page.click('text=Till keys');
  const add = '[id="widget.cbid.wifipos.main.trusted_key"]';
  const item = '[id="cbid.wifipos.main.trusted_key"] .item';
  const items = await page.locator(item).count();
  assert.equal(items, 1, 'the one saved key');
  await page.locator(add).pressSequentially('not-a-key');
  await until('the field marked invalid', async () => /cbi-input-invalid/.test(await page.getAttribute(add, 'class')));
  await page.press(add, 'Enter');
  assert.equal(await page.locator(item).count(), items);
  await page.fill(add, '');
  await page.click('text=Portal');
  await page.fill('[id="widget.cbid.wifipos.main.venue"]', 'Kaffeehaus Nord');
  await shot(page, 'settings');
  await page.click('.cbi-page-actions .cbi-button-apply');
  await until('the config file to hold the venue',
    () => fs.readFileSync(`${env('UCI_CONFDIR')}/wifipos`, 'utf8').includes("option venue 'Kaffeehaus Nord'"));
  assert.ok(log.some((l) => l.method === 'apply'));
  await until('the portal to show the venue', () => {
    try {
      return execFileSync('ip', ['netns', 'exec', env('KEEP_NS'), 'curl', '-s', '-m', '3', 'http://10.20.0.1:2050/'])
        .toString().includes('Kaffeehaus Nord');
    } catch { return false; }
  });
  assert.ok(await online(env('KEEP_NS')), 'the paying phone stays online through the reload');
});

test('Settings: the RADIUS tab refuses what the daemon refuses; a server and secret are saved, applied and taken by the daemon', async () => {
  const page = await login('root');
  await open(page, 'settings', '[id="widget.cbid.wifipos.main.venue"]');
  await page.click('text=Chain of venues (RADIUS)');
  const field = (o) => `[id="widget.cbid.wifipos.main.${o}"]`;
  // Typed as a person types: LuCI validates on keyup and blur, and re-checks `depends` on
  // change (when the field loses focus).
  const type = async (o, v) => {
    await page.fill(field(o), v);
    await page.press(field(o), 'End');
    await page.locator(field(o)).blur();
  };
  const invalid = async (o) => /cbi-input-invalid/.test(await page.getAttribute(field(o), 'class'));
  const config = () => fs.readFileSync(`${env('UCI_CONFDIR')}/wifipos`, 'utf8');
  assert.ok(!config().includes('radius_server'), 'no server yet');
  // No server: what needs one is hidden.
  for (const o of ['radius_server', 'radius_secret', 'radius_auth_server'])
    assert.ok(await page.isVisible(field(o)), o);
  for (const o of ['radius_interim', 'radius_nas_id', 'radius_timeout_ms', 'radius_coa_port'])
    assert.equal(await page.isVisible(field(o)), false, o);
  assert.equal(await page.getAttribute(field('radius_secret'), 'type'), 'password');
  // The server: what src/config.rs parse_radius_server refuses is refused here.
  for (const bad of ['radius.example', 'radius.example:1813', '0.0.0.0', '[::]:1813', '224.0.0.5', 'ff02::1',
    '192.0.2.5:0', '192.0.2.5:70000', '2001:db8::5]:1813', '192.0.2.5/24']) {
    await type('radius_server', bad);
    await until(`${bad} marked invalid`, () => invalid('radius_server'), 5000);
  }
  for (const good of ['192.0.2.5', '2001:db8::5', '[2001:db8::5]:1813', '192.0.2.5:1813']) {
    await type('radius_server', good);
    await until(`${good} taken`, async () => !(await invalid('radius_server')), 5000);
  }
  // A server set: interim, name and CoA port appear; the secret is now required.
  for (const o of ['radius_interim', 'radius_nas_id', 'radius_coa_port'])
    assert.ok(await page.isVisible(field(o)), o);
  assert.equal(await page.getAttribute(field('radius_interim'), 'placeholder'), '300', 'the default shown');
  assert.equal(await page.isVisible(field('radius_timeout_ms')), false, 'no timeout without an auth server');
  await until('the empty secret marked', () => invalid('radius_secret'), 5000);
  await type('radius_secret', 's'.repeat(129));
  await until('129 characters marked', () => invalid('radius_secret'), 5000);
  // The authorization server brings the timeout, within 100-10000 ms.
  await type('radius_auth_server', '192.0.2.5');
  await until('the timeout shown', () => page.isVisible(field('radius_timeout_ms')), 5000);
  for (const bad of ['50', '99', '10001', 'soon']) {
    await type('radius_timeout_ms', bad);
    await until(`timeout ${bad} marked`, () => invalid('radius_timeout_ms'), 5000);
  }
  await type('radius_interim', '59');
  await until('interim 59 marked', () => invalid('radius_interim'), 5000);
  await type('radius_coa_port', '65536');
  await until('port 65536 marked', () => invalid('radius_coa_port'), 5000);
  // Saving an invalid form writes nothing.
  const applies = log.filter((l) => l.method === 'apply').length;
  await page.click('.cbi-page-actions .cbi-button-apply');
  await until('the refusal', async () => /contains an invalid input value/.test(await page.textContent('body')), 5000);
  assert.match(await page.textContent('.modal'), /Save error/);
  await page.click('.modal button:has-text("Dismiss")');
  assert.ok(!config().includes('radius_server'), 'nothing saved');
  assert.equal(log.filter((l) => l.method === 'apply').length, applies);
  // Valid values: saved and applied.
  await type('radius_secret', 'cafe-chain-secret');
  await type('radius_timeout_ms', '2000');
  await type('radius_interim', '600');
  await type('radius_coa_port', '3799');
  for (const o of ['radius_server', 'radius_secret', 'radius_auth_server', 'radius_timeout_ms', 'radius_interim', 'radius_coa_port'])
    await until(`${o} valid`, async () => !(await invalid(o)), 5000);
  await page.click('.cbi-page-actions .cbi-button-apply');
  await until('the config file to hold the RADIUS options', () => {
    const c = config();
    return ["option radius_server '192.0.2.5:1813'", "option radius_secret 'cafe-chain-secret'",
      "option radius_auth_server '192.0.2.5'", "option radius_timeout_ms '2000'", "option radius_interim '600'",
      "option radius_coa_port '3799'"].every((l) => c.includes(l));
  });
  assert.ok(!config().includes('radius_nas_id'), 'an empty name stays unset');
  await until('the apply', () => log.filter((l) => l.method === 'apply').length > applies);
  // Opened again, the tab shows what was saved.
  await open(page, 'settings', '[id="widget.cbid.wifipos.main.venue"]');
  await page.click('text=Chain of venues (RADIUS)');
  assert.equal(await page.inputValue(field('radius_server')), '192.0.2.5:1813');
  assert.equal(await page.inputValue(field('radius_timeout_ms')), '2000');
  assert.equal(await page.getAttribute(field('radius_secret'), 'type'), 'password');
  await shot(page, 'settings-radius');
  assert.ok(await online(env('KEEP_NS')), 'the paying phone stays online through the reload');
});
