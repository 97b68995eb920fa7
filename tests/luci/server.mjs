// A stand-in for the router's uhttpd + LuCI dispatcher + rpcd, just enough for LuCI's real
// client side (luci-base's luci.js, ui.js, form.js, rpc.js, uci.js and the bootstrap theme, from
// ../shared/upstream) to run luci-app-wifipos's views:
//   /luci-static/…                        static files of luci-base, the theme and the app
//   /cgi-bin/luci/admin/services/wifipos/* the page LuCI's header.ut + view.ut render, with L.env
//   /cgi-bin/luci/admin/menu               the menu tree built from the app's menu.d JSON
//   /ubus/                                 JSON-RPC: session login/access, `luci.wifipos`
//                                          (the real rpcd plugin, run as rpcd runs it) and `uci`
//                                          (the real `uci` CLI on a real config directory)
//   /cgi-bin/luci/admin/uci/apply_*        `uci commit`, then SIGHUP to wifiposd (what procd's
//                                          reload trigger does on the router)
// Sessions: logging in as root grants the app's read and write ACL; as `viewer` only its read
// part (methods outside it are refused as rpcd refuses them).
//
// Environment: LUCI_SRC (unpacked luci tree), APP (openwrt/luci-app-wifipos), PLUGIN, UCI (the
// uci binary), UCI_CONFDIR, UCI_SAVEDIR, DAEMON_PID, PASSWORD; the plugin's own variables
// (PATH with ucode, WIFIPOSD, WIFIPOS_CONFIG) are inherited. A cookie luci_lang=de|es serves that
// po file as the page's translation table (LuCI compiles the same file into its .lmo catalog).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} must be set`);
  return v;
};
const LUCI = env('LUCI_SRC');
const APP = env('APP');
const PLUGIN = env('PLUGIN');
const UCI = env('UCI');
const CONFDIR = env('UCI_CONFDIR');
const SAVEDIR = env('UCI_SAVEDIR');
const PASSWORD = env('PASSWORD');

const roots = [
  path.join(APP, 'htdocs'),
  path.join(LUCI, 'modules/luci-base/htdocs'),
  path.join(LUCI, 'themes/luci-theme-bootstrap/htdocs'),
];
const acl = JSON.parse(fs.readFileSync(path.join(APP, 'root/usr/share/rpcd/acl.d/luci-app-wifipos.json')))['luci-app-wifipos'];
const menuD = JSON.parse(fs.readFileSync(path.join(APP, 'root/usr/share/luci/menu.d/luci-app-wifipos.json')));
const sessions = new Map(); // sid -> { user, write }
export const log = [];

