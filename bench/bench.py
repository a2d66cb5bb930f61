#!/usr/bin/env python3
"""`make bench`: the module's cost to Prosody, side by side with the Lua
reference, in one run.

A real Prosody 0.12.3 is started three times, fresh each time, with the same
generated config (mod_mam, mod_smacks, mod_offline, internal storage, an
app-server component answering every publish with a result), differing only
in the push module: none (the floor), ref (Debian's prosody-modules
mod_cloud_notify) and ours (dist/mod_cloud_notify). A raw-socket load
generator (pre-authenticated c2s streams writing pre-built XML) drives the
workloads; what is measured is the Prosody process's CPU time
(utime + stime from /proc), not wall time.

The module's cost is Δ = CPU(variant) − CPU(none). The last line is
machine-readable. BENCH_SCALE (default 1) scales the message counts;
BENCH_ROUNDS (default 1) repeats the three runs, alternating their order,
and reports medians.
"""

import asyncio
import base64
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))
from harness import (COMPONENT_SECRET, DIST, PASSWORD, Prosody,  # noqa: E402
                     encode_host, lua_value)

PROBE = ROOT / "bench/modules"
REFERENCE = Path("/usr/lib/prosody/modules/mod_cloud_notify")
HOST = "localhost"
APP = "push.localhost"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
CLK = os.sysconf("SC_CLK_TCK")


def scaled(n):
    return max(10, int(n * SCALE))


N1 = scaled(6000)         # W1 messages (no registrations)
R2, N2 = 500, scaled(2000)  # W2 recipients, messages (1 registration each)
R3, N3 = 200, scaled(1000)  # W3 recipients, messages (5 registrations each)
R4, N4 = 100, scaled(2000)  # W4 recipients, messages (MAM path)
R5 = 200                    # W5 hibernated recipients,
ROUNDS5 = max(2, int(5 * SCALE))  # one message each per round, rounds 1.5 s apart
R_MEM = int(os.environ.get("BENCH_USERS", "20000"))
PINGS = int(os.environ.get("BENCH_PINGS", "50000"))
SENDERS = 10


# ---------------------------------------------------------------- measuring

def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- raw XMPP

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


class AppServer:
    """The push app server: a raw component answering every publish."""

    def __init__(self, port):
        self.port = port
        self.pushes = 0

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
                buf = buf[(end + 5) if end >= 0 else m.end():]
                if attrs.get(b"type") == b"set":
                    self.pushes += 1
                    out.append(b"<iq type='result' id='%s' to='%s' from='%s'/>" % (
                        attrs[b"id"], attrs[b"from"], attrs[b"to"]))
            if out:
                self.writer.write(b"".join(out))

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


def make_users(p, names, nodes=0):
    data = p.dir / "data" / encode_host(HOST)
    for name in names:
        write_lua(data / "accounts" / f"{name}.dat", {"password": PASSWORD})
        if nodes:
            regs = {f"{APP}<{name}-{i}": {"jid": APP, "node": f"{name}-{i}", "timestamp": 1700000000 + i}
                    for i in range(nodes)}
            write_lua(data / "cloud_notify" / f"{name}.dat", regs)


def chat(to, i):
    return (f"<message to='{to}' type='chat' id='b{i}'><body>Benchmark message number {i}</body>"
            f"</message>").encode()


# ---------------------------------------------------------------- a run

async def send_round_robin(senders, recipients, n, offset=0):
    for i in range(n):
        senders[i % len(senders)].send(chat(recipients[i % len(recipients)], offset + i))
        if i % 200 == 199:
            await asyncio.gather(*(s.writer.drain() for s in senders))
    await asyncio.gather(*(s.sync() for s in senders))


async def measure(p, app, expected, body, admin=None):
    """CPU seconds Prosody spends on `body` until `expected` pushes came in.
    With `admin`, a full garbage collection first (outside the window), so
    every variant starts a workload from the same collector state."""
    if admin is not None:
        await stats(admin)
    start_pushes = app.pushes
    cpu0 = cpu_seconds(p.proc.pid)
    await body()
    if expected is not None:
        await app.wait_for(start_pushes + expected)
    await asyncio.sleep(0.3)
    return cpu_seconds(p.proc.pid) - cpu0, app.pushes - start_pushes


