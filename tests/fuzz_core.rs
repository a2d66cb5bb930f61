//! Fuzzes the pure core: random and mutated stanzas (seeded from XEP
//! example XML and what real clients send) through every decision, random
//! `<enable/>` requests through the registration checks, and a push service
//! driven through enables, disables, pushes on every path, smacks batches,
//! MUC messages and bounces, and app-server answers. A panic is a failure;
//! the invariants checked are the bounds the core promises.
//!
//! `FUZZ_CORE_INPUTS` (default 20,000; `make fuzz` runs 10,000,000) and
//! `FUZZ_SEED`; run with `--nocapture` to see the figures.

use cloud_notify::chat_settings::{mentions, Level, Pings};
use cloud_notify::config::Config;
use cloud_notify::facts::StanzaFacts;
use cloud_notify::importance::{is_important, is_urgent};
use cloud_notify::muc::{mentioned_nicks, wants, Member, Policy, Reference};
use cloud_notify::notification::{notification, publish_iq, summarize, MAX_BODY_BYTES};
use cloud_notify::registration::{registration_from_enable, EnableRequest, Requester};
use cloud_notify::service::{PushJob, PushKind, PushService, Response, Targets};
use minidom::Element;
use std::time::Instant;

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Seeds: XEP-0357, -0280, -0384, -0353, -0359, -0372, -0333, -0085 shapes.
const SEEDS: &[&str] = &[
    "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example' type='chat' id='m1'><body>Wherefore art thou, Romeo?</body></message>",
    "<message xmlns='jabber:client' from='romeo@montague.example' to='romeo@montague.example/orchard' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example/garden' type='chat'><body>What man art thou?</body></message></forwarded></received></message>",
    "<message xmlns='jabber:client' from='romeo@montague.example' type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='juliet@capulet.example/balcony' type='chat'><body>I have night's cloak</body></message></forwarded></sent></message>",
    "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='27183'><key rid='31415'>BASE64</key><iv>BASE64</iv></header><payload>BASE64</payload></encrypted><store xmlns='urn:xmpp:hints'/></message>",
    "<message xmlns='jabber:client' from='juliet@capulet.example/phone' to='romeo@montague.example'><propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>",
    "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example' id='x'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' id='de305d54-75b4-431b-adb2-eb6b9e546013' by='romeo@montague.example'/></message>",
    "<message xmlns='jabber:client' from='room@muc.example/Romeo' type='groupchat' id='g1'><body>Hello Juliet</body><reference xmlns='urn:xmpp:reference:0' begin='6' end='12' type='mention' uri='xmpp:room@muc.example/Juliet'/></message>",
    "<message xmlns='jabber:client' from='room@muc.example' type='groupchat'><subject>Fire</subject></message>",
    "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>",
    "<presence xmlns='jabber:client' from='juliet@capulet.example' type='subscribe'/>",
    "<iq xmlns='jabber:client' type='error' id='push-1' from='push.example'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
];

const FORMS: &[&str] = &[
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>",
    "<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field></x>",
    "<x xmlns='jabber:x:data' type='result'/>",
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:example</value></field></x>",
];

const WORDS: &[&str] = &[
    "",
    "hi",
    "romeo@montague.example",
    "juliet@capulet.example/balcony",
    "push.example",
    "a@@b",
    "@",
    "/",
    "0",
    "-1",
    "99999999999999999999",
    "Grüße, Jürgen!",
    "💥",
    "room@muc.example/Romeo",
    "\u{202e}",
    "mention",
    "7",
    "13",
    "chat",
    "groupchat",
    "error",
    "headline",
];

const NAMES: &[&str] = &[
    "body",
    "subject",
    "received",
    "sent",
    "forwarded",
    "message",
    "encrypted",
    "propose",
    "stanza-id",
    "x",
    "field",
    "value",
    "reference",
    "openpgp",
    "error",
    "item",
];

const NAMESPACES: &[&str] = &[
    "jabber:client",
    "urn:xmpp:carbons:2",
    "urn:xmpp:forward:0",
    "jabber:x:data",
    "urn:xmpp:sid:0",
    "eu.siacs.conversations.axolotl",
    "urn:xmpp:omemo:2",
    "urn:xmpp:jingle-message:0",
    "urn:xmpp:reference:0",
    "urn:xmpp:openpgp:0",
    "jabber:x:encrypted",
    "urn:example",
];

