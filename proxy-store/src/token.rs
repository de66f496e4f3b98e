//! Withering client tokens: generation, format validation, hashing and obfuscation.
//!
//! A token issued by this build is `sk-llmp_` followed by 32 characters drawn uniformly from the
//! base62 alphabet (`0-9A-Za-z`) with bytes of the operating system's CSPRNG (about 190 bits), then
//! 6 base62 characters of the CRC32 (IEEE) of those 32 characters, left-padded with `0`: 46
//! characters in all, matched by `sk-llmp_[0-9A-Za-z]{38}`. The secret is independent of every
//! identifier (the management id is a separate UUIDv7); only its SHA-256 hash is ever stored, and the
//! plaintext is shown once, at creation. The checksum lets a secret scanner tell a real token from a
//! look-alike, and lets the proxy refuse a random or mistyped string without a store lookup.
//!
//! Tokens imported from the upstream proxy keep their shape: `sk-` + base64url (no padding) of the 16
//! bytes of a UUIDv7 ([`TokenShape::Upstream`]). Builds of this project before the format change
//! issued tokens of that shape too, but whose management id *is* that UUID: anyone who saw the id
//! could compute the token. Such a token is recognised ([`derivable_from_id`]) and refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Prefix of every client token, issued or imported.
pub const TOKEN_PREFIX: &str = "sk-";
/// Prefix of the tokens this build issues.
pub const ISSUED_PREFIX: &str = "sk-llmp_";
/// Random base62 characters of an issued token.
const RANDOM_LEN: usize = 32;
/// Base62 characters of the CRC32 checksum (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;
/// Total length of an issued token.
pub const TOKEN_LEN: usize = ISSUED_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
/// Characters after `sk-` of an upstream token: base64url of 16 bytes without padding.
const UPSTREAM_ENCODED_LEN: usize = 22;
/// Total length of an upstream token.
pub const UPSTREAM_TOKEN_LEN: usize = TOKEN_PREFIX.len() + UPSTREAM_ENCODED_LEN;
/// Characters of the random part an obfuscated token keeps (24 of its ~190 bits).
const OBFUSCATION_VISIBLE: usize = 4;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed client token. Never contains the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// The token does not start with `sk-`.
    #[error("invalid token format: missing `sk-` prefix")]
    MissingPrefix,
    /// Neither the length of an issued token nor the one of an upstream token.
    #[error(
        "invalid token format: expected {TOKEN_LEN} characters (`sk-llmp_…`) or {UPSTREAM_TOKEN_LEN} (an upstream `sk-` token), got {0}"
    )]
    WrongLength(usize),
    /// A character outside the token's alphabet.
    #[error("invalid token format: character outside the token alphabet")]
    InvalidCharacter,
    /// The checksum of an issued token does not match: a mistyped, truncated or made-up token.
    #[error("invalid token format: checksum mismatch (mistyped or truncated token)")]
    ChecksumMismatch,
    /// The part after the prefix of an upstream token is not canonical base64url of 16 bytes.
    #[error("invalid token format: not a canonical base64url encoding of 16 bytes")]
    NotDecodable,
    /// The decoded bytes of an upstream token are not an RFC 4122 UUID of version 7.
    #[error("invalid token format: not a version 7 UUID")]
    NotUuidV7,
}

/// The operating system's random source failed; no token was made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomSourceError(String);

/// Which of the accepted shapes a well-formed token has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    /// `sk-llmp_…` with a valid checksum: issued by this build.
    Issued,
    /// `sk-` + base64url of a UUIDv7: imported from the upstream proxy (or issued by an earlier build
    /// of this project, see [`derivable_from_id`]).
    Upstream(Uuid),
}

impl TokenShape {
    /// Whether a token of this shape was issued by an earlier build of this project for the token
    /// whose management id is `id`: its secret is that id, so it must not be accepted.
    pub fn derivable_from(self, id: Uuid) -> bool {
        matches!(self, Self::Upstream(encoded) if encoded == id)
    }
}

/// The token an earlier build of this project issued for the management id `id` (`sk-` + base64url
/// of the id's bytes). Used only to find and revoke such tokens.
pub fn derivable_token_of(id: Uuid) -> String {
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(id.as_bytes()))
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

/// Generates a fresh token from the operating system's CSPRNG. It shares nothing with any id.
pub fn generate_token() -> Result<String, RandomSourceError> {
    let mut token = String::with_capacity(TOKEN_LEN);
    token.push_str(ISSUED_PREFIX);
    // Rejection sampling: a byte below 248 (= 4 × 62) maps uniformly onto the alphabet.
    let mut pool = [0_u8; 64];
    while token.len() < ISSUED_PREFIX.len() + RANDOM_LEN {
        getrandom::fill(&mut pool).map_err(|err| RandomSourceError(err.to_string()))?;
        for &byte in pool.iter().filter(|&&byte| byte < 248) {
            if token.len() == ISSUED_PREFIX.len() + RANDOM_LEN {
                break;
            }
            token.push(char::from(BASE62[usize::from(byte % 62)]));
        }
    }
    let checksum = checksum_of(&token.as_bytes()[ISSUED_PREFIX.len()..]);
    token.push_str(&checksum);
    Ok(token)
}

