"""End-to-end harness: a real Prosody on loopback, real XMPP clients (slixmpp)
and an app-server component that records every push it receives."""

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

ROOT = Path(__file__).resolve().parents[2]
# CLOUD_NOTIFY_DIST points the tests at another build (or at the reference
# module, to see which tests it fails).
DIST = Path(os.environ.get("CLOUD_NOTIFY_DIST", ROOT / "dist"))
MODULES = Path(__file__).resolve().parent / "modules"
# Prosody 0.12.3 is Debian 12's package; 13.0.x is unpacked from
# bookworm-backports by scripts/install-prosody13.sh.
PROSODY_VERSIONS = {
    "0.12": ["lua5.4", "/usr/bin/prosody"],
    "13": ["lua5.4", str(ROOT / ".work/prosody13/usr/bin/prosody")],
}
# Debian's prosody-modules 0.0~hg20250402 (scripts/install-prosody-modules.sh):
# the real mod_cloud_notify_extensions, _encrypted, _filters, _priority_tag.
EXTENSIONS_DIR = ROOT / ".work/prosody-modules/usr/lib/prosody/modules"
NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DATA = "jabber:x:data"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
PASSWORD = "secret"
COMPONENT_SECRET = "component-secret"

logging.getLogger("slixmpp").setLevel(logging.ERROR)


_PORTS_GIVEN = set()


def free_port():
    """A loopback port nothing listens on, never one this test run already
    gave out: the kernel may hand the same free port to two calls in a row,
    and an instance whose c2s and component ports collide would listen on
    one only (a CI run once lost an app server's connection that way)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"[{lua_value(k)}] = {lua_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_host(host):
    """Prosody's datamanager path encoding."""
    return "".join(c if c.isalnum() or c == "_" else "%%%02x" % ord(c) for c in host)


EXTENSION_MODULES = ("cloud_notify_extensions", "cloud_notify_encrypted", "cloud_notify_filters",
                     "cloud_notify_priority_tag")


def extension_paths(version, workdir):
    """A plugin_paths entry (after ours) holding the real prosody-modules
    extensions and nothing else of that package (its own mod_cloud_notify
    stays out: the reference is 0.12's prosody-modules copy, 13's core
    module). Unchanged, but for one name on 0.12.

    0.12 has no util.crypto: mod_cloud_notify_encrypted then falls back to
    luaossl (Debian's lua-luaossl), whose cipher it keeps in the local
    `ossl_ciphers` but calls as the undefined global `ciphers`, so every
    encrypted push raises there, under the reference module too. On 0.12
    the copy loaded has that one name corrected (its output then ends in 16
    NUL bytes for a tag: luaossl can't read GCM tags; see decrypt() in
    test_extensions.py). 13 loads the module as Debian ships it."""
    if not (EXTENSIONS_DIR / "mod_cloud_notify_extensions").is_dir():
        raise RuntimeError(f"prosody-modules is not unpacked in {EXTENSIONS_DIR}"
                           " (make test does it; see scripts/install-prosody-modules.sh)")
    folder = Path(workdir) / "extensions"
    folder.mkdir(parents=True, exist_ok=True)
    for name in EXTENSION_MODULES:
        real = EXTENSIONS_DIR / f"mod_{name}"
        here = folder / f"mod_{name}"
        if here.exists() or here.is_symlink():
            continue
        if version == "0.12" and name == "cloud_notify_encrypted":
            source = (real / f"mod_{name}.lua").read_text()
            wrong = "return ciphers.new("
            assert source.count(wrong) == 1, "prosody-modules changed: check the 0.12 correction"
            here.mkdir()
            (here / f"mod_{name}.lua").write_text(source.replace(wrong, "return ossl_ciphers.new("))
        else:
            here.symlink_to(real)
    return [str(folder)]


