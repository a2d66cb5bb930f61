//! A Push 2.0 registration's settings: what an `<enable
//! xmlns='urn:xmpp:push2:0'>` asks for, checked and bounded, and kept in
//! `mod_push2`'s stored layout.

use super::b64;
use super::ece::UaKeys;
use super::vapid::{self, ES256};
use crate::error::StanzaError;
use crate::registration::normalize_jid;
use minidom::Element;
use p256::SecretKey;

/// The protocol's namespace.
pub const NS_PUSH2: &str = "urn:xmpp:push2:0";
/// The send profile that carries nothing but the client and priority.
pub const SEND_NOTIFY_ONLY: &str = "urn:xmpp:push2:send:notify-only:0";
/// The send profile that carries the message, encrypted and signed.
pub const SEND_ENCRYPTED: &str = "urn:xmpp:push2:send:sce+rfc8291+rfc8292:0";
/// Match profile: every stanza.
pub const MATCH_ALL: &str = "urn:xmpp:push2:match:all";
/// Match profile: important stanzas (and reactions, at low priority).
pub const MATCH_IMPORTANT: &str = "urn:xmpp:push2:match:important";
/// Match profile: what the user's archive stores.
pub const MATCH_ARCHIVED: &str = "urn:xmpp:push2:match:archived";
/// Match profile: what the user's archive stores, with a body.
pub const MATCH_ARCHIVED_WITH_BODY: &str = "urn:xmpp:push2:match:archived-with-body";

/// Longest `<client/>` (bytes): an endpoint URL or token.
pub const MAX_CLIENT_LEN: usize = 2048;
/// Longest JID accepted for the service or a filter (RFC 7622's bound).
pub const MAX_JID_LEN: usize = 3071;
/// Most `<match/>` elements.
pub const MAX_MATCHES: usize = 8;
/// Most `<filter/>` elements per match.
pub const MAX_FILTERS: usize = 64;
/// Most `<jwt-claim/>` elements per match.
pub const MAX_CLAIMS: usize = 16;
/// Longest claim name, profile URI or `jwt-alg` (bytes).
pub const MAX_NAME_LEN: usize = 256;
/// Longest claim value (bytes).
pub const MAX_CLAIM_LEN: usize = 1024;
/// Longest `ua-public`, `auth-secret` or `jwt-key` text (bytes; a P-256
/// PKCS#8 key is about 190 characters of base64).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest grace period accepted (seconds).
pub const MAX_GRACE: f64 = 7.0 * 24.0 * 3600.0;

/// A chat the match is filtered for: muted but for mentions or replies.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The chat: a bare or full JID, or a domain.
    pub jid: String,
    /// Push on a mention of the user.
    pub mention: bool,
    /// Push on a reply to the user.
    pub reply: bool,
}

/// The encrypted send profile's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Encrypted {
    /// `ua-public`, as the client sent it (base64).
    pub ua_public: String,
    /// `auth-secret`, as the client sent it (base64).
    pub auth_secret: String,
    /// `jwt-alg` (only ES256).
    pub jwt_alg: Option<String>,
    /// `jwt-key`, as the client sent it.
    pub jwt_key: Option<String>,
    /// `jwt-claim`s, by name, in the order sent.
    pub jwt_claims: Vec<(String, String)>,
    /// The user agent's keys, parsed.
    pub keys: UaKeys,
    /// The signing key, parsed.
    pub signer: Option<SecretKey>,
}

/// How a matched stanza is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Send {
    /// Client and priority only.
    NotifyOnly,
    /// The message, encrypted (RFC 8291) and signed (RFC 8292).
    Encrypted(Box<Encrypted>),
}

impl Send {
    /// The profile's namespace.
    pub fn profile(&self) -> &'static str {
        match self {
            Send::NotifyOnly => SEND_NOTIFY_ONLY,
            Send::Encrypted(_) => SEND_ENCRYPTED,
        }
    }
}

/// One `<match/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The match profile's URI (one this module does not know never matches).
    pub profile: String,
    /// Seconds of the user's activity elsewhere that hold this match back.
    pub grace: Option<f64>,
    /// Filtered chats.
    pub filters: Vec<Filter>,
    /// How to send.
    pub send: Send,
}

/// A Push 2.0 registration's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Push2 {
    /// `<client/>`: the push service's name for this client.
    pub client: String,
    /// The matches, in order.
    pub matches: Vec<Match>,
}

fn text_of(parent: &Element, name: &str, max: usize) -> Result<Option<String>, StanzaError> {
    let Some(child) = parent.children().find(|c| c.name() == name) else {
        return Ok(None);
    };
    let text = child.text();
    let text = text.trim();
    if text.len() > max {
        return Err(StanzaError::bad_request(format!("<{name}/> too long")));
    }
    Ok(Some(text.to_owned()))
}

