"""The push ecosystem: modules that build on mod_cloud_notify's events, as
prosody-modules' mod_cloud_notify_encrypted, _filters and _priority_tag do
(what Siskin and Snikket iOS servers run). Stand-ins written for these tests
(tests/e2e/modules/mod_test_push_*.lua) do what those do: table-valued
push_info fields set at registration and read at every push, the payload
rewritten with the summary form removed, importance set by one handler and
seen by a later one, a registration refused with the handler's own error,
a handler that raises. Each is checked across a restart and across a switch
to the reference module and back."""

import asyncio
import base64
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import make_users
from harness import DIST, MODULES, AppServer, Client, Prosody, error_of, iq_type, run
from store import read_store
from test_admin import metric, ours_loaded, reference_plugin_paths, scrape
from test_muc import MUC, NS_REFERENCE, join, register_nick, say
from test_rules import PROPOSE
from test_smacks import CHAT_STATE, pushes_within, raw

EXTENSIONS = ("test_push_encrypted", "test_push_filters", "test_push_priority", "test_push_probe")
NS_EXT = "urn:example:ext"
NS_ENCRYPT = "tigase:push:encrypt:0"
NS_PRIORITY = "tigase:push:priority:0"
TAG = f"<tag xmlns='{NS_EXT}' value='v1'/>"


def ext_prosody(prosody_with, **kwargs):
    kwargs.setdefault("modules", ("cloud_notify", *EXTENSIONS))
    return prosody_with(**kwargs)


class Modules:
    """Switches a Prosody between our module and the reference (the
    prosody-modules copy on 0.12, the core module on 13)."""

    def __init__(self, p, version, tmp_path):
        self.p = p
        self.ours = [str(DIST), str(MODULES)]
        self.reference = reference_plugin_paths(version, tmp_path)

    def use(self, which):
        loaded = ours_loaded(self.p)
        self.p.plugin_paths = self.ours if which == "ours" else self.reference
        self.p.restart()
        assert ours_loaded(self.p) == loaded + (which == "ours"), f"not running {which}"


async def enable_with(p, user, node, children, resource=None):
    """A device enables push with extra <enable/> children, then goes away."""
    c = await Client(user, p.c2s_port, resource=resource or node).start()
    reply = await c.enable_with(node, children)
    await c.stop()
    return reply


def enabled(p, user, node, children, resource=None):
    reply = run(enable_with(p, user, node, children, resource))
    assert iq_type(reply) == "result", ET.tostring(reply)


async def pushes_for(p, sender, send, wait=1.2):
    """`send(client)` from `sender`; every push that follows within `wait` s."""
    app = await AppServer(p).start()
    c = await Client(sender, p.c2s_port).start()
    send(c)
    pushes = await pushes_within(app, wait)
    await c.stop()
    await app.stop()
    return pushes


def seen(push):
    """The probe's <seen/> in a push's payload, as a dict (None if absent)."""
    el = push.notification.find(f"{{{NS_EXT}}}seen")
    return dict(el.attrib) if el is not None else None


def text_of(push):
    return ET.tostring(push.xml, encoding="unicode")


# -- mod_cloud_notify_encrypted ---------------------------------------------

def encrypt_child(key):
    return f"<encrypt xmlns='{NS_ENCRYPT}' alg='aes-128-gcm'>{base64.b64encode(key).decode()}</encrypt>"


