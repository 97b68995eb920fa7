'use strict';
'require view';
'require dom';
'require wifipos';

// Events: the daemon's log (redemptions, refusals, revocations, rule changes) from a chosen
// time on.

return view.extend({
	load: function() {
		return wifipos.events('24h', 500);
	},

	rows: function(res) {
		return res.events.slice().reverse().map(function(e) {
			return [ wifipos.time(e.at), e.kind, e.mac ? E('code', {}, [ e.mac ]) : '-', e.voucher || '-', e.detail || '' ];
		});
	},

	render: function(res) {
		if (wifipos.failed(res))
			return E('div', {}, [ _('The wifipos daemon does not answer.') ]);
		var self = this;
		var list = E('div', { 'id': 'wifipos-events' }, [ this.table(res) ]);
		var since = E('select', { 'class': 'cbi-input-select', 'id': 'wifipos-since' }, [
			E('option', { 'value': '1h' }, [ _('Last hour') ]),
			E('option', { 'value': '24h', 'selected': 'selected' }, [ _('Last 24 hours') ]),
			E('option', { 'value': '7d' }, [ _('Last 7 days') ]),
			E('option', { 'value': '30d' }, [ _('Last 30 days') ]),
			E('option', { 'value': 'custom' }, [ _('Since…') ])
		]);
		var custom = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': 'wifipos-since-custom',
			'placeholder': '2026-11-25T14:30', 'title': _('A duration ago (2h, 7d), a UTC date (2026-11-25 or 2026-11-25T14:30) or Unix seconds') });
		var show = E('button', { 'class': 'btn cbi-button-action', 'data-action': 'show', 'click': function() {
			var s = since.value == 'custom' ? custom.value.trim() : since.value;
			return wifipos.events(s, 5000).then(function(r) {
				if (!wifipos.failed(r))
					dom.content(list, self.table(r));
			});
		} }, [ _('Show') ]);

		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('Events') ]),
			E('div', { 'class': 'cbi-section' }, [ since, ' ', custom, ' ', show ]),
			E('div', { 'class': 'cbi-section' }, [ list ])
		]);
	},

	table: function(res) {
		return wifipos.table([ _('Time'), _('Event'), _('MAC address'), _('Voucher'), _('Details') ],
			this.rows(res), _('No events in this time.'));
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