fn word(r: &mut Rng) -> String {
    match r.below(12) {
        0 => r.pick(WORDS).repeat(1 + r.below(200)),
        1 => (0..r.below(30))
            .map(|_| char::from_u32(r.below(0x3000) as u32 + 0x20).unwrap_or('x'))
            .collect(),
        _ => (*r.pick(WORDS)).to_owned(),
    }
}

/// A random element tree.
fn tree(r: &mut Rng, depth: usize) -> Element {
    let mut b = Element::builder(*r.pick(NAMES), *r.pick(NAMESPACES));
    for attr in [
        "from", "to", "id", "type", "by", "begin", "end", "uri", "var",
    ] {
        if r.chance(4) {
            b = b.attr(
                minidom::rxml::NcName::try_from(attr).expect("a name"),
                word(r),
            );
        }
    }
    let mut e = b.build();
    if depth > 0 {
        for _ in 0..r.below(5) {
            if r.chance(3) {
                e.append_text_node(word(r));
            } else {
                e.append_child(tree(r, depth - 1));
            }
        }
    }
    e
}

/// A seed mutated as text: bytes flipped, pieces cut, duplicated or
/// spliced in from another seed. Most results do not parse; those that do
/// go on.
fn mutated(r: &mut Rng) -> Option<Element> {
    let mut s = r.pick(SEEDS).as_bytes().to_vec();
    for _ in 0..1 + r.below(4) {
        let at = r.below(s.len().max(1));
        match r.below(5) {
            0 => s[at] = (r.next() & 0x7f) as u8,
            1 => {
                let end = (at + r.below(20)).min(s.len());
                s.drain(at..end);
            }
            2 => {
                let end = (at + r.below(40)).min(s.len());
                let piece = s[at..end].to_vec();
                s.splice(at..at, piece);
            }
            3 => {
                let other = r.pick(SEEDS).as_bytes();
                let from = r.below(other.len());
                let end = (from + r.below(60)).min(other.len());
                s.splice(at..at, other[from..end].iter().copied());
            }
            _ => {}
        }
    }
    std::str::from_utf8(&s).ok()?.parse().ok()
}

fn stanza(r: &mut Rng) -> Option<Element> {
    match r.below(4) {
        0 => mutated(r),
        1 => {
            let depth = 1 + r.below(5);
            Some(tree(r, depth))
        }
        _ => {
            let mut e: Element = r.pick(SEEDS).parse().ok()?;
            for _ in 0..r.below(3) {
                let depth = r.below(4);
                e.append_child(tree(r, depth));
            }
            Some(e)
        }
    }
}

const ERROR_TYPES: &[&str] = &["wait", "cancel", "modify", "auth", "💥"];

fn error_type(r: &mut Rng) -> &'static str {
    ERROR_TYPES[r.below(ERROR_TYPES.len())]
}

fn config(r: &mut Rng) -> Config {
    Config {
        with_body: r.chance(2),
        with_sender: r.chance(2),
        with_counts: !r.chance(4),
        grace_period: *r.pick(&[0, 0, 1, 5, 30]),
        max_devices: 1 + r.below(4),
        max_errors: 1 + r.below(4) as u32,
        cache_size: 1 + r.below(6),
        max_pending: 1 + r.below(50),
        muc_policy: if r.chance(2) {
            Policy::All
        } else {
            Policy::Mentions
        },
        ..Config::default()
    }
}

/// The privacy oracle: a push says what the options let out, never more,
/// and never a body the sender did not write (`sent`: the body of the
/// stanza it is about, where known).
fn private(cfg: &Config, job: &PushJob, sent: Option<&str>) {
    let s = &job.summary;
    if !cfg.with_sender {
        assert_eq!(
            s.sender, None,
            "a sender without push_notification_with_sender"
        );
    }
    if let Some(body) = s.body.as_deref() {
        if body != cfg.important_body {
            assert!(cfg.with_body, "a body without push_notification_with_body");
            assert!(body.len() <= MAX_BODY_BYTES, "a body past its bound");
            if let Some(sent) = sent {
                assert!(sent.starts_with(body), "a body the sender did not write");
            }
        }
    }
    if !cfg.with_counts {
        assert!(s.message_count <= 1 && s.pending_subscriptions.is_none());
    }
}

