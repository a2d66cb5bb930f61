"""make demo: a local Prosody with mod_cloud_notify, a demo push app server
(an XMPP component printing every notification it receives) and a scripted
client that enables push, goes offline and is sent a message.

    --keep   leave Prosody and the app server running until Ctrl-C
"""

import asyncio
import sys
import xml.dom.minidom
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "e2e"))
from harness import PUBLISH_OPTIONS, AppServer, Client, Prosody, run  # noqa: E402


def pretty(stanza):
    text = str(stanza)
    return xml.dom.minidom.parseString(text).toprettyxml(indent="  ").split("\n", 1)[1].strip()


class PrintingAppServer(AppServer):
    def _on_publish(self, iq):
        print("\n[app server] received a push notification:")
        print(pretty(iq))
        super()._on_publish(iq)


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


def main():
    keep = "--keep" in sys.argv
    prosody = Prosody()
    prosody.add_user("romeo")
    prosody.add_user("juliet")
    print(f"[demo] starting Prosody 0.12 with dist/mod_cloud_notify (config in {prosody.dir})")
    prosody.start()
    try:
        run(scenario(prosody, keep), timeout=None if keep else 60)
    except KeyboardInterrupt:
        pass
    finally:
        prosody.cleanup()
    print("[demo] done")


if __name__ == "__main__":
    main()
