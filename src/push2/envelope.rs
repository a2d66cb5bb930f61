//! The plaintext of an encrypted Push 2.0 notification: the message,
//! forwarded (XEP-0297) inside an XEP-0420 envelope, made small enough for
//! Web Push, then padded.

use crate::facts::{
    NS_JINGLE_MESSAGE, NS_JINGLE_MESSAGE_1, NS_OMEMO, NS_OMEMO_2, NS_OMEMO_LEGACY, NS_OX,
    NS_PGP_LEGACY, NS_REACTIONS, NS_REPLY, NS_STANZA_ID,
};
use crate::NS_CLIENT;
use minidom::{Element, Node};

/// XEP-0420 Stanza Content Encryption.
pub const NS_SCE: &str = "urn:xmpp:sce:1";
/// XEP-0297 Stanza Forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// The largest envelope (bytes): what every Web Push service takes once
/// encrypted and base64-encoded by the push service (web-push-libs'
/// measure, as `mod_push2` uses it).
pub const MAX_ENVELOPE: usize = 2847;
/// Appended to a truncated body.
pub const ELLIPSIS: &str = "…";

fn serialized(e: &Element) -> String {
    String::from(e)
}

/// Keeps only the element children `keep` accepts (text between them
/// goes too: a message's own text nodes are whitespace).
fn retain(msg: &mut Element, keep: impl Fn(&Element) -> bool) {
    let nodes = msg.take_nodes();
    for node in nodes {
        if let Node::Element(e) = node {
            if keep(&e) {
                msg.append_child(e);
            }
        }
    }
}

/// What a phone needs to show the message and find it: its body, its
/// archive id, what carries encrypted or call content, a reply or
/// reaction, a room invitation, a file link.
fn useful(e: &Element) -> bool {
    let ns = e.ns();
    matches!(
        ns.as_str(),
        NS_CLIENT
            | NS_STANZA_ID
            | NS_OMEMO
            | NS_OMEMO_2
            | NS_OMEMO_LEGACY
            | NS_PGP_LEGACY
            | NS_OX
            | NS_JINGLE_MESSAGE
            | NS_JINGLE_MESSAGE_1
            | NS_REPLY
            | NS_REACTIONS
            | "jabber:x:conference"
            | "jabber:x:oob"
    )
}

/// What is kept when nothing else fits: the body, the archive id, a
/// call's signal.
fn essential(e: &Element) -> bool {
    let ns = e.ns();
    (e.name() == "body" && ns == NS_CLIENT)
        || matches!(
            ns.as_str(),
            NS_STANZA_ID | NS_JINGLE_MESSAGE | NS_JINGLE_MESSAGE_1
        )
}

fn envelope(message: Option<Element>) -> Element {
    let mut content = Element::builder("content", NS_SCE).build();
    if let Some(message) = message {
        let mut forwarded = Element::builder("forwarded", NS_FORWARD).build();
        forwarded.append_child(message);
        content.append_child(forwarded);
    }
    let mut env = Element::builder("envelope", NS_SCE).build();
    env.append_child(content);
    env
}

fn message_mut(env: &mut Element) -> Option<&mut Element> {
    env.get_child_mut("content", NS_SCE)?
        .get_child_mut("forwarded", NS_FORWARD)?
        .children_mut()
        .next()
}

/// Replaces the message's body with its first `chars` characters and an
/// ellipsis.
fn cut_body(env: &mut Element, full: &str, chars: usize) {
    let Some(body) = message_mut(env).and_then(|m| m.get_child_mut("body", NS_CLIENT)) else {
        return;
    };
    let end = full
        .char_indices()
        .nth(chars)
        .map_or(full.len(), |(i, _)| i);
    body.take_nodes();
    body.append_text_node(format!("{}{ELLIPSIS}", &full[..end]));
}

/// The body truncated (at a character boundary) to the longest that fits.
fn truncate_body(env: &mut Element, max: usize) {
    let Some(full) = message_mut(env)
        .and_then(|m| m.get_child("body", NS_CLIENT))
        .map(|b| b.text())
    else {
        return;
    };
    let (mut lo, mut hi) = (0usize, full.chars().count());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        cut_body(env, &full, mid);
        if serialized(env).len() <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    cut_body(env, &full, lo);
}

/// The envelope of `message` (its namespace set to `jabber:client`), at
/// most `max` bytes serialized, before padding: the unknown children go
/// first, then the body is truncated, then all but the body, the archive
/// id and a call's signal, then the body, then the message's attributes.
pub fn minimised(message: Option<Element>, max: usize) -> Element {
    let mut env = envelope(message);
    let stages: [&dyn Fn(&mut Element); 5] = [
        &|env| {
            if let Some(m) = message_mut(env) {
                retain(m, useful);
            }
        },
        &|env| truncate_body(env, max),
        &|env| {
            if let Some(m) = message_mut(env) {
                retain(m, essential);
            }
        },
        &|env| {
            if let Some(m) = message_mut(env) {
                retain(m, |e| e.name() != "body");
            }
        },
        &|env| {
            if let Some(m) = message_mut(env) {
                m.attrs_mut().clear();
            }
        },
    ];
    for stage in stages {
        if serialized(&env).len() <= max {
            break;
        }
        stage(&mut env);
    }
    if serialized(&env).len() > max {
        env = envelope(None);
    }
    env
}

/// `message` with the user's archive id (`by` their bare JID) as a
/// `<stanza-id/>`, unless it has one from them already (the archive's own
/// event hands over a copy without it).
pub fn with_archive_id(mut message: Element, by: &str, id: Option<&str>) -> Element {
    let Some(id) = id else { return message };
    let has = message
        .children()
        .any(|c| c.is("stanza-id", NS_STANZA_ID) && c.attr("by") == Some(by));
    if !has {
        message.append_child(
            Element::builder("stanza-id", NS_STANZA_ID)
                .attr(minidom::rxml::xml_ncname!("by").into(), by)
                .attr(minidom::rxml::xml_ncname!("id").into(), id)
                .build(),
        );
    }
    message
}

