"""XEP-0357 §3 (disco), §4 (enable), §6 (disable) against a real Prosody."""

import asyncio
import os

from harness import (NS_PUSH, PUBLISH_OPTIONS, AppServer, Client, error_of, iq_type, message_pushes, run)
from conftest import make_users
from store import read_store

DISCO_INFO = "http://jabber.org/protocol/disco#info"


def test_account_disco_advertises_push(prosody, users):
    romeo = users("romeo")

    async def scenario():
        c = await Client(romeo, prosody.c2s_port).start()
        info = await c["xep_0030"].get_info(jid=romeo, local=False)
        await c.stop()
        return info["disco_info"]["features"]

    assert NS_PUSH in run(scenario())


def test_enable_stores_the_reference_record(prosody, users):
    romeo = users("romeo")

    async def scenario():
        c = await Client(romeo, prosody.c2s_port, resource="orchard").start()
        reply = await c.enable("push.localhost", "yxs32uqsflafdk3iuqo",
                               {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "eruio234vzxc2kla-91"})
        await c.stop()
        return reply

    assert iq_type(run(scenario())) == "result"
    stored = read_store(prosody.store_file(romeo.split("@")[0]))
    assert list(stored) == ["push.localhost<yxs32uqsflafdk3iuqo"]
    record = stored["push.localhost<yxs32uqsflafdk3iuqo"]
    assert record["jid"] == "push.localhost"
    assert record["node"] == "yxs32uqsflafdk3iuqo"
    assert record["resource"] == "orchard"
    assert record["language"] == "en"
    assert isinstance(record["timestamp"], int) and record["timestamp"] > 1_600_000_000
    # publish-options kept in util.stanza's preserialized form
    opts = record["options"]
    assert opts["name"] == "x" and opts["attr"]["xmlns"] == "jabber:x:data"
    fields = {f["attr"]["var"]: f["__array"][0]["__array"][0] for f in opts["__array"]}
    assert fields == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "eruio234vzxc2kla-91"}


def test_bad_enables_get_errors_and_the_server_keeps_serving(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        c = await Client(romeo, prosody.c2s_port).start()
        results = {
            "no jid": error_of(await c.enable(None, "n")),
            "own full jid": error_of(await c.enable(f"{romeo}/phone", "n")),
            "own bare jid": error_of(await c.enable(romeo, "n")),
            "malformed jid": error_of(await c.enable("a@@b", "n")),
            "empty jid": error_of(await c.enable("", "n")),
            "wrong FORM_TYPE": error_of(await c.enable(
                "push.localhost", "n", {"FORM_TYPE": "urn:example:not-publish-options"})),
            "result form": error_of(await c.enable(
                "push.localhost", "n", {"FORM_TYPE": PUBLISH_OPTIONS}, form_type="result")),
            "two FORM_TYPEs": error_of(await c.enable(
                "push.localhost", "n", {"FORM_TYPE": PUBLISH_OPTIONS},
                extra_form=f"<field var='FORM_TYPE'><value>{PUBLISH_OPTIONS}</value></field>")),
            "huge options": error_of(await c.enable(
                "push.localhost", "n", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "x" * 20000})),
            "huge node": error_of(await c.enable("push.localhost", "n" * 5000)),
            "disable without jid": error_of(await c.disable(None)),
        }
        # then a normal scenario still works
        ok = await c.enable("push.localhost", "good", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s"})
        await c.stop()
        j = await Client(juliet, prosody.c2s_port).start()
        [push] = await message_pushes(app, j, romeo, 1, body="still there?")
        await j.stop()
        await app.stop()
        return results, ok, push

    results, ok, push = run(scenario())
    assert results == {
        "no jid": ("modify", "bad-request"),
        "own full jid": ("modify", "bad-request"),
        "own bare jid": ("modify", "bad-request"),
        "malformed jid": ("modify", "jid-malformed"),
        "empty jid": ("modify", "jid-malformed"),
        "wrong FORM_TYPE": ("modify", "bad-request"),
        "result form": ("modify", "bad-request"),
        "two FORM_TYPEs": ("modify", "bad-request"),
        "huge options": ("modify", "not-acceptable"),
        "huge node": ("modify", "not-acceptable"),
        "disable without jid": ("modify", "bad-request"),
    }
    assert iq_type(ok) == "result"
    assert push.node == "good"
    assert prosody.alive()
    # nothing the refused requests asked for was stored
    stored = read_store(prosody.store_file(romeo.split("@")[0]))
    assert list(stored) == ["push.localhost<good"]


def test_form_type_form_is_accepted(prosody, users):
    romeo = users("romeo")

    async def scenario():
        c = await Client(romeo, prosody.c2s_port).start()
        r1 = await c.enable("push.localhost", "f", {"FORM_TYPE": PUBLISH_OPTIONS}, form_type="form")
        r2 = await c.enable("push.localhost", "g", {"secret": "no form type"})
        await c.stop()
        return r1, r2

    r1, r2 = run(scenario())
    assert iq_type(r1) == "result" and iq_type(r2) == "result"


def test_enabling_again_replaces_with_latest_options(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        c = await Client(romeo, prosody.c2s_port).start()
        await c.enable("push.localhost", "n1", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "old"})
        await c.enable("push.localhost", "n1", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "new"})
        await c.stop()
        j = await Client(juliet, prosody.c2s_port).start()
        [push] = await message_pushes(app, j, romeo, 1)
        await j.stop()
        await app.stop()
        return push

    push = run(scenario())
    assert push.options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "new"}