/// The keys of an encrypted send, checked.
pub fn encrypted(
    ua_public: String,
    auth_secret: String,
    jwt_alg: Option<String>,
    jwt_key: Option<String>,
    jwt_claims: Vec<(String, String)>,
) -> Result<Encrypted, StanzaError> {
    let bad = |what: &str| StanzaError::bad_request(what.to_owned());
    let raw_public = b64::decode(&ua_public).ok_or_else(|| bad("ua-public is not base64"))?;
    let raw_auth = b64::decode(&auth_secret).ok_or_else(|| bad("auth-secret is not base64"))?;
    let keys = UaKeys::new(&raw_public, &raw_auth)
        .ok_or_else(|| bad("ua-public must be a P-256 point and auth-secret 16 bytes"))?;
    let signer = match (&jwt_alg, &jwt_key) {
        (None, _) => None,
        (Some(alg), _) if alg != ES256 => {
            return Err(bad("Unsupported jwt-alg: only ES256"));
        }
        (Some(_), None) => return Err(bad("Missing jwt-key")),
        (Some(_), Some(key)) => {
            Some(vapid::signing_key(key).ok_or_else(|| bad("jwt-key is not a P-256 PKCS#8 key"))?)
        }
    };
    Ok(Encrypted {
        ua_public,
        auth_secret,
        jwt_alg,
        jwt_key,
        jwt_claims,
        keys,
        signer,
    })
}

fn send_of(send: &Element) -> Result<Send, StanzaError> {
    if send.ns() == SEND_NOTIFY_ONLY {
        return Ok(Send::NotifyOnly);
    }
    let need = |name: &str| -> Result<String, StanzaError> {
        text_of(send, name, MAX_KEY_LEN)?
            .ok_or_else(|| StanzaError::bad_request(format!("Missing <{name}/>")))
    };
    let mut claims = Vec::new();
    for claim in send.children().filter(|c| c.name() == "jwt-claim") {
        if claims.len() == MAX_CLAIMS {
            return Err(StanzaError::bad_request("Too many jwt-claim elements"));
        }
        let name = claim.attr("name").unwrap_or_default();
        let value = claim.text();
        if name.is_empty() || name.len() > MAX_NAME_LEN || value.len() > MAX_CLAIM_LEN {
            return Err(StanzaError::bad_request("Bad jwt-claim"));
        }
        claims.retain(|(n, _): &(String, String)| n != name);
        claims.push((name.to_owned(), value));
    }
    Ok(Send::Encrypted(Box::new(encrypted(
        need("ua-public")?,
        need("auth-secret")?,
        text_of(send, "jwt-alg", MAX_NAME_LEN)?,
        text_of(send, "jwt-key", MAX_KEY_LEN)?,
        claims,
    )?)))
}

fn match_of(m: &Element) -> Result<Option<Match>, StanzaError> {
    let profile = m.attr("profile").unwrap_or_default();
    if profile.is_empty() || profile.len() > MAX_NAME_LEN {
        return Err(StanzaError::bad_request("A match needs a profile"));
    }
    let grace = match text_of(m, "grace", 32)? {
        None => None,
        Some(g) => match g.parse::<f64>() {
            Ok(g) if (0.0..=MAX_GRACE).contains(&g) => Some(g),
            _ => return Err(StanzaError::bad_request("Bad grace")),
        },
    };
    let mut filters = Vec::new();
    for f in m.children().filter(|c| c.name() == "filter") {
        if filters.len() == MAX_FILTERS {
            return Err(StanzaError::bad_request("Too many filter elements"));
        }
        let jid = f.attr("jid").unwrap_or_default();
        if jid.is_empty() || jid.len() > MAX_JID_LEN {
            return Err(StanzaError::bad_request("A filter needs a jid"));
        }
        filters.push(Filter {
            jid: normalize_jid(jid)?,
            mention: f.children().any(|c| c.name() == "mention"),
            reply: f.children().any(|c| c.name() == "reply"),
        });
    }
    // A send profile this module does not know: the match is left out.
    let send = m.children().find(|c| {
        c.name() == "send" && matches!(c.ns().as_str(), SEND_NOTIFY_ONLY | SEND_ENCRYPTED)
    });
    let Some(send) = send else { return Ok(None) };
    Ok(Some(Match {
        profile: profile.to_owned(),
        grace,
        filters,
        send: send_of(send)?,
    }))
}