/// Base62 of the CRC32 of `random`, left-padded with `0` to [`CHECKSUM_LEN`] characters.
fn checksum_of(random: &[u8]) -> String {
    let mut value = crc32fast::hash(random);
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

/// Checks the shape of a client token without touching the database.
pub fn validate_token_format(token: &str) -> Result<TokenShape, TokenFormatError> {
    if let Some(body) = token.strip_prefix(ISSUED_PREFIX) {
        if token.len() != TOKEN_LEN {
            return Err(TokenFormatError::WrongLength(token.chars().count()));
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenFormatError::InvalidCharacter);
        }
        let (random, checksum) = body.split_at(RANDOM_LEN);
        if checksum_of(random.as_bytes()) != checksum {
            return Err(TokenFormatError::ChecksumMismatch);
        }
        return Ok(TokenShape::Issued);
    }
    let encoded = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenFormatError::MissingPrefix)?;
    if token.len() != UPSTREAM_TOKEN_LEN {
        return Err(TokenFormatError::WrongLength(token.chars().count()));
    }
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
    Ok(TokenShape::Upstream(uuid))
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

/// Masks a client token for logs and lists: its prefix (`sk-llmp_` or `sk-`), the first 4
/// characters after it and `*` for the rest, so an issued token keeps 24 of its ~190 random bits
/// visible and none of its checksum. Anything too short (or without `sk-`) becomes `****`.
pub fn obfuscate_token(token: &str) -> String {
    let prefix = if token.starts_with(ISSUED_PREFIX) {
        ISSUED_PREFIX
    } else {
        TOKEN_PREFIX
    };
    let Some(rest) = token.strip_prefix(prefix) else {
        return "****".to_owned();
    };
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() <= 2 * OBFUSCATION_VISIBLE {
        return "****".to_owned();
    }
    let head: String = chars.iter().take(OBFUSCATION_VISIBLE).collect();
    format!(
        "{prefix}{head}{}",
        "*".repeat(chars.len() - OBFUSCATION_VISIBLE)
    )
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

    fn upstream_token_from_bytes(bytes: [u8; 16]) -> String {
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    fn issued() -> String {
        generate_token().expect("the OS random source works in tests")
    }

    #[test]
    fn issued_tokens_have_the_documented_shape_and_are_unique() {
        let tokens: Vec<String> = (0..1_000).map(|_| issued()).collect();
        for token in &tokens {
            assert_eq!(token.len(), TOKEN_LEN);
            assert!(token.starts_with("sk-llmp_"));
            assert!(
                token[ISSUED_PREFIX.len()..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric())
            );
            assert_eq!(validate_token_format(token), Ok(TokenShape::Issued));
        }
        let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
    }

    #[test]
    fn the_random_part_uses_the_whole_alphabet_evenly() {
        // 2,000 tokens × 32 characters: each of the 62 characters is expected ~1,032 times; a
        // generator that skipped or favoured characters (e.g. `byte % 62` without rejection, which
        // favours the first 8 by 25 %) lands far outside this band.
        let mut counts = [0_u32; 62];
        for _ in 0..2_000 {
            let token = issued();
            for b in token[ISSUED_PREFIX.len()..ISSUED_PREFIX.len() + RANDOM_LEN].bytes() {
                let index = BASE62.iter().position(|&c| c == b).unwrap_or(usize::MAX);
                counts[index] += 1;
            }
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(min.is_some_and(|&m| m > 850), "{counts:?}");
        assert!(max.is_some_and(|&m| m < 1_220), "{counts:?}");
    }

    #[test]
    fn the_documented_example_is_valid() {
        // docs/management-api.md (Token format): computed there with Python's zlib.crc32.
        assert_eq!(
            validate_token_format("sk-llmp_3kTMd9Wq0ZfXbY7rLp2sNcA4eHuJ1vGo0xBWmh"),
            Ok(TokenShape::Issued)
        );
    }

    #[test]
    fn the_checksum_catches_every_single_character_change() {
        let token = issued();
        for position in ISSUED_PREFIX.len()..TOKEN_LEN {
            for &replacement in BASE62 {
                let mut bytes = token.clone().into_bytes();
                if bytes[position] == replacement {
                    continue;
                }
                bytes[position] = replacement;
                let mistyped = String::from_utf8(bytes).unwrap_or_default();
                assert_eq!(
                    validate_token_format(&mistyped),
                    Err(TokenFormatError::ChecksumMismatch),
                    "position {position}"
                );
            }
        }
        // Two adjacent characters swapped.
        let mut swapped = token.clone().into_bytes();
        swapped.swap(10, 11);
        if swapped != token.as_bytes() {
            let swapped = String::from_utf8(swapped).unwrap_or_default();
            assert_eq!(
                validate_token_format(&swapped),
                Err(TokenFormatError::ChecksumMismatch)
            );
        }
    }

    #[test]
    fn every_invalid_shape_of_an_issued_token_is_rejected() {
        let valid = issued();
        assert_eq!(
            validate_token_format(&valid[..TOKEN_LEN - 1]),
            Err(TokenFormatError::WrongLength(TOKEN_LEN - 1))
        );
        assert_eq!(
            validate_token_format(&format!("{valid}A")),
            Err(TokenFormatError::WrongLength(TOKEN_LEN + 1))
        );
        let bad_char = format!("{}-{}", &valid[..12], &valid[13..]);
        assert_eq!(
            validate_token_format(&bad_char),
            Err(TokenFormatError::InvalidCharacter)
        );
        let multibyte = format!("{}é", &valid[..TOKEN_LEN - 2]);
        assert_eq!(multibyte.len(), TOKEN_LEN);
        assert_eq!(
            validate_token_format(&multibyte),
            Err(TokenFormatError::InvalidCharacter)
        );
        let random_lookalike = format!("sk-llmp_{}", "a".repeat(RANDOM_LEN + CHECKSUM_LEN));
        assert_eq!(
            validate_token_format(&random_lookalike),
            Err(TokenFormatError::ChecksumMismatch)
        );
        assert_eq!(
            validate_token_format(""),
            Err(TokenFormatError::MissingPrefix)
        );
        assert_eq!(
            validate_token_format(&format!("tk-{}", &valid[3..])),
            Err(TokenFormatError::MissingPrefix)
        );
    }

    #[test]
    fn upstream_tokens_are_accepted_and_their_shapes_checked() {
        let id = Uuid::now_v7();
        let upstream = upstream_token_from_bytes(*id.as_bytes());
        assert_eq!(upstream.len(), UPSTREAM_TOKEN_LEN);
        assert_eq!(
            validate_token_format(&upstream),
            Ok(TokenShape::Upstream(id))
        );
        assert_eq!(
            validate_token_format(&upstream[..UPSTREAM_TOKEN_LEN - 1]),
            Err(TokenFormatError::WrongLength(UPSTREAM_TOKEN_LEN - 1))
        );
        let bad_char = format!("{}+{}", &upstream[..10], &upstream[11..]);
        assert_eq!(
            validate_token_format(&bad_char),
            Err(TokenFormatError::InvalidCharacter)
        );
        let padded = format!("{}=", &upstream[..UPSTREAM_TOKEN_LEN - 1]);
        assert_eq!(
            validate_token_format(&padded),
            Err(TokenFormatError::InvalidCharacter)
        );
        // 22 characters carry 132 bits: a non-zero trailing bit is not canonical base64 of 16 bytes.
        // The last character carries 2 data bits and 4 zero bits: its alphabet index is a multiple
        // of 16 ('A', 'Q', 'g', 'w'); the next character sets a trailing bit.
        let mut non_canonical = upstream.clone();
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
        let v4 = upstream_token_from_bytes(*Uuid::new_v4().as_bytes());
        assert_eq!(validate_token_format(&v4), Err(TokenFormatError::NotUuidV7));
        let mut bad_variant = *id.as_bytes();
        bad_variant[8] &= 0x3f; // variant bits 00 = NCS, not RFC 4122
        assert_eq!(
            validate_token_format(&upstream_token_from_bytes(bad_variant)),
            Err(TokenFormatError::NotUuidV7)
        );
    }

    #[test]
    fn a_token_of_an_earlier_build_is_recognised_by_its_id() {
        let id = Uuid::now_v7();
        let earlier = derivable_token_of(id);
        let shape = validate_token_format(&earlier);
        assert_eq!(shape, Ok(TokenShape::Upstream(id)));
        assert!(shape.is_ok_and(|shape| shape.derivable_from(id)));
        // An upstream token has an id of its own.
        assert!(!TokenShape::Upstream(id).derivable_from(Uuid::new_v4()));
        assert!(!TokenShape::Issued.derivable_from(id));
    }

    #[test]
    fn format_errors_never_contain_the_token() {
        let token = issued();
        for broken in [format!("{token}x"), format!("{}0", &token[..TOKEN_LEN - 1])] {
            let message = validate_token_format(&broken).err().map(|e| e.to_string());
            assert!(message.is_some_and(|m| !m.contains(&token[ISSUED_PREFIX.len()..][..8])));
        }
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
    fn tokens_are_obfuscated_to_their_prefix_and_four_characters() {
        assert_eq!(
            obfuscate_token("sk-llmp_abcdefghijklmnopqrstuvwxyz0123456789AB"),
            format!("sk-llmp_abcd{}", "*".repeat(34))
        );
        assert_eq!(
            obfuscate_token("sk-abcdefghijklmnopqrstuv"),
            "sk-abcd******************"
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
