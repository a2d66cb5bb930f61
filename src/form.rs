//! A small XML tree packed into one allocation: a registration's
//! publish-options form, kept for as long as the registration is.
//!
//! As a minidom [`Element`], the form real clients send (a data form with
//! a FORM_TYPE and a secret: five elements) takes some thirty allocations
//! — a name, a namespace, an attribute map and a child list each — that
//! live among the short-lived ones of the enable that made them. Packed,
//! it is one allocation of its text's length plus a few bytes per node,
//! written once and read in document order: by the binding, into Lua
//! tables for each push and store write, and by [`Form::to_element`] where
//! the core wants an element.
//!
//! Layout: counts as 16-bit little-endian numbers; strings as one byte
//! below `LONG` (their length, then their bytes), one byte from
//! `WORDS` on (a word of data forms, `DICTIONARY`), or `LONG` and
//! a 16-bit length, then their bytes:
//! - element: `0`, attribute count, child count, name, namespace
//!   (`INHERITED` when it is its parent's, else a string), then its
//!   attributes, then its children;
//! - text: `1`, a string;
//! - attribute: `2`, its name, its value.
//!
//! Attribute names are util.stanza's: `name`, `xml:name`, or
//! `namespace\u{1}name`.

use minidom::rxml::{Namespace, NcName};
use minidom::Element;

/// Most bytes a packed tree takes.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Most nodes (elements and texts) in a packed tree.
pub const MAX_FORM_NODES: usize = 2048;
/// Deepest element kept.
pub const MAX_FORM_DEPTH: usize = 32;

const ELEMENT: u8 = 0;
const TEXT: u8 = 1;
const ATTR: u8 = 2;
/// The first byte of a string that is a word of `DICTIONARY`.
const WORDS: u8 = 0xC0;
/// The byte of a string whose 16-bit length follows.
const LONG: u8 = 0xFE;
/// The byte of an inherited namespace.
const INHERITED: u8 = 0xFF;

/// What every publish-options form repeats, a byte each: the form
/// Conversations sends packs into some eighty bytes.
const DICTIONARY: [&str; 14] = [
    "x",
    "field",
    "value",
    "jabber:x:data",
    "type",
    "submit",
    "var",
    "FORM_TYPE",
    "http://jabber.org/protocol/pubsub#publish-options",
    "secret",
    "hidden",
    "form",
    "text-single",
    "pushModule",
];

/// A packed XML tree: see the module's docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Form(Box<[u8]>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Form")
            .field(&String::from(&self.to_element("")))
            .finish()
    }
}

/// Why a tree was not packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge(pub &'static str);

/// One item of a packed tree, in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// An element starts: its attributes come next, then its children.
    Start {
        /// Its name.
        name: &'a str,
        /// Its namespace where it differs from its parent's.
        xmlns: Option<&'a str>,
        /// How many attributes follow.
        attrs: usize,
        /// How many children follow its attributes.
        children: usize,
    },
    /// An attribute (util.stanza's name for it, its value).
    Attr(&'a str, &'a str),
    /// A text node.
    Text(&'a str),
}

/// Packs a tree, item by item: elements opened with [`Packer::start`],
/// their attributes added before their children, closed with
/// [`Packer::end`].
#[derive(Default)]
pub struct Packer {
    buf: Vec<u8>,
    /// The open elements: where each one's counts are.
    open: Vec<usize>,
    nodes: usize,
}

impl Packer {
    /// An empty packer, with room for what real clients send (packing
    /// grows no buffer step by step among the caller's allocations).
    pub fn new() -> Self {
        Packer {
            buf: Vec::with_capacity(512),
            open: Vec::with_capacity(4),
            nodes: 0,
        }
    }

