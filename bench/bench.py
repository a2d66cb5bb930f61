#!/usr/bin/env python3
"""`make bench`: the module's cost to Prosody, side by side with the Lua
reference, in one run.

A real Prosody (0.12.3; 13.0.x with BENCH_PROSODY=13) is started three times, fresh, with the same generated
config (mod_mam, mod_smacks, mod_offline, internal storage, an app-server
component answering every publish with a result), differing only in the push
module: none (the floor), ref (Debian's prosody-modules mod_cloud_notify) and
ours (dist/mod_cloud_notify). A raw-socket load generator (pre-authenticated
c2s streams writing pre-built XML) drives the workloads.

Two measurements:

1. CPU time of the Prosody process (utime+stime; read at nanosecond
   resolution from /proc/PID/task/*/schedstat, which is what utime+stime
   are made from). The three processes are alive at the same time and every
   workload runs in rounds, each round on each variant in turn (the order
   rotating), so a slow spell of a shared machine falls on all three alike.
   Per round Δ = CPU(variant) − CPU(none); the medians over rounds are
   reported.
2. Instructions (valgrind's callgrind, one Prosody per variant, and for W1
   in-process two more each): repeatable to a few hundredths of a percent,
   so a 1% difference is visible. Skipped with BENCH_CALLGRIND=0.

Workloads: W1 online recipients without registrations; W2/W3 offline with
1 / 5 registrations; W4 the MAM path; W5 hibernated smacks sessions, one
message each to the full JID; W5b the same sessions, two chat messages each
to the bare JID back to back (archived and queued; coalesced); L a user
who never enabled before logs in (SASL, bind, presence), enables push and
closes the stream, as a phone's first start does. Every enable carries
publish-options as Conversations, Monal or Siskin send them.

Then memory (RSS with 20,000 users' registrations loaded) and leaks (event
handlers and Lua heap around 50,000 answered pushes). The last line is
machine-readable. BENCH_SCALE scales the message counts, BENCH_ROUNDS the
rounds (default 7), BENCH_USERS and BENCH_PINGS the memory and leak runs.
"""

import asyncio
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))
from harness import (COMPONENT_SECRET, DIST, PASSWORD, PROSODY_VERSIONS, Prosody,  # noqa: E402
                     encode_host, lua_value)

PROBE = ROOT / "bench/modules"
REFERENCE = Path("/usr/lib/prosody/modules/mod_cloud_notify")
HOST = "localhost"
APP = "push.localhost"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "7")))
CALLGRIND = os.environ.get("BENCH_CALLGRIND", "1") != "0"
CPU_RUNS = os.environ.get("BENCH_CPU", "1") != "0"  # 0: the callgrind part alone (a quick look)
CLK = os.sysconf("SC_CLK_TCK")
# 0.12 (Debian's 0.12.3, the reference from prosody-modules) or 13 (13.0.x
# from bookworm-backports, the reference: its core module).
VERSION = os.environ.get("BENCH_PROSODY", "0.12")


def scaled(n):
    return max(10, int(n * SCALE))


# Messages per round and variant (CPU runs), and per variant (callgrind runs).
CHUNK = {"w1": scaled(2000), "w2": scaled(800), "w3": scaled(300), "w4": scaled(800), "login": scaled(100),
         "relogin": scaled(100)}
CG_N = {"w1": scaled(1000), "w2": scaled(200), "w3": scaled(60), "w4": scaled(200), "login": scaled(100),
        "relogin": scaled(100)}
LOGINS_IN_FLIGHT = 8
R1, R2, R3, R4 = 50, 500, 200, 100  # recipients: W1 online, W2/W3 offline, W4 MAM
CG_R2, CG_R3, CG_R4 = 100, 30, 50  # fewer under callgrind (each is warmed up first)
R5, CG_R5 = 200, 40  # W5 hibernated recipients, one message each per round
CG_ROUNDS5 = 2
# W1 under callgrind, measured this many times in each variant's process
# (its Δ is the size of the collector's run-to-run spread: the median and
# range are reported).
CG_W1_RUNS = 3
# ...and in the same process, module unloaded and loaded: this many loaded
# windows of CG_AB_N messages, each between two unloaded ones. (A window
# of 1,000 messages holds about a dozen collector cycles, and whether it
# holds one more moves its count by up to 0.3 %: windows of 2,000 halve
# that step. A process's figure: the median of its loaded windows' Δ.)
CG_W1_WINDOWS = 5
CG_AB_N = scaled(2000)
# ...in this many processes per variant (the first is the one above; the
# others, ref's and ours' side by side, run W1 alone): a process's windows
# mostly agree within ±0.05 % of the server, but two processes' medians
# differ by up to 0.2 %, since what the module's load leaves in malloc's
# free lists and in Lua's C-string cache differs between processes. The
# figure is the median of the processes' medians, printed with each.
CG_AB_PROCS = int(os.environ.get("BENCH_W1_PROCS", "3"))
R_MEM = int(os.environ.get("BENCH_USERS", "20000"))
PINGS = int(os.environ.get("BENCH_PINGS", "50000"))
SENDERS = 10
WORKLOADS = {
    "w1": "W1 online, no registration",
    "w2": "W2 offline, 1 registration",
    "w3": "W3 offline, 5 registrations",
    "w4": "W4 MAM, 1 gone device",
    "w5": "W5 hibernated (smacks)",
    "w5b": "W5b hibernated, bursts to bare",
    "login": "L login+enable+close",
    "relogin": "L2 again: login+enable+close",
}
# BENCH_WORKLOADS="w5 w5b" (say): those alone, without the A/B, memory and
# leak parts (a quick look; the RESULT line then has only their figures).
ONLY = os.environ.get("BENCH_WORKLOADS", "").split()
if ONLY:
    # (L2 logs L's users in again: L runs first)
    WORKLOADS = {w: label for w, label in WORKLOADS.items() if w in ONLY or (w == "login" and "relogin" in ONLY)}
