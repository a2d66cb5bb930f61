//! The notification: its summary (what the app server may learn) and the
//! pubsub publish IQ that carries it (XEP-0357 §5).

use crate::config::Config;
use crate::facts::StanzaFacts;
use crate::importance::is_important;
use crate::registration::Registration;
use crate::{NS_CLIENT, NS_PUSH_SUMMARY};
use minidom::rxml::NcName;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::ns;
use xmpp_parsers::push::Notification;

/// The `urn:xmpp:push:summary` fields of one push.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// The registration's unread count ([`crate::counts`]): important
    /// messages pushed to it since its device last had a session, less
    /// the chats read since on any device.
    pub message_count: u32,
    /// `pending-subscription-count`: on a push for a subscription request.
    pub pending_subscriptions: Option<u32>,
    /// `last-message-sender`: only with `push_notification_with_sender`.
    pub sender: Option<String>,
    /// `last-message-body`: the real body with `push_notification_with_body`
    /// (never an encrypted message's fallback body), otherwise the
    /// configured placeholder for important stanzas.
    pub body: Option<String>,
    /// Not a summary field: how a push to a Push 2.0 registration goes
    /// (kept with the summary through retries; `None` on XEP-0357 pushes).
    pub wire: Option<crate::push2::Wire>,
}

impl Summary {
    /// A push carrying a body is an important (high-priority) one.
    pub fn important(&self) -> bool {
        self.body.is_some()
    }
}

/// Most bytes of a body a push carries (with `push_notification_with_body`):
/// what a phone shows of a message, well within APNs' and FCM's 4 KiB, so
/// no stranger's long message can make the app server's push fail. Cut at
/// a character boundary, never inside one.
pub const MAX_BODY_BYTES: usize = 256;

/// Most bytes of a sender a push carries (with
/// `push_notification_with_sender`); a longer JID is left out, not cut (a
/// cut JID would name someone else).
pub const MAX_SENDER_BYTES: usize = 256;

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What a push about `stanza` may say. With no stanza (a ping), nothing.
pub fn summarize(config: &Config, stanza: Option<&StanzaFacts>) -> Summary {
    let mut summary = Summary {
        message_count: 1,
        ..Default::default()
    };
    let Some(facts) = stanza else {
        return summary;
    };
    let msg = facts.effective();
    if config.with_sender {
        summary.sender = msg.from.clone().filter(|f| f.len() <= MAX_SENDER_BYTES);
    }
    // An encrypted message's <body/> is its client's fallback text ("This
    // message is OMEMO encrypted."), not what the sender wrote.
    let real_body = msg
        .body
        .as_deref()
        .filter(|b| !b.is_empty() && !msg.encrypted);
    if config.with_body && real_body.is_some() && is_important(facts) {
        summary.body = real_body.map(|b| cut_utf8(b, MAX_BODY_BYTES).to_owned());
    } else if !config.important_body.is_empty() && is_important(facts) {
        summary.body = Some(config.important_body.clone());
    }
    summary
}

/// The summary as a data form.
pub fn summary_form(summary: &Summary) -> DataForm {
    // (sized to the fields and the FORM_TYPE field `DataForm::new` puts
    // first: grown, the Vec would take room for four, 1,056 bytes, a
    // request beyond what glibc's per-thread cache holds, which makes its
    // malloc first merge the small freed chunks its fastbins keep)
    let room = 2
        + usize::from(summary.pending_subscriptions.is_some())
        + usize::from(summary.sender.is_some())
        + usize::from(summary.body.is_some());
    let mut fields = Vec::with_capacity(room);
    fields.push(Field::text_single(
        "message-count",
        &summary.message_count.to_string(),
    ));
    if let Some(n) = summary.pending_subscriptions {
        fields.push(Field::text_single(
            "pending-subscription-count",
            &n.to_string(),
        ));
    }
    if let Some(sender) = &summary.sender {
        fields.push(Field::new("last-message-sender", FieldType::JidSingle).with_value(sender));
    }
    if let Some(body) = &summary.body {
        fields.push(Field::text_single("last-message-body", body));
    }
    DataForm::new(DataFormType::Submit, NS_PUSH_SUMMARY, fields)
}

