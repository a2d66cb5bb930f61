"""Registrations that last: re-attached when a device reconnects without
enabling again, ended by the app server itself (XEP-0357 §7), and a last
wake-up before a hibernated session expires."""

import asyncio

import pytest

from conftest import make_users
from harness import AppServer, Client, enable_devices, iq_type, run
from store import read_store
from test_admin import metric, scrape

METRICS = {"statistics": "internal", "statistics_interval": "manual"}
PREFIX = "prosody_mod_cloud_notify__"
from test_smacks import CHAT_STATE, phone_with_push, pushes_within, raw

DESTROYED = "Destroying session for hibernating too long"


def test_a_device_that_reconnects_without_enabling_gets_its_registration_back(prosody_with):
    p = prosody_with(options={"smacks_hibernation_time": 2, "push_max_hibernation_timeout": 8})
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        # The phone enabled once, then went away cleanly; the tablet enabled
        # and disabled again; the laptop never enabled.
        phone = await phone_with_push(p, romeo, node="phone", resource="phone")
        await phone.stop()
        tablet = await phone_with_push(p, romeo, node="tablet", resource="tablet")
        assert iq_type(await tablet.disable("push.localhost", "tablet")) == "result"
        await tablet.stop()
        # All three come back in new sessions, without <enable/>, and die.
        devices = {}
        for resource in ("phone", "tablet", "laptop"):
            c = await Client(romeo, p.c2s_port, smacks=True, resource=resource).start()
            await asyncio.sleep(0.3)
            devices[resource] = c
        j = await Client(juliet, p.c2s_port).start()
        for c in devices.values():
            await c.kill()
        # A chat state (unimportant: the extension goes on) is queued for
        # each; only the phone's registration pushes, through smacks.
        for resource in devices:
            raw(j, f"{romeo}/{resource}", CHAT_STATE)
        pushes = await pushes_within(app, 1.5)
        # Past smacks' own 2 s: only the phone's session is kept.
        await asyncio.sleep(2.0)
        destroyed = p.log().count(DESTROYED)
        resumed = await devices["phone"].resume()
        for c in (resumed, j):
            await c.stop()
        await app.stop()
        return pushes, destroyed

    pushes, destroyed = run(scenario())
    assert [(x.node, x.important) for x in pushes] == [("phone", False)]
    assert destroyed == 2  # the tablet (disabled since) and the laptop (never enabled)
    assert "Push registration push.localhost<phone re-attached" in p.log()


def test_the_app_server_ends_a_registration(prosody_with):
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"), options=METRICS,
                     components=["other.localhost"])
    romeo, juliet = make_users(p)("romeo", "juliet")
    store = p.store_file(romeo.split("@")[0])

    def affiliation_none(node):
        return (f"<event xmlns='http://jabber.org/protocol/pubsub#event'><affiliations node='{node}'>"
                f"<affiliation jid='{romeo}' affiliation='none'/></affiliations></event>")

    async def scenario():
        app = await AppServer(p).start()
        other = await AppServer(p, jid="other.localhost").start()
        await enable_devices(romeo, p.c2s_port, ("n1", "n2"))
        # From anyone but the registered app server: nothing changes.
        other.send_raw(f"<message from='other.localhost' to='{romeo}'>{affiliation_none('n1')}</message>")
        await asyncio.sleep(0.5)
        before = sorted(read_store(store))
        # From the app server: that node's registration ends.
        app.send_raw(f"<message from='push.localhost' to='{romeo}'>{affiliation_none('n1')}</message>")
        await asyncio.sleep(0.5)
        after = sorted(read_store(store))
        while not app.pushes.empty():  # (the other's message was an ordinary one, pushed)
            app.pushes.get_nowait()
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="hi", mtype="chat")
        pushes = await pushes_within(app, 1.5)
        await j.stop()
        await other.stop()
        await app.stop()
        return before, after, pushes

    before, after, pushes = run(scenario())
    assert before == ["push.localhost<n1", "push.localhost<n2"]
    assert after == ["push.localhost<n2"]
    assert [x.node for x in pushes] == ["n2"]
    assert "Push notifications disabled by the app server for romeo" in p.log()
    assert metric(scrape(p), PREFIX + "remote_disabled_total") == 1


@pytest.mark.parametrize("extended", [False, True])
def test_a_last_wake_up_before_the_hibernated_session_expires(prosody_with, extended):
    # smacks' own 4 s, or extended to 6 s; the wake-up 2 s before the end.
    options = {"smacks_hibernation_time": 4, "push_wake_before_expiry": 2,
               "push_max_hibernation_timeout": 6 if extended else 0}
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"), options={**options, **METRICS})
    romeo = make_users(p)("romeo")
    due = 4.0 if extended else 2.0

    async def scenario():
        app = await AppServer(p).start()
        phone = await phone_with_push(p, romeo)
        loop = asyncio.get_running_loop()
        await phone.kill()
        killed = loop.time()
        pushes = await pushes_within(app, due + 3.0)
        # Resumed in time: no wake-up.
        phone2 = await phone_with_push(p, romeo, node="phone2", resource="phone2")
        await phone2.kill()
        await asyncio.sleep(0.5)
        phone2 = await phone2.resume()
        quiet = await pushes_within(app, due + 1.5)
        await phone2.stop()
        await app.stop()
        return pushes, killed, quiet

    pushes, killed, quiet = run(scenario())
    assert [(x.node, x.important) for x in pushes] == [("phone", False)]
    # When it was due: push_wake_before_expiry before the (extended) end,
    # not at once and not at the end.
    woke_after = pushes[0].at - killed
    assert due - 0.5 <= woke_after <= due + 1.0, woke_after
    assert quiet == []
    assert p.log().count("waking the device") == 1
    assert metric(scrape(p), PREFIX + "pushes_total", kind="wake") == 1


