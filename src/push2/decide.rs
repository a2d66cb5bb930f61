//! Which of a Push 2.0 registration's matches a push meets, and how it is
//! sent: the priority, the VoIP flag, the send profile.

use super::settings::{
    Filter, Match, Push2, Send, MATCH_ALL, MATCH_ARCHIVED, MATCH_ARCHIVED_WITH_BODY,
    MATCH_IMPORTANT,
};
use crate::facts::StanzaFacts;
use crate::importance::is_important;
use crate::vocabulary::PushKind;

/// A notification's `<priority/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A call's propose and its end.
    High,
    /// An important message, a subscription request, a wake-up, a ping.
    Normal,
    /// Anything else that matched (a reaction, a read elsewhere).
    Low,
}

impl Priority {
    /// The element's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// How one push goes to a Push 2.0 registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// Its priority.
    pub priority: Priority,
    /// A call's signal: `<voip/>`.
    pub voip: bool,
    /// The match whose send profile is used (an encrypted one if any
    /// matched).
    pub send: usize,
}

/// What the decision reads besides the push.
pub struct Context<'a> {
    /// The user's bare JID.
    pub user_bare: &'a str,
    /// The user's name in the chat (a room nick from the bookmarks), else
    /// the account's name.
    pub nick: &'a str,
    /// Whether another session of the user was active within that many
    /// seconds (a match's `<grace/>`).
    pub active_within: &'a dyn Fn(f64) -> bool,
}

use crate::bare;

fn host(jid: &str) -> &str {
    let bare = bare(jid);
    bare.rsplit('@').next().unwrap_or(bare)
}

/// The stanza is in the user's archive: it carries the user's own
/// `<stanza-id/>` (mod_mam adds it), or came by the archive's event.
fn archived(facts: &StanzaFacts, kind: PushKind, user_bare: &str) -> bool {
    kind == PushKind::Mam || facts.stanza_ids.iter().any(|(by, _)| by == user_bare)
}

fn has_body(facts: &StanzaFacts) -> bool {
    facts.encrypted || facts.body.as_deref().is_some_and(|b| !b.is_empty())
}

/// A filtered chat's message gets through on a mention or a reply.
fn filtered_through(f: &Filter, facts: &StanzaFacts, ctx: &Context<'_>) -> bool {
    let mention = f.mention
        && !ctx.nick.is_empty()
        && facts.body.as_deref().is_some_and(|b| b.contains(ctx.nick));
    let reply = f.reply
        && facts.reply_to.as_deref().is_some_and(|to| {
            to == ctx.user_bare
                || (bare(to) == bare(facts.from.as_deref().unwrap_or_default())
                    && to.split_once('/').map(|(_, nick)| nick) == Some(ctx.nick))
        });
    mention || reply
}

/// Whether one match takes a message.
fn message_matches(m: &Match, facts: &StanzaFacts, kind: PushKind, ctx: &Context<'_>) -> bool {
    let wanted = match m.profile.as_str() {
        MATCH_ALL => true,
        MATCH_IMPORTANT => is_important(facts) || facts.reactions,
        MATCH_ARCHIVED => archived(facts, kind, ctx.user_bare),
        MATCH_ARCHIVED_WITH_BODY => archived(facts, kind, ctx.user_bare) && has_body(facts),
        _ => false,
    };
    if !wanted {
        return false;
    }
    let from = facts.from.as_deref().unwrap_or_default();
    let filter = m
        .filters
        .iter()
        .find(|f| f.jid == from || f.jid == bare(from) || f.jid == host(from));
    filter.is_none_or(|f| filtered_through(f, facts, ctx))
}

/// The wire of a push whose decision was not kept (a grace period's
/// release): by importance, through the first encrypted send (else the
/// first send).
pub fn fallback(p: &Push2, important: bool) -> Wire {
    let send = p
        .matches
        .iter()
        .position(|m| matches!(m.send, Send::Encrypted(_)))
        .unwrap_or(0);
    Wire {
        priority: match important {
            true => Priority::Normal,
            false => Priority::Low,
        },
        voip: false,
        send,
    }
}

