//! The `<message/>` a Push 2.0 push sends to the push service.

use super::b64;
use super::decide::Wire;
use super::ece::encrypt;
use super::envelope::plaintext;
use super::settings::{Encrypted, Push2, Send, NS_PUSH2};
use crate::NS_CLIENT;
use minidom::Element;
use p256::SecretKey;
use rand_core::{CryptoRng, RngCore};

/// RFC 8291 payloads in a notification.
pub const NS_RFC8291: &str = "urn:xmpp:sce:rfc8291:0";

/// What a notification is made of besides the registration.
pub struct Parts<'a> {
    /// The host sending it.
    pub host: &'a str,
    /// The message's id (the push's, to match an error reply).
    pub id: &'a str,
    /// The push service's JID.
    pub service: &'a str,
    /// The message the push is about (`None`: nothing to forward).
    pub original: Option<Element>,
    /// Forward the message's content (`push2_forward_content`); else
    /// [`super::envelope::without_content`].
    pub content: bool,
}

fn text_el(name: &str, ns: &str, text: &str) -> Element {
    Element::builder(name, ns).append(text.to_owned()).build()
}

/// The notification for a push with this wire to a registration with
/// these settings. Each encrypted one has its own salt, one-time key and
/// padding, from `rng`; `jwt` gives its VAPID token and key (signed, or
/// reused: [`super::tokens`]), if it has a signing key.
pub fn message<R: RngCore + CryptoRng>(
    p: &Push2,
    wire: Wire,
    parts: Parts<'_>,
    rng: &mut R,
    jwt: &mut dyn FnMut(&Encrypted) -> Option<(String, String)>,
) -> Element {
    let mut n = Element::builder("notification", NS_PUSH2).build();
    n.append_child(text_el("client", NS_PUSH2, &p.client));
    n.append_child(text_el("priority", NS_PUSH2, wire.priority.as_str()));
    if wire.voip {
        n.append_child(Element::builder("voip", NS_PUSH2).build());
    }
    if let Some(Send::Encrypted(keys)) = p.matches.get(wire.send).map(|m| &m.send) {
        let original = match parts.content {
            true => parts.original,
            false => parts.original.map(super::envelope::without_content),
        };
        let plain = plaintext(original, &mut |b| rng.fill_bytes(b));
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let one_time = SecretKey::random(&mut *rng);
        let body = encrypt(&plain, &keys.keys, &salt, &one_time);
        let mut encrypted = Element::builder("encrypted", NS_RFC8291).build();
        encrypted.append_child(text_el("payload", NS_RFC8291, &b64::encode(&body)));
        n.append_child(encrypted);
        if let Some((token, key)) = jwt(keys) {
            n.append_child(
                Element::builder("jwt", NS_PUSH2)
                    .attr(minidom::rxml::xml_ncname!("key").into(), key)
                    .append(token)
                    .build(),
            );
        }
    }
    Element::builder("message", NS_CLIENT)
        .attr(minidom::rxml::xml_ncname!("to").into(), parts.service)
        .attr(minidom::rxml::xml_ncname!("from").into(), parts.host)
        .attr(minidom::rxml::xml_ncname!("id").into(), parts.id)
        .append(n)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push2::decide::Priority;
    use crate::push2::settings::{from_enable, tests::borogove_enable};
    use rand_core::OsRng;

    #[test]
    fn an_encrypted_call_notification() {
        let (service, p) = from_enable(&borogove_enable(""), ["r@example", "r@example/a"]).unwrap();
        let wire = Wire {
            priority: Priority::High,
            voip: true,
            send: 0,
        };
        let original: Element = "<message xmlns='jabber:client' from='romeo@montague.example/a'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>".parse().unwrap();
        let parts = Parts {
            host: "example",
            id: "p1",
            service: &service,
            original: Some(original),
            content: true,
        };
        let mut sign = |k: &Encrypted| {
            let signer = k.signer.as_ref()?;
            Some(crate::push2::vapid::jwt(
                signer,
                &k.jwt_claims,
                "https://example",
                0.0,
            ))
        };
        let m = message(&p, wire, parts, &mut OsRng, &mut sign);
        let xml = String::from(&m);
        assert!(xml.starts_with("<message xmlns='jabber:client'"));
        let n = m.get_child("notification", NS_PUSH2).unwrap();
        assert_eq!(
            n.get_child("client", NS_PUSH2).unwrap().text(),
            "https://push.example/ep/1"
        );
        assert_eq!(n.get_child("priority", NS_PUSH2).unwrap().text(), "high");
        assert!(n.get_child("voip", NS_PUSH2).is_some());
        let payload = n
            .get_child("encrypted", NS_RFC8291)
            .unwrap()
            .get_child("payload", NS_RFC8291)
            .unwrap()
            .text();
        let body = b64::decode(&payload).unwrap();
        assert!(body.len() > 86 + 16 && body.len() <= 86 + 2847 + 1 + 16);
        assert!(n.get_child("jwt", NS_PUSH2).unwrap().attr("key").is_some());
    }
}