def test_disable_with_node_and_without(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        # (three devices: one device enabling again replaces its own)
        for node in ("a", "b", "c"):
            c = await Client(romeo, prosody.c2s_port, resource=f"device-{node}").start()
            assert iq_type(await c.enable("push.localhost", node)) == "result"
            await c.stop()
        c = await Client(romeo, prosody.c2s_port).start()
        assert iq_type(await c.disable("push.localhost", "b")) == "result"
        await c.stop()
        j = await Client(juliet, prosody.c2s_port).start()
        first = sorted(p.node for p in await message_pushes(app, j, romeo, 2))
        c = await Client(romeo, prosody.c2s_port).start()
        assert iq_type(await c.disable("push.localhost")) == "result"
        await c.stop()
        j.send_message(mto=romeo, mbody="two", mtype="chat")
        await app.no_push(1.5)
        await j.stop()
        await app.stop()
        return first

    assert run(scenario()) == ["a", "c"]
    assert read_store(prosody.store_file(romeo.split("@")[0])) in (None, {}, [])


def test_disable_from_another_device_stops_pushes(prosody, users):
    """Disabled from the laptop, the phone's registration stops pushing,
    from the phone's own live session too (the reference keeps pushing
    from that session's fields until it ends): the phone's stream goes
    silent with a message queued for it, once before the disable (the
    control: pushed) and once after (not pushed)."""
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        phone = await Client(romeo, prosody.c2s_port, resource="phone", smacks=True).start()
        assert iq_type(await phone.enable("push.localhost", "phone-node")) == "result"
        await asyncio.sleep(0.5)
        j = await Client(juliet, prosody.c2s_port).start()
        await phone.kill()
        j.send_message(mto=romeo, mbody="before", mtype="chat")
        control = await app.next_push()
        await phone.resume()
        await asyncio.sleep(0.5)
        laptop = await Client(romeo, prosody.c2s_port, resource="laptop").start()
        assert iq_type(await laptop.disable("push.localhost", "phone-node")) == "result"
        await laptop.stop()
        await phone.kill()
        j.send_message(mto=romeo, mbody="after", mtype="chat")
        await app.no_push(2.0)
        await phone.resume()
        await phone.stop()
        await j.stop()
        await app.stop()
        return control

    control = run(scenario())
    assert control.node == "phone-node" and control.important


def test_a_device_enabling_again_replaces_its_registration(prosody_with):
    """Issue 27 §2 (ejabberd#4584): a device that enables again with a new
    node for the same app server (an APNs/FCM token rotated, the app
    reinstalled) keeps one registration: the dead token is not pushed. The
    same device with another app server, and another device, keep theirs."""
    p = prosody_with(components=["other.localhost"])
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        other = await AppServer(p, jid="other.localhost").start()
        phone = await Client(romeo, p.c2s_port, resource="phone").start()
        assert iq_type(await phone.enable("push.localhost", "token-1")) == "result"
        assert iq_type(await phone.enable("other.localhost", "elsewhere")) == "result"
        await phone.stop()
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        assert iq_type(await laptop.enable("push.localhost", "laptop-node")) == "result"
        await laptop.stop()
        # The token rotates: the app enables again, from the same resource.
        phone = await Client(romeo, p.c2s_port, resource="phone").start()
        assert iq_type(await phone.enable("push.localhost", "token-2")) == "result"
        await phone.stop()
        j = await Client(juliet, p.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 2)
        elsewhere = await other.next_push()
        await j.stop()
        await other.stop()
        await app.stop()
        return sorted(push.node for push in pushes), elsewhere.node

    nodes, elsewhere = run(scenario())
    assert nodes == ["laptop-node", "token-2"]
    assert elsewhere == "elsewhere"
    stored = read_store(p.store_file(romeo.split("@")[0]))
    assert sorted(stored) == ["other.localhost<elsewhere", "push.localhost<laptop-node", "push.localhost<token-2"]


def test_each_push_carries_its_own_registrations_publish_options(prosody, users):
    """Rule 110: pushes share a form's <publish-options> only with pushes of
    the same form, byte for byte; pushed again and again, every device's
    publish still echoes its own secret (in-band enables, three devices)."""
    from collections import Counter

    from test_admin import enable, offline_pushes
    romeo, juliet = users("romeo", "juliet")
    forms = {"n1": "s1", "n2": "s1", "n3": "s2"}
    for node, secret in forms.items():
        run(enable(prosody, romeo, node, {"FORM_TYPE": PUBLISH_OPTIONS, "secret": secret}))
    # (three messages, one after the other: each pushes every device)
    pushes = [p for _ in range(3) for p in run(offline_pushes(prosody, juliet, romeo, 3))]
    got = Counter((p.node, tuple(sorted(p.options.items()))) for p in pushes)
    assert got == Counter({(node, (("FORM_TYPE", PUBLISH_OPTIONS), ("secret", secret))): 3
                           for node, secret in forms.items()})


def test_a_client_enabling_again_as_it_is_is_not_written_again(prosody_with):
    """Conversations and Monal enable on every connection, with the same
    node and form. While nothing would change but the time, the record is
    not written again (its file stays as it was); pushes go on with it. A
    re-enable that changes something (a new secret), or that makes the
    registration the newest again (the order push_max_devices trims by),
    is written."""
    p = prosody_with(options={"push_max_devices": 2})
    romeo, juliet = make_users(p)("romeo", "juliet")
    path = p.store_file(romeo.split("@")[0])

    async def enable(resource, node, secret):
        c = await Client(romeo, p.c2s_port, resource=resource).start()
        reply = await c.enable("push.localhost", node, {"FORM_TYPE": PUBLISH_OPTIONS, "secret": secret})
        await c.stop()
        assert iq_type(reply) == "result"

    async def scenario():
        out = {}
        await enable("phone", "phone-node", "s1")
        out["first"], out["mtime"] = read_store(path), os.stat(path).st_mtime_ns
        await asyncio.sleep(1.1)
        await enable("phone", "phone-node", "s1")
        out["again"], out["mtime_again"] = read_store(path), os.stat(path).st_mtime_ns
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        out["pushes"] = await message_pushes(app, j, romeo, 1)
        await asyncio.sleep(1.1)
        await enable("phone", "phone-node", "s2")
        out["changed"] = read_store(path)
        out["pushes2"] = await message_pushes(app, j, romeo, 1)
        # Another device enables; the phone enables again as it is: it is
        # the newest again, so that a third device drops the tablet.
        await asyncio.sleep(1.1)
        await enable("tablet", "tablet-node", "t")
        await asyncio.sleep(1.1)
        await enable("phone", "phone-node", "s2")
        await asyncio.sleep(1.1)
        await enable("laptop", "laptop-node", "l")
        out["pushes3"] = await message_pushes(app, j, romeo, 2)
        await j.stop()
        await app.stop()
        return out

    out = run(scenario())
    key = "push.localhost<phone-node"
    assert out["again"] == out["first"], "the same record"
    assert out["mtime_again"] == out["mtime"], "not written again"
    assert [(x.node, x.options["secret"]) for x in out["pushes"]] == [("phone-node", "s1")]
    assert out["changed"][key]["timestamp"] > out["first"][key]["timestamp"]
    assert [(x.node, x.options["secret"]) for x in out["pushes2"]] == [("phone-node", "s2")]
    assert sorted(x.node for x in out["pushes3"]) == ["laptop-node", "phone-node"]
    assert sorted(read_store(path)) == ["push.localhost<laptop-node", key]
