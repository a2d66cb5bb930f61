"""Business rules 1–3 and 9b: pushes for stream-management (XEP-0198)
sessions whose connection died (hibernation) or which stopped acking, their
coalescing, and the longer hibernation of push sessions."""

import asyncio

from harness import AppServer, Client, iq_type, run

CHAT_STATE = "<active xmlns='http://jabber.org/protocol/chatstates'/>"


async def pushes_within(app, seconds):
    """Every push the app server receives in the next `seconds`."""
    out = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return out
        try:
            out.append(await asyncio.wait_for(app.pushes.get(), left))
        except asyncio.TimeoutError:
            return out


async def phone_with_push(prosody, user, node="phone", resource="phone"):
    """A smacks client that enabled push and has settled its acks."""
    c = await Client(user, prosody.c2s_port, smacks=True, resource=resource).start()
    assert iq_type(await c.enable("push.localhost", node)) == "result"
    await asyncio.sleep(0.5)
    return c


async def hibernated_phone(prosody, romeo, juliet):
    """The app server, romeo's phone with push (its connection just died,
    the session hibernates), and juliet online."""
    app = await AppServer(prosody).start()
    phone = await phone_with_push(prosody, romeo)
    j = await Client(juliet, prosody.c2s_port).start()
    await phone.kill()
    return app, phone, j


def raw(client, to, inner, mtype="chat", id_=None):
    id_attr = f" id='{id_}'" if id_ else ""
    client.send_raw(f"<message to='{to}' type='{mtype}'{id_attr}>{inner}</message>")


