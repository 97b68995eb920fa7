'use strict';
'require view';
'require form';
'require wifipos';

// Settings: /etc/config/wifipos as a form. (A tab may not be named like an Array method, such as
// 'keys': form.js keeps tabs in an array.) Saving and applying reloads the service (procd's
// reload trigger sends wifiposd SIGHUP): paying customers stay online.

return view.extend({
	render: function() {
		var m, s, o;

		m = new form.Map('wifipos', _('Wi-Fi voucher settings'),
			_('Saving and applying reloads the portal in place: devices that paid stay online.'));

		s = m.section(form.NamedSection, 'main', 'wifipos');
		s.addremove = false;
		s.tab('portal', _('Portal'));
		s.tab('tills', _('Till keys'));
		s.tab('access', _('Access'));
		s.tab('limits', _('Limits'));

		o = s.taboption('portal', form.Value, 'venue', _('Venue'), _('The name guests see on the portal.'));
		o.rmempty = false;
		o.validate = function(id, v) {
			v = String(v || '');
			if (!v.trim().length || v.length > 64 || /\n/.test(v))
				return _('A name of 1 to 64 characters on one line');
			return true;
		};

		o = s.taboption('portal', form.ListValue, 'language', _('Language'),
			_('The portal\'s language when a phone asks for none of these.'));
		o.value('en', 'English');
		o.value('de', 'Deutsch');
		o.value('es', 'Español');
		o.default = 'en';

		o = s.taboption('portal', form.Value, 'guest_iface', _('Guest network device'),
			_('The bridge of the guest network, such as br-guest.'));
		o.datatype = 'and(maxlength(15),minlength(1))';
		o.placeholder = 'br-guest';

		o = s.taboption('portal', form.Value, 'portal_address', _('Portal address'),
			_('The router\'s address on the guest network. Vouchers point here.'));
		o.datatype = 'ipaddr(1)';
		o.placeholder = '10.20.0.1';

		o = s.taboption('portal', form.Value, 'portal_port', _('Portal port'));
		o.datatype = 'port';
		o.placeholder = '2050';

		o = s.taboption('tills', form.DynamicList, 'trusted_key', _('Trusted till keys'),
			_('Public keys of the tills that sell access, as `wifipos keygen` prints them (base64, 44 characters ending in =).'));
		o.validate = function(id, v) {
			if (v == null || v === '')
				return true;
			return wifipos.keyId(v) ? true : _('Not a till key: expected base64 of a 32-byte Ed25519 public key (44 characters ending in =)');
		};

		o = s.taboption('tills', form.DummyValue, '_key_ids', _('Key ids'),
			_('The id of each saved key, as vouchers and `wifipos inspect` name it.'));
		o.rawhtml = false;
		o.cfgvalue = function(id) {
			var keys = L.toArray(this.map.data.get('wifipos', id, 'trusted_key'));
			if (!keys.length)
				return _('No key: no voucher can be accepted.');
			return keys.map(function(k) {
				return '%s  %s…'.format(wifipos.keyId(k) || _('invalid'), k.substr(0, 12));
			}).join(' · ');
		};

		o = s.taboption('access', form.DynamicList, 'garden', _('Walled garden'),
			_('Addresses or prefixes reachable before paying, such as the venue\'s website.'));
		o.datatype = 'or(ipaddr,cidr)';

		o = s.taboption('access', form.DynamicList, 'trusted_mac', _('Trusted devices'),
			_('Staff devices: online without a voucher.'));
		o.datatype = 'macaddr';

		o = s.taboption('access', form.DynamicList, 'blocked_mac', _('Blocked devices'),
			_('Refused everything, even with a voucher.'));
		o.datatype = 'macaddr';

		o = s.taboption('limits', form.Value, 'max_connections', _('Portal connections'),
			_('Open connections to the portal at once.'));
		o.datatype = 'range(8,65536)';
		o.placeholder = '512';

		o = s.taboption('limits', form.Value, 'attempts_per_minute', _('Voucher attempts per minute'),
			_('Per device; more are refused for a minute.'));
		o.datatype = 'range(1,1000)';
		o.placeholder = '10';

		o = s.taboption('limits', form.Value, 'keep_days', _('Keep vouchers (days)'));
		o.datatype = 'range(1,3650)';
		o.placeholder = '90';

		o = s.taboption('limits', form.Value, 'keep_event_days', _('Keep events (days)'));
		o.datatype = 'range(1,3650)';
		o.placeholder = '90';

		return m.render();
	}
});
