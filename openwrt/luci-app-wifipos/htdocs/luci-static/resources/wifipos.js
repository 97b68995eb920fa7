'use strict';
'require baseclass';
'require rpc';
'require ui';

// Shared by the wifipos views: the calls to the rpcd plugin luci.wifipos, formatting of times,
// data amounts and speeds, confirmations, and trusted-key checks (base64 Ed25519 public key,
// key id = the first 4 bytes of its SHA-256, as `wifipos keygen` prints it).

function call(method, params) {
	return rpc.declare({ object: 'luci.wifipos', method: method, params: params || [] });
}

// SHA-256 of a byte array (the browser's crypto.subtle needs https, which a router rarely has).
function sha256(bytes) {
	var K = [
		0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
		0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
		0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
		0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
		0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
		0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
		0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
		0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
	];
	var H = [ 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 ];
	var len = bytes.length, total = ((len + 9 + 63) >> 6) << 6, m = new Uint8Array(total);
	m.set(bytes);
	m[len] = 0x80;
	var bits = len * 8;
	for (var i = 0; i < 4; i++)
		m[total - 1 - i] = (bits >>> (8 * i)) & 0xff;
	var w = new Array(64);
	var rotr = function(x, n) { return (x >>> n) | (x << (32 - n)); };
	for (var off = 0; off < total; off += 64) {
		for (var t = 0; t < 16; t++)
			w[t] = (m[off + 4 * t] << 24) | (m[off + 4 * t + 1] << 16) | (m[off + 4 * t + 2] << 8) | m[off + 4 * t + 3];
		for (t = 16; t < 64; t++) {
			var s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
			var s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
			w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
		}
		var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
		for (t = 0; t < 64; t++) {
			var t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
			var t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
			h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
		}
		H = [ H[0] + a, H[1] + b, H[2] + c, H[3] + d, H[4] + e, H[5] + f, H[6] + g, H[7] + h ].map(function(x) { return x | 0; });
	}
	var out = new Uint8Array(32);
	for (i = 0; i < 8; i++)
		for (var j = 0; j < 4; j++)
			out[4 * i + j] = (H[i] >>> (24 - 8 * j)) & 0xff;
	return out;
}

// v with p decimals, a tie rounded to the even digit as Rust's format! does, so these pages and
// `wifiposd sessions` print the same digits (toFixed alone rounds a tie up: 1.125 -> 1.13).
// For 1 <= v < 1e21 and p <= 2, a double that is not a tie differs from one by more than
// 1e-19, so 20 digits (the most every browser's toFixed gives) tell a tie apart.
function fixed(v, p) {
	var exact = v.toFixed(20), dot = exact.indexOf('.');
	var kept = exact.slice(0, p ? dot + 1 + p : dot), rest = exact.slice(dot + 1 + p);
	if (/^50*$/.test(rest) && /[02468]$/.test(kept))
		return kept;
	return v.toFixed(p);
}

// A speed limit in kbit/s as the till sold it: whole Mbit/s as such, else kbit/s.
function rate(kbit) {
	if (kbit >= 1000 && kbit % 1000 == 0)
		return '%d Mbit/s'.format(kbit / 1000);
	return '%d kbit/s'.format(kbit);
}

