'use strict';
'require view';
'require ui';
'require wifipos';

// Devices: each device with time left (voucher, sale reference, end, time left, data it moved,
// its voucher's data of the cap) and the actions kick, extend, revoke, trust, block, each
// confirmed first; trust or block any MAC.

return view.extend({
	load: function() {
		return wifipos.sessions();
	},

	act: function(title, text, label, fn) {
		return function() { wifipos.confirm(title, text, label, fn); };
	},

	render: function(res) {
		if (wifipos.failed(res))
			return E('div', {}, [ _('The wifipos daemon does not answer.') ]);

		var self = this;
		var ro = wifipos.readonly() ? '' : null;
		var rows = res.sessions.map(function(s) {
			var dur = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'value': '30m', 'style': 'width:5em',
				'data-field': 'duration', 'title': _('Time to add, such as 30m, 2h or 1d') });
			return [
				E('code', {}, [ s.mac ]),
				s.voucher,
				s.purchase_ref || '-',
				wifipos.time(s.ends_at),
				wifipos.left(s.remaining_s),
				s.kernel_s != null ? wifipos.left(s.kernel_s) : _('not in the kernel'),
				E('div', {}, [
					wifipos.amounts('%s / %s'.format(wifipos.bytes(s.down_bytes || 0), wifipos.bytes(s.up_bytes || 0))),
					s.data_cap == null ? '' : E('div', { 'title': _('What all devices of this voucher used of its data cap') }, [
						E('small', {}, [ wifipos.amounts(_('Voucher: %s').format(wifipos.data(s.voucher_used_bytes || 0, s.data_cap))) ])
					])
				]),
				E('div', { 'class': 'wifipos-actions', 'data-mac': s.mac }, [
					E('button', { 'class': 'btn cbi-button', 'data-action': 'kick', 'disabled': ro,
						'click': self.act(_('Kick device'),
							_('Take %s off its voucher? Its place is free for another device and it goes back to the portal.').format(s.mac),
							_('Kick'), function() { return wifipos.kick(s.mac); }) }, [ _('Kick') ]),
					' ', dur,
					E('button', { 'class': 'btn cbi-button', 'data-action': 'extend', 'disabled': ro,
						'click': function() {
							var d = dur.value.trim();
							wifipos.confirm(_('Extend voucher'),
								_('Add %s to voucher %s (all its devices)?').format(d, s.voucher),
								_('Extend'), function() { return wifipos.extend(s.voucher, d); });
						} }, [ _('Extend') ]),
					' ',
					E('button', { 'class': 'btn cbi-button-negative', 'data-action': 'revoke', 'disabled': ro,
						'click': self.act(_('Revoke voucher'),
							_('Revoke voucher %s? Every device on it goes back to the portal at once.').format(s.voucher),
							_('Revoke'), function() { return wifipos.revoke(s.voucher); }) }, [ _('Revoke') ]),
					' ',
					E('button', { 'class': 'btn cbi-button', 'data-action': 'trust', 'disabled': ro,
						'click': self.act(_('Trust device'),
							_('Let %s online without a voucher (staff)?').format(s.mac),
							_('Trust'), function() { return wifipos.trust(s.mac); }) }, [ _('Trust') ]),
					' ',
					E('button', { 'class': 'btn cbi-button-negative', 'data-action': 'block', 'disabled': ro,
						'click': self.act(_('Block device'),
							_('Refuse %s everything, even with a voucher?').format(s.mac),
							_('Block'), function() { return wifipos.block(s.mac); }) }, [ _('Block') ])
				])
			];
		});

		var mac = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': 'wifipos-mac',
			'placeholder': 'aa:bb:cc:dd:ee:ff' });
		var rule = function(label, title, text, fn) {
			return E('button', { 'class': 'btn cbi-button', 'disabled': ro, 'click': function() {
				var m = mac.value.trim();
				wifipos.confirm(title, text.format(m), label, function() { return fn(m); });
			} }, [ label ]);
		};

		return E('div', { 'class': 'cbi-map', 'id': 'wifipos-devices' }, [
			E('h2', {}, [ _('Devices') ]),
			E('div', { 'class': 'cbi-map-descr' }, [ _('Devices with time left. Time left in the kernel is what the firewall enforces, even if the daemon stops.'), ' ',
				_('Data is what each device downloaded and uploaded on its voucher; a voucher with a data cap shows what all its devices used of it.') ]),
			E('div', { 'class': 'cbi-section' }, [
				wifipos.table([ _('MAC address'), _('Voucher'), _('Sale'), _('Ends'), _('Time left'),
					_('In the kernel'), _('Data (down / up)'), _('Actions') ], rows,
					_('No device has time left.'))
			]),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, [ _('Staff and unwanted devices') ]),
				E('p', {}, [ _('Trusted devices are online without a voucher; blocked devices are refused everything. Both are kept in the settings.') ]),
				mac, ' ',
				rule(_('Trust'), _('Trust device'), _('Let %s online without a voucher (staff)?'), wifipos.trust), ' ',
				rule(_('Untrust'), _('Untrust device'), _('Stop trusting %s?'), wifipos.untrust), ' ',
				rule(_('Block'), _('Block device'), _('Refuse %s everything, even with a voucher?'), wifipos.block), ' ',
				rule(_('Unblock'), _('Unblock device'), _('Stop blocking %s?'), wifipos.unblock)
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
