"""Issue 15: calls that ring and stop ringing, quiet while the user is
active elsewhere, true unread counts, subscription requests — on real
Prosody, with slixmpp clients, stream management and killed connections.

Each push carries the kind its cloud_notify/push event gave it (the test
module mod_test_push_kind writes it into the payload, as a VoIP extension
would read it)."""

import asyncio
import re
import time

from conftest import make_users
from harness import AppServer, Client, iq_type, run
from test_rules import gone_device
from test_smacks import phone_with_push, pushes_within, raw

NS_KIND = "urn:example:kind"
NS_JMI = "urn:xmpp:jingle-message:0"
NS_MARKERS = "urn:xmpp:chat-markers:0"
PROPOSE = (f"<propose xmlns='{NS_JMI}' id='{{id}}'>"
           "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>")
MDS = ("<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
       "<publish node='urn:xmpp:mds:displayed:0'><item id='{chat}'>"
       "<displayed xmlns='urn:xmpp:mds:displayed:0'>"
       "<stanza-id xmlns='urn:xmpp:sid:0' by='{user}' id='x'/></displayed></item></publish></pubsub>")


def kinds_prosody(prosody_with, **options):
    return prosody_with(modules=("cloud_notify", "pep", "test_push_kind"), options=options)


def kind(push):
    tag = push.notification.find(f"{{{NS_KIND}}}kind")
    return tag.get("value") if tag is not None else None


def count(push):
    return int(push.summary["message-count"])


def by_node(pushes):
    return {p.node: p for p in pushes}


def test_a_call_rings_every_phone_and_stops_when_the_caller_hangs_up(prosody_with):
    p = kinds_prosody(prosody_with)
    romeo, juliet, mallory = make_users(p)("romeo", "juliet", "mallory")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "tablet")              # no session: MAM path
        phone = await phone_with_push(p, romeo)            # hibernated: smacks path
        await phone.kill()
        j = await Client(juliet, p.c2s_port).start()
        m = await Client(mallory, p.c2s_port).start()
        await app.no_push(0.5)
        t0 = time.monotonic()
        raw(j, romeo, PROPOSE.format(id="call1"))
        ring = await pushes_within(app, 2.0)               # at once, not coalesced (1 s)
        rang_in = max(x.at for x in ring) - t0 if ring else None
        # Someone else "hangs up" the call: not theirs to stop.
        raw(m, romeo, f"<retract xmlns='{NS_JMI}' id='call1'/>")
        spoofed = await pushes_within(app, 2.0)
        raw(j, romeo, f"<retract xmlns='{NS_JMI}' id='call1'/>")
        end = await pushes_within(app, 0.8)
        later = await pushes_within(app, 2.0)              # no coalesced copy of the retract
        for c in (j, m):
            await c.stop()
        await app.stop()
        return ring, rang_in, spoofed, end, later

    ring, rang_in, spoofed, end, later = run(scenario())
    assert sorted(x.node for x in ring) == ["phone", "tablet"]
    assert all(kind(x) == "call" and x.important for x in ring)
    assert rang_in < 0.8
    assert all(kind(x) != "call-end" for x in spoofed)
    assert sorted(x.node for x in end) == ["phone", "tablet"]
    assert all(kind(x) == "call-end" and not x.important for x in end)
    assert later == []


