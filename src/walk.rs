//! What a walk of a stanza keeps: the one set of rules both walks follow,
//! the core's over a parsed element ([`StanzaFacts::from_element`]) and
//! the binding's raw reader over a util.stanza object (`src/lua/raw/read.rs`).
//! The walker says where things are; [`Level::note`] says what is kept
//! and [`Level::facts`] what it means.
//!
//! A [`Level`] holds only handles of the walker's strings (`S`: `&str`
//! for an element, a pointer into a Lua string for the raw reader) and
//! fixed-size arrays: it owns no memory, so the raw reader can fill it
//! inside a protected call, where a Lua error would skip destructors.

use crate::facts::{
    classify_child, CallSignal, Child, Direction, Kind, StanzaFacts, MAX_STANZA_IDS, NS_FORWARD,
};
use minidom::Element;

/// Text nodes of a body kept (Prosody's parser gives one; more are only
/// ever built by hand).
pub const MAX_PIECES: usize = 16;

/// An attribute of a child the rules ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// `id` (a call signal's, a stanza-id's).
    Id,
    /// `to` (a reply's).
    To,
    /// `by` (a stanza-id's).
    By,
}

impl Attr {
    /// The attribute's name.
    pub fn name(self) -> &'static str {
        match self {
            Attr::Id => "id",
            Attr::To => "to",
            Attr::By => "by",
        }
    }
}

/// A child element, as the walker reaches it.
pub trait ChildOf<S: Copy> {
    /// One of its attributes.
    fn attr(&mut self, which: Attr) -> Option<S>;
    /// Its text nodes, at most `MAX_PIECES`, into `pieces`; how many.
    fn text(&mut self, pieces: &mut [Option<S>; MAX_PIECES]) -> usize;
    /// A carbon copy's forwarded message, walked into `into`; whether it
    /// was there.
    fn forwarded(&mut self, into: &mut Level<S>) -> bool;
}

/// What is kept of one stanza level (see the module's docs).
#[derive(Clone, Copy)]
pub struct Level<S: Copy> {
    /// The element's name.
    pub name: Option<S>,
    /// Its `type`.
    pub type_: Option<S>,
    /// Its `from`.
    pub from: Option<S>,
    /// Its `to`.
    pub to: Option<S>,
    /// Its `id`.
    pub id: Option<S>,
    /// The first body's text nodes (`body_pieces` of them; none: no body).
    body: Option<[Option<S>; MAX_PIECES]>,
    body_pieces: usize,
    has_subject: bool,
    encrypted: bool,
    propose: bool,
    call: Option<(CallSignal, Option<S>)>,
    chat_state: bool,
    displayed: bool,
    reactions: bool,
    reply_to: Option<S>,
    /// The first carbon copy whose forwarded message was found (walked
    /// into the caller's inner level).
    carbon: Option<Direction>,
    stanza_ids: [Option<(S, S)>; MAX_STANZA_IDS],
}

impl<S: Copy> Level<S> {
    /// Nothing found yet.
    pub const EMPTY: Level<S> = Level {
        name: None,
        type_: None,
        from: None,
        to: None,
        id: None,
        body: None,
        body_pieces: 0,
        has_subject: false,
        encrypted: false,
        propose: false,
        call: None,
        chat_state: false,
        displayed: false,
        reactions: false,
        reply_to: None,
        carbon: None,
        stanza_ids: [None; MAX_STANZA_IDS],
    };

    /// Records a child of this level, classified by name and (resolved)
    /// namespace ([`classify_child`]); `inner`, at the top level only,
    /// receives a carbon copy's forwarded message. True if it did (the
    /// walker passes no `inner` after that).
    pub fn note(
        &mut self,
        class: Child,
        child: &mut impl ChildOf<S>,
        inner: Option<&mut Level<S>>,
    ) -> bool {
        match class {
            Child::Ignored => {}
            Child::Body => {
                if self.body.is_none() {
                    let mut pieces = [None; MAX_PIECES];
                    self.body_pieces = child.text(&mut pieces);
                    self.body = Some(pieces);
                }
            }
            Child::Subject => self.has_subject = true,
            Child::Encrypted => self.encrypted = true,
            Child::Call(signal) => {
                self.propose |= signal == CallSignal::Propose;
                if self.call.is_none() {
                    self.call = Some((signal, child.attr(Attr::Id)));
                }
            }
            Child::ChatState => self.chat_state = true,
            Child::Displayed => self.displayed = true,
            Child::Reactions => self.reactions = true,
            Child::Reply => {
                if self.reply_to.is_none() {
                    self.reply_to = child.attr(Attr::To);
                }
            }
            Child::StanzaId => {
                let (by, id) = (child.attr(Attr::By), child.attr(Attr::Id));
                let free = self.stanza_ids.iter_mut().find(|s| s.is_none());
                if let (Some(by), Some(id), Some(free)) = (by, id, free) {
                    *free = Some((by, id));
                }
            }
            Child::CarbonSent | Child::CarbonReceived => {
                let Some(into) = inner else {
                    return false;
                };
                if self.carbon.is_none() && child.forwarded(into) {
                    self.carbon = Some(match class {
                        Child::CarbonSent => Direction::Sent,
                        _ => Direction::Received,
                    });
                    return true;
                }
            }
        }
        false
    }

