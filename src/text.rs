//! A registration's text fields, packed into one allocation.
//!
//! A registration has up to seven strings (its storage key, the app
//! server's JID, the node, `include_payload`, the SASL2 client id, the
//! resource, the language). As `Option<String>`s they take 24 bytes each
//! in the record and an allocation each (at least 32 bytes with the C
//! library's bookkeeping). Packed, they take one allocation of their
//! lengths' sum and 40 bytes in the record; the key (`jid<node`, the
//! reference's) is not stored apart from the JID and node it is made of.

/// The parts of a registration's text, borrowed: what [`Text::new`] takes
/// and [`Text::parts`] gives back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The storage key; `None`: the reference's, `jid<node`.
    pub identifier: Option<&'a str>,
    /// The app server's JID.
    pub jid: &'a str,
    /// The app server's node for this device.
    pub node: Option<&'a str>,
    /// The `include_payload` attribute some clients send.
    pub include_payload: Option<&'a str>,
    /// The device's SASL2 client id.
    pub client_id: Option<&'a str>,
    /// The session's resource.
    pub resource: Option<&'a str>,
    /// The `xml:lang` of the enable IQ.
    pub language: Option<&'a str>,
}

// Part numbers, in the order they are laid out: `jid`, `<`, `node` (the
// key is the text up to the node's end), then the optional parts, then a
// key of another shape, if any.
const NODE: usize = 1;
const INCLUDE_PAYLOAD: usize = 2;
const CLIENT_ID: usize = 3;
const RESOURCE: usize = 4;
const LANGUAGE: usize = 5;
const KEY: usize = 6;
const PARTS: usize = 7;

/// Seven strings in one: see the module's docs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Text {
    buf: Box<str>,
    /// Where each part ends in `buf` (the JID's end, the node's, …).
    ends: [u32; PARTS - 1],
    /// Bit `i`: part `i` is present (the JID always is).
    present: u8,
}

impl Text {
    /// Packs the parts.
    ///
    /// # Panics
    /// If they are 4 GiB or more in all (the binding's bounds keep them to
    /// kilobytes).
    pub fn new(p: Parts<'_>) -> Text {
        let node = p.node.unwrap_or("");
        let own_key = p.identifier.filter(|k| {
            !(k.len() == p.jid.len() + 1 + node.len()
                && k.starts_with(p.jid)
                && k[p.jid.len()..].starts_with('<')
                && k.ends_with(node))
        });
        let optional = [
            (NODE, p.node),
            (INCLUDE_PAYLOAD, p.include_payload),
            (CLIENT_ID, p.client_id),
            (RESOURCE, p.resource),
            (LANGUAGE, p.language),
            (KEY, own_key),
        ];
        let len: usize = p.jid.len()
            + 1
            + optional
                .iter()
                .map(|(_, s)| s.map_or(0, str::len))
                .sum::<usize>();
        let mut buf = String::with_capacity(len);
        let mut ends = [0u32; PARTS - 1];
        let mut present = 1u8;
        buf.push_str(p.jid);
        let end =
            |buf: &String| u32::try_from(buf.len()).expect("a registration's text under 4 GiB");
        ends[0] = end(&buf);
        buf.push('<');
        for (i, part) in optional {
            if let Some(s) = part {
                buf.push_str(s);
                present |= 1 << i;
            }
            if i < KEY {
                ends[i] = end(&buf);
            }
        }
        Text {
            buf: buf.into_boxed_str(),
            ends,
            present,
        }
    }

    fn part(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = match i {
            0 => 0,
            NODE => self.ends[0] as usize + 1,
            _ => self.ends[i - 1] as usize,
        };
        let end = if i == KEY {
            self.buf.len()
        } else {
            self.ends[i] as usize
        };
        Some(&self.buf[start..end])
    }

    /// The storage key.
    pub fn identifier(&self) -> &str {
        match self.part(KEY) {
            Some(key) => key,
            None => &self.buf[..self.ends[NODE] as usize],
        }
    }

    /// The app server's JID.
    pub fn jid(&self) -> &str {
        &self.buf[..self.ends[0] as usize]
    }

    /// The node.
    pub fn node(&self) -> Option<&str> {
        self.part(NODE)
    }

    /// `include_payload`.
    pub fn include_payload(&self) -> Option<&str> {
        self.part(INCLUDE_PAYLOAD)
    }

    /// The SASL2 client id.
    pub fn client_id(&self) -> Option<&str> {
        self.part(CLIENT_ID)
    }

    /// The resource.
    pub fn resource(&self) -> Option<&str> {
        self.part(RESOURCE)
    }

    /// The language.
    pub fn language(&self) -> Option<&str> {
        self.part(LANGUAGE)
    }

    /// All the parts (the key as stored: `None` when it is `jid<node`).
    pub fn parts(&self) -> Parts<'_> {
        Parts {
            identifier: self.part(KEY),
            jid: self.jid(),
            node: self.node(),
            include_payload: self.include_payload(),
            client_id: self.client_id(),
            resource: self.resource(),
            language: self.language(),
        }
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.parts();
        f.debug_struct("Text")
            .field("identifier", &self.identifier())
            .field("jid", &p.jid)
            .field("node", &p.node)
            .field("include_payload", &p.include_payload)
            .field("client_id", &p.client_id)
            .field("resource", &p.resource)
            .field("language", &p.language)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_comes_back_as_it_went_in() {
        let p = Parts {
            identifier: None,
            jid: "push.example",
            node: Some("n1"),
            include_payload: Some("stripped"),
            client_id: None,
            resource: Some("phone"),
            language: Some("en"),
        };
        let t = Text::new(p);
        assert_eq!(t.parts(), p);
        assert_eq!(t.identifier(), "push.example<n1");
        assert_eq!(&*t.buf, "push.example<n1strippedphoneen");
        assert_eq!(t.client_id(), None);
    }

    #[test]
    fn no_node_and_an_empty_node_differ_but_share_the_key() {
        let none = Text::new(Parts {
            jid: "p",
            ..Default::default()
        });
        let empty = Text::new(Parts {
            jid: "p",
            node: Some(""),
            ..Default::default()
        });
        assert_eq!((none.node(), empty.node()), (None, Some("")));
        assert_eq!((none.identifier(), empty.identifier()), ("p<", "p<"));
        assert_ne!(none, empty);
    }

    #[test]
    fn a_key_of_another_shape_is_kept() {
        for key in ["legacy-key", "p<n", "p<nx", "p<<n", "q<n", ""] {
            let t = Text::new(Parts {
                identifier: Some(key),
                jid: "p",
                node: Some("n"),
                language: Some("de"),
                ..Default::default()
            });
            assert_eq!(t.identifier(), key);
            assert_eq!(
                (t.jid(), t.node(), t.language()),
                ("p", Some("n"), Some("de"))
            );
            assert_eq!(t.parts().identifier.is_none(), key == "p<n", "{key}");
        }
    }

    #[test]
    fn empty_strings_are_present() {
        let t = Text::new(Parts {
            jid: "",
            node: Some(""),
            include_payload: Some(""),
            client_id: Some(""),
            resource: Some(""),
            language: Some(""),
            identifier: None,
        });
        let p = t.parts();
        assert_eq!(
            (
                p.node,
                p.include_payload,
                p.client_id,
                p.resource,
                p.language
            ),
            (Some(""), Some(""), Some(""), Some(""), Some(""))
        );
        assert_eq!(t.identifier(), "<");
    }
}
