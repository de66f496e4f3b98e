//! Encryption of provider API keys at rest (AES-256-GCM).
//!
//! Stored form: `enc:v1:` + standard base64 of `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`.
//! Values without that prefix are legacy plaintext and pass through decryption unchanged.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Prefix of an encrypted value.
pub const ENCRYPTED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// Why `ENCRYPTION_KEY` cannot be used. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionKeyError {
    /// Not standard base64.
    #[error("ENCRYPTION_KEY is not valid standard base64")]
    NotBase64,
    /// Decodes to the wrong number of bytes.
    #[error("ENCRYPTION_KEY must decode to exactly 32 bytes, got {0}")]
    WrongLength(usize),
}

/// Why a stored value cannot be encrypted or decrypted. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value is encrypted but no key is configured.
    #[error("the provider key is encrypted but ENCRYPTION_KEY is not configured")]
    KeyMissing,
    /// The encrypted value is not well-formed base64 of nonce, ciphertext and tag.
    #[error("the encrypted provider key is malformed")]
    Malformed,
    /// Authentication failed: wrong key or tampered value.
    #[error("the provider key cannot be decrypted with the configured ENCRYPTION_KEY")]
    WrongKey,
    /// The decrypted bytes are not UTF-8.
    #[error("the decrypted provider key is not UTF-8")]
    NotUtf8,
    /// The cipher refused to encrypt (cannot happen for in-memory buffers of key size).
    #[error("the provider key cannot be encrypted")]
    EncryptFailed,
}

/// A 32-byte AES-256-GCM key. Its `Debug` never prints key material.
#[derive(Clone)]
pub struct EncryptionKey(Key<Aes256Gcm>);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

impl EncryptionKey {
    /// Parses `ENCRYPTION_KEY`: standard base64 of exactly 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, EncryptionKeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| EncryptionKeyError::NotBase64)?;
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| EncryptionKeyError::WrongLength(bytes.len()))?;
        Ok(Self(key.into()))
    }

    /// Encrypts a plaintext value into its stored form, with a fresh random nonce.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        let cipher = Aes256Gcm::new(&self.0);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| CryptoError::EncryptFailed)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{ENCRYPTED_PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// Decrypts a stored value; legacy plaintext (no prefix) passes through.
    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        decrypt_stored(Some(self), stored)
    }
}

/// Whether a stored value is in encrypted form.
pub fn is_encrypted(stored: &str) -> bool {
    stored.starts_with(ENCRYPTED_PREFIX)
}

/// Decrypts a stored value with an optional key: plaintext passes through, an encrypted value
/// without a key is an error.
pub fn decrypt_stored(key: Option<&EncryptionKey>, stored: &str) -> Result<String, CryptoError> {
    let Some(encoded) = stored.strip_prefix(ENCRYPTED_PREFIX) else {
        return Ok(stored.to_owned());
    };
    let key = key.ok_or(CryptoError::KeyMissing)?;
    let sealed = STANDARD
        .decode(encoded)
        .map_err(|_| CryptoError::Malformed)?;
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let plaintext = Aes256Gcm::new(&key.0)
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .map_err(|_| CryptoError::WrongKey)?;
    String::from_utf8(plaintext).map_err(|_| CryptoError::NotUtf8)
}

/// Encrypts a value for storage when a key is configured; stores plaintext otherwise.
pub fn encrypt_for_storage(
    key: Option<&EncryptionKey>,
    plaintext: &str,
) -> Result<String, CryptoError> {
    match key {
        Some(key) => key.encrypt(plaintext),
        None => Ok(plaintext.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        let encoded = STANDARD.encode([byte; KEY_LEN]);
        match EncryptionKey::from_base64(&encoded) {
            Ok(key) => key,
            Err(e) => panic!("test key: {e}"),
        }
    }

    #[test]
    fn round_trip_uses_a_fresh_nonce() {
        let key = key(7);
        let a = key.encrypt("sk-provider-secret").ok();
        let b = key.encrypt("sk-provider-secret").ok();
        assert_ne!(a, b);
        let a = a.unwrap_or_default();
        assert!(a.starts_with(ENCRYPTED_PREFIX));
        assert!(!a.contains("sk-provider-secret"));
        assert_eq!(key.decrypt(&a).as_deref(), Ok("sk-provider-secret"));
    }

    #[test]
    fn legacy_plaintext_passes_through() {
        assert_eq!(key(1).decrypt("sk-legacy").as_deref(), Ok("sk-legacy"));
        assert_eq!(
            decrypt_stored(None, "sk-legacy").as_deref(),
            Ok("sk-legacy")
        );
        assert_eq!(encrypt_for_storage(None, "plain").as_deref(), Ok("plain"));
    }

    #[test]
    fn wrong_key_missing_key_and_tampering_are_errors() {
        let stored = key(1).encrypt("secret").unwrap_or_default();
        assert_eq!(key(2).decrypt(&stored), Err(CryptoError::WrongKey));
        assert_eq!(decrypt_stored(None, &stored), Err(CryptoError::KeyMissing));
        assert_eq!(key(1).decrypt("enc:v1:%%%"), Err(CryptoError::Malformed));
        assert_eq!(key(1).decrypt("enc:v1:AAAA"), Err(CryptoError::Malformed));
        let mut tampered = stored.clone();
        let last = tampered.pop().map(|c| if c == 'A' { 'B' } else { 'A' });
        tampered.extend(last);
        assert!(key(1).decrypt(&tampered).is_err());
    }

    #[test]
    fn key_parsing_reports_clear_errors_without_material() {
        assert_eq!(
            EncryptionKey::from_base64("not base64!").err(),
            Some(EncryptionKeyError::NotBase64)
        );
        let short = STANDARD.encode([0u8; 16]);
        assert_eq!(
            EncryptionKey::from_base64(&short).err(),
            Some(EncryptionKeyError::WrongLength(16))
        );
        let long = STANDARD.encode([0u8; 33]);
        assert_eq!(
            EncryptionKey::from_base64(&long).err(),
            Some(EncryptionKeyError::WrongLength(33))
        );
        assert_eq!(format!("{:?}", key(9)), "EncryptionKey([redacted])");
    }
}
