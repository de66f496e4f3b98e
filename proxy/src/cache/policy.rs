//! HTTP caching rules of the response cache: `Cache-Control` parsing, which requests may use the
//! cache, whether and for how long a response may be stored, and which of its headers are kept.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

use crate::headers::is_hop_by_hop;

/// The directives of all `Cache-Control` headers of a message that the cache acts on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` header (directives are case-insensitive; values may be quoted;
    /// unparsable values are ignored).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut parsed = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds = argument.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => parsed.no_store = true,
                    "no-cache" => parsed.no_cache = true,
                    "private" => parsed.private = true,
                    "public" => parsed.public = true,
                    "max-age" => parsed.max_age = seconds.or(parsed.max_age),
                    "s-maxage" => parsed.s_maxage = seconds.or(parsed.s_maxage),
                    _ => {}
                }
            }
        }
        parsed
    }

    /// The TTL a client forces with `public` plus a positive `s-maxage` (preferred) or `max-age`.
    pub fn client_forced_ttl(&self) -> Option<u64> {
        if !self.public {
            return None;
        }
        self.s_maxage
            .filter(|s| *s > 0)
            .or(self.max_age.filter(|s| *s > 0))
    }

    /// The client asks for a fresh answer (`no-cache` or `max-age=0`).
    pub fn wants_revalidation(&self) -> bool {
        self.no_cache || self.max_age == Some(0)
    }
}

/// Whether a request takes part in caching at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// GET, HEAD, or a POST that opted in; `body_hash` is set for POST.
    Eligible { body_hash: Option<String> },
    /// Another method, or a POST without opt-in: the cache is not involved (no cache headers).
    NotInvolved,
    /// A POST that opted in but whose body is larger than the object limit.
    BodyTooLarge,
}

/// Decides whether a request may use the cache. POST needs the client's opt-in
/// (`Cache-Control: public` with a positive `max-age` or `s-maxage`) and a body of at most
/// `max_body` bytes, whose SHA-256 becomes part of the key.
pub fn eligibility(
    method: &Method,
    request: &CacheControl,
    body: &[u8],
    max_body: u64,
) -> Eligibility {
    if *method == Method::GET || *method == Method::HEAD {
        return Eligibility::Eligible { body_hash: None };
    }
    if *method != Method::POST || request.client_forced_ttl().is_none() {
        return Eligibility::NotInvolved;
    }
    if body.len() as u64 > max_body {
        return Eligibility::BodyTooLarge;
    }
    Eligibility::Eligible {
        body_hash: Some(super::key::sha256_hex(body)),
    }
}

/// Whether a response is stored, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// Stored for `ttl`; `forced` when the TTL comes from the client's opt-in.
    Store { ttl: Duration, forced: bool },
    /// Not stored, with the reason (a metric label).
    Skip(&'static str),
}

/// Statuses whose responses may be stored.
const STORABLE_STATUSES: &[u16] = &[200, 203, 301, 308, 404, 410];

/// The request headers the key varies on; a response whose `Vary` names anything else is not stored
/// (its variants could not be told apart).
pub const VARY_HEADERS: [HeaderName; 3] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
];

/// Decides whether a response is stored and for how long.
///
/// Every request through the proxy carries `Authorization`, so the response itself must allow
/// shared caching (`public` or `s-maxage`); its TTL is `s-maxage`, then `max-age`, then
/// `default_ttl`. Otherwise the client's forced TTL applies, unless the response forbids storing.
pub fn storability(
    status: StatusCode,
    response_headers: &HeaderMap,
    request: &CacheControl,
    stream_responses: bool,
    default_ttl: Duration,
) -> Storability {
    if !STORABLE_STATUSES.contains(&status.as_u16()) {
        return Storability::Skip("status");
    }
    let response = CacheControl::parse(response_headers);
    if response.no_store || response.private {
        return Storability::Skip("no_store");
    }
    if !vary_is_covered(response_headers) {
        return Storability::Skip("vary");
    }
    if is_event_stream(response_headers) && !stream_responses {
        return Storability::Skip("stream");
    }
    let shared_allowed = response.public || response.s_maxage.is_some_and(|s| s > 0);
    if shared_allowed && !response.no_cache {
        let ttl = response
            .s_maxage
            .or(response.max_age)
            .map_or(default_ttl, Duration::from_secs);
        if !ttl.is_zero() {
            return Storability::Store { ttl, forced: false };
        }
    }
    match request.client_forced_ttl() {
        Some(seconds) => Storability::Store {
            ttl: Duration::from_secs(seconds),
            forced: true,
        },
        None if shared_allowed => Storability::Skip("ttl_zero"),
        None => Storability::Skip("not_public"),
    }
}

/// `Vary` names only headers of [`VARY_HEADERS`] (and is not `*`).
fn vary_is_covered(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().all(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .all(|name| {
                    VARY_HEADERS
                        .iter()
                        .any(|h| h.as_str().eq_ignore_ascii_case(name))
                })
        })
    })
}

