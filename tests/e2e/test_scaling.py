"""Several Prosody instances on one PostgreSQL database, each serving its own
VirtualHosts: how admins split a server that outgrew one machine (the
README's Scaling section)."""

from harness import AppServer, Client, iq_type, message_pushes, run


async def enable(p, user, node):
    # (a device per node: one device enabling again replaces its own)
    c = await Client(user, p.c2s_port, resource=f"device-{node}").start()
    reply = await c.enable("push.localhost", node)
    await c.stop()
    assert iq_type(reply) == "result"


async def disable(p, user, node):
    c = await Client(user, p.c2s_port).start()
    reply = await c.disable("push.localhost", node)
    await c.stop()
    assert iq_type(reply) == "result"


async def pushes(p, sender, to, n):
    app = await AppServer(p).start()
    j = await Client(sender, p.c2s_port).start()
    got = await message_pushes(app, j, to, n)
    await j.stop()
    await app.stop()
    return got


def rows(postgres_server, sql):
    return sorted(tuple(line.split("|")) for line in postgres_server.psql(
        sql["database"],
        "SELECT \"host\", \"user\", \"key\" FROM \"prosody\" WHERE \"store\" = 'cloud_notify' "
        "ORDER BY 1, 2, 3;").split())


def test_two_instances_on_one_database(prosody_with, postgres, postgres_server):
    sql = postgres()
    # Instance A serves a.localhost, instance B b.localhost; one database.
    a = prosody_with(hosts=("a.localhost",), options={"storage": "sql", "sql": sql})
    b = prosody_with(hosts=("b.localhost",), options={"storage": "sql", "sql": sql})
    # The same user name on both hosts: two accounts, two sets of registrations.
    [romeo_a, juliet_a] = [a.add_user(n, "a.localhost") for n in ("romeo", "juliet")]
    [romeo_b, juliet_b] = [b.add_user(n, "b.localhost") for n in ("romeo", "juliet")]
    run(enable(a, romeo_a, "node-a"))
    run(enable(b, romeo_b, "node-b1"))
    run(enable(b, romeo_b, "node-b2"))
    assert rows(postgres_server, sql) == [
        ("a.localhost", "romeo", "push.localhost<node-a"),
        ("b.localhost", "romeo", "push.localhost<node-b1"),
        ("b.localhost", "romeo", "push.localhost<node-b2"),
    ]
    # Each instance pushes its own host's registrations, and only those.
    assert [x.node for x in run(pushes(a, juliet_a, romeo_a, 1))] == ["node-a"]
    assert sorted(x.node for x in run(pushes(b, juliet_b, romeo_b, 2))) == ["node-b1", "node-b2"]
    # A disable on one instance leaves the other host's registrations alone.
    run(disable(b, romeo_b, "node-b1"))
    assert [x.node for x in run(pushes(a, juliet_a, romeo_a, 1))] == ["node-a"]
    assert [x.node for x in run(pushes(b, juliet_b, romeo_b, 1))] == ["node-b2"]
    # Restarts read back what each wrote (the caches start empty).
    a.restart()
    b.restart()
    assert [x.node for x in run(pushes(a, juliet_a, romeo_a, 1))] == ["node-a"]
    assert [x.node for x in run(pushes(b, juliet_b, romeo_b, 1))] == ["node-b2"]
    assert rows(postgres_server, sql) == [
        ("a.localhost", "romeo", "push.localhost<node-a"),
        ("b.localhost", "romeo", "push.localhost<node-b2"),
    ]
    # And users and messages of one host never reach the other instance's log.
    assert "b.localhost" not in a.log() and "a.localhost" not in b.log()