    fn string(&mut self, s: &str, what: &'static str) -> Result<(), TooLarge> {
        if let Some(word) = DICTIONARY.iter().position(|w| *w == s) {
            self.buf.push(WORDS + word as u8);
        } else if s.len() < usize::from(WORDS) {
            self.buf.push(s.len() as u8);
            self.buf.extend_from_slice(s.as_bytes());
        } else {
            let len = u16::try_from(s.len()).map_err(|_| TooLarge(what))?;
            self.buf.push(LONG);
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(s.as_bytes());
        }
        if self.buf.len() > MAX_FORM_BYTES {
            return Err(TooLarge("form too large"));
        }
        Ok(())
    }

    fn count(&mut self, offset: usize) {
        if let Some(&at) = self.open.last() {
            let at = at + offset;
            let n = u16::from_le_bytes([self.buf[at], self.buf[at + 1]]);
            self.buf[at..at + 2].copy_from_slice(&n.saturating_add(1).to_le_bytes());
        }
    }

    fn node(&mut self) -> Result<(), TooLarge> {
        self.nodes += 1;
        if self.nodes > MAX_FORM_NODES {
            return Err(TooLarge("too many elements"));
        }
        self.count(2);
        Ok(())
    }

    /// Opens an element (a child of the open one, if any).
    pub fn start(&mut self, name: &str, xmlns: Option<&str>) -> Result<(), TooLarge> {
        if self.open.len() >= MAX_FORM_DEPTH {
            return Err(TooLarge("element nested too deeply"));
        }
        if self.open.is_empty() && !self.buf.is_empty() {
            return Err(TooLarge("more than one root"));
        }
        self.node()?;
        self.buf.push(ELEMENT);
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.string(name, "name too long")?;
        match xmlns {
            Some(ns) => self.string(ns, "namespace too long"),
            None => {
                self.buf.push(INHERITED);
                Ok(())
            }
        }
    }

    /// Adds an attribute to the open element (before its children).
    pub fn attr(&mut self, name: &str, value: &str) -> Result<(), TooLarge> {
        if self.open.is_empty() {
            return Err(TooLarge("attribute outside an element"));
        }
        self.count(0);
        self.buf.push(ATTR);
        self.string(name, "attribute name too long")?;
        self.string(value, "attribute too long")
    }

    /// Adds a text node to the open element.
    pub fn text(&mut self, text: &str) -> Result<(), TooLarge> {
        self.node()?;
        self.buf.push(TEXT);
        self.string(text, "text too long")
    }

    /// Closes the open element.
    pub fn end(&mut self) {
        self.open.pop();
    }

    /// The packed tree, once every element is closed (`None`: nothing was
    /// packed).
    pub fn finish(self) -> Option<Form> {
        // (copied into an allocation of its size: the form lives as long
        // as its registration, the buffer not)
        (!self.buf.is_empty() && self.open.is_empty()).then(|| Form(self.buf.as_slice().into()))
    }
}

impl Form {
    /// Packs `elem`, whose parent is in `parent_ns`.
    pub fn from_element(elem: &Element, parent_ns: &str) -> Result<Form, TooLarge> {
        fn walk(p: &mut Packer, elem: &Element, parent_ns: &str) -> Result<(), TooLarge> {
            let ns = elem.ns();
            p.start(elem.name(), (ns != parent_ns).then_some(ns.as_str()))?;
            for ((attr_ns, name), value) in elem.attrs().iter() {
                if attr_ns.is_empty() {
                    p.attr(name.as_str(), value)?;
                } else if **attr_ns == *Namespace::XML {
                    p.attr(&format!("xml:{}", name.as_str()), value)?;
                } else {
                    p.attr(
                        &format!("{}\u{1}{}", attr_ns.as_str(), name.as_str()),
                        value,
                    )?;
                }
            }
            for node in elem.nodes() {
                if let Some(child) = node.as_element() {
                    walk(p, child, &ns)?;
                } else if let Some(text) = node.as_text() {
                    p.text(text)?;
                }
            }
            p.end();
            Ok(())
        }
        let mut p = Packer::new();
        walk(&mut p, elem, parent_ns)?;
        p.finish().ok_or(TooLarge("empty"))
    }

