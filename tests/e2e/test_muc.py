"""mod_muc_cloud_notify: push registered against a MUC domain, for mentions
of absent members (or every message, with muc_push_policy = "all"), and for
messages bounced by ghost occupants."""

import asyncio

from conftest import make_users
from harness import NS_PUSH, AppServer, Client, error_of, iq_type, run
from test_smacks import pushes_within

MUC = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_REFERENCE = "urn:xmpp:reference:0"


def muc_prosody(prosody_with, **muc_options):
    return prosody_with(muc=MUC, muc_options=muc_options)


async def muc_iq(client, payload):
    """An IQ set to the MUC domain (or a room); returns the answer."""
    iq = client.make_iq_set(ito=MUC)
    import xml.etree.ElementTree as ET
    iq.append(ET.fromstring(payload))
    try:
        return (await iq.send(timeout=10)).xml
    except Exception as e:  # IqError carries the error reply
        return e.iq.xml


async def enable_muc_push(client, node, jid="push.localhost"):
    jid_attr = f" jid='{jid}'" if jid else ""
    return await muc_iq(client, f"<enable xmlns='{NS_PUSH}'{jid_attr} node='{node}'/>")


async def join(client, room, nick):
    client.send_raw(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'/></presence>")
    await asyncio.sleep(0.4)


async def register_nick(client, room, nick):
    iq = client.make_iq_set(ito=room)
    import xml.etree.ElementTree as ET
    iq.append(ET.fromstring(
        "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>"
        f"<field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"))
    reply = (await iq.send(timeout=10)).xml
    assert iq_type(reply) == "result"


def say(client, room, body, mentions=(), id_="m1"):
    """A groupchat message; `mentions`: (begin, end) character offsets."""
    refs = "".join(f"<reference xmlns='{NS_REFERENCE}' type='mention' begin='{b}' end='{e}' "
                   f"uri='xmpp:{room}'/>" for b, e in mentions)
    client.send_raw(f"<message to='{room}' type='groupchat' id='{id_}'><body>{body}</body>{refs}</message>")


async def member_with_push(p, user, room, nick, node):
    """A member who registered a nickname, enabled push against the MUC
    domain, and left the room."""
    c = await Client(user, p.c2s_port, resource="laptop").start()
    await join(c, room, nick)
    await register_nick(c, room, nick)
    assert iq_type(await enable_muc_push(c, node)) == "result"
    c.send_raw(f"<presence to='{room}/{nick}' type='unavailable'/>")
    await asyncio.sleep(0.3)
    return c


BODY = "Grüße, Jürgen!"  # "Jürgen" is characters 7–13 (bytes 8–15)


async def romeo_and_absent_juliet(p, romeo, juliet, room):
    """The app server; romeo in the room; juliet registered as "Jürgen"
    with push enabled, gone."""
    app = await AppServer(p).start()
    r = await Client(romeo, p.c2s_port).start()
    await join(r, room, "Romeo")
    j = await member_with_push(p, juliet, room, "Jürgen", "j-node")
    return app, r, j


def test_mentions_of_absent_members(prosody_with):
    p = muc_prosody(prosody_with)
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"

    async def scenario():
        app, r, j = await romeo_and_absent_juliet(p, romeo, juliet, room)
        say(r, room, BODY, mentions=[(7, 13), (7, 13)], id_="m1")  # mentioned twice: one push
        mention = await pushes_within(app, 2.0)
        say(r, room, "No mention here", id_="m2")
        plain = await pushes_within(app, 1.5)
        await join(j, room, "Jürgen")  # joined: no push
        say(r, room, BODY, mentions=[(7, 13)], id_="m3")
        joined = await pushes_within(app, 1.5)
        j.send_raw(f"<presence to='{room}/Jürgen' type='unavailable'/>")
        await asyncio.sleep(0.3)
        assert iq_type(await muc_iq(j, f"<disable xmlns='{NS_PUSH}' jid='push.localhost' node='j-node'/>")) == "result"
        say(r, room, BODY, mentions=[(7, 13)], id_="m4")
        disabled = await pushes_within(app, 1.5)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return mention, plain, joined, disabled

    mention, plain, joined, disabled = run(scenario())
    assert [(x.node, x.sender, x.important) for x in mention] == [("j-node", MUC, True)]
    assert "Grüße" not in str(list(mention[0].xml.itertext()))  # private by default
    assert plain == [] and joined == [] and disabled == []


def test_policy_all_pushes_every_message_to_absent_members(prosody_with):
    p = muc_prosody(prosody_with, muc_push_policy="all", push_notification_with_sender=True)
    romeo, juliet, nurse = make_users(p)("romeo", "juliet", "nurse")
    room = f"verona@{MUC}"

    async def scenario():
        app = await AppServer(p).start()
        r = await Client(romeo, p.c2s_port).start()
        await join(r, room, "Romeo")
        j = await member_with_push(p, juliet, room, "Juliet", "j-node")
        n = await member_with_push(p, nurse, room, "Nurse", "n-node")
        await join(n, room, "Nurse")  # present: no push for her
        say(r, room, "Good morrow", id_="a1")
        pushes = await pushes_within(app, 2.0)
        for c in (r, j, n):
            await c.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert [x.node for x in pushes] == ["j-node"]
    # The sender shown is the occupant JID, never the real one.
    assert pushes[0].summary["last-message-sender"] == f"{room}/Romeo"


def test_bad_enable_gets_a_clear_error(prosody_with):
    p = muc_prosody(prosody_with)
    juliet = make_users(p)("juliet")

    async def scenario():
        c = await Client(juliet, p.c2s_port).start()
        no_jid = await enable_muc_push(c, "n", jid=None)
        own = await enable_muc_push(c, "n", jid=juliet)
        await c.stop()
        return no_jid, own

    no_jid, own = run(scenario())
    assert error_of(no_jid) == ("modify", "bad-request")
    assert error_of(own) == ("modify", "bad-request")


def test_ghost_occupant_gets_a_push_and_is_kicked(prosody_with):
    p = muc_prosody(prosody_with)
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"

    async def scenario():
        app, r, j = await romeo_and_absent_juliet(p, romeo, juliet, room)
        await join(j, room, "Jürgen")
        say(r, room, BODY, mentions=[(7, 13)], id_="g1")
        delivered = await pushes_within(app, 1.0)  # joined: nothing yet
        # Her server bounces the message: she is a ghost.
        j.send_raw(f"<message to='{room}/Romeo' from='{juliet}/laptop' type='error' id='g1'>"
                   "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                   "</error></message>")
        bounced = await pushes_within(app, 2.0)
        await asyncio.sleep(0.5)
        say(r, room, BODY, mentions=[(7, 13)], id_="g2")  # now absent: a mention pushes
        after = await pushes_within(app, 1.5)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return delivered, bounced, after

    delivered, bounced, after = run(scenario())
    assert delivered == []
    assert [(x.node, x.important) for x in bounced] == [("j-node", True)]
    assert [x.node for x in after] == ["j-node"], "the ghost was not kicked"
