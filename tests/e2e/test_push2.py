"""Push 2.0 (urn:xmpp:push2:0, issue 26): a client enables as Borogove does;
the push service is an XMPP component that receives <message/>
notifications. Payloads are decrypted with http_ece (RFC 8188's author's
implementation) and JWTs verified with PyJWT: nothing written here checks
our crypto."""

import asyncio
import base64
import os
import time
import xml.etree.ElementTree as ET

import http_ece
import jwt
import slixmpp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness import COMPONENT_SECRET, NS_STANZAS, Client, Prosody, iq_type, lua_value, next_of, none_of, run

NS_PUSH2 = "urn:xmpp:push2:0"
NS_RFC8291 = "urn:xmpp:sce:rfc8291:0"
NS_SCE = "urn:xmpp:sce:1"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CLIENT = "jabber:client"
SEND_ENCRYPTED = "urn:xmpp:push2:send:sce+rfc8291+rfc8292:0"
SEND_NOTIFY = "urn:xmpp:push2:send:notify-only:0"
IMPORTANT = "urn:xmpp:push2:match:important"
AUD = "https://push.example"


class Device:
    """What a Borogove client holds: a Web Push subscription's keys
    (P-256, auth secret) and a VAPID key exported as PKCS#8."""

    def __init__(self):
        self.ua = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.vapid = ec.generate_private_key(ec.SECP256R1())

    def keys_b64(self):
        """ua-public, auth-secret and jwt-key as a client sends them."""
        public = self.ua.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        pkcs8 = self.vapid.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return tuple(base64.b64encode(b).decode() for b in (public, self.auth, pkcs8))

    def send_xml(self):
        public, auth, pkcs8 = self.keys_b64()
        return (f"<send xmlns='{SEND_ENCRYPTED}'><ua-public>{public}</ua-public>"
                f"<auth-secret>{auth}</auth-secret><jwt-alg>ES256</jwt-alg>"
                f"<jwt-key>{pkcs8}</jwt-key><jwt-claim name='aud'>{AUD}</jwt-claim></send>")

    def enable_xml(self, client, service="push.localhost", profile=IMPORTANT, match_extra="", send=None):
        send = self.send_xml() if send is None else send
        return (f"<enable xmlns='{NS_PUSH2}'><service>{service}</service><client>{client}</client>"
                f"<match profile='{profile}'>{match_extra}{send}</match></enable>")

    def open(self, notification):
        """Decrypts the payload (http_ece) and returns the forwarded
        <message/>, the envelope's byte length, and the JWT's claims
        (verified with the `key` attribute's public key)."""
        payload = notification.find(f"{{{NS_RFC8291}}}encrypted/{{{NS_RFC8291}}}payload").text
        plain = http_ece.decrypt(base64.b64decode(payload), private_key=self.ua,
                                 auth_secret=self.auth, version="aes128gcm")
        envelope = ET.fromstring(plain)
        assert envelope.tag == f"{{{NS_SCE}}}envelope"
        msg = envelope.find(f"{{{NS_SCE}}}content/{{{NS_FORWARD}}}forwarded/{{{NS_CLIENT}}}message")
        token = notification.find(f"{{{NS_PUSH2}}}jwt")
        raw_key = base64.b64decode(token.get("key"))
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
        assert raw_key == self.vapid.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        claims = jwt.decode(token.text, key=key, algorithms=["ES256"], audience=AUD)
        return msg, len(plain), claims


class Notification:
    def __init__(self, xml):
        self.xml = xml
        self.sender = xml.get("from")
        self.id = xml.get("id")
        n = xml.find(f"{{{NS_PUSH2}}}notification")
        self.notification = n
        self.client = n.findtext(f"{{{NS_PUSH2}}}client")
        self.priority = n.findtext(f"{{{NS_PUSH2}}}priority")
        self.voip = n.find(f"{{{NS_PUSH2}}}voip") is not None
        self.encrypted = n.find(f"{{{NS_RFC8291}}}encrypted") is not None

    def __repr__(self):
        return f"Notification({self.client}, {self.priority})"