    /// The items, in document order.
    pub fn items(&self) -> Items<'_> {
        Items {
            buf: &self.0,
            at: 0,
        }
    }

    /// The packed bytes (what tells two forms apart).
    pub fn packed(&self) -> &[u8] {
        &self.0
    }

    /// Bytes it takes (its one allocation).
    pub fn bytes(&self) -> usize {
        self.0.len()
    }

    /// The tree as an element, whose parent is in `parent_ns` (attributes
    /// whose names are not XML names left out).
    pub fn to_element(&self, parent_ns: &str) -> Element {
        fn build(items: &mut Items<'_>, parent_ns: &str) -> Option<Element> {
            let (name, xmlns, attrs, children) = items.start()?;
            let ns = xmlns.unwrap_or(parent_ns).to_owned();
            let mut elem = Element::builder(name, ns.clone()).build();
            for _ in 0..attrs {
                if let Some(Item::Attr(k, v)) = items.next() {
                    set_stanza_attr(&mut elem, k, v);
                }
            }
            for _ in 0..children {
                if let Item::Text(t) = items.peek()? {
                    items.next();
                    elem.append_text_node(t);
                } else if let Some(child) = build(items, &ns) {
                    elem.append_child(child);
                }
            }
            Some(elem)
        }
        let mut items = self.items();
        build(&mut items, parent_ns).unwrap_or_else(|| Element::builder("x", parent_ns).build())
    }
}

/// Sets an attribute given by util.stanza's name for it (`name`,
/// `xml:name`, `namespace\u{1}name`); one that is not an XML name is left
/// out.
pub fn set_stanza_attr(elem: &mut Element, k: &str, v: &str) {
    let Some(local) = stanza_attr_local(k) else {
        return;
    };
    let ns = match k.split_once('\u{1}') {
        _ if k.starts_with("xml:") => Namespace::XML,
        Some((attr_ns, _)) => Namespace::from(attr_ns.to_owned()),
        None => Namespace::NONE,
    };
    elem.set_attr(ns, local, v);
}

/// The local name of an attribute given by util.stanza's name for it, if
/// it is an XML name (what is kept of an attribute, either way).
pub fn stanza_attr_local(k: &str) -> Option<NcName> {
    let local = k
        .strip_prefix("xml:")
        .or_else(|| k.split_once('\u{1}').map(|(_, local)| local))
        .unwrap_or(k);
    NcName::try_from(local).ok()
}

