//! The client address recorded for a request: the TCP peer, or what a trusted reverse proxy says it
//! forwarded for.
//!
//! `X-Forwarded-For` and `X-Real-IP` are anyone's to write, so they are read only when the peer is
//! one of `LLM_PROXY_TRUSTED_PROXIES` (CIDR ranges; none by default). Then the client is the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy (each proxy appends the
//! address it received from, so entries left of it may be forged), else `X-Real-IP`, else the peer.

use std::net::IpAddr;

use http::HeaderMap;
use llm_proxy_env::IpNetwork;

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNetwork>);

impl TrustedProxies {
    /// These networks; none = trust no one.
    pub fn new(networks: Vec<IpNetwork>) -> Self {
        Self(networks)
    }

    /// Parses a comma-separated list as `LLM_PROXY_TRUSTED_PROXIES` holds it; empty = trust no one.
    pub fn parse(raw: &str) -> Result<Self, String> {
        llm_proxy_env::values::parse_ip_networks(raw).map(Self)
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
    fn the_list_is_the_contract_syntax() {
        assert!(TrustedProxies::parse("").is_ok_and(|t| t.0.is_empty()));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("example.com").is_err());
        let v6 = TrustedProxies::parse("fd00::/8").unwrap_or_default();
        assert!(v6.trusts(ip("fd12::1")));
        assert!(!v6.trusts(ip("fe80::1")));
    }
}