def test_a_call_answered_on_one_device_stops_the_others_ringing(prosody_with):
    p = kinds_prosody(prosody_with)
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "tablet")
        phone = await phone_with_push(p, romeo)
        await phone.kill()
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        assert iq_type(await laptop.enable("push.localhost", "laptop")) == "result"
        j = await Client(juliet, p.c2s_port, resource="desk").start()
        # (the laptop's presence, queued for the phone, gives its own push)
        await pushes_within(app, 1.5)
        raw(j, romeo, PROPOSE.format(id="call2"))
        # Calls go to every registration, the online laptop's too.
        ring = await pushes_within(app, 0.8)
        # The laptop picks up (XEP-0353: accept to its own account, proceed
        # to the caller); the copies reach the phone and the archive.
        raw(laptop, romeo, f"<accept xmlns='{NS_JMI}' id='call2'/>")
        raw(laptop, f"{juliet}/desk", f"<proceed xmlns='{NS_JMI}' id='call2'/>")
        end = await pushes_within(app, 2.5)
        for c in (j, laptop):
            await c.stop()
        await app.stop()
        return ring, end

    ring, end = run(scenario())
    assert sorted(x.node for x in ring) == ["laptop", "phone", "tablet"], [(x.node, kind(x), x.summary) for x in ring]
    assert all(kind(x) == "call" for x in ring)
    # Once each, to the phones still ringing; not to the device that answered.
    assert sorted(x.node for x in end) == ["phone", "tablet"]
    assert all(kind(x) == "call-end" for x in end)


def test_counts_go_up_and_down_as_chats_are_read_elsewhere_and_survive_a_restart(prosody_with):
    p = kinds_prosody(prosody_with)
    romeo, juliet, nurse = make_users(p)("romeo", "juliet", "nurse")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "phone")
        j = await Client(juliet, p.c2s_port).start()
        n = await Client(nurse, p.c2s_port).start()
        counts = []
        for sender, body in ((j, "one"), (j, "two"), (n, "three")):
            raw(sender, romeo, f"<body>{body}</body>")
            [push] = await pushes_within(app, 1.0)
            counts.append(count(push))
        # The laptop reads juliet's chat (a displayed marker): the phone's
        # badge drops by juliet's two messages.
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        raw(laptop, juliet, f"<displayed xmlns='{NS_MARKERS}' id='m2'/>")
        [read] = await pushes_within(app, 1.0)
        # The nurse's chat, read through MDS (XEP-0490) on the laptop.
        reply = await laptop.iq_set(MDS.format(chat=nurse, user=romeo))
        [mds] = await pushes_within(app, 1.0)
        await laptop.stop()
        raw(n, romeo, "<body>four</body>")
        raw(n, romeo, "<body>five</body>")
        after_read = [count(x) for x in await pushes_within(app, 1.0)]
        for c in (j, n):
            await c.stop()
        await app.stop()
        return counts, read, reply, mds, after_read

    counts, read, reply, mds, after_read = run(scenario())
    assert counts == [1, 2, 3]
    assert kind(read) == "read" and not read.important and count(read) == 1
    assert iq_type(reply) == "result"
    assert kind(mds) == "read" and count(mds) == 0
    assert after_read == [1, 2]
    # Kept across a restart (written in batches, and on shutdown).
    p.restart()

    async def after_restart():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        raw(j, romeo, "<body>six</body>")
        [push] = await pushes_within(app, 1.5)
        # The phone comes back: nothing is unread for it any more.
        phone = await Client(romeo, p.c2s_port, resource="phone").start()
        assert iq_type(await phone.enable("push.localhost", "phone")) == "result"
        await phone.stop()
        raw(j, romeo, "<body>seven</body>")
        [fresh] = await pushes_within(app, 1.5)
        await j.stop()
        await app.stop()
        return count(push), count(fresh)

    assert run(after_restart()) == (3, 1)


def test_without_counts_the_app_server_learns_no_count_no_read_no_pending_number(prosody_with):
    p = kinds_prosody(prosody_with, push_notification_with_counts=False)
    romeo, juliet, nurse = make_users(p)("romeo", "juliet", "nurse")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "phone")
        j = await Client(juliet, p.c2s_port).start()
        n = await Client(nurse, p.c2s_port).start()
        messages = []
        for body in ("one", "two", "three"):
            raw(j, romeo, f"<body>{body}</body>")
            messages += await pushes_within(app, 1.0)
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        raw(laptop, juliet, f"<displayed xmlns='{NS_MARKERS}' id='m2'/>")
        reply = await laptop.iq_set(MDS.format(chat=juliet, user=romeo))
        reads = await pushes_within(app, 1.0)
        await laptop.stop()
        n.send_raw(f"<presence to='{romeo}' type='subscribe'/>")
        subscription = await pushes_within(app, 1.0)
        for c in (j, n):
            await c.stop()
        await app.stop()
        return messages, reply, reads, subscription

    messages, reply, reads, subscription = run(scenario())
    # As the reference: message-count 1, whatever is unread.
    assert [count(x) for x in messages] == [1, 1, 1]
    assert iq_type(reply) == "result"
    assert reads == []  # no push says a chat was read
    [sub] = subscription
    assert kind(sub) == "subscription" and "pending-subscription-count" not in sub.summary


