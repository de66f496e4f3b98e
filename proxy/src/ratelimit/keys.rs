//! Counter keys: `<prefix>t:<token>` per token and `<prefix>p:<project id>` per project.
//!
//! The token part is the token's management id, or `HMAC-SHA256(DISTRIBUTED_RATE_LIMIT_KEY_SECRET,
//! id)` in hex when a secret is set, so that whoever reads Redis cannot tell which token a counter
//! belongs to.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// SHA-256 block size, the HMAC key length.
const BLOCK: usize = 64;

/// Builds the counter keys of one limiter.
pub struct KeyDeriver {
    prefix: String,
    /// The HMAC key padded to the block size (already hashed when longer than a block).
    secret: Option<[u8; BLOCK]>,
}

impl KeyDeriver {
    /// Keys under `prefix`; an empty secret means token ids are used as they are.
    pub fn new(prefix: &str, secret: Option<&Secret>) -> Self {
        let secret = secret
            .map(Secret::expose)
            .filter(|s| !s.is_empty())
            .map(|s| padded_key(s.as_bytes()));
        Self {
            prefix: prefix.to_owned(),
            secret,
        }
    }

    /// Key of the per-token counter.
    pub fn token(&self, token_id: &str) -> String {
        match &self.secret {
            Some(key) => format!(
                "{}t:{}",
                self.prefix,
                to_hex(&hmac(key, token_id.as_bytes()))
            ),
            None => format!("{}t:{token_id}", self.prefix),
        }
    }

    /// Key of the per-project counter.
    pub fn project(&self, project_id: &str) -> String {
        format!("{}p:{project_id}", self.prefix)
    }
}

fn padded_key(key: &[u8]) -> [u8; BLOCK] {
    let mut padded = [0u8; BLOCK];
    if key.len() > BLOCK {
        padded[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        padded[..key.len()].copy_from_slice(key);
    }
    padded
}

fn to_hex(bytes: &[u8]) -> String {
    llm_proxy_store::token::lower_hex(bytes)
}

/// HMAC-SHA256 (RFC 2104) over a key already padded to the block size.
fn hmac(key: &[u8; BLOCK], message: &[u8]) -> [u8; 32] {
    let pad = |byte: u8| key.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 (short key) and test case 6 (key longer than a block).
        assert_eq!(
            to_hex(&hmac(&padded_key(b"Jefe"), b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            to_hex(&hmac(
                &padded_key(&[0xaa; 131]),
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn token_ids_are_hidden_when_a_secret_is_set() {
        let plain = KeyDeriver::new("rl:", None);
        assert_eq!(plain.token("0190-abc"), "rl:t:0190-abc");
        assert_eq!(plain.project("p1"), "rl:p:p1");
        let empty = KeyDeriver::new("rl:", Some(&Secret::new("")));
        assert_eq!(empty.token("0190-abc"), "rl:t:0190-abc");

        let hidden = KeyDeriver::new("rl:", Some(&Secret::new("s3cret")));
        let key = hidden.token("0190-abc");
        assert!(key.starts_with("rl:t:"), "{key}");
        assert!(!key.contains("0190-abc"), "{key}");
        assert_eq!(key.len(), "rl:t:".len() + 64);
        assert_eq!(key, hidden.token("0190-abc"), "stable across calls");
        assert_ne!(key, hidden.token("0190-abd"));
        let other_secret = KeyDeriver::new("rl:", Some(&Secret::new("other")));
        assert_ne!(key, other_secret.token("0190-abc"));
        assert_eq!(hidden.project("p1"), "rl:p:p1");
    }
}