function run(file, args, input) {
  return new Promise((resolve) => {
    const child = execFile(file, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

function uci(...args) {
  // -t: changes are staged in SAVEDIR (as rpcd keeps a session's) until `commit`; -P would make commit a no-op.
  return run(UCI, ['-c', CONFDIR, '-t', SAVEDIR, ...args]);
}

// `uci export` text -> rpcd's `uci get` values.
function parseExport(text) {
  const values = {};
  let cur = null, index = 0;
  const unquote = (s) => {
    let out = '', i = 0;
    while (i < s.length) {
      if (s[i] === "'") {
        const j = s.indexOf("'", i + 1);
        out += s.slice(i + 1, j);
        i = j + 1;
      } else if (s[i] === '\\') {
        out += s[i + 1];
        i += 2;
      } else {
        out += s[i++];
      }
    }
    return out;
  };
  for (const line of text.split('\n')) {
    const m = line.match(/^\s*(config|option|list)\s+(\S+)(?:\s+(.*))?$/);
    if (!m) continue;
    if (m[1] === 'config') {
      const name = m[3] ? unquote(m[3]) : `cfg${index}`;
      cur = values[name] = { '.anonymous': !m[3], '.type': unquote(m[2]), '.name': name, '.index': index++ };
    } else if (m[1] === 'option') {
      cur[m[2]] = unquote(m[3] ?? '');
    } else {
      (cur[m[2]] ??= []).push(unquote(m[3] ?? ''));
    }
  }
  return values;
}

const UBUS_DENIED = -32002;

async function ubusUci(method, a) {
  if (a.config !== 'wifipos') return [6];
  switch (method) {
    case 'get': {
      const r = await uci('export', 'wifipos');
      if (r.code) return [4];
      const values = parseExport(r.stdout);
      return [0, a.section ? { values: values[a.section] } : { values }];
    }
    case 'set': {
      for (const [k, v] of Object.entries(a.values ?? {})) {
        const key = `wifipos.${a.section}.${k}`;
        if (Array.isArray(v)) {
          await uci('delete', key);
          for (const item of v) await uci('add_list', `${key}=${item}`);
        } else {
          const r = await uci('set', `${key}=${v}`);
          if (r.code) return [2];
        }
      }
      return [0];
    }
    case 'delete': {
      const opts = a.options ?? (a.option ? [a.option] : []);
      for (const o of opts) await uci('delete', `wifipos.${a.section}.${o}`);
      return [0];
    }
    case 'changes': {
      const r = await uci('changes', 'wifipos');
      const changes = r.stdout.split('\n').filter(Boolean).map((l) => ['set', l]);
      return [0, { changes: changes.length ? { wifipos: changes } : {} }];
    }
    default:
      return [3];
  }
}

function allowed(sess, object, method) {
  const has = (part) => (acl[part]?.ubus?.[object] ?? []).includes(method);
  if (object === 'uci') return true; // the app's uci ACL: read and write on `wifipos` only
  return has('read') || (sess.write && has('write'));
}

async function ubusCall(id, params) {
  const [sid, object, method, args = {}] = params;
  if (object === 'session' && method === 'login') {
    const ok = (args.username === 'root' || args.username === 'viewer') && args.password === PASSWORD;
    if (!ok) return { jsonrpc: '2.0', id, result: [6] };
    const s = crypto.randomBytes(16).toString('hex');
    sessions.set(s, { user: args.username, write: args.username === 'root' });
    return { jsonrpc: '2.0', id, result: [0, { ubus_rpc_session: s, timeout: 300, expires: 300, data: { username: args.username } }] };
  }
  const sess = sessions.get(sid);
  if (!sess) return { jsonrpc: '2.0', id, error: { code: UBUS_DENIED, message: 'Access denied' } };
  if (object === 'session' && method === 'access') {
    return { jsonrpc: '2.0', id, result: [0, { access: args.object === 'luci.wifipos' ? allowed(sess, args.object, args.function) : true }] };
  }
  if (object === 'luci' && method === 'getFeatures') return { jsonrpc: '2.0', id, result: [0, {}] };
  if (object === 'uci') {
    if (method !== 'get' && method !== 'changes' && !sess.write) return { jsonrpc: '2.0', id, error: { code: UBUS_DENIED, message: 'Access denied' } };
    return { jsonrpc: '2.0', id, result: await ubusUci(method, args) };
  }
  if (object === 'luci.wifipos') {
    if (!allowed(sess, object, method)) return { jsonrpc: '2.0', id, error: { code: UBUS_DENIED, message: 'Access denied' } };
    // rpcd: `PLUGIN call METHOD` with the arguments on stdin, one JSON object on stdout.
    const r = await run(PLUGIN, ['call', method], JSON.stringify(args));
    log.push({ method, args, code: r.code });
    let v;
    try { v = JSON.parse(r.stdout); } catch { return { jsonrpc: '2.0', id, result: [5] }; }
    return { jsonrpc: '2.0', id, result: [0, v] };
  }
  return { jsonrpc: '2.0', id, result: [3] }; // UBUS_STATUS_NOT_FOUND
}

async function ubus(body) {
  const one = async (m) => {
    if (m.method === 'list') return { jsonrpc: '2.0', id: m.id, result: {} };
    if (m.method === 'call') return ubusCall(m.id, m.params);
    return { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Method not found' } };
  };
  return Array.isArray(body) ? Promise.all(body.map(one)) : one(body);
}

function menuTree() {
  const root = { satisfied: true, children: {} };
  const node = (parts) => {
    let n = root;
    for (const p of parts) n = (n.children ??= {})[p] ??= { satisfied: true, children: {} };
    return n;
  };
  Object.assign(node(['admin']), { title: 'Administration', order: 10, action: { type: 'firstchild' } });
  Object.assign(node(['admin', 'services']), { title: 'Services', order: 40, action: { type: 'firstchild' } });
  for (const [p, spec] of Object.entries(menuD)) {
    const n = node(p.replace(/\/$/, '').split('/'));
    Object.assign(n, spec, { satisfied: true });
    delete n.depends;
  }
  return root;
}

// A po file as msgid -> msgstr (what LuCI compiles into the .lmo catalog of luci-i18n-wifipos-*).
function po(lang) {
  const file = path.join(APP, 'po', lang, 'wifipos.po');
  if (!/^[a-z]{2}$/.test(lang) || !fs.existsSync(file)) return {};
  const out = {};
  let id = null, cur = null, which = null;
  const str = (l) => JSON.parse(l);
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('msgid ')) { if (id && cur) out[id] = cur; id = str(line.slice(6)); cur = null; which = 'id'; }
    else if (line.startsWith('msgstr ')) { cur = str(line.slice(7)); which = 'str'; }
    else if (line.startsWith('"')) { if (which === 'id') id += str(line); else cur += str(line); }
  }
  if (id && cur) out[id] = cur;
  return out;
}

function page(parts, sid, lang) {
  const spec = menuD[parts.join('/')];
  const view = spec.action.path;
  const L = {
    media: '/luci-static/bootstrap', resource: '/luci-static/resources', scriptname: '/cgi-bin/luci',
    pathinfo: '/' + parts.join('/'), documentroot: '/www', requestpath: parts, dispatchpath: parts,
    pollinterval: 5, ubuspath: '/ubus/', sessionid: sid, token: 'x'.repeat(32),
    // As LuCI's dispatcher: readonly when the login has the app's read ACL only.
    nodespec: { ...spec, satisfied: true, readonly: !sessions.get(sid).write },
    apply_rollback: 90, apply_holdoff: 1, apply_timeout: 5, apply_display: 1, rollback_token: null,
  };
  return `<!DOCTYPE html>
<html lang="${lang}"><head><meta charset="utf-8"><title>router - ${spec.title} - LuCI</title>
<meta name="viewport" content="initial-scale=1.0">
<link rel="stylesheet" href="/luci-static/bootstrap/cascade.css">
<script src="/cgi-bin/luci/admin/translations/${lang}"></script>
<script src="/luci-static/resources/cbi.js"></script>
<script>window.TR = {}; for (var k in window.PO || {}) TR[sfh(trimws(k))] = PO[k];</script></head>
<body class="lang_${lang}" data-page="${parts.join('-')}">
<header><a class="brand" href="/">router</a><ul class="nav" id="topmenu" style="display:none"></ul>
<div id="indicators" class="pull-right"></div></header>
<div id="maincontent" class="container"><div id="tabmenu" style="display:none"></div>
<script src="/luci-static/resources/promis.min.js"></script>
<script src="/luci-static/resources/luci.js"></script>
<script>L = new LuCI(${JSON.stringify(L)});</script>
<div id="view"><div class="spinning">Loading view…</div>
<script>L.require('ui').then(function(ui) { ui.instantiateView('${view}'); });</script></div>
</div><footer><ul class="breadcrumb pull-right" id="modemenu" style="display:none"></ul></footer>
<script>L.require('menu-bootstrap')</script></body></html>`;
}

const types = { '.js': 'application/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.gif': 'image/gif' };

function cookieSid(req) {
  const m = (req.headers.cookie ?? '').match(/sysauth_http=([0-9a-f]{32})/);
  return m && sessions.has(m[1]) ? m[1] : null;
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString();
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = decodeURIComponent(url.pathname);
  const send = (code, type, data) => { res.writeHead(code, { 'Content-Type': type }); res.end(data); };
  try {
    if (p.startsWith('/ubus')) {
      return send(200, 'application/json', JSON.stringify(await ubus(JSON.parse(await body(req)))));
    }
    if (p.startsWith('/luci-static/')) {
      for (const r of roots) {
        const f = path.join(r, path.normalize(p));
        if (f.startsWith(r) && fs.existsSync(f) && fs.statSync(f).isFile())
          return send(200, types[path.extname(f)] ?? 'application/octet-stream', fs.readFileSync(f));
      }
      return send(404, 'text/plain', 'not found');
    }
    if (p.startsWith('/cgi-bin/luci/admin/translations/'))
      return send(200, 'application/javascript', `window.PO = ${JSON.stringify(po(p.split('/').pop()))};`);
    const sid = cookieSid(req);
    if (p === '/cgi-bin/luci/admin/menu') return sid ? send(200, 'application/json', JSON.stringify(menuTree())) : send(403, 'text/plain', 'login');
    if (p.startsWith('/cgi-bin/luci/admin/uci/')) {
      if (!sid || !sessions.get(sid).write) return send(403, 'text/plain', 'denied');
      const what = p.split('/').pop();
      if (what === 'apply_rollback' || what === 'apply_unchecked') {
        const r = await uci('commit', 'wifipos');
        if (r.code) return send(500, 'text/plain', r.stderr);
        // procd's reload trigger on the router: /etc/init.d/wifipos reload -> SIGHUP.
        process.kill(Number(env('DAEMON_PID')), 'SIGHUP');
        log.push({ method: 'apply' });
        return what === 'apply_rollback' ? send(200, 'application/json', JSON.stringify({ token: 'x'.repeat(32) })) : send(204, 'text/plain', '');
      }
      if (what === 'confirm') return send(200, 'application/json', '{}');
      if (what === 'revert') { await uci('revert', 'wifipos'); return send(200, 'application/json', '{}'); }
      return send(404, 'text/plain', 'not found');
    }
    const parts = p.replace(/^\/cgi-bin\/luci\//, '').replace(/\/$/, '').split('/');
    if (menuD[parts.join('/')]?.action?.type === 'view') {
      if (!sid) return send(403, 'text/html', '<p>login required</p>');
      const lang = (req.headers.cookie ?? '').match(/luci_lang=([a-z]{2})/)?.[1] ?? 'en';
      return send(200, 'text/html; charset=UTF-8', page(parts, sid, lang));
    }
    send(404, 'text/plain', 'not found');
  } catch (e) {
    send(500, 'text/plain', String(e.stack));
  }
});

export function start() {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}
export function stop() { server.close(); }
