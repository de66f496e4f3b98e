//! The provider file (`API_CONFIG_PATH`): which upstream serves `/v1` and what clients may send to it.
//!
//! The YAML is read once, with unknown fields rejected, and validated into a [`Provider`]. An absent
//! file selects the built-in OpenAI fallback; a file that exists but cannot be read or is invalid is a
//! start-up error (upstream silently fell back, which hid typos in production).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Uri};
use serde::Deserialize;

use llm_proxy_env::values::parse_duration;

/// The one provider that serves `/v1` in this process.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Name of the provider in the file (`openai` for the fallback).
    pub name: String,
    /// Scheme, authority and optional path prefix of the upstream (no trailing slash).
    pub base_url: Uri,
    /// Path prefixes clients may call (without a trailing `/`), matched on whole path segments;
    /// shared, as they are also the `route` label of the request metrics.
    pub allowed_endpoints: Vec<Arc<str>>,
    /// Methods clients may use.
    pub allowed_methods: Vec<Method>,
    /// JSON body fields whose values must match one of the glob patterns.
    pub param_whitelist: Vec<ParamRule>,
    /// Exact `Origin` values accepted when present (empty = any origin).
    pub allowed_origins: Vec<String>,
    /// Requests without an `Origin` header are rejected.
    pub origin_required: bool,
    /// Longest wait for the upstream's response headers.
    pub response_header_timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub idle_connection_timeout: Duration,
    /// Idle pooled connections kept per upstream host.
    pub max_idle_conns_per_host: usize,
}

/// One entry of `param_whitelist`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamRule {
    /// Top-level JSON field name, e.g. `model`.
    pub field: String,
    /// Glob patterns (`*` = any run of characters except `/`, `?` = one such character).
    pub patterns: Vec<String>,
}

impl ParamRule {
    /// Whether `value` matches at least one pattern.
    pub fn allows(&self, value: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, value))
    }
}

/// Endpoints of the built-in fallback provider (spec §1.1).
const FALLBACK_ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/edits",
    "/v1/fine-tunes",
    "/v1/files",
    "/v1/images/generations",
    "/v1/audio/transcriptions",
    "/v1/moderations",
];
const DEFAULT_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(90);
/// Upstream uses 20; a pool smaller than the concurrency reconnects per request over HTTP/1.1.
const DEFAULT_MAX_IDLE_PER_HOST: usize = 100;

/// Why the provider configuration was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProviderError {
    #[error("cannot read provider file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("provider file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("provider file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    #[serde(default)]
    default_api: Option<String>,
    apis: BTreeMap<String, ProviderEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    base_url: String,
    allowed_endpoints: Vec<String>,
    allowed_methods: Vec<String>,
    #[serde(default)]
    timeouts: TimeoutsEntry,
    #[serde(default)]
    connection: ConnectionEntry,
    #[serde(default)]
    param_whitelist: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    required_headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsEntry {
    /// Accepted for compatibility; the server's REQUEST_TIMEOUT bounds exchanges.
    request: Option<String>,
    response_header: Option<String>,
    idle_connection: Option<String>,
    /// Accepted for compatibility; every chunk is flushed as it arrives.
    flush_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionEntry {
    /// Total idle connections; with a single upstream host it caps the per-host value.
    max_idle_conns: Option<usize>,
    max_idle_conns_per_host: Option<usize>,
}

/// Loads the provider that serves `/v1`: from `path` when the file exists, else the built-in fallback
/// pointing at `fallback_base_url` (`OPENAI_API_URL`).
pub fn load_provider(
    path: &Path,
    wanted: &str,
    fallback_base_url: &str,
) -> Result<Provider, ProviderError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_provider_file(&text, wanted, &shown),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fallback_provider(fallback_base_url).map_err(|reason| ProviderError::Invalid {
                path: "OPENAI_API_URL".to_owned(),
                reason,
            })
        }
        Err(err) => Err(ProviderError::Read {
            path: shown,
            reason: err.to_string(),
        }),
    }
}

