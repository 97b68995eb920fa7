'use strict';
'require view';
'require form';
'require wifipos';

// Settings: /etc/config/wifipos as a form. (A tab may not be named like an Array method, such as
// 'keys': form.js keeps tabs in an array.) Saving and applying reloads the service (procd's
// reload trigger sends wifiposd SIGHUP): paying customers stay online.

// A RADIUS server as the daemon takes it (parse_radius_server in src/config.rs), past the
// datatype's `IP`, `IPv4:port` or `[IPv6]:port`: not 0.0.0.0 or ::, not multicast, port 1-65535.
function radiusServer(v) {
	var m = /^\[(.+)\]:(\d+)$/.exec(v) || /^([^:]+):(\d+)$/.exec(v),
	    ip = (m ? m[1] : v).toLowerCase(),
	    port = m ? +m[2] : 1;

	if (/^0+\.0+\.0+\.0+$/.test(ip) || /^[0:]+$/.test(ip) || /^ff/.test(ip) ||
	    /^(22[4-9]|23\d)\./.test(ip) || port < 1 || port > 65535)
		return _('A server\'s own address (not 0.0.0.0, :: or multicast) and a port from 1 to 65535');
	return true;
}

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
		s.tab('radius', _('Chain of venues (RADIUS)'),
			_('For a chain of cafés with a RADIUS server at head office (such as FreeRADIUS): every paid device is reported to it, and it can decide centrally which vouchers and devices are let on. A single venue leaves this empty.'));

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

		o = s.taboption('radius', form.Value, 'radius_server', _('Accounting server'),
			_('Gets a record of every paid device: when it starts, an update every few minutes, when it ends. Records wait on the router while the server cannot be reached. Its IP address, with the port if not 1813: 192.0.2.5, 192.0.2.5:1813 or [2001:db8::5]:1813. Empty: off.'));
		o.datatype = 'or(ipaddr(1),ipaddrport(1))';
		o.validate = function(id) {
			// Not the value passed in: after a datatype with parts (ipaddrport) LuCI's
			// validator passes the last part checked (the port) instead of the field's text.
			var v = this.formvalue(id);
			return (v == null || v === '') ? true : radiusServer(String(v));
		};
		o.placeholder = '192.0.2.5:1813';

		o = s.taboption('radius', form.Value, 'radius_secret', _('Shared secret'),
			_('The password this router and the RADIUS server share (in the server\'s clients.conf), 1 to 128 characters. Needed with either server.'));
		o.password = true;
		o.validate = function(id, v) {
			v = String(v || '');
			// The daemon counts bytes.
			if (new TextEncoder().encode(v).length > 128)
				return _('At most 128 characters');
			if (!v.length && (this.section.formvalue(id, 'radius_server') || this.section.formvalue(id, 'radius_auth_server')))
				return _('Needed with a RADIUS server');
			return true;
		};

		o = s.taboption('radius', form.Value, 'radius_interim', _('Update interval (seconds)'),
			_('How often a device\'s time and data are reported while it is online: 60 to 86400 seconds, default 300.'));
		o.datatype = 'range(60,86400)';
		o.placeholder = '300';
		o.depends({ radius_server: /./ });
		o.retain = true;

		o = s.taboption('radius', form.Value, 'radius_nas_id', _('Name of this venue for the server'),
			_('How this router names itself to the server (NAS-Identifier), up to 64 characters. Default: the venue name.'));
		o.validate = function(id, v) {
			v = String(v || '');
			if (v.length && (!v.trim().length || new TextEncoder().encode(v).length > 64))
				return _('A name of 1 to 64 characters on one line');
			return true;
		};
		o.depends({ radius_server: /./ });
		o.depends({ radius_auth_server: /./ });

		o = s.taboption('radius', form.Value, 'radius_auth_server', _('Authorization server'),
			_('Asked before a new device joins a voucher, so a voucher\'s device limit holds across all venues, a voucher stopped at head office is refused everywhere, and its time counts from its first use anywhere. Its IP address, with the port if not 1812. Empty: each venue decides alone.'));
		o.datatype = 'or(ipaddr(1),ipaddrport(1))';
		o.validate = function(id) {
			// Not the value passed in: after a datatype with parts (ipaddrport) LuCI's
			// validator passes the last part checked (the port) instead of the field's text.
			var v = this.formvalue(id);
			return (v == null || v === '') ? true : radiusServer(String(v));
		};
		o.placeholder = '192.0.2.5:1812';

		o = s.taboption('radius', form.Value, 'radius_timeout_ms', _('Wait for an answer (ms)'),
			_('How long a guest waits for head office before this router decides alone, so selling goes on while the line is down: 100 to 10000 milliseconds, default 1000.'));
		o.datatype = 'range(100,10000)';
		o.placeholder = '1000';
		o.depends({ radius_auth_server: /./ });

		o = s.taboption('radius', form.Value, 'radius_coa_port', _('Disconnect/CoA port'),
			_('The UDP port where the servers above may end a device or change when it ends (RFC 5176); 3799 is the usual one. Empty or 0: off. Requests from other addresses are dropped. Saving lets only the servers above in from the WAN (firewall rule wifipos_coa).'));
		o.datatype = 'port';
		o.placeholder = _('off');
		o.depends({ radius_server: /./ });
		o.depends({ radius_auth_server: /./ });

		return m.render();
	}
});
