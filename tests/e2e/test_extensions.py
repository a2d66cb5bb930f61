"""The push ecosystem, for real: prosody-modules' mod_cloud_notify_extensions
(which loads _encrypted, _filters and _priority_tag) as Debian ships it
(0.0~hg20250402, bookworm-backports and trixie), loaded beside ours,
unchanged: what Siskin and Snikket iOS servers run (harness.extension_paths
says the one name corrected on 0.12). Every push kind reaches an encrypted
registration and decrypts (AES-128-GCM, with the `cryptography` package) to
what the phone shows; the filters hold on every path, a grace period's
release and a retry included; each is checked across a restart and across a
switch to the reference module and back.

Two probes of ours show what no real module shows: mod_test_push_kind (each
push's kind and its original_stanza) and mod_test_push_probe (push_info
round trips, importance set by a handler, a refusing and a raising one)."""

import asyncio
import base64
import json
import os
import re
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import make_users
from harness import DIST, MODULES, NS_PUSH, AppServer, Client, Prosody, error_of, iq_type, run
from store import read_store
from test_admin import metric, ours_loaded, reference_plugin_paths, scrape
from test_attention import MDS, NS_JMI
from test_muc import MUC, NS_REFERENCE, join, muc_iq, register_nick, say
from test_rules import PROPOSE
from test_smacks import CHAT_STATE, phone_with_push, pushes_within, raw

EXTENSIONS = ("cloud_notify_extensions",)
PROBE = "test_push_probe"
KIND = "test_push_kind"
NS_EXT = "urn:example:ext"
NS_KIND = "urn:example:kind"
NS_ENCRYPT = "tigase:push:encrypt:0"
NS_PRIORITY = "tigase:push:priority:0"
TAG = f"<tag xmlns='{NS_EXT}' value='v1'/>"
WAIT = ("error", "wait", "resource-constraint")


def ext_prosody(prosody_with, *more, **kwargs):
    """A Prosody with the real extensions and the kind probe (and `more`)."""
    kwargs.setdefault("modules", ("cloud_notify", *EXTENSIONS, KIND, *more))
    return prosody_with(extensions=True, **kwargs)


class Modules:
    """Switches a Prosody between our module and the reference (the
    prosody-modules copy on 0.12, the core module on 13); the real
    extensions stay loaded."""

    def __init__(self, p, version, tmp_path):
        self.p = p
        extensions = [x for x in p.plugin_paths if x not in (str(DIST), str(MODULES))]
        self.ours = [str(DIST), str(MODULES), *extensions]
        self.reference = reference_plugin_paths(version, tmp_path) + extensions

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


def kind(push):
    """The kind probe's mark: the push's kind and its original_stanza."""
    el = push.notification.find(f"{{{NS_KIND}}}kind")
    assert el is not None, f"the kind probe did not run: {text_of(push)}"
    return dict(el.attrib)


def priority(push):
    return push.notification.findtext(f"{{{NS_PRIORITY}}}priority")


def text_of(push):
    return ET.tostring(push.xml, encoding="unicode")


# -- mod_cloud_notify_encrypted ---------------------------------------------

def encrypt_child(key):
    return f"<encrypt xmlns='{NS_ENCRYPT}' alg='aes-128-gcm'>{base64.b64encode(key).decode()}</encrypt>"


def decrypt(push, key, version):
    """The JSON the phone decrypts, and the <encrypted/> element's type.
    On 13 the module encrypts with util.crypto (AES-128-GCM, tag checked
    here); on 0.12 with luaossl, which gives no tag: 16 NUL bytes stand in
    for it (Siskin does not check it), so the ciphertext is read as the
    counter mode GCM is made of, from counter 2."""
    el = push.notification.find(f"{{{NS_ENCRYPT}}}encrypted")
    assert el is not None, f"not encrypted: {text_of(push)}"
    assert push.summary is None, "the summary form went out beside the ciphertext"
    iv, data = base64.b64decode(el.get("iv")), base64.b64decode(el.text)
    assert len(iv) == 12
    if version == "0.12":
        assert data[-16:] == bytes(16), "not luaossl's output"
        decryptor = Cipher(algorithms.AES(key), modes.CTR(iv + b"\0\0\0\2")).decryptor()
        plain = decryptor.update(data[:-16]) + decryptor.finalize()
    else:
        plain = AESGCM(key).decrypt(iv, data, None)
    return json.loads(plain), el.get("type")


def no_handler_failed(p):
    assert "handler failed" not in p.log(), re.findall(r".*handler failed.*", p.log())