/// The `<notification xmlns='urn:xmpp:push:0'/>` payload.
pub fn notification(summary: &Summary) -> Element {
    Notification {
        form: Some(summary_form(summary)),
        payloads: Vec::new(),
    }
    .into()
}

fn attr(name: &'static str) -> NcName {
    // Only ever called with the constant names below, all valid NCNames.
    NcName::try_from(name).unwrap_or_else(|_| unreachable!("invalid constant attribute name"))
}

/// What writes a tree, element by element: the core's element builder
/// ([`publish_iq`]) and the binding's raw writer of util.stanza objects.
/// [`write_publish`] says what the publish IQ is, once, for both.
pub trait TreeWriter {
    /// Opens an element, in its own namespace `ns` (`None`: its parent's),
    /// with the attributes that are there, and `children` elements to come.
    fn open(
        &mut self,
        name: &'static str,
        ns: Option<&'static str>,
        attrs: &[(&'static str, Option<&str>)],
        children: usize,
    );
    /// Writes the notification payload as the open element's child.
    fn payload(&mut self);
    /// Writes `<publish-options>` with the registration's form as the
    /// open element's child.
    fn options(&mut self, form: &crate::form::Form);
    /// Closes the element opened last (a child of the one before).
    fn close(&mut self);
}

/// The publish IQ, from the host to the registered app server (XEP-0357
/// §5): `<iq type='set'><pubsub><publish node=…><item><notification/></item></publish>
/// <publish-options>…</publish-options></pubsub></iq>`.
pub fn write_publish(w: &mut impl TreeWriter, host: &str, id: &str, reg: &Registration) {
    let options = reg.options.as_ref();
    let iq_attrs = [
        ("type", Some("set")),
        ("id", Some(id)),
        ("from", Some(host)),
        ("to", Some(reg.jid())),
    ];
    w.open("iq", None, &iq_attrs, 1);
    w.open(
        "pubsub",
        Some(ns::PUBSUB),
        &[],
        1 + usize::from(options.is_some()),
    );
    w.open("publish", None, &[("node", reg.node())], 1);
    w.open("item", None, &[], 1);
    w.payload();
    w.close();
    w.close();
    if let Some(form) = options {
        w.options(form);
    }
    w.close();
    w.close();
}

/// [`TreeWriter`] building an [`Element`].
struct ElementWriter {
    /// The open elements, outermost first.
    open: Vec<Element>,
    /// The payload, until it is written.
    payload: Option<Element>,
    /// The closed root.
    done: Option<Element>,
}

impl ElementWriter {
    fn append(&mut self, child: Element) {
        match self.open.last_mut() {
            Some(parent) => {
                parent.append_child(child);
            }
            None => self.done = Some(child),
        }
    }
}

impl TreeWriter for ElementWriter {
    fn open(
        &mut self,
        name: &'static str,
        ns: Option<&'static str>,
        attrs: &[(&'static str, Option<&str>)],
        _children: usize,
    ) {
        let parent_ns = self.open.last().map_or(NS_CLIENT.to_owned(), |p| p.ns());
        let mut elem = Element::builder(name, ns.map_or(parent_ns, str::to_owned));
        for &(key, value) in attrs {
            if let Some(value) = value {
                elem = elem.attr(attr(key), value);
            }
        }
        self.open.push(elem.build());
    }

    fn payload(&mut self) {
        if let Some(payload) = self.payload.take() {
            self.append(payload);
        }
    }

    fn options(&mut self, form: &crate::form::Form) {
        self.open("publish-options", None, &[], 1);
        let ns = self.open.last().map_or(NS_CLIENT.to_owned(), |p| p.ns());
        self.append(form.to_element(&ns));
        self.close();
    }

    fn close(&mut self) {
        if let Some(elem) = self.open.pop() {
            self.append(elem);
        }
    }
}

/// The publish IQ ([`write_publish`]) as an element.
pub fn publish_iq(host: &str, id: &str, reg: &Registration, payload: Element) -> Element {
    let mut w = ElementWriter {
        open: Vec::new(),
        payload: Some(payload),
        done: None,
    };
    write_publish(&mut w, host, id, reg);
    w.done
        .unwrap_or_else(|| unreachable!("write_publish closes what it opens"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::{Parts, Text};

    fn facts(xml: &str) -> StanzaFacts {
        StanzaFacts::from_element(&xml.parse::<Element>().unwrap())
    }

    fn registration(options: Option<&str>) -> Registration {
        let mut reg = Registration::new(
            Parts {
                jid: "push-5.client.example",
                node: Some("yxs32uqsflafdk3iuqo"),
                ..Default::default()
            },
            0.0,
        );
        reg.options =
            options.map(|o| crate::form::Form::from_element(&o.parse().unwrap(), "").unwrap());
        reg
    }

    const MSG: &str =
        "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' type='chat'>\
        <body>Wherefore art thou, Romeo?</body></message>";

    #[test]
    fn bodies_and_senders_are_capped_never_cut_inside_a_character() {
        let config = Config {
            with_body: true,
            with_sender: true,
            ..Config::default()
        };
        // 5,000 × "é" (two bytes each), from a long but valid JID.
        let long = "é".repeat(5000);
        let sender = format!("{}@capulet.example/balcony", "j".repeat(300));
        let xml = format!(
            "<message xmlns='jabber:client' from='{sender}' type='chat'><body>{long}</body></message>"
        );
        let summary = summarize(&config, Some(&facts(&xml)));
        let body = summary.body.unwrap();
        assert_eq!(body.len(), MAX_BODY_BYTES);
        assert!(long.starts_with(&body));
        assert_eq!(summary.sender, None, "a JID is left out, not cut");
        // One byte off a boundary: cut before the character.
        assert_eq!(cut_utf8("aé", 2), "a");
        assert_eq!(cut_utf8("short", 256), "short");
        let short = summarize(&config, Some(&facts(MSG)));
        assert_eq!(short.body.as_deref(), Some("Wherefore art thou, Romeo?"));
        assert_eq!(
            short.sender.as_deref(),
            Some("juliet@capulet.example/balcony")
        );
    }

    #[test]
    fn private_by_default() {
        let s = summarize(&Config::default(), Some(&facts(MSG)));
        assert_eq!(s.sender, None);
        assert_eq!(s.body.as_deref(), Some("New Message!"));
        assert!(s.important());
    }

    #[test]
    fn body_and_sender_when_configured() {
        let config = Config {
            with_body: true,
            with_sender: true,
            ..Config::default()
        };
        let s = summarize(&config, Some(&facts(MSG)));
        assert_eq!(s.sender.as_deref(), Some("juliet@capulet.example/balcony"));
        assert_eq!(s.body.as_deref(), Some("Wherefore art thou, Romeo?"));
    }

    #[test]
    fn with_body_encrypted_message_still_important() {
        let config = Config {
            with_body: true,
            ..Config::default()
        };
        let s = summarize(
            &config,
            Some(&facts(
                "<message xmlns='jabber:client'><encrypted xmlns='urn:xmpp:omemo:0'/></message>",
            )),
        );
        assert_eq!(s.body.as_deref(), Some("New Message!"));
    }

    #[test]
    fn with_body_an_encrypted_message_s_fallback_body_is_not_sent() {
        // What slixmpp-omemo (and Conversations, Converse) send: a fallback
        // body beside the encrypted payload.
        let config = Config {
            with_body: true,
            ..Config::default()
        };
        for payload in [
            "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'>\
             <key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cA==</payload></encrypted>",
            "<x xmlns='jabber:x:encrypted'>qANQR1DB</x>",
        ] {
            let xml = format!(
                "<message xmlns='jabber:client' type='chat'>\
                 <body>This message is OMEMO encrypted.</body>{payload}</message>"
            );
            let s = summarize(&config, Some(&facts(&xml)));
            assert_eq!(s.body.as_deref(), Some("New Message!"), "{payload}");
        }
    }

    #[test]
    fn unimportant_and_ping_have_no_body() {
        let s = summarize(
            &Config::default(),
            Some(&facts(
                "<message xmlns='jabber:client' type='headline'><body>x</body></message>",
            )),
        );
        assert!(!s.important());
        let ping = summarize(&Config::default(), None);
        assert_eq!(ping.message_count, 1);
        assert!(!ping.important());
    }

    #[test]
    fn empty_placeholder_means_no_body() {
        let config = Config {
            important_body: String::new(),
            ..Config::default()
        };
        assert!(!summarize(&config, Some(&facts(MSG))).important());
    }

    #[test]
    fn publish_matches_xep_example() {
        // XEP-0357 Example 10, with the publish-options of Example 9.
        let options = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
            <field var='secret'><value>eruio234vzxc2kla-91</value></field></x>";
        let summary = Summary {
            message_count: 1,
            sender: Some("juliet@capulet.example/balcony".into()),
            body: Some("Wherefore art thou, Romeo?".into()),

            ..Default::default()
        };
        let iq = publish_iq(
            "example.com",
            "n12",
            &registration(Some(options)),
            notification(&summary),
        );
        assert_eq!(iq.attr("to"), Some("push-5.client.example"));
        assert_eq!(iq.attr("from"), Some("example.com"));
        assert_eq!(iq.attr("type"), Some("set"));
        let pubsub = iq.get_child("pubsub", ns::PUBSUB).unwrap();
        let publish = pubsub.get_child("publish", ns::PUBSUB).unwrap();
        assert_eq!(publish.attr("node"), Some("yxs32uqsflafdk3iuqo"));
        let notif = publish
            .get_child("item", ns::PUBSUB)
            .and_then(|i| i.get_child("notification", crate::NS_PUSH))
            .unwrap();
        let parsed = Notification::try_from(notif.clone()).unwrap();
        let form = parsed.form.unwrap();
        assert_eq!(form.form_type(), Some(NS_PUSH_SUMMARY));
        let value = |var: &str| {
            form.fields
                .iter()
                .find(|f| f.var.as_deref() == Some(var))
                .map(|f| f.values[0].clone())
        };
        assert_eq!(value("message-count").as_deref(), Some("1"));
        assert_eq!(
            value("last-message-sender").as_deref(),
            Some("juliet@capulet.example/balcony")
        );
        assert_eq!(
            value("last-message-body").as_deref(),
            Some("Wherefore art thou, Romeo?")
        );
        let echoed = pubsub
            .get_child("publish-options", ns::PUBSUB)
            .and_then(|p| p.get_child("x", "jabber:x:data"))
            .unwrap();
        assert_eq!(echoed, &options.parse::<Element>().unwrap());
    }

    #[test]
    fn publish_without_node_or_options() {
        let mut reg = registration(None);
        reg.set_text(Text::new(Parts {
            node: None,
            ..reg.parts()
        }));
        let iq = publish_iq("example.com", "n1", &reg, notification(&Summary::default()));
        let pubsub = iq.get_child("pubsub", ns::PUBSUB).unwrap();
        assert_eq!(
            pubsub
                .get_child("publish", ns::PUBSUB)
                .unwrap()
                .attr("node"),
            None
        );
        assert!(pubsub.get_child("publish-options", ns::PUBSUB).is_none());
    }

    /// glibc's malloc merges the small freed chunks its fastbins keep
    /// (`malloc_consolidate`) before serving a request of 1,001 bytes or
    /// more that its per-thread cache can't: per push, a cost that grows
    /// with their number. The form of a push asks for the room of its
    /// fields only (grown, a Vec of them would take four: 1,056 bytes); by
    /// default (no sender, no body) that stays under 1,001 bytes.
    #[test]
    fn a_summary_form_takes_the_room_of_its_fields_only() {
        let summary = Summary {
            message_count: 3,
            pending_subscriptions: Some(1),
            ..Default::default()
        };
        let form = summary_form(&summary);
        assert_eq!(form.fields.len(), 3, "FORM_TYPE and the two counts");
        assert_eq!(form.fields.capacity(), form.fields.len());
        assert!(form.fields.capacity() * std::mem::size_of::<Field>() <= 1000);
        let bare = summary_form(&Summary::default());
        assert_eq!(bare.fields.capacity(), bare.fields.len());
    }
}
