//! Withering client tokens: generation, format validation, hashing and obfuscation.
//!
//! A token is `sk-` followed by the 16 bytes of a fresh UUIDv7 in base64url without padding (22
//! characters). Only its SHA-256 hash is ever stored; the plaintext is shown once, at creation.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Prefix of every client token.
pub const TOKEN_PREFIX: &str = "sk-";
/// Characters after the prefix: base64url of 16 bytes without padding.
const ENCODED_LEN: usize = 22;
/// Total length of a well-formed token.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + ENCODED_LEN;

/// Why a string is not a well-formed client token. Never contains the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// The token is not exactly [`TOKEN_LEN`] characters long.
    #[error("invalid token format: expected {TOKEN_LEN} characters, got {0}")]
    WrongLength(usize),
    /// The token does not start with `sk-`.
    #[error("invalid token format: missing `sk-` prefix")]
    MissingPrefix,
    /// The part after the prefix contains a character outside `[A-Za-z0-9_-]`.
    #[error("invalid token format: character outside the base64url alphabet")]
    InvalidCharacter,
    /// The part after the prefix is not canonical base64url of 16 bytes.
    #[error("invalid token format: not a canonical base64url encoding of 16 bytes")]
    NotDecodable,
    /// The decoded bytes are not an RFC 4122 UUID of version 7.
    #[error("invalid token format: not a version 7 UUID")]
    NotUuidV7,
}

/// Lowercase hex SHA-256 of a whole token string: the only form in which tokens are stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(String);

impl TokenHash {
    /// The 64 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored value that is not 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a token hash: expected 64 lowercase hex characters")]
pub struct InvalidTokenHash;

impl TryFrom<String> for TokenHash {
    type Error = InvalidTokenHash;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let is_hash = value.len() == 64
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hash {
            Ok(Self(value))
        } else {
            Err(InvalidTokenHash)
        }
    }
}

/// Generates a fresh token and returns it with the UUIDv7 it encodes.
pub fn generate_token() -> (String, Uuid) {
    let id = Uuid::now_v7();
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(id.as_bytes()));
    (token, id)
}

/// Checks the shape of a client token without touching the database.
pub fn validate_token_format(token: &str) -> Result<(), TokenFormatError> {
    if token.len() != TOKEN_LEN {
        return Err(TokenFormatError::WrongLength(token.chars().count()));
    }
    let encoded = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenFormatError::MissingPrefix)?;
    if !encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TokenFormatError::InvalidCharacter);
    }
    let bytes: [u8; 16] = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(TokenFormatError::NotDecodable)?;
    let uuid = Uuid::from_bytes(bytes);
    if uuid.get_version_num() != 7 || uuid.get_variant() != uuid::Variant::RFC4122 {
        return Err(TokenFormatError::NotUuidV7);
    }
    Ok(())
}

/// Hashes a token string (whatever its shape) into its stored form.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(lower_hex(&Sha256::digest(token.as_bytes())))
}

