"""Real end-to-end encryption: slixmpp-omemo (PyPI) on both sides, with
real keys published over PEP. A message encrypted to an offline user is
pushed as important with the placeholder body, and nothing of the
ciphertext, the key material or the fallback body leaves the server, with
push_notification_with_body on too. The recipient then decrypts it."""

import asyncio
import sys
import xml.etree.ElementTree as ET
from typing import FrozenSet, Optional

from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType
from slixmpp.jid import JID
from slixmpp.plugins import register_plugin
from slixmpp_omemo import XEP_0384

from conftest import make_users
from harness import PUBLISH_OPTIONS, AppServer, Client, iq_type, run

NS_OMEMO_LEGACY = "eu.siacs.conversations.axolotl"
BODY = "Wherefore art thou, Romeo?"


class MemoryStorage(Storage):
    """OMEMO's keys and sessions, in memory, kept across reconnects."""

    def __init__(self):
        super().__init__()
        self.data = {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class Omemo(XEP_0384):
    """slixmpp-omemo with blind trust before verification (what clients do
    by default), its storage given in the plugin config."""

    default_config = {"fallback_message": "This message is OMEMO encrypted.", "memory": None}

    @property
    def storage(self) -> Storage:
        return self.memory

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: FrozenSet[DeviceInformation],
                                       identifier: Optional[str]) -> None:
        pass

    async def _prompt_manual_trust(self, manually_trusted: FrozenSet[DeviceInformation],
                                   identifier: Optional[str]) -> None:
        raise AssertionError(f"manual trust asked for {manually_trusted}")


register_plugin(Omemo)


async def omemo_client(prosody, jid, storage, resource):
    """A client whose OMEMO device has published its keys."""
    c = Client(jid, prosody.c2s_port, resource=resource)
    c.register_plugin("xep_0384", {"memory": storage}, module=sys.modules[__name__])
    ready = asyncio.Event()
    c.add_event_handler("omemo_initialized", lambda _e: ready.set())
    await c.start()
    await asyncio.wait_for(ready.wait(), 90)
    return c


def omemo_secrets(stanza_xml):
    """Every ciphertext, key and IV of an encrypted message."""
    root = ET.fromstring(stanza_xml)
    tags = {f"{{{NS_OMEMO_LEGACY}}}{name}" for name in ("key", "iv", "payload")}
    return [e.text for e in root.iter() if e.tag in tags and e.text]


async def encrypted_to_offline_user(p, then_plain=False):
    """Romeo publishes his keys, enables push and leaves; Juliet encrypts a
    message to him (and, with `then_plain`, sends one in the clear).
    Returns the encrypted stanza, the pushes, and what Romeo decrypts when
    he is back."""
    romeo, juliet = make_users(p)("romeo", "juliet")
    app = await AppServer(p).start()
    romeo_keys = MemoryStorage()
    r = await omemo_client(p, romeo, romeo_keys, "phone")
    assert iq_type(await r.enable("push.localhost", "omemo-phone",
                                  {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s"})) == "result"
    await r.stop()
    j = await omemo_client(p, juliet, MemoryStorage(), "laptop")
    msg = j.make_message(mto=JID(romeo), mtype="chat", mbody=BODY)
    encrypted, errors = await j["xep_0384"].encrypt_message(msg, JID(romeo))
    assert not errors and encrypted is not None, errors
    sent = str(encrypted)
    encrypted.send()
    pushes = [await app.next_push(timeout=60)]
    if then_plain:
        j.send_message(mto=JID(romeo), mtype="chat", mbody="In the clear")
        pushes.append(await app.next_push(timeout=60))
    await app.no_push(2)
    await j.stop()
    # Romeo is back: the message was really encrypted to his device.
    r = await omemo_client(p, romeo, romeo_keys, "phone")
    while True:
        m = await asyncio.wait_for(r.messages.get(), 60)
        if r["xep_0384"].is_encrypted(m):
            break
    decrypted, _device = await r["xep_0384"].decrypt_message(m)
    await r.stop()
    await app.stop()
    return sent, pushes, decrypted["body"]


def assert_nothing_encrypted_leaks(sent, push):
    secrets = omemo_secrets(sent)
    assert len(secrets) >= 3, sent  # a key, an IV and a payload at least
    text = ET.tostring(push.xml, encoding="unicode")
    for s in secrets:
        assert s not in text
    assert NS_OMEMO_LEGACY not in text
    assert "OMEMO encrypted" not in text and BODY not in text
    assert push.important
    assert push.summary["last-message-body"] == "New Message!"


def test_omemo_message_to_an_offline_user(prosody_with):
    p = prosody_with(modules=("cloud_notify", "pep"))
    sent, (push,), decrypted = run(encrypted_to_offline_user(p), timeout=300)
    assert f"<encrypted xmlns=\"{NS_OMEMO_LEGACY}\">" in sent and BODY not in sent
    assert_nothing_encrypted_leaks(sent, push)
    assert "last-message-sender" not in push.summary
    assert push.node == "omemo-phone" and push.options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "s"}
    assert decrypted == BODY


def test_omemo_message_with_body_opted_in_sends_only_the_placeholder(prosody_with):
    # With push_notification_with_body, a plain message's body is sent; an
    # encrypted one's <body/> is only the sender's client's fallback text,
    # not what the sender wrote: the placeholder goes instead.
    p = prosody_with(modules=("cloud_notify", "pep"), options={"push_notification_with_body": True})
    sent, (push, plain), decrypted = run(encrypted_to_offline_user(p, then_plain=True), timeout=300)
    assert "This message is OMEMO encrypted." in sent  # the fallback body is there
    assert_nothing_encrypted_leaks(sent, push)
    assert decrypted == BODY
    assert plain.summary["last-message-body"] == "In the clear"  # the option is on
