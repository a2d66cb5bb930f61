"""Converse.js (from npm) in Debian's headless Chromium, over Prosody's
WebSocket: it checks the app server's disco identity, enables push on the
account and on the MUC domain with its own settings, registers its room
nickname, disables with its own `disable: true` entry. The browser is
killed like a closed laptop lid, and pushes still reach the app server."""

import asyncio
import xml.etree.ElementTree as ET

import pytest

from conftest import make_users
from harness import (NS_DATA, NS_PUSH, PASSWORD, PUBLISH_OPTIONS, AppServer, Client, Prosody,
                     form_values, run)
from store import read_store
from web import WebServer, converse_settings

MUC = "conference.localhost"
APP = "push.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_REFERENCE = "urn:xmpp:reference:0"


@pytest.fixture(scope="module")
def converse_prosody(version):
    """Prosody with the WebSocket, both push modules, and short smacks
    timeouts, so a killed browser's session ends within seconds."""
    p = Prosody(version=version, modules=("cloud_notify", "websocket"), muc=MUC, options={
        "http_default_host": "localhost",
        "push_retry_delays": [],
        "push_wake_before_expiry": 0,
        "smacks_hibernation_time": 3,
        "push_max_hibernation_timeout": 3,
    })
    p.start()
    yield p
    p.cleanup()


def converse(prosody, jid, **settings):
    """A web server with the Converse page logged in as `jid`."""
    return WebServer(converse_settings(prosody, jid=jid, password=PASSWORD, auto_login=True,
                                       **settings)).start()


def sent_enable(ack):
    """The <enable/> Converse sent: (jid, node, publish-options)."""
    enable = ET.fromstring(ack["sent"]).find(f"{{{NS_PUSH}}}enable")
    form = enable.find(f"{{{NS_DATA}}}x")
    return enable.get("jid"), enable.get("node"), form_values(form) if form is not None else None


def registrations(prosody, user):
    """The nodes of the user's stored registrations."""
    stored = read_store(prosody.store_file(user.split("@")[0])) or {}
    return sorted(r["node"] for r in stored.values()) if isinstance(stored, dict) else []


async def important_push(app, timeout=60):
    """The next important push, and the unimportant ones before it (a killed
    browser's smacks queue held other stanzas: roster, presence, receipts)."""
    before = []
    while not (push := await app.next_push(timeout=timeout)).important:
        before.append(push)
    return push, before


def drain(app):
    """The pushes received so far and not yet looked at."""
    out = []
    while not app.pushes.empty():
        out.append(app.pushes.get_nowait())
    return out


def assert_private(push):
    """Placeholder body, no sender: nothing the sender wrote."""
    assert push.important
    assert push.summary["last-message-body"] == "New Message!"
    assert "last-message-sender" not in push.summary


def test_converse_enables_push_and_is_pushed_after_the_browser_dies(converse_prosody, browsers):
    prosody = converse_prosody
    romeo, juliet = make_users(prosody)("romeo", "juliet")
    node = f"converse-{romeo.split('@')[0]}"
    servers = [{"jid": APP, "node": node, "secret": "converse-secret"}]

    async def scenario():
        app = await AppServer(prosody).start()
        web = converse(prosody, romeo, push_app_servers=servers)
        try:
            b = await browsers().start()
            await b.goto(web.url)
            ack = await b.wait_ack("enable")
            stored = registrations(prosody, romeo)
            b.kill()
            j = await Client(juliet, prosody.c2s_port).start()
            j.send_message(mto=romeo, mbody="Wherefore art thou, Romeo?", mtype="chat")
            push, queued = await important_push(app)
            await app.no_push(2)
            await j.stop()
            await app.stop()
            return ack, stored, push, queued, list(app.disco_queries)
        finally:
            web.stop()

    ack, stored, push, queued, disco = run(scenario(), timeout=240)
    assert all(q.node == node and not q.important for q in queued), queued
    # Converse asked the app server who it is before it enabled anything.
    assert any(q.startswith(romeo + "/") for q in disco), disco
    assert ack["type"] == "result", ack
    assert sent_enable(ack) == (APP, node, {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "converse-secret"})
    assert stored == [node]
    assert push.sender == "localhost" and push.node == node
    assert push.options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "converse-secret"}
    assert_private(push)
    assert "Wherefore" not in "".join(push.xml.itertext())


