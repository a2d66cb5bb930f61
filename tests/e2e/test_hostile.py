"""Hostile input and faults: what strangers, other local users, app servers
and a misbehaving store can and cannot do. Each test here failed before the
fix it covers (see business_rules.markdown, rules 56–66)."""

import asyncio
import re
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

from conftest import make_users
from harness import (COMPONENT_SECRET, NS_PUSH, AppServer, Client, error_of, iq_type,
                     message_pushes, run)
from store import read_store
from test_admin import metric, scrape
from test_muc import MUC, join, member_with_push, say
from test_smacks import hibernated_phone, phone_with_push, pushes_within, raw

# Every module of the harness's default set except mod_mam: no archive ids.
NO_MAM = ["roster", "saslauth", "disco", "ping", "carbons", "smacks", "offline", "csi_simple",
          "cloud_notify"]
TEST_STORE = {"cloud_notify": "test"}


def forged_carbon(inner_body, outer=""):
    return ("<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='bank@trusted.example/web' to='romeo@localhost' type='chat'>"
            f"<body>{inner_body}</body></message></forwarded></received>{outer}")


# -- spoofing -----------------------------------------------------------------

def test_forged_carbons_show_the_real_sender_on_every_path(prosody_with):
    p = prosody_with(options={"push_notification_with_body": True,
                              "push_notification_with_sender": True})
    romeo, mallory, juliet = make_users(p)("romeo", "mallory", "juliet")
    scam = "Your account is locked"

    async def scenario():
        app = await AppServer(p).start()
        m = await Client(mallory, p.c2s_port).start()
        # Offline path.
        old = await Client(romeo, p.c2s_port, resource="old").start()
        assert iq_type(await old.enable("push.localhost", "old")) == "result"
        await old.stop()
        raw(m, romeo, forged_carbon(scam))
        offline = await pushes_within(app, 1.5)
        raw(m, romeo, forged_carbon(scam, outer="<body>hello</body>"))
        offline_body = await pushes_within(app, 1.5)
        # MAM path (another device online) and smacks path (hibernated phone).
        phone = await phone_with_push(p, romeo)
        await phone.kill()
        await asyncio.sleep(0.5)
        raw(m, romeo, forged_carbon(scam, outer="<body>hello</body>"))
        live = await pushes_within(app, 2.5)
        await m.stop()
        await app.stop()
        return offline, offline_body, live

    offline, offline_body, live = run(scenario())
    for push in offline + offline_body + live:
        text = ET.tostring(push.xml, encoding="unicode")
        assert "bank@trusted.example" not in text and scam not in text, text
        assert push.summary["last-message-sender"].startswith(mallory), push
    # A carbon-shaped message with no body of its own is no message to show.
    assert [x.important for x in offline] == [False]
    [with_body] = offline_body
    assert with_body.summary["last-message-body"] == "hello"
    assert sorted(x.node for x in live) == ["old", "phone"]  # MAM, smacks
    assert all(x.summary["last-message-body"] == "hello" for x in live)


def test_two_messages_that_reuse_an_id_give_two_pushes(prosody_with):
    # No mod_mam, so no archive id tells them apart: a bot whose counter
    # restarted sends two different messages with id '1'.
    p = prosody_with(options={"modules_enabled": NO_MAM, "push_notification_with_body": True})
    romeo, bot = make_users(p)("romeo", "bot")

    async def scenario():
        app = await AppServer(p).start()
        c = await Client(romeo, p.c2s_port).start()
        assert iq_type(await c.enable("push.localhost", "phone")) == "result"
        await c.stop()
        b = await Client(bot, p.c2s_port).start()
        raw(b, romeo, "<body>Build failed</body>", id_="1")
        raw(b, romeo, "<body>Build fixed</body>", id_="1")
        pushes = await pushes_within(app, 2.0)
        await b.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert [x.summary["last-message-body"] for x in pushes] == ["Build failed", "Build fixed"]


