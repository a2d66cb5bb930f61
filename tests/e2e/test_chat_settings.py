"""Issue 27 §1: XEP-0492 chat notification settings. The user keeps, in a
group chat's XEP-0402 bookmark, whether they want to be notified always, on
mention or never, optionally per device identity; pushes about that chat's
messages follow it: the MUC module's pushes for its local members, and bare
groupchat messages to the user. Bookmarks are published as Monal and
slixmpp's xep_0492 plugin do (v0.2's namespace and v0.1's)."""

import asyncio

from conftest import make_users
from harness import AppServer, Client, iq_type, run
from test_muc import BODY, MUC, join, romeo_and_absent_juliet, say
from test_smacks import pushes_within

NS_BOOKMARKS = "urn:xmpp:bookmarks:1"
PUBLISH_OPTIONS = (
    "<publish-options><x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
    "<field var='pubsub#persist_items'><value>true</value></field>"
    "<field var='pubsub#max_items'><value>max</value></field>"
    "<field var='pubsub#send_last_published_item'><value>never</value></field>"
    "<field var='pubsub#access_model'><value>whitelist</value></field>"
    "</x></publish-options>")


async def pubsub_set(client, payload):
    import xml.etree.ElementTree as ET
    iq = client.make_iq_set()
    iq.append(ET.fromstring(f"<pubsub xmlns='http://jabber.org/protocol/pubsub'>{payload}</pubsub>"))
    try:
        return (await iq.send(timeout=10)).xml
    except Exception as e:  # IqError carries the error reply
        return e.iq.xml


async def bookmark(client, room, nick, notify=None, version=1):
    """Publishes the room's bookmark, with a <notify/> of `notify` (the
    settings' XML) in XEP-0492's namespace `version`."""
    ext = (f"<extensions><notify xmlns='urn:xmpp:notification-settings:{version}'>{notify}</notify></extensions>"
           if notify is not None else "")
    reply = await pubsub_set(client, (
        f"<publish node='{NS_BOOKMARKS}'><item id='{room}'>"
        f"<conference xmlns='{NS_BOOKMARKS}' name='Verona' autojoin='true'><nick>{nick}</nick>{ext}</conference>"
        f"</item></publish>{PUBLISH_OPTIONS}"))
    assert iq_type(reply) == "result", reply


async def unbookmark(client, room):
    reply = await pubsub_set(client, f"<retract node='{NS_BOOKMARKS}' notify='true'><item id='{room}'/></retract>")
    assert iq_type(reply) == "result", reply


# The phone's element wins over the fallback and another device's (XEP-0492
# v0.2 §3, "most specific").
ON_MENTION_FOR_PHONES = ("<always identity-category='client' identity-type='pc'/>"
                         "<on-mention identity-category='client' identity-type='phone'/>"
                         "<never/>")


def test_muc_pushes_follow_the_members_bookmark(prosody_with):
    p = prosody_with(muc=MUC, modules=("cloud_notify", "pep"), muc_options={"muc_push_policy": "all"})
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"

    async def scenario():
        app, r, j = await romeo_and_absent_juliet(p, romeo, juliet, room)
        out = {}
        say(r, room, "Before any bookmark", id_="m0")
        out["none"] = await pushes_within(app, 1.5)
        await bookmark(j, room, "Jürgen", ON_MENTION_FOR_PHONES)
        say(r, room, "Hello everyone", id_="m1")
        out["on-mention, not named"] = await pushes_within(app, 1.5)
        say(r, room, "Jürgen, look at the moon", id_="m2")
        out["on-mention, named"] = await pushes_within(app, 1.5)
        # v0.1's namespace, as slixmpp's plugin writes it.
        await bookmark(j, room, "Jürgen", "<never/>", version=0)
        say(r, room, "Grüße, Jürgen!", mentions=[(7, 13)], id_="m3")
        out["never, mentioned"] = await pushes_within(app, 1.5)
        await bookmark(j, room, "Jürgen", "<always/>")
        say(r, room, "Anything at all", id_="m4")
        out["always"] = await pushes_within(app, 1.5)
        await bookmark(j, room, "Jürgen", "<never/>")
        await unbookmark(j, room)
        say(r, room, "After the bookmark went", id_="m5")
        out["retracted"] = await pushes_within(app, 1.5)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return out

    out = run(scenario())
    assert {k: len(v) for k, v in out.items()} == {
        "none": 1, "on-mention, not named": 0, "on-mention, named": 1, "never, mentioned": 0,
        "always": 1, "retracted": 1}
    assert p.alive()


