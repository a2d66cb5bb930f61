#!/usr/bin/env python3
"""`make bench`, part 2: memory, latency and scale along the path a real
server takes, side by side with the reference, in one run.

Three fresh Prosodys (no push module, the reference, ours), one after the
other, each through the same two parts:

1. Logins (internal storage). BENCH_LOGIN_USERS users (10,000) each log in
   over c2s, send presence, enable one registration in-band and close the
   stream cleanly; then each gets one chat message while offline (a no-store
   hint keeps it out of the archive; WINDOW messages in flight), each
   pushing once, answered with a result; then a full garbage collection.
   Reported: memory (RssAnon: resident, not counting the pages of the
   program and libraries) and Lua heap growth per user over the server
   without the module, CPU per login and per push. Then the latency from a message's
   write to its publish's arrival at the app server (p50, p99): another
   message each to up to 5,000 of them, at BENCH_RATE messages per second
   (500).
2. PostgreSQL (`storage = "sql"`, a private server). BENCH_PG_USERS users
   (100,000) with one registration each, written into the database
   beforehand, and a registration cache of a tenth of them. Every user gets
   one offline message (as fast as Prosody takes them, a window of messages
   in flight); then BENCH_PG_LATENCY (5,000) more at BENCH_RATE to users
   drawn at random. Reported: memory (RssAnon) growth per user, CPU per
   push, store reads and writes per message (key-value gets and sets, counted
   by pg_stat_statements, over the server without the module: what the
   module itself reads and writes) and the
   latency at that rate.

BENCH_PROSODY picks the version (0.12 or 13; on 13 the reference is the
core's own mod_cloud_notify). The last line is machine-readable.
"""

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from bench import (APP, HOST, PROBE, REFERENCE, AppServer, Stream, cpu_seconds, enable_iq, log,  # noqa: E402
                   rss_kib, stats, write_lua)
from harness import DIST, PASSWORD, Postgres, Prosody, encode_host  # noqa: E402

VERSION = os.environ.get("BENCH_PROSODY", "0.12")
LOGIN_USERS = int(os.environ.get("BENCH_LOGIN_USERS", "10000"))
PG_USERS = int(os.environ.get("BENCH_PG_USERS", "100000"))
PG_LATENCY = int(os.environ.get("BENCH_PG_LATENCY", "5000"))
RATE = float(os.environ.get("BENCH_RATE", "500"))
PARALLEL = 32  # logins in flight
WINDOW = 200  # messages in flight in the PostgreSQL fill
SENDERS = 10


def variants(refdir):
    """name -> (plugin_paths, modules)"""
    ref_paths = [str(refdir), str(PROBE)] if VERSION == "0.12" else [str(PROBE)]
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
        s = await Stream(self.p.c2s_port, user, "phone").connect(presence=True)
        got = await s.iq(enable_iq(user, int(user.lstrip("uw"))), "push1")
        tag = got[got.rfind(b"<iq"):]
        if self.pushing and b"result" not in tag:
            raise RuntimeError(f"{self.name}: enable refused for {user}: {tag!r}")
        s.writer.write(b"<presence type='unavailable'/></stream:stream>")
        await s.writer.drain()
        while await s.reader.read(65536):
            pass
        s.writer.close()

    async def logins(self, users):
        sem = asyncio.Semaphore(PARALLEL)

        async def one(u):
            async with sem:
                await self.login(u)

        await asyncio.gather(*(one(u) for u in users))

    async def paced(self, users, rate, offset):
        """One message to each user, at `rate` per second; returns the write
        times by user."""
        sent = {}
        t0 = time.monotonic()
        for i, u in enumerate(users):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.senders[i % SENDERS].send(message(f"{u}@{HOST}", offset + i))
            sent[u] = time.monotonic()
        await asyncio.gather(*(s.sync() for s in self.senders))
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

    async def pushes_in(self, users, sent):
        if self.pushing:
            deadline = time.monotonic() + 600
            while any(u not in self.arrivals for u in users):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: pushes missing")
                await asyncio.sleep(0.05)
        await self.app.sync()
        return [(self.arrivals[u] - sent[u]) * 1e3 for u in users if u in self.arrivals]

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


