//! [`Reader`]: how a process reads the variables of the contract, from the process environment or
//! through a lookup function (tests never touch the process environment).
//!
//! Every read follows the same rules: the value is trimmed; empty means unset means the contract's
//! default; the value is checked against the variable's [`crate::Syntax`] (the same check as
//! [`crate::check`]) before it is converted; a refused value is a [`ValueError`], never a fallback.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ValueError;
use crate::keywords::Keyword;
use crate::values::{self, IpNetwork};

/// Reads variables through a lookup function (`name` → value).
#[derive(Debug, Clone)]
pub struct Reader<F> {
    lookup: F,
}

/// The lookup of [`Reader::from_process_env`].
pub type ProcessEnv = fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Reader<ProcessEnv> {
    /// Reads the process environment.
    pub fn from_process_env() -> Self {
        Self {
            lookup: process_env,
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Reads through `lookup`.
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// The trimmed value of `name`, or its default when unset or blank. Not checked.
    fn value(&self, name: &'static str) -> String {
        match (self.lookup)(name) {
            Some(value) if !value.trim().is_empty() => value.trim().to_owned(),
            _ => crate::find(name)
                .map(|var| var.default.to_owned())
                .unwrap_or_default(),
        }
    }

    /// Reads `name`, checks it against its syntax in the contract and converts it with `convert`
    /// (whose error becomes a [`ValueError`] for `name`). For conversions the contract does not
    /// know, such as a library's own parser.
    pub fn parse<T>(
        &self,
        name: &'static str,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ValueError> {
        let value = self.value(name);
        crate::check(name, &value)?;
        convert(&value).map_err(|reason| ValueError::new(name, &value, reason))
    }

    /// The checked value (its default when unset; `""` when it has none).
    pub fn text(&self, name: &'static str) -> Result<String, ValueError> {
        self.parse(name, |value| Ok(value.to_owned()))
    }

    /// The checked value, `None` when it is empty and has no default.
    pub fn optional(&self, name: &'static str) -> Result<Option<String>, ValueError> {
        self.text(name)
            .map(|value| (!value.is_empty()).then_some(value))
    }

    /// A boolean ([`values::parse_bool`]).
    pub fn bool(&self, name: &'static str) -> Result<bool, ValueError> {
        self.parse(name, values::parse_bool)
    }

    /// A duration ([`values::parse_duration`]), zero refused where the contract says so.
    pub fn duration(&self, name: &'static str) -> Result<Duration, ValueError> {
        self.parse(name, values::parse_duration)
    }

    /// A whole number in the contract's range, as `T`.
    pub fn integer<T: TryFrom<u64>>(&self, name: &'static str) -> Result<T, ValueError> {
        self.parse(name, |value| fits(values::parse_integer(value)?))
    }

    /// A byte size ([`values::parse_size`]) in the contract's range, as `T`.
    pub fn size<T: TryFrom<u64>>(&self, name: &'static str) -> Result<T, ValueError> {
        self.parse(name, |value| fits(values::parse_size(value)?))
    }

    /// A listen address, a host name resolved ([`values::parse_listen_addr`]).
    pub fn listen_addr(&self, name: &'static str) -> Result<SocketAddr, ValueError> {
        self.parse(name, |value| values::parse_listen_addr(value)?.resolve())
    }

    /// One of the words of `K`.
    pub fn keyword<K: Keyword>(&self, name: &'static str) -> Result<K, ValueError> {
        self.parse(name, K::parse)
    }

    /// A list of IP networks ([`values::parse_ip_networks`]).
    pub fn ip_networks(&self, name: &'static str) -> Result<Vec<IpNetwork>, ValueError> {
        self.parse(name, values::parse_ip_networks)
    }

    /// The metrics path, normalised ([`values::parse_metrics_path`]).
    pub fn metrics_path(&self, name: &'static str) -> Result<String, ValueError> {
        self.parse(name, values::parse_metrics_path)
    }
}

fn fits<T: TryFrom<u64>>(value: u64) -> Result<T, String> {
    T::try_from(value).map_err(|_| "too large for this platform".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::EventBusKind;

    fn reader(pairs: &[(&str, &str)]) -> Reader<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Reader::new(move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn unset_and_blank_values_read_as_the_contract_default() {
        let unset = reader(&[]);
        let blank = reader(&[(crate::SHUTDOWN_TIMEOUT, "  "), (crate::LOG_FILE, "")]);
        for r in [&unset, &blank] {
            assert_eq!(
                r.duration(crate::SHUTDOWN_TIMEOUT),
                Ok(Duration::from_secs(30))
            );
            assert_eq!(r.optional(crate::LOG_FILE), Ok(None));
        }
        assert_eq!(unset.integer::<u32>(crate::DATABASE_POOL_SIZE), Ok(10));
        assert_eq!(
            unset.text(crate::REDIS_STREAM_KEY).as_deref(),
            Ok("llm-proxy-events")
        );
    }

    #[test]
    fn values_are_trimmed_and_converted() {
        let r = reader(&[
            (crate::SHUTDOWN_TIMEOUT, " 1.5s "),
            (crate::LLM_PROXY_DISPATCHER_VERBOSE, "On"),
            (crate::MAX_REQUEST_SIZE, "1MiB"),
            (crate::LISTEN_ADDR, "127.0.0.1:0"),
            (crate::LLM_PROXY_EVENT_BUS, "REDIS"),
            (crate::LOG_FILE, " /tmp/x.log "),
        ]);
        assert_eq!(
            r.duration(crate::SHUTDOWN_TIMEOUT),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(r.bool(crate::LLM_PROXY_DISPATCHER_VERBOSE), Ok(true));
        assert_eq!(r.size::<u64>(crate::MAX_REQUEST_SIZE), Ok(1 << 20));
        assert_eq!(
            r.listen_addr(crate::LISTEN_ADDR).map(|addr| addr.port()),
            Ok(0)
        );
        assert_eq!(
            r.keyword::<EventBusKind>(crate::LLM_PROXY_EVENT_BUS),
            Ok(EventBusKind::RedisStreams)
        );
        assert_eq!(
            r.optional(crate::LOG_FILE),
            Ok(Some("/tmp/x.log".to_owned()))
        );
    }

    #[test]
    fn the_contract_range_applies_to_every_read() {
        let r = reader(&[
            (crate::DATABASE_POOL_SIZE, "0"),
            (crate::REQUEST_TIMEOUT, "0"),
            (crate::DATABASE_MAX_IDLE_CONNS, "4294967296"),
        ]);
        assert_eq!(
            r.integer::<u32>(crate::DATABASE_POOL_SIZE),
            Err(ValueError::Invalid {
                name: crate::DATABASE_POOL_SIZE,
                value: "0".to_owned(),
                reason: "must be at least 1".to_owned(),
            })
        );
        assert!(r.duration(crate::REQUEST_TIMEOUT).is_err());
        assert!(r.integer::<u32>(crate::DATABASE_MAX_IDLE_CONNS).is_err());
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_never_a_fallback() {
        let r = reader(&[(crate::LLM_PROXY_DISPATCHER_VERBOSE, "sometimes")]);
        let err = r.bool(crate::LLM_PROXY_DISPATCHER_VERBOSE).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "invalid LLM_PROXY_DISPATCHER_VERBOSE=\"sometimes\": \
                 expected true, false, 1, 0, yes, no, on or off"
            )
        );
    }

    #[test]
    fn a_conversion_error_of_a_secret_does_not_show_it() {
        let r = reader(&[(crate::ENCRYPTION_KEY, "short-key-value")]);
        let err = r
            .parse(crate::ENCRYPTION_KEY, |_| {
                Err::<(), _>("expected 32 bytes".to_owned())
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "invalid ENCRYPTION_KEY (value not shown): expected 32 bytes"
        );
    }
}