def test_a_device_that_resumes_is_back_at_zero(prosody_with):
    p = kinds_prosody(prosody_with)
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        phone = await phone_with_push(p, romeo)
        await phone.kill()
        j = await Client(juliet, p.c2s_port).start()
        raw(j, romeo, "<body>one</body>")
        first = await pushes_within(app, 2.0)
        raw(j, romeo, "<body>two</body>")
        second = await pushes_within(app, 2.0)
        await phone.resume()
        await asyncio.sleep(0.5)
        await phone.kill()
        raw(j, romeo, "<body>three</body>")
        third = await pushes_within(app, 2.0)
        await j.stop()
        await app.stop()
        return first, second, third

    first, second, third = run(scenario())
    assert [count(x) for x in first + second + third] == [1, 2, 1]


def test_quiet_while_active_elsewhere_then_pushed_once_if_still_unread(prosody_with):
    p = kinds_prosody(prosody_with, push_grace_period=3)
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "phone")
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        j = await Client(juliet, p.c2s_port).start()
        await asyncio.sleep(0.3)
        # Without activity, the phone is pushed as usual.
        raw(j, romeo, "<body>before</body>")
        before = await pushes_within(app, 1.0)
        # Romeo types on the laptop: the phone stays quiet...
        raw(laptop, juliet, "<body>hi</body>")
        active_at = time.monotonic()
        await asyncio.sleep(0.3)  # (two connections: let the laptop's go first)
        raw(j, romeo, "<body>unread</body>")
        quiet = await pushes_within(app, 2.0)
        # ... and gets one push when the window ends, the message unread.
        late = await pushes_within(app, 3.0)
        # Read on the laptop before the window ends: no message push.
        raw(laptop, juliet, "<composing xmlns='http://jabber.org/protocol/chatstates'/>")
        await asyncio.sleep(0.3)
        raw(j, romeo, "<body>seen</body>")
        await asyncio.sleep(0.5)
        raw(laptop, juliet, f"<displayed xmlns='{NS_MARKERS}' id='s1'/>")
        read_meanwhile = await pushes_within(app, 5.0)
        # Calls are never held.
        raw(laptop, juliet, "<body>still here</body>")
        await asyncio.sleep(0.3)
        raw(j, romeo, PROPOSE.format(id="call3"))
        call = await pushes_within(app, 1.0)
        for c in (j, laptop):
            await c.stop()
        await app.stop()
        return before, active_at, quiet, late, read_meanwhile, call

    before, active_at, quiet, late, read_meanwhile, call = run(scenario())
    assert len(before) == 1 and count(before[0]) == 1
    assert quiet == []
    assert len(late) == 1 and late[0].important and kind(late[0]) == "mam"
    assert late[0].at - active_at >= 2.9
    assert count(late[0]) == 2
    # (the chat read on the laptop clears the phone's badge meanwhile)
    assert [(kind(x), count(x)) for x in read_meanwhile] == [("read", 0)]
    assert len(call) == 1 and kind(call[0]) == "call"


