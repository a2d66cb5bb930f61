#!/usr/bin/env python3
"""`make bench`, part 2: memory, latency and scale along the path a real
server takes, side by side with the reference, in one run.

Three Prosodys (no push module, the reference, ours) run at the same time;
every part goes in BENCH_SCALE_ROUNDS rounds (5), each round on each server
in turn (the order rotating), so a slow spell of a shared machine falls on
all three alike; each figure is reported as the median of the rounds with
their range. The logins and their pushes go finer: within a round the
servers take turns of BENCH_LOGIN_TURN users (100, about half a second
each), and so do the latency samples, in blocks of BENCH_TURN messages
(100, a second at 100/s), so that even a short slow spell falls on all of
them alike.

1. Logins (internal storage). BENCH_LOGIN_USERS users (10,000) each log in
   over c2s, send presence, enable one registration in-band with the
   publish-options real clients send (Conversations' secret, Monal's push
   module, Siskin's encryption key, in turn) and close the stream cleanly;
   then each gets one chat message while offline (a no-store hint keeps it
   out of the archive; WINDOW messages in flight), each pushing once,
   answered with a result; then a full garbage collection. After the
   rounds (and their latency samples), in rounds again, the same users
   log in and enable again, just as at their first start (L2: what
   Conversations and Monal do on every connection; each gets the offline
   message of its push, alike on every server). Reported: memory
   (RssAnon: resident, not counting the pages of the program and
   libraries) growth per user over the server without the module, CPU per
   login (first and again) and per push, and the latency from a
   message's write to its publish's arrival at the app server (p50, p99)
   at BENCH_RATE messages per second (500).
2. PostgreSQL (`storage = "sql"`, a private server; each Prosody its own
   database). BENCH_PG_USERS users (100,000) with one registration each,
   written into the database beforehand, and a registration cache of a
   tenth of them. Every user gets one offline message (as fast as Prosody
   takes them, a window in flight); then BENCH_PG_LATENCY (5,000) more in
   all, to users drawn at random at BENCH_PG_RATE (100/s, a rate at which
   the server without the module keeps its p99 under 100 ms). Reported:
   CPU per message, store reads and writes per message (key-value gets and
   sets, counted by pg_stat_statements, over the server without the
   module: what the module itself reads and writes), the latency, and
   what a cache miss waits for (a get of the module's store, timed inside
   each server with nothing else: `mod_bench_probe`). A fourth
   server, ours with a cache of every user (`ours_all`), runs beside them:
   the reference keeps every user it ever read, so its sample reads
   nothing, and that row compares the two on the same footing. The
   uniform sample has no locality for a bounded cache to use; real
   traffic falls on some users far more than on others, so after the
   rounds a skewed sample follows (Zipf's law: the user of rank n weighted
   1/n, a user drawn again as it comes): BENCH_PG_WARM messages (three
   times the cache) untimed to bring the caches to their steady state,
   then in rounds BENCH_PG_LATENCY more, timed.

BENCH_PROSODY picks the version (0.12 or 13; on 13 the reference is the
core's own mod_cloud_notify). The last line is machine-readable.
"""

import asyncio
import functools
import itertools
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from bench import (APP, BEFORE, HOST, PROBE, REFERENCE, AppServer, Stream, cpu_seconds, first_start, log,  # noqa: E402
                   rss_kib, stats, write_lua)
from harness import DIST, PASSWORD, Postgres, Prosody, encode_host  # noqa: E402