async def stats(stream, n=[0]):
    n[0] += 1
    reply = await stream.iq(f"<iq type='get' id='stats{n[0]}' to='{HOST}'><stats xmlns='urn:example:bench'/></iq>",
                            f"stats{n[0]}")
    reply += await stream._read_until(b"/>")
    heap = float(re.search(rb"heap='([\d.]+)'", reply).group(1))
    handlers = int(re.search(rb"handlers='(\d+)'", reply).group(1))
    return heap, handlers


async def run_variant(name, plugin_paths, modules):
    p = Prosody(modules=modules, plugin_paths=plugin_paths, options={
        "smacks_hibernation_time": 600,
        "push_registration_cache_size": R_MEM + 5000,
    })
    p.options["log"] = {"info": str(p.log_path)}  # debug logging would dwarf what we measure
    # Users: senders, and per workload their recipients (registrations
    # written straight into the store, in the reference module's layout).
    senders = [f"s{i}" for i in range(SENDERS)]
    w1 = [f"a{i}" for i in range(50)]
    w2 = [f"b{i}" for i in range(R2)]
    w3 = [f"c{i}" for i in range(R3)]
    w4 = [f"d{i}" for i in range(R4)]
    w5 = [f"e{i}" for i in range(R5)]
    mem = [f"m{i}" for i in range(R_MEM)]
    make_users(p, senders + w1 + w5 + ["admin"])
    make_users(p, w2 + w4 + mem, nodes=1)
    make_users(p, w3, nodes=5)
    p.start(timeout=60)
    pid = p.proc.pid
    result = {}
    try:
        app = await AppServer(p.component_port).start()
        send = [await Stream(p.c2s_port, s, "load").connect(presence=False) for s in senders]
        for s in send:
            s.start_draining()
        admin = await Stream(p.c2s_port, "admin", "probe").connect(presence=False)

        # W1: online recipients without registrations.
        online = [await Stream(p.c2s_port, u, "phone").connect() for u in w1]
        for s in online:
            s.start_draining()
        await asyncio.sleep(0.5)
        to_w1 = [f"{u}@{HOST}" for u in w1]
        await send_round_robin(send, to_w1, 500)  # warm-up, not measured
        # The smallest of three runs: W1's target is a 1% difference.
        runs = [(await measure(p, app, None, lambda: send_round_robin(send, to_w1, N1), admin))[0]
                for _ in range(3)]
        result["w1"] = (min(runs), 0, N1)
        # In-process A/B: the same Prosody with the module unloaded and
        # loaded again, alternately, which takes the differences between
        # processes out of the comparison.
        if name != "none":
            on, off = 0.0, 0.0
            for _ in range(3):
                await admin.iq(f"<iq type='set' id='unload' to='{HOST}'><module xmlns='urn:example:bench' "
                               f"name='cloud_notify' load='false'/></iq>", "unload")
                off += (await measure(p, app, None, lambda: send_round_robin(send, to_w1, N1), admin))[0]
                await admin.iq(f"<iq type='set' id='load' to='{HOST}'><module xmlns='urn:example:bench' "
                               f"name='cloud_notify' load='true'/></iq>", "load")
                on += (await measure(p, app, None, lambda: send_round_robin(send, to_w1, N1), admin))[0]
            result["w1_ab"] = (on, off)

        # W2: offline recipients, one registration each.
        result["w2"] = (*await measure(p, app, N2 if name != "none" else None,
                                       lambda: send_round_robin(send, [f"{u}@{HOST}" for u in w2], N2), admin), N2)
        # W3: offline recipients, five registrations each.
        result["w3"] = (*await measure(p, app, 5 * N3 if name != "none" else None,
                                       lambda: send_round_robin(send, [f"{u}@{HOST}" for u in w3], N3), admin), N3)
        # W4: one device online (no push), one registration of a device gone: MAM path.
        devices = [await Stream(p.c2s_port, u, "laptop").connect() for u in w4]
        for s in devices:
            s.start_draining()
        await asyncio.sleep(0.5)
        result["w4"] = (*await measure(p, app, N4 if name != "none" else None,
                                       lambda: send_round_robin(send, [f"{u}@{HOST}" for u in w4], N4), admin), N4)

        # W5: hibernated smacks sessions with push enabled; one message each
        # per round, rounds 1.5 s apart (each round coalesces into one push).
        setup_start = app.pushes
        for u in w5:
            s = await Stream(p.c2s_port, u, "phone").connect(presence=True, smacks=True)
            await s.iq(f"<iq type='set' id='push1'><enable xmlns='urn:xmpp:push:0' jid='{APP}' node='{u}'/></iq>",
                       "push1")
            await asyncio.sleep(0.05)
            s.send(b"<a xmlns='urn:xmpp:sm:3' h='2'/>")  # own presence + the IQ result
            await s.writer.drain()
            await asyncio.sleep(0.05)
            s.kill()
        await asyncio.sleep(2.0)
        result["w5_setup_pushes"] = app.pushes - setup_start

        # Each round is measured over the same window in every variant: the
        # messages, then 1.4 s (the coalescing timer fires after 1 s).
        cpu5, pushes5 = 0.0, 0
        for r in range(ROUNDS5):
            async def one_round(r=r):
                await send_round_robin(send, [f"{u}@{HOST}/phone" for u in w5], R5, offset=r * R5)
                await asyncio.sleep(1.1)
            cpu, pushes = await measure(p, app, R5 if name != "none" else None, one_round, admin)
            cpu5, pushes5 = cpu5 + cpu, pushes5 + pushes
        n5 = R5 * ROUNDS5
        result["w5"] = (cpu5, pushes5, n5)
        # Idle: what Prosody burns doing nothing, for scale.
        cpu_idle = cpu_seconds(pid)
        await asyncio.sleep(3)
        result["idle"] = (cpu_seconds(pid) - cpu_idle) / 3

        # Memory: R_MEM users, one registration each, each loaded into the
        # module by a cloud-notify-ping (which also pushes once).
        heap0, _ = await stats(admin)
        rss0 = rss_kib(pid)
        start = app.pushes
        for b in range(0, R_MEM, 1000):
            batch = mem[b:b + 1000]
            await admin.iq(f"<iq type='set' id='load{b}' to='{HOST}'><ping xmlns='urn:example:bench' "
                           f"users='{' '.join(batch)}' count='{len(batch)}'/></iq>", f"load{b}")
            if name != "none":
                await app.wait_for(start + b + len(batch))
        heap1, _ = await stats(admin)
        result["mem"] = (rss_kib(pid), rss0, heap1, heap0)

        # Leaks: handlers and Lua heap around PINGS pings, each answered.
        if name != "none":
            heap_a, handlers_a = await stats(admin)
            start = app.pushes
            users = " ".join(w2[:100])
            cpu0 = cpu_seconds(pid)
            for b in range(0, PINGS, 1000):
                count = min(1000, PINGS - b)
                await admin.iq(f"<iq type='set' id='ping{b}' to='{HOST}'>"
                               f"<ping xmlns='urn:example:bench' users='{users}' count='{count}'/></iq>", f"ping{b}")
                await app.wait_for(start + b + count)
            cpu_pings = cpu_seconds(pid) - cpu0
            await asyncio.sleep(0.5)
            heap_b, handlers_b = await stats(admin)
            result["leak"] = (handlers_b - handlers_a, heap_b - heap_a, cpu_pings, app.pushes - start)
    finally:
        p.cleanup()
    return result


