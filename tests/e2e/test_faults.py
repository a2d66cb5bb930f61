"""Faults: a store failing on every write (and read) path, app servers that
misbehave, Prosody killed while pushes are pending, and many devices
enabling and disabling at once. Nothing is lost, nothing is pushed twice,
and the server keeps serving."""

import asyncio
import os
import random
import signal

from conftest import make_users
from harness import AppServer, Client, error_of, iq_type, message_pushes, run
from store import read_store
from test_admin import metric, scrape
from test_smacks import pushes_within

TEST_STORE = {"cloud_notify": "test"}
METRICS = {"statistics": "internal", "statistics_interval": "manual"}
PREFIX = "prosody_mod_cloud_notify__"


# Error counts are written back with the unread counts (never a write per
# answer): with push_counts_write_interval = 1, within this many seconds.
WRITTEN_BACK = 2.5

def faulty(p, what, on=True):
    """Turns the test store's read or write failures on or off."""
    path = p.dir / "data" / f"fail-{what}"
    if on:
        path.write_text("")
    elif path.exists():
        path.unlink()


async def enabled(p, user, node):
    c = await Client(user, p.c2s_port, resource=node).start()
    reply = await c.enable("push.localhost", node)
    await c.stop()
    return reply


async def offline_nodes(p, sender, to, wait=1.2):
    app = await AppServer(p).start()
    c = await Client(sender, p.c2s_port).start()
    c.send_message(mto=to, mbody="hi", mtype="chat")
    pushes = await pushes_within(app, wait)
    await c.stop()
    await app.stop()
    return sorted(x.node for x in pushes)


def test_the_store_failing_on_every_path(prosody_with):
    p = prosody_with(modules=("cloud_notify", "register"),
                     options={"storage": TEST_STORE, "push_max_devices": 2, "push_max_errors": 3,
                              "allow_registration": True, "push_counts_write_interval": 1})
    romeo, juliet = make_users(p)("romeo", "juliet")
    store = p.store_file(romeo.split("@")[0])
    for node in ("a", "b"):
        assert iq_type(run(enabled(p, romeo, node))) == "result"
    before = read_store(store)

    faulty(p, "writes")

    async def writes():
        c = await Client(romeo, p.c2s_port, resource="c").start()
        # Enable (which would also trim the oldest beyond push_max_devices), disable.
        enable = await c.enable("push.localhost", "c")
        disable = await c.disable("push.localhost", "a")
        await c.stop()
        return enable, disable

    enable, disable = run(writes())
    assert error_of(enable) == ("wait", "internal-server-error")
    assert error_of(disable) == ("wait", "internal-server-error")
    # Nothing changed, in the store or in memory: both still push.
    assert read_store(store) == before
    assert run(offline_nodes(p, juliet, romeo)) == ["a", "b"]

    # Error counts: the write fails and is logged; the count goes on in
    # memory, and the next write that succeeds stores it.
    async def errors(n):
        app = await AppServer(p, mode=("error", "cancel", "item-not-found")).start()
        j = await Client(juliet, p.c2s_port).start()
        for _ in range(n):
            await message_pushes(app, j, romeo, 2, quiet=0.3)
        await asyncio.sleep(WRITTEN_BACK)
        await j.stop()
        await app.stop()

    run(errors(1))
    assert "Error writing push registrations of 'romeo" in p.log()
    assert read_store(store) == before
    faulty(p, "writes", on=False)
    run(errors(1))
    assert {k: v.get("error_count") for k, v in read_store(store).items()} == {
        "push.localhost<a": 2, "push.localhost<b": 2}

    # Reads failing: enable answers internal-server-error, a message for a
    # user not in memory pushes nothing, nothing crashes.
    p.restart()
    faulty(p, "reads")
    assert error_of(run(enabled(p, romeo, "d"))) == ("wait", "internal-server-error")
    assert run(offline_nodes(p, juliet, romeo)) == []
    assert "Error reading push registrations of 'romeo" in p.log()
    faulty(p, "reads", on=False)
    assert run(offline_nodes(p, juliet, romeo)) == ["a", "b"]

    # Account deletion with the store failing: logged, and the name's next
    # owner inherits nothing (Prosody purges the account's stores too).
    faulty(p, "writes")

    async def delete():
        c = await Client(romeo, p.c2s_port).start()
        reply = await c.iq_set("<query xmlns='jabber:iq:register'><remove/></query>")
        await asyncio.sleep(0.5)
        return reply

    assert iq_type(run(delete())) == "result"
    assert "Error removing push registrations of deleted user 'romeo" in p.log()
    faulty(p, "writes", on=False)
    p.add_user(romeo.split("@")[0])
    assert run(offline_nodes(p, juliet, romeo)) == []