def decrypt(push, key):
    """Undoes the stand-in cipher of mod_test_push_encrypted."""
    el = push.notification.find(f"{{{NS_ENCRYPT}}}encrypted")
    assert el is not None, f"not encrypted: {text_of(push)}"
    iv, data = base64.b64decode(el.get("iv")), base64.b64decode(el.text)
    stream = b"".join(hashlib.sha256(key + iv + str(n).encode()).digest()
                      for n in range(len(data) // 32 + 1))
    return json.loads(bytes(b ^ k for b, k in zip(data, stream))), el.get("type")


def test_encrypted_pushes_survive_restarts_and_switching(prosody_with, version, tmp_path):
    p = ext_prosody(prosody_with, options={"push_notification_with_body": True,
                                           "push_notification_with_sender": True})
    modules = Modules(p, version, tmp_path)
    romeo, juliet = make_users(p)("romeo", "juliet")
    phone_key, tablet_key = os.urandom(16), os.urandom(16)
    enabled(p, romeo, "phone", encrypt_child(phone_key))
    record = read_store(p.store_file(romeo.split("@")[0]))["push.localhost<phone"]
    assert record["encryption"] == {"algorithm": "aes-128-gcm",
                                    "key_base64": base64.b64encode(phone_key).decode()}

    def check(body, keys, unread):
        pushes = run(pushes_for(p, juliet, lambda c: c.send_message(mto=romeo, mbody=body, mtype="chat")))
        assert sorted(x.node for x in pushes) == sorted(keys)
        for push in pushes:
            # The summary form is gone, so the body and sender with it: only
            # ciphertext leaves the server, though with_body is on.
            assert push.summary is None and body not in text_of(push), text_of(push)
            payload, kind = decrypt(push, keys[push.node])
            assert payload == {"unread": unread[push.node], "sender": juliet, "message": body,
                               "type": "chat"}
            assert kind is None
            assert push.notification.findtext(f"{{{NS_PRIORITY}}}priority") == "high"

    check("first secret", {"phone": phone_key}, {"phone": 1})
    p.restart()
    check("after a restart", {"phone": phone_key}, {"phone": 2})  # counts kept
    modules.use("reference")
    check("under the reference", {"phone": phone_key}, {"phone": 1})  # its count is always 1
    # The reference adds a device; ours reads both, each with its own key.
    enabled(p, romeo, "tablet", encrypt_child(tablet_key))
    modules.use("ours")
    # (what the reference pushed is not counted; the tablet's count is its own)
    check("back under ours", {"phone": phone_key, "tablet": tablet_key}, {"phone": 3, "tablet": 1})


def test_encrypted_calls_and_bad_keys(prosody_with):
    p = ext_prosody(prosody_with)
    romeo, juliet = make_users(p)("romeo", "juliet")
    key = os.urandom(16)
    bad_alg = run(enable_with(p, romeo, "a", f"<encrypt xmlns='{NS_ENCRYPT}' alg='rot13'>eA==</encrypt>"))
    short_key = run(enable_with(p, romeo, "b", encrypt_child(b"short")))
    assert error_of(bad_alg) == ("modify", "feature-not-implemented")
    assert error_of(short_key) == ("modify", "bad-request")
    assert read_store(p.store_file(romeo.split("@")[0])) is None  # nothing stored
    enabled(p, romeo, "phone", encrypt_child(key))
    [call] = run(pushes_for(p, juliet, lambda c: raw(c, romeo, PROPOSE)))
    payload, kind = decrypt(call, key)
    assert (payload["type"], kind) == ("call", "voip")


# -- mod_cloud_notify_filters -----------------------------------------------

def test_filters_survive_restarts_and_switching(prosody_with, version, tmp_path):
    p = ext_prosody(prosody_with)
    modules = Modules(p, version, tmp_path)
    romeo, juliet, mallory, ben = make_users(p)("romeo", "juliet", "mallory", "benvolio")
    enabled(p, romeo, "phone",
            f"<muted xmlns='tigase:push:filter:muted:0'><item jid='{mallory}'/></muted>"
            "<groupchat xmlns='tigase:push:filter:groupchat:0'>"
            f"<room jid='{juliet}' allow='never'/><room jid='{ben}' allow='mentioned' nick='Romeo'/>"
            "</groupchat>")
    record = read_store(p.store_file(romeo.split("@")[0]))["push.localhost<phone"]
    assert record["muted_jids"] == {mallory: True}
    assert record["groupchat_rules"] == {juliet: {"when": "never"},
                                         ben: {"when": "mentioned", "nick": "Romeo"}}

    def chat(sender):
        return len(run(pushes_for(p, sender, lambda c: raw(c, romeo, "<body>hi</body>"))))

    def groupchat(sender, mention=None):
        ref = (f"<reference xmlns='{NS_REFERENCE}' type='mention' begin='0' end='5' uri='{mention}'/>"
               if mention else "")
        return len(run(pushes_for(p, sender, lambda c: raw(c, romeo, f"<body>Romeo!</body>{ref}",
                                                            mtype="groupchat"))))

    def check(groupchats=True):
        assert chat(mallory) == 0, "a muted sender pushed"
        assert chat(juliet) == 1
        if groupchats:  # bare groupchat messages: a path the reference has not
            assert groupchat(juliet) == 0, "allow='never' pushed"
            assert groupchat(ben) == 0, "allow='mentioned' pushed without a mention"
            assert groupchat(ben, mention=f"xmpp:{ben}/Romeo") == 1
            assert groupchat(ben, mention=f"xmpp:{ben}/Mercutio") == 0

    check()
    p.restart()
    check()
    modules.use("reference")
    check(groupchats=False)
    enabled(p, romeo, "tablet", "")  # the reference writes the user's records again
    modules.use("ours")
    record = read_store(p.store_file(romeo.split("@")[0]))["push.localhost<phone"]
    assert record["groupchat_rules"][ben] == {"when": "mentioned", "nick": "Romeo"}
    assert chat(mallory) == 1  # the tablet has no filter
    assert groupchat(ben) == 1  # only the tablet
    assert groupchat(ben, mention=f"xmpp:{ben}/Romeo") == 2


# -- what every path hands the handlers --------------------------------------

@pytest.fixture(scope="module")
def ext(version):
    """A Prosody with the extension stand-ins (on the MUC component too)."""
    p = Prosody(version=version, modules=("cloud_notify", *EXTENSIONS), muc=MUC,
                muc_options={"modules_enabled": ["muc_cloud_notify", *EXTENSIONS]})
    p.start()
    yield p
    p.cleanup()


def probe_ok(push, original="message", **expected):
    s = seen(push)
    assert s is not None, f"push_info.ext did not reach the handler: {text_of(push)}"
    assert (s["value"], s["list"], s["on"], s["ratio"]) == ("v1", "1,2,3", "true", "0.5"), s
    assert s["original"] == original, s
    assert s["stanza"] == "iq" and s["count"].isdigit(), s
    for k, v in expected.items():
        assert s[k.replace("_", "-")] == v, (k, s)
    return s


def test_push_info_on_the_offline_groupchat_and_call_paths(ext):
    romeo, juliet = make_users(ext)("romeo", "juliet")
    enabled(ext, romeo, "phone", TAG)
    offline = run(pushes_for(ext, juliet, lambda c: raw(c, romeo, "<body>hi</body>", id_="o1")))
    group = run(pushes_for(ext, juliet, lambda c: raw(c, romeo, "<body>all</body>", mtype="groupchat",
                                                      id_="g1")))

    async def call():
        app = await AppServer(ext).start()
        phone = await Client(romeo, ext.c2s_port).start()  # a live device: calls reach it
        assert iq_type(await phone.enable_with("live", TAG)) == "result"
        j = await Client(juliet, ext.c2s_port).start()
        raw(j, romeo, PROPOSE, id_="c1")
        pushes = await pushes_within(app, 1.5)
        for c in (phone, j):
            await c.stop()
        await app.stop()
        return pushes

    calls = run(call())
    [o] = offline
    probe_ok(o, original_id="o1", original_type="chat", username=romeo.split("@")[0], count="1")
    [g] = group
    probe_ok(g, original_id="g1", original_type="groupchat", count="2")
    assert sorted(x.node for x in calls) == ["live", "phone"]
    for c in calls:
        probe_ok(c, original_id="c1", important="true")


def test_push_info_on_the_smacks_paths(ext):
    romeo, juliet = make_users(ext)("romeo", "juliet")

    async def scenario():
        app = await AppServer(ext).start()
        phone = await Client(romeo, ext.c2s_port, smacks=True).start()
        assert iq_type(await phone.enable_with("phone", TAG)) == "result"
        j = await Client(juliet, ext.c2s_port).start()
        await asyncio.sleep(0.5)
        # Unresponsive: acks stop, the delayed ack pushes.
        phone.stop_acking()
        raw(j, romeo, "<body>ack?</body>", id_="s1")
        delayed = await pushes_within(app, 4.0)
        # Hibernated: the queued stanza pushes.
        await phone.kill()
        await asyncio.sleep(0.5)
        raw(j, romeo, "<body>queued</body>", id_="s2")
        queued = await pushes_within(app, 2.5)
        await j.stop()
        await app.stop()
        return delayed, queued

    delayed, queued = run(scenario())
    assert delayed and all(x.node == "phone" for x in delayed)
    probe_ok(delayed[0], original_id="s1")
    assert [x.node for x in queued] == ["phone"]
    probe_ok(queued[0], original_id="s2")


def test_push_info_on_the_mam_and_ping_paths(ext):
    romeo, juliet = make_users(ext)("romeo", "juliet")
    enabled(ext, romeo, "old", TAG)

    async def scenario():
        app = await AppServer(ext).start()
        laptop = await Client(romeo, ext.c2s_port, resource="laptop").start()
        j = await Client(juliet, ext.c2s_port).start()
        await asyncio.sleep(0.3)
        raw(j, romeo, "<body>archived</body>", id_="m1")
        mam = await pushes_within(app, 1.5)
        ping = laptop.make_iq_set()
        ping.append(ET.fromstring("<ping xmlns='urn:example:probe'/>"))
        await ping.send(timeout=10)
        pinged = await pushes_within(app, 1.5)
        for c in (laptop, j):
            await c.stop()
        await app.stop()
        return mam, pinged

    ext.modules.append("cloud_notify_events_probe")  # its ping command
    try:
        ext.restart()
        mam, pinged = run(scenario())
    finally:
        ext.modules.remove("cloud_notify_events_probe")
        ext.restart()
    [m] = mam
    probe_ok(m, original_id="m1")
    [pg] = pinged
    probe_ok(pg, original="none")


def test_push_info_on_the_muc_paths(ext):
    romeo, juliet = make_users(ext)("romeo", "juliet")
    room = f"capulet@{MUC}"

    async def scenario():
        app = await AppServer(ext).start()
        r = await Client(romeo, ext.c2s_port).start()
        await join(r, room, "Romeo")
        j = await Client(juliet, ext.c2s_port, resource="laptop").start()
        await join(j, room, "Jürgen")
        await register_nick(j, room, "Jürgen")
        iq = j.make_iq_set(ito=MUC)
        iq.append(ET.fromstring(f"<enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='j-node'>"
                                f"{TAG}</enable>"))
        assert iq_type((await iq.send(timeout=10)).xml) == "result"
        # A ghost: her server bounces a mention.
        say(r, room, "Grüße, Jürgen!", mentions=[(7, 13)], id_="b1")
        await asyncio.sleep(0.3)
        j.send_raw(f"<message to='{room}/Romeo' from='{juliet}/laptop' type='error' id='b1'>"
                   "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                   "</error></message>")
        bounced = await pushes_within(app, 2.0)
        await asyncio.sleep(0.5)  # kicked: now absent, a mention pushes
        say(r, room, "Grüße, Jürgen!", mentions=[(7, 13)], id_="b2")
        mention = await pushes_within(app, 1.5)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return bounced, mention

    bounced, mention = run(scenario())
    [b] = bounced
    probe_ok(b, original_id="b1", original_type="groupchat", original_from=f"{room}/Romeo")
    [m] = mention
    probe_ok(m, original_id="b2", original_type="groupchat", original_from=f"{room}/Romeo")


# -- importance, refusals, errors --------------------------------------------

def test_importance_set_by_a_handler_reaches_later_handlers(ext):
    romeo, juliet = make_users(ext)("romeo", "juliet")
    enabled(ext, romeo, "phone", TAG)
    urgent = f"{CHAT_STATE}<urgent xmlns='{NS_EXT}'/>"
    [plain] = run(pushes_for(ext, juliet, lambda c: raw(c, romeo, CHAT_STATE)))
    [marked] = run(pushes_for(ext, juliet, lambda c: raw(c, romeo, urgent)))
    # The core found neither important; the probe's first handler made the
    # second one so, and the later handlers (priority tag, probe) saw it.
    assert not plain.important and not marked.important
    assert probe_ok(plain)["important"] == "false"
    assert plain.notification.find(f"{{{NS_PRIORITY}}}priority") is None
    assert probe_ok(marked)["important"] == "true"
    assert marked.notification.findtext(f"{{{NS_PRIORITY}}}priority") == "high"
    assert probe_ok(marked)["form"] == "yes"
    # After mod_test_push_encrypted removed the form, later handlers see it gone.
    enabled(ext, romeo, "sealed", TAG + encrypt_child(os.urandom(16)))
    pushes = run(pushes_for(ext, juliet, lambda c: raw(c, romeo, "<body>x</body>")))
    forms = {x.node: probe_ok(x)["form"] for x in pushes}
    assert forms == {"phone": "yes", "sealed": "no"}


def test_refusals_by_handlers_and_by_bounds(prosody_with, version, tmp_path):
    p = ext_prosody(prosody_with)
    modules = Modules(p, version, tmp_path)
    romeo = make_users(p)("romeo")
    store = p.store_file(romeo.split("@")[0])

    def refused():
        reply = run(enable_with(p, romeo, "phone", f"<refuse xmlns='{NS_EXT}'/>"))
        # The handler's own error, and no registration.
        assert error_of(reply) == ("cancel", "not-allowed")
        assert reply.findtext("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}text") == \
            "Refused by extension"
        assert "push.localhost<phone" not in (read_store(store) or {})

    refused()
    # Grown past the bounds by a handler: refused, logged, nothing stored.
    big = run(enable_with(p, romeo, "big", f"<grow xmlns='{NS_EXT}' n='2000'/>"))
    assert error_of(big) == ("modify", "not-acceptable")
    assert re.search(r"Push registration push.localhost<big of 'romeo\d+' refused", p.log())
    assert read_store(store) is None
    # Within them: stored whole, kept across a restart and a switch.
    enabled(p, romeo, "small", f"<grow xmlns='{NS_EXT}' n='50'/>")
    blob = [f"{i:020d}" for i in range(1, 51)]
    assert read_store(store)["push.localhost<small"]["blob"] == blob
    p.restart()
    refused()
    modules.use("reference")
    refused()
    enabled(p, romeo, "tablet", "")
    modules.use("ours")
    enabled(p, romeo, "phone2", "")  # ours writes the user's records again
    assert read_store(store)["push.localhost<small"]["blob"] == blob
    assert sorted(read_store(store)) == ["push.localhost<phone2", "push.localhost<small",
                                         "push.localhost<tablet"]


def test_a_handler_that_raises_costs_its_own_push_only(prosody_with):
    p = ext_prosody(prosody_with, modules=("cloud_notify", *EXTENSIONS, "http_openmetrics"),
                    options={"statistics": "internal", "statistics_interval": "manual"})
    romeo, juliet = make_users(p)("romeo", "juliet")
    for node in ("raise", "fine", "also-fine"):
        enabled(p, romeo, node, TAG)
    pushes = run(pushes_for(p, juliet, lambda c: raw(c, romeo, "<body>hi</body>")))
    assert sorted(x.node for x in pushes) == ["also-fine", "fine"]
    failures = re.findall(r"cloud_notify/push handler failed for (\S+) of '(\w+)'.*on purpose", p.log())
    assert failures == [("push.localhost<raise", romeo.split("@")[0])]
    prefix = "prosody_mod_cloud_notify__"
    metrics = scrape(p)
    assert metric(metrics, prefix + "handler_errors_total", kind="offline") == 1
    assert metric(metrics, prefix + "outstanding") == 0  # its pending entry is gone
    # And the server goes on: the next message pushes the same way.
    again = run(pushes_for(p, juliet, lambda c: raw(c, romeo, "<body>again</body>")))
    assert sorted(x.node for x in again) == ["also-fine", "fine"]


# -- the device cap ----------------------------------------------------------

@pytest.mark.parametrize("max_devices", [2, 5])
def test_the_newest_registrations_win_within_one_second(prosody_with, max_devices):
    p = prosody_with(options={"push_max_devices": max_devices})
    romeo = make_users(p)("romeo")
    store = p.store_file(romeo.split("@")[0])
    n = max_devices + 1

    async def enable_quickly(first, count):
        c = await Client(romeo, p.c2s_port).start()
        for i in range(first, first + count):
            assert iq_type(await c.enable("push.localhost", f"n{i}")) == "result"
        await c.stop()

    run(enable_quickly(1, n))
    expected = [f"push.localhost<n{i}" for i in range(2, n + 1)]
    assert sorted(read_store(store)) == sorted(expected)
    # And after a restart, the next one replaces the oldest of those.
    p.restart()
    run(enable_quickly(n + 1, 1))
    expected = [f"push.localhost<n{i}" for i in range(3, n + 2)]
    assert sorted(read_store(store)) == sorted(expected)
