//! RFC 8291 message encryption for Web Push: one `aes128gcm` record
//! (RFC 8188) to the user agent's P-256 key and authentication secret.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::ecdh::diffie_hellman;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// Length of an uncompressed P-256 point (`0x04 || x || y`).
pub const POINT_LEN: usize = 65;
/// Length of the authentication secret (RFC 8291 §3.2).
pub const AUTH_LEN: usize = 16;
/// The record size written in the header (RFC 8188 §2.1): one record.
pub const RECORD_SIZE: u32 = 4096;
/// The header's length: salt, record size, key id length, key id.
pub const HEADER_LEN: usize = 16 + 4 + 1 + POINT_LEN;
/// The AEAD tag's length.
pub const TAG_LEN: usize = 16;

/// The user agent's keys from a registration (`ua-public`, `auth-secret`).
#[derive(Debug, Clone, PartialEq)]
pub struct UaKeys {
    public: PublicKey,
    raw: [u8; POINT_LEN],
    auth: [u8; AUTH_LEN],
}

impl UaKeys {
    /// The keys, if `public` is an uncompressed point on P-256 and `auth`
    /// is 16 bytes.
    pub fn new(public: &[u8], auth: &[u8]) -> Option<UaKeys> {
        let raw: [u8; POINT_LEN] = public.try_into().ok()?;
        if raw[0] != 4 {
            return None;
        }
        Some(UaKeys {
            public: PublicKey::from_sec1_bytes(&raw).ok()?,
            raw,
            auth: auth.try_into().ok()?,
        })
    }
}

/// The uncompressed point of a public key.
pub fn public_raw(key: &PublicKey) -> [u8; POINT_LEN] {
    let point = key.to_encoded_point(false);
    let mut raw = [0; POINT_LEN];
    raw.copy_from_slice(point.as_bytes());
    raw
}

/// Encrypts `plain` as one record (delimiter 2, no padding: the caller
/// pads inside the plaintext), from the sender's one-time key and `salt`.
/// Returns the whole body: header, then ciphertext and tag.
pub fn encrypt(plain: &[u8], ua: &UaKeys, salt: &[u8; 16], sender: &SecretKey) -> Vec<u8> {
    let sender_raw = public_raw(&sender.public_key());
    let shared = diffie_hellman(sender.to_nonzero_scalar(), ua.public.as_affine());
    // RFC 8291 §3.4: IKM from the shared secret, keyed by the auth secret.
    let mut info = Vec::with_capacity(14 + 2 * POINT_LEN);
    info.extend_from_slice(b"WebPush: info\0");
    info.extend_from_slice(&ua.raw);
    info.extend_from_slice(&sender_raw);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&ua.auth), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .expect("32 bytes is a valid HKDF length");
    // RFC 8188 §2.2, §2.3: content key and nonce from the salt.
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .expect("16 bytes is a valid HKDF length");
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("12 bytes is a valid HKDF length");
    let mut record = Vec::with_capacity(plain.len() + 1);
    record.extend_from_slice(plain);
    record.push(2); // the last record's delimiter
    let cipher = Aes128Gcm::new_from_slice(&cek).expect("16-byte key");
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .expect("a record of any length this small seals");
    let mut body = Vec::with_capacity(HEADER_LEN + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(POINT_LEN as u8);
    body.extend_from_slice(&sender_raw);
    body.extend_from_slice(&sealed);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push2::b64::{decode, encode_url};

    /// RFC 8291 Appendix A, every value as the RFC prints it.
    #[test]
    fn rfc_8291_appendix_a() {
        let plain = b"When I grow up, I want to be a watermelon";
        let as_private = decode("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw").unwrap();
        let as_public = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
        let ua_public = decode(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        )
        .unwrap();
        let auth = decode("BTBZMqHH6r4Tts7J_aSIgg").unwrap();
        let salt: [u8; 16] = decode("DGv6ra1nlYgDCS1FRnbzlw")
            .unwrap()
            .try_into()
            .unwrap();
        let sender = SecretKey::from_slice(&as_private).unwrap();
        assert_eq!(encode_url(&public_raw(&sender.public_key())), as_public);
        let ua = UaKeys::new(&ua_public, &auth).unwrap();
        let body = encrypt(plain, &ua, &salt, &sender);
        assert_eq!(
            encode_url(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
        assert_eq!(body.len(), HEADER_LEN + plain.len() + 1 + TAG_LEN);
    }

    #[test]
    fn keys_must_be_a_point_on_the_curve_and_16_bytes() {
        let ua_public = decode(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        )
        .unwrap();
        let auth = [7u8; 16];
        assert!(UaKeys::new(&ua_public, &auth).is_some());
        assert!(UaKeys::new(&ua_public, &auth[..15]).is_none());
        let mut off_curve = ua_public.clone();
        off_curve[64] ^= 1;
        assert!(UaKeys::new(&off_curve, &auth).is_none());
        assert!(UaKeys::new(&ua_public[..33], &auth).is_none());
    }
}
