//! The value parsers of the contract: durations, booleans, integers, sizes, addresses, URLs, IP
//! networks and the metrics path. The word lists (event bus, log level, ...) are in `keywords`.
//!
//! Each parser trims its input and, on failure, returns a short reason that never repeats the value
//! (it may be a secret); [`crate::ValueError`] adds the variable's name and, when it may be shown, the
//! value. Ranges (at least 1, at most `u32::MAX`, greater than zero) are not checked here: they belong
//! to a variable, and `Syntax` applies them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` groups (`ms`, `s`, `m`, `h`, also `us`,
/// `µs`, `ns`), e.g. `30s`, `5m`, `1h30m`, `1.5s`. The bare `0` is accepted; other bare numbers are
/// refused because their unit would be a guess.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as 500ms, 1.5s, 5m or 1h30m";
    let text = raw.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(EXPECTED.to_owned());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(EXPECTED)?;
        if number_len == 0 {
            return Err(EXPECTED.to_owned());
        }
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| EXPECTED)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(EXPECTED.to_owned()),
        };
        total += value * seconds_per_unit;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| "duration out of range".to_owned())
}

/// The spellings [`parse_bool`] accepts, in any case: the same for every boolean variable.
pub const BOOL_TRUE: &[&str] = &["true", "1", "yes", "on"];
/// See [`BOOL_TRUE`].
pub const BOOL_FALSE: &[&str] = &["false", "0", "no", "off"];

/// Parses [`BOOL_TRUE`] or [`BOOL_FALSE`] (any case). Anything else is an error, never `false`.
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    let text = raw.trim();
    if BOOL_TRUE.iter().any(|word| word.eq_ignore_ascii_case(text)) {
        Ok(true)
    } else if BOOL_FALSE
        .iter()
        .any(|word| word.eq_ignore_ascii_case(text))
    {
        Ok(false)
    } else {
        Err("expected true, false, 1, 0, yes, no, on or off".to_owned())
    }
}

/// Parses a non-negative whole number (`100`; no sign other than `+`, no exponent, no unit).
pub fn parse_integer(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    text.parse().map_err(|_| {
        if !text.is_empty()
            && text
                .trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            format!("must be at most {}", u64::MAX)
        } else {
            "expected a whole number such as 100".to_owned()
        }
    })
}

/// Parses a byte size: a plain number of bytes, or a number with a unit: `KiB`/`MiB`/`GiB` (or `Ki`,
/// `Mi`, `Gi`) are powers of 1024, `KB`/`MB`/`GB` (or `K`, `M`, `G`) powers of 1000; any case.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a size in bytes such as 10485760, 64KiB or 10MiB";
    let text = raw.trim();
    let digits_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_len);
    let value: u64 = digits.parse().map_err(|_| EXPECTED)?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        _ => return Err(EXPECTED.to_owned()),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| "size out of range".to_owned())
}

/// Checks that `value` lies in `min..=max`.
pub fn check_range(value: u64, min: u64, max: u64) -> Result<u64, String> {
    if value < min {
        Err(format!("must be at least {min}"))
    } else if value > max {
        Err(format!("must be at most {max}"))
    } else {
        Ok(value)
    }
}

/// A listen address as written: an IP socket address, or a host name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:8080` (all IPv4 interfaces), `127.0.0.1:8080` or `[::1]:8080`.
    Socket(SocketAddr),
    /// `localhost:8080`: resolved by [`ListenAddr::resolve`] in the process that listens.
    Host { host: String, port: u16 },
}

impl ListenAddr {
    /// The socket address to bind: the first address the host name resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        match self {
            Self::Socket(addr) => Ok(*addr),
            Self::Host { host, port } => (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|_| "host name does not resolve".to_owned())?
                .next()
                .ok_or_else(|| "host name does not resolve".to_owned()),
        }
    }
}

/// Parses a listen address: `:8080` (all interfaces), `127.0.0.1:8080`, `[::1]:8080` or
/// `localhost:8080`. Host names are checked for their syntax only, not resolved.
pub fn parse_listen_addr(raw: &str) -> Result<ListenAddr, String> {
    const EXPECTED: &str = "expected an address such as :8080, 0.0.0.0:8080 or 127.0.0.1:8080";
    let text = raw.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| EXPECTED)?;
        return Ok(ListenAddr::Socket(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddr::Socket(addr));
    }
    let (host, port) = text.rsplit_once(':').ok_or(EXPECTED)?;
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    if !is_host_name(host) {
        return Err(EXPECTED.to_owned());
    }
    Ok(ListenAddr::Host {
        host: host.to_owned(),
        port,
    })
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Parses `host:port` (`redis-master:6379`), as `REDIS_ADDR` holds it. A value with `@` or `://`
/// is refused with a pointer to the variables that take a password or a URL.
pub fn parse_host_port(raw: &str) -> Result<(&str, u16), String> {
    const EXPECTED: &str = "expected host:port";
    let text = raw.trim();
    if text.contains('@') || text.contains("://") {
        return Err(
            "expected host:port; a password goes in REDIS_PASSWORD and a URL in REDIS_URL"
                .to_owned(),
        );
    }
    let (host, port) = text.rsplit_once(':').ok_or(EXPECTED)?;
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare_host.is_empty() || bare_host.contains(char::is_whitespace) {
        return Err(EXPECTED.to_owned());
    }
    Ok((host, port))
}

