"""XEP-0357 §5: publishing on offline messages, the summary's privacy,
importance, and the options that shape it."""

import asyncio
import xml.etree.ElementTree as ET

from harness import PUBLISH_OPTIONS, AppServer, Client, enable_devices, iq_type, message_pushes, run

OMEMO = ("<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'>"
         "<key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cA==</payload></encrypted>")


async def offline_user_with(prosody, user, nodes, options=None):
    await enable_devices(user, prosody.c2s_port, nodes, options=options)


def send_raw(client, to, inner, mtype="chat"):
    client.send_raw(f"<message to='{to}' type='{mtype}' id='m{id(inner)}'>{inner}</message>")


def test_one_publish_per_registration(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        await offline_user_with(prosody, romeo, ["a", "b"], {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s"})
        j = await Client(juliet, prosody.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 2, body="Wherefore art thou, Romeo?")
        await j.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert sorted(p.node for p in pushes) == ["a", "b"]
    for p in pushes:
        assert p.sender == "localhost"  # from the host JID
        assert p.summary == {  # private by default: no sender, placeholder body
            "FORM_TYPE": "urn:xmpp:push:summary",
            "message-count": "1",
            "last-message-body": "New Message!",
        }
        assert p.options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s"}
        text = "".join(p.xml.itertext())
        assert "New Message!" in text  # (the text is read: the check below can fail)
        assert "Wherefore" not in text
        assert "Wherefore" not in ET.tostring(p.xml, encoding="unicode")  # nor in an attribute


def test_importance(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        await offline_user_with(prosody, romeo, ["n"])
        j = await Client(juliet, prosody.c2s_port).start()
        results = {}
        for name, inner in [
            ("body", "<body>hello</body>"),
            ("omemo without body", OMEMO),
            ("pgp", "<x xmlns='jabber:x:encrypted'>qANQR1DB</x>"),
            ("ox", "<openpgp xmlns='urn:xmpp:openpgp:0'>BASE64</openpgp>"),
            ("call", "<propose xmlns='urn:xmpp:jingle-message:0' id='c1'>"
                     "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>"),
            ("empty body", "<body></body>"),
            ("receipt only", "<received xmlns='urn:xmpp:receipts' id='x'/>"),
        ]:
            send_raw(j, romeo, inner)
            results[name] = (await app.next_push()).important
        await j.stop()
        await app.stop()
        return results

    assert run(scenario()) == {
        "body": True, "omemo without body": True, "pgp": True, "ox": True, "call": True,
        "empty body": False, "receipt only": False,
    }


def test_body_and_sender_when_the_admin_opts_in(prosody_with):
    p = prosody_with(options={
        "push_notification_with_body": True,
        "push_notification_with_sender": True,
    })
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")

    async def scenario():
        app = await AppServer(p).start()
        await offline_user_with(p, romeo, ["n"])
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="Wherefore art thou, Romeo?", mtype="chat")
        push = await app.next_push()
        send_raw(j, romeo, OMEMO)
        encrypted = await app.next_push()
        await j.stop()
        await app.stop()
        return push, encrypted

    push, encrypted = run(scenario())
    assert push.summary["last-message-body"] == "Wherefore art thou, Romeo?"
    assert push.summary["last-message-sender"] == "juliet@localhost/phone"
    # OMEMO has no readable body: still important, with the placeholder
    assert encrypted.summary["last-message-body"] == "New Message!"


def test_important_body_and_max_devices(prosody_with):
    p = prosody_with(options={
        "push_notification_important_body": "You have mail",
        "push_max_devices": 2,
    })
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")

    async def scenario():
        app = await AppServer(p).start()
        # (distinct enable timestamps)
        await enable_devices(romeo, p.c2s_port, ("oldest", "middle", "newest"), pause=1.1)
        j = await Client(juliet, p.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 2)
        await j.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert sorted(x.node for x in pushes) == ["middle", "newest"]
    assert all(x.summary["last-message-body"] == "You have mail" for x in pushes)


def test_empty_important_body_sends_no_body(prosody_with):
    p = prosody_with(options={"push_notification_important_body": ""})
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")

    async def scenario():
        app = await AppServer(p).start()
        await offline_user_with(p, romeo, ["n"])
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="hi", mtype="chat")
        push = await app.next_push()
        await j.stop()
        await app.stop()
        return push

    assert run(scenario()).summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1"}


def test_bad_option_values_fall_back_to_defaults(prosody_with):
    p = prosody_with(options={"push_max_devices": 0, "push_max_errors": -3})
    assert "option 'push_max_devices' is 0" in p.log()
    assert "option 'push_max_errors' is -3" in p.log()
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")

    async def scenario():
        app = await AppServer(p).start()
        await offline_user_with(p, romeo, ["a", "b", "c", "d", "e"])
        j = await Client(juliet, p.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 5)  # default cap of 5 devices
        await j.stop()
        await app.stop()
        return pushes

    assert len(run(scenario())) == 5