class ManualAppServer(AppServer):
    """An app server that answers only when the test says so."""

    def __init__(self, p, jid=None):
        super().__init__(p, jid=jid, mode="silent")
        self.pending = []

    def _on_publish(self, iq):
        super()._on_publish(iq)
        self.pending.append((iq["id"], str(iq["from"]), str(iq["to"])))

    def answer(self, push_id, frm, kind="result", payload=""):
        self.send_raw(f"<iq type='{kind}' id='{push_id}' to='localhost' from='{frm}'>{payload}</iq>")


def test_app_servers_that_misbehave(prosody_with):
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"),
                     options={**METRICS, "push_response_timeout": 2, "push_max_errors": 2,
                              "push_counts_write_interval": 1,
                              # (no retries: an unanswered push is then forgotten; retries
                              # of unanswered pushes are test_outage.py's)
                              "push_retry_delays": []},
                     components=["other.localhost"])
    romeo, juliet = make_users(p)("romeo", "juliet")
    store = p.store_file(romeo.split("@")[0])
    assert iq_type(run(enabled(p, romeo, "phone"))) == "result"
    error = ("<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
             "</error>")

    async def scenario():
        app = await ManualAppServer(p).start()
        other = await AppServer(p, jid="other.localhost", mode="silent").start()
        j = await Client(juliet, p.c2s_port).start()
        out = {}
        # Never answers: forgotten after push_response_timeout (expired on
        # the sweep; no retries configured), never counted as an error.
        j.send_message(mto=romeo, mbody="1", mtype="chat")
        await app.next_push()
        # From another JID: ignored (and logged); the real answer still counts.
        j.send_message(mto=romeo, mbody="2", mtype="chat")
        await app.next_push()
        push_id = app.pending[-1][0]
        other.send_raw(f"<iq type='error' id='{push_id}' to='localhost' from='other.localhost'>{error}</iq>")
        await asyncio.sleep(WRITTEN_BACK)
        out["after_other"] = read_store(store)["push.localhost<phone"].get("error_count")
        # Twice: the second answer is not one of ours any more.
        app.answer(push_id, "push.localhost", "error", error)
        app.answer(push_id, "push.localhost", "error", error)
        await asyncio.sleep(WRITTEN_BACK)
        out["after_twice"] = read_store(store)["push.localhost<phone"].get("error_count")
        # Garbage: an error with no condition, a result with a payload.
        j.send_message(mto=romeo, mbody="3", mtype="chat")
        await app.next_push()
        app.answer(app.pending[-1][0], "push.localhost", "result", "<junk xmlns='urn:example'><a/></junk>")
        j.send_message(mto=romeo, mbody="4", mtype="chat")
        await app.next_push()
        app.answer(app.pending[-1][0], "push.localhost", "error", "<error/>")
        await asyncio.sleep(WRITTEN_BACK)
        out["after_garbage"] = read_store(store)["push.localhost<phone"].get("error_count")
        out["metrics"] = scrape(p)
        # Late: answered after push_response_timeout, ignored (else this
        # second consecutive error would disable the registration).
        j.send_message(mto=romeo, mbody="5", mtype="chat")
        await app.next_push()
        late = app.pending[-1][0]
        await asyncio.sleep(4.5)
        app.answer(late, "push.localhost", "error", error)
        await asyncio.sleep(WRITTEN_BACK)
        out["after_late"] = read_store(store)["push.localhost<phone"].get("error_count")
        out["end"] = scrape(p)
        await j.stop()
        await other.stop()
        await app.stop()
        return out

    out = run(scenario())
    assert out["after_other"] is None  # the answer from other.localhost counted nothing
    assert "Ignoring push answer from other.localhost" in p.log()
    assert out["after_twice"] == 1  # the second answer to one push is not counted
    assert out["after_garbage"] == 1  # the result reset the count, the bare <error/> counted
    assert metric(out["metrics"], PREFIX + "app_server_errors_total", type="cancel") == 2
    assert out["after_late"] == 1
    assert metric(out["end"], PREFIX + "outstanding") == 0  # the unanswered ones expired
    assert "push.localhost<phone" in read_store(store)
    assert p.alive()


