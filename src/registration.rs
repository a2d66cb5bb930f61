//! Push registrations: the record stored per device, and the checks an
//! `<enable/>` request must pass before it becomes one.
//!
//! The stored layout is the reference module's, so that an admin can switch
//! modules either way: per user, a map `"jid<node"` → record with the fields
//! `jid`, `node`, `include_payload`, `options` (the publish-options form,
//! serialised the way `util.stanza.preserialize` does), `timestamp`,
//! `client_id`, `resource` and `language`.

use crate::counts::Counts;
use crate::error::StanzaError;
use crate::fields::Field;
use crate::form::Form;
pub use crate::text::{Parts, Text};
use crate::{NS_DATA_FORMS, NS_PUBLISH_OPTIONS};
use minidom::Element;
use xmpp_parsers::jid::Jid;

/// Longest node name accepted (bytes).
pub const MAX_NODE_LEN: usize = 1024;
/// Largest publish-options form accepted (bytes of names, attributes and
/// text, plus [`ELEMENT_COST`] per element).
pub const MAX_OPTIONS_SIZE: usize = 8 * 1024;
/// Most elements in a publish-options form (a form of 30 fields fits).
pub const MAX_OPTIONS_ELEMENTS: usize = 64;
/// What an element counts for in [`element_size`] beyond its text: an
/// empty element is not free.
pub const ELEMENT_COST: usize = 16;
/// Longest `include_payload` accepted (bytes).
pub const MAX_INCLUDE_PAYLOAD_LEN: usize = 64;
/// Longest `xml:lang` accepted (bytes; BCP 47 tags are far shorter).
pub const MAX_LANGUAGE_LEN: usize = 64;
/// Longest SASL2 `client_id` kept (XEP-0388 suggests a UUID); a longer one
/// is not kept, and the device is known by its resource instead.
pub const MAX_CLIENT_ID_LEN: usize = 256;
/// Longest resource kept (Prosody's own bound is 1023 bytes).
pub const MAX_RESOURCE_LEN: usize = 1023;

/// One device's push registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The key and the strings of the record, packed ([`crate::text`]).
    text: Text,
    /// The `<x xmlns='jabber:x:data'/>` publish-options form, echoed on
    /// every push; packed (its root carries its namespace).
    pub options: Option<Form>,
    /// Seconds since the epoch when it was enabled.
    pub timestamp: f64,
    /// Consecutive app-server errors (stored as `error_count`, when not 0,
    /// so the count survives a restart; the reference ignores the field).
    pub errors: u32,
    /// Fields other modules set (`cloud_notify/registration` handlers, or
    /// another module version), kept as they were: see [`crate::fields`].
    pub extra: Vec<(String, Field)>,
    /// Unread counts (stored as `message_counts` when not empty; the
    /// reference ignores the field): see [`crate::counts`].
    pub counts: Counts,
    /// In memory only: when the latest push delivered to it was sent, and
    /// since when its app server has been unreachable (route failures and
    /// unanswered pushes, no result since).
    pub health: Health,
    /// A Push 2.0 registration's settings (`jid` is then its service;
    /// shared: a push's copy of the registration costs no deep copy);
    /// `None`: an XEP-0357 one.
    pub push2: Option<std::rc::Rc<crate::push2::Push2>>,
}

/// A registration's reachability, in memory only (a restart starts it
/// again: never a removal too early).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Health {
    /// When the latest push delivered was sent (0: none yet).
    pub delivered_sent_at: f64,
    /// Since when nothing but route failures and silence came back.
    pub unreachable_since: Option<f64>,
}

impl Registration {
    /// A registration of these strings, enabled at `timestamp`, with no
    /// publish options, errors, other fields or counts.
    pub fn new(parts: Parts<'_>, timestamp: f64) -> Registration {
        Registration {
            text: Text::new(parts),
            options: None,
            timestamp,
            errors: 0,
            extra: Vec::new(),
            counts: Counts::default(),
            health: Health::default(),
            push2: None,
        }
    }

    /// A Push 2.0 registration of the device `key` (its SASL2 client id,
    /// else its resource) to `service`, enabled at `timestamp`.
    pub fn push2(key: &str, service: &str, settings: crate::push2::Push2, timestamp: f64) -> Self {
        let identifier = crate::push2::identifier(key);
        let mut reg = Registration::new(
            Parts {
                identifier: Some(&identifier),
                jid: service,
                ..Default::default()
            },
            timestamp,
        );
        reg.push2 = Some(std::rc::Rc::new(settings));
        reg
    }