async def login_part(name, spec):
    users = [f"u{i}" for i in range(LOGIN_USERS)]
    s = Server(name, *spec, options={"push_registration_cache_size": max(LOGIN_USERS, 1000)})
    s.make_accounts(users + [f"s{i}" for i in range(SENDERS)] + ["admin"])
    try:
        await s.start()
        # Warm-up (not counted): a hundred other users through the same path.
        warm = [f"w{i}" for i in range(100)]
        s.make_accounts(warm)
        await s.logins(warm)
        await s.paced(warm, RATE, 10 ** 6)
        await s.pushes_in(warm, {u: 0 for u in warm})
        rss0, heap0 = await s.gc()
        core0 = s.core
        cpu0 = cpu_seconds(s.pid)
        t = time.time()
        await s.logins(users)
        cpu_login = cpu_seconds(s.pid) - cpu0
        t_login = time.time() - t
        rss1, heap1 = await s.gc()
        core1 = s.core - core0
        cpu0 = cpu_seconds(s.pid)
        await s.windowed(users, 0)
        cpu_push = cpu_seconds(s.pid) - cpu0
        rss2, heap2 = await s.gc()
        core = s.core - core0
        pushes = s.app.pushes
        # Then the latency, at the rate: another message to some of them.
        sample = users[:min(len(users), int(RATE * 10))]
        s.arrivals.clear()
        sent = await s.paced(sample, RATE, 10 ** 6)
        latency = await s.pushes_in(sample, sent)
        cpu_unload = await s.unload()
        log(f"   {name}: {LOGIN_USERS} logins in {t_login:.0f} s; RssAnon {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} -> "
            f"{rss2 / 1024:.1f} MiB; Lua heap {heap0 / 1024:.1f} -> {heap1 / 1024:.1f} -> {heap2 / 1024:.1f} MiB; "
            f"Rust side +{core1 / 1024 / 1024:.1f} -> +{core / 1024 / 1024:.1f} MiB")
        return {"rss": rss2 - rss0, "rss_login": rss1 - rss0, "heap": heap2 - heap0, "core": core,
                "cpu_login": cpu_login,
                "cpu_push": cpu_push, "cpu_unload": cpu_unload, "latency": latency, "pushes": pushes - len(warm)}
    finally:
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