return baseclass.extend({
	status: call('status'),
	sessions: call('sessions'),
	vouchers: call('vouchers', [ 'limit' ]),
	lookup: call('lookup', [ 'code' ]),
	events: call('events', [ 'since', 'limit' ]),
	doctor: call('doctor'),
	revoke: call('revoke', [ 'target' ]),
	kick: call('kick', [ 'mac' ]),
	extend: call('extend', [ 'voucher', 'duration' ]),
	trust: call('trust', [ 'mac' ]),
	untrust: call('untrust', [ 'mac' ]),
	block: call('block', [ 'mac' ]),
	unblock: call('unblock', [ 'mac' ]),

	sha256: sha256,

	// The key id of a trusted_key line, or null if it is not base64 of 32 bytes.
	keyId: function(b64) {
		var s = String(b64 || '').trim();
		if (!/^[A-Za-z0-9+/]{43}=$/.test(s))
			return null;
		var bin;
		try {
			bin = atob(s);
		}
		catch (e) {
			return null;
		}
		if (bin.length != 32)
			return null;
		var bytes = new Uint8Array(32);
		for (var i = 0; i < 32; i++)
			bytes[i] = bin.charCodeAt(i);
		var d = sha256(bytes), hex = '';
		for (i = 0; i < 4; i++)
			hex += (d[i] < 16 ? '0' : '') + d[i].toString(16);
		return hex;
	},

	time: function(t) {
		if (t == null || t === 0)
			return '-';
		var d = new Date(t * 1000), p = function(n) { return (n < 10 ? '0' : '') + n; };
		return '%d-%s-%s %s:%s'.format(d.getFullYear(), p(d.getMonth() + 1), p(d.getDate()),
			p(d.getHours()), p(d.getMinutes()));
	},

	// Bytes as phones show them, in powers of 1000 with three digits: 812 B, 1.40 MB, 52.4 MB,
	// 2.31 GB (the rule of src/units.rs human_bytes).
	bytes: function(n) {
		if (n == null)
			return '-';
		if (n < 1000)
			return '%d B'.format(n);
		var units = [ 'kB', 'MB', 'GB', 'TB' ], v = n / 1000, i = 0;
		while (v >= 1000 && i + 1 < units.length) {
			v /= 1000;
			i++;
		}
		return fixed(v, v >= 100 ? 0 : (v >= 10 ? 1 : 2)) + ' ' + units[i];
	},

	// Used of the data cap, or just used when there is no cap.
	data: function(used, cap) {
		if (cap == null)
			return this.bytes(used);
		return _('%s of %s').format(this.bytes(used), this.bytes(cap));
	},

	// A voucher's speed limits (kbit/s, null: none): "2 Mbit/s down, 512 kbit/s up" or "-".
	speed: function(down, up) {
		if (down != null && up != null)
			return _('%s down, %s up').format(rate(down), rate(up));
		if (down != null)
			return _('%s down').format(rate(down));
		if (up != null)
			return _('%s up').format(rate(up));
		return '-';
	},

	// `text` with each amount ("1.40 MB", "512 kbit/s") kept on one line, for narrow cells.
	amounts: function(text) {
		var re = /\d+(?:\.\d+)? (?:B|kB|MB|GB|TB|kbit\/s|Mbit\/s)/g, out = [], at = 0, m;
		while ((m = re.exec(text)) != null) {
			out.push(text.slice(at, m.index), E('span', { 'style': 'white-space:nowrap' }, [ m[0] ]));
			at = m.index + m[0].length;
		}
		out.push(text.slice(at));
		return E('span', {}, out);
	},

	left: function(s) {
		if (s == null)
			return '-';
		if (s <= 0)
			return _('over');
		return '%t'.format(s);
	},

	// True when this login may only read (the ACL's write part is not granted): LuCI's dispatcher
	// marks the page readonly, and the action buttons are disabled.
	readonly: function() {
		return !L.hasViewPermission();
	},

	// An error answer of the plugin as a notification; true if there was one.
	failed: function(res) {
		if (res && res.error) {
			ui.addNotification(null, E('p', {}, [ res.error.message || res.error.kind ]), 'danger');
			return true;
		}
		return false;
	},

	// Asks before `action` (a function returning a promise) and reloads the page after it.
	confirm: function(title, text, label, action) {
		var self = this;
		ui.showModal(title, [
			E('p', {}, [ text ]),
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'btn', 'click': ui.hideModal }, [ _('Cancel') ]),
				' ',
				E('button', {
					'class': 'btn cbi-button-negative important',
					'data-action': 'confirm',
					'click': ui.createHandlerFn(this, function() {
						return action().then(function(res) {
							ui.hideModal();
							if (!self.failed(res)) {
								ui.addNotification(null, E('p', {}, [ res.message || _('Done.') ]), 'info');
								window.setTimeout(function() { location.reload(); }, 600);
							}
						}, function(err) {
							ui.hideModal();
							ui.addNotification(null, E('p', {}, [ err.message || String(err) ]), 'danger');
						});
					})
				}, [ label ])
			])
		]);
	},

	// A warning box, or nothing.
	banner: function(lines) {
		if (!lines.length)
			return E([]);
		return E('div', { 'class': 'alert-message warning' },
			lines.map(function(l) { return E('p', {}, [ l ]); }));
	},

	table: function(headers, rows, empty) {
		var t = E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, headers.map(function(h) {
				return E('th', { 'class': 'th' }, [ h ]);
			}))
		]);
		rows.forEach(function(r) {
			t.appendChild(E('tr', { 'class': 'tr' }, r.map(function(c) {
				return E('td', { 'class': 'td' }, [ c ]);
			})));
		});
		if (!rows.length)
			t.appendChild(E('tr', { 'class': 'tr placeholder' }, [
				E('td', { 'class': 'td', 'colspan': headers.length }, [ E('em', {}, [ empty ]) ])
			]));
		return t;
	}
});
