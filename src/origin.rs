//! The stanza a push is about, handed to `cloud_notify/push` handlers as
//! the event's `original_stanza`.
//!
//! Extension modules read it on every push, without a nil check:
//! prosody-modules' `mod_cloud_notify_encrypted` builds the encrypted
//! payload from it (body, sender, call, subscription) and
//! `mod_cloud_notify_filters` filters on its `to`, `from` and type. So
//! every push carries one:
//!
//! - a push made on a stanza's own event carries that stanza (the binding
//!   hands over the object itself);
//! - a push that goes out later, a grace period's release or a retry after
//!   a `wait` error, carries a copy of the stanza it is about, kept
//!   from the first event ([`Origins::keep`]): the extensions run again on
//!   it, so a muted sender stays muted and the encrypted payload says what
//!   the first one would have;
//! - a push with no stanza of its own gets a bodiless message made for it
//!   ([`made`]): a chat read elsewhere (from that chat, to the user), a
//!   call's end answered on another device (from the caller, to the user);
//!   the wake-up and a ping come from the host and are addressed to no one,
//!   so that no sender filter holds back what no sender sent.
//!
//! Kept copies are bounded in bytes per host ([`MAX_KEPT_BYTES`]): past
//! it, a copy keeps the stanza's addressing attributes (`to`, `from`,
//! `type`, `id`, each at most [`MAX_ATTR_BYTES`]) and at most
//! [`MAX_MARKERS`] call and encryption markers only, its body replaced by
//! the placeholder body (what the push itself says without
//! `push_notification_with_body`); those count too, within as much again;
//! past that, the push gets a bare message to the user (nothing else).

use crate::NS_CLIENT;
use minidom::rxml::{Namespace, NcName};
use minidom::Element;
use std::cell::Cell;
use std::rc::Rc;

/// Bytes of stanza copies one host keeps at once (held by the grace
/// period, awaiting an answer, waiting for a retry).
pub const MAX_KEPT_BYTES: usize = 1024 * 1024;

/// Bytes counted for each element besides its names, attributes and text.
const ELEMENT_OVERHEAD: usize = 64;

/// Largest marker child a bodiless copy keeps (a larger one is emptied).
const MAX_MARKER_BYTES: usize = 512;
/// Marker children a bodiless copy keeps.
pub const MAX_MARKERS: usize = 4;
/// Longest attribute a bodiless copy keeps.
pub const MAX_ATTR_BYTES: usize = 1024;

/// Children a bodiless copy keeps (small ones): what tells a call and an
/// encrypted message apart.
const MARKERS: [&str; 6] = [
    crate::facts::NS_JINGLE_MESSAGE,
    crate::facts::NS_JINGLE_MESSAGE_1,
    "urn:xmpp:eme:0",
    crate::facts::NS_OMEMO_LEGACY,
    crate::facts::NS_OMEMO,
    crate::facts::NS_OMEMO_2,
];

/// A stanza a push is about, shared by every push and retry made of it.
#[derive(Clone, Debug)]
pub struct Origin(Rc<Kept>);

#[derive(Debug)]
struct Kept {
    element: Element,
    /// Bytes counted against the host's budget (0: not counted).
    bytes: usize,
    ledger: Option<Rc<Cell<usize>>>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.set(ledger.get().saturating_sub(self.bytes));
        }
    }
}

impl Origin {
    /// A stanza made for a push, not counted against the budget (it is
    /// small and bounded by its JIDs).
    pub fn made(element: Element) -> Origin {
        Origin(Rc::new(Kept {
            element,
            bytes: 0,
            ledger: None,
        }))
    }

    /// The stanza.
    pub fn element(&self) -> &Element {
        &self.0.element
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        self.element() == other.element()
    }
}

/// The copies one host keeps, counted in bytes.
#[derive(Debug)]
pub struct Origins {
    used: Rc<Cell<usize>>,
    budget: usize,
}

impl Default for Origins {
    fn default() -> Self {
        Origins::new(MAX_KEPT_BYTES)
    }
}

impl Origins {
    /// At most `budget` bytes kept at once.
    pub fn new(budget: usize) -> Self {
        Origins {
            used: Rc::new(Cell::new(0)),
            budget,
        }
    }

    /// Bytes kept now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// A copy of `element` to keep: whole within the budget, else its
    /// bodiless copy ([`bodiless`], with `placeholder` for its body) within
    /// as much again, else a bare message to its `to`. All but the last
    /// are counted while kept.
    pub fn keep(&self, element: Element, placeholder: &str) -> Origin {
        let bytes = element_bytes(&element, 0);
        if let Some(kept) = self.count(&element, bytes, self.budget) {
            return kept;
        }
        let copy = bodiless(&element, placeholder);
        let bytes = element_bytes(&copy, 0);
        if let Some(kept) = self.count(&copy, bytes, self.budget.saturating_mul(2)) {
            return kept;
        }
        let to = element.attr("to").filter(|t| t.len() <= MAX_ATTR_BYTES);
        made(to, None, element.attr("type").unwrap_or("chat"))
    }

    /// `element` kept and counted, if `bytes` more stay within `limit`.
    fn count(&self, element: &Element, bytes: usize, limit: usize) -> Option<Origin> {
        let used = self.used.get();
        if used.saturating_add(bytes) > limit {
            return None;
        }
        self.used.set(used + bytes);
        Some(Origin(Rc::new(Kept {
            element: element.clone(),
            bytes,
            ledger: Some(self.used.clone()),
        })))
    }
}

