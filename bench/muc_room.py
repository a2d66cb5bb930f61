#!/usr/bin/env python3
"""`make bench`, part 3: a big room. One message in a room with
BENCH_ROOM_MEMBERS (20,000) affiliated members, BENCH_ROOM_PUSH (100) of
whom have push registrations, under `muc_push_policy = "all"`, on two
Prosodys side by side, round after round: no push module (the floor) and
ours (mod_muc_cloud_notify). Debian's prosody-modules has no
mod_muc_cloud_notify to compare with. Reported per message, each figure
as the median and spread of BENCH_ROOM_ROUNDS (7) rounds: store reads of
the MUC module (its `store_reads` metric), Δ CPU over the floor, and the
time from the message's write to the last of its pushes at the app server.

BENCH_PROSODY picks the version (0.12 or 13). The last line is
machine-readable.
"""

import asyncio
import json
import os
import re
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from bench import cpu_seconds, log  # noqa: E402
from harness import DIST, MODULES, AppServer, Client, Prosody, run  # noqa: E402

VERSION = os.environ.get("BENCH_PROSODY", "0.12")
MEMBERS = int(os.environ.get("BENCH_ROOM_MEMBERS", "20000"))
WITH_PUSH = int(os.environ.get("BENCH_ROOM_PUSH", "100"))
ROUNDS = int(os.environ.get("BENCH_ROOM_ROUNDS", "7"))
MUC = "conference.localhost"
ROOM = f"big@{MUC}"
METRICS = {"statistics": "internal", "statistics_interval": "manual"}
READS = re.compile(r'^prosody_mod_muc_cloud_notify__store_reads_total\{[^}]*\} (\S+)$', re.M)


def store_reads(p):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.http_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(float(x) for x in READS.findall(text))


def start(ours):
    muc = {"muc_push_policy": "all", "max_history_messages": 0}
    if not ours:
        muc["modules_enabled"] = []
    p = Prosody(version=VERSION, modules=("http_openmetrics",), muc=MUC, muc_options=muc,
                options={**METRICS, "c2s_stanza_size_limit": 1024 * 1024},
                plugin_paths=[str(DIST), str(MODULES)] if ours else [str(MODULES)])
    p.start(timeout=60)
    return p


async def fill(p, users):
    """The owner, the members with push (each registers a nickname, enables
    push against the MUC domain and leaves), and the other members,
    affiliated by the owner in batches."""
    owner = await Client(users[0], p.c2s_port).start()
    owner.send_raw(f"<presence to='{ROOM}/Owner'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await asyncio.sleep(0.5)
    others = MEMBERS - WITH_PUSH
    for first in range(0, others, 2000):
        items = "".join(f"<item affiliation='member' jid='m{i}@elsewhere.example'/>"
                        for i in range(first, min(first + 2000, others)))
        iq = owner.make_iq_set(ito=ROOM)
        iq.append(ET.fromstring(f"<query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query>"))
        await iq.send(timeout=60)
    for user in users[1:]:
        c = await Client(user, p.c2s_port).start(presence=False)
        nick = user.split("@")[0]
        reg = c.make_iq_set(ito=ROOM)
        reg.append(ET.fromstring(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>"
            f"<field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"))
        await reg.send(timeout=30)
        enable = c.make_iq_set(ito=MUC)
        enable.append(ET.fromstring(
            f"<enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='{nick}'/>"))
        try:
            await enable.send(timeout=30)
        except Exception:  # (the floor has no module to answer)
            pass
        await c.stop()
    return owner


async def once(p, owner, app, ours, i):
    """One message: its CPU, the MUC module's store reads, and the time to
    its last push."""
    reads = store_reads(p) if ours else 0.0
    cpu = cpu_seconds(p.proc.pid)
    t0 = time.monotonic()
    owner.send_raw(f"<message to='{ROOM}' type='groupchat' id='r{i}'><body>Round {i}</body></message>")
    last = t0
    if ours:
        for _ in range(WITH_PUSH):
            last = (await app.next_push(timeout=60)).at
    await asyncio.sleep(1.0)  # (the broadcast done, on both)
    return {"cpu_ms": (cpu_seconds(p.proc.pid) - cpu) * 1000,
            "reads": (store_reads(p) - reads) if ours else 0.0,
            "last_push_ms": (last - t0) * 1000 if ours else 0.0}


def spread(values):
    values = sorted(values)
    return values[len(values) // 2], values[0], values[-1]


async def bench(servers):
    owners, apps = {}, {}
    for name, p in servers.items():
        users = [p.add_user("owner")] + [p.add_user(f"u{i}") for i in range(WITH_PUSH)]
        log(f"{name}: filling the room ({MEMBERS} members, {WITH_PUSH} with push)")
        owners[name] = await fill(p, users)
        apps[name] = await AppServer(p).start()
    rows = {name: [] for name in servers}
    for i in range(ROUNDS + 1):
        for name, p in servers.items():  # (side by side: a round on each in turn)
            row = await once(p, owners[name], apps[name], name == "ours", i)
            if i > 0:  # (the first round warms the caches)
                rows[name].append(row)
    for name in servers:
        await owners[name].stop()
        await apps[name].stop()
    return rows


def main():
    servers = {}
    try:
        for name in ("none", "ours"):
            servers[name] = start(ours=name == "ours")
        rows = run(bench(servers), timeout=3600)
    finally:
        for p in servers.values():
            p.cleanup()
    none_cpu = [x["cpu_ms"] for x in rows["none"]]
    ours_cpu = [x["cpu_ms"] for x in rows["ours"]]
    delta = [o - n for o, n in zip(ours_cpu, none_cpu)]
    reads = [x["reads"] for x in rows["ours"]]
    last = [x["last_push_ms"] for x in rows["ours"]]
    log(f"Big room, Prosody {VERSION}: {MEMBERS} members, {WITH_PUSH} with push, "
        f"muc_push_policy = \"all\", {ROUNDS} rounds (median [min–max])")
    log("  store reads per message (ours): %g [%g–%g]" % spread(reads))
    log("  CPU per message, none: %.1f ms [%.1f–%.1f]" % spread(none_cpu))
    log("  CPU per message, Δours over none: %.1f ms [%.1f–%.1f]" % spread(delta))
    log("  message to its last push (ours): %.0f ms [%.0f–%.0f]" % spread(last))
    print(json.dumps({"version": VERSION, "members": MEMBERS, "with_push": WITH_PUSH,
                      "reads": spread(reads), "none_cpu_ms": spread(none_cpu),
                      "delta_cpu_ms": spread(delta), "last_push_ms": spread(last)}))


if __name__ == "__main__":
    main()