/// What a URL variable requires beyond its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlRules {
    /// Accepted schemes, lowercase (matched in any case).
    pub schemes: &'static [&'static str],
    /// Whether `scheme://` must be followed by a host (PostgreSQL may name a socket in the query).
    pub host_required: bool,
    /// Whether a query (`?…`) or fragment (`#…`) may follow.
    pub query_allowed: bool,
}

/// Checks the shape of a URL: `scheme://[user[:password]@]host[:port][/path][?query]`. The process
/// then hands it to its library (the Redis client, the HTTP client, sqlx), which may refuse rarer
/// malformations. Reasons never contain the URL: it may hold a password.
pub fn parse_url(raw: &str, rules: UrlRules) -> Result<(), String> {
    let expected = || {
        let schemes: Vec<String> = rules.schemes.iter().map(|s| format!("{s}://")).collect();
        format!("expected a {} URL", schemes.join(" or "))
    };
    let text = raw.trim();
    let (scheme, rest) = text.split_once("://").ok_or_else(expected)?;
    if !rules.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(expected());
    }
    if text.contains(char::is_whitespace) {
        return Err("a URL must not contain spaces".to_owned());
    }
    if !rules.query_allowed && (rest.contains('?') || rest.contains('#')) {
        return Err("the URL must not have a query or fragment".to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err("the URL has an unclosed [IPv6] host".to_owned()),
        },
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if rules.host_required && host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    if let Some(port) = port.filter(|p| !p.is_empty())
        && port.parse::<u16>().is_err()
    {
        return Err("the URL's port is not a number from 0 to 65535".to_owned());
    }
    Ok(())
}

