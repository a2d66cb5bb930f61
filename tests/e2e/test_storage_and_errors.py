"""Registrations in Prosody's storage (restart, write failures), and
app-server errors counting against a registration."""

import asyncio

from harness import PUBLISH_OPTIONS, AppServer, Client, enable_devices, error_of, iq_type, message_pushes, run
from store import read_store


def test_registrations_survive_a_restart(prosody_with):
    p = prosody_with()
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")

    async def enable():
        c = await Client(romeo, p.c2s_port).start()
        assert iq_type(await c.enable("push.localhost", "n", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "k"})) == "result"
        await c.stop()

    run(enable())
    p.restart()

    async def message():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        j.send_message(mto=romeo, mbody="after the restart", mtype="chat")
        push = await app.next_push()
        await j.stop()
        await app.stop()
        return push

    push = run(message())
    assert push.node == "n"
    assert push.options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "k"}


def test_a_failed_store_write_answers_internal_server_error_and_changes_nothing(prosody_with):
    p = prosody_with()
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")
    store_dir = p.store_file("romeo").parent

    async def scenario():
        app = await AppServer(p).start()
        c = await Client(romeo, p.c2s_port).start()
        assert iq_type(await c.enable("push.localhost", "kept")) == "result"
        # Make the user's store file unwritable: a directory in its place.
        p.store_file("romeo").unlink()
        p.store_file("romeo").mkdir()
        (p.store_file("romeo") / "blocker").write_text("x")
        failed_enable = error_of(await c.enable("push.localhost", "new"))
        failed_disable = error_of(await c.disable("push.localhost", "kept"))
        await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        [push] = await message_pushes(app, j, romeo, 1)
        await j.stop()
        await app.stop()
        return failed_enable, failed_disable, push

    failed_enable, failed_disable, push = run(scenario())
    assert failed_enable == ("wait", "internal-server-error")
    assert failed_disable == ("wait", "internal-server-error")
    assert push.node == "kept"  # neither the new registration nor the removal took effect
    assert store_dir.is_dir()
    assert "Error writing push registrations" in p.log()


def test_app_server_errors_disable_after_push_max_errors(prosody_with):
    p = prosody_with(options={"push_max_errors": 3})
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")

    async def scenario():
        app = await AppServer(p, mode=("error", "cancel", "item-not-found")).start()
        await enable_devices(romeo, p.c2s_port, ("failing", "healthy"))
        j = await Client(juliet, p.c2s_port).start()

        async def message_and_pushes(n):
            return sorted(x.node for x in await message_pushes(app, j, romeo, n, quiet=0.7))

        app.mode = "result"
        assert await message_and_pushes(2) == ["failing", "healthy"]
        seen = []
        # two counted errors, then a `wait` error (not counted) ...
        app.mode = ("error", "cancel", "item-not-found")
        seen.append(await message_and_pushes(2))
        seen.append(await message_and_pushes(2))
        app.mode = ("error", "wait", "resource-constraint")
        seen.append(await message_and_pushes(2))
        # ... a result resets the count ...
        app.mode = "result"
        seen.append(await message_and_pushes(2))
        # ... so it takes three more errors to disable.
        app.mode = ("error", "cancel", "item-not-found")
        for _ in range(3):
            seen.append(await message_and_pushes(2))
        # Both registrations failed three times in a row: both are removed.
        app.mode = "result"
        j.send_message(mto=romeo, mbody="hi", mtype="chat")
        await app.no_push(1.5)
        await j.stop()
        await app.stop()
        return seen

    seen = run(scenario())
    assert all(s == ["failing", "healthy"] for s in seen)
    assert read_store(p.store_file("romeo")) in (None, {}, [])
    assert "Disabling push notifications for identifier 'push.localhost<failing'" in p.log()


def test_only_the_failing_registration_is_removed(prosody_with):
    p = prosody_with(options={"push_max_errors": 2})
    romeo, juliet = p.add_user("romeo"), p.add_user("juliet")
    p.component = "push.localhost"

    async def scenario():
        good = await AppServer(p).start()
        c = await Client(romeo, p.c2s_port).start()
        assert iq_type(await c.enable("push.localhost", "good")) == "result"
        # a registration with an app server that does not exist: errors come from Prosody
        assert iq_type(await c.enable("nowhere.localhost", "bad")) == "result"
        await c.stop()
        stored = sorted(read_store(p.store_file("romeo")))
        j = await Client(juliet, p.c2s_port).start()
        for _ in range(3):
            j.send_message(mto=romeo, mbody="hi", mtype="chat")
            assert (await good.next_push()).node == "good"
            await asyncio.sleep(0.5)
        await j.stop()
        await good.stop()
        return stored

    stored = run(scenario())
    # Both were stored; the bad one went for its errors, the good one stayed.
    assert stored == ["nowhere.localhost<bad", "push.localhost<good"]
    assert list(read_store(p.store_file("romeo"))) == ["push.localhost<good"]
    log = p.log()
    assert "for identifier 'nowhere.localhost<bad': error count is now 1" in log
    assert "Disabling push notifications for identifier 'nowhere.localhost<bad' after 2 errors" in log
    assert "identifier 'push.localhost<good'" not in log
