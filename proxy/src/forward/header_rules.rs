//! Header rules of the `/v1` path: what is removed and added on the way upstream, and the CORS
//! answers. The header names and the hop-by-hop rule are in [`crate::headers`].

use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Uri};

use crate::headers::{
    PROXY_NAME, PROXY_VERSION, X_PROXY, X_PROXY_VERSION, X_REQUEST_ID, X_UPSTREAM_REQUEST_START,
    is_hop_by_hop, remove_where,
};

/// The spec's list plus the rate-limit headers of a 429, so browser clients can read when to retry.
pub(super) const EXPOSED_HEADERS: &str = "X-Request-ID, X-Proxy-ID, X-LLM-Proxy-Remote-Duration, \
     X-LLM-Proxy-Remote-Duration-Ms, Retry-After, X-RateLimit-Limit-Requests, \
     X-RateLimit-Remaining-Requests, X-RateLimit-Reset-Requests";
pub(super) const PREFLIGHT_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
pub(super) const PREFLIGHT_DEFAULT_HEADERS: &str = "Authorization, Content-Type, X-Requested-With";

/// Client headers that identify the client's address; never forwarded.
fn is_client_address(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for"
            | "x-real-ip"
            | "cf-connecting-ip"
            | "cf-ipcountry"
            | "x-client-ip"
            | "x-original-forwarded-for"
    )
}

/// Client headers the upstream request never carries: hop-by-hop, client address, the proxy's
/// own (the client cannot spoof them), and those the proxy sets itself.
fn is_dropped_upstream(name: &str) -> bool {
    is_hop_by_hop(name)
        || is_client_address(name)
        || name.starts_with("x-proxy")
        || name.starts_with("x-upstream-")
        || matches!(name, "host" | "content-length" | "authorization")
}

pub(super) fn preflight(headers: &HeaderMap, origin: Option<&HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if origin.is_some() {
        let out = response.headers_mut();
        out.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(PREFLIGHT_METHODS),
        );
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static(PREFLIGHT_DEFAULT_HEADERS));
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        out.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    response
}

pub(super) fn prepare_upstream_headers(
    headers: &mut HeaderMap,
    uri: &Uri,
    request_id: &HeaderValue,
    start_nanos: u64,
) {
    remove_where(headers, is_dropped_upstream);
    if headers.get(header::ACCEPT).is_none_or(|v| v.is_empty())
        && uri
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair == "stream=true"))
    {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    headers.insert(X_PROXY, HeaderValue::from_static(PROXY_NAME));
    headers.insert(X_PROXY_VERSION, HeaderValue::from_static(PROXY_VERSION));
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(X_UPSTREAM_REQUEST_START, HeaderValue::from(start_nanos));
}

#[cfg(test)]
mod tests {
    use http::header::HeaderName;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn upstream_headers_drop_client_identity_and_hop_by_hop() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("authorization", "Bearer sk-client"),
            ("x-proxy-id", "spoofed"),
            ("x-request-id", "client-chosen"),
            ("x-upstream-request-stop", "spoofed"),
            ("cf-ipcountry", "XX"),
            ("te", "trailers"),
            ("host", "client.example"),
            ("content-length", "3"),
            ("openai-organization", "org-1"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let id = Uuid::new_v4();
        let id_header = HeaderValue::try_from(id.to_string()).unwrap();
        prepare_upstream_headers(
            &mut headers,
            &"/v1/x?stream=true".parse().unwrap(),
            &id_header,
            7,
        );
        for gone in [
            "x-forwarded-for",
            "x-real-ip",
            "connection",
            "x-custom-hop",
            "authorization",
            "x-proxy-id",
            "x-upstream-request-stop",
            "cf-ipcountry",
            "te",
            "host",
            "content-length",
        ] {
            assert!(headers.get(gone).is_none(), "{gone} forwarded");
        }
        assert_eq!(headers["x-request-id"], id.to_string().as_str());
        assert_eq!(headers["openai-organization"], "org-1");
        assert_eq!(headers["accept"], "text/event-stream");
        assert_eq!(headers["x-upstream-request-start"], "7");
    }
}