def test_hibernation_pushes_coalesced(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app, phone, j = await hibernated_phone(prosody, romeo, juliet)
        # Nothing was left unacked: hibernating alone pushes nothing.
        await app.no_push(1.5)
        # A burst within the coalescing window: one important push.
        for i in range(3):
            raw(j, romeo, f"<body>burst {i}</body>")
        burst = await pushes_within(app, 2.5)
        # Important and unimportant stanzas together: one push of each.
        raw(j, romeo, "<body>again</body>")
        raw(j, romeo, CHAT_STATE)
        mixed = await pushes_within(app, 2.5)
        await j.stop()
        await app.stop()
        return burst, mixed

    burst, mixed = run(scenario())
    assert len(burst) == 1 and burst[0].important
    assert burst[0].node == "phone"
    assert sorted(p.important for p in mixed) == [False, True]


def test_resume_stops_the_timer_and_nothing_is_pushed_twice(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app, phone, j = await hibernated_phone(prosody, romeo, juliet)
        await app.no_push(0.5)
        # Resumed within the coalescing window: the pending push is dropped.
        raw(j, romeo, "<body>quick</body>")
        await asyncio.sleep(0.1)
        await phone.resume()
        quick = await pushes_within(app, 2.0)
        # A pushed stanza still unacked at the next hibernation is not
        # pushed again: the phone resumes without acking, and dies again.
        await phone.kill()
        raw(j, romeo, "<body>once</body>")
        first = await pushes_within(app, 2.0)
        phone.stop_acking()
        await phone.resume()
        await asyncio.sleep(0.5)
        await phone.kill()
        again = await pushes_within(app, 3.0)
        await j.stop()
        await app.stop()
        return quick, first, again

    quick, first, again = run(scenario())
    assert quick == []
    assert len(first) == 1 and first[0].important
    assert again == []


def test_delayed_ack_pushes_and_clean_close_does_not_push_again(prosody, users):
    romeo, juliet = users("romeo", "juliet")

    async def scenario():
        app = await AppServer(prosody).start()
        phone = await phone_with_push(prosody, romeo)
        j = await Client(juliet, prosody.c2s_port).start()
        # The TCP connection stays up, but the phone no longer acks.
        phone.stop_acking()
        raw(j, romeo, "<body>are you there?</body>", id_="ack1")
        delayed = await pushes_within(app, 5.0)  # smacks_max_ack_delay is 2 s
        # Closing the stream cleanly hands the unacked message to the
        # offline path: stored, and not pushed a second time.
        await phone.stop()
        after_close = await pushes_within(app, 2.0)
        await j.stop()
        await app.stop()
        return delayed, after_close

    delayed, after_close = run(scenario())
    assert len(delayed) == 1 and delayed[0].important
    assert after_close == []
    offline = prosody.store_file(romeo.split("@")[0], store="offline").with_suffix(".list")
    assert offline.exists() and "are you there?" in offline.read_text()


def test_extended_hibernation_then_smacks_timeout(prosody_with, users):
    """push_max_hibernation_timeout keeps a push session while no important
    push went out; after one, smacks' own timeout applies. Either way the
    session is really destroyed when its time is up (the reference leaks it
    on Prosody 0.12.4+ and 13)."""
    p = prosody_with(options={"smacks_hibernation_time": 2, "push_max_hibernation_timeout": 8})
    from conftest import make_users
    romeo, juliet = make_users(p)("romeo", "juliet")
    destroyed = "Destroying session for hibernating too long"

    async def scenario():
        app = await AppServer(p).start()
        phone = await phone_with_push(p, romeo)
        await phone.kill()
        await asyncio.sleep(4.5)  # well past smacks' own 2 s
        kept = destroyed not in p.log()
        await asyncio.sleep(6.5)  # past the extended 8 s
        gone = p.log().count(destroyed)
        # Destroyed for real: a message now goes to offline storage.
        j = await Client(juliet, p.c2s_port).start()
        raw(j, romeo, "<body>after</body>")
        offline_push = await app.next_push()
        # A second phone gets an important push while hibernated: from then
        # on, smacks' 2 s apply.
        phone2 = await phone_with_push(p, romeo, node="phone2", resource="phone2")
        await phone2.kill()
        raw(j, romeo, "<body>wake up</body>")
        # (the first phone's registration gets one too, through MAM)
        woke = {p.node: p for p in await pushes_within(app, 2.0)}
        await asyncio.sleep(3.0)
        gone2 = p.log().count(destroyed)
        await j.stop()
        await app.stop()
        return kept, gone, offline_push, woke, gone2

    kept, gone, offline_push, woke, gone2 = run(scenario())
    assert kept, "the push session was destroyed before its extended timeout"
    assert gone == 1, "the hibernated push session was never destroyed"
    assert offline_push.important
    assert sorted(woke) == ["phone", "phone2"] and woke["phone2"].important
    assert gone2 == 2
    assert "Releasing a stray watchdog" not in p.log()
    assert (p.store_file(romeo.split("@")[0], store="offline").with_suffix(".list")).exists()


def test_disable_from_another_device_restores_the_smacks_timeout(prosody_with):
    p = prosody_with(options={"smacks_hibernation_time": 2, "push_max_hibernation_timeout": 30})
    from conftest import make_users
    romeo = make_users(p)("romeo")
    destroyed = "Destroying session for hibernating too long"

    async def scenario():
        phone = await phone_with_push(p, romeo)
        await phone.kill()
        await asyncio.sleep(3.5)
        kept = destroyed not in p.log()
        laptop = await Client(romeo, p.c2s_port, resource="laptop").start()
        assert iq_type(await laptop.disable("push.localhost", "phone")) == "result"
        await asyncio.sleep(4.5)
        await laptop.stop()
        return kept, destroyed in p.log()

    kept, gone = run(scenario())
    assert kept
    assert gone, "disable did not restore smacks' own hibernation timeout"


def test_auto_disable_restores_the_smacks_timeout(prosody_with):
    p = prosody_with(options={"smacks_hibernation_time": 2, "push_max_hibernation_timeout": 30,
                              "push_max_errors": 1})
    from conftest import make_users
    romeo, juliet = make_users(p)("romeo", "juliet")
    destroyed = "Destroying session for hibernating too long"

    async def scenario():
        app = await AppServer(p, mode=("error", "cancel", "item-not-found")).start()
        phone = await phone_with_push(p, romeo)
        await phone.kill()
        j = await Client(juliet, p.c2s_port).start()
        raw(j, romeo, CHAT_STATE)  # an unimportant push: the extension goes on
        push = await app.next_push()
        await asyncio.sleep(0.5)  # the error came back: registration removed
        disabled = "Disabling push notifications" in p.log()
        await asyncio.sleep(4.0)
        await j.stop()
        await app.stop()
        return push, disabled, destroyed in p.log()

    push, disabled, gone = run(scenario())
    assert not push.important and disabled
    assert gone, "auto-disable did not restore smacks' own hibernation timeout"
    # In this order: the hibernation was extended (so there was something to
    # restore), the registration disabled, smacks' 2 s back, the session gone.
    log = p.log()
    steps = ["Hibernation extended to 30s until the first push",
             "Disabling push notifications for identifier 'push.localhost<phone'",
             "Hibernation timeout back to 2s", destroyed]
    at = [log.find(step) for step in steps]
    assert -1 not in at, list(zip(steps, at))
    assert at == sorted(at), list(zip(steps, at))