/// An IP network, `address/prefix` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        const EXPECTED: &str =
            "expected IP addresses or CIDR ranges such as 10.0.0.0/8, separated by commas";
        let (address, prefix) = match raw.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| EXPECTED)?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().map_err(|_| EXPECTED)?,
            None => max,
        };
        if prefix > max {
            return Err("CIDR prefix longer than the address".to_owned());
        }
        Ok(Self { address, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    bits >> (width - prefix)
}

/// Parses a comma-separated list of [`IpNetwork`]s; empty entries are skipped, so `""` is no network.
pub fn parse_ip_networks(raw: &str) -> Result<Vec<IpNetwork>, String> {
    raw.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(IpNetwork::parse)
        .collect()
}

/// Parses the path of the JSON metrics summary (`/metrics`; a trailing `/` is dropped). It must be
/// absolute and must not collide with the proxy's own routes (`/v1`, `/manage`, health paths).
pub fn parse_metrics_path(raw: &str) -> Result<String, String> {
    let path = raw.trim().trim_end_matches('/');
    let reserved = [
        "/v1",
        "/manage",
        crate::HEALTH_PATH,
        crate::LIVE_PATH,
        crate::READY_PATH,
    ];
    if !path.starts_with('/') || path.len() < 2 || path.contains("..") || path.contains("//") {
        Err("expected an absolute path such as /metrics".to_owned())
    } else if reserved
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")))
    {
        Err("collides with a route of the proxy".to_owned())
    } else {
        Ok(path.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_go_syntax_with_fractions_and_refuse_bare_numbers() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "30", "s", "30x", "-5s", "5 m", "1..2s", "abc", "1S"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn booleans_accept_one_set_in_any_case_and_nothing_else() {
        for yes in ["true", "TRUE", "1", "yes", "Yes", "on", "ON"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "off", "OFF"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["", "2", "maybe", "t", "enabled", "y"] {
            assert!(parse_bool(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn integers_are_whole_non_negative_numbers() {
        assert_eq!(parse_integer("100"), Ok(100));
        assert_eq!(parse_integer(" 7 "), Ok(7));
        for bad in ["", "-1", "1e3", "1.5", "ten", "10k"] {
            assert!(parse_integer(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(
            parse_integer("99999999999999999999").is_err_and(|reason| reason.contains("at most"))
        );
        assert_eq!(check_range(5, 1, 10), Ok(5));
        assert_eq!(check_range(0, 1, 10), Err("must be at least 1".to_owned()));
        assert_eq!(check_range(11, 1, 10), Err("must be at most 10".to_owned()));
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("10485760"), Ok(10_485_760));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("10MiB"), Ok(10_485_760));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        for bad in ["", "-1", "ten", "10XB", "1.5MiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn listen_addresses_check_host_names_without_resolving_them() {
        let any = ListenAddr::Socket(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080));
        assert_eq!(parse_listen_addr(":8080"), Ok(any));
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        assert_eq!(
            parse_listen_addr("127.0.0.1:0"),
            Ok(ListenAddr::Socket(loopback))
        );
        assert!(matches!(
            parse_listen_addr("[::1]:9000"),
            Ok(ListenAddr::Socket(addr)) if addr.is_ipv6() && addr.port() == 9000
        ));
        assert_eq!(
            parse_listen_addr("name.that.never.resolves.invalid:80"),
            Ok(ListenAddr::Host {
                host: "name.that.never.resolves.invalid".to_owned(),
                port: 80
            })
        );
        assert_eq!(
            parse_listen_addr("localhost:8080")
                .and_then(|addr| addr.resolve())
                .map(|addr| addr.port()),
            Ok(8080)
        );
        for bad in ["", "8080", ":http", ":70000", "host-without-port", "a b:80"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn host_port_refuses_urls_and_credentials_without_repeating_them() {
        assert_eq!(
            parse_host_port("redis-master:6379"),
            Ok(("redis-master", 6379))
        );
        assert_eq!(parse_host_port("[::1]:6379"), Ok(("[::1]", 6379)));
        for bad in ["no-port", "h:99999", ":6379", "h:x"] {
            assert!(parse_host_port(bad).is_err(), "{bad:?} should be refused");
        }
        for pasted in ["redis://:hunter2@redis:6379", "default:hunter2@redis:6379"] {
            let reason = parse_host_port(pasted).err().unwrap_or_default();
            assert!(reason.contains("REDIS_PASSWORD"), "{reason}");
            assert!(!reason.contains("hunter2"), "{reason}");
        }
    }

    #[test]
    fn urls_need_their_scheme_and_a_host_and_never_echo_themselves() {
        let redis = UrlRules {
            schemes: &["redis", "rediss"],
            host_required: true,
            query_allowed: true,
        };
        assert_eq!(parse_url("redis://localhost:6379/0", redis), Ok(()));
        assert_eq!(parse_url("REDISS://:pw@cache:6380/2", redis), Ok(()));
        assert_eq!(parse_url("redis://[::1]:6379", redis), Ok(()));
        for bad in [
            "http://:s3cret@h/",
            "redis://:s3cret@/0",
            "redis://:s3cret@h:port/",
            "redis:// s3cret@h",
            "s3cret",
        ] {
            let reason = parse_url(bad, redis).err().unwrap_or_default();
            assert!(!reason.is_empty(), "{bad:?} should be refused");
            assert!(!reason.contains("s3cret"), "{reason}");
        }
        let postgres = UrlRules {
            schemes: &["postgres", "postgresql"],
            host_required: false,
            query_allowed: true,
        };
        assert_eq!(
            parse_url("postgres://u:p@db:5432/x?sslmode=require", postgres),
            Ok(())
        );
        assert_eq!(
            parse_url("postgresql:///x?host=/run/postgresql", postgres),
            Ok(())
        );
        assert!(parse_url("mysql://u:p@db/x", postgres).is_err());
        let http = UrlRules {
            schemes: &["http", "https"],
            host_required: true,
            query_allowed: false,
        };
        assert_eq!(parse_url("https://api.openai.com", http), Ok(()));
        assert!(parse_url("https://api.openai.com/?x=1", http).is_err());
        assert!(parse_url("ftp://example.com", http).is_err());
    }

    #[test]
    fn ip_networks_are_addresses_or_cidr_ranges() {
        let networks = parse_ip_networks("10.0.0.0/8, 192.168.1.1,,fd00::/8").unwrap_or_default();
        assert_eq!(networks.len(), 3);
        assert!(networks[0].contains("10.1.2.3".parse().unwrap()));
        assert!(!networks[0].contains("11.0.0.1".parse().unwrap()));
        assert!(networks[0].contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(networks[1].contains("192.168.1.1".parse().unwrap()));
        assert!(!networks[1].contains("192.168.1.2".parse().unwrap()));
        assert!(networks[2].contains("fd12::1".parse().unwrap()));
        assert_eq!(parse_ip_networks(""), Ok(Vec::new()));
        assert!(
            parse_ip_networks("0.0.0.0/0").is_ok_and(|n| n[0].contains("8.8.8.8".parse().unwrap()))
        );
        for bad in ["10.0.0.0/33", "10.0.0.0/x", "example.com"] {
            assert!(parse_ip_networks(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn the_metrics_path_is_absolute_and_leaves_the_proxy_routes_alone() {
        assert_eq!(parse_metrics_path("/metrics"), Ok("/metrics".to_owned()));
        assert_eq!(parse_metrics_path("/stats/"), Ok("/stats".to_owned()));
        for bad in [
            "metrics",
            "/",
            "/a//b",
            "/../x",
            "/v1/metrics",
            "/manage",
            "/health",
            "/ready/x",
        ] {
            assert!(
                parse_metrics_path(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