# (W5b: as many as the coalescing window makes, about one per two messages)
PUSHES_PER_MSG = {"w1": 0, "w2": 1, "w3": 5, "w4": 1, "w5": 1, "w5b": None, "login": 0, "relogin": 0}


# ---------------------------------------------------------------- measuring

def cpu_seconds(pid):
    """utime+stime of all the process's threads, at nanosecond resolution
    (schedstat's run time; /proc/PID/stat rounds the same figure to ticks)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- raw XMPP

NODE = re.compile(rb"<publish [^>]*node=['\"]([^'\"]+)")
STANZA_START = re.compile(rb"<(message|presence|iq)[\s>/]")


class Stream:
    """A pre-authenticated c2s stream speaking raw XML."""

    def __init__(self, port, user, resource):
        self.port, self.user, self.resource = port, user, resource
        self.buf = b""
        self.messages = 0
        self.stanzas = 0
        self.drainer = None
        self.waiters = {}

    async def _read_until(self, token):
        while token not in self.buf:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(f"{self.user}: closed while waiting for {token!r}")
            self.buf += data
        head, _, self.buf = self.buf.partition(token)
        return head + token

    def _open(self):
        self.writer.write(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{HOST}' version='1.0'>".encode())

    async def connect(self, presence=True, smacks=False):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._open()
        await self._read_until(b"</stream:features>")
        auth = base64.b64encode(f"\0{self.user}\0{PASSWORD}".encode()).decode()
        self.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>".encode())
        await self._read_until(b"<success")
        await self._read_until(b">")
        self._open()
        await self._read_until(b"</stream:features>")
        self.writer.write(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                          f"<resource>{self.resource}</resource></bind></iq>".encode())
        await self._read_until(b"</iq>")
        if smacks:
            self.writer.write(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
            await self._read_until(b"<enabled")
            await self._read_until(b">")
        if presence:
            self.writer.write(b"<presence/>")
        return self

    def start_draining(self):
        self.drainer = asyncio.ensure_future(self._drain())

    async def _drain(self):
        data = self.buf
        self.buf = b""
        while True:
            self.messages += data.count(b"<message")
            for m in re.finditer(rb"<iq [^>]*id='(sync\d+)'", data):
                fut = self.waiters.pop(m.group(1).decode(), None)
                if fut:
                    fut.set_result(True)
            data = await self.reader.read(262144)
            if not data:
                return

    def send(self, xml):
        self.writer.write(xml)

    async def sync(self):
        """Returns once the server processed everything sent before."""
        sync_id = f"sync{id(self)}{time.monotonic_ns()}"
        fut = asyncio.get_running_loop().create_future()
        self.waiters[sync_id] = fut
        self.writer.write(f"<iq type='get' id='{sync_id}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>".encode())
        await self.writer.drain()
        await asyncio.wait_for(fut, 600)

    async def iq(self, xml, iq_id):
        self.writer.write(xml.encode())
        return await self._read_until(f"id='{iq_id}'".encode()) + await self._read_until(b">")

    def kill(self):
        self.writer.transport.abort()

    async def close(self):
        """Goes unavailable and closes the stream cleanly, as a client
        does: returns once the server closed the connection."""
        self.writer.write(b"<presence type='unavailable'/></stream:stream>")
        await self.writer.drain()
        while await self.reader.read(65536):
            pass
        self.writer.close()


async def first_start(port, user, i, pushing, name):
    """A phone's first start: `user` logs in (presence), enables push
    in-band with publish-options (`enable_iq`'s shape for `i`) and closes
    the stream; with a push module (`pushing`), the enable must succeed."""
    s = await Stream(port, user, "phone").connect(presence=True)
    got = await s.iq(enable_iq(user, i), "push1")
    tag = got[got.rfind(b"<iq"):]
    if pushing and b"result" not in tag:
        raise RuntimeError(f"{name}: enable refused for {user}: {tag!r}")
    await s.close()


class AppServer:
    """The push app server: a raw component answering every publish."""

    def __init__(self, port, arrivals=None):
        self.port = port
        self.pushes = 0
        self.waiters = {}
        # node -> the times of its publishes (monotonic), in order, when
        # asked for
        self.arrivals = arrivals

    async def start(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"<stream:stream xmlns='jabber:component:accept' "
                          f"xmlns:stream='http://etherx.jabber.org/streams' to='{APP}'>".encode())
        buf = b""
        header = re.compile(rb"<stream:stream[^>]*\sid=['\"]([^'\"]+)[^>]*>")
        while not header.search(buf):
            buf += await self.reader.read(4096)
        stream_id = header.search(buf).group(1).decode()
        digest = hashlib.sha1((stream_id + COMPONENT_SECRET).encode()).hexdigest()
        self.writer.write(f"<handshake>{digest}</handshake>".encode())
        buf = b""
        while b"<handshake" not in buf:
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("component handshake refused")
            buf += data
        self.task = asyncio.ensure_future(self._serve())
        return self

    async def _serve(self):
        buf = b""
        head = re.compile(rb"<iq ([^>]*)>")
        attr = re.compile(rb"(\w+)=['\"]([^'\"]*)['\"]")
        while True:
            data = await self.reader.read(262144)
            if not data:
                return
            buf += data
            out = []
            while True:
                m = head.search(buf)
                if not m:
                    break
                end = buf.find(b"</iq>", m.end())
                if end < 0 and not m.group(1).endswith(b"/"):
                    break
                attrs = dict(attr.findall(m.group(1)))
                if self.arrivals is not None and end >= 0:
                    node = NODE.search(buf, m.end(), end)
                    if node:
                        self.arrivals.setdefault(node.group(1).decode(), []).append(time.monotonic())
                buf = buf[(end + 5) if end >= 0 else m.end():]
                if attrs.get(b"type") == b"set":
                    self.pushes += 1
                    out.append(b"<iq type='result' id='%s' to='%s' from='%s'/>" % (
                        attrs[b"id"], attrs[b"from"], attrs[b"to"]))
                elif attrs.get(b"type") == b"result":
                    fut = self.waiters.pop(attrs.get(b"id", b"").decode(), None)
                    if fut:
                        fut.set_result(True)
            if out:
                self.writer.write(b"".join(out))

    async def sync(self):
        """Returns once Prosody processed every answer written before: a
        ping from the component, answered after them (one stream, in order)."""
        sync_id = f"appsync{time.monotonic_ns()}"
        fut = asyncio.get_running_loop().create_future()
        self.waiters[sync_id] = fut
        self.writer.write(f"<iq type='get' id='{sync_id}' from='{APP}' to='{HOST}'>"
                          f"<ping xmlns='urn:xmpp:ping'/></iq>".encode())
        await self.writer.drain()
        await asyncio.wait_for(fut, 900)

    async def wait_for(self, total, timeout=900):
        deadline = time.monotonic() + timeout
        while self.pushes < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"app server got {self.pushes} of {total} pushes")
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------- data

def write_lua(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"return {lua_value(value)};\n")


def stored_options(node):
    """A publish-options form as the store keeps it (util.stanza's
    preserialized tables), a secret as Conversations sends it."""
    def field(var, value):
        return {"name": "field", "attr": {"var": var}, 1: {"name": "value", "attr": {}, 1: value}}
    secret = hashlib.sha256(node.encode()).hexdigest()[:24]
    return {"name": "x", "attr": {"xmlns": "jabber:x:data", "type": "submit"},
            1: field("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"), 2: field("secret", secret)}


def make_users(p, names, nodes=0):
    data = p.dir / "data" / encode_host(HOST)
    for name in names:
        write_lua(data / "accounts" / f"{name}.dat", {"password": PASSWORD})
        if nodes:
            regs = {f"{APP}<{name}-{i}": {"jid": APP, "node": f"{name}-{i}", "timestamp": 1700000000 + i,
                                           "options": stored_options(f"{name}-{i}")}
                    for i in range(nodes)}
            write_lua(data / "cloud_notify" / f"{name}.dat", regs)


PUBLISH_OPTIONS_TYPE = ("<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value>"
                        "</field>")


def enable_iq(node, i, iq_id="push1"):
    """An in-band enable the way real clients send it, in turn (user i):
    Conversations (a secret in publish-options), Monal (its push module)
    and Siskin (an encryption key, the tigase extension, and a secret)."""
    secret = hashlib.sha256(f"{node}/{i}".encode()).hexdigest()[:24]
    shape = i % 3
    if shape == 0:  # Conversations, to p2.siacs.eu
        extra = (f"<x xmlns='jabber:x:data' type='submit'>{PUBLISH_OPTIONS_TYPE}"
                 f"<field var='secret'><value>{secret}</value></field></x>")
    elif shape == 1:  # Monal, to its app server
        extra = (f"<x xmlns='jabber:x:data' type='submit'>{PUBLISH_OPTIONS_TYPE}"
                 f"<field var='pushModule'><value>monalProdiOS</value></field></x>")
    else:  # Siskin, to Tigase's push service
        key = base64.b64encode(hashlib.sha256(secret.encode()).digest()[:16]).decode()
        extra = (f"<x xmlns='jabber:x:data' type='submit'>{PUBLISH_OPTIONS_TYPE}"
                 f"<field var='secret'><value>{secret}</value></field></x>"
                 f"<encrypt xmlns='tigase:push:encrypt:0' alg='aes-128-gcm'>{key}</encrypt>")
    return (f"<iq type='set' id='{iq_id}'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{node}'>{extra}"
            f"</enable></iq>")


def chat(to, i):
    return (f"<message to='{to}' type='chat' id='b{i}'><body>Benchmark message number {i}</body>"
            f"</message>").encode()


async def send_round_robin(senders, recipients, n, offset=0):
    for i in range(n):
        senders[i % len(senders)].send(chat(recipients[(offset + i) % len(recipients)], offset + i))
        if i % 200 == 199:
            await asyncio.gather(*(s.writer.drain() for s in senders))
    await asyncio.gather(*(s.sync() for s in senders))


async def stats(stream, n=[0]):
    n[0] += 1
    reply = await stream.iq(f"<iq type='get' id='stats{n[0]}' to='{HOST}'><stats xmlns='urn:example:bench'/></iq>",
                            f"stats{n[0]}")
    reply += await stream._read_until(b"/>")
    heap = float(re.search(rb"heap='([\d.]+)'", reply).group(1))
    handlers = int(re.search(rb"handlers='(\d+)'", reply).group(1))
    core = re.search(rb"core='(\d+)'", reply)
    stats.core = int(core.group(1)) if core else 0  # ours: bytes its Rust side holds
    return heap, handlers


# ---------------------------------------------------------------- a variant

class Variant:
    """One Prosody with one of the push modules, its users and streams."""

    def __init__(self, name, plugin_paths, modules, callgrind=False):
        self.name, self.callgrind = name, callgrind
        self.pushing = name != "none"
        command = None
        if callgrind:
            self.cg_dir = Path(tempfile.mkdtemp(prefix="bench-cg-"))
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.cg_dir}/cg.%p",
                       *PROSODY_VERSIONS[VERSION]]
        self.p = Prosody(modules=modules, plugin_paths=plugin_paths, command=command, version=VERSION, options={
            "smacks_hibernation_time": 600,
            "push_registration_cache_size": R_MEM + 5000,
        })
        self.p.options["log"] = {"info": str(self.p.log_path)}  # debug logging would dwarf what we measure
        self.senders = [f"s{i}" for i in range(SENDERS)]
        self.users = {
            "w1": [f"a{i}" for i in range(R1)],
            "w2": [f"b{i}" for i in range(CG_R2 if callgrind else R2)],
            "w3": [f"c{i}" for i in range(CG_R3 if callgrind else R3)],
            "w4": [f"d{i}" for i in range(CG_R4 if callgrind else R4)],
            "w5": [f"e{i}" for i in range(CG_R5 if callgrind else R5)],
            "mem": [] if callgrind else [f"m{i}" for i in range(R_MEM)],
            # (a fresh user for every login: none has enabled before)
            "login": [f"l{i}" for i in range(CG_N["login"] if callgrind else CHUNK["login"] * ROUNDS)],
        }
        make_users(self.p, self.senders + self.users["w1"] + self.users["w5"] + self.users["login"] + ["admin"])
        make_users(self.p, self.users["w2"] + self.users["w4"] + self.users["mem"], nodes=1)
        make_users(self.p, self.users["w3"], nodes=5)
        self.offset = {w: 0 for w in WORKLOADS}
        self.module_loaded = True

    @property
    def pid(self):
        return self.p.proc.pid

    async def start(self):
        # (in a thread: processes started side by side start together)
        await asyncio.to_thread(self.p.start, timeout=600 if self.callgrind else 60)
        self.app = await AppServer(self.p.component_port).start()
        self.send = [await Stream(self.p.c2s_port, s, "load").connect(presence=False) for s in self.senders]
        for s in self.send:
            s.start_draining()
        self.admin = await Stream(self.p.c2s_port, "admin", "probe").connect(presence=False)
        # Kept (with their reading tasks) for as long as the variant runs.
        self.online = [await Stream(self.p.c2s_port, u, "phone").connect() for u in self.users["w1"]]
        # W4: one device online (no push) beside a registration of a device gone.
        self.devices = [await Stream(self.p.c2s_port, u, "laptop").connect() for u in self.users["w4"]]
        for s in self.online + self.devices:
            s.start_draining()
        await self.app.sync()
        await send_round_robin(self.send, [f"{u}@{HOST}" for u in self.users["w1"]], 200, 10 ** 6)  # warm-up
        return self

    async def hibernate_w5(self):
        """W5's recipients: smacks sessions with push enabled, then the
        connection drops (hibernation)."""
        for u in self.users["w5"]:
            s = await Stream(self.p.c2s_port, u, "phone").connect(presence=True, smacks=True)
            got = await s.iq(enable_iq(u, int(u[1:])), "push1")
            if b"<presence" not in got:
                await s._read_until(b"<presence")
            # Acknowledge both (own presence, the IQ result), then ask for the
            # server's count: its answer means it has processed the ack.
            s.send(b"<a xmlns='urn:xmpp:sm:3' h='2'/><r xmlns='urn:xmpp:sm:3'/>")
            await s._read_until(b"<a ")
            s.kill()
        # Let hibernation settle (and its pushes, if any, come in) before measuring.
        await self.settle()

    async def settle(self):
        last = -1
        while last != self.app.pushes:
            last = self.app.pushes
            await asyncio.sleep(3 if self.callgrind else 1.5)
            await self.app.sync()

    def _cg(self, *args):
        subprocess.run(["callgrind_control", *args, str(self.pid)], capture_output=True, check=True)

    def _cg_total(self):
        dumps = sorted(self.cg_dir.glob(f"cg.{self.pid}.*"), key=lambda f: int(f.name.rsplit(".", 1)[1]))
        with open(dumps[-1]) as f:
            for line in f:
                if line.startswith("totals:"):
                    return int(line.split()[1])
        raise RuntimeError(f"no totals in {dumps[-1]}")

    async def measure(self, expected, body):
        """CPU seconds (and, under callgrind, instructions) Prosody spends on
        `body` until `expected` pushes came in and their answers were
        processed. A full garbage collection first, outside the window."""
        await stats(self.admin)
        start = self.app.pushes
        if self.callgrind:
            self._cg("--dump=before")
        cpu0 = cpu_seconds(self.pid)
        await body()
        if expected and self.pushing:
            await self.app.wait_for(start + expected)
        await self.app.sync()
        cpu = cpu_seconds(self.pid) - cpu0
        ir = None
        if self.callgrind:
            self._cg("--dump=workload")
            ir = self._cg_total()
        return {"cpu": cpu, "pushes": self.app.pushes - start, "ir": ir}

    async def workload(self, w, n):
        """n messages of workload w (w5: one to each hibernated recipient)."""
        if w == "w5":
            recipients = [f"{u}@{HOST}/phone" for u in self.users["w5"]]
            n = len(recipients)

            async def body():
                await send_round_robin(self.send, recipients, n, self.offset[w])
                await asyncio.sleep(1.2)  # the coalescing window is 1 s
        elif w in ("login", "relogin"):
            # (L2: L's users, in the same order, each enabling again just
            # as at its first start, as Conversations and Monal do on every
            # connection)
            users = self.users["login"][self.offset[w]:self.offset[w] + n]

            async def body():
                await self.logins(users, self.offset[w])
        elif w == "w5b":
            # What a busy evening looks like: chat messages to the bare
            # JIDs (archived, and queued for the hibernated session), two
            # to each recipient back to back, coalesced into one push
            # (mostly: the window decides).
            recipients = [f"{u}@{HOST}" for u in self.users["w5"]]
            n = 2 * len(recipients)

            async def body():
                await send_round_robin(self.send, recipients, n, self.offset[w])
                await asyncio.sleep(1.2)
        else:
            recipients = [f"{u}@{HOST}" for u in self.users[w]]

            async def body():
                await send_round_robin(self.send, recipients, n, self.offset[w])
        self.offset[w] += n
        result = await self.measure(n * (PUSHES_PER_MSG[w] or 0), body)
        result["msgs"] = n
        return result

    async def logins(self, users, offset):
        """Each user's first start (`first_start`), LOGINS_IN_FLIGHT at a
        time."""
        queue = list(enumerate(users, offset))

        async def worker():
            while queue:
                i, u = queue.pop(0)
                await first_start(self.p.c2s_port, u, i, self.pushing, self.name)

        await asyncio.gather(*(worker() for _ in range(LOGINS_IN_FLIGHT)))

    async def warm(self, w):
        """One message to each of w's recipients, not measured: the module
        has their registrations in memory (as it has after the first push)
        when the rounds start."""
        recipients = [f"{u}@{HOST}" for u in self.users[w]]
        start = self.app.pushes
        await send_round_robin(self.send, recipients, len(recipients), 10 ** 7)
        if self.pushing:
            await self.app.wait_for(start + len(recipients) * PUSHES_PER_MSG[w])
        await self.app.sync()

    async def set_module(self, load):
        if load == self.module_loaded:
            return
        await self.admin.iq(f"<iq type='set' id='mod' to='{HOST}'><module xmlns='urn:example:bench' "
                            f"name='cloud_notify' load='{str(load).lower()}'/></iq>", "mod")
        self.module_loaded = load

    async def fire(self, count):
        """CPU per archive-message-added event fired in-process, in ns."""
        out = {}
        for user in ("a0", "nobody"):
            reply = await self.admin.iq(f"<iq type='set' id='fire' to='{HOST}'><fire xmlns='urn:example:bench' "
                                        f"user='{user}' count='{count}'/></iq>", "fire")
            reply += await self.admin._read_until(b"/>")
            out[user] = float(re.search(rb"cpu='([\d.]+)'", reply).group(1)) / count * 1e9
        return out

    async def memory(self):
        """RSS and Lua heap once R_MEM users' registrations are loaded into
        the module (a cloud-notify-ping each, which pushes once)."""
        heap0, _ = await stats(self.admin)
        rss0 = rss_kib(self.pid)
        start = self.app.pushes
        mem = self.users["mem"]
        for b in range(0, len(mem), 1000):
            batch = mem[b:b + 1000]
            await self.admin.iq(f"<iq type='set' id='load{b}' to='{HOST}'><ping xmlns='urn:example:bench' "
                                f"users='{' '.join(batch)}' count='{len(batch)}'/></iq>", f"load{b}")
            if self.pushing:
                await self.app.wait_for(start + b + len(batch))
        await self.app.sync()
        heap1, _ = await stats(self.admin)
        # (core: bytes ours' library holds, its allocator's count; 0 for
        # the others. RSS holds besides what malloc keeps of freed memory.)
        return {"rss": rss_kib(self.pid), "rss0": rss0, "heap": heap1 - heap0, "core": stats.core}

    async def leaks(self):
        """Handlers and Lua heap around PINGS pings, each answered."""
        heap_a, handlers_a = await stats(self.admin)
        start = self.app.pushes
        users = " ".join(self.users["w2"][:100])
        cpu0 = cpu_seconds(self.pid)
        for b in range(0, PINGS, 1000):
            count = min(1000, PINGS - b)
            await self.admin.iq(f"<iq type='set' id='ping{b}' to='{HOST}'>"
                                f"<ping xmlns='urn:example:bench' users='{users}' count='{count}'/></iq>", f"ping{b}")
            await self.app.wait_for(start + b + count)
        await self.app.sync()
        cpu = cpu_seconds(self.pid) - cpu0
        heap_b, handlers_b = await stats(self.admin)
        return {"handlers": handlers_b - handlers_a, "heap": heap_b - heap_a, "cpu": cpu,
                "pushes": self.app.pushes - start}

    def stop(self):
        self.p.cleanup()
        if self.callgrind and not os.environ.get("BENCH_KEEP_CALLGRIND"):
            shutil.rmtree(self.cg_dir, ignore_errors=True)
        elif self.callgrind:
            log(f"   (callgrind dumps of {self.name} kept in {self.cg_dir})")


# ---------------------------------------------------------------- runs

# BENCH_BEFORE=DIR: an earlier build of ours (a folder holding
# mod_cloud_notify/, as dist/ does) takes the reference's place, so that a
# change is measured side by side against what it changed ("ref" in the
# report is then that build).
BEFORE = os.environ.get("BENCH_BEFORE")


def variant_specs(refdir):
    ref_paths = [str(refdir), str(PROBE)] if VERSION == "0.12" else [str(PROBE)]
    if BEFORE:
        log(f"(ref is an earlier build of ours: {BEFORE})")
        ref_paths = [BEFORE, str(PROBE)]
    return {
        "none": ([str(PROBE)], ("bench_probe",)),
        "ref": (ref_paths, ("bench_probe", "cloud_notify")),
        "ours": ([str(DIST), str(PROBE)], ("bench_probe", "cloud_notify")),
    }


def log(msg):
    print(msg, flush=True)


async def cpu_runs(specs):
    """The three processes side by side; each workload in ROUNDS rounds,
    each round on every variant in turn."""
    vs = [Variant(name, *spec) for name, spec in specs.items()]
    out = {v.name: {w: [] for w in WORKLOADS} for v in vs}
    try:
        for v in vs:
            await v.start()
        for v in vs:
            await v.hibernate_w5()
        for v in vs:
            out[v.name]["w5_setup_pushes"] = v.app.pushes
        for w in WORKLOADS:
            t = time.time()
            if w in ("w2", "w3", "w4"):
                for v in vs:
                    await v.warm(w)
            for r in range(ROUNDS):
                for v in vs[r % 3:] + vs[:r % 3]:
                    out[v.name][w].append(await v.workload(w, CHUNK.get(w, R5)))
            log(f"   {w}: {ROUNDS} rounds in {time.time() - t:.0f} s")
        if ONLY:
            return out
        # W1 in-process A/B: the same process with the module unloaded and
        # loaded, which takes the differences between processes out; off
        # then on in every round, so that every window follows a toggle,
        # as `callgrind_ab`'s do.
        t = time.time()
        for v in vs:
            out[v.name]["ab"] = {"on": [], "off": []}
        for r in range(ROUNDS):
            for v in vs[1:]:
                for state in (False, True):
                    await v.set_module(state)
                    res = await v.workload("w1", CHUNK["w1"])
                    out[v.name]["ab"]["on" if state else "off"].append(res["cpu"])
        log(f"   W1 A/B: {ROUNDS} rounds in {time.time() - t:.0f} s")
        for v in vs:
            out[v.name]["fire"] = await v.fire(200000)
        cpu0 = {v.name: cpu_seconds(v.pid) for v in vs}
        await asyncio.sleep(3)
        for v in vs:
            out[v.name]["idle"] = (cpu_seconds(v.pid) - cpu0[v.name]) / 3
        t = time.time()
        for v in vs:
            out[v.name]["mem"] = await v.memory()
        log(f"   memory: {time.time() - t:.0f} s")
        t = time.time()
        for v in vs[1:]:
            out[v.name]["leak"] = await v.leaks()
        log(f"   leaks: {time.time() - t:.0f} s")
    finally:
        for v in vs:
            v.stop()
    return out


async def callgrind_ab(v):
    """W1 in the same process with the push module unloaded and loaded in
    strict alternation (off, on, off, …, off: every window right after a
    toggle): instructions per message of each loaded window, against the
    mean of the unloaded windows on either side (a drift cancels). This
    leaves out the differences between processes (the collector's phase,
    what each process read when). (Two windows in a row in one state, as
    off-on then on-off pairs make, read apart by up to 4.5 k instructions
    per message in some processes: a pair then read +0.05 % or +0.59 %.)"""
    off, on = [], []
    for i in range(2 * CG_W1_WINDOWS + 1):
        state = i % 2 == 1
        await v.set_module(state)
        res = await v.workload("w1", CG_AB_N)
        (on if state else off).append(res["ir"] / res["msgs"])
    await v.set_module(True)
    return [((off[i] + off[i + 1]) / 2, x) for i, x in enumerate(on)]


async def callgrind_runs(specs):
    """Instructions per workload, one Prosody under callgrind per variant."""
    out = {}
    for name, spec in specs.items():
        t = time.time()
        v = Variant(name, *spec, callgrind=True)
        try:
            await v.start()
            await v.hibernate_w5()
            res = {}
            for w, n in CG_N.items():
                if w not in WORKLOADS:
                    continue
                if w in ("login", "relogin"):
                    res[w] = await v.workload(w, n)
                    continue
                if w != "w1":
                    await v.warm(w)
                    res[w] = await v.workload(w, n)
                    continue
                runs = [await v.workload(w, n) for _ in range(CG_W1_RUNS)]
                res[w] = {k: sum(x[k] for x in runs) for k in ("cpu", "pushes", "ir", "msgs")}
                res["w1_runs"] = [x["ir"] / x["msgs"] for x in runs]
            for w in [w for w in ("w5", "w5b") if w in WORKLOADS]:
                runs = [await v.workload(w, 0) for _ in range(CG_ROUNDS5)]
                res[w] = {k: sum(x[k] for x in runs) for k in ("cpu", "pushes", "ir", "msgs")}
            if "w1" in WORKLOADS and name != "none":
                res["w1_ab"] = [await callgrind_ab(v)]
            out[name] = res
        finally:
            v.stop()
        log(f"   callgrind {name}: {time.time() - t:.0f} s")
    if "w1" in WORKLOADS:
        for _ in range(CG_AB_PROCS - 1):
            t = time.time()
            names = [name for name in out if name != "none"]
            # (each to its end, even if the other fails: no Prosody left behind)
            more = await asyncio.gather(*(w1_ab_process(name, specs[name]) for name in names),
                                        return_exceptions=True)
            for failed in [x for x in more if isinstance(x, BaseException)][:1]:
                raise failed
            for name, windows in zip(names, more):
                out[name]["w1_ab"].append(windows)
            log(f"   callgrind W1 in-process, another process each ({', '.join(names)}): {time.time() - t:.0f} s")
    return out


async def w1_ab_process(name, spec):
    """W1's in-process windows (callgrind_ab) in a fresh process, after
    one window of warm-up (the main process's W1 runs are its warm-up)."""
    v = Variant(name, *spec, callgrind=True)
    try:
        await v.start()
        await v.workload("w1", CG_AB_N)
        return await callgrind_ab(v)
    finally:
        v.stop()


# ---------------------------------------------------------------- report

def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def report_cpu(cpu, out):
    log("")
    log(f"Prosody {VERSION}. CPU time of the Prosody process (utime+stime, ns resolution), three processes side by "
        f"side, {ROUNDS} rounds each on every variant in turn; medians over rounds. BENCH_SCALE={SCALE:g}")
    log(f"{'workload':<30}{'msgs':>6}{'pushes':>8}{'none µs/msg':>13}{'Δref µs':>10}{'Δours µs':>10}"
        f"{'ours/ref':>10}{'spread':>14}")
    for w, label in WORKLOADS.items():
        rounds = list(zip(cpu["none"][w], cpu["ref"][w], cpu["ours"][w]))
        per = lambda x: x["cpu"] / x["msgs"] * 1e6  # noqa: E731
        base = median([per(n) for n, _, _ in rounds])
        d_ref = [per(r) - per(n) for n, r, _ in rounds]
        d_ours = [per(o) - per(n) for n, _, o in rounds]
        ratios = sorted(o / r for r, o in zip(d_ref, d_ours) if r > 0) if w != "w1" else []
        dr, do = median(d_ref), median(d_ours)
        msgs = sum(n["msgs"] for n, _, _ in rounds)
        pr, po = sum(r["pushes"] for _, r, _ in rounds), sum(o["pushes"] for _, _, o in rounds)
        ratio = do / dr if dr > 0 else float("nan")
        spread = f"{ratios[len(ratios) // 4]:.2f}–{ratios[(3 * len(ratios)) // 4]:.2f}" if ratios else ""
        log(f"{label:<30}{msgs:>6}{po:>8}{base:>13.0f}{dr:>10.0f}{do:>10.0f}{ratio:>10.2f}{spread:>14}")
        if PUSHES_PER_MSG[w] is None:
            log(f"   (pushes: ref {pr}, ours {po}, for {msgs} messages)")
        elif pr != po or po != msgs * PUSHES_PER_MSG[w]:
            log(f"   !! push counts: expected {msgs * PUSHES_PER_MSG[w]}, ref {pr}, ours {po}")
        out["w1_cpu" if w == "w1" else w] = do / base * 100 if w == "w1" else ratio
    if ONLY:
        return
    log(f"(Δ per message; W3 makes 5 pushes per message. 'spread': quartiles of the per-round ratio. "
        f"Pushes at the start of hibernation, before W5: ref {cpu['ref']['w5_setup_pushes']}, "
        f"ours {cpu['ours']['w5_setup_pushes']})")
    ab = {}
    for k in ("ref", "ours"):
        on, off = cpu[k]["ab"]["on"], cpu[k]["ab"]["off"]
        ab[k] = (median(on) - median(off)) / median(off) * 100
    log(f"W1: Δ(ours) = {out['w1_cpu']:+.1f}% of CPU(none) across processes; in-process A/B (module loaded vs "
        f"unloaded, {ROUNDS}×{CHUNK['w1']} messages each): ref {ab['ref']:+.1f}%, ours {ab['ours']:+.1f}%")
    fire = {k: cpu[k]["fire"] for k in cpu}
    log("archive-message-added fired in-process, CPU per event (recipient online without registration / "
        "without session): " + ", ".join(f"{k} {f['a0']:.0f} / {f['nobody']:.0f} ns" for k, f in fire.items()))
    log("Idle CPU: " + ", ".join(f"{k} {v['idle'] * 1e3:.1f} ms/s" for k, v in cpu.items()))

    out["w1_ab"] = ab["ours"]


def report_ir(ir, out):
    log("")
    log(f"Instructions executed by Prosody (callgrind, one process per variant (W1 in-process: {CG_AB_PROCS}), "
        "repeatable):")
    log(f"{'workload':<30}{'msgs':>6}{'pushes':>8}{'none kIr/msg':>14}{'Δref kIr':>10}{'Δours kIr':>11}"
        f"{'ours/ref':>10}")
    for w, label in WORKLOADS.items():
        n, r, o = ir["none"][w], ir["ref"][w], ir["ours"][w]
        msgs = n["msgs"]
        base = n["ir"] / msgs / 1e3
        dr, do = (r["ir"] - n["ir"]) / msgs / 1e3, (o["ir"] - n["ir"]) / msgs / 1e3
        ratio = do / dr if dr > 0 else float("nan")
        log(f"{label:<30}{msgs:>6}{o['pushes']:>8}{base:>14.0f}{dr:>10.1f}{do:>11.1f}{ratio:>10.2f}")
        if PUSHES_PER_MSG[w] is not None and (r["pushes"] != o["pushes"] or o["pushes"] != msgs * PUSHES_PER_MSG[w]):
            log(f"   !! push counts: expected {msgs * PUSHES_PER_MSG[w]}, ref {r['pushes']}, "
                f"ours {o['pushes']}")
        # W1's figure is this one: the only measurement here that resolves 1%.
        out["w1" if w == "w1" else f"{w}_ir"] = do / base * 100 if w == "w1" else ratio
    if "w1" in out:
        # (each run against none's run in the same order; the median of those)
        def runs(k):
            pairs = zip(ir[k]["w1_runs"], ir["none"]["w1_runs"])
            return sorted((x - n) / n * 100 for x, n in pairs)
        ours, ref = runs("ours"), runs("ref")
        out["w1_procs"] = median(ours)
        log(f"W1 across processes: Δ(ours) = {median(ours):+.2f}% of none's instructions (median of "
            f"{len(ours)} runs, {ours[0]:+.2f} to {ours[-1]:+.2f}); Δ(ref) = {median(ref):+.2f}% "
            f"({ref[0]:+.2f} to {ref[-1]:+.2f})")

        # (the same process, the module unloaded and loaded: the headline;
        # each process's median, then the median of those)
        def ab(k):
            return sorted(median([(on - off) / off * 100 for off, on in proc]) for proc in ir[k]["w1_ab"])
        ours, ref = ab("ours"), ab("ref")
        out["w1"] = median(ours)
        windows = len(ir["ours"]["w1_ab"][0])
        log(f"W1 in-process (module unloaded/loaded in turn, {windows} loaded windows of {CG_AB_N} messages in each "
            f"of {len(ours)} processes): Δ(ours) = {out['w1']:+.2f}% (process medians {fmt_pcts(ours)}; "
            f"target ≤ 0.5%); Δ(ref) = {median(ref):+.2f}% ({fmt_pcts(ref)})")


def fmt_pcts(values):
    return ", ".join(f"{x:+.2f}" for x in values)


def report_memory(cpu, out):
    log("")
    mem = {k: cpu[k]["mem"] for k in cpu}
    d_ref, d_ours = mem["ref"]["rss"] - mem["none"]["rss"], mem["ours"]["rss"] - mem["none"]["rss"]
    out["rss"] = d_ours / d_ref if d_ref > 0 else float("nan")
    log(f"Memory with {R_MEM} users' registrations loaded: RSS none {mem['none']['rss'] / 1024:.1f} MiB, "
        f"ref {d_ref / 1024:+.1f} MiB, ours {d_ours / 1024:+.1f} MiB over none (ours/ref {out['rss']:.2f}); "
        f"Lua heap growth none {mem['none']['heap'] / 1024:+.1f} MiB, ref {mem['ref']['heap'] / 1024:+.1f} MiB, "
        f"ours {mem['ours']['heap'] / 1024:+.1f} MiB")
    # What each holds live (Lua heap growth, plus ours' library's own count):
    # RSS moves between runs with what malloc keeps of the loads' freed
    # memory; this does not.
    live = {k: mem[k]["heap"] + mem[k].get("core", 0) / 1024 for k in ("ref", "ours")}
    out["live"] = live["ours"] / live["ref"] if live["ref"] > 0 else float("nan")
    log(f"Held live (Lua heap growth + the library's count): ref {live['ref'] / 1024:+.1f} MiB, ours "
        f"{live['ours'] / 1024:+.1f} MiB (ours/ref {out['live']:.2f})")
    for k in ("ref", "ours"):
        lk = cpu[k]["leak"]
        pushes = max(lk["pushes"], 1)
        log(f"{PINGS} pings answered, {k:>4}: {lk['pushes']} pushes, {lk['handlers']:+d} handlers "
            f"({lk['handlers'] / pushes:.2f}/push), Lua heap {lk['heap']:+.0f} KiB "
            f"({lk['heap'] * 1024 / pushes:+.1f} B/push), {lk['cpu'] / pushes * 1e6:.0f} µs CPU/push")
    lk = cpu["ours"]["leak"]
    out["handlers_per_push"] = lk["handlers"] / max(lk["pushes"], 1)
    out["heap_per_push"] = lk["heap"] * 1024 / max(lk["pushes"], 1)


def report(cpu, ir):
    out = {}
    if cpu:
        report_cpu(cpu, out)
    if ir:
        report_ir(ir, out)
    if cpu and not ONLY:
        report_memory(cpu, out)
    formats = [("w1", "{:.2f}%"), ("w1_procs", "{:.2f}%"), ("w1_cpu", "{:.2f}%"), ("w1_ab", "{:.2f}%")]
    formats += [(w, "{:.2f}") for w in ("w2", "w3", "w4", "w5", "w5b", "login", "relogin")]
    formats += [(w + "_ir", "{:.2f}") for w in ("w2", "w3", "w4", "w5", "w5b", "login", "relogin")]
    formats += [("rss", "{:.2f}"), ("live", "{:.2f}"), ("handlers_per_push", "{:.3f}"), ("heap_per_push", "{:.1f}B")]
    log("RESULT " + " ".join(f"{k}={fmt.format(out[k])}" for k, fmt in formats if k in out))


def main():
    # The Prosodys' data (internal storage: offline messages, archives) on
    # tmpfs, so that disk writeback does not land in one variant's round.
    shm = os.environ.get("BENCH_TMPDIR", "/dev/shm")
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        tempfile.tempdir = shm
    if not REFERENCE.exists():
        sys.exit("The reference module is missing: apt-get install prosody-modules (make deps)")
    if CALLGRIND and not shutil.which("callgrind_control"):
        sys.exit("valgrind is missing: apt-get install valgrind (make bench installs it), or BENCH_CALLGRIND=0")
    refdir = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    (refdir / "mod_cloud_notify").symlink_to(REFERENCE)
    specs = variant_specs(refdir)
    try:
        cpu = ir = None
        if CPU_RUNS:
            t = time.time()
            log(f"== CPU: none, ref and ours side by side, {ROUNDS} rounds")
            cpu = asyncio.run(cpu_runs(specs))
            log(f"   done in {time.time() - t:.0f} s")
        if CALLGRIND:
            t = time.time()
            log("== instructions: each variant under callgrind")
            only = os.environ.get("BENCH_VARIANTS", "").split()
            ir = asyncio.run(callgrind_runs({k: v for k, v in specs.items() if not only or k in only}))
            log(f"   done in {time.time() - t:.0f} s")
            if len(ir) < 3:  # (a quick look at one variant: its totals only)
                log("IR " + " ".join(f"{k}.{w}={x['ir']}/{x['msgs']}" for k, r in ir.items() for w, x in r.items()
                                 if isinstance(x, dict)))
                log("W1 runs (Ir/msg) " + " ".join(f"{k}={[round(x) for x in r['w1_runs']]}"
                                                   for k, r in ir.items() if "w1_runs" in r))
                log("W1 in-process (Ir/msg: the unloaded windows either side, mean; the loaded one; each process) "
                    + " ".join(f"{k}={[[(round(off), round(on)) for off, on in p] for p in r['w1_ab']]}"
                               for k, r in ir.items() if "w1_ab" in r))
                return
    finally:
        shutil.rmtree(refdir, ignore_errors=True)
    report(cpu, ir)


if __name__ == "__main__":
    main()