/// Lowercase hex of `bytes` (a table lookup: `format!("{:02x}")` per byte costs more than SHA-256).
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Masks a client token for logs: `sk-` + first 4 + `*` for the middle + last 4 of the part after
/// the prefix. Anything too short (or without the prefix) becomes `****`.
pub fn obfuscate_token(token: &str) -> String {
    let Some(rest) = token.strip_prefix(TOKEN_PREFIX) else {
        return "****".to_owned();
    };
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() <= 8 {
        return "****".to_owned();
    }
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars.iter().skip(chars.len() - 4).collect();
    format!("{TOKEN_PREFIX}{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// Masks a provider API key for responses: up to 4 characters → `****`; up to 12 → first 2 then
/// `*`; longer → first 8 + `...` + last 4.
pub fn obfuscate_api_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    match chars.len() {
        0..=4 => "****".to_owned(),
        5..=12 => {
            let head: String = chars.iter().take(2).collect();
            format!("{head}{}", "*".repeat(chars.len() - 2))
        }
        len => {
            let head: String = chars.iter().take(8).collect();
            let tail: String = chars.iter().skip(len - 4).collect();
            format!("{head}...{tail}")
        }
    }
}

/// Whether a submitted provider key is an obfuscated value echoed back by a client.
pub fn looks_obfuscated(key: &str) -> bool {
    key.contains("...") || key.contains("****")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_from_bytes(bytes: [u8; 16]) -> String {
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    #[test]
    fn generated_tokens_are_valid_and_unique() {
        let (a, id_a) = generate_token();
        let (b, _) = generate_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
        assert_eq!(validate_token_format(&a), Ok(()));
        assert_eq!(id_a.get_version_num(), 7);
        assert_eq!(a, token_from_bytes(*id_a.as_bytes()));
    }

    #[test]
    fn every_invalid_shape_is_rejected() {
        let (valid, id) = generate_token();
        assert_eq!(
            validate_token_format(""),
            Err(TokenFormatError::WrongLength(0))
        );
        assert_eq!(
            validate_token_format(&valid[..TOKEN_LEN - 1]),
            Err(TokenFormatError::WrongLength(TOKEN_LEN - 1))
        );
        assert_eq!(
            validate_token_format(&format!("{valid}A")),
            Err(TokenFormatError::WrongLength(TOKEN_LEN + 1))
        );
        let wrong_prefix = format!("tk-{}", &valid[3..]);
        assert_eq!(
            validate_token_format(&wrong_prefix),
            Err(TokenFormatError::MissingPrefix)
        );
        let bad_char = format!("{}+{}", &valid[..10], &valid[11..]);
        assert_eq!(
            validate_token_format(&bad_char),
            Err(TokenFormatError::InvalidCharacter)
        );
        let padded = format!("{}=", &valid[..TOKEN_LEN - 1]);
        assert_eq!(
            validate_token_format(&padded),
            Err(TokenFormatError::InvalidCharacter)
        );
        // 22 characters carry 132 bits: a non-zero trailing bit is not canonical base64 of 16 bytes.
        // The last character carries 2 data bits and 4 zero bits: its alphabet index is a multiple
        // of 16 ('A', 'Q', 'g', 'w'); the next character sets a trailing bit.
        let mut non_canonical = valid.clone();
        let last = non_canonical.pop().map(|c| match c {
            'A' => 'B',
            'Q' => 'R',
            'g' => 'h',
            _ => 'x',
        });
        non_canonical.extend(last);
        assert_eq!(
            validate_token_format(&non_canonical),
            Err(TokenFormatError::NotDecodable)
        );
        let v4 = token_from_bytes(*Uuid::new_v4().as_bytes());
        assert_eq!(validate_token_format(&v4), Err(TokenFormatError::NotUuidV7));
        let mut bad_variant = *id.as_bytes();
        bad_variant[8] &= 0x3f; // variant bits 00 = NCS, not RFC 4122
        assert_eq!(
            validate_token_format(&token_from_bytes(bad_variant)),
            Err(TokenFormatError::NotUuidV7)
        );
        let multibyte = format!("sk-{}é", &valid[3..TOKEN_LEN - 2]);
        assert_eq!(multibyte.len(), TOKEN_LEN);
        assert_eq!(
            validate_token_format(&multibyte),
            Err(TokenFormatError::InvalidCharacter)
        );
    }

    #[test]
    fn format_errors_never_contain_the_token() {
        let (token, _) = generate_token();
        let broken = format!("{token}x");
        let message = validate_token_format(&broken).err().map(|e| e.to_string());
        assert!(message.is_some_and(|m| !m.contains(&token[3..])));
    }

    #[test]
    fn hash_is_lowercase_hex_sha256_of_the_whole_token() {
        // sha256("abc")
        assert_eq!(
            hash_token("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let hash = hash_token("sk-anything");
        assert_eq!(TokenHash::try_from(hash.as_str().to_owned()), Ok(hash));
        assert_eq!(TokenHash::try_from("ABC".to_owned()), Err(InvalidTokenHash));
        assert_eq!(TokenHash::try_from("G".repeat(64)), Err(InvalidTokenHash));
    }

    #[test]
    fn tokens_are_obfuscated_with_the_prefix_rule() {
        assert_eq!(
            obfuscate_token("sk-abcdefghijklmnopqrstuv"),
            "sk-abcd**************stuv"
        );
        assert_eq!(obfuscate_token("sk-short"), "****");
        assert_eq!(obfuscate_token("no-prefix-at-all"), "****");
    }

    #[test]
    fn api_keys_are_obfuscated_by_length() {
        assert_eq!(obfuscate_api_key(""), "****");
        assert_eq!(obfuscate_api_key("abcd"), "****");
        assert_eq!(obfuscate_api_key("abcde"), "ab***");
        assert_eq!(obfuscate_api_key("abcdefghijkl"), "ab**********");
        assert_eq!(
            obfuscate_api_key("sk-proj-1234567890abcdef"),
            "sk-proj-...cdef"
        );
        assert_eq!(obfuscate_api_key("ééééééééééééé"), "éééééééé...éééé");
        assert!(looks_obfuscated("sk-proj-...cdef"));
        assert!(looks_obfuscated("ab****"));
        assert!(!looks_obfuscated("sk-proj-1234567890abcdef"));
    }
}
