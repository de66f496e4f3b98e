//! The headers the proxy sets itself (`x-proxy-*`, `x-request-id`, `x-upstream-request-*` and the
//! cache's), and the hop-by-hop rule (RFC 9110 §7.6.1): one place for the data path and the cache.

use http::header::{self, HeaderMap, HeaderName};

/// The value of [`X_PROXY`].
pub const PROXY_NAME: &str = "llm-proxy";
/// The value of [`X_PROXY_VERSION`].
pub const PROXY_VERSION: &str = env!("CARGO_PKG_VERSION");

pub const X_PROXY: HeaderName = HeaderName::from_static("x-proxy");
pub const X_PROXY_ID: HeaderName = HeaderName::from_static("x-proxy-id");
pub const X_PROXY_VERSION: HeaderName = HeaderName::from_static("x-proxy-version");
pub const X_PROXY_RECEIVED_AT: HeaderName = HeaderName::from_static("x-proxy-received-at");
pub const X_PROXY_FIRST_RESPONSE_AT: HeaderName =
    HeaderName::from_static("x-proxy-first-response-at");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_UPSTREAM_REQUEST_START: HeaderName =
    HeaderName::from_static("x-upstream-request-start");
pub const X_UPSTREAM_REQUEST_STOP: HeaderName = HeaderName::from_static("x-upstream-request-stop");

pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
pub const X_PROXY_CACHE: HeaderName = HeaderName::from_static("x-proxy-cache");
pub const X_PROXY_CACHE_KEY: HeaderName = HeaderName::from_static("x-proxy-cache-key");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes the hop-by-hop headers and those the `Connection` header lists.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, is_hop_by_hop);
}

/// Removes the headers whose (lower-case) name matches `doomed`, and those the `Connection` header
/// lists. One pass over the headers present: removing each listed name instead would parse and hash
/// every name of the lists on every request.
pub fn remove_where(headers: &mut HeaderMap, doomed: fn(&str) -> bool) {
    // Neither `collect` allocates when nothing matches (the usual case for both).
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name.as_str()) || listed.contains(name))
        .cloned()
        .collect();
    for name in present {
        headers.remove(&name);
    }
}