/// The wire of a push of `kind` (about `facts`, the effective message, if
/// any) to a registration with these settings; `None`: no match takes it.
pub fn decide(
    p: &Push2,
    kind: PushKind,
    facts: Option<&StanzaFacts>,
    ctx: &Context<'_>,
) -> Option<Wire> {
    let known = |m: &Match| {
        matches!(
            m.profile.as_str(),
            MATCH_ALL | MATCH_IMPORTANT | MATCH_ARCHIVED | MATCH_ARCHIVED_WITH_BODY
        )
    };
    let (priority, voip) = match kind {
        PushKind::Call | PushKind::CallEnd | PushKind::Urgent => (Priority::High, true),
        PushKind::Wake | PushKind::Ping | PushKind::Subscription => (Priority::Normal, false),
        PushKind::Read => (Priority::Low, false),
        _ => match facts {
            Some(f) if is_important(f) => (Priority::Normal, false),
            _ => (Priority::Low, false),
        },
    };
    let takes = |m: &Match| -> bool {
        if !known(m) {
            return false;
        }
        let graced = kind.is_graced() && m.grace.is_some_and(|g| (ctx.active_within)(g));
        if graced {
            return false;
        }
        match kind {
            PushKind::Call | PushKind::CallEnd | PushKind::Urgent => true,
            PushKind::Wake | PushKind::Ping => true,
            PushKind::Subscription | PushKind::Read => {
                matches!(m.profile.as_str(), MATCH_ALL | MATCH_IMPORTANT)
            }
            _ => facts.is_some_and(|f| message_matches(m, f, kind, ctx)),
        }
    };
    let mut first = None;
    for (i, m) in p.matches.iter().enumerate() {
        if takes(m) {
            if matches!(m.send, Send::Encrypted(_)) {
                first = Some(i);
                break;
            }
            first = first.or(Some(i));
        }
    }
    first.map(|send| Wire {
        priority,
        voip,
        send,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push2::settings::{Filter, SEND_NOTIFY_ONLY};

    fn settings(profile: &str, filters: Vec<Filter>, grace: Option<f64>) -> Push2 {
        Push2 {
            client: "c".into(),
            matches: vec![Match {
                profile: profile.into(),
                grace,
                filters,
                send: Send::NotifyOnly,
            }],
        }
    }

    fn message(xml: &str) -> StanzaFacts {
        StanzaFacts::from_element(&xml.parse().unwrap())
    }

    fn ctx(active: &dyn Fn(f64) -> bool) -> Context<'_> {
        Context {
            user_bare: "juliet@capulet.example",
            nick: "Juliet",
            active_within: active,
        }
    }

    const NEVER: &dyn Fn(f64) -> bool = &|_| false;

    #[test]
    fn profiles() {
        let chat = message("<message xmlns='jabber:client' from='romeo@montague.example/a' type='chat'><body>hi</body></message>");
        let archived = message("<message xmlns='jabber:client' from='romeo@montague.example/a' type='chat'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.example' id='A1'/></message>");
        let receipt = message("<message xmlns='jabber:client' from='romeo@montague.example/a'><received xmlns='urn:xmpp:receipts' id='x'/><stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.example' id='A2'/></message>");
        let reaction = message("<message xmlns='jabber:client' from='romeo@montague.example/a' type='chat'><reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>👍</reaction></reactions></message>");
        let c = ctx(NEVER);
        let at = |profile: &str, f: &StanzaFacts| {
            decide(
                &settings(profile, vec![], None),
                PushKind::Offline,
                Some(f),
                &c,
            )
        };
        assert_eq!(at(MATCH_ALL, &receipt).unwrap().priority, Priority::Low);
        assert_eq!(
            at(MATCH_IMPORTANT, &chat).unwrap().priority,
            Priority::Normal
        );
        assert!(at(MATCH_IMPORTANT, &receipt).is_none());
        assert_eq!(
            at(MATCH_IMPORTANT, &reaction).unwrap().priority,
            Priority::Low
        );
        assert!(at(MATCH_ARCHIVED, &chat).is_none());
        assert!(at(MATCH_ARCHIVED, &archived).is_some());
        assert!(at(MATCH_ARCHIVED, &receipt).is_some());
        assert!(at(MATCH_ARCHIVED_WITH_BODY, &archived).is_some());
        assert!(at(MATCH_ARCHIVED_WITH_BODY, &receipt).is_none());
        assert!(at("urn:example:unknown", &chat).is_none());
        let call = decide(
            &settings(MATCH_ARCHIVED, vec![], None),
            PushKind::Call,
            Some(&chat),
            &c,
        )
        .unwrap();
        assert_eq!((call.priority, call.voip), (Priority::High, true));
    }

    #[test]
    fn a_filtered_chat_pushes_on_a_mention_or_a_reply() {
        let room = |body: &str, reply: &str| {
            message(&format!(
                "<message xmlns='jabber:client' from='room@muc.example/Tybalt' type='groupchat'><body>{body}</body>{reply}</message>"
            ))
        };
        let muted = settings(
            MATCH_ALL,
            vec![Filter {
                jid: "room@muc.example".into(),
                mention: true,
                reply: true,
            }],
            None,
        );
        let c = ctx(NEVER);
        let at = |f: &StanzaFacts| decide(&muted, PushKind::Groupchat, Some(f), &c);
        assert!(at(&room("hello all", "")).is_none());
        assert!(at(&room("hello Juliet", "")).is_some());
        assert!(at(&room(
            "ok",
            "<reply xmlns='urn:xmpp:reply:0' to='room@muc.example/Juliet' id='1'/>"
        ))
        .is_some());
        assert!(at(&room(
            "ok",
            "<reply xmlns='urn:xmpp:reply:0' to='room@muc.example/Romeo' id='1'/>"
        ))
        .is_none());
        let silent = settings(
            MATCH_ALL,
            vec![Filter {
                jid: "room@muc.example".into(),
                mention: false,
                reply: false,
            }],
            None,
        );
        assert!(decide(
            &silent,
            PushKind::Groupchat,
            Some(&room("hello Juliet", "")),
            &c
        )
        .is_none());
    }

    #[test]
    fn grace_holds_messages_not_calls_and_encrypted_sends_win() {
        let chat = message("<message xmlns='jabber:client' from='romeo@montague.example/a' type='chat'><body>hi</body></message>");
        let graced = settings(MATCH_ALL, vec![], Some(60.0));
        let active = |secs: f64| secs >= 60.0;
        let c = ctx(&active);
        assert!(decide(&graced, PushKind::Offline, Some(&chat), &c).is_none());
        assert!(decide(&graced, PushKind::Call, Some(&chat), &c).is_some());
        let mut two = settings(MATCH_ALL, vec![], None);
        let (_, p) = crate::push2::settings::from_enable(
            &crate::push2::settings::tests::borogove_enable(""),
            ["x@y", "x@y/z"],
        )
        .unwrap();
        two.matches.push(Match {
            profile: MATCH_ALL.into(),
            ..p.matches[0].clone()
        });
        assert_eq!(two.matches[0].send.profile(), SEND_NOTIFY_ONLY);
        assert_eq!(
            decide(&two, PushKind::Offline, Some(&chat), &ctx(NEVER))
                .unwrap()
                .send,
            1
        );
    }
}
