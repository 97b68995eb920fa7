'use strict';
'require view';
'require poll';
'require wifipos';

// Overview: devices online now, vouchers sold today and this week, trusted till keys, the
// firewall table's health, the clock, when the daemon started; a banner for what needs care,
// and one for what `wifiposd doctor` flags on the router (warnings and what keeps guests out,
// each with its fix).

return view.extend({
	load: function() {
		return Promise.all([
			wifipos.status(),
			// The doctor's answer is extra: a failure leaves the page as it was.
			wifipos.doctor().catch(function() { return null; })
		]);
	},

	// `wifiposd doctor`'s findings worth a banner (warn, blocks), or nothing.
	doctor: function(doc) {
		if (!doc || doc.error || !Array.isArray(doc.findings))
			return E([]);
		var bad = doc.findings.filter(function(f) { return f.level == 'warn' || f.level == 'blocks'; });
		if (!bad.length)
			return E([]);
		return E('div', { 'class': 'alert-message warning', 'id': 'wifipos-doctor' }, [
			E('h4', {}, [ doc.blocks
				? _('The router check found problems that keep guests out')
				: _('The router check found something to fix') ]),
			E('div', {}, bad.map(function(f) {
				return E('p', { 'data-check': f.check, 'data-level': f.level }, [
					E('strong', {}, [ f.level == 'blocks' ? _('Blocks guests') : _('Warning') ]),
					' ', f.check, ': ', f.found,
					f.fix ? E('div', {}, [ _('Fix: %s').format(f.fix) ]) : ''
				]);
			}))
		]);
	},

	warnings: function(st) {
		var w = [];
		if (st.table != 'intact')
			w.push(_('The firewall table is not intact: %s.').format(st.table));
		if (!st.clock_trusted)
			w.push(_('The clock is not synchronised yet: new vouchers wait until it is (check NTP).'));
		if (!st.keys || !st.keys.length)
			w.push(_('No till key is trusted: no voucher can be accepted. Add one under Settings.'));
		if (st.sessions != st.allowed_in_kernel)
			w.push(_('%d devices have time left but %d are let through by the kernel; the daemon repairs this within a second.').format(st.sessions, st.allowed_in_kernel));
		return w;
	},

	render: function(data) {
		var st = data[0], doctor = this.doctor(data[1]);
		if (st.error)
			return E('div', { 'id': 'wifipos-overview' }, [
				doctor,
				E('div', { 'class': 'alert-message warning' }, [
					E('h4', {}, [ _('The wifipos daemon does not answer') ]),
					E('p', {}, [ st.error.message ])
				])
			]);

		var rows = [
			[ _('Devices online now'), String(st.sessions) ],
			[ _('Vouchers sold today'), String(st.sold.today) ],
			[ _('Vouchers sold in the last 7 days'), String(st.sold.week) ],
			[ _('Venue'), st.venue ],
			[ _('Portal'), st.portal_url ],
			[ _('Trusted till keys'), st.keys.length ? st.keys.join(', ') : _('none') ],
			[ _('Firewall table'), st.table == 'intact' ? _('intact') : st.table ],
			[ _('Clock'), st.clock_trusted ? _('synchronised') : _('not synchronised') ],
			[ _('Daemon running since'), wifipos.time(st.since) ],
			[ _('Trusted / blocked devices'), '%d / %d'.format(st.trusted_macs, st.blocked_macs) ],
			[ _('Last 24 hours'), _('%d vouchers, %d devices, %d minutes sold, %d refusals').format(
				st.last_24h.vouchers_redeemed, st.last_24h.devices, st.last_24h.minutes_sold, st.last_24h.refusals) ]
		];

		return E('div', { 'class': 'cbi-map', 'id': 'wifipos-overview' }, [
			E('h2', {}, [ _('Wi-Fi vouchers') ]),
			E('div', { 'class': 'cbi-map-descr' }, [ _('Guests buy Wi-Fi at the till; the router checks their voucher and lets their device through for the time they paid.') ]),
			doctor,
			wifipos.banner(this.warnings(st)),
			E('div', { 'class': 'cbi-section' }, [
				E('table', { 'class': 'table' }, rows.map(function(r) {
					return E('tr', { 'class': 'tr' }, [
						E('td', { 'class': 'td left', 'width': '33%' }, [ r[0] ]),
						E('td', { 'class': 'td left' }, [ r[1] ])
					]);
				}))
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
