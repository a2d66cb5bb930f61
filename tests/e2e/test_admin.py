"""For admins: switching to and from the reference module, storage
backends, metrics, admin commands, account deletion, persistent error
counts, per-host configuration, packaging."""

import asyncio
import re
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from conftest import make_users
from harness import (DIST, MODULES, PUBLISH_OPTIONS, ROOT, AppServer, Client, iq_type,
                     message_pushes, run)
from store import read_store
from test_smacks import pushes_within

REFERENCE_0_12 = "/usr/lib/prosody/modules/mod_cloud_notify"


def options_form(secret):
    return {"FORM_TYPE": PUBLISH_OPTIONS, "secret": secret}


async def enable(p, user, node, options=None, resource=None):
    # (a device of its own per node: one device enabling again replaces its registration)
    c = await Client(user, p.c2s_port, resource=resource or f"device-{node}").start()
    reply = await c.enable("push.localhost", node, options)
    await c.stop()
    assert iq_type(reply) == "result"


async def offline_pushes(p, sender, to, n, body="hi"):
    app = await AppServer(p).start()
    j = await Client(sender, p.c2s_port).start()
    pushes = await message_pushes(app, j, to, n, body=body)
    await j.stop()
    await app.stop()
    return pushes


def loaded_from(p, directory, timeout=15):
    """Whether our module logs that it loaded from `directory`. The harness
    waits for that line only for the dist/ build: from another directory,
    the ports can be up a moment before the module has loaded."""
    deadline = time.monotonic() + timeout
    while f"from {directory}/mod_cloud_notify)" not in p.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def reference_plugin_paths(version, tmp_path):
    """plugin_paths that make `cloud_notify` the reference module: the
    prosody-modules copy on 0.12, Prosody's own core module on 13."""
    if version == "13":
        return [str(MODULES)]
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "mod_cloud_notify").symlink_to(REFERENCE_0_12)
    return [str(tmp_path / "reference"), str(MODULES)]


def ours_loaded(p):
    return p.log().count("Module loaded (core ")


def test_switching_from_and_to_the_reference(prosody_with, version, tmp_path):
    reference = reference_plugin_paths(version, tmp_path)
    p = prosody_with(plugin_paths=reference)
    romeo, juliet = make_users(p)("romeo", "juliet")
    assert ours_loaded(p) == 0
    # 1. Enabled under the reference module.
    run(enable(p, romeo, "from-reference", options_form("r")))
    # 2. Swap ours in: the registration is read, node and options intact.
    p.plugin_paths = [str(DIST), str(MODULES)]
    p.restart()
    assert ours_loaded(p) == 1
    [push] = run(offline_pushes(p, juliet, romeo, 1))
    assert (push.node, push.options) == ("from-reference", options_form("r"))
    run(enable(p, romeo, "from-ours", options_form("o"), resource="tablet"))
    # 3. And back: the reference reads what ours wrote.
    p.plugin_paths = reference
    p.restart()
    assert ours_loaded(p) == 1
    pushes = run(offline_pushes(p, juliet, romeo, 2))
    assert sorted((x.node, x.options["secret"]) for x in pushes) == [
        ("from-ours", "o"), ("from-reference", "r")]


