#!/usr/bin/env python3
"""`make bench`, part 4: what a Push 2.0 push costs beside an XEP-0357 one.

One Prosody with the module; BENCH_PUSH2_USERS (200) users with an XEP-0357
registration (with publish-options, as every real client sends), as many
with a Push 2.0 one (encrypted, ES256, as Borogove enables), as many with
none. Each round, one offline message goes to every user of a group, the
groups in turn (side by side), until every push is received; the CPU the
process spent on each group is measured. Per push: (group − no push) / n.
The first round signs each Push 2.0 registration's VAPID token; the later
ones reuse it (src/push2/tokens.rs), so the first round is reported apart.
Then the core's own figures (examples/push2_cost.rs): the whole encrypted
message, the RFC 8291 encryption alone, the ES256 signature alone.

BENCH_PROSODY picks the version (0.12 or 13); BENCH_PUSH2_ROUNDS (7) the
rounds. The last line is machine-readable.
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))
sys.path.insert(0, str(ROOT / "bench"))
from bench import cpu_seconds, log  # noqa: E402
from harness import PUBLISH_OPTIONS, AppServer, Client, Prosody, iq_type, run  # noqa: E402
from test_push2 import Device, PushService  # noqa: E402

VERSION = os.environ.get("BENCH_PROSODY", "0.12")
USERS = int(os.environ.get("BENCH_PUSH2_USERS", "200"))
ROUNDS = int(os.environ.get("BENCH_PUSH2_ROUNDS", "7"))
GROUPS = ("none", "xep0357", "push2")


async def register(p, users):
    for i, user in enumerate(users["xep0357"]):
        c = await Client(user, p.c2s_port, resource="phone").start(presence=False)
        reply = await c.enable("push.localhost", f"n{i}", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s"})
        assert iq_type(reply) == "result"
        await c.stop()
    for i, user in enumerate(users["push2"]):
        c = await Client(user, p.c2s_port, resource="borogove").start(presence=False)
        xml = Device().enable_xml(f"https://push.example/ep/{i}", service="push2.localhost")
        assert iq_type(await c.iq_set(xml)) == "result"
        await c.stop()


async def one_round(p, sender, users, receivers, r):
    out = {}
    for group in GROUPS:
        before = cpu_seconds(p.proc.pid)
        for user in users[group]:
            sender.send_raw(f"<message to='{user}' type='chat' id='r{r}-{user}'><body>Round {r}</body></message>")
        if group == "xep0357":
            for _ in users[group]:
                await receivers[group].next_push(timeout=60)
        elif group == "push2":
            for _ in users[group]:
                await receivers[group].next(timeout=60)
        await asyncio.sleep(1.0)  # (offline storage done)
        out[group] = cpu_seconds(p.proc.pid) - before
    return out


async def bench(p):
    users = {g: [p.add_user(f"{g}{i}") for i in range(USERS)] for g in GROUPS}
    sender = await Client(p.add_user("sender"), p.c2s_port).start()
    app = await AppServer(p).start()
    service = await PushService(p, jid="push2.localhost").start()
    log(f"registering {USERS} XEP-0357 and {USERS} Push 2.0 users")
    await register(p, users)
    rounds = []
    for r in range(ROUNDS + 1):
        rounds.append(await one_round(p, sender, users, {"xep0357": app, "push2": service}, r))
    await sender.stop()
    await app.stop()
    await service.stop()
    return rounds


def spread(values):
    values = sorted(values)
    return values[len(values) // 2], values[0], values[-1]


def core_costs():
    r = subprocess.run(["cargo", "run", "-q", "--release", "--example", "push2_cost"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = Prosody(version=VERSION, components=["push2.localhost"],
                options={"c2s_stanza_size_limit": 1024 * 1024})
    try:
        p.start(timeout=60)
        rounds = run(bench(p), timeout=3600)
    finally:
        p.cleanup()
    per_push = {g: [(x[g] - x["none"]) * 1e6 / USERS for x in rounds] for g in ("xep0357", "push2")}
    first = {g: v[0] for g, v in per_push.items()}
    steady = {g: spread(v[1:]) for g, v in per_push.items()}
    ratio = spread([a / b for a, b in zip(per_push["push2"][1:], per_push["xep0357"][1:])])
    core = core_costs()
    log(f"Push 2.0 beside XEP-0357, Prosody {VERSION}: {USERS} users each, one offline message each, "
        f"{ROUNDS} rounds after the first (median [min–max]), CPU per push over an offline message without push")
    log("  XEP-0357 (publish-options): %.0f µs [%.0f–%.0f]" % steady["xep0357"])
    log("  Push 2.0 (RFC 8291 + ES256, token reused): %.0f µs [%.0f–%.0f]" % steady["push2"])
    log("  Push 2.0 / XEP-0357: %.2f× [%.2f–%.2f]" % ratio)
    log("  first round (each Push 2.0 token signed): XEP-0357 %.0f µs, Push 2.0 %.0f µs"
        % (first["xep0357"], first["push2"]))
    log("  core alone: encrypted message %.0f µs = RFC 8291 %.0f µs + ES256 JWT %.0f µs (reused after the first)"
        " + the rest; a notify-only message %.1f µs"
        % (core["encrypted_message_us"], core["rfc8291_us"], core["es256_jwt_us"], core["notify_only_message_us"]))
    print(json.dumps({"version": VERSION, "users": USERS, "per_push_us": steady, "ratio": ratio,
                      "first_round_us": first, "core_us": core}))


if __name__ == "__main__":
    main()