def test_every_push_kind_reaches_an_encrypted_phone(prosody_with, version):
    p = ext_prosody(prosody_with, "pep", "cloud_notify_events_probe")
    romeo, juliet, nurse = make_users(p)("romeo", "juliet", "nurse")
    key = os.urandom(16)
    enabled(p, romeo, "phone", encrypt_child(key))  # a phone that went away

    async def scenario():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port, resource="desk").start()
        n = await Client(nurse, p.c2s_port).start()
        got = {}
        raw(j, romeo, "<body>Wherefore art thou?</body>", id_="m1")
        got["message"] = await pushes_within(app, 1.2)
        raw(j, romeo, PROPOSE, id_="c1")
        got["call"] = await pushes_within(app, 1.2)
        raw(j, romeo, f"<retract xmlns='{NS_JMI}' id='call1'/>")
        got["call-end"] = await pushes_within(app, 1.2)
        n.send_raw(f"<presence to='{romeo}' type='subscribe'/>")
        got["subscription"] = await pushes_within(app, 1.2)
        # Read on the laptop (XEP-0490): the phone's count drops to 0.
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        await asyncio.sleep(0.3)
        iq = laptop.make_iq_set(ito=romeo)
        iq.append(ET.fromstring(MDS.format(chat=juliet, user=romeo)))
        await iq.send(timeout=10)
        got["read"] = await pushes_within(app, 1.2)
        ping = laptop.make_iq_set()
        ping.append(ET.fromstring("<ping xmlns='urn:example:probe'/>"))
        await ping.send(timeout=10)
        got["ping"] = await pushes_within(app, 1.2)
        for c in (j, n, laptop):
            await c.stop()
        await app.stop()
        return got

    got = run(scenario())
    assert {k: len(v) for k, v in got.items()} == {k: 1 for k in got}, got
    push = {k: v[0] for k, v in got.items()}
    payload = {k: decrypt(x, key, version) for k, x in push.items()}
    # What the phone shows: the message, the call, the request; the rest
    # carry no text, and say who they are about.
    assert payload["message"] == ({"unread": 1, "sender": juliet, "message": "Wherefore art thou?",
                                   "type": "chat"}, None)
    call, call_type = payload["call"]
    assert call_type == "voip"
    assert (call["type"], call["sid"], call["media"], call["sender"]) == ("call", "call1", ["audio"],
                                                                          f"{juliet}/desk")
    for k in ("call-end", "read", "ping"):
        assert "message" not in payload[k][0], (k, payload[k])
    assert payload["call-end"][0]["sender"] == juliet
    assert (payload["read"][0]["sender"], payload["read"][0]["unread"]) == (juliet, 0)
    assert payload["subscription"][0]["type"] == "subscribe"
    assert payload["subscription"][0]["sender"] == nurse
    assert payload["ping"][0]["sender"] == "localhost"
    # Each push's original_stanza, as handlers saw it.
    marks = {k: kind(x) for k, x in push.items()}
    assert {k: m["value"] for k, m in marks.items()} == {
        "message": "offline", "call": "call", "call-end": "call-end", "subscription": "subscription",
        "read": "read", "ping": "ping"}
    assert marks["subscription"]["original"] == "presence"
    assert marks["read"] == {"value": "read", "original": "message", "original-type": "chat",
                             "original-from": juliet, "original-to": romeo, "body": "no"}
    assert marks["ping"] == {"value": "ping", "original": "message", "original-type": "headline",
                             "original-from": "localhost", "body": "no"}
    assert marks["call-end"]["original-to"] == romeo and marks["call-end"]["body"] == "no"
    # The priority tag: only what is important.
    assert {k: priority(x) for k, x in push.items()} == {
        "message": "high", "call": "high", "call-end": None, "subscription": None, "read": None,
        "ping": None}
    no_handler_failed(p)