/// The items of a [`Form`], in document order.
pub struct Items<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Items<'a> {
    fn number(&mut self) -> usize {
        let n = u16::from_le_bytes([self.buf[self.at], self.buf[self.at + 1]]);
        self.at += 2;
        usize::from(n)
    }

    fn string(&mut self) -> &'a str {
        let first = self.buf[self.at];
        self.at += 1;
        let len = match first {
            LONG => self.number(),
            b if b >= WORDS => {
                return DICTIONARY
                    .get(usize::from(b - WORDS))
                    .copied()
                    .unwrap_or("")
            }
            b => usize::from(b),
        };
        let s = &self.buf[self.at..self.at + len];
        self.at += len;
        // (packed from &str only)
        std::str::from_utf8(s).unwrap_or_default()
    }

    /// The element starting next (name, own namespace, attribute and child
    /// counts), if one does.
    pub fn start(&mut self) -> Option<(&'a str, Option<&'a str>, usize, usize)> {
        match self.next()? {
            Item::Start {
                name,
                xmlns,
                attrs,
                children,
            } => Some((name, xmlns, attrs, children)),
            _ => None,
        }
    }

    /// The next item, without moving past it.
    pub fn peek(&self) -> Option<Item<'a>> {
        Items {
            buf: self.buf,
            at: self.at,
        }
        .next()
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let tag = *self.buf.get(self.at)?;
        self.at += 1;
        match tag {
            ELEMENT => {
                let attrs = self.number();
                let children = self.number();
                let name = self.string();
                let xmlns = match self.buf[self.at] {
                    INHERITED => {
                        self.at += 1;
                        None
                    }
                    _ => Some(self.string()),
                };
                Some(Item::Start {
                    name,
                    xmlns,
                    attrs,
                    children,
                })
            }
            ATTR => {
                let name = self.string();
                Some(Item::Attr(name, self.string()))
            }
            _ => Some(Item::Text(self.string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // XEP-0357 Example 9's publish-options form.
    const FORM: &str = "<x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
        <field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";

    #[test]
    fn a_form_round_trips() {
        let elem: Element = FORM.parse().unwrap();
        let form = Form::from_element(&elem, "http://jabber.org/protocol/pubsub").unwrap();
        assert_eq!(form.to_element("http://jabber.org/protocol/pubsub"), elem);
        // One allocation: the words of data forms a byte each, the secret
        // and a few bytes per node.
        assert!(form.bytes() < 80, "{}", form.bytes());
        // Long strings, and any that is not a word, are kept as they are.
        let long = format!(
            "<x xmlns='urn:x'><y a='{}'>{}</y>x</x>",
            "b".repeat(300),
            "c".repeat(191)
        );
        let elem: Element = long.parse().unwrap();
        let form = Form::from_element(&elem, "").unwrap();
        assert_eq!(form.to_element(""), elem);
    }

    #[test]
    fn items_come_in_document_order() {
        let elem: Element = FORM.parse().unwrap();
        let form = Form::from_element(&elem, "").unwrap();
        let items: Vec<Item<'_>> = form.items().collect();
        assert_eq!(
            items[..4],
            [
                Item::Start {
                    name: "x",
                    xmlns: Some("jabber:x:data"),
                    attrs: 1,
                    children: 2
                },
                Item::Attr("type", "submit"),
                Item::Start {
                    name: "field",
                    xmlns: None,
                    attrs: 1,
                    children: 1
                },
                Item::Attr("var", "FORM_TYPE"),
            ]
        );
        assert_eq!(items.len(), 10);
        assert_eq!(items[7], Item::Attr("var", "secret"));
    }

    #[test]
    fn namespaced_attributes_and_other_namespaces_are_kept() {
        let xml = "<x xmlns='jabber:x:data' xml:lang='de'>\
            <y xmlns='urn:example' xmlns:e='urn:e' e:a='1'>text</y>after</x>";
        let elem: Element = xml.parse().unwrap();
        let form = Form::from_element(&elem, "").unwrap();
        assert_eq!(form.to_element(""), elem);
        assert!(form.items().any(|i| i == Item::Attr("xml:lang", "de")));
        assert!(form.items().any(|i| i == Item::Attr("urn:e\u{1}a", "1")));
        assert!(form.items().any(|i| matches!(
            i,
            Item::Start {
                xmlns: Some("urn:example"),
                ..
            }
        )));
    }

    #[test]
    fn bounds_hold() {
        let mut p = Packer::new();
        p.start("x", None).unwrap();
        assert_eq!(p.text(&"a".repeat(70_000)), Err(TooLarge("text too long")));
        let mut p = Packer::new();
        for _ in 0..MAX_FORM_DEPTH {
            p.start("x", None).unwrap();
        }
        assert!(p.start("x", None).is_err());
        let mut p = Packer::new();
        p.start("x", None).unwrap();
        for _ in 1..MAX_FORM_NODES {
            p.text("").unwrap();
        }
        assert!(p.text("").is_err());
        let mut p = Packer::new();
        p.start("x", None).unwrap();
        for _ in 0..32 {
            p.text(&"a".repeat(2000)).unwrap();
        }
        assert_eq!(p.text(&"a".repeat(2000)), Err(TooLarge("form too large")));
        let mut p = Packer::new();
        assert!(p.attr("a", "b").is_err());
        p.start("x", None).unwrap();
        p.end();
        assert!(p.start("y", None).is_err());
        assert!(Packer::new().finish().is_none());
        let mut p = Packer::new();
        p.start("x", None).unwrap();
        assert!(p.finish().is_none(), "unclosed");
    }
}
