'use strict';
'require view';
'require dom';
'require wifipos';

// Vouchers: the most recently used vouchers with their devices, data used (of the cap), speed
// limits, revoke, and a look-up of a pasted voucher code or link.

return view.extend({
	load: function() {
		return wifipos.vouchers(100);
	},

	state: function(v, now) {
		if (v.revoked_at)
			return _('revoked %s').format(wifipos.time(v.revoked_at));
		if (v.data_used_up_at)
			return _('data used up');
		if (!v.first_redeemed_at)
			return _('not used');
		if (v.ends_at <= now)
			return _('ended');
		return _('in use, %s left').format(wifipos.left(v.ends_at - now));
	},

	describe: function(v, now) {
		return E('table', { 'class': 'table', 'id': 'wifipos-found' }, [
			[ _('Voucher'), v.voucher ],
			[ _('Sale'), v.purchase_ref || '-' ],
			[ _('Paid time'), '%t'.format(v.duration_s) ],
			[ _('Devices'), '%d / %d: %s'.format(v.devices.length, v.max_devices, v.devices.join(', ') || '-') ],
			[ _('First used'), wifipos.time(v.first_redeemed_at) ],
			[ _('Ends'), wifipos.time(v.ends_at) ],
			[ _('Data'), wifipos.amounts(wifipos.data(v.used_bytes || 0, v.data_cap)) ],
			[ _('Speed'), wifipos.amounts(wifipos.speed(v.down_kbit, v.up_kbit)) ],
			[ _('State'), this.state(v, now) ]
		].map(function(r) {
			return E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left', 'width': '33%' }, [ r[0] ]), E('td', { 'class': 'td left' }, [ r[1] ]) ]);
		}));
	},

	render: function(res) {
		if (wifipos.failed(res))
			return E('div', {}, [ _('The wifipos daemon does not answer.') ]);
		var self = this;
		var ro = wifipos.readonly() ? '' : null;

		var rows = res.vouchers.map(function(v) {
			return [
				v.voucher,
				v.purchase_ref || '-',
				'%t'.format(v.duration_s),
				'%d / %d'.format(v.devices.length, v.max_devices),
				E('span', {}, v.devices.map(function(m) { return E('code', {}, [ m, ' ' ]); })),
				wifipos.time(v.first_redeemed_at),
				wifipos.amounts(wifipos.data(v.used_bytes || 0, v.data_cap)),
				wifipos.amounts(wifipos.speed(v.down_kbit, v.up_kbit)),
				self.state(v, res.now),
				v.revoked_at ? '' : E('button', { 'class': 'btn cbi-button-negative', 'data-action': 'revoke', 'disabled': ro,
					'data-voucher': v.voucher, 'click': function() {
						wifipos.confirm(_('Revoke voucher'),
							_('Revoke voucher %s? Every device on it goes back to the portal at once.').format(v.voucher),
							_('Revoke'), function() { return wifipos.revoke(v.voucher); });
					} }, [ _('Revoke') ])
			];
		});

		var code = E('textarea', { 'class': 'cbi-input-textarea', 'id': 'wifipos-code', 'rows': 3,
			'style': 'width:100%', 'placeholder': _('Paste a voucher code or link, or KEYID:SERIAL') });
		var found = E('div', { 'id': 'wifipos-lookup' });
		var look = E('button', { 'class': 'btn cbi-button-action', 'data-action': 'lookup', 'click': function() {
			return wifipos.lookup(code.value.trim()).then(function(r) {
				if (wifipos.failed(r))
					return dom.content(found, '');
				if (!r.found)
					return dom.content(found, E('p', {}, [ _('Voucher %s has not been used on this router.').format(r.voucher) ]));
				dom.content(found, self.describe(r.found, r.now));
			});
		} }, [ _('Look up') ]);

		return E('div', { 'class': 'cbi-map', 'id': 'wifipos-vouchers' }, [
			E('h2', {}, [ _('Vouchers') ]),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, [ _('Look up a voucher') ]),
				code, E('br'), look, found
			]),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, [ _('Recently used') ]),
				wifipos.table([ _('Voucher'), _('Sale'), _('Paid time'), _('Devices'), _('MAC addresses'),
					_('First used'), _('Data'), _('Speed'), _('State'), '' ], rows, _('No voucher has been used yet.'))
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
