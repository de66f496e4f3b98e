//! The client address recorded for a request: the TCP peer, or what a trusted reverse proxy says it
//! forwarded for.
//!
//! `X-Forwarded-For` and `X-Real-IP` are anyone's to write, so they are read only when the peer is
//! one of `LLM_PROXY_TRUSTED_PROXIES` (CIDR ranges; none by default). Then the client is the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy (each proxy appends the
//! address it received from, so entries left of it may be forged), else `X-Real-IP`, else the peer.

use std::net::IpAddr;

use http::HeaderMap;

/// An IP network, `address/prefix` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
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
            return Err("CIDR prefix longer than the address");
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

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNetwork>);

impl TrustedProxies {
    /// Parses a comma-separated list; empty = trust no one.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        raw.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(IpNetwork::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client of a request from `peer` with `headers` (see the module doc).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut chain = forwarded.iter().rev();
        for entry in chain.by_ref() {
            match entry.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return Some(ip),
                // An unparsable hop: nothing left of it can be trusted.
                Err(_) => return Some(peer),
            }
        }
        if forwarded.is_empty()
            && let Some(real) = headers
                .get("x-real-ip")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<IpAddr>().ok())
        {
            return Some(real);
        }
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                *name,
                value.parse().unwrap_or(http::HeaderValue::from_static("")),
            );
        }
        headers
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn forwarding_headers_of_an_untrusted_peer_are_ignored() {
        let none = TrustedProxies::default();
        let forged = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.8"),
        ]);
        assert_eq!(
            none.client_ip(Some(ip("198.51.100.7")), &forged),
            Some(ip("198.51.100.7"))
        );
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap_or_default();
        assert_eq!(
            trusted.client_ip(Some(ip("198.51.100.7")), &forged),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_of_a_trusted_peer_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap_or_default();
        let peer = Some(ip("10.1.2.3"));
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 192.168.1.1")]);
        assert_eq!(trusted.client_ip(peer, &chain), Some(ip("203.0.113.9")));
        let real = headers(&[("x-real-ip", "203.0.113.8")]);
        assert_eq!(trusted.client_ip(peer, &real), Some(ip("203.0.113.8")));
        let garbage = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(trusted.client_ip(peer, &garbage), peer);
        let mapped = Some(ip("::ffff:10.9.9.9"));
        assert_eq!(trusted.client_ip(mapped, &chain), Some(ip("203.0.113.9")));
    }

    #[test]
    fn networks_parse_and_match() {
        assert!(TrustedProxies::parse("").is_ok_and(|t| t.0.is_empty()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("10.0.0.0/x").is_err());
        assert!(TrustedProxies::parse("example.com").is_err());
        let v6 = IpNetwork::parse("fd00::/8").unwrap_or(IpNetwork {
            address: ip("::"),
            prefix: 128,
        });
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let all = IpNetwork::parse("0.0.0.0/0").unwrap_or(IpNetwork {
            address: ip("1.1.1.1"),
            prefix: 32,
        });
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
    }
}