def test_held_and_retried_pushes_carry_their_message_through_the_filters(prosody_with, version):
    p = ext_prosody(prosody_with, options={"push_grace_period": 2, "push_retry_delays": [1]})
    romeo, juliet, mallory = make_users(p)("romeo", "juliet", "mallory")
    key = os.urandom(16)
    muted = f"<muted xmlns='tigase:push:filter:muted:0'><item jid='{mallory}'/></muted>"
    enabled(p, romeo, "phone", encrypt_child(key) + muted)

    async def scenario():
        app = await AppServer(p).start()
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        j = await Client(juliet, p.c2s_port).start()
        m = await Client(mallory, p.c2s_port).start()
        await asyncio.sleep(0.3)
        windows = []
        for senders in (["juliet"], ["mallory"], ["mallory", "juliet"]):
            raw(laptop, juliet, "<body>typing away</body>")  # Romeo is active there
            await asyncio.sleep(0.3)
            for who in senders:
                raw(j if who == "juliet" else m, romeo, f"<body>from {who}</body>")
                await asyncio.sleep(0.2)
            quiet = await pushes_within(app, 1.0)
            released = await pushes_within(app, 2.5)
            windows.append((quiet, released))
        await laptop.stop()
        # A wait error, then the retry: the same message again.
        app.mode = WAIT
        raw(j, romeo, "<body>try again</body>")
        first = await app.next_push()
        app.mode = "result"
        retried = await pushes_within(app, 2.5)
        for c in (j, m):
            await c.stop()
        await app.stop()
        return windows, first, retried

    windows, first, retried = run(scenario())
    assert all(quiet == [] for quiet, _ in windows), windows
    released = [r for _, r in windows]
    # A held message is released as it was pushed: its text and sender,
    # through the filters. The muted sender's stays muted; the other's
    # goes out whatever came before it.
    assert [len(r) for r in released] == [1, 0, 1], released
    # (unread: juliet's 1; then mallory's held message counts though its
    # push was filtered; then one more from each: 4)
    for r, unread in ((released[0][0], 1), (released[2][0], 4)):
        payload = decrypt(r, key, version)[0]
        assert payload == {"unread": unread, "sender": juliet, "message": "from juliet", "type": "chat"}
        assert priority(r) == "high" and kind(r)["value"] == "mam", kind(r)
    assert "Filtering: muted" in p.log()
    assert [decrypt(x, key, version)[0]["message"] for x in (first, *retried)] == ["try again"] * 2
    assert kind(retried[0])["value"] == "retry" and priority(retried[0]) == "high"
    no_handler_failed(p)


def test_the_wake_up_reaches_an_encrypted_phone(prosody_with, version):
    p = ext_prosody(prosody_with, options={"smacks_hibernation_time": 4, "push_wake_before_expiry": 2,
                                           "push_max_hibernation_timeout": 0})
    romeo = make_users(p)("romeo")
    key = os.urandom(16)

    async def scenario():
        app = await AppServer(p).start()
        phone = await Client(romeo, p.c2s_port, smacks=True).start()
        assert iq_type(await phone.enable_with("phone", encrypt_child(key))) == "result"
        await asyncio.sleep(0.5)
        await phone.kill()
        pushes = await pushes_within(app, 4.0)
        await app.stop()
        return pushes

    [wake] = run(scenario())
    payload, _ = decrypt(wake, key, version)
    assert "message" not in payload and payload["sender"] == "localhost", payload
    assert kind(wake)["value"] == "wake" and "original-to" not in kind(wake)
    assert priority(wake) is None
    no_handler_failed(p)


def test_a_room_message_reaches_an_encrypted_member_through_the_filters(prosody_with, version):
    p = prosody_with(extensions=True, muc=MUC, muc_options={
        "modules_enabled": ["muc_cloud_notify", *EXTENSIONS, KIND], "muc_push_policy": "all"})
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"
    key = os.urandom(16)
    rule = (f"<groupchat xmlns='tigase:push:filter:groupchat:0'>"
            f"<room jid='{room}' allow='mentioned' nick='Jürgen'/></groupchat>")

    async def scenario():
        app = await AppServer(p).start()
        r = await Client(romeo, p.c2s_port).start()
        await join(r, room, "Romeo")
        j = await Client(juliet, p.c2s_port, resource="laptop").start()
        await join(j, room, "Jürgen")
        await register_nick(j, room, "Jürgen")
        reply = await muc_iq(j, f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='j-node'>"
                                f"{encrypt_child(key)}{rule}</enable>")
        assert iq_type(reply) == "result"
        j.send_raw(f"<presence to='{room}/Jürgen' type='unavailable'/>")
        await asyncio.sleep(0.3)
        r.send_raw(f"<message to='{room}' type='groupchat' id='m1'><body>Grüße, Jürgen!</body>"
                   f"<reference xmlns='{NS_REFERENCE}' type='mention' begin='7' end='13' "
                   f"uri='xmpp:{room}/Jürgen'/></message>")
        mention = await pushes_within(app, 2.0)
        say(r, room, "No mention here", id_="m2")  # the room's policy would push it
        plain = await pushes_within(app, 1.5)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return mention, plain

    mention, plain = run(scenario())
    [m] = mention
    assert decrypt(m, key, version) == ({"unread": 1, "sender": room, "nickname": "Romeo",
                                         "message": "Grüße, Jürgen!", "type": "groupchat"}, None)
    assert priority(m) == "high" and kind(m)["value"] == "muc"
    assert plain == []
    assert "Filtering: not mentioned" in p.log()
    no_handler_failed(p)