@pytest.mark.parametrize("backend", ["internal", "sqlite", "postgres"])
def test_storage_backends(prosody_with, request, backend):
    # (the unread counts record is written each second)
    options = {"push_registration_cache_size": 2, "push_counts_write_interval": 1}
    if backend == "sqlite":
        options.update(storage="sql", sql={"driver": "SQLite3", "database": "prosody.sqlite"})
    elif backend == "postgres":
        options.update(storage="sql", sql=request.getfixturevalue("postgres")())
    p = prosody_with(options=options)
    romeo, mercutio, benvolio, juliet = make_users(p)("romeo", "mercutio", "benvolio", "juliet")
    for user in (romeo, mercutio, benvolio):
        run(enable(p, user, "n-" + user.split("@")[0], options_form("s")))
    p.restart()

    def loads(user):
        return p.log().count(f"Loading push registrations of '{user.split('@')[0]}'")

    before = loads(romeo)
    pushes = run(offline_pushes(p, juliet, romeo, 1))
    pushes += run(offline_pushes(p, juliet, romeo, 1))
    pushes += run(offline_pushes(p, juliet, romeo, 1))
    assert [(x.node, x.options) for x in pushes] == [("n-" + romeo.split("@")[0], options_form("s"))] * 3
    # Cached: three messages, one store read.
    assert loads(romeo) - before == 1
    # Bounded: two other users push romeo out of a cache of two (juliet,
    # the sender, is in it too). His unread count is kept meanwhile, and
    # in the host's one counts record (written each second here), never in
    # his registrations' record.
    time.sleep(2.5)
    name = romeo.split("@")[0]
    if backend == "internal":
        record = read_store(p.store_file(name))[f"push.localhost<n-{name}"]
        assert "message_counts" not in record
        stored = read_store(p.dir / "data" / "localhost" / "cloud_notify_counts.dat")
        assert stored["parts"] == 1
        counts = stored["part1"]
        # (chats as digests of their JIDs: no list of contacts in the store)
        assert counts.startswith("cloud_notify unread counts 1\n") and f"\n{name}\t" in counts
    run(offline_pushes(p, juliet, mercutio, 1))
    run(offline_pushes(p, juliet, benvolio, 1))
    [again] = run(offline_pushes(p, juliet, romeo, 1))
    assert loads(romeo) - before == 2
    assert again.summary["message-count"] == "4"
    # And across a restart: the counts record is read back.
    p.restart()
    [after] = run(offline_pushes(p, juliet, romeo, 1))
    assert after.summary["message-count"] == "5"