/// What an element costs, roughly: its names, attributes and text, and a
/// fixed overhead per element.
pub fn element_bytes(element: &Element, depth: usize) -> usize {
    let attrs: usize = element
        .attrs()
        .iter()
        .map(|((ns, k), v)| ns.len() + k.len() + v.len() + 16)
        .sum();
    let texts: usize = element.texts().map(str::len).sum();
    let children: usize = match depth < 64 {
        true => element
            .children()
            .map(|c| element_bytes(c, depth + 1))
            .sum(),
        false => 0,
    };
    ELEMENT_OVERHEAD + element.name().len() + attrs + texts + children
}

/// `element` without what makes it large: its name and attributes, its
/// call and encryption markers (a large one emptied), and instead of its body
/// `placeholder` (none if empty or if it had no body).
pub fn bodiless(element: &Element, placeholder: &str) -> Element {
    let ns = element.ns();
    let mut copy = Element::builder(element.name(), ns.as_str()).build();
    for name in ["to", "from", "type", "id"] {
        let value = element.attr(name).filter(|v| v.len() <= MAX_ATTR_BYTES);
        if let (Some(value), Ok(name)) = (value, NcName::try_from(name)) {
            copy.set_attr(Namespace::NONE, name, value);
        }
    }
    let markers = element
        .children()
        .filter(|c| MARKERS.contains(&c.ns().as_str()))
        .take(MAX_MARKERS);
    for child in markers {
        let ns = child.ns();
        // (a large one, an OMEMO payload, kept as an empty marker)
        match element_bytes(child, 0) <= MAX_MARKER_BYTES {
            true => copy.append_child(child.clone()),
            false => copy.append_child(Element::builder(child.name(), ns).build()),
        };
    }
    if element.get_child("body", ns.as_str()).is_some() && !placeholder.is_empty() {
        copy.append_child(
            Element::builder("body", ns.as_str())
                .append(placeholder)
                .build(),
        );
    }
    copy
}

/// A bodiless `<message/>` made for a push with no stanza of its own.
pub fn made(to: Option<&str>, from: Option<&str>, type_: &str) -> Origin {
    let mut message = Element::builder("message", NS_CLIENT).build();
    let mut set = |name: &str, value: &str| {
        if let Ok(name) = NcName::try_from(name) {
            message.set_attr(Namespace::NONE, name, value);
        }
    };
    if let Some(to) = to {
        set("to", to);
    }
    if let Some(from) = from {
        set("from", from);
    }
    set("type", type_);
    Origin::made(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Element {
        format!(
            "<message xmlns='jabber:client' from='juliet@capulet.lit/balcony' \
             to='romeo@montague.lit' type='chat' id='m1'><body>{body}</body>\
             <encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:omemo:2'/>\
             <big xmlns='urn:example'>{}</big></message>",
            "x".repeat(2000)
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn copies_are_counted_while_kept_and_whole_within_the_budget() {
        let origins = Origins::new(6000);
        let a = origins.keep(message("Wherefore art thou?"), "New Message!");
        let b = origins.keep(message("Parting is such sweet sorrow"), "New Message!");
        assert_eq!(a.element(), &message("Wherefore art thou?"));
        assert_eq!(b.element(), &message("Parting is such sweet sorrow"));
        let used = origins.used();
        assert!(used > 4000, "{used}");
        // Past the budget: the bodiless copy, small, and counted too.
        let c = origins.keep(message("A third"), "New Message!");
        assert!(origins.used() > used && origins.used() < used + 400);
        assert_eq!(
            c.element().get_child("body", NS_CLIENT).unwrap().text(),
            "New Message!"
        );
        assert!(c.element().get_child("big", "urn:example").is_none());
        assert!(c
            .element()
            .get_child("encryption", "urn:xmpp:eme:0")
            .is_some());
        assert_eq!(c.element().attr("from"), Some("juliet@capulet.lit/balcony"));
        // Shared by its pushes; given back once the last one goes.
        // Past twice the budget: a bare message to the user.
        let mut bodiless = vec![];
        while bodiless.len() < 100 {
            let o = origins.keep(message("more"), "New Message!");
            if o.element().children().count() == 0 {
                assert_eq!(o.element().attr("to"), Some("romeo@montague.lit"));
                assert_eq!(o.element().attr("from"), None);
                break;
            }
            bodiless.push(o);
        }
        assert!(origins.used() <= 12_000, "{}", origins.used());
        drop((bodiless, c));
        let a2 = a.clone();
        drop(a);
        assert_eq!(origins.used(), used);
        drop(a2);
        drop(b);
        assert_eq!(origins.used(), 0);
    }

    #[test]
    fn a_bodiless_copy_without_placeholder_has_no_body() {
        let copy = bodiless(&message("secret"), "");
        assert!(copy.get_child("body", NS_CLIENT).is_none());
        assert!(!String::from(&copy).contains("secret"));
    }

    #[test]
    fn made_messages_have_no_body() {
        let read = made(
            Some("romeo@montague.lit"),
            Some("juliet@capulet.lit"),
            "chat",
        );
        assert_eq!(
            String::from(read.element()),
            "<message xmlns='jabber:client' from='juliet@capulet.lit' \
             to='romeo@montague.lit' type='chat'/>"
        );
        let wake = made(None, Some("montague.lit"), "headline");
        assert_eq!(wake.element().attr("to"), None);
        assert_eq!(wake.element().attr("from"), Some("montague.lit"));
    }
}
