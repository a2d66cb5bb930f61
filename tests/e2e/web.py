"""Converse.js in Debian's headless Chromium, for the e2e tests and the web
demo: a small HTTP server on loopback (the Converse page, its files, the
pushes page and its live feed) and a Chromium the test starts and kills
itself, driven through playwright-core (tests/browser/driver.cjs).

Converse.js and playwright-core come from the npm registry, installed by
make from tests/browser/package-lock.json into .work/node."""

import asyncio
import json
import mimetypes
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from harness import ROOT

BROWSER = ROOT / "tests/browser"
NODE_DIR = Path(os.environ.get("CLOUD_NOTIFY_NODE_DIR", ROOT / ".work/node"))
CONVERSE_DIST = NODE_DIR / "node_modules/converse.js/dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As root, in a closed network: no sandbox, and nothing that phones home
# (without the background-networking flags connections get refused).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,800"]

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")


def check_installed():
    missing = [str(p) for p in (CONVERSE_DIST / "converse.min.js", Path(CHROMIUM),
                                NODE_DIR / "node_modules/playwright-core") if not p.exists()]
    if missing or not shutil.which("node"):
        raise RuntimeError("Converse.js, playwright-core, node or Chromium missing (make test installs "
                           "them: make browser-deps): " + ", ".join(missing or ["node"]))


def converse_settings(prosody, **settings):
    """Converse settings for a Prosody of the harness: its WebSocket, and no
    sounds, notifications or connection discovery."""
    base = {
        "websocket_url": f"ws://127.0.0.1:{prosody.http_port}/xmpp-websocket",
        "discover_connection_methods": False,
        "view_mode": "fullscreen",
        "auto_reconnect": False,
        "play_sounds": False,
        "show_desktop_notifications": False,
        "i18n": "en",
        "loglevel": "info",
    }
    base.update(settings)
    return base