class PushService(slixmpp.ComponentXMPP):
    """A Push 2.0 push service: records each notification; `errors` is a
    list of (type, condition) to answer the next ones with."""

    def __init__(self, prosody, jid=None):
        super().__init__(jid or prosody.component, COMPONENT_SECRET, "127.0.0.1", prosody.component_port)
        self.notifications = asyncio.Queue()
        self.errors = []
        self._started = asyncio.Event()
        self.add_event_handler("session_start", lambda _e: self._started.set())
        self.register_handler(Callback(
            "push2", MatchXPath(f"{{{self.default_ns}}}message/{{{NS_PUSH2}}}notification"), self._on))

    def _on(self, msg):
        n = Notification(msg.xml)
        self.notifications.put_nowait(n)
        if self.errors:
            etype, cond = self.errors.pop(0)
            self.send_raw(f"<message type='error' id='{n.id}' to='{msg['from']}' from='{msg['to']}'>"
                          f"<error type='{etype}'><{cond} xmlns='{NS_STANZAS}'/></error></message>")

    async def start(self, timeout=10):
        self.connect()
        await asyncio.wait_for(self._started.wait(), timeout)
        return self

    async def stop(self):
        self.disconnect()
        await asyncio.sleep(0.1)

    async def next(self, timeout=10):
        return await next_of(self.notifications, timeout, "the push service")

    async def nothing(self, within=1.5):
        await none_of(self.notifications, within)


async def enable_device(user, port, device, resource, **kwargs):
    c = await Client(user, port, resource=resource).start()
    reply = await c.iq_set(device.enable_xml(f"https://push.example/ep/{resource}", **kwargs))
    await c.stop()
    assert iq_type(reply) == "result", ET.tostring(reply)


def send(client, to, inner, mtype="chat", mid=None):
    client.send_raw(f"<message to='{to}' type='{mtype}' id='{mid or os.urandom(4).hex()}'>{inner}</message>")


