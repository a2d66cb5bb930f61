//! `make bench` (bench/push2.py): what one Push 2.0 notification costs in
//! the core, and how much of it the cryptography is: the whole encrypted
//! and signed message, the RFC 8291 encryption alone (a one-time P-256
//! key, ECDH, HKDF, AES-GCM), the ES256 signature alone, and a
//! notify-only message. Prints one JSON line of microseconds (medians of
//! 7 runs).

use cloud_notify::push2::decide::{Priority, Wire};
use cloud_notify::push2::ece::{encrypt, UaKeys};
use cloud_notify::push2::notification::{message, Parts};
use cloud_notify::push2::settings::{from_enable, Encrypted, Push2, Send};
use cloud_notify::push2::vapid;
use minidom::Element;
use p256::SecretKey;
use rand_core::OsRng;
use std::time::Instant;

const N: u32 = 2000;

fn median_us(mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[3]
}

fn settings(send: &str) -> Push2 {
    let ua = SecretKey::random(&mut OsRng);
    let public = cloud_notify::push2::ece::public_raw(&ua.public_key());
    let b64 = cloud_notify::push2::b64::encode;
    let key = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&SecretKey::random(&mut OsRng)).unwrap();
    let send = match send {
        "encrypted" => format!(
            "<send xmlns='urn:xmpp:push2:send:sce+rfc8291+rfc8292:0'><ua-public>{}</ua-public>\
             <auth-secret>{}</auth-secret><jwt-alg>ES256</jwt-alg><jwt-key>{}</jwt-key>\
             <jwt-claim name='aud'>https://push.example</jwt-claim></send>",
            b64(&public),
            b64(&[7u8; 16]),
            b64(key.as_bytes())
        ),
        _ => "<send xmlns='urn:xmpp:push2:send:notify-only:0'/>".to_owned(),
    };
    let enable: Element = format!(
        "<enable xmlns='urn:xmpp:push2:0'><service>push.example</service><client>https://push.example/ep/1</client>\
         <match profile='urn:xmpp:push2:match:important'>{send}</match></enable>"
    )
    .parse()
    .unwrap();
    from_enable(&enable, ["r@example", "r@example/a"])
        .unwrap()
        .1
}

fn main() {
    let original: Element = "<message xmlns='jabber:client' from='juliet@example/phone' to='romeo@example' type='chat' id='m1'>\
        <body>Wherefore art thou, Romeo?</body><stanza-id xmlns='urn:xmpp:sid:0' by='romeo@example' id='A1'/></message>"
        .parse()
        .unwrap();
    let wire = Wire {
        priority: Priority::Normal,
        voip: false,
        send: 0,
    };
    let build = |p: &Push2| {
        let parts = Parts {
            host: "example",
            id: "p1",
            service: "push.example",
            original: Some(original.clone()),
            content: true,
        };
        // (a new signature each time: the core reuses one, `tokens.rs`)
        let mut sign = |k: &Encrypted| {
            let signer = k.signer.as_ref()?;
            Some(vapid::jwt(signer, &k.jwt_claims, "https://example", 0.0))
        };
        std::hint::black_box(message(p, wire, parts, &mut OsRng, &mut sign));
    };
    let encrypted = settings("encrypted");
    let notify_only = settings("notify-only");
    let Send::Encrypted(keys) = &encrypted.matches[0].send else {
        unreachable!()
    };
    let ua: &UaKeys = &keys.keys;
    let signer = keys.signer.clone().unwrap();
    let plain = vec![b'x'; 768];
    let whole = median_us(|| build(&encrypted));
    let notify = median_us(|| build(&notify_only));
    let ece = median_us(|| {
        let one_time = SecretKey::random(&mut OsRng);
        std::hint::black_box(encrypt(&plain, ua, &[1; 16], &one_time));
    });
    let sign = median_us(|| {
        std::hint::black_box(vapid::jwt(
            &signer,
            &keys.jwt_claims,
            "https://example",
            0.0,
        ));
    });
    println!(
        "{{\"encrypted_message_us\": {whole:.1}, \"rfc8291_us\": {ece:.1}, \"es256_jwt_us\": {sign:.1}, \"notify_only_message_us\": {notify:.1}}}"
    );
}