fn endpoint(path: &str) -> Arc<str> {
    Arc::from(path.trim_end_matches('/'))
}

/// The built-in provider used when no file exists.
pub fn fallback_provider(base_url: &str) -> Result<Provider, String> {
    Ok(Provider {
        name: "openai".to_owned(),
        base_url: parse_base_url(base_url)?,
        allowed_endpoints: FALLBACK_ENDPOINTS.iter().map(|e| endpoint(e)).collect(),
        allowed_methods: vec![Method::GET, Method::POST, Method::DELETE],
        param_whitelist: Vec::new(),
        allowed_origins: Vec::new(),
        origin_required: false,
        response_header_timeout: DEFAULT_RESPONSE_HEADER_TIMEOUT,
        idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
        max_idle_conns_per_host: DEFAULT_MAX_IDLE_PER_HOST,
    })
}

/// Parses and validates the YAML text of a provider file.
pub fn parse_provider_file(
    text: &str,
    wanted: &str,
    path: &str,
) -> Result<Provider, ProviderError> {
    let invalid = |reason: String| ProviderError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file: ProvidersFile = serde_saphyr::from_str(text).map_err(|err| ProviderError::Parse {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    if let Some(default_api) = &file.default_api
        && !file.apis.contains_key(default_api)
    {
        return Err(invalid(format!(
            "default_api '{default_api}' is not defined under apis"
        )));
    }
    let (name, entry) = match file.apis.get_key_value(wanted) {
        Some(found) => found,
        None => file
            .default_api
            .as_ref()
            .and_then(|d| file.apis.get_key_value(d))
            .ok_or_else(|| {
                invalid(format!(
                    "provider '{wanted}' (DEFAULT_API_PROVIDER) is not defined and there is no default_api"
                ))
            })?,
    };
    build_provider(name, entry).map_err(|reason| invalid(format!("apis.{name}: {reason}")))
}

fn build_provider(name: &str, entry: &ProviderEntry) -> Result<Provider, String> {
    let base_url = parse_base_url(&entry.base_url)?;
    if entry.allowed_endpoints.is_empty() {
        return Err("allowed_endpoints must not be empty".to_owned());
    }
    for endpoint in &entry.allowed_endpoints {
        if !endpoint.starts_with('/') || endpoint.contains("..") || endpoint.contains("//") {
            return Err(format!(
                "allowed_endpoints entry '{endpoint}' must be an absolute path without '..' or '//'"
            ));
        }
    }
    if entry.allowed_methods.is_empty() {
        return Err("allowed_methods must not be empty".to_owned());
    }
    let allowed_methods = entry
        .allowed_methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("allowed_methods entry '{m}' is not an HTTP method"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut param_whitelist = Vec::with_capacity(entry.param_whitelist.len());
    for (field, patterns) in &entry.param_whitelist {
        if patterns.is_empty() {
            return Err(format!(
                "param_whitelist.{field} must list at least one pattern"
            ));
        }
        if let Some(bad) = patterns.iter().find(|p| p.contains(['[', ']', '\\'])) {
            return Err(format!(
                "param_whitelist.{field} pattern '{bad}' uses character classes or escapes, which are not supported (use * and ?)"
            ));
        }
        param_whitelist.push(ParamRule {
            field: field.clone(),
            patterns: patterns.clone(),
        });
    }
    let mut origin_required = false;
    for header in &entry.required_headers {
        if header.eq_ignore_ascii_case("origin") {
            origin_required = true;
        } else {
            return Err(format!(
                "required_headers entry '{header}' is not supported (only 'origin')"
            ));
        }
    }
    let timeout = |field: &str, value: &Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(raw) => {
            parse_duration(raw).map_err(|reason| format!("timeouts.{field} '{raw}': {reason}"))
        }
    };
    timeout("request", &entry.timeouts.request, Duration::ZERO)?;
    timeout(
        "flush_interval",
        &entry.timeouts.flush_interval,
        Duration::ZERO,
    )?;
    Ok(Provider {
        name: name.to_owned(),
        base_url,
        allowed_endpoints: entry
            .allowed_endpoints
            .iter()
            .map(|e| endpoint(e))
            .collect(),
        allowed_methods,
        param_whitelist,
        allowed_origins: entry.allowed_origins.clone(),
        origin_required,
        response_header_timeout: timeout(
            "response_header",
            &entry.timeouts.response_header,
            DEFAULT_RESPONSE_HEADER_TIMEOUT,
        )?,
        idle_connection_timeout: timeout(
            "idle_connection",
            &entry.timeouts.idle_connection,
            DEFAULT_IDLE_CONNECTION_TIMEOUT,
        )?,
        max_idle_conns_per_host: entry
            .connection
            .max_idle_conns_per_host
            .unwrap_or(DEFAULT_MAX_IDLE_PER_HOST)
            .min(entry.connection.max_idle_conns.unwrap_or(usize::MAX)),
    })
}

fn parse_base_url(raw: &str) -> Result<Uri, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("base_url must not be empty".to_owned());
    }
    let uri: Uri = trimmed
        .parse()
        .map_err(|_| format!("base_url '{raw}' is not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "base_url '{raw}' must start with http:// or https://"
            ));
        }
    }
    if uri.authority().is_none() {
        return Err(format!("base_url '{raw}' has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("base_url '{raw}' must not have a query"));
    }
    Ok(uri)
}

/// Glob match in the style of Go's `path.Match` without character classes: `*` matches any run of
/// characters other than `/`, `?` exactly one such character.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let value: Vec<char> = value.chars().collect();
    let (mut p, mut v) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, v));
                p += 1;
            }
            Some('?') if value.get(v) != Some(&'/') => {
                p += 1;
                v += 1;
            }
            Some(c) if *c != '?' && value.get(v) == Some(c) => {
                p += 1;
                v += 1;
            }
            _ => match backtrack {
                Some((star_p, star_v)) if value.get(star_v) != Some(&'/') => {
                    backtrack = Some((star_p, star_v + 1));
                    p = star_p + 1;
                    v = star_v + 1;
                }
                _ => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
default_api: openai
apis:
  openai:
    base_url: https://api.openai.com/
    allowed_endpoints: [/v1/chat/completions, /v1/models]
    allowed_methods: [get, POST, OPTIONS]
    timeouts: {request: 120s, response_header: 45s, idle_connection: 60s, flush_interval: 10ms}
    connection: {max_idle_conns: 100, max_idle_conns_per_host: 7}
    param_whitelist:
      model: [gpt-4o, "gpt-4.1-*"]
    allowed_origins: [https://app.example.com]
    required_headers: [origin]
  anthropic:
    base_url: https://api.anthropic.com
    allowed_endpoints: [/v1/messages]
    allowed_methods: [POST]
"#;

    fn parse(text: &str, wanted: &str) -> Result<Provider, ProviderError> {
        parse_provider_file(text, wanted, "test.yaml")
    }

    fn reason(result: Result<Provider, ProviderError>) -> String {
        match result {
            Err(err) => err.to_string(),
            Ok(p) => panic!("expected an error, got {p:?}"),
        }
    }

    #[test]
    fn a_full_file_is_parsed_into_the_wanted_provider() {
        let p = parse(GOOD, "openai").unwrap();
        assert_eq!(p.name, "openai");
        assert_eq!(p.base_url.to_string(), "https://api.openai.com/");
        assert_eq!(
            p.allowed_methods,
            vec![Method::GET, Method::POST, Method::OPTIONS]
        );
        assert_eq!(p.response_header_timeout, Duration::from_secs(45));
        assert_eq!(p.idle_connection_timeout, Duration::from_secs(60));
        assert_eq!(p.max_idle_conns_per_host, 7);
        assert!(p.origin_required);
        assert_eq!(p.allowed_origins, vec!["https://app.example.com"]);
        assert!(p.param_whitelist[0].allows("gpt-4.1-mini"));
        assert!(!p.param_whitelist[0].allows("gpt-3.5-turbo"));
        let a = parse(GOOD, "anthropic").unwrap();
        assert_eq!(a.allowed_endpoints, [Arc::<str>::from("/v1/messages")]);
    }

    #[test]
    fn an_unknown_wanted_provider_falls_back_to_default_api() {
        assert_eq!(parse(GOOD, "missing").unwrap().name, "openai");
        let no_default = GOOD.replace("default_api: openai\n", "");
        assert!(reason(parse(&no_default, "missing")).contains("DEFAULT_API_PROVIDER"));
    }

    #[test]
    fn default_api_must_exist() {
        let text = GOOD.replace("default_api: openai", "default_api: nope");
        assert!(reason(parse(&text, "openai")).contains("default_api 'nope'"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = GOOD.replace("allowed_origins:", "allowed_origin:");
        assert!(matches!(
            parse(&text, "openai"),
            Err(ProviderError::Parse { .. })
        ));
        let top = format!("{GOOD}\nextra: 1\n");
        assert!(matches!(
            parse(&top, "openai"),
            Err(ProviderError::Parse { .. })
        ));
    }

    #[test]
    fn required_fields_are_validated() {
        let cases = [
            (
                "base_url: https://api.openai.com/",
                "base_url: \"\"",
                "base_url must not be empty",
            ),
            (
                "base_url: https://api.openai.com/",
                "base_url: ftp://x",
                "http:// or https://",
            ),
            (
                "allowed_endpoints: [/v1/chat/completions, /v1/models]",
                "allowed_endpoints: []",
                "allowed_endpoints must not be empty",
            ),
            (
                "allowed_endpoints: [/v1/chat/completions, /v1/models]",
                "allowed_endpoints: [v1/chat]",
                "absolute path",
            ),
            (
                "allowed_methods: [get, POST, OPTIONS]",
                "allowed_methods: []",
                "allowed_methods must not be empty",
            ),
            (
                "allowed_methods: [get, POST, OPTIONS]",
                "allowed_methods: [\"GE T\"]",
                "not an HTTP method",
            ),
            (
                "required_headers: [origin]",
                "required_headers: [x-api]",
                "only 'origin'",
            ),
            (
                "response_header: 45s",
                "response_header: soon",
                "timeouts.response_header",
            ),
            (
                "model: [gpt-4o, \"gpt-4.1-*\"]",
                "model: []",
                "at least one pattern",
            ),
            (
                "model: [gpt-4o, \"gpt-4.1-*\"]",
                "model: [\"gpt-[45]\"]",
                "character classes",
            ),
        ];
        for (from, to, expected) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "replacement {from:?} did not apply");
            let message = reason(parse(&text, "openai"));
            assert!(message.contains(expected), "{to}: {message}");
        }
    }

    #[test]
    fn malformed_yaml_is_a_parse_error() {
        assert!(matches!(
            parse("apis: [", "openai"),
            Err(ProviderError::Parse { .. })
        ));
    }

    #[test]
    fn an_absent_file_selects_the_fallback_and_a_broken_one_is_an_error() {
        let dir =
            std::env::temp_dir().join(format!("llm-proxy-providers-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let p = load_provider(&missing, "openai", "http://127.0.0.1:9").unwrap();
        assert_eq!(p.allowed_endpoints.len(), FALLBACK_ENDPOINTS.len());
        assert_eq!(p.base_url.to_string(), "http://127.0.0.1:9/");
        assert_eq!(
            p.allowed_methods,
            vec![Method::GET, Method::POST, Method::DELETE]
        );
        let broken = dir.join("broken.yaml");
        std::fs::write(&broken, "apis: {openai: {base_url: x}}").unwrap();
        assert!(load_provider(&broken, "openai", "http://127.0.0.1:9").is_err());
        assert!(load_provider(&missing, "openai", "not a url").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn globs_follow_path_match() {
        assert!(glob_match("gpt-4o", "gpt-4o"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(glob_match("gpt-4o-*", "gpt-4o-mini"));
        assert!(glob_match("gpt-4o-*", "gpt-4o-"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("o?-mini", "o4-mini"));
        assert!(!glob_match("o?-mini", "o-mini"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }
}