WAIT = ("error", "wait", "resource-constraint")


def test_wait_errors_are_retried_with_the_latest_summary_then_given_up(prosody_with):
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"),
                     options={**METRICS, "push_retry_delays": [1, 2], "push_notification_with_body": True})
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p, mode=WAIT).start()
        c = await Client(romeo, p.c2s_port).start()
        assert iq_type(await c.enable("push.localhost", "phone")) == "result"
        await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        loop = asyncio.get_running_loop()
        # Throttled throughout: the push, a retry after ~1 s, one after ~2 s more, then nothing.
        j.send_message(mto=romeo, mbody="one", mtype="chat")
        j.send_message(mto=romeo, mbody="two", mtype="chat")
        start = loop.time()
        throttled = []
        for push in await pushes_within(app, 6.0):
            throttled.append((round(push.at - start, 1), push.summary["last-message-body"]))
        # Throttled once, then through: one retry, delivered, no more.
        j.send_message(mto=romeo, mbody="three", mtype="chat")
        await app.next_push()
        app.mode = "result"
        recovered = await pushes_within(app, 3.0)
        await j.stop()
        await app.stop()
        return throttled, recovered

    throttled, recovered = run(scenario())
    bodies = [b for _, b in throttled]
    # Two pushes, then one retry per delay carrying the latest summary ("two").
    assert bodies == ["one", "two", "two", "two"], throttled
    assert 0.7 <= throttled[2][0] <= 1.6 and 2.2 <= throttled[3][0] <= 4.0, throttled
    assert "after every retry: given up" in p.log()
    assert [x.summary["last-message-body"] for x in recovered] == ["three"]
    record = read_store(p.store_file(romeo.split("@")[0]))["push.localhost<phone"]
    assert "error_count" not in record  # wait never counts
    metrics = scrape(p)
    assert metric(metrics, PREFIX + "pushes_total", kind="retry") == 3
    assert metric(metrics, PREFIX + "retries_given_up_total") == 1


def test_a_retry_is_dropped_when_the_device_connects(prosody_with):
    p = prosody_with(options={"push_retry_delays": [1.5]})
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p, mode=WAIT).start()
        for device in ("phone", "tablet"):
            c = await Client(romeo, p.c2s_port, resource=device).start()
            assert iq_type(await c.enable("push.localhost", device)) == "result"
            await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="hi", mtype="chat")
        await app.next_push()
        await app.next_push()
        # The phone comes back (without enabling again) before the retries
        # are due: only the tablet's is sent.
        phone = await Client(romeo, p.c2s_port, resource="phone").start()
        retried = await pushes_within(app, 2.5)
        for x in (phone, j):
            await x.stop()
        await app.stop()
        return retried

    assert [x.node for x in run(scenario())] == ["tablet"]


def test_push_list_shows_errors_retries_and_sessions(prosody_with):
    p = prosody_with(modules=("cloud_notify", "admin_shell"),
                     options={"push_retry_delays": [30], "push_max_errors": 5})
    romeo, juliet = make_users(p)("romeo", "juliet")

    def listed():
        r = p.ctl("shell", "push", "list", romeo)
        assert r.returncode == 0, r.stdout + r.stderr
        return {line.split("\t")[0]: line for line in r.stdout.splitlines() if "\t" in line}

    async def scenario():
        app = await AppServer(p, mode=("error", "cancel", "item-not-found")).start()
        for node in ("a", "b"):
            c = await Client(romeo, p.c2s_port, resource=node).start()
            assert iq_type(await c.enable("push.localhost", node)) == "result"
            await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="hi", mtype="chat")
        await pushes_within(app, 1.0)  # a and b: one error each
        app.mode = WAIT
        j.send_message(mto=romeo, mbody="again", mtype="chat")
        await pushes_within(app, 1.0)  # a and b: throttled, a retry each
        # The phone ("a") is back, in a session of its own.
        phone = await Client(romeo, p.c2s_port, resource="a").start()
        lines = await asyncio.to_thread(listed)
        for c in (phone, j):
            await c.stop()
        await app.stop()
        return lines

    lines = run(scenario())
    a, b = lines["push.localhost<a"], lines["push.localhost<b"]
    assert "errors=1" in a and "last_error=resource-constraint" in a and "session=live" in a
    assert "retry=none" in a  # the device connected: its retry was dropped
    assert "errors=1" in b and "retry=attempt 1 in" in b and "session=none" in b