    /// The device a Push 2.0 registration belongs to (its store key).
    pub fn push2_key(&self) -> Option<&str> {
        self.push2
            .as_ref()
            .and_then(|_| crate::push2::store_key(self.identifier()))
    }

    /// Whether `other` is this XEP-0357 registration enabled again as it
    /// is: the same strings, publish-options and other modules' fields,
    /// whatever its time, errors, counts and health.
    pub fn same_record(&self, other: &Registration) -> bool {
        self.push2.is_none()
            && other.push2.is_none()
            && self.text == other.text
            && self.options == other.options
            && self.extra == other.extra
    }

    /// The storage key: `jid<node` (or another a stored record had).
    pub fn identifier(&self) -> &str {
        self.text.identifier()
    }

    /// The app server's JID.
    pub fn jid(&self) -> &str {
        self.text.jid()
    }

    /// The app server's node for this device.
    pub fn node(&self) -> Option<&str> {
        self.text.node()
    }

    /// The `include_payload` attribute some clients send (kept as the reference keeps it).
    pub fn include_payload(&self) -> Option<&str> {
        self.text.include_payload()
    }

    /// The device's SASL2 client id, if it had one.
    pub fn client_id(&self) -> Option<&str> {
        self.text.client_id()
    }

    /// The session's resource (kept only without a client id).
    pub fn resource(&self) -> Option<&str> {
        self.text.resource()
    }

    /// The `xml:lang` of the enable IQ.
    pub fn language(&self) -> Option<&str> {
        self.text.language()
    }

    /// The strings, borrowed.
    pub fn parts(&self) -> Parts<'_> {
        self.text.parts()
    }

    /// Replaces the strings (`Text::new(Parts { …, ..reg.parts() })`).
    pub fn set_text(&mut self, text: Text) {
        self.text = text;
    }

    /// A copy for a push: everything but the counts (the push carries
    /// their total, and `push_info` stays the reference's shape). Kept a
    /// copy on purpose: sharing the strings and form (`Rc`) would save one
    /// or two small allocations per push and cost every registration in
    /// memory its counters (measured: 319 → 340 bytes per loaded user).
    pub fn for_push(&self) -> Registration {
        Registration {
            text: self.text.clone(),
            options: self.options.clone(),
            timestamp: self.timestamp,
            errors: self.errors,
            extra: self.extra.clone(),
            counts: Counts::default(),
            health: self.health,
            push2: self.push2.clone(),
        }
    }
}

/// The reference module's key for a registration.
pub fn identifier(jid: &str, node: Option<&str>) -> String {
    format!("{}<{}", jid, node.unwrap_or(""))
}

/// An `<enable/>` request as read from the stanza.
#[derive(Debug, Clone, Default)]
pub struct EnableRequest {
    /// The `jid` attribute: the app server.
    pub jid: Option<String>,
    /// The app server's node for this device.
    pub node: Option<String>,
    /// The `include_payload` attribute some clients send (kept as the reference keeps it).
    pub include_payload: Option<String>,
    /// The first `jabber:x:data` child, if any.
    pub form: Option<Element>,
    /// The IQ's `xml:lang`.
    pub language: Option<String>,
}

impl EnableRequest {
    /// Parses the IQ's first child, `<enable jid=… node=… include_payload=…>`
    /// with an optional publish-options form (its first `jabber:x:data`
    /// child), as the binding converted it; `language` is the IQ's
    /// `xml:lang`. `None` (no child element at all): `bad-request`. The
    /// checks on the values are [`registration_from_enable`]'s.
    ///
    /// xmpp-parsers' `push::Enable` is stricter than the reference module
    /// (it refuses a bad JID before we can say which, and drops the
    /// `include_payload` attribute some clients send), so this one parser
    /// reads the element as the reference does.
    pub fn from_element(
        enable: Option<&Element>,
        language: Option<String>,
    ) -> Result<EnableRequest, StanzaError> {
        let enable = enable.ok_or_else(|| StanzaError::bad_request("Missing enable element"))?;
        let attr = |name: &str| enable.attr(name).map(str::to_owned);
        Ok(EnableRequest {
            jid: attr("jid"),
            node: attr("node"),
            include_payload: attr("include_payload"),
            form: enable.get_child("x", NS_DATA_FORMS).cloned(),
            language,
        })
    }
}