async def pg_part(name, spec, pg):
    users = [f"p{i}" for i in range(PG_USERS)]
    sql = pg.database()
    s = Server(name, *spec, options={"storage": "sql", "sql": sql,
                                     "push_registration_cache_size": max(PG_USERS // 10, 100)})
    try:
        # Prosody creates its tables on its first query (a login attempt);
        # the rows go in once they are there.
        s.p.start(timeout=120)
        try:
            await asyncio.wait_for(Stream(s.p.c2s_port, "nobody", "x").connect(presence=False), 10)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        deadline = time.monotonic() + 60
        while pg.psql(sql["database"], "SELECT to_regclass('prosody') IS NOT NULL;").strip() != "t":
            if time.monotonic() > deadline:
                raise RuntimeError("Prosody created no tables")
            await asyncio.sleep(0.2)
        s.p.stop()
        pg_populate(pg, sql["database"], users + [f"s{i}" for i in range(SENDERS)] + ["admin"])
        await s.start()
        rss0, _ = await s.gc()
        core0 = s.core
        reads0 = pg_reads(pg, sql["database"])
        cpu0 = cpu_seconds(s.pid)
        t = time.time()
        await s.windowed(users, 0)
        t_fill = time.time() - t
        await s.app.sync()
        cpu_fill = cpu_seconds(s.pid) - cpu0
        reads = pg_reads(pg, sql["database"])
        rss1, _ = await s.gc()
        core = s.core - core0
        sample = random.Random(7).sample(users, min(PG_LATENCY, len(users)))
        s.arrivals.clear()
        cpu0 = cpu_seconds(s.pid)
        sent = await s.paced(sample, RATE, 10 ** 6)
        latency = await s.pushes_in(sample, sent)
        cpu_sample = cpu_seconds(s.pid) - cpu0
        reads_sample = pg_reads(pg, sql["database"])
        cpu_unload = await s.unload()
        writes_unload = pg_reads(pg, sql["database"])[1] - reads_sample[1]
        log(f"   {name}: {PG_USERS} messages in {t_fill:.0f} s; RssAnon {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
        return {"rss": rss1 - rss0, "core": core, "cpu_fill": cpu_fill, "cpu_sample": cpu_sample, "latency": latency,
                "reads": reads[0] - reads0[0], "writes": reads[1] - reads0[1],
                "reads_sample": reads_sample[0] - reads[0], "writes_sample": reads_sample[1] - reads[1],
                "cpu_unload": cpu_unload, "writes_unload": writes_unload,
                "pushes": s.app.pushes}
    finally:
        s.stop()


def report(login, pg):
    out = {}
    log("")
    log(f"Prosody {VERSION}. Part 1: {LOGIN_USERS} users log in over c2s, enable one registration in-band and "
        f"close cleanly; then one offline message each (one push each); full GC. Internal storage. Latency: "
        f"{min(LOGIN_USERS, int(RATE * 10))} more at {RATE:g}/s.")
    log(f"{'':<6}{'anon KiB/user':>14}{'heap B/user':>13}{'CPU µs/login':>14}{'CPU µs/push':>13}"
        f"{'+writes':>9}{'p50 ms':>9}{'p99 ms':>9}{'pushes':>8}")
    n = login["none"]
    for k in ("none", "ref", "ours"):
        v = login[k]
        rss = (v["rss"] - (n["rss"] if k != "none" else 0)) / LOGIN_USERS
        heap = (v["heap"] - (n["heap"] if k != "none" else 0)) * 1024 / LOGIN_USERS
        c_login = (v["cpu_login"] - (n["cpu_login"] if k != "none" else 0)) / LOGIN_USERS * 1e6
        c_push = (v["cpu_push"] - (n["cpu_push"] if k != "none" else 0)) / LOGIN_USERS * 1e6
        c_all = c_push + v["cpu_unload"] / LOGIN_USERS * 1e6
        p50, p99 = percentile(v["latency"], 0.5), percentile(v["latency"], 0.99)
        log(f"{k:<6}{rss:>14.2f}{heap:>13.0f}{c_login:>14.0f}{c_push:>13.0f}{c_all:>9.0f}{p50:>9.1f}{p99:>9.1f}"
            f"{max(v['pushes'], 0):>8}")
        if k != "none":
            out[f"{k}_kib_per_user"] = rss
            out[f"{k}_p50"], out[f"{k}_p99"] = p50, p99
            out[f"{k}_push_us"] = c_push
            out[f"{k}_push_all_us"] = c_all
            out[f"{k}_login_us"] = c_login
    log(f"(none's row: its own growth; the others: over none's. Of ours' memory, its Rust side holds "
        f"{login['ours']['core'] / LOGIN_USERS:.0f} B/user by its allocator's count. '+writes': CPU per push with "
        f"the writes still owed at the end, per user: the module's unload, where ours writes the unread counts "
        f"its write-back would write an interval after they changed.)")
    out["ours_core_b_per_user"] = login["ours"]["core"] / LOGIN_USERS
    out["mem_ratio"] = out["ours_kib_per_user"] / out["ref_kib_per_user"]
    out["push_ratio"] = out["ours_push_us"] / out["ref_push_us"]
    out["push_all_ratio"] = out["ours_push_all_us"] / out["ref_push_all_us"]
    log(f"ours/ref: memory per user {out['mem_ratio']:.2f}, CPU per push {out['push_ratio']:.2f} "
        f"({out['push_all_ratio']:.2f} with the writes owed), "
        f"CPU per login+enable {out['ours_login_us'] / out['ref_login_us']:.2f}; latency p50 "
        f"{out['ours_p50']:.1f} vs {out['ref_p50']:.1f} ms, p99 {out['ours_p99']:.1f} vs {out['ref_p99']:.1f} ms")
    if pg:
        log("")
        log(f"Part 2: PostgreSQL, {PG_USERS} users with one registration each, cache {max(PG_USERS // 10, 100)}; "
            f"one offline message to every user (windowed), then {PG_LATENCY} to random users at {RATE:g}/s.")
        log(f"{'':<6}{'anon KiB/user':>14}{'CPU µs/msg':>12}{'reads/msg':>11}{'writes/msg':>12}"
            f"{'CPU µs/msg':>12}{'reads/msg':>11}{'writes/msg':>12}{'p50 ms':>9}{'p99 ms':>9}")
        n = pg["none"]
        for k in ("none", "ref", "ours"):
            v = pg[k]
            sub = (lambda key: n[key]) if k != "none" else (lambda key: 0)
            rss = (v["rss"] - sub("rss")) / PG_USERS
            c_fill = (v["cpu_fill"] - sub("cpu_fill")) / PG_USERS * 1e6
            r_fill = (v["reads"] - sub("reads")) / PG_USERS
            w_fill = (v["writes"] - sub("writes")) / PG_USERS
            c_s = (v["cpu_sample"] - sub("cpu_sample")) / PG_LATENCY * 1e6
            r_s = (v["reads_sample"] - sub("reads_sample")) / PG_LATENCY
            w_s = (v["writes_sample"] - sub("writes_sample")) / PG_LATENCY
            p50, p99 = percentile(v["latency"], 0.5), percentile(v["latency"], 0.99)
            log(f"{k:<6}{rss:>14.2f}{c_fill:>12.0f}{r_fill:>11.2f}{w_fill:>12.2f}{c_s:>12.0f}{r_s:>11.2f}{w_s:>12.2f}"
                f"{p50:>9.1f}{p99:>9.1f}")
            if k != "none":
                out[f"pg_{k}_kib_per_user"], out[f"pg_{k}_reads"] = rss, r_fill
                out[f"pg_{k}_push_us"], out[f"pg_{k}_p99"] = c_fill, p99
                out[f"pg_{k}_writes"] = w_fill
        log("(columns 3-5: the fill, every user once, most not in the cache; 6-8: the random sample at the rate; "
            "reads and writes: key-value gets and sets, over none's. Of ours' memory, its Rust side holds "
            f"{pg['ours']['core'] / PG_USERS:.0f} B/user by its allocator's count)")
        owed = ", ".join(f"{k} {pg[k]['writes_unload']} writes in {pg[k]['cpu_unload'] * 1e3:.0f} ms"
                         for k in ("ref", "ours"))
        log(f"Writes still owed at the end (the module's unload): {owed}.")
        out["pg_ours_core_b_per_user"] = pg["ours"]["core"] / PG_USERS
        out["pg_push_ratio"] = out["pg_ours_push_us"] / out["pg_ref_push_us"]
    keys = [k for k in ("ours_kib_per_user", "ref_kib_per_user", "ours_core_b_per_user", "mem_ratio", "push_ratio", "ours_p50", "ref_p50",
                        "ours_p99", "ref_p99", "pg_ours_kib_per_user", "pg_ref_kib_per_user", "pg_ours_core_b_per_user", "pg_ours_reads",
                        "pg_ref_reads", "pg_push_ratio", "pg_ours_p99", "pg_ref_p99") if k in out]
    log("RESULT-SCALE " + " ".join(f"{k}={out[k]:.2f}" for k in keys))


def main():
    shm = os.environ.get("BENCH_TMPDIR", "/dev/shm")
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        tempfile.tempdir = shm
    refdir = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    (refdir / "mod_cloud_notify").symlink_to(REFERENCE)
    specs = variants(refdir)
    # (BENCH_ONLY="ours" and the like: a quick look at some; the report needs all three)
    only = os.environ.get("BENCH_ONLY", "").split()
    specs = {k: v for k, v in specs.items() if not only or k in only}
    login, pg = {}, {}
    t = time.time()
    log(f"== logins: {LOGIN_USERS} users, none, ref and ours in turn")
    for name, spec in specs.items():
        login[name] = asyncio.run(login_part(name, spec))
    log(f"   done in {time.time() - t:.0f} s")
    if PG_USERS:
        t = time.time()
        log(f"== PostgreSQL: {PG_USERS} users, none, ref and ours in turn")
        server = Postgres(statements=True)
        try:
            for name, spec in specs.items():
                pg[name] = asyncio.run(pg_part(name, spec, server))
        finally:
            server.stop()
        log(f"   done in {time.time() - t:.0f} s")
    if len(specs) == 3:
        report(login, pg)


if __name__ == "__main__":
    main()