    /// The facts of this level (`inner`: its carbon's forwarded message);
    /// `bytes` reads a handle's string.
    pub fn facts<'s>(
        &self,
        inner: &Level<S>,
        bytes: impl Fn(S) -> Option<&'s [u8]> + Copy,
    ) -> StanzaFacts {
        let string = |s: Option<S>| {
            s.and_then(bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let body = self.body.map(|pieces| {
            let mut text = Vec::new();
            for piece in pieces[..self.body_pieces].iter().flatten() {
                text.extend_from_slice(bytes(*piece).unwrap_or_default());
            }
            String::from_utf8_lossy(&text).into_owned()
        });
        let name = self
            .name
            .and_then(bytes)
            .and_then(|b| std::str::from_utf8(b).ok());
        let mut facts = StanzaFacts {
            kind: Kind::from_name(name.unwrap_or("")),
            type_: string(self.type_),
            from: string(self.from),
            to: string(self.to),
            id: string(self.id),
            body,
            has_subject: self.has_subject,
            encrypted: self.encrypted,
            propose: self.propose,
            chat_state: self.chat_state,
            displayed: self.displayed,
            reactions: self.reactions,
            carbon: self
                .carbon
                .map(|dir| (dir, Box::new(inner.facts(&Level::EMPTY, bytes)))),
            ..Default::default()
        };
        for &(by, id) in self.stanza_ids.iter().flatten() {
            facts.note_stanza_id(string(Some(by)), string(Some(id)));
        }
        if let Some((signal, id)) = self.call {
            facts.note_call(signal, string(id));
        }
        facts.note_reply(string(self.reply_to));
        facts
    }
}

/// A child of a parsed element, for the core's own walk.
struct ElementChild<'a> {
    elem: &'a Element,
}

impl<'a> ChildOf<&'a str> for ElementChild<'a> {
    fn attr(&mut self, which: Attr) -> Option<&'a str> {
        self.elem.attr(which.name())
    }

    fn text(&mut self, pieces: &mut [Option<&'a str>; MAX_PIECES]) -> usize {
        let mut n = 0;
        for (slot, text) in pieces.iter_mut().zip(self.elem.texts()) {
            *slot = Some(text);
            n += 1;
        }
        n
    }

    fn forwarded(&mut self, into: &mut Level<&'a str>) -> bool {
        let msg = self
            .elem
            .get_child("forwarded", NS_FORWARD)
            .and_then(|fwd| fwd.get_child("message", crate::NS_CLIENT));
        match msg {
            Some(msg) => {
                walk_element(msg, into, None);
                true
            }
            None => false,
        }
    }
}

/// Walks a parsed element into `out` (a carbon's message into `inner`).
fn walk_element<'a>(
    elem: &'a Element,
    out: &mut Level<&'a str>,
    mut inner: Option<&mut Level<&'a str>>,
) {
    out.name = Some(elem.name());
    out.type_ = elem.attr("type");
    out.from = elem.attr("from");
    out.to = elem.attr("to");
    out.id = elem.attr("id");
    for child in elem.children() {
        let class = classify_child(child.name(), &child.ns());
        if out.note(
            class,
            &mut ElementChild { elem: child },
            inner.as_deref_mut(),
        ) {
            inner = None;
        }
    }
}

impl StanzaFacts {
    /// Facts of a parsed stanza (namespace of the root: `jabber:client` or alike).
    pub fn from_element(elem: &Element) -> StanzaFacts {
        let (mut outer, mut inner) = (Level::EMPTY, Level::EMPTY);
        walk_element(elem, &mut outer, Some(&mut inner));
        outer.facts(&inner, |s: &str| Some(s.as_bytes()))
    }
}
