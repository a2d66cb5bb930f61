// Drives one Chromium page for the Python tests, over the DevTools protocol.
//
//   node driver.cjs NODE_DIR CDP_URL
//
// NODE_DIR holds the node_modules installed from package-lock.json (make
// puts it in .work/node); CDP_URL is the browser's DevTools endpoint (the
// Python side starts Chromium itself, so it alone owns and kills it).
// Reads one JSON command a line on stdin, answers one JSON line on stdout:
//   {"id": 1, "cmd": "goto", "url": "..."}                   -> {"id": 1, "ok": true}
//   {"id": 2, "cmd": "eval", "js": "..."}                    -> {"id": 2, "ok": true, "value": ...}
//   {"id": 3, "cmd": "wait", "js": "...", "timeout": 60000}  -> {"id": 3, "ok": true, "value": ...}
//   {"id": 4, "cmd": "screenshot", "path": "...png"}         -> {"id": 4, "ok": true}
//   {"id": 5, "cmd": "fill", "selector": "...", "text": "..."} -> {"id": 5, "ok": true}
//   {"id": 6, "cmd": "click", "selector": "..."}             -> {"id": 6, "ok": true}
// Failures answer {"id": N, "ok": false, "error": "..."}. The page's console
// messages and errors come as {"event": "console" | "pageerror" | "requestfailed" | "http",
// "text": "..."}.
'use strict';

const path = require('path');
const readline = require('readline');
const { createRequire } = require('module');

const [nodeDir, cdpUrl] = process.argv.slice(2);
const { chromium } = createRequire(path.join(path.resolve(nodeDir), 'package.json'))('playwright-core');

function emit(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main() {
	const browser = await chromium.connectOverCDP(cdpUrl);
	const context = browser.contexts()[0] || await browser.newContext();
	const page = context.pages()[0] || await context.newPage();
	// Nothing leaves the machine: requests to anything but loopback fail at once.
	const local = (url) => /^(https?|wss?):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(url.href)
		|| url.protocol === 'data:' || url.protocol === 'blob:' || url.protocol === 'about:';
	await context.route((url) => !local(url), (route) => route.abort('blockedbyclient'));
	page.on('console', (msg) => emit({ event: 'console', type: msg.type(), text: msg.text() }));
	page.on('requestfailed', (req) => emit({ event: 'requestfailed', text: `${req.url()} ${req.failure() && req.failure().errorText}` }));
	page.on('response', (res) => { if (res.status() >= 400) emit({ event: 'http', text: `${res.status()} ${res.url()}` }); });
	page.on('pageerror', (err) => emit({ event: 'pageerror', text: String(err && err.stack || err) }));
	browser.on('disconnected', () => process.exit(0));

	const commands = {
		goto: (c) => page.goto(c.url, { waitUntil: 'load', timeout: c.timeout || 60000 }).then(() => null),
		// js: an expression, evaluated in the page
		eval: (c) => page.evaluate(c.js),
		// js: an expression, polled until truthy; its value is the answer
		wait: (c) => page.waitForFunction(c.js, null, { timeout: c.timeout || 60000, polling: 100 })
			.then((handle) => handle.jsonValue()),
		screenshot: (c) => page.screenshot({ path: c.path, fullPage: true }).then(() => null),
		// a person typing into a field and clicking a button
		fill: (c) => page.fill(c.selector, c.text, { timeout: c.timeout || 60000 }).then(() => null),
		click: (c) => page.click(c.selector, { timeout: c.timeout || 60000 }).then(() => null),
	};
	emit({ event: 'ready' });
	const rl = readline.createInterface({ input: process.stdin });
	for await (const line of rl) {
		let c;
		try {
			c = JSON.parse(line);
			const value = await commands[c.cmd](c);
			emit({ id: c.id, ok: true, value: value === undefined ? null : value });
		} catch (err) {
			emit({ id: c && c.id, ok: false, error: String(err && err.message || err) });
		}
	}
	// stdin closed: the test is done with us (the browser is the test's to kill)
	process.exit(0);
}

main().catch((err) => {
	emit({ event: 'fatal', text: String(err && err.stack || err) });
	process.exit(1);
});