def test_converse_muc_push_reaches_a_member_whose_session_ended(converse_prosody, browsers):
    prosody = converse_prosody
    romeo, nurse = make_users(prosody)("romeo", "nurse")
    nick = romeo.split("@")[0]  # muc_nickname_from_jid
    room = f"verona-{nick}@{MUC}"
    node = f"muc-{nick}"
    servers = [{"jid": APP, "node": node, "secret": "muc-secret"}]

    async def scenario():
        app = await AppServer(prosody).start()
        n = await Client(nurse, prosody.c2s_port).start()
        left = asyncio.Queue()
        n.add_event_handler("presence_unavailable", lambda pr: left.put_nowait(str(pr["from"])))
        joined = asyncio.Queue()
        n.add_event_handler("presence_available", lambda pr: joined.put_nowait(str(pr["from"])))
        n.send_raw(f"<presence to='{room}/Nurse'><x xmlns='{NS_MUC}'/></presence>")
        assert await asyncio.wait_for(joined.get(), 30) == f"{room}/Nurse"
        web = converse(prosody, romeo, push_app_servers=servers, enable_muc_push=True,
                       auto_join_rooms=[room], auto_register_muc_nickname=True,
                       muc_nickname_from_jid=True)
        try:
            b = await browsers().start()
            await b.goto(web.url)
            acks = {
                "account": await b.wait_ack("enable"),
                "muc": await b.wait_ack("enable", to=MUC),
                "nick": await b.wait_ack("register", to=room),
            }
            b.kill()
            # Its session hibernates, times out, and it leaves the room.
            while (who := await asyncio.wait_for(left.get(), 90)) != f"{room}/{nick}":
                pass
            # (what its hibernated session's smacks queue pushed meanwhile)
            account = drain(app)
            n.send_raw(f"<message to='{room}' type='groupchat' id='mention'><body>{nick}: the balcony!</body>"
                       f"<reference xmlns='{NS_REFERENCE}' type='mention' begin='0' end='{len(nick)}' "
                       f"uri='xmpp:{room}/{nick}'/></message>")
            push = await app.next_push(timeout=60)
            await app.no_push(2)
            await n.stop()
            await app.stop()
            return acks, who, account, push
        finally:
            web.stop()

    acks, who, account, push = run(scenario(), timeout=300)
    assert all(a.sender == "localhost" for a in account), account
    assert {k: a["type"] for k, a in acks.items()} == {"account": "result", "muc": "result", "nick": "result"}
    assert sent_enable(acks["muc"]) == (APP, node, {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "muc-secret"})
    assert f"<value>{nick}</value>" in acks["nick"]["sent"]
    # mod_muc_cloud_notify pushed it, from the MUC domain
    assert push.sender == MUC and push.node == node
    assert push.options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "muc-secret"}
    assert_private(push)
    assert "balcony" not in "".join(push.xml.itertext())


def test_converse_disable_removes_the_registration(converse_prosody, browsers):
    prosody = converse_prosody
    romeo, juliet = make_users(prosody)("romeo", "juliet")
    node = f"converse-{romeo.split('@')[0]}"

    async def scenario():
        app = await AppServer(prosody).start()
        j = await Client(juliet, prosody.c2s_port).start()
        web = converse(prosody, romeo, push_app_servers=[{"jid": APP, "node": node, "secret": "s"}])
        try:
            b = await browsers().start()
            await b.goto(web.url)
            enabled = await b.wait_ack("enable")
            before = registrations(prosody, romeo)
            b.kill()
            # Positive control: the registration pushes.
            j.send_message(mto=romeo, mbody="first", mtype="chat")
            control, _ = await important_push(app)
        finally:
            web.stop()
        # Next visit: Converse configured to disable that app server.
        web = converse(prosody, romeo, push_app_servers=[{"jid": APP, "node": node, "disable": True}])
        try:
            b = await browsers().start()
            await b.goto(web.url)
            disabled = await b.wait_ack("disable")
            after = registrations(prosody, romeo)
            drain(app)  # pushes sent before the disable
            b.kill()
            j.send_message(mto=romeo, mbody="second", mtype="chat")
            await app.no_push(5)
        finally:
            web.stop()
        await j.stop()
        await app.stop()
        return enabled, before, control, disabled, after

    enabled, before, control, disabled, after = run(scenario(), timeout=300)
    assert enabled["type"] == "result" and before == [node]
    assert control.node == node
    assert disabled["type"] == "result", disabled
    d = ET.fromstring(disabled["sent"]).find(f"{{{NS_PUSH}}}disable")
    assert (d.get("jid"), d.get("node")) == (APP, node)
    assert after == []