class WebServer:
    """Serves, on loopback: / the Converse page (with `settings`), /dist/
    Converse's files, /probe.js, /pushes the pushes page and /pushes/events
    its live feed (server-sent events, one per `publish()`)."""

    def __init__(self, settings=None, port=0, placeholder="New Message!"):
        self.settings = settings or {}
        self.placeholder = placeholder
        self.pushes = []  # every push published, as dicts
        self._listeners = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        with self._lock:
            for q in self._listeners:
                q.put(None)
        self.httpd.shutdown()
        self.httpd.server_close()

    def publish(self, push):
        """A push the app server received, to every pushes page open."""
        entry = push_entry(push)
        with self._lock:
            self.pushes.append(entry)
            del self.pushes[:-1000]  # a demo runs for hours: keep the latest
            for q in self._listeners:
                q.put(entry)

    def _listen(self):
        q = queue.Queue()
        with self._lock:
            self._listeners.append(q)
            backlog = list(self.pushes)
        return q, backlog

    def _unlisten(self, q):
        with self._lock:
            self._listeners.remove(q)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _send(self, body, ctype, status=200):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    page = (BROWSER / "converse.html").read_text()
                    page = page.replace("__SETTINGS__", json.dumps(server.settings).replace("</", "<\\/"))
                    return self._send(page.encode(), "text/html; charset=utf-8")
                if path == "/probe.js":
                    return self._file(BROWSER / "probe.js")
                if path == "/pushes":
                    page = (BROWSER / "pushes.html").read_text()
                    page = page.replace("__PLACEHOLDER__", json.dumps(server.placeholder).replace("</", "<\\/"))
                    return self._send(page.encode(), "text/html; charset=utf-8")
                if path == "/pushes/events":
                    return self._events()
                if path.startswith("/dist/"):
                    target = (CONVERSE_DIST / path[len("/dist/"):]).resolve()
                    if CONVERSE_DIST.resolve() in target.parents and target.is_file():
                        return self._file(target)
                return self._send(b"not found\n", "text/plain", 404)

            def _file(self, target):
                ctype = mimetypes.guess_type(str(target))[0] or "application/octet-stream"
                return self._send(target.read_bytes(), ctype)

            def _events(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                q, backlog = server._listen()
                try:
                    for entry in backlog:
                        self._event(entry)
                    while True:
                        try:
                            entry = q.get(timeout=15)
                        except queue.Empty:
                            self.wfile.write(b": keep-alive\n\n")
                            self.wfile.flush()
                            continue
                        if entry is None:
                            return
                        self._event(entry)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    server._unlisten(q)

            def _event(self, entry):
                self.wfile.write(b"data: " + json.dumps(entry).encode() + b"\n\n")
                self.wfile.flush()

        return Handler


def push_entry(push):
    """What the pushes page shows of a push (harness.Push)."""
    return {
        "time": time.strftime("%H:%M:%S"),
        "from": push.sender,
        "node": push.node,
        "summary": push.summary,
        "options": sorted((push.options or {}).keys()),
    }


class Browser:
    """A headless Chromium the test starts (its own process group, a fresh
    profile) and a driver process talking to it. `kill()` is the browser
    dying: every process of it is SIGKILLed, its connections drop without a
    goodbye. Always killed by the `browsers` fixture, even on failure."""

    def __init__(self, workdir=None):
        check_installed()
        self.dir = Path(tempfile.mkdtemp(prefix="cn-chromium-", dir=workdir))
        self.proc = None
        self.driver = None
        self.log = []  # the page's console messages and errors
        self._ids = 0
        self._lock = asyncio.Lock()

    async def start(self, timeout=60):
        profile = self.dir / "profile"
        profile.mkdir()
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "chromium.log", "wb"), start_new_session=True)
        # Chromium writes its DevTools port here once it listens.
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError("Chromium exited:\n" + (self.dir / "chromium.log").read_text())
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium did not start:\n" + (self.dir / "chromium.log").read_text())
            await asyncio.sleep(0.05)
        port = port_file.read_text().split()[0]
        # A plain process read from a thread (not an asyncio subprocess): the
        # fixture can kill and reap it after the scenario's loop is closed.
        self.driver = subprocess.Popen(
            ["node", str(BROWSER / "driver.cjs"), str(NODE_DIR), f"http://127.0.0.1:{port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.dir / "driver.log", "wb"), start_new_session=True)
        await asyncio.wait_for(self._until(lambda m: m.get("event") == "ready"), timeout)
        return self

    async def _until(self, want):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, self.driver.stdout.readline)
            if not line:
                raise RuntimeError("the browser driver exited:\n" + self.logs())
            msg = json.loads(line)
            if "event" in msg and msg["event"] != "ready":
                self.log.append(f"[{msg.get('type', msg['event'])}] {msg.get('text')}")
                del self.log[:-2000]
                if msg["event"] == "fatal":
                    raise RuntimeError("the browser driver failed: " + msg["text"])
            if want(msg):
                return msg

    async def call(self, cmd, answer_within=90, **args):
        async with self._lock:
            self._ids += 1
            ident = self._ids
            self.driver.stdin.write((json.dumps({"id": ident, "cmd": cmd, **args}) + "\n").encode())
            self.driver.stdin.flush()
            answer = await asyncio.wait_for(self._until(lambda m: m.get("id") == ident), answer_within)
        if not answer["ok"]:
            raise AssertionError(f"browser {cmd} failed: {answer['error']}\n{self.logs()}")
        return answer.get("value")

    async def goto(self, url):
        return await self.call("goto", url=url)

    async def eval(self, js):
        return await self.call("eval", js=js)

    async def wait(self, js, timeout=60):
        """Waits until the expression `js` is truthy in the page; its value."""
        return await self.call("wait", answer_within=timeout + 30, js=js, timeout=timeout * 1000)

    async def screenshot(self, path):
        return await self.call("screenshot", path=str(path))

    async def fill(self, selector, text):
        return await self.call("fill", selector=selector, text=text)

    async def click(self, selector):
        return await self.call("click", selector=selector)

    async def wait_ack(self, kind, to="", timeout=60):
        """Waits for the answer to Converse's `kind` request (enable,
        disable, register) sent to `to` ("" = the account); returns
        {kind, to, type, sent}."""
        js = (f"window.cnProbe && cnProbe.acks.find(a => a.kind === {json.dumps(kind)}"
              f" && a.to === {json.dumps(to)})")
        return await self.wait(js, timeout)

    def logs(self):
        return "\n".join(self.log[-50:])

    def kill(self):
        """SIGKILLs the browser's and the driver's process groups and reaps them."""
        for proc in (self.proc, self.driver):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def cleanup(self):
        self.kill()
        if self.driver is not None:
            for pipe in (self.driver.stdin, self.driver.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
