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
use cloud_notify::outcome::Outcome;
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

/// The service under fuzz, and what the run counted.
struct Fuzz {
    r: Rng,
    cfg: Config,
    service: PushService,
    /// Ids of pushes sent (answers pick from them).
    ids: Vec<String>,
    /// The clock: mostly small steps, now and then minutes or hours (grace
    /// windows end, calls are forgotten, pushes expire).
    now: f64,
    parsed: u64,
    pushes: u64,
    enables: u64,
}

const HOST: &str = "montague.example";

impl Fuzz {
    fn new(seed: u64) -> Fuzz {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let cfg = config(&mut r);
        Fuzz {
            service: PushService::new(HOST, cfg.clone()),
            r,
            cfg,
            ids: Vec::new(),
            now: 0.0,
            parsed: 0,
            pushes: 0,
            enables: 0,
        }
    }

    /// Another configuration (every option in turn, within one run).
    fn reconfigure(&mut self) {
        self.cfg = config(&mut self.r);
        self.service = PushService::new(HOST, self.cfg.clone());
        self.ids.clear();
    }

    fn tick(&mut self) {
        let r = &mut self.r;
        self.now += match r.below(100) {
            0 => 3600.0,
            1..=3 => 60.0 * r.below(20) as f64,
            _ => r.below(200) as f64 / 100.0,
        };
    }

    /// Checks the pushes of an outcome, and keeps their ids.
    fn sent(&mut self, outcome: Outcome, body_sent: Option<&str>) {
        assert!(outcome.load.is_none() || outcome.pushes.is_empty());
        for pushes in outcome.pushes {
            for job in pushes.jobs {
                private(&self.cfg, &job, body_sent);
                let iq = publish_iq(HOST, &job.id, &job.registration, job.payload());
                assert_eq!(iq.attr("to"), Some(job.registration.jid()));
                self.ids.push(job.id);
                self.pushes += 1;
            }
        }
    }

    /// A stanza through every decision, and through one of the paths.
    fn stanza(&mut self, user: &str) {
        let bare = format!("{user}@{HOST}");
        let Some(e) = stanza(&mut self.r) else { return };
        self.parsed += 1;
        let facts = StanzaFacts::from_element(&e).received_by(&bare);
        let _ = (
            is_important(&facts),
            is_urgent(&facts),
            facts.stable_key(&bare),
        );
        let _ = notification(&summarize(&Config::default(), Some(&facts)));
        if !self.service.is_loaded(user) {
            self.service.load(user, Vec::new());
        }
        let (r, now) = (&mut self.r, self.now);
        // (another of the user's sessions active now and then: the grace
        // period holds)
        if r.chance(4) {
            let wrote = StanzaFacts::from_element(&tree(r, 2)).received_by(&bare);
            let _ = self.service.on_outgoing(user, (None, None), &wrote, now);
        }
        let body_sent = facts.effective().body.clone();
        let outcome = match r.below(3) {
            0 => {
                let kind = *r.pick(&[PushKind::Offline, PushKind::Groupchat]);
                let key = facts.stable_key(&bare);
                let pings = Pings::default();
                let stanza = (Some(&facts), key.as_deref(), Some(&pings));
                self.service
                    .on_notify(user, stanza, Targets::All, kind, now)
            }
            1 => {
                let ids = (None, word(r));
                self.service
                    .on_archived(user, &facts, (ids.0, &ids.1), Some(&[]), now)
            }
            _ => return self.smacks(user, facts),
        };
        self.sent(outcome, body_sent.as_deref());
        self.muc(user, &facts);
    }

    /// A stanza into a smacks batch, and the batch's push.
    fn smacks(&mut self, user: &str, facts: StanzaFacts) {
        let session = format!("{user}@{HOST}/{}", self.r.below(3));
        let first = self
            .service
            .registrations(user)
            .and_then(|regs| regs.first());
        if let Some(identifier) = first.map(|reg| reg.identifier().to_owned()) {
            let key = word(&mut self.r);
            self.service
                .smacks_add(&session, (user, &identifier), (facts, &key), None);
        }
        // (a batch's push may be about an earlier stanza of it)
        let outcome = self.service.on_smacks_flush(&session, self.now);
        self.sent(outcome, None);
    }