/// The response is Server-Sent Events.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Whether a response header is kept in a stored entry: hop-by-hop headers, per-exchange timing,
/// `Date` (set again on a hit), `Set-Cookie` and `Content-Length` (recomputed) are dropped.
pub fn keeps_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    !(is_hop_by_hop(name)
        || matches!(
            name,
            "date"
                | "set-cookie"
                | "content-length"
                | "x-upstream-request-start"
                | "x-upstream-request-stop"
        )
        || (name.starts_with("x-proxy-") && name.ends_with("-at")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn cache_control_directives_are_parsed_case_insensitively() {
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=\"60\""),
            (
                "cache-control",
                "s-maxage=30, no-cache, bogus=x, max-age=oops",
            ),
        ]));
        assert!(cc.public && cc.no_cache && !cc.no_store && !cc.private);
        assert_eq!((cc.max_age, cc.s_maxage), (Some(60), Some(30)));
        assert_eq!(cc.client_forced_ttl(), Some(30));
        assert!(cc.wants_revalidation());
        assert_eq!(
            CacheControl::parse(&HeaderMap::new()),
            CacheControl::default()
        );
    }

    #[test]
    fn client_forced_ttl_needs_public_and_a_positive_age() {
        let cc = |v: &str| CacheControl::parse(&headers(&[("cache-control", v)]));
        assert_eq!(cc("max-age=60").client_forced_ttl(), None);
        assert_eq!(cc("public").client_forced_ttl(), None);
        assert_eq!(cc("public, max-age=0").client_forced_ttl(), None);
        assert_eq!(cc("public, max-age=60").client_forced_ttl(), Some(60));
        assert!(cc("max-age=0").wants_revalidation());
    }

    #[test]
    fn post_is_eligible_only_with_opt_in_and_a_small_body() {
        let none = CacheControl::default();
        let opt_in = CacheControl::parse(&headers(&[("cache-control", "public, max-age=60")]));
        assert_eq!(
            eligibility(&Method::POST, &none, b"{}", 10),
            Eligibility::NotInvolved
        );
        assert_eq!(
            eligibility(&Method::DELETE, &opt_in, b"", 10),
            Eligibility::NotInvolved
        );
        assert_eq!(
            eligibility(&Method::POST, &opt_in, b"0123456789x", 10),
            Eligibility::BodyTooLarge
        );
        let Eligibility::Eligible {
            body_hash: Some(hash),
        } = eligibility(&Method::POST, &opt_in, b"{}", 10)
        else {
            panic!("POST with opt-in is eligible");
        };
        assert_eq!(hash.len(), 64);
        assert_eq!(
            eligibility(&Method::GET, &none, b"", 0),
            Eligibility::Eligible { body_hash: None }
        );
    }

    #[test]
    fn response_ttl_rules() {
        let default = Duration::from_secs(300);
        let none = CacheControl::default();
        let forced = CacheControl::parse(&headers(&[("cache-control", "public, max-age=7")]));
        let ok = StatusCode::OK;
        let store = |resp: &[(&str, &str)], req: &CacheControl| {
            storability(ok, &headers(resp), req, false, default)
        };
        assert_eq!(
            store(
                &[("cache-control", "public, max-age=60, s-maxage=30")],
                &none
            ),
            Storability::Store {
                ttl: Duration::from_secs(30),
                forced: false
            }
        );
        assert_eq!(
            store(&[("cache-control", "public")], &none),
            Storability::Store {
                ttl: default,
                forced: false
            }
        );
        assert_eq!(
            store(&[("cache-control", "max-age=60")], &none),
            Storability::Skip("not_public")
        );
        assert_eq!(store(&[], &none), Storability::Skip("not_public"));
        assert_eq!(
            store(&[], &forced),
            Storability::Store {
                ttl: Duration::from_secs(7),
                forced: true
            }
        );
        assert_eq!(
            store(&[("cache-control", "no-store")], &forced),
            Storability::Skip("no_store")
        );
        assert_eq!(
            store(&[("cache-control", "private, max-age=60")], &forced),
            Storability::Skip("no_store")
        );
        assert_eq!(
            store(&[("cache-control", "public, max-age=0")], &none),
            Storability::Skip("ttl_zero")
        );
        assert_eq!(
            store(
                &[
                    ("cache-control", "public"),
                    ("vary", "Accept, accept-language")
                ],
                &none
            ),
            Storability::Store {
                ttl: default,
                forced: false
            }
        );
        assert_eq!(
            store(&[("cache-control", "public"), ("vary", "Origin")], &none),
            Storability::Skip("vary")
        );
        assert_eq!(
            store(&[("cache-control", "public"), ("vary", "*")], &none),
            Storability::Skip("vary")
        );
        assert_eq!(
            store(
                &[
                    ("cache-control", "public"),
                    ("content-type", "text/event-stream")
                ],
                &none
            ),
            Storability::Skip("stream")
        );
        assert_eq!(
            storability(
                StatusCode::CREATED,
                &headers(&[("cache-control", "public")]),
                &none,
                false,
                default
            ),
            Storability::Skip("status")
        );
        assert_eq!(
            storability(
                StatusCode::NOT_FOUND,
                &headers(&[("cache-control", "public")]),
                &none,
                false,
                default
            ),
            Storability::Store {
                ttl: default,
                forced: false
            }
        );
    }

    #[test]
    fn per_exchange_headers_are_not_stored() {
        for dropped in [
            "date",
            "set-cookie",
            "transfer-encoding",
            "x-upstream-request-stop",
            "x-proxy-first-response-at",
            "content-length",
        ] {
            assert!(
                !keeps_header(&HeaderName::from_static(dropped)),
                "{dropped}"
            );
        }
        for kept in ["content-type", "etag", "openai-processing-ms", "x-proxy"] {
            assert!(keeps_header(&HeaderName::from_static(kept)), "{kept}");
        }
    }
}