def main():
    if not REFERENCE.exists():
        sys.exit("The reference module is missing: apt-get install prosody-modules (make deps)")
    refdir = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    (refdir / "mod_cloud_notify").symlink_to(REFERENCE)
    variants = {
        "none": ([str(PROBE)], ("bench_probe",)),
        "ref": ([str(refdir), str(PROBE)], ("bench_probe", "cloud_notify")),
        "ours": ([str(DIST), str(PROBE)], ("bench_probe", "cloud_notify")),
    }
    runs = {name: [] for name in variants}
    rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
    try:
        order = os.environ.get("BENCH_ORDER", "none ref ours").split()
        for r in range(rounds):
            # Alternate the order between rounds, so that a slow spell of
            # the machine does not always fall on the same variant.
            for name in (order if r % 2 == 0 else order[::-1]):
                paths, modules = variants[name]
                t = time.time()
                print(f"== {name} (round {r + 1}/{rounds}): running…", flush=True)
                runs[name].append(asyncio.run(run_variant(name, paths, modules)))
                print(f"   done in {time.time() - t:.0f} s", flush=True)
    finally:
        shutil.rmtree(refdir, ignore_errors=True)
    report({name: median_result(rs) for name, rs in runs.items()})


def median_result(rs):
    """Per field, the median over rounds (of each number in a tuple)."""
    def med(values):
        values = sorted(values)
        return values[len(values) // 2]
    out = {}
    for key, first in rs[0].items():
        if isinstance(first, tuple):
            out[key] = tuple(med([r[key][i] for r in rs]) for i in range(len(first)))
        else:
            out[key] = med([r[key] for r in rs])
    return out


def report(r):
    none, ref, ours = r["none"], r["ref"], r["ours"]
    print()
    print(f"Prosody 0.12.3, CPU time of the Prosody process (utime+stime), BENCH_SCALE={SCALE:g}")
    print(f"{'workload':<34}{'msgs':>6}{'pushes':>8}{'none µs/msg':>13}{'Δref µs':>10}{'Δours µs':>10}{'ours/ref':>10}")
    labels = {
        "w1": "W1 online, no registration",
        "w2": "W2 offline, 1 registration",
        "w3": "W3 offline, 5 registrations",
        "w4": "W4 MAM, 1 gone device",
        "w5": "W5 hibernated, coalesced",
    }
    out = {}
    for w, label in labels.items():
        cn, _, msgs = none[w]
        cr, pr, _ = ref[w]
        co, po, _ = ours[w]
        d_ref, d_ours = (cr - cn) / msgs * 1e6, (co - cn) / msgs * 1e6
        ratio = d_ours / d_ref if d_ref > 0 else float("nan")
        print(f"{label:<34}{msgs:>6}{po:>8}{cn / msgs * 1e6:>13.0f}{d_ref:>10.0f}{d_ours:>10.0f}{ratio:>10.2f}")
        if w != "w1" and pr != po:
            print(f"   !! push counts differ: ref {pr}, ours {po}")
        out[w] = (d_ours / (cn / msgs * 1e6) * 100) if w == "w1" else ratio
    print(f"(W3 has 5 pushes per message; Δ per message. W5 hibernation pushes: ref "
          f"{ref['w5_setup_pushes']}, ours {ours['w5_setup_pushes']})")
    print(f"W1: Δ(ours) = {out['w1']:+.1f}% of CPU(none) (target ≤ 1%); Δ(ref) = "
          f"{(ref['w1'][0] - none['w1'][0]) / none['w1'][0] * 100:+.1f}%")
    ab = {}
    for k in ("ref", "ours"):
        on, off = r[k]["w1_ab"]
        ab[k] = (on - off) / off * 100
    print(f"W1 in-process A/B (module loaded vs unloaded, 3×{N1} messages each, same process): "
          f"ref {ab['ref']:+.1f}%, ours {ab['ours']:+.1f}%")
    print("Idle CPU: " + ", ".join(f"{k} {v['idle'] * 1e3:.1f} ms/s" for k, v in r.items()))
    print()
    rss = {k: v["mem"][0] for k, v in r.items()}
    heap = {k: v["mem"][2] - v["mem"][3] for k, v in r.items()}
    d_rss_ref, d_rss_ours = rss["ref"] - rss["none"], rss["ours"] - rss["none"]
    print(f"Memory with {R_MEM} users' registrations loaded: RSS none {rss['none'] / 1024:.1f} MiB, "
          f"ref {d_rss_ref / 1024:+.1f} MiB, ours {d_rss_ours / 1024:+.1f} MiB over none "
          f"(ours/ref {d_rss_ours / d_rss_ref if d_rss_ref else float('nan'):.2f}); "
          f"Lua heap growth none {heap['none'] / 1024:+.1f} MiB, ref {heap['ref'] / 1024:+.1f} MiB, "
          f"ours {heap['ours'] / 1024:+.1f} MiB")
    for k in ("ref", "ours"):
        dh, dheap, cpu, pushes = r[k]["leak"]
        print(f"{PINGS} pings answered, {k:>4}: {pushes} pushes, {dh:+d} handlers "
              f"({dh / max(pushes, 1):.2f}/push), Lua heap {dheap:+.0f} KiB "
              f"({dheap * 1024 / max(pushes, 1):+.1f} B/push), {cpu / max(pushes, 1) * 1e6:.0f} µs CPU/push")
    dh, dheap, _, pushes = ours["leak"]
    print(f"RESULT w1={out['w1']:.2f}% w1_ab={ab['ours']:.2f}% w2={out['w2']:.2f} w3={out['w3']:.2f} w4={out['w4']:.2f} "
          f"w5={out['w5']:.2f} rss={d_rss_ours / d_rss_ref if d_rss_ref else float('nan'):.2f} "
          f"handlers_per_push={dh / max(pushes, 1):.3f} heap_per_push={dheap * 1024 / max(pushes, 1):.1f}B")


if __name__ == "__main__":
    main()