#[test]
fn fuzz_core() {
    let inputs: u64 = std::env::var("FUZZ_CORE_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let users = ["romeo", "juliet", "nurse", "tybalt", "benvolio"];
    let mut cfg = config(&mut r);
    let mut service = PushService::new("montague.example", cfg.clone());
    let (mut parsed, mut pushes, mut enables) = (0u64, 0u64, 0u64);
    let mut ids: Vec<String> = Vec::new();
    let started = Instant::now();
    // The clock: mostly small steps, now and then minutes or hours (grace
    // windows end, calls are forgotten, pushes expire).
    let mut now = 0.0;
    for i in 0..inputs {
        if i % 2_000 == 1_999 {
            // (every option in turn, within one run)
            cfg = config(&mut r);
            service = PushService::new("montague.example", cfg.clone());
            ids.clear();
        }
        now += match r.below(100) {
            0 => 3600.0,
            1..=3 => 60.0 * r.below(20) as f64,
            _ => r.below(200) as f64 / 100.0,
        };
        let user = *r.pick(&users);
        let bare = format!("{user}@montague.example");
        match r.below(8) {
            // A stanza through every decision.
            0..=2 => {
                let Some(e) = stanza(&mut r) else { continue };
                parsed += 1;
                let facts = StanzaFacts::from_element(&e).received_by(&bare);
                let _ = (
                    is_important(&facts),
                    is_urgent(&facts),
                    facts.stable_key(&bare),
                );
                let summary = summarize(&Config::default(), Some(&facts));
                let _ = notification(&summary);
                if !service.is_loaded(user) {
                    service.load(user, Vec::new());
                }
                let key = facts.stable_key(&bare);
                let kind = *r.pick(&[PushKind::Offline, PushKind::Groupchat]);
                // (another of the user's sessions active now and then: the
                // grace period holds)
                if r.chance(4) {
                    let wrote = StanzaFacts::from_element(&tree(&mut r, 2)).received_by(&bare);
                    let _ = service.outgoing(user, (None, None), &wrote, now);
                }
                let mut body_sent = facts.effective().body.clone();
                let jobs = match r.below(3) {
                    0 => {
                        service.notify(user, Some(&facts), key.as_deref(), Targets::All, kind, now)
                    }
                    1 => service.archived(user, &facts, None, &word(&mut r), Some(&[]), now),
                    _ => {
                        let session = format!("{bare}/{}", r.below(3));
                        if let Some(reg) = service.registrations(user).and_then(|regs| regs.first())
                        {
                            let identifier = reg.identifier().to_owned();
                            service.smacks_add(
                                &session,
                                user,
                                &identifier,
                                facts.clone(),
                                &word(&mut r),
                            );
                        }
                        // (a batch's push may be about an earlier stanza of it)
                        body_sent = None;
                        service
                            .smacks_flush(&session, now)
                            .map(|f| [f.important, f.unimportant].concat())
                    }
                };
                for job in jobs.unwrap_or_default() {
                    private(&cfg, &job, body_sent.as_deref());
                    let iq = publish_iq(
                        "montague.example",
                        &job.id,
                        &job.registration,
                        job.payload(),
                    );
                    assert_eq!(iq.attr("to"), Some(job.registration.jid()));
                    ids.push(job.id);
                    pushes += 1;
                }
                // MUC: mentions, the room's message memory, bounces.
                let refs: Vec<Reference> = (0..r.below(4))
                    .map(|_| Reference {
                        type_: Some("mention".into()),
                        begin: Some(word(&mut r)),
                        end: Some(word(&mut r)),
                    })
                    .collect();
                if let Some(body) = facts.body.as_deref() {
                    let _ = mentioned_nicks(body, &refs);
                }
                let _ = wants(Policy::Mentions, &facts, &refs);
                let room = "room@muc.example";
                service.muc_wants(room, &facts, refs);
                let level = [Level::Always, Level::OnMention, Level::Never][r.below(3)];
                let members = [Member {
                    jid: bare.clone(),
                    joined: r.chance(2),
                    outcast: r.chance(5),
                    setting: r.chance(2).then_some(level),
                    nick: r.chance(2).then(|| word(&mut r)),
                }];
                let pings = Pings {
                    uris: vec![word(&mut r)],
                    nicks: vec![word(&mut r)],
                    reply_to: r.chance(2).then(|| word(&mut r)),
                };
                let _ = mentions(
                    facts.body.as_deref(),
                    &pings,
                    &bare,
                    Some(&word(&mut r)),
                    room,
                );
                service.muc_push(room, (&facts, &pings, r.chance(2)), &members, now);
                let echoed = word(&mut r);
                let _ = service.muc_bounced(
                    room,
                    &word(&mut r),
                    "service-unavailable",
                    &[user],
                    Some(&echoed),
                );
            }
            // An enable (or a disable, or an admin removal).
            3 | 4 => {
                let req = EnableRequest {
                    jid: (!r.chance(6)).then(|| {
                        (*r.pick(&["push.example", "push2.example", "a@@b", ""])).to_owned()
                    }),
                    node: (!r.chance(4)).then(|| word(&mut r)),
                    include_payload: r.chance(5).then(|| word(&mut r)),
                    form: if r.chance(2) {
                        r.pick(FORMS).parse().ok()
                    } else {
                        None
                    },
                    language: r.chance(3).then(|| word(&mut r)),
                };
                let who = Requester {
                    bare_jid: bare.clone(),
                    full_jid: Some(format!("{bare}/phone")),
                    ..Default::default()
                };
                let _ = registration_from_enable(req.clone(), &who, now);
                if !service.is_loaded(user) {
                    service.load(user, Vec::new());
                }
                let plan = match r.below(4) {
                    0 => service
                        .plan_disable(user, req.jid.as_deref(), req.node.as_deref())
                        .ok()
                        .flatten(),
                    1 => service.plan_remove_all(user),
                    _ => service
                        .enable_request(req, &who, now)
                        .ok()
                        .and_then(|reg| service.plan_enable(user, reg, None)),
                };
                if let Some(plan) = plan {
                    if r.chance(8) {
                        continue; // the store write failed: nothing is committed
                    }
                    enables += 1;
                    service.commit(user, plan);
                }
                let regs = service.registrations(user).map_or(0, <[_]>::len);
                assert!(regs <= cfg.max_devices, "device cap broken: {regs}");
            }
            // An app server's answer: to a push, or anything.
            5 | 6 => {
                let id = if !ids.is_empty() && !r.chance(4) {
                    ids[r.below(ids.len())].clone()
                } else {
                    word(&mut r)
                };
                let from = *r.pick(&["push.example", "push2.example", "evil.example"]);
                let condition = word(&mut r);
                let answer = if r.chance(2) {
                    Response::Result
                } else {
                    Response::Error {
                        type_: error_type(&mut r),
                        condition: &condition,
                    }
                };
                let _ = service.response(&id, from, answer, now);
            }
            // Time passes: what was held or retried goes out.
            _ => {
                for (_, jobs) in service.retries_due(now) {
                    for job in jobs {
                        private(&cfg, &job, None);
                        ids.push(job.id);
                        pushes += 1;
                    }
                }
                service.expire(now + r.below(300) as f64);
                let _ = service.muc_admit(
                    &format!("u{}@evil{}.example", r.below(50), r.below(3)),
                    r.chance(3),
                    now,
                );
                service.muc_note(
                    &format!("u{}@evil.example", r.below(50)),
                    r.chance(2),
                    r.chance(2),
                );
            }
        }
        assert!(
            service.pending() <= cfg.max_pending,
            "pending table past push_max_pending"
        );
        if ids.len() > 10_000 {
            ids.drain(..5_000);
        }
    }
    assert!(
        pushes > 0,
        "no push in {inputs} inputs: the fuzzer tests nothing"
    );
    assert!(enables > 0, "no enable in {inputs} inputs");
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "core fuzz: {inputs} inputs ({parsed} stanzas parsed, {enables} committed changes, {pushes} pushes), no panic, {elapsed:.1} s, {:.2} µs/input, seed {seed}",
        elapsed * 1e6 / inputs as f64
    );
}