/// Who asks.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    /// The user's bare JID (`user@host`).
    pub bare_jid: String,
    /// The sending session's full JID.
    pub full_jid: Option<String>,
    /// The device's SASL2 client id, if it had one.
    pub client_id: Option<String>,
    /// The session's resource (kept only without a client id).
    pub resource: Option<String>,
}

/// Normalises a JID string, or says why it isn't one.
pub fn normalize_jid(jid: &str) -> Result<String, StanzaError> {
    Jid::new(jid)
        .map(|j| j.to_string())
        .map_err(|e| StanzaError::jid_malformed(format!("Invalid push service JID: {e}")))
}

/// A rough byte size of an element, to bound what a client may make us store.
pub fn element_size(elem: &Element) -> usize {
    let mut size = ELEMENT_COST + elem.name().len() + elem.ns().len();
    for ((ns, name), value) in elem.attrs().iter() {
        size += ns.len() + name.len() + value.len();
    }
    for text in elem.texts() {
        size += text.len();
    }
    for child in elem.children() {
        size += element_size(child);
    }
    size
}

/// The number of elements in a tree, the root included.
pub fn element_count(elem: &Element) -> usize {
    1 + elem.children().map(element_count).sum::<usize>()
}

/// Checks a publish-options form: a data form of type `submit` or `form`
/// (clients differ) whose fields but `fixed` ones have a `var`, and whose
/// FORM_TYPE, when present, is pubsub#publish-options: one field named
/// FORM_TYPE of type `hidden` (or, in a submitted form, `text-single` or
/// none; XEP-0068), with one value. The rest is the app server's to
/// judge: the form is echoed to it as the client sent it.
///
/// Read in place: a parse into xmpp-parsers' `DataForm` asked malloc for
/// over a kilobyte per enable (its fields' `Vec`; see rule 117).
pub fn check_publish_options(form: &Element) -> Result<(), StanzaError> {
    if element_size(form) > MAX_OPTIONS_SIZE || element_count(form) > MAX_OPTIONS_ELEMENTS {
        return Err(StanzaError::not_acceptable("Publish options too large"));
    }
    let submitted = match form.attr("type") {
        Some("submit") => true,
        Some("form") => false,
        _ => {
            return Err(StanzaError::bad_request(
                "Publish options form must be of type 'submit' or 'form'",
            ))
        }
    };
    let invalid =
        |why: &str| StanzaError::bad_request(format!("Invalid publish options form: {why}"));
    let mut form_type = None;
    for field in form.children().filter(|c| c.is("field", NS_DATA_FORMS)) {
        let type_ = field.attr("type");
        let Some(var) = field.attr("var") else {
            if type_ == Some("fixed") {
                continue;
            }
            return Err(invalid("a field without a var"));
        };
        let typed = match type_ {
            Some("hidden") => true,
            None | Some("text-single") => submitted,
            _ => false,
        };
        if var != "FORM_TYPE" || !typed {
            continue;
        }
        if form_type.is_some() {
            return Err(invalid("more than one FORM_TYPE"));
        }
        let mut values = field.children().filter(|c| c.is("value", NS_DATA_FORMS));
        match (values.next(), values.next()) {
            (Some(value), None) => form_type = Some(value.text()),
            _ => return Err(invalid("FORM_TYPE takes one value")),
        }
    }
    match form_type.as_deref() {
        None | Some(NS_PUBLISH_OPTIONS) => Ok(()),
        Some(other) => Err(StanzaError::bad_request(format!(
            "Publish options FORM_TYPE must be '{NS_PUBLISH_OPTIONS}', not '{other}'"
        ))),
    }
}