VERSION = os.environ.get("BENCH_PROSODY", "0.12")
LOGIN_USERS = int(os.environ.get("BENCH_LOGIN_USERS", "10000"))
PG_USERS = int(os.environ.get("BENCH_PG_USERS", "100000"))
PG_LATENCY = int(os.environ.get("BENCH_PG_LATENCY", "5000"))
RATE = float(os.environ.get("BENCH_RATE", "500"))
PG_RATE = float(os.environ.get("BENCH_PG_RATE", "100"))
# ours' push_registration_cache_size on PostgreSQL (the reference keeps
# every user it read, whatever the option): a tenth of the users
PG_CACHE = int(os.environ.get("BENCH_PG_CACHE", "0")) or max(PG_USERS // 10, 100)
# skewed messages sent before the skewed sample is timed, to bring the
# caches to their steady state (a cache of a tenth of the users takes a few
# tens of thousands under Zipf's law)
PG_WARM = int(os.environ.get("BENCH_PG_WARM", "0")) or 3 * PG_CACHE
ROUNDS = max(3, int(os.environ.get("BENCH_SCALE_ROUNDS", "5")))
PARALLEL = 32  # logins in flight
WINDOW = 200  # messages in flight in the PostgreSQL fill
# timed messages a server gets in a row before the next one's turn (at 100/s,
# a second): a slow spell of the shared machine falls on every server alike
TURN = max(1, int(os.environ.get("BENCH_TURN", "100")))
# logins (and their pushes) a server gets in a row in Part 1 before the next
# one's turn (about half a second of a server's CPU)
LOGIN_TURN = max(1, int(os.environ.get("BENCH_LOGIN_TURN", "100")))
SENDERS = 10
# key-value gets timed in each server after Part 2 (what a cache miss reads)
GETS = 1000


def variants(refdir):
    """name -> (plugin_paths, modules)"""
    ref_paths = [str(refdir), str(PROBE)] if VERSION == "0.12" else [str(PROBE)]
    if BEFORE:  # (an earlier build of ours in the reference's place: bench.py)
        log(f"(ref is an earlier build of ours: {BEFORE})")
        ref_paths = [BEFORE, str(PROBE)]
    return {
        "none": ([str(PROBE)], ("bench_probe",)),
        "ref": (ref_paths, ("bench_probe", "cloud_notify")),
        "ours": ([str(DIST), str(PROBE)], ("bench_probe", "cloud_notify")),
    }


def anon_kib(pid):
    """The process's own memory (RssAnon: without the pages of the program
    and the libraries it maps, which grow with the code run, not the users)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return rss_kib(pid)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def message(to, i):
    return (f"<message to='{to}' type='chat' id='m{i}'><body>Scale message {i}</body>"
            f"<no-store xmlns='urn:xmpp:hints'/></message>").encode()


class Server:
    """One Prosody of the run, with the app server and the senders."""

    def __init__(self, name, plugin_paths, modules, options):
        self.name = name
        self.pushing = name != "none"
        self.p = Prosody(modules=modules, plugin_paths=plugin_paths, version=VERSION, options=options)
        self.p.options["log"] = {"info": str(self.p.log_path)}
        self.arrivals = {}

    def make_accounts(self, names):
        data = self.p.dir / "data" / encode_host(HOST)
        for name in names:
            write_lua(data / "accounts" / f"{name}.dat", {"password": PASSWORD})

    async def start(self):
        self.p.start(timeout=120)
        self.app = await AppServer(self.p.component_port, self.arrivals).start()
        self.senders = [await Stream(self.p.c2s_port, f"s{i}", "load").connect(presence=False)
                        for i in range(SENDERS)]
        for s in self.senders:
            s.start_draining()
        self.admin = await Stream(self.p.c2s_port, "admin", "probe").connect(presence=False)
        return self

    @property
    def pid(self):
        return self.p.proc.pid

    async def gc(self):
        """A full collection; returns (RSS KiB, Lua heap KiB); the bytes
        ours' Rust side holds in self.core."""
        heap, _ = await stats(self.admin)
        self.core = stats.core
        if os.environ.get("BENCH_TRIM"):
            subprocess.run(["gdb", "-p", str(self.pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                           capture_output=True)
        return anon_kib(self.pid), heap

    async def login(self, user):
        """Log in, presence, enable push in-band, close the stream cleanly."""
        await first_start(self.p.c2s_port, user, int(user.lstrip("uw")), self.pushing, self.name)

    async def logins(self, users):
        sem = asyncio.Semaphore(PARALLEL)

        async def one(u):
            async with sem:
                await self.login(u)

        await asyncio.gather(*(one(u) for u in users))

    async def paced(self, users, rate, offset):
        """One message to each of `users` (a user may come more than once),
        at `rate` per second; returns the write times by user, in order.
        Without a push module, a ping follows each message on its stream,
        and its answer (the message processed, in order) stands for the
        push's arrival: the server's own latency."""
        sent, pongs = {}, []

        async def processed(sender, u):
            await sender.sync()
            self.arrivals.setdefault(u, []).append(time.monotonic())

        t0 = time.monotonic()
        for i, u in enumerate(users):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # (a user's messages on one stream, so they are handled in order)
            sender = self.senders[int(u[1:]) % SENDERS]
            sender.send(message(f"{u}@{HOST}", offset + i))
            sent.setdefault(u, []).append(time.monotonic())
            if not self.pushing:
                pongs.append(asyncio.ensure_future(processed(sender, u)))
        await asyncio.gather(*pongs, *(s.sync() for s in self.senders))
        return sent

    async def windowed(self, users, offset):
        """One message to each user, WINDOW in flight: the next batch goes
        once the app server has the previous one's pushes (or, without a
        push module, once the senders' pings came back)."""
        for b in range(0, len(users), WINDOW):
            batch = users[b:b + WINDOW]
            start = self.app.pushes
            for i, u in enumerate(batch):
                self.senders[i % SENDERS].send(message(f"{u}@{HOST}", offset + b + i))
            if self.pushing:
                await self.app.wait_for(start + len(batch), timeout=600)
            else:
                await asyncio.gather(*(s.sync() for s in self.senders))
        await asyncio.gather(*(s.sync() for s in self.senders))

    async def pushes_in(self, sent):
        """The latency of each message `paced` sent: its user's n-th
        publish (in order) against its n-th write."""
        # (without a push module, `paced` filled the arrivals)
        deadline = time.monotonic() + 600
        while any(len(self.arrivals.get(u, ())) < len(sent[u]) for u in sent):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: pushes missing")
            await asyncio.sleep(0.05)
        await self.app.sync()
        return [(a - w) * 1e3 for u, times in sent.items() for a, w in zip(self.arrivals[u], times)]

    async def get_us(self, users):
        """The mean wall-clock µs of a key-value get of the module's store
        (a cache miss's read, and nothing else), timed inside the server by
        `mod_bench_probe` over `users`."""
        self.gets = getattr(self, "gets", 0) + 1
        head = await asyncio.wait_for(self.admin.iq(
            f"<iq type='set' id='get{self.gets}' to='{HOST}'><get xmlns='urn:example:bench' "
            f"users='{' '.join(users)}'/></iq>", f"get{self.gets}"), 120)
        if b"error" in head:
            raise RuntimeError(f"{self.name}: the probe's get failed: {head!r}")
        return float(re.search(rb"us='([\d.]+)'", await self.admin._read_until(b"/>")).group(1))

    async def unload(self):
        """CPU seconds the push module's unload takes: ours writes the
        unread counts still owed then (the write-back would have written
        them an interval after they changed), the reference has nothing to
        write."""
        if not self.pushing:
            return 0.0
        cpu0 = cpu_seconds(self.pid)
        reply = await self.admin.iq(f"<iq type='set' id='unload' to='{HOST}'><module xmlns='urn:example:bench' "
                                    f"name='cloud_notify' load='false'/></iq>", "unload")
        if b"error" in reply:
            raise RuntimeError(f"{self.name}: unload failed: {reply!r}")
        return cpu_seconds(self.pid) - cpu0

    def stop(self):
        self.p.cleanup()


def spread(values):
    """'median (min–max)' of a figure's rounds."""
    v = sorted(values)
    mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return mid, v[0], v[-1]


def rotated(servers, r):
    """The servers in round r's order (each goes first in turn)."""
    k = r % len(servers)
    return servers[k:] + servers[:k]


@functools.lru_cache(maxsize=None)
def order_cycle(n):
    """Every order of n servers (as index tuples) in a cycle in which no
    server ends one order and begins the next, around the wrap too: no
    server has two turns in a row."""
    orders = list(itertools.permutations(range(n)))
    if n < 3:
        return orders

    def extend(path, left):
        if not left:
            return path if path[-1][-1] != path[0][0] else None
        for o in sorted(left):
            if o[0] != path[-1][-1]:
                found = extend(path + [o], left - {o})
                if found:
                    return found
        return None

    return extend([orders[0]], set(orders[1:]))


def ordered(servers, t):
    """The servers in turn t's order: every order of them in turn
    (`order_cycle`), so that over a whole cycle each goes first, and
    follows each other one within a turn, equally often, and none has two
    turns in a row."""
    cycle = order_cycle(len(servers))
    return [servers[i] for i in cycle[t % len(cycle)]]


async def cpu_in_turns(servers, users, r, work):
    """CPU seconds each server spends on `work(server, chunk, start)` over
    `users`, the servers taking turns in chunks of LOGIN_TURN users (each
    chunk in the next of all the servers' orders, `ordered`): a slow spell
    of the shared machine, which can double what a login costs for a few
    seconds, then falls on every server alike instead of on one server's
    whole round."""
    cpu = {s.name: 0.0 for s in servers}
    turns = -(-len(users) // LOGIN_TURN)
    for b in range(0, len(users), LOGIN_TURN):
        for s in ordered(servers, r * turns + b // LOGIN_TURN):
            cpu0 = cpu_seconds(s.pid)
            await work(s, users[b:b + LOGIN_TURN], b)
            cpu[s.name] += cpu_seconds(s.pid) - cpu0
    return cpu


async def login_part(specs):
    """The three servers side by side; users in ROUNDS rounds: logins
    (each enables with publish-options, as real clients do), then one
    offline message each, the servers taking turns of LOGIN_TURN users
    (`cpu_in_turns`); then a latency sample, the servers taking turns
    (`in_turns`). After the rounds, in rounds again, the same users log in
    a second time (L2), in turns too."""
    per_round = LOGIN_USERS // ROUNDS
    servers = []
    try:
        for name, spec in specs.items():
            s = Server(name, *spec, options={"push_registration_cache_size": max(LOGIN_USERS, 1000)})
            s.make_accounts([f"u{i}" for i in range(per_round * ROUNDS)] + [f"w{i}" for i in range(100)]
                            + [f"s{i}" for i in range(SENDERS)] + ["admin"])
            await s.start()
            servers.append(s)
        for s in servers:  # warm-up (not counted): a hundred users through the same path
            warm = [f"w{i}" for i in range(100)]
            await s.logins(warm)
            await s.paced(warm, RATE, 10 ** 6)
            await s.pushes_in({u: [0] for u in warm})
            await s.logins(warm)
        out = {s.name: [] for s in servers}
        for r in range(ROUNDS):
            users = [f"u{i}" for i in range(r * per_round, (r + 1) * per_round)]
            before = {}
            for s in servers:
                before[s.name] = (*await s.gc(), s.core)
            cpu_login = await cpu_in_turns(servers, users, r, lambda s, chunk, b: s.logins(chunk))
            cpu_push = await cpu_in_turns(servers, users, r,
                                          lambda s, chunk, b: s.windowed(chunk, r * per_round + b))
            for s in servers:
                rss0, heap0, core0 = before[s.name]
                rss1, heap1 = await s.gc()
                out[s.name].append({"rss": rss1 - rss0, "heap": heap1 - heap0, "core": s.core - core0,
                                    "cpu_login": cpu_login[s.name], "cpu_push": cpu_push[s.name],
                                    "users": len(users)})
            sample = users[:min(len(users), int(RATE * 5))]
            timed = await in_turns(servers, sample, RATE, 10 ** 6 + r * per_round, r)
            for s in servers:
                out[s.name][-1]["latency"] = timed[s.name]["latency"]
            log(f"   round {r + 1}/{ROUNDS}: " + ", ".join(
                f"{s.name} +{out[s.name][-1]['rss'] / 1024:.1f} MiB" for s in servers))
        # L2, once every round's memory and latency are taken: each round's
        # users log in again and enable just as at their first start, as
        # Conversations and Monal do on every connection (and each gets the
        # offline message of its push, as a phone connecting after one
        # does: alike on all three servers)
        for r in range(ROUNDS):
            users = [f"u{i}" for i in range(r * per_round, (r + 1) * per_round)]
            for s in servers:
                await s.gc()
            cpu = await cpu_in_turns(servers, users, r, lambda s, chunk, b: s.logins(chunk))
            for s in servers:
                out[s.name][r]["cpu_relogin"] = cpu[s.name]
        for s in servers:
            out[s.name + "_unload"] = await s.unload()
            out[s.name + "_pushes"] = s.app.pushes
        return out
    finally:
        for s in servers:
            s.stop()


def pg_populate(pg, db, users):
    """Accounts and one registration per user, written straight into
    Prosody's key-value table (the rows mod_storage_sql writes)."""
    rows = []
    for i, u in enumerate(users):
        rows.append(f"{HOST}\t{u}\taccounts\tpassword\tstring\t{PASSWORD}")
        if u.startswith("p"):
            value = f'{{"jid":"{APP}","node":"{u}","timestamp":{1700000000 + i % 1000}}}'
            rows.append(f"{HOST}\t{u}\tcloud_notify\t{APP}<{u}\tjson\t{value}")
    pg.psql(db, 'COPY "prosody" ("host","user","store","key","type","value") FROM STDIN;\n'
            + "\n".join(rows) + "\n\\.\n")
    pg.psql(db, 'ANALYZE "prosody";')


def pg_reads(pg, db):
    """Reads and writes of Prosody's key-value stores so far in a database
    (pg_stat_statements: each get is one SELECT, each set one DELETE)."""
    out = pg.psql(db, """
        SELECT coalesce(sum(calls) FILTER (WHERE query ~ '^\\s*SELECT\\s+"key","type","value"\\s+FROM\\s+"prosody"'), 0),
               coalesce(sum(calls) FILTER (WHERE query ~ '^\\s*DELETE\\s+FROM\\s+"prosody"\\s'), 0)
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database();""")
    reads, writes = out.split("|")
    return int(reads), int(writes)


def skewed_ranks(users, rng):
    """Each user's rank in the skewed sample: a random order of them all,
    so that the busiest users are not the first ones filled."""
    order = users[:]
    rng.shuffle(order)
    return {u: i + 1 for i, u in enumerate(order)}


def skewed_sample(users, rank, k, rng):
    """k draws from `users`, the user of rank n weighted 1/n (Zipf's law
    with exponent 1: over 100,000 users, the busiest tenth get about four
    fifths of the messages), as real traffic falls on some users far more
    than on others. A user may be drawn more than once; each message is
    pushed, and timed, on its own."""
    weights = [1.0 / rank[u] for u in users]
    return rng.choices(users, weights=weights, k=k)


async def pg_start(name, spec, pg, users):
    """A server on its own database, its users' rows written beforehand."""
    sql = pg.database()
    cache = PG_USERS + SENDERS + 1 if name == "ours_all" else PG_CACHE
    s = Server(name, *spec, options={"storage": "sql", "sql": sql,
                                     "push_registration_cache_size": cache})
    s.db = sql["database"]
    # Prosody creates its tables on its first query (a login attempt);
    # the rows go in once they are there.
    s.p.start(timeout=120)
    try:
        await asyncio.wait_for(Stream(s.p.c2s_port, "nobody", "x").connect(presence=False), 10)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    deadline = time.monotonic() + 60
    while pg.psql(s.db, "SELECT to_regclass('prosody') IS NOT NULL;").strip() != "t":
        if time.monotonic() > deadline:
            raise RuntimeError("Prosody created no tables")
        await asyncio.sleep(0.2)
    s.p.stop()
    pg_populate(pg, s.db, users + [f"s{i}" for i in range(SENDERS)] + ["admin"])
    await s.start()
    return s


async def in_turns(servers, sample, rate, offset, r, pg=None):
    """`sample` paced at `rate` to every server, taking turns in blocks of
    TURN messages (each block in the next of all the servers' orders,
    `ordered`), after a full collection of each. Returns by server name:
    its latencies (`pushes_in`) and, with `pg`, its store reads and writes
    from before the first turn to after the last push came in (its own
    database's counts)."""
    out = {}
    for s in servers:
        await s.gc()
        s.arrivals.clear()
        out[s.name] = {"sent": {}, "io": pg_reads(pg, s.db) if pg else (0, 0)}
    for b in range(0, len(sample), TURN):
        for s in ordered(servers, r * -(-len(sample) // TURN) + b // TURN):
            sent = await s.paced(sample[b:b + TURN], rate, offset + b)
            for u, times in sent.items():
                out[s.name]["sent"].setdefault(u, []).extend(times)
    for s in servers:
        o = out[s.name]
        o["latency"] = await s.pushes_in(o["sent"])
        if pg:
            io = pg_reads(pg, s.db)
            o["reads"], o["writes"] = io[0] - o["io"][0], io[1] - o["io"][1]
    return out


async def pg_part(specs, pg):
    """The three servers side by side, each on its own database: every
    user gets one offline message (the fill, most users not in the cache),
    in ROUNDS rounds each on every server in turn; then, per round too, a
    sample of users drawn at random at PG_RATE messages per second, the
    servers taking turns (`in_turns`); after the rounds, the skewed sample
    (`skewed_part`)."""
    users = [f"p{i}" for i in range(PG_USERS)]
    per_round = PG_USERS // ROUNDS
    servers = []
    try:
        for name, spec in [*specs.items(), ("ours_all", specs["ours"])]:
            servers.append(await pg_start(name, spec, pg, users))
        out = {s.name: [] for s in servers}
        rng = random.Random(7)
        k = PG_LATENCY // ROUNDS
        for r in range(ROUNDS):
            chunk = users[r * per_round:(r + 1) * per_round]
            sample = rng.sample(users[:(r + 1) * per_round], min(k, (r + 1) * per_round))
            for s in rotated(servers, r):
                rss0, _ = await s.gc()
                core0 = s.core
                io0 = pg_reads(pg, s.db)
                cpu0 = cpu_seconds(s.pid)
                await s.windowed(chunk, r * per_round)
                await s.app.sync()
                cpu_fill = cpu_seconds(s.pid) - cpu0
                io1 = pg_reads(pg, s.db)
                rss1, _ = await s.gc()
                out[s.name].append({
                    "rss": rss1 - rss0, "core": s.core - core0, "msgs": len(chunk), "sample": len(sample),
                    "cpu_fill": cpu_fill, "reads": io1[0] - io0[0], "writes": io1[1] - io0[1]})
            timed = await in_turns(servers, sample, PG_RATE, 10 ** 6 + r * per_round, r, pg)
            for s in servers:
                o = timed[s.name]
                out[s.name][-1].update({"latency": o["latency"], "reads_sample": o["reads"],
                                        "writes_sample": o["writes"]})
            log(f"   round {r + 1}/{ROUNDS}: " + ", ".join(
                f"{s.name} {out[s.name][-1]['writes'] + out[s.name][-1]['writes_sample']} writes" for s in servers))
        await skewed_part(servers, users, out, rng, pg, k)
        # what a miss waits for: a get of the store, timed in each server,
        # in turns of 100 users drawn at random
        for t in range(GETS // 100):
            batch = rng.sample(users, 100)
            for s in ordered(servers, t):
                out.setdefault(s.name + "_get_us", []).append(await s.get_us(batch))
        for s in servers:
            before = pg_reads(pg, s.db)[1]
            out[s.name + "_unload"] = (await s.unload(), pg_reads(pg, s.db)[1] - before)
        return out
    finally:
        for s in servers:
            s.stop()


async def skewed_part(servers, users, out, rng, pg, k):
    """Then the skewed traffic, every user pushed once before: PG_WARM
    messages, untimed, bring each server's cache to its steady state; then
    per round k more at PG_RATE, timed, the servers taking turns
    (`in_turns`)."""
    t = time.monotonic()
    rank = skewed_ranks(users, rng)
    warm = skewed_sample(users, rank, PG_WARM, rng)
    for s in servers:
        await s.windowed(warm, 4 * 10 ** 6)
        await s.app.sync()
    for r in range(ROUNDS):
        hot = skewed_sample(users, rank, k, rng)
        timed = await in_turns(servers, hot, PG_RATE, 5 * 10 ** 6 + r * k, r, pg)
        for s in servers:
            o = timed[s.name]
            out[s.name][r].update({"hot": len(hot), "latency_hot": o["latency"], "reads_hot": o["reads"]})
    log(f"   the skewed sample: {PG_WARM} untimed, then {ROUNDS} rounds of {k}, in {time.monotonic() - t:.0f} s")


def over_none(rounds, k, key, per):
    """Per round: server k's figure over none's in the same round, per unit."""
    return [(v[key] - (n[key] if k != "none" else 0)) / per(v)
            for v, n in zip(rounds[k], rounds["none"])]


def totals_ratio(rounds, key):
    """Ours' growth over none's, against the reference's, each summed over
    the rounds: the figure one run of all the users gives. (A round's own
    ratio divides one small difference of CPU times by another, and the
    reference's grows with its heap from round to round: their median is
    the spread's centre, not this.)"""
    d = {k: sum(v[key] - n[key] for v, n in zip(rounds[k], rounds["none"])) for k in ("ours", "ref")}
    return d["ours"] / d["ref"] if d["ref"] > 0 else float("nan")


def fmt(triple, digits=2):
    mid, lo, hi = triple
    return f"{mid:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def report_login(login, out):
    log("")
    log(f"Prosody {VERSION}. Part 1: {LOGIN_USERS} users in {ROUNDS} rounds, the three servers side by side (in "
        f"turns of {LOGIN_TURN} users): log in over c2s, enable one registration in-band with publish-options "
        f"(Conversations', Monal's and Siskin's forms in turn), close cleanly; then one offline message each (one "
        f"push each); full GC. After the rounds, each logs in and enables again as at its first start (L2, "
        f"its offline message delivered). Internal storage. Latency: "
        f"{min(LOGIN_USERS // ROUNDS, int(RATE * 5))} more per round at {RATE:g}/s, the servers taking turns every "
        f"{TURN}. Each figure: median (min–max) of the rounds.")
    log(f"{'':<6}{'anon KiB/user':>22}{'CPU µs/login':>22}{'CPU µs/push':>22}{'CPU µs/again':>22}{'p50 ms':>9}"
        f"{'p99 ms':>9}  (none's latency: the message processed)")
    users = lambda v: v["users"]  # noqa: E731
    for k in ("none", "ref", "ours"):
        rss = spread(over_none(login, k, "rss", users))
        c_login = spread([x * 1e6 for x in over_none(login, k, "cpu_login", users)])
        c_push = spread([x * 1e6 for x in over_none(login, k, "cpu_push", users)])
        c_again = spread([x * 1e6 for x in over_none(login, k, "cpu_relogin", users)])
        lat = [ms for v in login[k] for ms in v["latency"]]
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        log(f"{k:<6}{fmt(rss):>22}{fmt(c_login, 0):>22}{fmt(c_push, 0):>22}{fmt(c_again, 0):>22}{p50:>9.1f}"
            f"{p99:>9.1f}")
        out[k] = {"rss": rss, "login": c_login, "push": c_push, "p50": p50, "p99": p99}
    ratio = lambda key: spread([o / r for o, r in zip(  # noqa: E731
        over_none(login, "ours", key, users), over_none(login, "ref", key, users)) if r > 0])
    mem, lg, ps, again = ratio("rss"), ratio("cpu_login"), ratio("cpu_push"), ratio("cpu_relogin")
    log(f"ours/ref per round: memory per user {fmt(mem)}, CPU per login+enable {fmt(lg)}, CPU per push {fmt(ps)}, "
        f"CPU per login+enable again (L2) {fmt(again)}")
    lg_total, again_total = totals_ratio(login, "cpu_login"), totals_ratio(login, "cpu_relogin")
    log(f"ours/ref over all {LOGIN_USERS} users (the rounds' sums, as one run of them all reads): CPU per "
        f"login+enable {lg_total:.2f}, CPU per push {totals_ratio(login, 'cpu_push'):.2f}, memory per user "
        f"{totals_ratio(login, 'rss'):.2f}, CPU per login+enable again {again_total:.2f}")
    owed = ", ".join(f"{k} {login[k + '_unload'] * 1e3:.0f} ms" for k in ("ref", "ours"))
    log(f"(none's row: its own growth; the others: over none's in the same round. Of ours' memory, its Rust side "
        f"holds {sum(v['core'] for v in login['ours']) / LOGIN_USERS:.0f} B/user by its allocator's count. The "
        f"module's unload at the end (what is still owed is written then): {owed}.)")
    return {"ours_kib_per_user": out["ours"]["rss"][0], "ref_kib_per_user": out["ref"]["rss"][0],
            "mem_ratio": mem[0], "login_ratio": lg[0], "login_ratio_all": lg_total, "push_ratio": ps[0],
            "relogin_ratio": again[0], "relogin_ratio_all": again_total,
            "ours_p99": out["ours"]["p99"], "ref_p99": out["ref"]["p99"]}


def report_pg(pg):
    log("")
    log(f"Part 2: PostgreSQL, {PG_USERS} users with one registration each, a cache of {PG_CACHE}, "
        f"each server on its own database, side by side in {ROUNDS} rounds: one offline message to each user "
        f"(windowed; most not in the cache), then {PG_LATENCY // ROUNDS} per round to users drawn at random at "
        f"{PG_RATE:g}/s, the servers taking turns every {TURN}. Reads and writes: key-value gets and sets "
        f"(pg_stat_statements), over none's. "
        f"Median (min–max) of the rounds.")
    log(f"{'':<9}{'CPU µs/msg':>20}{'reads/msg':>20}{'writes/msg':>20}{'reads/msg (sample)':>22}"
        f"{'writes/msg (sample)':>22}{'p50 ms':>9}{'p99 ms':>9}")
    msgs, sample = (lambda v: v["msgs"]), (lambda v: v["sample"])  # noqa: E731
    res = {}
    for k in ("none", "ref", "ours", "ours_all"):
        cpu = spread([x * 1e6 for x in over_none(pg, k, "cpu_fill", msgs)])
        reads = spread(over_none(pg, k, "reads", msgs))
        writes = spread(over_none(pg, k, "writes", msgs))
        w_s = spread(over_none(pg, k, "writes_sample", sample))
        # (the sample's users were all pushed before: a module that keeps
        # every user it ever read reads none of them again)
        r_s = spread(over_none(pg, k, "reads_sample", sample))
        lat = [ms for v in pg[k] for ms in v["latency"]]
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        log(f"{k:<9}{fmt(cpu, 0):>20}{fmt(reads):>20}{fmt(writes):>20}{fmt(r_s):>22}{fmt(w_s):>22}"
            f"{p50:>9.2f}{p99:>9.1f}")
        res[k] = {"cpu": cpu, "reads": reads, "writes": writes, "reads_sample": r_s, "p50": p50, "p99": p99}
    log(f"The skewed sample, at steady state: after the rounds above, {PG_WARM} messages untimed, then per round "
        f"{PG_LATENCY // ROUNDS} at {PG_RATE:g}/s, to users drawn by Zipf's law (rank n weighted 1/n over a random "
        f"order of all {PG_USERS}; a user may come again). (The "
        f"uniform sample above has no locality for a bounded cache to use.)")
    log(f"{'':<9}{'reads/msg':>20}{'p50 ms':>9}{'p99 ms':>9}")
    for k in ("none", "ref", "ours", "ours_all"):
        r_h = spread(over_none(pg, k, "reads_hot", lambda v: v["hot"]))
        lat = [ms for v in pg[k] for ms in v["latency_hot"]]
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        log(f"{k:<9}{fmt(r_h):>20}{p50:>9.2f}{p99:>9.1f}")
        res[k].update({"reads_hot": r_h, "p50_hot": p50, "p99_hot": p99})
    if max(res["none"]["p99"], res["none"]["p99_hot"]) >= 100:
        log(f"   !! none's p99 is {max(res['none']['p99'], res['none']['p99_hot']):.0f} ms at {PG_RATE:g}/s: "
            "lower BENCH_PG_RATE")
    owed = ", ".join(f"{k} {pg[k + '_unload'][1]} writes in {pg[k + '_unload'][0] * 1e3:.0f} ms" for k in ("ref", "ours"))
    log(f"(Of ours' memory, its Rust side holds {sum(v['core'] for v in pg['ours']) / PG_USERS:.0f} B/user by its "
        f"allocator's count. Writes still owed at the end, the module's unload: {owed}.)")
    ratios = spread([o / r for o, r in zip(over_none(pg, "ours", "cpu_fill", msgs),
                                            over_none(pg, "ref", "cpu_fill", msgs)) if r > 0])
    log(f"ours/ref per round: CPU per message {fmt(ratios)}; latency p50 {res['ours']['p50']:.2f} vs "
        f"{res['ref']['p50']:.2f} ms, p99 {res['ours']['p99']:.1f} vs {res['ref']['p99']:.1f} ms; with every user "
        f"cached, as the reference keeps them (ours_all): p50 {res['ours_all']['p50']:.2f} vs "
        f"{res['ref']['p50']:.2f} ms, p99 {res['ours_all']['p99']:.1f} vs {res['ref']['p99']:.1f} ms; the skewed "
        f"sample: p50 {res['ours']['p50_hot']:.2f} vs {res['ref']['p50_hot']:.2f} ms, p99 "
        f"{res['ours']['p99_hot']:.1f} vs {res['ref']['p99_hot']:.1f} ms")
    gets = {k: spread(pg[k + "_get_us"]) for k in ("none", "ref", "ours", "ours_all")}
    log(f"What a cache miss waits for: a key-value get of the module's store, timed inside each server (wall "
        f"clock; Prosody waits meanwhile), {GETS} users at random in turns of 100, µs per get (the median "
        f"and range of the turns' means; none never read its rows before: no baseline): "
        + ", ".join(f"{k} {fmt(v, 0)}" for k, v in gets.items())
        + f". Ours' p50 over ours_all's: {res['ours']['p50'] - res['ours_all']['p50']:.2f} ms with "
        f"{res['ours']['reads_sample'][0]:.2f} reads per message, "
        f"{res['ours']['p50_hot'] - res['ours_all']['p50_hot']:.2f} ms with {res['ours']['reads_hot'][0]:.2f}.")
    return {"pg_get_us": gets["ours"][0],
            "pg_push_ratio": ratios[0], "pg_ours_writes": res["ours"]["writes"][0],
            "pg_ours_reads": res["ours"]["reads"][0], "pg_ref_reads": res["ref"]["reads"][0],
            "pg_ours_sample_reads": res["ours"]["reads_sample"][0],
            "pg_ref_sample_reads": res["ref"]["reads_sample"][0],
            "pg_ours_p50": res["ours"]["p50"], "pg_ref_p50": res["ref"]["p50"],
            "pg_ours_all_p50": res["ours_all"]["p50"], "pg_ours_all_p99": res["ours_all"]["p99"],
            "pg_ours_p99": res["ours"]["p99"], "pg_ref_p99": res["ref"]["p99"], "pg_none_p99": res["none"]["p99"],
            "pg_ours_hot_reads": res["ours"]["reads_hot"][0], "pg_ours_hot_p50": res["ours"]["p50_hot"],
            "pg_ref_hot_p50": res["ref"]["p50_hot"], "pg_ours_hot_p99": res["ours"]["p99_hot"],
            "pg_ref_hot_p99": res["ref"]["p99_hot"], "pg_none_hot_p99": res["none"]["p99_hot"]}


def report(login, pg):
    out = {}
    if login:
        out.update(report_login(login, {}))
    if pg:
        out.update(report_pg(pg))
    log("RESULT-SCALE " + " ".join(f"{k}={v:.2f}" for k, v in out.items()))


def main():
    shm = os.environ.get("BENCH_TMPDIR", "/dev/shm")
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        tempfile.tempdir = shm
    refdir = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    (refdir / "mod_cloud_notify").symlink_to(REFERENCE)
    specs = variants(refdir)
    login, pg = {}, {}
    if LOGIN_USERS:
        t = time.time()
        log(f"== logins: {LOGIN_USERS} users, none, ref and ours side by side")
        login = asyncio.run(login_part(specs))
        log(f"   done in {time.time() - t:.0f} s")
    if PG_USERS:
        t = time.time()
        log(f"== PostgreSQL: {PG_USERS} users, none, ref and ours side by side")
        server = Postgres(statements=True)
        try:
            pg = asyncio.run(pg_part(specs, server))
        finally:
            server.stop()
        log(f"   done in {time.time() - t:.0f} s")
    report(login, pg)


if __name__ == "__main__":
    main()
