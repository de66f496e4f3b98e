//! Cache keys: `<prefix><project_id>:<resource>:<variant>`.
//!
//! - `resource` = SHA-256 of the method, the path and the canonical query (keys sorted, values of a
//!   key sorted): what an exact purge of `method` + `url` names, so it removes every variant.
//! - `variant` = SHA-256 of the request headers the cache varies on (`Accept`, `Accept-Encoding`,
//!   `Accept-Language`, the same set at lookup and store), the body hash of an opted-in POST and the
//!   client's forced TTL.
//!
//! The project id scopes every entry (one project never gets another's answer); the key holds no
//! token, provider key or header value in clear.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::policy::VARY_HEADERS;

/// The key of one cache entry, without the backend prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub project_id: String,
    pub resource: String,
    pub variant: String,
}

impl CacheKey {
    pub fn new(
        project_id: &str,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body_hash: Option<&str>,
        forced_ttl: Option<u64>,
    ) -> Self {
        Self {
            project_id: project_id.to_owned(),
            resource: resource_hash(method, path, query),
            variant: variant_hash(headers, body_hash, forced_ttl),
        }
    }

    /// The backend key.
    pub fn storage_key(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}:{}:{}",
            self.project_id, self.resource, self.variant
        )
    }

    /// What `X-PROXY-CACHE-KEY` shows (and a prefix purge matches): `<resource>:<variant>`.
    pub fn public_id(&self) -> String {
        format!("{}:{}", self.resource, self.variant)
    }
}

/// The parts of a storage key, for purges that walk the keys.
pub fn split_storage_key<'a>(key: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix(prefix)?;
    // The project id may itself contain ':'; the two hashes never do.
    let mut parts = rest.rsplitn(3, ':');
    let variant = parts.next()?;
    let resource = parts.next()?;
    let project = parts.next()?;
    let public_id_start = rest.len() - variant.len() - resource.len() - 1;
    Some((project, rest.get(public_id_start..)?))
}

/// Hash of `METHOD|PATH|` plus the canonical query.
pub fn resource_hash(method: &str, path: &str, query: Option<&str>) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort_unstable();
    let mut text = format!("{method}|{path}|");
    let mut index = 0;
    while index < pairs.len() {
        let name = pairs[index].0;
        text.push_str(name);
        text.push('=');
        let mut first = true;
        while index < pairs.len() && pairs[index].0 == name {
            if !first {
                text.push(',');
            }
            text.push_str(pairs[index].1);
            first = false;
            index += 1;
        }
        text.push('&');
    }
    sha256_hex(text.as_bytes())
}

fn variant_hash(headers: &HeaderMap, body_hash: Option<&str>, forced_ttl: Option<u64>) -> String {
    let mut text = String::new();
    for name in &VARY_HEADERS {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        if !values.is_empty() {
            text.push_str(name.as_str());
            text.push(':');
            text.push_str(&values.join(","));
            text.push('|');
        }
    }
    if let Some(body_hash) = body_hash {
        text.push_str("|body=");
        text.push_str(body_hash);
    }
    if let Some(ttl) = forced_ttl {
        text.push_str("|ttl=");
        text.push_str(&ttl.to_string());
    }
    sha256_hex(text.as_bytes())
}

pub fn sha256_hex(data: &[u8]) -> String {
    llm_proxy_store::token::lower_hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(project: &str, query: Option<&str>, headers: &[(&str, &str)]) -> CacheKey {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        CacheKey::new(project, "GET", "/v1/models", query, &map, None, None)
    }

    #[test]
    fn query_order_does_not_matter_but_values_do() {
        assert_eq!(
            key("p", Some("b=2&a=1&a=0"), &[]),
            key("p", Some("a=0&a=1&b=2"), &[])
        );
        assert_ne!(key("p", Some("a=1"), &[]), key("p", Some("a=2"), &[]));
        assert_ne!(
            key("p", None, &[]).resource,
            resource_hash("HEAD", "/v1/models", None)
        );
    }

    #[test]
    fn projects_and_vary_headers_separate_entries_of_one_resource() {
        let a = key("project-a", None, &[]);
        let b = key("project-b", None, &[]);
        let json = key("project-a", None, &[("accept", "application/json")]);
        assert_eq!(a.resource, b.resource);
        assert_ne!(a.storage_key("x:"), b.storage_key("x:"));
        assert_eq!(a.resource, json.resource);
        assert_ne!(a.variant, json.variant);
        // Headers outside the vary set do not split entries.
        assert_eq!(
            a,
            key("project-a", None, &[("authorization", "Bearer sk-secret")])
        );
    }

    #[test]
    fn storage_keys_split_back_into_project_and_public_id() {
        let key = key("proj:with:colons", Some("a=1"), &[]);
        let storage = key.storage_key("llmproxy:cache:");
        assert_eq!(
            split_storage_key(&storage, "llmproxy:cache:"),
            Some(("proj:with:colons", key.public_id().as_str()))
        );
        assert!(!storage.contains("sk-"));
        assert_eq!(split_storage_key("other:key", "llmproxy:cache:"), None);
    }
}