/// Validates an `<enable/>` and builds the registration it asks for.
pub fn registration_from_enable(
    req: EnableRequest,
    who: &Requester,
    now: f64,
) -> Result<Registration, StanzaError> {
    let raw_jid = req
        .jid
        .as_deref()
        .ok_or_else(|| StanzaError::bad_request("Missing jid"))?;
    let jid = normalize_jid(raw_jid)?;
    if jid == who.bare_jid || who.full_jid.as_deref() == Some(jid.as_str()) {
        return Err(StanzaError::bad_request("JID must be different from ours"));
    }
    let too_long =
        |value: &Option<String>, max: usize| value.as_ref().is_some_and(|v| v.len() > max);
    if too_long(&req.node, MAX_NODE_LEN) {
        return Err(StanzaError::not_acceptable("Node name too long"));
    }
    if too_long(&req.include_payload, MAX_INCLUDE_PAYLOAD_LEN) {
        return Err(StanzaError::not_acceptable("include_payload too long"));
    }
    if too_long(&req.language, MAX_LANGUAGE_LEN) {
        return Err(StanzaError::not_acceptable("xml:lang too long"));
    }
    let options = match req.form {
        Some(form) => {
            debug_assert!(form.is("x", NS_DATA_FORMS));
            check_publish_options(&form)?;
            let packed = Form::from_element(&form, "")
                .map_err(|_| StanzaError::not_acceptable("Publish options too large"))?;
            Some(packed)
        }
        None => None,
    };
    // Every stored string is bounded: an overlong client id or resource
    // is not kept.
    let client_id = who
        .client_id
        .as_deref()
        .filter(|c| c.len() <= MAX_CLIENT_ID_LEN);
    let resource = match client_id {
        None => who
            .resource
            .as_deref()
            .filter(|r| r.len() <= MAX_RESOURCE_LEN),
        Some(_) => None,
    };
    let mut reg = Registration::new(
        Parts {
            identifier: None,
            jid: &jid,
            node: req.node.as_deref(),
            include_payload: req.include_payload.as_deref(),
            client_id,
            resource,
            language: req.language.as_deref(),
        },
        now,
    );
    reg.options = options;
    Ok(reg)
}

/// Whether `old` was enabled from the device now enabling `new`, for the
/// same app server: then `new` replaces it (a token rotation or a
/// reinstall leaves one registration per device and app server, not a dead
/// one pushed until the device cap drops it). The device is its SASL2
/// `client_id` where `old` kept one, else its resource: `resource` is the
/// enabling session's (a registration keeps it only without a client id).
/// A record that kept neither is no one's device.
pub fn same_device(old: &Registration, new: &Registration, resource: Option<&str>) -> bool {
    // (one of each protocol may stay; a Push 2.0 device has one identifier)
    if old.jid() != new.jid() || old.push2.is_some() || new.push2.is_some() {
        return false;
    }
    match old.client_id() {
        Some(id) => new.client_id() == Some(id),
        None => old
            .resource()
            .is_some_and(|r| Some(r) == new.resource().or(resource)),
    }
}