/// Parses and checks an `<enable xmlns='urn:xmpp:push2:0'>`: the service
/// (normalised), and the settings. `own`: the user's bare JID and the
/// session's full JID, which the service must not be.
pub fn from_enable(enable: &Element, own: [&str; 2]) -> Result<(String, Push2), StanzaError> {
    let service = text_of(enable, "service", MAX_JID_LEN)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| StanzaError::bad_request("Missing service"))?;
    let service = normalize_jid(&service)?;
    if own.contains(&service.as_str()) {
        return Err(StanzaError::bad_request("JID must be different from ours"));
    }
    let client = text_of(enable, "client", MAX_CLIENT_LEN)?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| StanzaError::bad_request("Missing client"))?;
    let mut matches = Vec::new();
    for m in enable.children().filter(|c| c.name() == "match") {
        if matches.len() == MAX_MATCHES {
            return Err(StanzaError::bad_request("Too many match elements"));
        }
        matches.extend(match_of(m)?);
    }
    if matches.is_empty() {
        return Err(StanzaError::bad_request(
            "No match with a supported send profile",
        ));
    }
    Ok((service, Push2 { client, matches }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    pub const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    /// An enable as Borogove sends it (keys: RFC 8291's example and a
    /// generated PKCS#8 key).
    pub fn borogove_enable(extra: &str) -> Element {
        format!(
            "<enable xmlns='urn:xmpp:push2:0'><service>push.example</service>\
             <client>https://push.example/ep/1</client>\
             <match profile='urn:xmpp:push2:match:important'><grace>30</grace>\
             <filter jid='room@muc.example'><mention/><reply/></filter>\
             <send xmlns='urn:xmpp:push2:send:sce+rfc8291+rfc8292:0'>\
             <ua-public>{UA_PUBLIC}</ua-public><auth-secret>{AUTH}</auth-secret>\
             <jwt-alg>ES256</jwt-alg><jwt-key>{}</jwt-key>\
             <jwt-claim name='aud'>https://push.example</jwt-claim></send></match>{extra}</enable>",
            crate::push2::vapid::tests::KEY
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn a_borogove_enable_is_read() {
        let (service, p) =
            from_enable(&borogove_enable(""), ["romeo@example", "romeo@example/a"]).unwrap();
        assert_eq!(service, "push.example");
        assert_eq!(p.client, "https://push.example/ep/1");
        let m = &p.matches[0];
        assert_eq!((m.profile.as_str(), m.grace), (MATCH_IMPORTANT, Some(30.0)));
        assert_eq!(
            m.filters,
            vec![Filter {
                jid: "room@muc.example".into(),
                mention: true,
                reply: true
            }]
        );
        let Send::Encrypted(e) = &m.send else {
            panic!()
        };
        assert_eq!(
            e.jwt_claims,
            vec![("aud".to_owned(), "https://push.example".to_owned())]
        );
        assert!(e.signer.is_some());
    }

    fn refused(xml: &str) -> String {
        let e: Element = xml.parse().unwrap();
        from_enable(&e, ["romeo@example", "romeo@example/a"])
            .unwrap_err()
            .text
            .unwrap()
    }

    #[test]
    fn bad_input_is_a_bad_request() {
        let ns = "xmlns='urn:xmpp:push2:0'";
        let only = "<match profile='urn:xmpp:push2:match:all'><send xmlns='urn:xmpp:push2:send:notify-only:0'/></match>";
        assert_eq!(
            refused(&format!("<enable {ns}><client>c</client>{only}</enable>")),
            "Missing service"
        );
        assert_eq!(
            refused(&format!(
                "<enable {ns}><service>s.example</service>{only}</enable>"
            )),
            "Missing client"
        );
        assert_eq!(
            refused(&format!(
                "<enable {ns}><service>romeo@example</service><client>c</client>{only}</enable>"
            )),
            "JID must be different from ours"
        );
        assert_eq!(
            refused(&format!(
                "<enable {ns}><service>s.example</service><client>c</client></enable>"
            )),
            "No match with a supported send profile"
        );
        let keys = |public: &str, alg: &str, key: &str| {
            format!(
                "<enable {ns}><service>s.example</service><client>c</client>\
                 <match profile='urn:xmpp:push2:match:all'><send xmlns='{SEND_ENCRYPTED}'>\
                 <ua-public>{public}</ua-public><auth-secret>{AUTH}</auth-secret>\
                 <jwt-alg>{alg}</jwt-alg><jwt-key>{key}</jwt-key></send></match></enable>"
            )
        };
        let key = crate::push2::vapid::tests::KEY;
        let mut off = b64::decode(UA_PUBLIC).unwrap();
        off[64] ^= 1;
        assert!(refused(&keys(&b64::encode(&off), "ES256", key)).contains("P-256 point"));
        assert!(refused(&keys(UA_PUBLIC, "HS256", key)).contains("Unsupported jwt-alg"));
        assert!(refused(&keys(UA_PUBLIC, "ES256", "AAAA")).contains("PKCS#8"));
        let long = "x".repeat(MAX_CLIENT_LEN + 1);
        assert!(refused(&format!(
            "<enable {ns}><service>s.example</service><client>{long}</client>{only}</enable>"
        ))
        .contains("too long"));
    }
}
