//! RFC 8292 (VAPID): the ES256 JWT a push service hands on to the Web Push
//! endpoint, signed with the key the client registered.

use super::b64;
use super::ece::public_raw;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use p256::SecretKey;

/// The one `jwt-alg` supported (RFC 8292 §2 requires it of push services).
pub const ES256: &str = "ES256";
/// How long a JWT is valid: RFC 8292 §2 allows at most 24 hours; the push
/// service may hand it on a little later, and clocks differ.
pub const LIFETIME: f64 = 12.0 * 3600.0;

/// A client's signing key, from its `jwt-key`: a PKCS#8 P-256 key, base64,
/// with or without the PEM header and footer lines. `None`: not one.
pub fn signing_key(pkcs8: &str) -> Option<SecretKey> {
    let body: String = pkcs8
        .lines()
        .filter(|line| !line.trim_start().starts_with("-----"))
        .collect();
    SecretKey::from_pkcs8_der(&b64::decode(&body)?).ok()
}

/// Appends `text` as a JSON string literal.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JWT: the client's claims (but `sub` and `exp`), then `exp`
/// ([`LIFETIME`] from `now`) and `sub` (the admin's contact URI), signed.
/// Returns it with the raw public key, base64 (the `key` attribute).
pub fn jwt(key: &SecretKey, claims: &[(String, String)], sub: &str, now: f64) -> (String, String) {
    let mut json = String::from("{");
    for (name, value) in claims.iter().filter(|(n, _)| n != "sub" && n != "exp") {
        json_string(&mut json, name);
        json.push(':');
        json_string(&mut json, value);
        json.push(',');
    }
    json.push_str(&format!("\"exp\":{},\"sub\":", (now + LIFETIME) as u64));
    json_string(&mut json, sub);
    json.push('}');
    let mut token = b64::encode_url(br#"{"typ":"JWT","alg":"ES256"}"#);
    token.push('.');
    token.push_str(&b64::encode_url(json.as_bytes()));
    let signature: Signature = SigningKey::from(key).sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode_url(&signature.to_bytes()));
    (token, b64::encode(&public_raw(&key.public_key())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    /// A P-256 key in PKCS#8, as `openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256` writes it (test data).
    pub const KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9hJRHTOJhmXXMzJ6\n\
        Be1Oh/qdxu8U9VIfwft3UP5zPJehRANCAATVZNuKsWThVawbNoZf2h8q3v8DB00p\n\
        NJp1m2mCCvAsfHWJ+fkTjoPmIku9UlWrOj0UnB9tYkQAvCjCpxIOe+VN";

    #[test]
    fn a_signed_token_verifies_and_carries_the_claims() {
        let key = signing_key(KEY).unwrap();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{KEY}\n-----END PRIVATE KEY-----");
        assert_eq!(signing_key(&pem), Some(key.clone()));
        let claims = vec![
            ("aud".to_owned(), "https://push.example".to_owned()),
            ("sub".to_owned(), "mailto:forged@example".to_owned()),
        ];
        let (token, raw) = jwt(&key, &claims, "https://example.org", 1000.0);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims = String::from_utf8(b64::decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            r#"{"aud":"https://push.example","exp":44200,"sub":"https://example.org"}"#
        );
        let public = b64::decode(&raw).unwrap();
        let verifier = VerifyingKey::from_sec1_bytes(&public).unwrap();
        let signature = Signature::from_slice(&b64::decode(parts[2]).unwrap()).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(verifier.verify(signed.as_bytes(), &signature).is_ok());
    }

    #[test]
    fn what_is_not_a_p256_pkcs8_key_is_refused() {
        assert!(signing_key("not base64!").is_none());
        assert!(signing_key("AAAA").is_none());
        let mut bytes = b64::decode(KEY).unwrap();
        bytes[40] ^= 0xff;
        assert!(signing_key(&b64::encode(&bytes)).is_none());
    }

    #[test]
    fn claims_are_escaped() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd");
        assert_eq!(out, r#""a\"b\\c\u000ad""#);
    }
}
