#!/usr/bin/env python3
"""Where a workload's Lua time goes, per function: one Prosody with a push
module (BENCH_PROFILE_VARIANT: ours, the default, or ref) runs a workload
of bench.py (BENCH_PROFILE_WORKLOAD: w5, w5b, w1, w2…) for a few rounds
with mod_bench_probe counting the Lua VM instructions of every function
(sampled every 100, in every coroutine); prints the top 150.

Lua only: time in C and Rust (our core) is not counted here; callgrind
shows that part by function name (BENCH_KEEP_CALLGRIND=1 bench.py keeps
its dumps for callgrind_annotate)."""

import asyncio
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CHUNK, R5, Variant, log, variant_specs  # noqa: E402

WORKLOAD = os.environ.get("BENCH_PROFILE_WORKLOAD", "w5")
VARIANT = os.environ.get("BENCH_PROFILE_VARIANT", "ours")
ROUNDS = int(os.environ.get("BENCH_PROFILE_ROUNDS", "3"))


async def main():
    refdir = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    (refdir / "mod_cloud_notify").symlink_to(Path("/usr/lib/prosody/modules/mod_cloud_notify"))
    v = Variant(VARIANT, *variant_specs(refdir)[VARIANT])
    v.p.options["bench_lua_profile"] = True
    try:
        await v.start()
        await v.hibernate_w5()
        if WORKLOAD in ("w2", "w3", "w4"):
            await v.warm(WORKLOAD)
        await v.workload(WORKLOAD, CHUNK.get(WORKLOAD, R5))  # warm-up round
        await v.admin.iq("<iq type='set' id='prof1' to='localhost'><profile xmlns='urn:example:bench' on='true'/>"
                         "</iq>", "prof1")
        msgs = pushes = 0
        for _ in range(ROUNDS):
            r = await v.workload(WORKLOAD, CHUNK.get(WORKLOAD, R5))
            msgs, pushes = msgs + r["msgs"], pushes + r["pushes"]
        reply = await v.admin.iq("<iq type='set' id='prof2' to='localhost'><profile xmlns='urn:example:bench' "
                                 "on='false'/></iq>", "prof2")
        reply += await v.admin._read_until(b"</iq>")
        # (either attribute first, either quote)
        rows = [(m[1], m[0]) for m in re.findall(rb"<f n=['\"](\d+)['\"] at=['\"]([^'\"]*)['\"]", reply)]
        rows += re.findall(rb"<f at=['\"]([^'\"]*)['\"] n=['\"](\d+)['\"]", reply)
        rows.sort(key=lambda row: -int(row[1]))
        if not rows:
            log(f"no samples: {reply[:300]!r}")
        total = sum(int(n) for _, n in rows)
        log(f"{VARIANT}, {WORKLOAD}: {msgs} messages, {pushes} pushes; Lua instructions (×100) per function, "
            f"per message (top 150, {total * 100 / max(msgs, 1):.0f} per message in all):")
        for at, n in rows:
            log(f"{int(n) * 100 / max(msgs, 1):>10.0f}  {at.decode()}")
    finally:
        v.stop()


if __name__ == "__main__":
    asyncio.run(main())