/// What is left of a message when its content is not forwarded
/// (`push2_forward_content = false`): its `id` and `type`, its archive id
/// and a call's signal; no body, no sender.
pub fn without_content(mut message: Element) -> Element {
    retain(&mut message, |e| {
        matches!(
            e.ns().as_str(),
            NS_STANZA_ID | NS_JINGLE_MESSAGE | NS_JINGLE_MESSAGE_1
        )
    });
    message
        .attrs_mut()
        .retain(|ns, name, _| ns.is_empty() && matches!(name.as_str(), "id" | "type"));
    message
}

/// The plaintext: the minimised envelope, padded with `<rpad/>` up to the
/// next multiple of 256 bytes plus up to 63 more (`random` gives the
/// bytes), never past [`MAX_ENVELOPE`].
pub fn plaintext(message: Option<Element>, random: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
    const RPAD: usize = "<rpad></rpad>".len();
    let mut env = minimised(message, MAX_ENVELOPE - RPAD);
    let len = serialized(&env).len() + RPAD;
    let mut extra = [0u8; 1];
    random(&mut extra);
    let target = (len.div_ceil(256) * 256 + usize::from(extra[0] % 64)).min(MAX_ENVELOPE);
    let mut pad = vec![0u8; target.saturating_sub(len)];
    random(&mut pad);
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pad: String = pad
        .iter()
        .map(|b| CHARS[usize::from(b % 64)] as char)
        .collect();
    env.append_child(Element::builder("rpad", NS_SCE).append(pad).build());
    serialized(&env).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str, extra: &str) -> Element {
        format!(
            "<message xmlns='jabber:client' from='romeo@montague.example/a' to='juliet@capulet.example' id='m1' type='chat'>\
             <body>{body}</body>{extra}<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.example' id='A1'/></message>"
        )
        .parse()
        .unwrap()
    }

    fn counter() -> impl FnMut(&mut [u8]) {
        let mut n = 0u8;
        move |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(37);
                *x = n;
            }
        }
    }

    #[test]
    fn a_small_message_is_forwarded_whole() {
        let text = String::from_utf8(plaintext(
            Some(msg("hi", "<markable xmlns='urn:xmpp:chat-markers:0'/>")),
            &mut counter(),
        ))
        .unwrap();
        assert!(text.starts_with("<envelope xmlns='urn:xmpp:sce:1'><content><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'"));
        assert!(
            text.contains("<body>hi</body>")
                && text.contains("markable")
                && text.contains("id='A1'")
        );
        assert!(text.contains("<rpad>"));
        assert!(text.len() % 256 < 64 && text.len() <= MAX_ENVELOPE);
        let parsed: Element = text.parse().unwrap();
        assert!(parsed.is("envelope", NS_SCE));
    }

    #[test]
    fn a_long_accented_body_is_cut_between_characters_and_keeps_the_archive_id() {
        let long = "é".repeat(5000);
        let bytes = plaintext(
            Some(msg(&long, "<x xmlns='urn:example:big'/>")),
            &mut counter(),
        );
        assert!(bytes.len() <= MAX_ENVELOPE);
        let text = String::from_utf8(bytes).unwrap();
        let parsed: Element = text.parse().unwrap();
        let m = parsed
            .get_child("content", NS_SCE)
            .unwrap()
            .get_child("forwarded", NS_FORWARD)
            .unwrap()
            .get_child("message", NS_CLIENT)
            .unwrap();
        let body = m.get_child("body", NS_CLIENT).unwrap().text();
        assert!(body.ends_with(ELLIPSIS) && body.chars().count() > 500);
        assert!(m.get_child("stanza-id", NS_STANZA_ID).is_some());
        assert!(m.get_child("x", "urn:example:big").is_none());
        // (a 10 kB body too)
        let ten = "a".repeat(10_000);
        assert!(plaintext(Some(msg(&ten, "")), &mut counter()).len() <= MAX_ENVELOPE);
    }

    #[test]
    fn without_content_no_body_and_no_sender() {
        let m = without_content(msg("secret", "<x xmlns='jabber:x:oob'><url>u</url></x>"));
        let text = String::from(&m);
        assert!(!text.contains("secret") && !text.contains("romeo") && !text.contains("oob"));
        assert!(text.contains("id='A1'") && text.contains("type='chat'"));
    }

    #[test]
    fn the_archive_id_is_added_once() {
        let bare: Element = "<message xmlns='jabber:client'><body>b</body></message>"
            .parse()
            .unwrap();
        let m = with_archive_id(bare, "juliet@capulet.example", Some("A9"));
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.is("stanza-id", NS_STANZA_ID))
            .collect();
        assert_eq!((ids.len(), ids[0].attr("id")), (1, Some("A9")));
        let again = with_archive_id(m.clone(), "juliet@capulet.example", Some("A9"));
        assert_eq!(again, m);
        assert_eq!(with_archive_id(m.clone(), "x@y", None), m);
    }

    #[test]
    fn huge_attributes_still_fit() {
        let big = "x".repeat(3000);
        let m: Element = format!("<message xmlns='jabber:client' from='{big}@a.example' id='{big}'><body>b</body></message>").parse().unwrap();
        assert!(plaintext(Some(m), &mut counter()).len() <= MAX_ENVELOPE);
        assert!(plaintext(None, &mut counter()).len() <= MAX_ENVELOPE);
    }
}
