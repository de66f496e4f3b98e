//! Parsers for the value syntaxes of environment variables: durations, booleans, sizes, addresses.
//!
//! Each parser returns a short reason on failure; [`super::ConfigError`] adds the variable name and
//! (unless the variable is secret) the offending value.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` groups (`ms`, `s`, `m`, `h`, also `us`, `ns`),
/// e.g. `30s`, `5m`, `1h30m`, `1.5s`. The bare `0` is accepted; other bare numbers are rejected because
/// their unit would be a guess.
pub fn parse_duration(raw: &str) -> Result<Duration, &'static str> {
    const EXPECTED: &str = "expected a duration such as 500ms, 30s, 5m or 1h";
    let text = raw.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(EXPECTED);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(EXPECTED)?;
        if number_len == 0 {
            return Err(EXPECTED);
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
            _ => return Err(EXPECTED),
        };
        total += value * seconds_per_unit;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| "duration out of range")
}

/// Parses `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (case-insensitive).
pub fn parse_bool(raw: &str) -> Result<bool, &'static str> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true, false, 1, 0, yes or no"),
    }
}

/// Parses a byte size: a plain number of bytes, or a number with a unit: `KiB`/`MiB`/`GiB` (or `Ki`,
/// `Mi`, `Gi`) are powers of 1024, `KB`/`MB`/`GB` (or `K`, `M`, `G`) powers of 1000.
pub fn parse_size(raw: &str) -> Result<u64, &'static str> {
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
        _ => return Err(EXPECTED),
    };
    value.checked_mul(multiplier).ok_or("size out of range")
}

/// Parses a count (a non-negative integer).
pub fn parse_count(raw: &str) -> Result<u64, &'static str> {
    raw.trim()
        .parse()
        .map_err(|_| "expected a non-negative integer")
}

/// Parses a listen address: `:8080` (all interfaces), `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`.
pub fn parse_listen_addr(raw: &str) -> Result<SocketAddr, &'static str> {
    const EXPECTED: &str = "expected an address such as :8080, 0.0.0.0:8080 or 127.0.0.1:8080";
    let text = raw.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| EXPECTED)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or(EXPECTED)?;
    let port: u16 = port.parse().map_err(|_| EXPECTED)?;
    if host.is_empty() {
        return Err(EXPECTED);
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|_| "host name does not resolve")?
        .next()
        .ok_or("host name does not resolve")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "30", "s", "30x", "-5s", "5 m", "1..2s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn bools() {
        for yes in ["true", "TRUE", "1", "yes", "Yes", "on"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "off"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["", "2", "maybe", "t"] {
            assert!(parse_bool(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10485760"), Ok(10_485_760));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("10MiB"), Ok(10_485_760));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        for bad in ["", "-1", "ten", "10XB", "1.5MiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("100"), Ok(100));
        assert!(parse_count("-1").is_err());
        assert!(parse_count("1e3").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr(":8080"),
            Ok("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:0"),
            Ok("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("[::1]:9000"),
            Ok("[::1]:9000".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("localhost:8080").map(|a| a.port()),
            Ok(8080)
        );
        for bad in ["", "8080", ":http", ":70000", "host-without-port"] {
            assert!(
                parse_listen_addr(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