class Prosody:
    """A Prosody process with a generated config, in its own directory.

    extensions: the real prosody-modules extension modules can be loaded
    (their folder is on plugin_paths, after ours: extension_paths())."""

    def __init__(self, hosts=("localhost",), modules=("cloud_notify",), options=None,
                 host_options=None, component="push.localhost", command=None, plugin_paths=None,
                 version="0.12", muc=None, muc_options=None, components=(), extensions=False):
        self.dir = Path(tempfile.mkdtemp(prefix="cn-e2e-"))
        self.hosts = list(hosts)
        self.modules = list(modules)
        self.options = dict(options or {})
        self.host_options = dict(host_options or {})
        self.component = component
        self.version = version
        self.muc = muc  # a MUC component with mod_muc_cloud_notify
        self.muc_options = dict(muc_options or {})
        self.components = list(components)  # more components (e.g. a "remote" server's users)
        self.command = command or PROSODY_VERSIONS[version]
        if not Path(self.command[-1]).exists():
            raise RuntimeError(f"Prosody {version} is not installed: {self.command[-1]}"
                               " (make test installs it; see scripts/install-prosody13.sh)")
        self.plugin_paths = plugin_paths or [str(DIST), str(MODULES)]
        if extensions:
            self.plugin_paths = self.plugin_paths + extension_paths(version, self.dir)
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.http_port = free_port()
        self.proc = None
        (self.dir / "data").mkdir()
        (self.dir / "certs").mkdir()

    @property
    def log_path(self):
        return self.dir / "prosody.log"

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def write_config(self):
        g = {
            "run_as_root": True,
            "daemonize": False,
            "pidfile": str(self.dir / "prosody.pid"),
            "data_path": str(self.dir / "data"),
            "certificates": str(self.dir / "certs"),
            "plugin_paths": self.plugin_paths,
            "interfaces": ["127.0.0.1"],
            "c2s_ports": [self.c2s_port],
            "component_ports": [self.component_port],
            "component_interfaces": ["127.0.0.1"],
            "s2s_ports": [],
            "http_ports": [self.http_port],
            "http_interfaces": ["127.0.0.1"],
            "https_ports": [],
            "c2s_direct_tls_ports": [],
            "legacy_ssl_ports": [],
            "c2s_require_encryption": False,
            "allow_unencrypted_plain_auth": True,
            "authentication": "internal_plain",
            "storage": "internal",
            "modules_enabled": ["roster", "saslauth", "disco", "ping", "carbons", "smacks", "mam",
                                "offline", "csi_simple", *self.modules],
            "modules_disabled": ["s2s", "tls"],
            "log": {"debug": str(self.log_path)},
            "smacks_hibernation_time": 30,
            "smacks_max_ack_delay": 2,
        }
        g.update(self.options)
        lines = [f"{k} = {lua_value(v)}" for k, v in g.items()]
        for host in self.hosts:
            lines.append(f'VirtualHost "{host}"')
            for k, v in self.host_options.get(host, {}).items():
                lines.append(f"  {k} = {lua_value(v)}")
        if self.muc:
            lines.append(f'Component "{self.muc}" "muc"')
            muc = {"modules_enabled": ["muc_cloud_notify"], "muc_room_locking": False,
                   "allow_unaffiliated_register": True}
            muc.update(self.muc_options)
            for k, v in muc.items():
                lines.append(f"  {k} = {lua_value(v)}")
        for component in ([self.component] if self.component else []) + self.components:
            lines.append(f'Component "{component}"')
            lines.append(f'  component_secret = "{COMPONENT_SECRET}"')
        (self.dir / "prosody.cfg.lua").write_text("\n".join(lines) + "\n")

    def ctl(self, *args, timeout=60):
        """Runs prosodyctl (of this Prosody's version) with this config."""
        self.write_config()
        prosodyctl = str(Path(self.command[-1]).with_name("prosodyctl"))
        return subprocess.run(
            [*self.command[:-1], prosodyctl, "--config", str(self.dir / "prosody.cfg.lua"), *args],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def add_user(self, user, host="localhost", password=PASSWORD):
        if self.options.get("storage", "internal") != "internal":
            r = self.ctl("register", user, host, password)
            assert r.returncode == 0, r.stdout + r.stderr
            return f"{user}@{host}"
        d = self.dir / "data" / encode_host(host) / "accounts"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{user}.dat").write_text(f'return {{ ["password"] = {lua_value(password)}; }};\n')
        return f"{user}@{host}"

    def store_file(self, user, store="cloud_notify", host="localhost"):
        return self.dir / "data" / encode_host(host) / store / f"{user}.dat"

    def start(self, timeout=20):
        self.write_config()
        # Ready when the ports are up and, if our module is loaded, it said
        # so in this run (a restart's log already holds the last run's lines).
        mark = len(self.log())
        ours = str(DIST) in self.plugin_paths and ("cloud_notify" in self.modules or self.muc)
        self.proc = subprocess.Popen(
            self.command + ["-F", "--config", str(self.dir / "prosody.cfg.lua")],
            stdout=open(self.dir / "stdout.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Prosody exited:\n" + (self.dir / "stdout.log").read_text() + self.log())
            ports = [self.c2s_port, self.component_port]
            if {"http", "websocket", "bosh"} & set(self.modules):
                ports.append(self.http_port)
            if "Failed to open server port" in self.log()[mark:]:
                self.stop()
                raise RuntimeError("Prosody could not listen:\n" + self.log()[mark:])
            ports_up = all(self._port_open(p) for p in ports)
            if ports_up and (not ours or "Module loaded (core " in self.log()[mark:]):
                return self
            time.sleep(0.1)
        self.stop()  # not left running behind the failed test
        raise RuntimeError("Prosody did not start:\n" + self.log())

    @staticmethod
    def _port_open(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        self.stop()
        if os.environ.get("KEEP_E2E_DIRS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


class Client(slixmpp.ClientXMPP):
    """A user's device. With `smacks`, it uses XEP-0198 stream management
    (with resumption), and can lose its connection like a phone does."""

    def __init__(self, jid, port, password=PASSWORD, resource="phone", smacks=False):
        super().__init__(f"{jid}/{resource}", password)
        self.port = port
        self.smacks = smacks
        self.register_plugin("xep_0030")
        if smacks:
            self.register_plugin("xep_0198")
            self._sm_enabled = asyncio.Event()
            self._resumed = asyncio.Event()
            self.add_event_handler("sm_enabled", lambda _e: self._sm_enabled.set())
            self.add_event_handler("session_resumed", lambda _e: self._resumed.set())
        self["feature_mechanisms"].unencrypted_plain = True
        self.messages = asyncio.Queue()
        self._started = asyncio.Event()
        self._ended = asyncio.Event()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("disconnected", lambda _e: self._ended.set())
        self.add_event_handler("failed_auth", lambda _e: self._ended.set())

    async def _on_start(self, _event):
        self._started.set()

    async def start(self, presence=True, timeout=10):
        self._connect()
        await asyncio.wait_for(self._started.wait(), timeout)
        if self.smacks:
            await asyncio.wait_for(self._sm_enabled.wait(), timeout)
        if presence:
            self.send_presence()
        return self

    def _connect(self):
        self.connect(("127.0.0.1", self.port), use_ssl=False, force_starttls=False, disable_starttls=True)

    async def kill(self):
        """The phone loses its network: the TCP connection drops, the
        stream is never closed, and the server hibernates the session."""
        self._ended.clear()
        self.abort()
        await asyncio.wait_for(self._ended.wait(), 5)

    def stop_acking(self):
        """The phone is gone but its TCP connection still looks alive: the
        server's <r/> requests go unanswered."""
        self.remove_handler("Stream Management Request Ack")

    async def resume(self, timeout=10):
        """Reconnects and resumes the hibernated stream."""
        self._resumed.clear()
        self._ended.clear()
        self._connect()
        await asyncio.wait_for(self._resumed.wait(), timeout)
        return self

    async def stop(self):
        if self._started.is_set() and not self._ended.is_set():
            self.disconnect()
            try:
                await asyncio.wait_for(self._ended.wait(), 5)
            except asyncio.TimeoutError:
                pass

    async def iq_set(self, payload_xml, timeout=10):
        """Sends <iq type='set'> with a raw payload; returns the answer
        (result or error) as an ElementTree element."""
        iq = self.make_iq_set()
        iq.append(ET.fromstring(payload_xml))
        try:
            reply = await iq.send(timeout=timeout)
        except IqError as e:
            reply = e.iq
        except IqTimeout:
            raise AssertionError("no answer to " + payload_xml)
        return reply.xml

    async def enable(self, jid, node, options=None, form_type="submit", extra_form=""):
        form = ""
        if options is not None:
            fields = "".join(
                f"<field var='{k}'><value>{v}</value></field>" for k, v in options.items())
            form = f"<x xmlns='{NS_DATA}' type='{form_type}'>{fields}{extra_form}</x>"
        node_attr = f" node='{node}'" if node is not None else ""
        jid_attr = f" jid='{jid}'" if jid is not None else ""
        return await self.iq_set(f"<enable xmlns='{NS_PUSH}'{jid_attr}{node_attr}>{form}</enable>")

    async def enable_with(self, node, children="", jid="push.localhost"):
        """An <enable/> with extra children (for extension modules)."""
        return await self.iq_set(f"<enable xmlns='{NS_PUSH}' jid='{jid}' node='{node}'>{children}</enable>")

    async def disable(self, jid, node=None):
        node_attr = f" node='{node}'" if node is not None else ""
        jid_attr = f" jid='{jid}'" if jid is not None else ""
        return await self.iq_set(f"<disable xmlns='{NS_PUSH}'{jid_attr}{node_attr}/>")


def iq_type(xml):
    return xml.get("type")


def error_of(xml):
    """(type, condition) of an error reply."""
    err = xml.find("{jabber:client}error")
    if err is None:
        return None
    cond = next((c.tag.split("}")[1] for c in err if c.tag.startswith("{" + NS_STANZAS)), None)
    return err.get("type"), cond


class Push:
    """A publish the app server received."""

    def __init__(self, xml):
        self.xml = xml
        self.at = time.monotonic()  # when it arrived (asyncio's loop.time() clock)
        pubsub = xml.find(f"{{{NS_PUBSUB}}}pubsub")
        publish = pubsub.find(f"{{{NS_PUBSUB}}}publish")
        self.id = xml.get("id")
        self.sender = xml.get("from")
        self.node = publish.get("node")
        notif = publish.find(f"{{{NS_PUBSUB}}}item/{{{NS_PUSH}}}notification")
        self.notification = notif
        form = notif.find(f"{{{NS_DATA}}}x") if notif is not None else None
        self.summary = form_values(form) if form is not None else None
        opts = pubsub.find(f"{{{NS_PUBSUB}}}publish-options/{{{NS_DATA}}}x")
        self.options = form_values(opts) if opts is not None else None

    @property
    def important(self):
        # (the reference module sends every summary field, empty ones too)
        return bool((self.summary or {}).get("last-message-body"))

    def __repr__(self):
        return f"<Push node={self.node} summary={self.summary} options={self.options}>"


def form_values(x):
    out = {}
    for field in x.findall(f"{{{NS_DATA}}}field"):
        value = field.find(f"{{{NS_DATA}}}value")
        out[field.get("var")] = value.text if value is not None else None
    return out


async def next_of(queue, timeout, what):
    """The next item of `queue`, failing the test after `timeout` s."""
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what} received nothing") from None


async def none_of(queue, within):
    """Fails the test if `queue` gets an item within `within` s."""
    try:
        item = await asyncio.wait_for(queue.get(), within)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected: {item}")


class AppServer(slixmpp.ComponentXMPP):
    """The push app server: an XMPP component recording each publish.
    Like a real one (and as Converse.js checks before it enables push), its
    disco#info shows identity pubsub/push and feature urn:xmpp:push:0.

    mode: "result" answers with a result; ("error", type, condition) with
    that error; "silent" never answers."""

    def __init__(self, prosody, jid=None, mode="result"):
        super().__init__(jid or prosody.component, COMPONENT_SECRET, "127.0.0.1", prosody.component_port)
        self.mode = mode
        self.pushes = asyncio.Queue()
        self.received = []
        self.disco_queries = []  # who asked for our disco#info
        self._started = asyncio.Event()
        self.add_event_handler("session_start", lambda _e: self._started.set())
        self.register_plugin("xep_0030")
        self["xep_0030"].add_identity(category="pubsub", itype="push", name="Push app server")
        self["xep_0030"].add_feature(NS_PUSH)
        self.register_handler(Callback(
            "disco asked", MatchXPath(f"{{{self.default_ns}}}iq/{{{NS_DISCO_INFO}}}query"),
            lambda iq: self.disco_queries.append(str(iq["from"])) if iq["type"] == "get" else None))
        self.register_handler(Callback(
            "push", MatchXPath(f"{{{self.default_ns}}}iq/{{{NS_PUBSUB}}}pubsub"), self._on_publish))

    async def start(self, timeout=10):
        self.connect()
        await asyncio.wait_for(self._started.wait(), timeout)
        return self

    async def stop(self):
        self.disconnect()
        await asyncio.sleep(0.1)

    def _on_publish(self, iq):
        push = Push(iq.xml)
        self.received.append(push)
        self.pushes.put_nowait(push)
        mode = self.mode
        if mode == "silent":
            return
        to, frm, id_ = iq["from"], iq["to"], iq["id"]
        if mode == "result":
            self.send_raw(f"<iq type='result' id='{id_}' to='{to}' from='{frm}'/>")
        else:
            _, etype, cond = mode
            self.send_raw(
                f"<iq type='error' id='{id_}' to='{to}' from='{frm}'>"
                f"<error type='{etype}'><{cond} xmlns='{NS_STANZAS}'/></error></iq>")

    async def next_push(self, timeout=10):
        return await next_of(self.pushes, timeout, "the app server")

    async def no_push(self, within=1.5):
        await none_of(self.pushes, within)


async def enable_devices(user, port, nodes, jid="push.localhost", options=None, pause=0.0):
    """Each node enabled from a device of its own (resource `device-<node>`):
    one device enabling again replaces its own registration (issue 27 §2)."""
    for node in nodes:
        c = await Client(user, port, resource=f"device-{node}").start()
        reply = await c.enable(jid, node, options)
        await c.stop()
        assert iq_type(reply) == "result", reply
        if pause:
            await asyncio.sleep(pause)


async def message_pushes(app, sender, to, n, body="hi", quiet=1.0):
    """`sender` sends `to` a chat message; returns the `n` pushes the app
    server receives, and checks no further push follows within `quiet` s."""
    sender.send_message(mto=to, mbody=body, mtype="chat")
    pushes = [await app.next_push() for _ in range(n)]
    if quiet:
        await app.no_push(quiet)
    return pushes


def run(coro, timeout=120):
    """Runs one scenario in a fresh event loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout) if timeout else coro)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)


class Postgres:
    """A private PostgreSQL server (Debian's package) on a loopback port,
    its data in a temporary folder; `database()` creates a fresh database
    and returns Prosody's `sql` option for it."""

    def __init__(self, statements=False):
        """statements: with pg_stat_statements (each database gets the
        extension), to count what Prosody asks."""
        import glob

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (make deps installs it)")
        self.bin = bins[-1]
        self.root = tempfile.mkdtemp(prefix="cn-pg-")
        os.chmod(self.root, 0o755)
        shutil.chown(self.root, "postgres", "postgres")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.count = 0
        self.run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres")
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-w", "-o",
                 f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                 # (a throwaway server: no waiting for the disk at each commit)
                 " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                 + (" -c shared_preload_libraries=pg_stat_statements" if statements else ""), "start")
        self.statements = statements

    def run(self, tool, *args, input=None):
        """Runs one of PostgreSQL's programs as the postgres user."""
        r = subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bin}/{tool}", *args],
                           capture_output=True, cwd=self.root, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
        return r

    def database(self):
        self.count += 1
        name = f"prosody{self.count}"
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        if self.statements:
            self.psql(name, "CREATE EXTENSION pg_stat_statements;")
        return {"driver": "PostgreSQL", "database": name, "username": "postgres", "password": "",
                "host": "127.0.0.1", "port": self.port}

    def psql(self, database, sql):
        """Runs SQL (a string, read from stdin) in a database; returns its
        unaligned, tuples-only output."""
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                        "-v", "ON_ERROR_STOP=1", "-qAt", input=sql.encode()).stdout.decode()

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