    /// MUC: mentions, the room's message memory, bounces.
    fn muc(&mut self, user: &str, facts: &StanzaFacts) {
        let (r, now) = (&mut self.r, self.now);
        let bare = format!("{user}@{HOST}");
        let refs: Vec<Reference> = (0..r.below(4))
            .map(|_| Reference {
                type_: Some("mention".into()),
                begin: Some(word(r)),
                end: Some(word(r)),
            })
            .collect();
        if let Some(body) = facts.body.as_deref() {
            let _ = mentioned_nicks(body, &refs);
        }
        let _ = wants(Policy::Mentions, facts, &refs);
        let room = "room@muc.example";
        self.service.muc_wants(room, facts, refs);
        let level = [Level::Always, Level::OnMention, Level::Never][r.below(3)];
        let members = [Member {
            jid: bare.clone(),
            joined: r.chance(2),
            outcast: r.chance(5),
            setting: r.chance(2).then_some(level),
            nick: r.chance(2).then(|| word(r)),
        }];
        let pings = Pings {
            uris: vec![word(r)],
            nicks: vec![word(r)],
            reply_to: r.chance(2).then(|| word(r)),
        };
        let _ = mentions(facts.body.as_deref(), &pings, &bare, Some(&word(r)), room);
        let public = r.chance(2);
        let pushed = self
            .service
            .on_muc_push(room, (facts, &pings, public), &members, now);
        let (id, echoed) = (word(r), word(r));
        let nicks = [user];
        let bounce = (user, nicks.as_slice(), Some("always"));
        let ids = (id.as_str(), "service-unavailable");
        let bounced = self
            .service
            .on_muc_bounced(room, ids, bounce, Some(&echoed), now);
        self.sent(pushed, facts.body.as_deref());
        self.sent(bounced, None);
    }

    /// An enable (or a disable, or an admin removal).
    fn enable(&mut self, user: &str) {
        let (r, now) = (&mut self.r, self.now);
        let bare = format!("{user}@{HOST}");
        let req = EnableRequest {
            jid: (!r.chance(6))
                .then(|| (*r.pick(&["push.example", "push2.example", "a@@b", ""])).to_owned()),
            node: (!r.chance(4)).then(|| word(r)),
            include_payload: r.chance(5).then(|| word(r)),
            form: if r.chance(2) {
                r.pick(FORMS).parse().ok()
            } else {
                None
            },
            language: r.chance(3).then(|| word(r)),
        };
        let who = Requester {
            bare_jid: bare.clone(),
            full_jid: Some(format!("{bare}/phone")),
            ..Default::default()
        };
        let _ = registration_from_enable(req.clone(), &who, now);
        let service = &mut self.service;
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
        // (1 in 8: the store write failed, nothing is committed)
        if let Some(plan) = plan.filter(|_| !r.chance(8)) {
            self.enables += 1;
            service.commit_written(user, plan);
        }
        let regs = service.registrations(user).map_or(0, <[_]>::len);
        assert!(regs <= self.cfg.max_devices, "device cap broken: {regs}");
    }

    /// An app server's answer: to a push, or anything.
    fn answer(&mut self) {
        let r = &mut self.r;
        let id = if !self.ids.is_empty() && !r.chance(4) {
            self.ids[r.below(self.ids.len())].clone()
        } else {
            word(r)
        };
        let from = *r.pick(&["push.example", "push2.example", "evil.example"]);
        let condition = word(r);
        let answer = if r.chance(2) {
            Response::Result
        } else {
            Response::Error {
                type_: error_type(r),
                condition: &condition,
            }
        };
        let outcome = self.service.on_answer(&id, from, (answer, false), self.now);
        assert!(outcome.pushes.is_empty(), "an answer sends nothing at once");
        assert!(
            outcome.logs.iter().all(|(_, line)| line.len() < 1024),
            "a stranger's text is cut"
        );
    }

    /// Time passes: what was held or retried goes out.
    fn time(&mut self) {
        let due = self.service.on_retries_due(self.now);
        self.sent(due, None);
        let later = self.now + self.r.below(300) as f64;
        self.service.on_sweep(later);
        let r = &mut self.r;
        let (stranger, local) = (
            format!("u{}@evil{}.example", r.below(50), r.below(3)),
            r.chance(3),
        );
        let _ = self.service.muc_admit(&stranger, local, self.now);
        let (noted, had, has) = (
            format!("u{}@evil.example", r.below(50)),
            r.chance(2),
            r.chance(2),
        );
        self.service.muc_note(&noted, had, has);
    }

    fn input(&mut self, i: u64) {
        if i % 2_000 == 1_999 {
            self.reconfigure();
        }
        self.tick();
        let user = *self
            .r
            .pick(&["romeo", "juliet", "nurse", "tybalt", "benvolio"]);
        match self.r.below(8) {
            0..=2 => self.stanza(user),
            3 | 4 => self.enable(user),
            5 | 6 => self.answer(),
            _ => self.time(),
        }
        assert!(
            self.service.pending() <= self.cfg.max_pending,
            "pending table past push_max_pending"
        );
        if self.ids.len() > 10_000 {
            self.ids.drain(..5_000);
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn fuzz_core() {
    let inputs = env_number("FUZZ_CORE_INPUTS", 20_000);
    let seed = env_number("FUZZ_SEED", 1);
    let mut fuzz = Fuzz::new(seed);
    let started = Instant::now();
    for i in 0..inputs {
        fuzz.input(i);
    }
    let Fuzz {
        parsed,
        pushes,
        enables,
        ..
    } = fuzz;
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