def test_bare_groupchat_follows_the_users_bookmark(prosody_with):
    """A room that delivers to the user's bare JID (a remote MUC's offline
    delivery, here a component): pushed per the user's setting."""
    p = prosody_with(modules=("cloud_notify", "pep"), components=["rooms.localhost"])
    romeo = make_users(p)("romeo")
    room = "verona@rooms.localhost"

    async def scenario():
        app = await AppServer(p).start()
        rooms = await AppServer(p, jid="rooms.localhost").start()
        c = await Client(romeo, p.c2s_port, resource="phone").start()
        assert iq_type(await c.enable("push.localhost", "r-node")) == "result"
        await bookmark(c, room, "Romeo", ON_MENTION_FOR_PHONES)
        await c.stop()
        out = {}

        def groupchat(body, extra="", id_="g"):
            rooms.send_raw(f"<message type='groupchat' from='{room}/Tybalt' to='{romeo}' id='{id_}'>"
                           f"<body>{body}</body>{extra}</message>")

        groupchat("A plain line", id_="g1")
        out["plain"] = await pushes_within(app, 1.5)
        groupchat("romeo, come out", id_="g2")
        out["named"] = await pushes_within(app, 1.5)
        groupchat("yes", f"<reply xmlns='urn:xmpp:reply:0' to='{room}/Romeo' id='x'/>", id_="g3")
        out["reply"] = await pushes_within(app, 1.5)
        groupchat("hey", f"<reference xmlns='urn:xmpp:reference:0' type='mention' uri='xmpp:{romeo}'/>", id_="g4")
        out["reference"] = await pushes_within(app, 1.5)
        c = await Client(romeo, p.c2s_port, resource="phone").start()
        await bookmark(c, room, "Romeo", "<never/>")
        await c.stop()
        groupchat("romeo, again", id_="g5")
        out["never"] = await pushes_within(app, 1.5)
        other = "elsewhere@rooms.localhost"
        rooms.send_raw(f"<message type='groupchat' from='{other}/Tybalt' to='{romeo}' id='g6'><body>x</body></message>")
        out["other room"] = await pushes_within(app, 1.5)
        await rooms.stop()
        await app.stop()
        return out

    out = run(scenario())
    assert {k: len(v) for k, v in out.items()} == {
        "plain": 0, "named": 1, "reply": 1, "reference": 1, "never": 0, "other room": 1}
    assert p.alive()


def test_the_xeps_defaults_apply_only_where_the_admin_opts_in(prosody_with):
    """push_chat_settings_defaults: a member without a setting for a public
    room gets XEP-0492's default there (on-mention); without the option, as
    before (muc_push_policy "all": every message)."""
    counts = {}
    for opted_in in (False, True):
        p = prosody_with(muc=MUC, modules=("cloud_notify", "pep"),
                         muc_options={"muc_push_policy": "all", "push_chat_settings_defaults": opted_in})
        romeo, juliet = make_users(p)("romeo", "juliet")
        room = f"verona@{MUC}"

        async def scenario():
            app, r, j = await romeo_and_absent_juliet(p, romeo, juliet, room)
            say(r, room, "Hello everyone", id_="d1")
            plain = await pushes_within(app, 1.5)
            say(r, room, "Jürgen, the balcony", id_="d2")
            named = await pushes_within(app, 1.5)
            for c in (r, j):
                await c.stop()
            await app.stop()
            return len(plain), len(named)

        counts[opted_in] = run(scenario())
    assert counts == {False: (1, 1), True: (0, 1)}


def test_a_hibernated_sessions_room_messages_follow_the_bookmark(prosody_with):
    """The phone joined the room and its stream hibernated (the usual
    Conversations/Monal case): the room's messages queued for it follow the
    user's setting too; a chat message still pushes."""
    p = prosody_with(muc=MUC, modules=("cloud_notify", "pep"))
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"

    async def scenario():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        await join(j, room, "Juliet")
        phone = await Client(romeo, p.c2s_port, resource="phone", smacks=True).start()
        await join(phone, room, "Romeo")
        await bookmark(phone, room, "Romeo", "<never/>")
        assert iq_type(await phone.enable("push.localhost", "phone-node")) == "result"
        await asyncio.sleep(0.5)
        await phone.kill()
        await asyncio.sleep(0.5)
        out = {}
        say(j, room, "Romeo, the lark!", id_="h1")
        out["never, named"] = await pushes_within(app, 2.5)
        j.send_message(mto=romeo, mbody="a word in private", mtype="chat")
        out["chat"] = await pushes_within(app, 2.5)
        await phone.resume()
        await bookmark(phone, room, "Romeo", ON_MENTION_FOR_PHONES)
        await asyncio.sleep(0.5)
        await phone.kill()
        await asyncio.sleep(0.5)
        say(j, room, "Nothing for anyone", id_="h2")
        out["on-mention, not named"] = await pushes_within(app, 2.5)
        say(j, room, "Romeo, the nightingale", id_="h3")
        out["on-mention, named"] = await pushes_within(app, 2.5)
        await phone.resume()
        await phone.stop()
        await j.stop()
        await app.stop()
        return out

    out = run(scenario())
    assert {k: len(v) for k, v in out.items()} == {
        "never, named": 0, "chat": 1, "on-mention, not named": 0, "on-mention, named": 1}


def test_a_ghosts_bounce_follows_never(prosody_with):
    """A ghost occupant (its server bounces the room's message) with
    `never` for the room: no push (without the setting, the bounce of a
    message that mentioned it pushes: test_muc's ghost test)."""
    p = prosody_with(muc=MUC, modules=("cloud_notify", "pep"))
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"

    async def scenario():
        app, r, j = await romeo_and_absent_juliet(p, romeo, juliet, room)
        await bookmark(j, room, "Jürgen", "<never/>")
        await join(j, room, "Jürgen")
        say(r, room, BODY, mentions=[(7, 13)], id_="g1")
        await pushes_within(app, 1.0)
        j.send_raw(f"<message to='{room}/Romeo' from='{juliet}/laptop' type='error' id='g1'>"
                   "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                   "</error></message>")
        bounced = await pushes_within(app, 2.0)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return bounced

    bounced = run(scenario())
    assert bounced == []
    assert p.alive()
