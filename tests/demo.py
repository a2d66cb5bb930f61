"""make demo: a local Prosody with mod_cloud_notify, a demo push app server
(an XMPP component printing every notification it receives) and a scripted
client that enables push, goes offline and is sent a message.

    --keep          leave Prosody and the app server running until Ctrl-C
    --web           (make demo-web) Prosody with both modules and its
                    WebSocket, the app server, and on http://127.0.0.1:PORT/
                    Converse.js (log in as romeo and juliet, password
                    'secret') and /pushes, a live list of every push the app
                    server receives; runs until Ctrl-C
    --port N        the web port (default 8080)
    --prosody 13    Prosody 13.0.x instead of 0.12.3
    --with-body, --with-sender
                    turn on push_notification_with_body / _with_sender, to
                    see what they let out (the pushes page marks it)
"""

import argparse
import asyncio
import signal
import sys
import xml.dom.minidom
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "e2e"))
from harness import PUBLISH_OPTIONS, AppServer, Client, Prosody, run  # noqa: E402

MUC = "conference.localhost"
LOBBY = f"lobby@{MUC}"
APP = "push.localhost"
# What the demo's Converse enables: one app server, one node, one secret.
CONVERSE_PUSH = {"jid": APP, "node": "converse-demo", "secret": "converse-demo-secret"}


def pretty(stanza):
    text = str(stanza)
    return xml.dom.minidom.parseString(text).toprettyxml(indent="  ").split("\n", 1)[1].strip()


class PrintingAppServer(AppServer):
    """Prints each push; with `web`, shows it on the pushes page too."""

    def __init__(self, prosody, web=None, quiet=False):
        super().__init__(prosody)
        self.web = web
        self.quiet = quiet

    def _on_publish(self, iq):
        if not self.quiet:
            print("\n[app server] received a push notification:")
            print(pretty(iq), flush=True)
        super()._on_publish(iq)
        if self.web is not None:
            self.web.publish(self.received[-1])


async def scenario(prosody, keep):
    app = await PrintingAppServer(prosody).start()
    print(f"[app server] {prosody.component} connected as a component")
    romeo = await Client("romeo@localhost", prosody.c2s_port).start()
    print("[romeo] connected; enabling push with app server push.localhost, node 'romeo-phone'")
    await romeo.enable("push.localhost", "romeo-phone", {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "app-token"})
    await romeo.stop()
    print("[romeo] went offline (phone asleep)")
    juliet = await Client("juliet@localhost", prosody.c2s_port).start()
    print("[juliet] sends romeo: 'Wherefore art thou, Romeo?'")
    juliet.send_message(mto="romeo@localhost", mbody="Wherefore art thou, Romeo?", mtype="chat")
    push = await app.next_push()
    print(f"\n[demo] the app server got the push for node '{push.node}': {push.summary}")
    print("[demo] note: no body and no sender left the server (privacy by default)")
    await juliet.stop()
    if keep:
        print(f"\n[demo] Prosody listens on 127.0.0.1:{prosody.c2s_port} (users romeo, juliet; password 'secret').")
        print("[demo] Ctrl-C to stop.")
        while True:
            await asyncio.sleep(3600)
    await app.stop()


def web_prosody(version="0.12", with_body=False, with_sender=False):
    """Prosody for the web demo: both push modules, the WebSocket on its
    HTTP port, a MUC, users romeo and juliet. A closed tab's session
    hibernates for 60 s, then ends (and room mentions go through the MUC)."""
    options = {
        "http_default_host": "localhost",
        "smacks_hibernation_time": 60,
        "push_max_hibernation_timeout": 60,
        "push_notification_with_body": with_body,
        "push_notification_with_sender": with_sender,
    }
    p = Prosody(version=version, modules=("cloud_notify", "websocket"), muc=MUC, options=options,
                muc_options={"muc_room_default_persistent": True})  # the lobby outlives its last occupant
    for user in ("romeo", "juliet"):
        p.add_user(user)
    return p


def web_server(prosody, port=0):
    """Converse (as a person would set it up) and the pushes page."""
    from web import WebServer, converse_settings

    settings = converse_settings(
        prosody,
        push_app_servers=[CONVERSE_PUSH],
        enable_muc_push=True,
        auto_join_rooms=[LOBBY],
        auto_register_muc_nickname=True,
        muc_nickname_from_jid=True,
        auto_reconnect=True,
    )
    return WebServer(settings, port=port)


async def web_scenario(prosody, web):
    app = await PrintingAppServer(prosody, web).start()
    print(f"[app server] {app.boundjid} connected as a component")
    print(f"""
[demo] Converse.js:  {web.url}
[demo] Pushes:       {web.url}pushes
[demo] Log in as romeo@localhost (password 'secret'), and in a private window as
[demo] juliet@localhost (password 'secret'). Both join {LOBBY}.
[demo] Close romeo's tab, then as juliet send romeo a message (or, once his
[demo] session has ended a minute later, mention @romeo in the lobby): the
[demo] pushes page shows what left the server. Ctrl-C to stop.""", flush=True)
    while True:
        await asyncio.sleep(3600)


def stop_on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--web", action="store_true")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--prosody", choices=("0.12", "13"), default="0.12")
    parser.add_argument("--with-body", action="store_true")
    parser.add_argument("--with-sender", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # as Ctrl-C: stop Prosody too
    if args.web:
        prosody = web_prosody(args.prosody, args.with_body, args.with_sender)
    else:
        prosody = Prosody(version=args.prosody)
        prosody.add_user("romeo")
        prosody.add_user("juliet")
    print(f"[demo] starting Prosody {args.prosody} with dist/mod_cloud_notify (config in {prosody.dir})")
    prosody.start()
    web = None
    try:
        if args.web:
            web = web_server(prosody, args.port).start()
            run(web_scenario(prosody, web), timeout=None)
        else:
            run(scenario(prosody, args.keep), timeout=None if args.keep else 60)
    except KeyboardInterrupt:
        pass
    finally:
        if web is not None:
            web.stop()
        prosody.cleanup()
    print("[demo] done")


if __name__ == "__main__":
    main()
