// A Converse plugin for the tests and the demo: records the stanzas Converse
// sends and receives (window.cnProbe.stanzas, the latest 500), and the answers
// to its push enables and disables and its MUC nickname registrations
// (window.cnProbe.acks), so a test waits on what Converse really did.
(function () {
	'use strict';
	const MAX = 500;
	const probe = { stanzas: [], acks: [], connected: false, rooms: [] };
	window.cnProbe = probe;
	const NS_PUSH = 'urn:xmpp:push:0';
	const NS_REGISTER = 'jabber:iq:register';

	// What kind of request an IQ is, if it is one we follow.
	function kindOf(iq) {
		if (iq.nodeName !== 'iq' || iq.getAttribute('type') !== 'set') return null;
		for (const child of iq.children) {
			const ns = child.getAttribute('xmlns') || child.namespaceURI;
			if (ns === NS_PUSH && (child.nodeName === 'enable' || child.nodeName === 'disable')) return child.nodeName;
			if (ns === NS_REGISTER && child.nodeName === 'query') return 'register';
		}
		return null;
	}

	converse.plugins.add('cn-probe', {
		initialize() {
			const { api } = this._converse;
			const pending = {};

			function note(dir, el) {
				// BOSH wraps stanzas in <body/>; the WebSocket sends them one by one.
				const stanzas = el.nodeName === 'body' ? Array.from(el.children) : [el];
				for (const s of stanzas) {
					probe.stanzas.push({ dir, xml: s.outerHTML });
					if (probe.stanzas.length > MAX) probe.stanzas.shift();
					const id = s.getAttribute && s.getAttribute('id');
					if (dir === 'out') {
						const kind = kindOf(s);
						if (kind && id) pending[id] = { kind, to: s.getAttribute('to') || '', sent: s.outerHTML };
					} else if (s.nodeName === 'iq' && id && pending[id]) {
						const req = pending[id];
						delete pending[id];
						probe.acks.push({ kind: req.kind, to: req.to, type: s.getAttribute('type'), sent: req.sent });
					}
				}
			}

			api.listen.on('connectionInitialized', () => {
				const conn = api.connection.get();
				const xmlOutput = conn.xmlOutput.bind(conn);
				const xmlInput = conn.xmlInput.bind(conn);
				conn.xmlOutput = (el) => { note('out', el); xmlOutput(el); };
				conn.xmlInput = (el) => { note('in', el); xmlInput(el); };
			});
			api.listen.on('connected', () => { probe.connected = true; });
			api.listen.on('enteredNewRoom', (muc) => { probe.rooms.push(muc.get('jid')); });
		},
	});
})();
