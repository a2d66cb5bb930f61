"""Issue 27 §4: an outage of the route to the push service is not the app
server's error. While the link is down, our own server answers each publish
itself (a component that is not connected: wait/remote-server-timeout; a
remote push service whose domain does not resolve: an s2s bounce,
cancel/remote-server-not-found). Those answers are retried with the wait
back-off and never count against push_max_errors: an outage of any length
deletes nothing, and pushes flow again once the link is back."""

import asyncio

from conftest import make_users
from harness import AppServer, Client, iq_type, run
from store import read_store
from test_admin import metric, scrape
from test_faults import METRICS, PREFIX

REMOTE = "push.nowhere.invalid"  # (RFC 2606: never resolves)


def test_an_outage_deletes_nothing_and_pushes_flow_again(prosody_with):
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"),
                     options={**METRICS, "push_max_errors": 2, "push_retry_delays": [1, 1],
                              "push_counts_write_interval": 1,
                              # s2s on: a remote push service is reached (or not) for real
                              "modules_disabled": ["tls"]})
    romeo, juliet = make_users(p)("romeo", "juliet")
    store = p.store_file(romeo.split("@")[0])

    async def route_failures(at_least, within=60):
        for _ in range(within * 4):
            got = metric(scrape(p), PREFIX + "route_failures_total") or 0
            if got >= at_least:
                return got
            await asyncio.sleep(0.25)
        raise AssertionError(f"{got} route failures, expected {at_least}")

    async def scenario():
        phone = await Client(romeo, p.c2s_port, resource="phone").start()
        assert iq_type(await phone.enable("push.localhost", "phone-node")) == "result"
        assert iq_type(await phone.enable(REMOTE, "remote-node")) == "result"
        await phone.stop()
        j = await Client(juliet, p.c2s_port).start()
        # 20 messages while the app server is down and the remote push
        # service unreachable: publishes answered by our own server (the s2s
        # bounces) or not at all (Prosody drops a disconnected component's error).
        for i in range(20):
            j.send_message(mto=romeo, mbody=f"during the outage {i}", mtype="chat")
            await asyncio.sleep(0.05)
        failures = await route_failures(20)  # (the remote one's s2s bounces, at least)
        await asyncio.sleep(3)  # (the retries fail too, and error counts are written back)
        during = read_store(store)
        # The link is back.
        app = await AppServer(p).start()
        await asyncio.sleep(1.5)  # (a retry still waiting may come first)
        j.send_message(mto=romeo, mbody="after the outage", mtype="chat")
        pushes = []
        try:
            while True:
                pushes.append(await asyncio.wait_for(app.next_push(), 5))
        except asyncio.TimeoutError:
            pass
        await j.stop()
        await app.stop()
        return failures, during, pushes

    failures, during, pushes = run(scenario(), timeout=180)
    assert failures >= 20
    assert sorted(during) == sorted([f"{REMOTE}<remote-node", "push.localhost<phone-node"])
    assert all(not r.get("error_count") for r in during.values()), during
    assert any(push.node == "phone-node" for push in pushes)
    assert sorted(read_store(store)) == sorted([f"{REMOTE}<remote-node", "push.localhost<phone-node"])
    log = p.log()
    assert "remote-server-not-found" in log  # (the s2s bounces did happen)
    assert "Disabling push notifications" not in log
    assert p.alive()