def test_subscription_requests_push_the_number_pending(prosody_with):
    p = kinds_prosody(prosody_with)
    romeo, juliet, nurse = make_users(p)("romeo", "juliet", "nurse")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "phone")
        j = await Client(juliet, p.c2s_port).start()
        n = await Client(nurse, p.c2s_port).start()
        seen = []
        # juliet asks twice: still two pending, and no second buzz
        for c in (j, n, j):
            c.send_raw(f"<presence to='{romeo}' type='subscribe'/>")
            seen.append(await pushes_within(app, 1.0))
        # ... nor when she withdraws and asks again, however often.
        for _ in range(3):
            j.send_raw(f"<presence to='{romeo}' type='unsubscribe'/>")
            await asyncio.sleep(0.2)
            j.send_raw(f"<presence to='{romeo}' type='subscribe'/>")
            seen.append(await pushes_within(app, 1.0))
        for c in (j, n):
            await c.stop()
        await app.stop()
        return seen

    seen = run(scenario())
    assert [len(s) for s in seen] == [1, 1, 0, 0, 0, 0]
    pushes = [s[0] for s in seen[:2]]
    assert [x.summary.get("pending-subscription-count") for x in pushes] == ["1", "2"]
    assert all(kind(x) == "subscription" and not x.important for x in pushes)


def test_the_reference_reads_records_with_counts_and_keeps_them(prosody_with, version, tmp_path):
    from test_extensions import Modules
    p = prosody_with()
    modules = Modules(p, version, tmp_path)
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def messages(n, enable_tablet=False):
        app = await AppServer(p).start()
        if enable_tablet:
            await gone_device(p, romeo, "tablet")
        j = await Client(juliet, p.c2s_port).start()
        got = []
        for i in range(n):
            raw(j, romeo, f"<body>m{i}</body>")
            got.append(sorted((x.node, count(x)) for x in await pushes_within(app, 1.0)))
        await j.stop()
        await app.stop()
        return got

    run(gone_device(p, romeo, "phone"))
    assert run(messages(2)) == [[("phone", 1)], [("phone", 2)]]
    modules.use("reference")
    # The reference pushes from the record (its count is always 1), and an
    # enable under it rewrites the record with our field kept.
    assert run(messages(1, enable_tablet=True)) == [[("phone", 1), ("tablet", 1)]]
    modules.use("ours")
    assert run(messages(1)) == [[("phone", 3), ("tablet", 1)]]


def test_a_message_held_after_a_quiet_moment_still_goes_out(prosody_with):
    """The window moves with each activity; a message held after the first
    window's end would have been (nothing held then) still goes out."""
    p = kinds_prosody(prosody_with, push_grace_period=3)
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "phone")
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        j = await Client(juliet, p.c2s_port).start()
        await asyncio.sleep(0.3)
        raw(laptop, juliet, "<body>one</body>")
        await asyncio.sleep(2.0)
        raw(laptop, juliet, "<body>two</body>")      # the window now ends 3 s after this
        await asyncio.sleep(1.5)                      # past the first window's end
        raw(j, romeo, "<body>held</body>")
        quiet = await pushes_within(app, 1.0)
        late = await pushes_within(app, 3.0)
        for c in (j, laptop):
            await c.stop()
        await app.stop()
        return quiet, late

    quiet, late = run(scenario())
    assert quiet == []
    assert len(late) == 1 and late[0].important and count(late[0]) == 1


def test_an_unusable_grace_period_is_off_and_messages_flow(prosody_with):
    p = kinds_prosody(prosody_with, push_grace_period="soon")
    romeo, juliet = make_users(p)("romeo", "juliet")

    async def scenario():
        app = await AppServer(p).start()
        await gone_device(p, romeo, "phone")
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        j = await Client(juliet, p.c2s_port).start()
        await asyncio.sleep(0.3)
        raw(laptop, juliet, "<body>typed on the laptop</body>")
        got = await asyncio.wait_for(j.messages.get(), 5)
        raw(j, romeo, "<body>pushed at once</body>")
        pushes = await pushes_within(app, 1.0)
        for c in (j, laptop):
            await c.stop()
        await app.stop()
        return got["body"], pushes

    body, pushes = run(scenario())
    # The option was read and refused (not ignored), and the period is off.
    assert re.search(r"push_grace_period.*(not understood|expecting a number|rejected)", p.log()), \
        [line for line in p.log().splitlines() if "grace" in line]
    assert body == "typed on the laptop"
    assert len(pushes) == 1
