//! Decoding a captured response body into the payload's `output` (spec §5 "output decoding").
//!
//! Order: decompress (`Content-Encoding` gzip or br) → multipart is omitted → an OpenAI SSE stream
//! with at least two data events is merged into one `chat.completion` → JSON is embedded (strings
//! holding invalid UTF-8 replaced) → other UTF-8 text becomes a string → anything else is omitted.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;

use super::sse;

/// Decompressed bodies are cut here: a captured body is at most a few hundred KiB, so anything
/// larger is a compression bomb or not worth shipping.
const MAX_DECODED_BYTES: u64 = 8 * 1024 * 1024;
const BINARY_OMITTED: &str = "<binary response omitted>";
const MULTIPART_OMITTED: &str = "<multipart response omitted>";
const INVALID_TEXT_OMITTED: &str = "<binary omitted>";

/// The `output` value for a response with these headers and captured body.
pub fn decode_output(headers: &BTreeMap<String, Vec<String>>, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let encoding = header(headers, "content-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.trim() {
        "gzip" | "x-gzip" => read_limited(flate2::read::GzDecoder::new(body)),
        "br" => read_limited(brotli_decompressor::Decompressor::new(body, 4096)),
        "deflate" => read_limited(flate2::read::ZlibDecoder::new(body)),
        _ => Some(body.to_vec()),
    };
    let Some(body) = decoded else {
        return Value::from(BINARY_OMITTED);
    };
    let content_type = header(headers, "content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/") {
        return Value::from(MULTIPART_OMITTED);
    }
    if is_binary_type(&content_type) {
        return Value::from(BINARY_OMITTED);
    }
    if let Ok(text) = std::str::from_utf8(&body) {
        if looks_like_multipart(text) {
            return Value::from(MULTIPART_OMITTED);
        }
        if let Some(merged) = sse::merge_openai_stream(text) {
            return merged;
        }
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(json) => return json,
        Err(error) if error.is_syntax() || error.is_eof() => {}
        Err(_) => {}
    }
    match std::str::from_utf8(&body) {
        Ok(text) => Value::from(text),
        Err(_) => match serde_json::from_str::<Value>(&String::from_utf8_lossy(&body)) {
            // JSON whose strings hold invalid UTF-8: keep the structure, drop those strings.
            Ok(json) => clean_invalid_strings(json),
            Err(_) => Value::from(BINARY_OMITTED),
        },
    }
}

/// A body that starts like a MIME multipart document.
pub fn looks_like_multipart(text: &str) -> bool {
    text.starts_with("--")
        && text
            .to_ascii_lowercase()
            .contains("content-disposition: form-data")
}

fn header<'a>(headers: &'a BTreeMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(String::as_str)
}

fn is_binary_type(content_type: &str) -> bool {
    [
        "image/",
        "audio/",
        "video/",
        "application/octet-stream",
        "application/pdf",
        "application/zip",
    ]
    .iter()
    .any(|prefix| content_type.starts_with(prefix))
}

fn read_limited(reader: impl Read) -> Option<Vec<u8>> {
    let mut decoded = Vec::new();
    reader
        .take(MAX_DECODED_BYTES)
        .read_to_end(&mut decoded)
        .ok()?;
    Some(decoded)
}

fn clean_invalid_strings(value: Value) -> Value {
    match value {
        Value::String(text) if text.contains(char::REPLACEMENT_CHARACTER) => {
            Value::from(INVALID_TEXT_OMITTED)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(clean_invalid_strings).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, clean_invalid_strings(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn gzip_and_brotli_bodies_are_decompressed() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":1}}"#;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(body).unwrap();
        let gzipped = gzip.finish().unwrap();
        let value = decode_output(&headers(&[("Content-Encoding", "gzip")]), &gzipped);
        assert_eq!(value, json!({"id":"x","usage":{"prompt_tokens":1}}));

        // A brotli stream of `{"ok":true}` (window 22, quality 5), produced with the reference encoder.
        let brotli: &[u8] = &[
            0x0b, 0x05, 0x80, 0x7b, 0x22, 0x6f, 0x6b, 0x22, 0x3a, 0x74, 0x72, 0x75, 0x65, 0x7d,
            0x03,
        ];
        assert_eq!(
            decode_output(&headers(&[("content-encoding", "br")]), brotli),
            json!({"ok":true})
        );

        let broken = decode_output(&headers(&[("Content-Encoding", "gzip")]), b"not gzip");
        assert_eq!(broken, json!(BINARY_OMITTED));
    }

    #[test]
    fn multipart_binary_and_text_bodies() {
        let multipart = decode_output(
            &headers(&[("Content-Type", "multipart/form-data; boundary=x")]),
            b"--x\r\n",
        );
        assert_eq!(multipart, json!(MULTIPART_OMITTED));
        let audio = decode_output(
            &headers(&[("Content-Type", "audio/mpeg")]),
            &[0x49, 0x44, 0x33, 0xff],
        );
        assert_eq!(audio, json!(BINARY_OMITTED));
        let raw = decode_output(&headers(&[]), &[0x00, 0xff, 0xfe, 0x80]);
        assert_eq!(raw, json!(BINARY_OMITTED));
        assert_eq!(
            decode_output(&headers(&[("Content-Type", "text/plain")]), b"hello"),
            json!("hello")
        );
        assert_eq!(decode_output(&headers(&[]), b""), Value::Null);
    }

    #[test]
    fn json_strings_with_invalid_utf8_are_replaced() {
        let mut body = br#"{"text":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#"","n":1}"#);
        assert_eq!(
            decode_output(&headers(&[]), &body),
            json!({"text": INVALID_TEXT_OMITTED, "n": 1})
        );
    }
}