def test_borogove_enables_and_an_offline_message_arrives_encrypted_and_signed(prosody, users):
    romeo, juliet = users("romeo", "juliet")
    device = Device()

    async def scenario():
        service = await PushService(prosody).start()
        c = await Client(romeo, prosody.c2s_port, resource="borogove").start()
        info = await c["xep_0030"].get_info(jid=romeo)
        features = set(info["disco_info"]["features"])
        reply = await c.iq_set(device.enable_xml("https://push.example/ep/1"))
        assert iq_type(reply) == "result", ET.tostring(reply)
        await c.stop()
        stored = prosody.store_file(romeo.split("@")[0], store="push2_registrations").read_text()
        j = await Client(juliet, prosody.c2s_port).start()
        sent_at = time.time()
        send(j, romeo, "<body>Wherefore art thou, Romeo?</body>")
        n = await service.next()
        await service.nothing(1.0)
        # Disabled: nothing more.
        c = await Client(romeo, prosody.c2s_port, resource="borogove").start()
        assert iq_type(await c.iq_set(f"<disable xmlns='{NS_PUSH2}'/>")) == "result"
        await c.stop()
        send(j, romeo, "<body>Are you there?</body>")
        await service.nothing(1.5)
        await j.stop()
        await service.stop()
        return features, stored, n, sent_at

    features, stored, n, sent_at = run(scenario())
    assert NS_PUSH2 in features and SEND_ENCRYPTED in features
    # mod_push2's layout, under the device's resource
    assert '["borogove"]' in stored and '["service"] = "push.localhost"' in stored
    assert '["ua_public"]' in stored and '["match"] = "urn:xmpp:push2:match:important"' in stored
    assert n.sender == "localhost" and n.client == "https://push.example/ep/1"
    assert n.priority == "normal" and not n.voip
    msg, size, claims = device.open(n.notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == "Wherefore art thou, Romeo?"
    assert msg.get("from").startswith(juliet) and msg.get("to") == romeo
    assert size <= 2847
    assert claims["sub"] == "https://localhost" and claims["aud"] == AUD
    assert sent_at < claims["exp"] <= sent_at + 24 * 3600


def test_bad_enables_are_bad_requests(prosody, users):
    romeo = users("romeo")
    device = Device()
    good_send = device.send_xml()
    bad_point = good_send.replace(good_send.split("<ua-public>")[1].split("</ua-public>")[0],
                                  base64.b64encode(b"\x04" + b"\x01" * 64).decode())
    cases = {
        "no service": f"<enable xmlns='{NS_PUSH2}'><client>c</client><match profile='{IMPORTANT}'>{good_send}</match></enable>",
        "no client": f"<enable xmlns='{NS_PUSH2}'><service>push.localhost</service><match profile='{IMPORTANT}'>{good_send}</match></enable>",
        "own jid": device.enable_xml("c", service=romeo),
        "not on the curve": device.enable_xml("c", send=bad_point),
        "HS256": device.enable_xml("c", send=good_send.replace("ES256", "HS256")),
        "bad key": device.enable_xml("c", send=good_send.replace("<jwt-key>", "<jwt-key>AAAA")),
        "no match": f"<enable xmlns='{NS_PUSH2}'><service>push.localhost</service><client>c</client></enable>",
        "overlong client": device.enable_xml("c" * 5000),
    }

    async def scenario():
        c = await Client(romeo, prosody.c2s_port, resource="borogove").start()
        out = {}
        for name, xml in cases.items():
            reply = await c.iq_set(xml)
            err = reply.find("{jabber:client}error")
            out[name] = (iq_type(reply), err is not None and err.get("type"),
                         err is not None and err.find(f"{{{NS_STANZAS}}}bad-request") is not None)
        await c.stop()
        return out

    results = run(scenario())
    for name, result in results.items():
        assert result == ("error", "modify", True), (name, result)
    assert not prosody.store_file(romeo.split("@")[0], store="push2_registrations").exists()


def test_match_profiles_reactions_and_calls(prosody, users):
    romeo, juliet = users("romeo", "juliet")
    profiles = {"all": "urn:xmpp:push2:match:all", "important": IMPORTANT,
                "archived": "urn:xmpp:push2:match:archived",
                "withbody": "urn:xmpp:push2:match:archived-with-body"}

    async def scenario():
        service = await PushService(prosody).start()
        for name, profile in profiles.items():
            await enable_device(romeo, prosody.c2s_port, Device(), name, profile=profile,
                                send=f"<send xmlns='{SEND_NOTIFY}'/>")
        j = await Client(juliet, prosody.c2s_port).start()
        got = {}
        for case, inner in [
            ("body", "<body>hi</body>"),
            ("receipt", "<received xmlns='urn:xmpp:receipts' id='x'/><store xmlns='urn:xmpp:hints'/>"),
            ("reaction", "<reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>👍</reaction></reactions>"
                         "<store xmlns='urn:xmpp:hints'/>"),
            ("call", "<propose xmlns='urn:xmpp:jingle-message:0' id='call1'>"
                     "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>"),
            ("call end", "<retract xmlns='urn:xmpp:jingle-message:0' id='call1'/>"),
        ]:
            send(j, romeo, inner)
            seen = []
            try:
                while True:
                    n = await service.next(1.5)
                    seen.append((n.client.rsplit("/", 1)[1], n.priority, n.voip, n.encrypted))
            except AssertionError:
                pass
            got[case] = sorted(seen)
        await j.stop()
        await service.stop()
        return got

    got = run(scenario())
    assert got["body"] == [("all", "normal", False, False), ("archived", "normal", False, False),
                           ("important", "normal", False, False), ("withbody", "normal", False, False)]
    # a receipt kept in the archive (hint): all and archived only, low
    assert got["receipt"] == [("all", "low", False, False), ("archived", "low", False, False)]
    # a reaction: also under important, at low priority
    assert [d for d, *_ in got["reaction"]] == ["all", "archived", "important"]
    assert {p for _, p, *_ in got["reaction"]} == {"low"}
    # a call and its end: every registration, high, VoIP
    for case in ("call", "call end"):
        assert [d for d, *_ in got[case]] == ["all", "archived", "important", "withbody"], got[case]
        assert {(p, v) for _, p, v, _ in got[case]} == {("high", True)}


def test_a_filtered_chat_pushes_only_on_a_mention(prosody, users):
    romeo, juliet = users("romeo", "juliet")
    device = Device()
    name = romeo.split("@")[0]

    async def scenario():
        service = await PushService(prosody).start()
        await enable_device(romeo, prosody.c2s_port, device, "borogove",
                            match_extra=f"<filter jid='{juliet}'><mention/></filter>")
        j = await Client(juliet, prosody.c2s_port).start()
        send(j, romeo, "<body>good night</body>")
        await service.nothing(1.5)
        send(j, romeo, f"<body>good night, {name}</body>")
        n = await service.next()
        await j.stop()
        await service.stop()
        return n

    msg, _, _ = device.open(run(scenario()).notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == f"good night, {name}"


def test_a_long_accented_body_fits_and_keeps_its_archive_id(prosody, users):
    romeo, juliet = users("romeo", "juliet")
    device = Device()

    async def scenario():
        service = await PushService(prosody).start()
        await enable_device(romeo, prosody.c2s_port, device, "borogove")
        j = await Client(juliet, prosody.c2s_port).start()
        send(j, romeo, "<body>" + "é" * 5000 + "</body>")
        first = await service.next()
        send(j, romeo, "<body>" + "a" * 10000 + "</body>")
        second = await service.next()
        await j.stop()
        await service.stop()
        return first, second

    for n in run(scenario()):
        msg, size, _ = device.open(n.notification)
        assert size <= 2847
        body = msg.findtext(f"{{{NS_CLIENT}}}body")
        assert body.endswith("…") and len(body) > 500
        assert msg.find("{urn:xmpp:sid:0}stanza-id") is not None


def test_a_wait_error_is_retried_and_others_count(prosody_with, users):
    p = prosody_with(options={"push_retry_delays": [1], "push_max_errors": 2})
    romeo, juliet = (p.add_user(f"{n}push2") for n in ("romeo", "juliet"))
    device = Device()

    async def scenario():
        service = await PushService(p).start()
        await enable_device(romeo, p.c2s_port, device, "borogove")
        j = await Client(juliet, p.c2s_port).start()
        service.errors = [("wait", "resource-constraint")]
        send(j, romeo, "<body>first</body>")
        first = await service.next()
        retry = await service.next(5)
        service.errors = [("cancel", "item-not-found"), ("cancel", "item-not-found")]
        send(j, romeo, "<body>second</body>")
        await service.next()
        await asyncio.sleep(0.5)
        send(j, romeo, "<body>third</body>")
        await service.next()
        await asyncio.sleep(1)
        send(j, romeo, "<body>fourth</body>")
        await service.nothing(2)
        await j.stop()
        await service.stop()
        return first, retry

    first, retry = run(scenario())
    assert retry.client == first.client
    msg, _, _ = device.open(retry.notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == "first"
    assert "Disabling push notifications for identifier 'push2:borogove'" in p.log()


def test_a_hibernated_session_is_woken(prosody, users):
    romeo, juliet = users("romeo", "juliet")
    device = Device()

    async def scenario():
        service = await PushService(prosody).start()
        c = await Client(romeo, prosody.c2s_port, resource="borogove", smacks=True).start()
        assert iq_type(await c.iq_set(device.enable_xml("https://push.example/ep/s"))) == "result"
        await c.kill()
        j = await Client(juliet, prosody.c2s_port).start()
        send(j, romeo, "<body>wake up</body>")
        n = await service.next()
        await service.nothing(2)
        await j.stop()
        await service.stop()
        return n

    n = run(scenario())
    msg, _, _ = device.open(n.notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == "wake up"


def test_an_admin_switching_from_mod_push2_keeps_its_registrations(version):
    p = Prosody(version=version)
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")
    device = Device()
    public, auth, pkcs8 = device.keys_b64()
    # What mod_push2 stored for a Borogove device (its layout, its key).
    record = {"borogove": {
        "service": "push.localhost", "client": "https://push.example/ep/old", "timestamp": 1700000000,
        "matches": [{"match": IMPORTANT, "chats": {}, "send": SEND_ENCRYPTED,
                     "ua_public": public, "auth_secret": auth,
                     "jwt_alg": "ES256", "jwt_key": pkcs8, "jwt_claims": {"aud": AUD}}]}}
    path = p.store_file("romeo", store="push2_registrations")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"return {lua_value(record)};\n")
    try:
        p.start()
        n = run(pushed_through(p, romeo, juliet))
    finally:
        p.cleanup()
    assert n.client == "https://push.example/ep/old"
    msg, _, _ = device.open(n.notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == "still here"


async def pushed_through(p, romeo, juliet):
    service = await PushService(p).start()
    j = await Client(juliet, p.c2s_port).start()
    send(j, romeo, "<body>still here</body>")
    n = await service.next()
    await j.stop()
    await service.stop()
    return n


def test_one_device_with_both_protocols(prosody_with):
    """A client may hold one registration of each protocol: offline, each
    is pushed (its own counts, calls, errors); while its session is
    hibernated, the device gets one push, through the XEP-0357 one it
    enabled, and none for the archive."""
    from harness import AppServer
    p = prosody_with(components=["push2.localhost"])
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")
    device = Device()

    async def scenario():
        app = await AppServer(p).start()
        service = await PushService(p, jid="push2.localhost").start()
        c = await Client(romeo, p.c2s_port, resource="both", smacks=True).start()
        assert iq_type(await c.enable("push.localhost", "n1")) == "result"
        xml = device.enable_xml("https://push.example/ep/both", service="push2.localhost")
        assert iq_type(await c.iq_set(xml)) == "result"
        await c.kill()
        j = await Client(juliet, p.c2s_port).start()
        send(j, romeo, "<body>while hibernated</body>")
        hibernated = await app.next_push()
        await service.nothing(2)
        await c.resume()
        await c.stop()
        await asyncio.sleep(0.5)
        send(j, romeo, "<body>while offline</body>")
        offline = await app.next_push()
        n = await service.next()
        await j.stop()
        await service.stop()
        await app.stop()
        return hibernated, offline, n

    hibernated, offline, n = run(scenario())
    assert hibernated.node == "n1" and offline.node == "n1"
    msg, _, _ = device.open(n.notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == "while offline"


def test_a_match_grace_holds_while_another_device_is_active(prosody, users):
    romeo, juliet = users("romeo", "juliet")
    graced, plain = Device(), Device()

    async def scenario():
        service = await PushService(prosody).start()
        await enable_device(romeo, prosody.c2s_port, graced, "graced", match_extra="<grace>60</grace>")
        await enable_device(romeo, prosody.c2s_port, plain, "plain")
        desk = await Client(romeo, prosody.c2s_port, resource="desk").start()
        j = await Client(juliet, prosody.c2s_port).start()
        send(desk, juliet, "<body>I am at my desk</body>")  # activity elsewhere
        await asyncio.sleep(0.5)
        send(j, romeo, "<body>hello</body>")
        got = [await service.next()]
        await service.nothing(1.5)
        await desk.stop()
        await j.stop()
        await service.stop()
        return got

    got = run(scenario())
    assert [n.client.rsplit("/", 1)[1] for n in got] == ["plain"]


def test_content_is_not_forwarded_when_the_admin_says_so(prosody_with):
    p = prosody_with(options={"push2_forward_content": False})
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")
    device = Device()

    async def scenario():
        service = await PushService(p).start()
        await enable_device(romeo, p.c2s_port, device, "borogove")
        j = await Client(juliet, p.c2s_port).start()
        send(j, romeo, "<body>a secret</body>", mid="m-secret")
        n = await service.next()
        await j.stop()
        await service.stop()
        return n

    msg, _, _ = device.open(run(scenario()).notification)
    text = ET.tostring(msg, encoding="unicode")
    assert "a secret" not in text and juliet not in text and msg.get("from") is None
    assert msg.get("id") == "m-secret" and msg.find("{urn:xmpp:sid:0}stanza-id") is not None


def test_a_failed_store_write_answers_internal_server_error_and_changes_nothing(prosody_with):
    from harness import error_of
    p = prosody_with()
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")
    device = Device()

    async def scenario():
        service = await PushService(p).start()
        c = await Client(romeo, p.c2s_port, resource="borogove").start()
        assert iq_type(await c.iq_set(device.enable_xml("https://push.example/ep/kept"))) == "result"
        # mod_push2's store file for romeo made unwritable: a directory in its place
        path = p.store_file("romeo", store="push2_registrations")
        path.unlink()
        path.mkdir()
        (path / "blocker").write_text("x")
        failed_enable = error_of(await c.iq_set(Device().enable_xml("https://push.example/ep/new")))
        failed_disable = error_of(await c.iq_set(f"<disable xmlns='{NS_PUSH2}'/>"))
        await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        send(j, romeo, "<body>still pushed</body>")
        n = await service.next()
        await j.stop()
        await service.stop()
        return failed_enable, failed_disable, n

    failed_enable, failed_disable, n = run(scenario())
    assert failed_enable == ("wait", "internal-server-error")
    assert failed_disable == ("wait", "internal-server-error")
    assert n.client == "https://push.example/ep/kept"
    assert "Error writing Push 2.0 registrations" in p.log()


def test_the_last_wake_up_of_a_hibernated_session(prosody_with):
    """The extended hibernation (6 s here) and its wake-up 2 s before the
    end work for a Push 2.0 session as for an XEP-0357 one."""
    p = prosody_with(options={"smacks_hibernation_time": 4, "push_wake_before_expiry": 2,
                              "push_max_hibernation_timeout": 6})
    romeo = p.add_user("romeo")
    device = Device()

    async def scenario():
        service = await PushService(p).start()
        c = await Client(romeo, p.c2s_port, resource="borogove", smacks=True).start()
        assert iq_type(await c.iq_set(device.enable_xml("https://push.example/ep/w"))) == "result"
        loop = asyncio.get_running_loop()
        await c.kill()
        killed = loop.time()
        n = await service.next(8)
        woke_after = loop.time() - killed
        await service.nothing(3)
        await service.stop()
        return n, woke_after

    n, woke_after = run(scenario())
    assert 3.5 <= woke_after <= 5.0, woke_after
    assert n.priority == "normal" and not n.voip
    msg, _, _ = device.open(n.notification)
    assert msg.get("from") == "localhost" and msg.find(f"{{{NS_CLIENT}}}body") is None
    assert p.log().count("waking the device") == 1


def test_bare_groupchat_and_the_archive_path(prosody, users):
    """A groupchat message to the user's bare JID (no joined device) and an
    archived message while another session of the user is online (the
    device with the registration has none)."""
    romeo, juliet = users("romeo", "juliet")
    device = Device()

    async def scenario():
        service = await PushService(prosody).start()
        await enable_device(romeo, prosody.c2s_port, device, "borogove")
        j = await Client(juliet, prosody.c2s_port).start()
        send(j, romeo, "<body>to the room</body>", mtype="groupchat")
        room = await service.next()
        desk = await Client(romeo, prosody.c2s_port, resource="desk").start()
        send(j, romeo, "<body>archived</body>")
        archived = await service.next()
        await service.nothing(1.5)
        await desk.stop()
        await j.stop()
        await service.stop()
        return room, archived

    room, archived = run(scenario())
    msg, _, _ = device.open(room.notification)
    assert msg.get("type") == "groupchat" and msg.findtext(f"{{{NS_CLIENT}}}body") == "to the room"
    msg, _, _ = device.open(archived.notification)
    assert msg.findtext(f"{{{NS_CLIENT}}}body") == "archived"
    assert msg.find("{urn:xmpp:sid:0}stanza-id") is not None