def test_encrypted_pushes_survive_restarts_and_switching(prosody_with, version, tmp_path):
    p = ext_prosody(prosody_with)
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
            # The summary form is gone: only ciphertext leaves the server.
            assert body not in text_of(push), text_of(push)
            payload, kind_ = decrypt(push, keys[push.node], version)
            assert payload == {"unread": unread[push.node], "sender": juliet, "message": body,
                               "type": "chat"}
            assert kind_ is None
            assert priority(push) == "high"

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


def test_encrypted_calls_and_bad_keys(prosody_with, version):
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
    payload, kind_ = decrypt(call, key, version)
    assert (payload["type"], kind_) == ("call", "voip")


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
    """A Prosody with the real extensions and the probe; on the MUC
    component, the filters and the priority tag (mod_cloud_notify_encrypted
    depends on mod_cloud_notify, a user host's module)."""
    p = Prosody(version=version, modules=("cloud_notify", *EXTENSIONS, PROBE), muc=MUC,
                muc_options={"modules_enabled": ["muc_cloud_notify", *EXTENSIONS, PROBE]},
                extensions=True)
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
        # a live device (another one: one device enabling again replaces its own): calls reach it
        phone = await Client(romeo, ext.c2s_port, resource="live").start()
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
    # (a ping has no stanza of its own: a message from the host, to no one)
    probe_ok(pg, original_type="headline", original_from="localhost")


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
    # After mod_cloud_notify_encrypted (priority 1) removed the form, later
    # handlers (the probe's, at -10) see it gone.
    enabled(ext, romeo, "sealed", TAG + encrypt_child(os.urandom(16)))
    pushes = run(pushes_for(ext, juliet, lambda c: raw(c, romeo, "<body>x</body>")))
    forms = {x.node: probe_ok(x)["form"] for x in pushes}
    assert forms == {"phone": "yes", "sealed": "no"}


def test_refusals_by_handlers_and_by_bounds(prosody_with, version, tmp_path):
    p = ext_prosody(prosody_with, PROBE)
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
    p = ext_prosody(prosody_with, PROBE, "http_openmetrics",
                    options={"statistics": "internal", "statistics_interval": "manual"})
    romeo, juliet, nurse = make_users(p)("romeo", "juliet", "nurse")
    for node in ("raise", "fine", "also-fine"):
        enabled(p, romeo, node, TAG)
    # The server goes on: each message pushes the same way.
    for body in ("hi", "again", "and again"):
        pushes = run(pushes_for(p, juliet, lambda c: raw(c, romeo, f"<body>{body}</body>")))
        assert sorted(x.node for x in pushes) == ["also-fine", "fine"]
    # Another kind: a stranger's subscription requests, which must not fill the log.
    for _ in range(3):
        run(pushes_for(p, nurse, lambda c: c.send_raw(f"<presence to='{romeo}' type='subscribe'/>"),
                       wait=0.3))
    # Counted each time; logged at most once a minute per host and kind.
    failures = re.findall(r"cloud_notify/push handler failed for (\S+) of '(\w+)'.*on purpose", p.log())
    assert failures == [("push.localhost<raise", romeo.split("@")[0])] * 2, failures
    prefix = "prosody_mod_cloud_notify__"
    metrics = scrape(p)
    assert metric(metrics, prefix + "handler_errors_total", kind="offline") == 3
    assert metric(metrics, prefix + "handler_errors_total", kind="subscription") == 1
    assert metric(metrics, prefix + "outstanding") == 0  # their pending entries are gone


# -- the device cap ----------------------------------------------------------

@pytest.mark.parametrize("max_devices", [2, 5])
def test_the_newest_registrations_win_within_one_second(prosody_with, max_devices):
    p = prosody_with(options={"push_max_devices": max_devices})
    romeo = make_users(p)("romeo")
    store = p.store_file(romeo.split("@")[0])
    n = max_devices + 1

    async def enable_quickly(first, count):
        # (a device each, connected first: the enables come within a second)
        devices = range(first, first + count)
        clients = [await Client(romeo, p.c2s_port, resource=f"device-{i}").start() for i in devices]
        for i, c in zip(devices, clients):
            assert iq_type(await c.enable("push.localhost", f"n{i}")) == "result"
        for c in clients:
            await c.stop()

    run(enable_quickly(1, n))
    expected = [f"push.localhost<n{i}" for i in range(2, n + 1)]
    assert sorted(read_store(store)) == sorted(expected)
    # And after a restart, the next one replaces the oldest of those.
    p.restart()
    run(enable_quickly(n + 1, 1))
    expected = [f"push.localhost<n{i}" for i in range(3, n + 2)]
    assert sorted(read_store(store)) == sorted(expected)