/// Whether a `<disable jid=… node=…/>` covers this registration. Without a
/// node, every registration with that app server does.
pub fn disable_matches(reg: &Registration, jid: &str, node: Option<&str>) -> bool {
    if reg.push2.is_some() {
        return false; // (an XEP-0357 disable leaves Push 2.0 alone)
    }
    let same_jid = reg.jid() == jid || normalize_jid(jid).is_ok_and(|n| n == reg.jid());
    same_jid && node.is_none_or(|n| reg.node() == Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    // XEP-0357 Example 9 (enable with publish options).
    const ENABLE_FORM: &str = "<x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
        <field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";

    #[test]
    fn parses_an_enable_element() {
        // XEP-0357 Example 9, with the attribute some clients add.
        let xml = format!(
            "<enable xmlns='urn:xmpp:push:0' jid='push-5.client.example' \
             node='yxs32uqsflafdk3iuqo' include_payload='plain'>{ENABLE_FORM}</enable>"
        );
        let elem: Element = xml.parse().unwrap();
        let req = EnableRequest::from_element(Some(&elem), Some("en".into())).unwrap();
        assert_eq!(req.jid.as_deref(), Some("push-5.client.example"));
        assert_eq!(req.node.as_deref(), Some("yxs32uqsflafdk3iuqo"));
        assert_eq!(req.include_payload.as_deref(), Some("plain"));
        assert_eq!(req.language.as_deref(), Some("en"));
        assert!(req.form.as_ref().is_some_and(|f| f.is("x", NS_DATA_FORMS)));
        let reg = registration_from_enable(req, &who(), 1.0).unwrap();
        assert_eq!(
            reg.identifier(),
            "push-5.client.example<yxs32uqsflafdk3iuqo"
        );

        // A form in another namespace is not the publish options.
        let other: Element = "<enable xmlns='urn:xmpp:push:0' jid='p.example'>\
            <x xmlns='urn:example'/></enable>"
            .parse()
            .unwrap();
        let req = EnableRequest::from_element(Some(&other), None).unwrap();
        assert!(req.form.is_none() && req.node.is_none());

        let missing = EnableRequest::from_element(None, None).unwrap_err();
        assert_eq!(missing.condition, "bad-request");
    }

    fn who() -> Requester {
        Requester {
            bare_jid: "romeo@example.com".into(),
            full_jid: Some("romeo@example.com/orchard".into()),
            client_id: None,
            resource: Some("orchard".into()),
        }
    }

    fn req(jid: Option<&str>, node: Option<&str>, form: Option<&str>) -> EnableRequest {
        EnableRequest {
            jid: jid.map(Into::into),
            node: node.map(Into::into),
            form: form.map(|f| f.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn xep_example_enables() {
        let r = registration_from_enable(
            req(
                Some("push-5.client.example"),
                Some("yxs32uqsflafdk3iuqo"),
                Some(ENABLE_FORM),
            ),
            &who(),
            1000.0,
        )
        .unwrap();
        assert_eq!(r.identifier(), "push-5.client.example<yxs32uqsflafdk3iuqo");
        assert_eq!(r.resource(), Some("orchard"));
        assert!(r.options.is_some());
        assert_eq!(r.timestamp, 1000.0);
    }

    #[test]
    fn missing_own_and_malformed_jids_are_refused() {
        let e = registration_from_enable(req(None, Some("n"), None), &who(), 0.0).unwrap_err();
        assert_eq!((e.type_, e.condition), ("modify", "bad-request"));
        let e = registration_from_enable(
            req(Some("romeo@example.com/orchard"), None, None),
            &who(),
            0.0,
        )
        .unwrap_err();
        assert_eq!(e.condition, "bad-request");
        let e = registration_from_enable(req(Some("romeo@example.com"), None, None), &who(), 0.0)
            .unwrap_err();
        assert_eq!(e.condition, "bad-request");
        let e = registration_from_enable(req(Some("a@@b"), None, None), &who(), 0.0).unwrap_err();
        assert_eq!(e.condition, "jid-malformed");
        let e = registration_from_enable(req(Some(""), None, None), &who(), 0.0).unwrap_err();
        assert_eq!(e.condition, "jid-malformed");
    }

    #[test]
    fn publish_options_form_type_is_checked() {
        let wrong = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:example</value></field></x>";
        let e = registration_from_enable(
            req(Some("push.example"), Some("n"), Some(wrong)),
            &who(),
            0.0,
        )
        .unwrap_err();
        assert_eq!(e.condition, "bad-request");
        let form = "<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field></x>";
        assert!(registration_from_enable(
            req(Some("push.example"), Some("n"), Some(form)),
            &who(),
            0.0
        )
        .is_ok());
        let no_type = "<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>s</value></field></x>";
        assert!(registration_from_enable(
            req(Some("push.example"), Some("n"), Some(no_type)),
            &who(),
            0.0
        )
        .is_ok());
        let result = "<x xmlns='jabber:x:data' type='result'/>";
        assert!(registration_from_enable(
            req(Some("push.example"), Some("n"), Some(result)),
            &who(),
            0.0
        )
        .is_err());
    }

    /// The check's verdict on a form, `Ok` or the error's text.
    fn checked(form: &str) -> Result<(), String> {
        let elem: Element = form.parse().unwrap();
        check_publish_options(&elem).map_err(|e| {
            assert_eq!(e.condition, "bad-request", "{form}");
            e.text.unwrap_or_default()
        })
    }

    #[test]
    fn publish_options_forms_as_xep_0068_reads_them() {
        const X: &str = "<x xmlns='jabber:x:data' type=";
        let po = "<value>http://jabber.org/protocol/pubsub#publish-options</value>";
        // XEP-0357 Example 9 (Conversations' and Siskin's shape), Monal's
        assert_eq!(checked(ENABLE_FORM), Ok(()));
        let monal = format!("{X}'submit'><field var='FORM_TYPE' type='hidden'>{po}</field><field var='pushModule'><value>monalProdiOS</value></field></x>");
        assert_eq!(checked(&monal), Ok(()));
        // A `fixed` field needs no var; any other does.
        assert_eq!(
            checked(&format!(
                "{X}'submit'><field type='fixed'><value>note</value></field></x>"
            )),
            Ok(())
        );
        let unnamed =
            checked(&format!("{X}'submit'><field><value>s</value></field></x>")).unwrap_err();
        assert!(unnamed.contains("a field without a var"), "{unnamed}");
        // One FORM_TYPE, with one value.
        let two = format!("{X}'submit'><field var='FORM_TYPE'>{po}</field><field var='FORM_TYPE' type='hidden'>{po}</field></x>");
        assert!(checked(&two)
            .unwrap_err()
            .contains("more than one FORM_TYPE"));
        let values = format!("{X}'submit'><field var='FORM_TYPE'>{po}{po}</field></x>");
        assert!(checked(&values)
            .unwrap_err()
            .contains("FORM_TYPE takes one value"));
        let none = format!("{X}'submit'><field var='FORM_TYPE'/></x>");
        assert!(checked(&none)
            .unwrap_err()
            .contains("FORM_TYPE takes one value"));
        // In a form (not submitted), FORM_TYPE is a hidden field: a
        // text-single one so named is just a field.
        let visible = format!("{X}'form'><field var='FORM_TYPE' type='text-single'><value>urn:example</value></field></x>");
        assert_eq!(checked(&visible), Ok(()));
        let wrong = checked(&format!(
            "{X}'form'><field var='FORM_TYPE' type='hidden'><value>urn:example</value></field></x>"
        ));
        assert!(wrong.unwrap_err().contains("not 'urn:example'"));
        // Other types, or none, are refused.
        for other in [
            format!("{X}'cancel'/>"),
            "<x xmlns='jabber:x:data'/>".to_owned(),
        ] {
            assert!(checked(&other)
                .unwrap_err()
                .contains("must be of type 'submit' or 'form'"));
        }
        // What only the app server knows is left to it (echoed as sent).
        let extra = format!("{X}'submit'><title>t</title><field var='k' type='x-example'><value>v</value><x-example xmlns='urn:example'/></field></x>");
        assert_eq!(checked(&extra), Ok(()));
    }

    #[test]
    fn oversized_input_is_refused() {
        let long = "n".repeat(MAX_NODE_LEN + 1);
        let e = registration_from_enable(req(Some("push.example"), Some(&long), None), &who(), 0.0)
            .unwrap_err();
        assert_eq!(e.condition, "not-acceptable");
        let big = format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>{}</value></field></x>",
            "s".repeat(MAX_OPTIONS_SIZE)
        );
        let e = registration_from_enable(
            req(Some("push.example"), Some("n"), Some(&big)),
            &who(),
            0.0,
        )
        .unwrap_err();
        assert_eq!(e.condition, "not-acceptable");
        // Hundreds of empty elements carry no text but still count.
        let empty = format!(
            "<x xmlns='jabber:x:data' type='submit'>{}</x>",
            "<field/>".repeat(MAX_OPTIONS_ELEMENTS)
        );
        let e = registration_from_enable(
            req(Some("push.example"), Some("n"), Some(&empty)),
            &who(),
            0.0,
        )
        .unwrap_err();
        assert_eq!(e.condition, "not-acceptable");
        let mut r = req(Some("push.example"), Some("n"), None);
        r.include_payload = Some("p".repeat(MAX_INCLUDE_PAYLOAD_LEN + 1));
        let e = registration_from_enable(r, &who(), 0.0).unwrap_err();
        assert_eq!(e.condition, "not-acceptable");
        let mut r = req(Some("push.example"), Some("n"), None);
        r.language = Some("l".repeat(MAX_LANGUAGE_LEN + 1));
        let e = registration_from_enable(r, &who(), 0.0).unwrap_err();
        assert_eq!(e.condition, "not-acceptable");
        // What real clients send fits.
        let mut r = req(Some("push.example"), Some("n"), Some(ENABLE_FORM));
        r.include_payload = Some("stripped".into());
        r.language = Some("en-GB".into());
        assert!(registration_from_enable(r, &who(), 0.0).is_ok());
    }

    #[test]
    fn client_id_replaces_resource() {
        let mut w = who();
        w.client_id = Some("abc".into());
        let r =
            registration_from_enable(req(Some("push.example"), Some("n"), None), &w, 0.0).unwrap();
        assert_eq!(r.client_id(), Some("abc"));
        assert_eq!(r.resource(), None);
        // Overlong: not kept (the resource stands in).
        w.client_id = Some("c".repeat(MAX_CLIENT_ID_LEN + 1));
        w.resource = Some("phone".into());
        let r =
            registration_from_enable(req(Some("push.example"), Some("n"), None), &w, 0.0).unwrap();
        assert_eq!((r.client_id(), r.resource()), (None, Some("phone")));
    }

    #[test]
    fn disable_matching() {
        let r = registration_from_enable(req(Some("push.example"), Some("n1"), None), &who(), 0.0)
            .unwrap();
        assert!(disable_matches(&r, "push.example", Some("n1")));
        assert!(disable_matches(&r, "push.example", None));
        assert!(!disable_matches(&r, "push.example", Some("n2")));
        assert!(!disable_matches(&r, "other.example", None));
    }
}
