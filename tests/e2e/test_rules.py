"""Business rules 4–9a: MAM, urgent calls, bare groupchat, carbons, CSI,
the events other modules use, and one push per stanza across paths."""

import asyncio

from conftest import make_users
from harness import DIST, NS_PUSH, AppServer, Client, enable_devices, error_of, iq_type, run
from test_smacks import CHAT_STATE, phone_with_push, pushes_within, raw

PROPOSE = ("<propose xmlns='urn:xmpp:jingle-message:0' id='call1'>"
           "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>")


async def gone_device(prosody, user, node):
    """A device that enabled push and then went away (session closed)."""
    c = await Client(user, prosody.c2s_port, resource=node).start()
    assert iq_type(await c.enable("push.localhost", node)) == "result"
    await c.stop()


def test_ours_is_the_module_that_runs(prosody):
    # On Prosody 13, core ships its own mod_cloud_notify: ours, first in
    # plugin_paths, takes its place.
    log = prosody.log()
    assert f"Module loaded (core 0.1.0, from {DIST}/mod_cloud_notify)" in log


def test_mam_pushes_only_devices_without_a_session(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        await gone_device(prosody, romeo, "old")
        laptop = await Client(romeo, prosody.c2s_port, resource="laptop").start()
        j = await Client(juliet, prosody.c2s_port).start()
        await asyncio.sleep(0.3)
        raw(j, romeo, "<body>one</body>")
        first = await pushes_within(app, 1.5)
        # A device with a live session gets no MAM push.
        assert iq_type(await laptop.enable("push.localhost", "laptop")) == "result"
        raw(j, romeo, "<body>two</body>")
        second = await pushes_within(app, 1.5)
        # The user's own outgoing message is archived for them, but is not
        # addressed to them: no push.
        raw(laptop, juliet, "<body>reply</body>")
        own = await pushes_within(app, 1.5)
        for c in (laptop, j):
            await c.stop()
        await app.stop()
        return first, second, own

    first, second, own = run(scenario())
    assert [(p.node, p.important) for p in first] == [("old", True)]
    assert [p.node for p in second] == ["old"]
    assert own == []


def test_mam_and_offline_together_push_once(prosody, users):
    """Another device connected without presence: the message is archived
    (MAM path) and goes offline (offline path); one push, not two."""
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        await gone_device(prosody, romeo, "old")
        silent = await Client(romeo, prosody.c2s_port, resource="silent").start(presence=False)
        j = await Client(juliet, prosody.c2s_port).start()
        raw(j, romeo, "<body>hello?</body>", id_="dup1")
        pushes = await pushes_within(app, 2.0)
        for c in (silent, j):
            await c.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert [(p.node, p.important) for p in pushes] == [("old", True)]
    offline = prosody.store_file(romeo.split("@")[0], store="offline").with_suffix(".list")
    assert "hello?" in offline.read_text()  # it did take the offline path too


def test_urgent_call_reaches_live_devices(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        phone = await Client(romeo, prosody.c2s_port).start()
        assert iq_type(await phone.enable("push.localhost", "phone")) == "result"
        j = await Client(juliet, prosody.c2s_port).start()
        raw(j, romeo, "<body>not urgent</body>")
        normal = await pushes_within(app, 1.5)
        raw(j, romeo, PROPOSE)
        call = await pushes_within(app, 1.5)
        for c in (phone, j):
            await c.stop()
        await app.stop()
        return normal, call

    normal, call = run(scenario())
    assert normal == []
    assert [(p.node, p.important) for p in call] == [("phone", True)]


def test_bare_groupchat_messages(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        await gone_device(prosody, romeo, "phone")
        j = await Client(juliet, prosody.c2s_port).start()
        raw(j, romeo, "<body>to the room</body>", mtype="groupchat")
        body = await pushes_within(app, 1.5)
        raw(j, romeo, "<subject>new topic</subject>", mtype="groupchat")
        subject = await pushes_within(app, 1.5)
        await j.stop()
        await app.stop()
        return body, subject

    body, subject = run(scenario())
    assert [(p.node, p.important) for p in body] == [("phone", True)]
    assert [(p.node, p.important) for p in subject] == [("phone", False)]


def test_carbon_of_an_outgoing_message_is_not_important(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        phone = await Client(romeo, prosody.c2s_port, smacks=True).start()
        assert iq_type(await phone.iq_set("<enable xmlns='urn:xmpp:carbons:2'/>")) == "result"
        assert iq_type(await phone.enable("push.localhost", "phone")) == "result"
        await asyncio.sleep(0.5)
        await phone.kill()
        laptop = await Client(romeo, prosody.c2s_port, resource="laptop").start()
        j = await Client(juliet, prosody.c2s_port).start()
        await asyncio.sleep(0.3)
        raw(laptop, juliet, "<body>sent from the laptop</body>")
        pushes = await pushes_within(app, 2.5)
        for c in (laptop, j):
            await c.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert [(p.node, p.important) for p in pushes] == [("phone", False)]


def test_stanzas_held_by_csi_are_not_pushed(prosody_with, users):
    p = prosody_with(options={"smacks_max_inactive_unacked_stanzas": 0})
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        phone = await phone_with_push(p, romeo)
        phone.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
        await asyncio.sleep(0.3)
        phone.stop_acking()
        j = await Client(juliet, p.c2s_port).start()
        raw(j, romeo, CHAT_STATE)  # held back by mod_csi_simple
        held = await pushes_within(app, 4.0)
        raw(j, romeo, "<body>important</body>")  # flushes the buffer
        flushed = await pushes_within(app, 5.0)
        await j.stop()
        await app.stop()
        return held, flushed

    held, flushed = run(scenario())
    assert held == []
    assert any(p.important for p in flushed) and all(p.node == "phone" for p in flushed)


def test_events_for_other_modules(prosody_with):
    p = prosody_with(modules=("cloud_notify", "cloud_notify_events_probe"))
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        c = await Client(romeo, p.c2s_port).start()
        vetoed = await c.enable("push.localhost", "veto")
        await c.stop()
        await enable_devices(romeo, p.c2s_port, ("plain", "blocked", "rewrite"))
        j = await Client(juliet, p.c2s_port).start()
        raw(j, romeo, "<body>hi</body>")
        offline = await pushes_within(app, 1.5)
        c = await Client(romeo, p.c2s_port).start(presence=False)
        await c.iq_set("<ping xmlns='urn:example:probe'/>")
        ping_all = await pushes_within(app, 1.5)
        await c.iq_set("<ping xmlns='urn:example:probe' node='plain'/>")
        ping_one = await pushes_within(app, 1.5)
        for x in (c, j):
            await x.stop()
        await app.stop()
        return vetoed, offline, ping_all, ping_one

    vetoed, offline, ping_all, ping_one = run(scenario())
    # cloud_notify/registration: the veto's error reached the client, nothing stored.
    assert error_of(vetoed) == ("cancel", "not-allowed")
    assert "veto" not in p.store_file(romeo.split("@")[0]).read_text()
    # cloud_notify/push: "blocked" never sent, "rewrite" changed before sending.
    assert sorted(x.node for x in offline) == ["plain", "rewrite"]
    rewritten = next(x for x in offline if x.node == "rewrite")
    probe = rewritten.xml.find(f".//{{{NS_PUSH}}}notification/{{urn:example:probe}}probe")
    assert probe is not None and probe.get("kind") == "message"
    # cloud-notify-ping: all registrations (the handler still blocks one), or the given ones.
    assert sorted(x.node for x in ping_all) == ["plain", "rewrite"]
    assert all(not x.important for x in ping_all)
    rewritten = next(x for x in ping_all if x.node == "rewrite")
    # (a ping has no stanza of its own: handlers get a bodiless message)
    assert rewritten.xml.find(f".//{{urn:example:probe}}probe").get("kind") == "message"
    assert [x.node for x in ping_one] == ["plain"]