def test_prosody_killed_while_pushes_are_pending(prosody_with):
    p = prosody_with()
    romeo, juliet = make_users(p)("romeo", "juliet")
    for node in ("a", "b"):
        assert iq_type(run(enabled(p, romeo, node))) == "result"

    async def pending_pushes():
        app = await AppServer(p, mode="silent").start()
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="while it dies", mtype="chat")
        pushes = [await app.next_push(), await app.next_push()]
        await j.stop()
        await app.stop()
        return pushes

    async def after_restart():
        app = await AppServer(p).start()
        repeated = await pushes_within(app, 2.0)
        j = await Client(juliet, p.c2s_port).start()
        new = await message_pushes(app, j, romeo, 2)
        await j.stop()
        await app.stop()
        return repeated, new

    for sig in (signal.SIGTERM, signal.SIGKILL):
        assert len(run(pending_pushes())) == 2
        os.killpg(p.proc.pid, sig)
        p.proc.wait(15)
        p.proc = None
        p.start()
        repeated, new = run(after_restart())
        assert repeated == [], f"pushed again after {sig!r}"
        assert sorted(x.node for x in new) == ["a", "b"]
        assert sorted(read_store(p.store_file(romeo.split("@")[0]))) == [
            "push.localhost<a", "push.localhost<b"]


async def churn(p, user, devices, ops, seed):
    """`devices` clients of `user` enabling and disabling at random, all at
    once; returns what each device's last acknowledged change was."""
    rng = random.Random(seed)
    clients = [await Client(user, p.c2s_port, resource=f"d{i}").start() for i in range(devices)]
    last = {}

    async def run_device(i, c):
        for _ in range(ops):
            if rng.random() < 0.5:
                reply = await c.enable("push.localhost", f"d{i}")
                if iq_type(reply) == "result":
                    last[i] = True
            else:
                reply = await c.disable("push.localhost", f"d{i}")
                if iq_type(reply) == "result":
                    last[i] = False
            assert iq_type(reply) == "result", reply

    await asyncio.gather(*(run_device(i, c) for i, c in enumerate(clients)))
    for c in clients:
        await c.stop()
    return {f"push.localhost<d{i}" for i, on in last.items() if on}


def test_devices_enabling_and_disabling_at_once_end_as_acknowledged(prosody_with):
    # 10,000 changes by 5 devices on the internal store, then 250 on a store
    # whose every call yields.
    for options, ops in (({}, 2000), ({"storage": TEST_STORE, "test_storage_delay": 0.002}, 50)):
        p = prosody_with(options=options)
        romeo, juliet = make_users(p)("romeo", "juliet")
        expected = run(churn(p, romeo, 5, ops, seed=ops), timeout=600)
        stored = read_store(p.store_file(romeo.split("@")[0])) or {}
        assert set(stored) == expected
        nodes = run(offline_nodes(p, juliet, romeo))
        assert nodes == sorted(e.split("<")[1] for e in expected)
        p.restart()
        assert run(offline_nodes(p, juliet, romeo)) == nodes