def scrape(p):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.http_port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name, **labels):
    """The value of the sample `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_metrics(prosody_with):
    p = prosody_with(modules=("cloud_notify", "cloud_notify_events_probe", "http_openmetrics"),
                     options={"statistics": "internal", "statistics_interval": "manual",
                              "push_max_errors": 2})
    romeo, juliet = make_users(p)("romeo", "juliet")
    for node in ("a", "b", "blocked"):
        run(enable(p, romeo, node))
    prefix = "prosody_mod_cloud_notify__"
    before = scrape(p)

    async def scenario():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()
        await message_pushes(app, j, romeo, 2)  # a, b; "blocked" is blocked
        await asyncio.sleep(0.3)
        ok = scrape(p)
        app.mode = ("error", "cancel", "item-not-found")
        await message_pushes(app, j, romeo, 2)
        await message_pushes(app, j, romeo, 2)  # second error each: auto-disabled
        await asyncio.sleep(0.5)
        await j.stop()
        await app.stop()
        return ok, scrape(p)

    ok, after = run(scenario())
    assert metric(before, prefix + "registrations_loaded", host="localhost") == 3
    assert metric(ok, prefix + "pushes_total", host="localhost", kind="offline", importance="important") == 2
    assert metric(ok, prefix + "blocked_total", kind="offline") == 1
    assert metric(ok, prefix + "response_time_seconds_count") == 2
    assert metric(ok, prefix + "outstanding") == 0
    assert metric(after, prefix + "pushes_total", kind="offline") == 6
    assert metric(after, prefix + "app_server_errors_total", type="cancel") == 4
    assert metric(after, prefix + "auto_disabled_total") == 2
    assert metric(after, prefix + "registrations_loaded") == 1  # only "blocked" is left
    # Romeo was known to have no registration when he first enabled (the
    # store's users are listed at load): nothing was read for him at all.
    assert metric(after, prefix + "store_reads_total") == 0


def test_admin_shell_commands(prosody_with):
    p = prosody_with(modules=("cloud_notify", "admin_shell"))
    romeo = make_users(p)("romeo")
    run(enable(p, romeo, "a", resource="phone"))
    run(enable(p, romeo, "b", resource="tablet"))

    def shell(*args):
        r = p.ctl("shell", "push", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    listed = shell("list", romeo)
    assert "push.localhost<a" in listed and "node=a" in listed and "client=phone" in listed
    assert "errors=0" in listed and "age=" in listed and "2 registration(s)" in listed

    async def ping():
        app = await AppServer(p).start()
        out = await asyncio.to_thread(shell, "ping", romeo)
        pushes = await pushes_within(app, 1.5)
        await app.stop()
        return out, pushes

    out, pushes = run(ping())
    assert sorted(x.node for x in pushes) == ["a", "b"] and not any(x.important for x in pushes)
    assert "1 registration(s) removed" in shell("remove", romeo, "push.localhost<a")
    listed = shell("list", romeo)
    assert "push.localhost<a" not in listed and "1 registration(s)" in listed
    assert "1 registration(s) removed" in shell("remove", romeo)
    assert "0 registration(s)" in shell("list", romeo)


def test_per_app_server_metrics_warnings_and_view(prosody_with):
    """Issue 27 §5: per app server, pushes sent and what came of them
    (results, wait, other errors by type and condition, no answer, route
    failures), the round-trip time; a warning once a minute per app server
    that leaves pushes unanswered; `push:list(host)` shows it. fpush (Monal's
    app server) answers a dead token with cancel/policy-violation and a
    malformed publish with wait/bad-request: both are visible by name."""
    p = prosody_with(modules=("cloud_notify", "http_openmetrics", "admin_shell"),
                     options={"statistics": "internal", "statistics_interval": "manual",
                              "push_response_timeout": 2, "push_retry_delays": [30]},
                     components=["other.localhost"])
    romeo, juliet = make_users(p)("romeo", "juliet")
    prefix = "prosody_mod_cloud_notify__service_"

    async def scenario():
        app = await AppServer(p).start()
        silent = await AppServer(p, jid="other.localhost", mode="silent").start()
        c = await Client(romeo, p.c2s_port, resource="phone").start()
        assert iq_type(await c.enable("push.localhost", "fpush-token")) == "result"
        assert iq_type(await c.enable("other.localhost", "never-answered")) == "result"
        await c.stop()
        j = await Client(juliet, p.c2s_port).start()
        for mode in ("result", ("error", "cancel", "policy-violation"), ("error", "wait", "bad-request")):
            app.mode = mode
            await message_pushes(app, j, romeo, 1, quiet=0.3)
        await asyncio.sleep(5)  # (the silent app server's pushes expire: 2 s, swept every 2 s)
        await j.stop()
        await silent.stop()
        await app.stop()
        return scrape(p)

    metrics = run(scenario())
    here = {"service": "push.localhost"}
    assert metric(metrics, prefix + "pushes_total", **here) == 3
    assert metric(metrics, prefix + "answers_total", result="delivered", **here) == 1
    assert metric(metrics, prefix + "answers_total", result="errors", **here) == 1
    assert metric(metrics, prefix + "answers_total", result="wait", **here) == 1
    assert metric(metrics, prefix + "errors_total", type="cancel", condition="policy-violation", **here) == 1
    assert metric(metrics, prefix + "errors_total", type="wait", condition="bad-request", **here) == 1
    assert metric(metrics, prefix + "response_time_seconds", **here) > 0
    assert metric(metrics, prefix + "pushes_total", service="other.localhost") == 3
    assert metric(metrics, prefix + "answers_total", service="other.localhost", result="timeouts") == 3
    assert p.log().count("App server other.localhost left") == 1  # (once a minute)
    r = p.ctl("shell", "push", "list", "localhost")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {line.split("\t")[0]: line for line in r.stdout.splitlines() if "\t" in line}
    assert "sent=3 delivered=1 wait=1 errors=1" in lines["push.localhost"]
    assert "timeouts=3" in lines["other.localhost"] and "registrations_loaded=1" in lines["other.localhost"]
    assert "2 app server(s)" in r.stdout


def test_account_deletion_removes_registrations_and_error_counts(prosody_with):
    p = prosody_with(modules=("cloud_notify", "register"),
                     options={"push_max_errors": 5, "push_counts_write_interval": 1})
    romeo, juliet = make_users(p)("romeo", "juliet")
    run(enable(p, romeo, "a"))

    async def scenario():
        app = await AppServer(p, mode=("error", "cancel", "item-not-found")).start()
        j = await Client(juliet, p.c2s_port).start()
        await message_pushes(app, j, romeo, 1)
        await asyncio.sleep(2.5)  # (written back with the counts)
        counted = read_store(p.store_file(romeo.split("@")[0]))
        c = await Client(romeo, p.c2s_port).start()
        reply = await c.iq_set("<query xmlns='jabber:iq:register'><remove/></query>")
        await asyncio.sleep(0.5)
        deleted_store = p.store_file(romeo.split("@")[0]).exists()
        # The name is taken again: the new account inherits nothing. The
        # store is Prosody's to purge; what this shows is the module's own
        # part: the registration it held in memory (pushed to just above)
        # is gone too, or this message would be pushed from the cache.
        p.add_user(romeo.split("@")[0])
        j.send_message(mto=romeo, mbody="anyone?", mtype="chat")
        await app.no_push(1.5)
        await j.stop()
        await app.stop()
        return counted, reply, deleted_store

    counted, reply, store_left = run(scenario())
    assert counted["push.localhost<a"]["error_count"] == 1
    assert iq_type(reply) == "result"
    assert not store_left
    # The module's user-deleted handler ran (it forgets the user in memory
    # and clears the store for backends that keep data).
    assert f"Push registrations of deleted user '{romeo.split('@')[0]}' removed" in p.log()


def test_error_counts_survive_a_restart(prosody_with):
    p = prosody_with(options={"push_max_errors": 2})
    romeo, juliet = make_users(p)("romeo", "juliet")
    run(enable(p, romeo, "a"))

    async def one_failed_push():
        app = await AppServer(p, mode=("error", "cancel", "item-not-found")).start()
        j = await Client(juliet, p.c2s_port).start()
        await message_pushes(app, j, romeo, 1)
        await asyncio.sleep(0.3)
        await j.stop()
        await app.stop()

    run(one_failed_push())
    # (written back with the unread counts, at the latest when Prosody stops)
    p.restart()
    assert read_store(p.store_file(romeo.split("@")[0]))["push.localhost<a"]["error_count"] == 1
    run(one_failed_push())  # the second error in a row, across the restart
    assert "Disabling push notifications for identifier 'push.localhost<a' after 2 errors" in p.log()
    assert "push.localhost<a" not in (read_store(p.store_file(romeo.split("@")[0])) or {})


def test_virtual_hosts_are_separate_and_options_apply_per_host(prosody_with):
    p = prosody_with(hosts=("localhost", "other.localhost"), host_options={
        "other.localhost": {"push_notification_with_body": True, "push_max_devices": 1}})
    romeo, juliet = make_users(p)("romeo", "juliet")
    name = romeo.split("@")[0]
    other = p.add_user(name, "other.localhost")
    for node in ("a", "b"):
        run(enable(p, romeo, node))
    for node in ("c", "d"):
        run(enable(p, other, node))
    here = run(offline_pushes(p, juliet, romeo, 2, body="plain secret"))
    there = run(offline_pushes(p, juliet, other, 1, body="visible text"))
    assert sorted(x.node for x in here) == ["a", "b"]
    assert {x.sender for x in here} == {"localhost"}
    assert all(x.summary["last-message-body"] == "New Message!" for x in here)
    assert [(x.node, x.sender, x.summary["last-message-body"]) for x in there] == [
        ("d", "other.localhost", "visible text")]
    assert sorted(read_store(p.store_file(name))) == ["push.localhost<a", "push.localhost<b"]
    assert sorted(read_store(p.store_file(name, host="other.localhost"))) == ["push.localhost<d"]


def test_luarocks_make_installs_where_prosody_finds_it(prosody_with, tmp_path):
    tree = tmp_path / "tree"
    [rockspec] = ROOT.glob("*.rockspec")
    r = subprocess.run(["luarocks", "--lua-version=5.4", "--tree", str(tree), "make", str(rockspec)],
                       cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = tree / "share/lua/5.4"
    assert (installed / "mod_cloud_notify/cloud_notify.so").exists()
    assert (installed / "mod_muc_cloud_notify/mod_muc_cloud_notify.lua").exists()
    p = prosody_with(plugin_paths=[str(installed), str(MODULES)])
    assert loaded_from(p, installed), p.log()
    romeo, juliet = make_users(p)("romeo", "juliet")
    run(enable(p, romeo, "n"))
    [push] = run(offline_pushes(p, juliet, romeo, 1))
    assert push.node == "n"


def test_make_install_honours_prefix_and_destdir(prosody_with, tmp_path):
    r = subprocess.run(["make", "install", f"DESTDIR={tmp_path}", "PREFIX=/opt/xmpp"], cwd=ROOT,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    moddir = tmp_path / "opt/xmpp/lib/prosody/modules"
    for module in ("cloud_notify", "muc_cloud_notify"):
        assert sorted(x.name for x in (moddir / f"mod_{module}").iterdir()) == [
            "cloud_notify.lib.lua", "cloud_notify.so", f"mod_{module}.lua"]
    p = prosody_with(plugin_paths=[str(moddir), str(MODULES)])
    assert loaded_from(p, moddir), p.log()


async def _heaps(client):
    """The Lua heap (KiB, after a full collection) and the bytes our Rust
    side holds (its allocator's count), from bench/modules' probe."""
    iq = client.make_iq_get(ito="localhost")
    iq.append(ET.fromstring("<stats xmlns='urn:example:bench'/>"))
    stats = (await iq.send(timeout=10)).xml.find("{urn:example:bench}stats")
    return float(stats.get("heap")), int(stats.get("core"))


def test_reloading_frees_the_module_it_replaces(prosody_with):
    """An admin reloads the module (after an upgrade, say) a few times:
    nothing of the instances it replaced stays. Their timers stop with
    them, so their cores (registrations, counts) are freed at once; left
    to Prosody, an unloaded module's timer is dropped only when it next
    fires (up to a minute later), and every reload held another core."""
    p = prosody_with(modules=("bench_probe", "cloud_notify", "admin_shell"),
                     plugin_paths=[str(DIST), str(MODULES), str(ROOT / "bench" / "modules")])
    romeo, juliet = make_users(p)("romeo", "juliet")
    run(enable(p, romeo, "a"))

    async def scenario():
        app = await AppServer(p).start()
        j = await Client(juliet, p.c2s_port).start()

        async def reload_and_push(times):
            for _ in range(times):
                r = await asyncio.to_thread(p.ctl, "shell", "module", "reload", "cloud_notify", "localhost")
                assert r.returncode == 0 and "rror" not in r.stdout, r.stdout + r.stderr
            # (the reloaded module pushes as before)
            assert len(await message_pushes(app, j, romeo, 1)) == 1

        await reload_and_push(1)  # (what the shell's first use loads is not the module's)
        before = await _heaps(j)
        await reload_and_push(4)
        after = await _heaps(j)
        await j.stop()
        await app.stop()
        return before, after

    (lua_before, rust_before), (lua_after, rust_after) = run(scenario(), timeout=120)
    # (each instance held about 100 KiB of Lua heap and 4 KB of Rust's here)
    assert lua_after < lua_before + 100, (lua_before, lua_after)
    assert rust_after < rust_before + 8_000, (rust_before, rust_after)