def test_push_ids_tell_an_app_server_nothing(prosody_with):
    p = prosody_with()
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        c = await Client(romeo, p.c2s_port).start()
        assert iq_type(await c.enable("push.localhost", "phone")) == "result"
        await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        pushes = []
        for i in range(3):
            pushes += await message_pushes(app, j, romeo, 1, body=f"m{i}", quiet=0)
        await j.stop()
        await app.stop()
        return pushes

    ids = [x.id for x in run(scenario())]
    assert all(re.fullmatch(r"push-[0-9a-f]{32}", i) for i in ids), ids
    assert len(set(ids)) == 3
    # Not a counter in hex: no two share their first 8 digits (random ids
    # would, once in about 10^9 runs), and they are no run of numbers.
    assert len({i[5:13] for i in ids}) == 3, ids
    numbers = [int(i[5:], 16) for i in ids]
    assert any(abs(b - a) > 2 ** 64 for a, b in zip(numbers, numbers[1:])), ids


# -- bounds ---------------------------------------------------------------------

def test_enable_fields_are_bounded(prosody, users):
    romeo = users("romeo")

    async def scenario():
        c = await Client(romeo, prosody.c2s_port).start()
        long_payload = await c.iq_set(
            f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='a' include_payload='{'p' * 65}'/>")
        empty_fields = "<field/>" * 100
        many_elements = await c.iq_set(
            f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='b'>"
            f"<x xmlns='jabber:x:data' type='submit'>{empty_fields}</x></enable>")
        iq = c.make_iq_set()
        iq["lang"] = "x" * 100
        iq.append(ET.fromstring(f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='c'/>"))
        try:
            long_lang = (await iq.send(timeout=10)).xml
        except IqError as e:
            long_lang = e.iq.xml
        fine = await c.iq_set(
            f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='d' include_payload='stripped'/>")
        await c.stop()
        return long_payload, many_elements, long_lang, fine

    long_payload, many_elements, long_lang, fine = run(scenario())
    for reply in (long_payload, many_elements, long_lang):
        assert error_of(reply) == ("modify", "not-acceptable"), ET.tostring(reply)
    assert iq_type(fine) == "result"
    assert sorted(read_store(prosody.store_file(romeo.split("@")[0]))) == ["push.localhost<d"]


class RemoteServer(slixmpp.ComponentXMPP):
    """Another server's users, as a component sending from its own domain."""

    def __init__(self, p, domain):
        super().__init__(domain, COMPONENT_SECRET, "127.0.0.1", p.component_port)
        self.domain = domain
        self._started = asyncio.Event()
        self.add_event_handler("session_start", lambda _e: self._started.set())

    async def start(self):
        self.connect()
        await asyncio.wait_for(self._started.wait(), 10)
        return self

    async def iq(self, user, payload):
        """The answer, with its first error as a jabber:client child (as
        error_of reads it; a component stream has its own namespace)."""
        iq = self.make_iq_set(ifrom=f"{user}@{self.domain}/res", ito=MUC)
        iq.append(ET.fromstring(payload))
        try:
            reply = (await iq.send(timeout=10)).xml
        except IqError as e:
            reply = e.iq.xml
        except IqTimeout:
            raise AssertionError("no answer") from None
        out = ET.Element("iq", reply.attrib)
        err = next((c for c in reply if c.tag.endswith("}error")), None)
        if err is not None:
            copy = ET.SubElement(out, "{jabber:client}error", err.attrib)
            copy.extend(list(err))
        return out

    async def enable(self, user, node="n"):
        return await self.iq(user, f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='{node}'/>")

    async def disable(self, user):
        return await self.iq(user, f"<disable xmlns='{NS_PUSH}' jid='push.localhost'/>")


def muc_store_users(p):
    d = p.store_file("x", store="muc_cloud_notify", host=MUC).parent
    return sorted(f.stem for f in d.glob("*.dat")) if d.exists() else []


def test_remote_servers_are_bounded_on_the_muc(prosody_with):
    p = prosody_with(muc=MUC, components=["evil.localhost", "other.localhost"],
                     muc_options={"muc_push_max_users_per_domain": 3, "muc_push_enables_per_minute": 5})
    romeo = make_users(p)("romeo")

    async def fill():
        evil = await RemoteServer(p, "evil.localhost").start()
        replies = [await evil.enable(f"u{i}") for i in range(4)]
        again = await evil.enable("u0", node="second-device")
        evil.disconnect()
        return replies, again

    replies, again = run(fill())
    assert [iq_type(r) for r in replies[:3]] == ["result"] * 3
    assert error_of(replies[3]) == ("wait", "resource-constraint")
    assert iq_type(again) == "result"  # a registered user may add a device
    assert len(muc_store_users(p)) == 3
    p.restart()  # the count comes back from the store

    async def after_restart():
        evil = await RemoteServer(p, "evil.localhost").start()
        still_full = await evil.enable("u4")
        assert iq_type(await evil.disable("u1")) == "result"
        room_made = await evil.enable("u4")
        # The rate: 5 enables a minute per domain (one used just now).
        flood = [await evil.enable("u4", node=f"n{i}") for i in range(5)]
        other = await RemoteServer(p, "other.localhost").start()
        elsewhere = await other.enable("v0")
        local = await Client(romeo, p.c2s_port).start()
        iq = local.make_iq_set(ito=MUC)
        iq.append(ET.fromstring(f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='r'/>"))
        mine = (await iq.send(timeout=10)).xml
        await local.stop()
        evil.disconnect()
        other.disconnect()
        return still_full, room_made, flood, elsewhere, mine

    still_full, room_made, flood, elsewhere, mine = run(after_restart())
    assert error_of(still_full) == ("wait", "resource-constraint")
    assert iq_type(room_made) == "result"
    assert [iq_type(x) for x in flood[:4]] == ["result"] * 4
    assert error_of(flood[-1]) == ("wait", "resource-constraint")
    assert iq_type(elsewhere) == "result"  # other domains have their own bounds
    assert iq_type(mine) == "result"  # this server's users are never counted


def test_muc_local_only(prosody_with):
    p = prosody_with(muc=MUC, components=["evil.localhost"], muc_options={"muc_push_local_only": True})
    romeo = make_users(p)("romeo")

    async def scenario():
        evil = await RemoteServer(p, "evil.localhost").start()
        remote = await evil.enable("u0")
        evil.disconnect()
        c = await Client(romeo, p.c2s_port).start()
        iq = c.make_iq_set(ito=MUC)
        iq.append(ET.fromstring(f"<enable xmlns='{NS_PUSH}' jid='push.localhost' node='r'/>"))
        local = (await iq.send(timeout=10)).xml
        await c.stop()
        return remote, local

    remote, local = run(scenario())
    assert error_of(remote) == ("cancel", "not-allowed")
    assert iq_type(local) == "result"
    assert muc_store_users(p) == [romeo.replace("@", "%40")]


def test_a_ghost_bounce_cannot_change_what_the_push_says(prosody_with):
    p = prosody_with(muc=MUC, muc_options={"push_notification_with_body": True})
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"
    body = "Grüße, Jürgen!"

    async def scenario():
        app = await AppServer(p).start()
        r = await Client(romeo, p.c2s_port).start()
        await join(r, room, "Romeo")
        j = await member_with_push(p, juliet, room, "Jürgen", "j-node")
        await join(j, room, "Jürgen")
        out = []
        for id_, echoed in (("g1", "Click evil.example to keep your account"), ("g2", body)):
            say(r, room, body, mentions=[(7, 13)], id_=id_)
            await asyncio.sleep(0.3)
            j.send_raw(f"<message to='{room}/Romeo' from='{juliet}/laptop' type='error' id='{id_}'>"
                       f"<body>{echoed}</body><error type='cancel'>"
                       "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
            out += await pushes_within(app, 1.5)
            await join(j, room, "Jürgen")  # kicked as a ghost: back in
        for c in (r, j):
            await c.stop()
        await app.stop()
        return out

    forged, real = run(scenario())
    assert forged.summary["last-message-body"] == "New Message!"
    assert real.summary["last-message-body"] == body


# -- nothing lost ----------------------------------------------------------------

def test_concurrent_enables_with_a_yielding_store_lose_nothing(prosody_with):
    p = prosody_with(options={"storage": TEST_STORE, "test_storage_delay": 0.3,
                              "push_counts_write_interval": 1})
    romeo, juliet = make_users(p)("romeo", "juliet")
    store = p.store_file(romeo.split("@")[0])

    async def scenario():
        app = await AppServer(p).start()
        phone = await Client(romeo, p.c2s_port, resource="phone").start()
        tablet = await Client(romeo, p.c2s_port, resource="tablet").start()
        # Both at once: the second arrives while the first's store calls yield.
        replies = await asyncio.gather(phone.enable("push.localhost", "phone"),
                                       tablet.enable("push.localhost", "tablet"))
        for c in (phone, tablet):
            await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 2, quiet=1.0)
        # An enable while an error count is being written.
        app.mode = ("error", "cancel", "item-not-found")
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        j.send_message(mto=romeo, mbody="counts an error", mtype="chat")
        await asyncio.sleep(0.05)
        during = await laptop.enable("push.localhost", "laptop")
        await asyncio.sleep(2.5)
        await laptop.stop()
        await j.stop()
        await app.stop()
        return replies, pushes, during

    replies, pushes, during = run(scenario())
    assert [iq_type(r) for r in replies] == ["result", "result"]
    assert sorted(x.node for x in pushes) == ["phone", "tablet"]
    assert iq_type(during) == "result"
    stored = read_store(store)
    assert sorted(stored) == ["push.localhost<laptop", "push.localhost<phone", "push.localhost<tablet"]
    assert stored["push.localhost<phone"].get("error_count") == 1
    assert stored["push.localhost<tablet"].get("error_count") == 1


def test_a_smacks_batch_survives_the_user_leaving_the_cache(prosody_with):
    p = prosody_with(options={"push_registration_cache_size": 1})
    romeo, juliet, bob = make_users(p)("romeo", "juliet", "bob")

    async def scenario():
        app, phone, j = await hibernated_phone(p, romeo, juliet)
        raw(j, romeo, "<body>queued</body>")
        # Within the coalescing second, another user is loaded: the cache
        # of one evicts romeo.
        await asyncio.sleep(0.1)
        raw(j, bob, "<body>bob is offline</body>")
        pushes = await pushes_within(app, 2.5)
        await j.stop()
        await app.stop()
        return pushes

    pushes = run(scenario())
    assert [(x.node, x.important) for x in pushes] == [("phone", True)]


def test_lowering_push_max_devices_trims_the_store(prosody_with):
    p = prosody_with()
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def enable_three():
        for node in ("a", "b", "c"):
            c = await Client(romeo, p.c2s_port, resource=node).start()
            assert iq_type(await c.enable("push.localhost", node)) == "result"
            await c.stop()
            await asyncio.sleep(1.05)  # distinct enable seconds

    async def pushes():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="hi", mtype="chat")
        out = await pushes_within(app, 1.5)
        await j.stop()
        await app.stop()
        return sorted(x.node for x in out)

    run(enable_three())
    p.options["push_max_devices"] = 2
    p.restart()
    assert run(pushes()) == ["b", "c"]
    assert sorted(read_store(p.store_file(romeo.split("@")[0]))) == ["push.localhost<b", "push.localhost<c"]
    del p.options["push_max_devices"]
    p.restart()
    assert run(pushes()) == ["b", "c"]  # the trimmed one does not come back


# -- issue 23: strangers' costs, bounds ------------------------------------------

METRICS = {"statistics": "internal", "statistics_interval": "manual"}


def test_strangers_stanzas_to_made_up_users_read_nothing(prosody_with):
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"), options=METRICS)
    romeo, juliet, mallory = make_users(p)("romeo", "juliet", "mallory")
    run(enable_and_leave(p, romeo))
    p.restart()  # (the store's users are listed when the module loads)
    reads = "prosody_mod_cloud_notify__store_reads_total"

    async def scenario():
        app = await AppServer(p).start()
        m = await Client(mallory, p.c2s_port).start()
        # 20,000 stanzas to 20,000 made-up names: subscription requests,
        # pubsub events "from an app server", messages.
        for i in range(20_000):
            to = f"nobody{i}@localhost"
            if i % 3 == 0:
                m.send_raw(f"<presence to='{to}' type='subscribe'/>")
            elif i % 3 == 1:
                m.send_raw(f"<message to='{to}'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
                           f"<affiliations node='x'><affiliation jid='{to}' affiliation='none'/>"
                           "</affiliations></event></message>")
            else:
                m.send_raw(f"<message to='{to}' type='chat'><body>hi</body></message>")
            if i % 500 == 499:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        before = metric(scrape(p), reads)
        # A real user's push still goes out, read once.
        j = await Client(juliet, p.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 1)
        after = metric(scrape(p), reads)
        for c in (m, j):
            await c.stop()
        await app.stop()
        return before, pushes, after

    before, pushes, after = run(scenario(), timeout=300)
    assert before == 0, f"{before} store reads for made-up users"
    assert len(pushes) == 1 and after == 1


async def enable_and_leave(p, user):
    c = await Client(user, p.c2s_port).start()
    assert iq_type(await c.enable("push.localhost", "phone")) == "result"
    await c.stop()


def test_a_long_body_is_cut_at_a_character_boundary(prosody_with):
    p = prosody_with(options={"push_notification_with_body": True})
    romeo, juliet = make_users(p)("romeo", "juliet")
    run(enable_and_leave(p, romeo))

    async def scenario():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        pushes = await message_pushes(app, j, romeo, 1, body="é" * 5000)
        await j.stop()
        await app.stop()
        return pushes

    [push] = run(scenario())
    body = push.summary["last-message-body"]
    assert body == "é" * 128, len(body.encode())  # 256 bytes, no half character


def test_a_room_with_thousands_of_members_reads_only_those_with_registrations(prosody_with):
    p = prosody_with(modules=("cloud_notify", "http_openmetrics"), muc=MUC,
                     muc_options={"muc_push_policy": "all"}, options=METRICS)
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"
    reads = "prosody_mod_muc_cloud_notify__store_reads_total"

    async def scenario():
        app = await AppServer(p).start()
        r = await Client(romeo, p.c2s_port).start()
        await join(r, room, "Romeo")  # the owner
        # 3,000 members, made in one admin request; one of them with push.
        items = "".join(f"<item affiliation='member' jid='m{i}@elsewhere.example'/>" for i in range(3000))
        iq = r.make_iq_set(ito=room)
        iq.append(ET.fromstring(f"<query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query>"))
        await iq.send(timeout=30)
        j = await member_with_push(p, juliet, room, "Juliet", "j-node")
        ok = scrape(p)
        say(r, room, "Good morrow", id_="a1")
        pushes = await pushes_within(app, 2.0)
        after = scrape(p)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return pushes, metric(ok, reads), metric(after, reads)

    pushes, before, after = run(scenario(), timeout=120)
    assert [x.node for x in pushes] == ["j-node"]
    # No read for the 3,000 members known to have no registration.
    assert after - before <= 1, (before, after)



def test_on_the_muc_a_registration_whose_app_server_never_answers_ages_out(prosody_with):
    p = prosody_with(muc=MUC, muc_options={"muc_push_policy": "all", "push_response_timeout": 1,
                                           "push_max_errors": 2})
    romeo, juliet = make_users(p)("romeo", "juliet")
    room = f"verona@{MUC}"

    async def scenario():
        app = await AppServer(p, mode="silent").start()  # never answers
        r = await Client(romeo, p.c2s_port).start()
        await join(r, room, "Romeo")
        j = await member_with_push(p, juliet, room, "Juliet", "j-node")
        pushed = []
        for i in range(3):
            say(r, room, f"Anyone there? {i}", id_=f"q{i}")
            pushed.append(len(await pushes_within(app, 2.5)))  # (the sweep runs every second)
        for c in (r, j):
            await c.stop()
        await app.stop()
        return pushed

    pushed = run(scenario())
    # Two pushes nobody answered: the registration is gone, the third message pushes nothing.
    assert pushed == [1, 1, 0], pushed
    assert "its app server never answers" in p.log()
    assert muc_store_users(p) == []
