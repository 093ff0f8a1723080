//! Client addresses: which address a connection counts as (the TCP peer,
//! or what a trusted proxy says), the key every limit, block and ban uses
//! (an IPv4 address, or an IPv6 /64), and CIDR ranges.
//!
//! PROTOCOL.md "Client address and per-address limits": the peer's address
//! counts unless the peer is inside a `--trust-proxy` range; then it is the
//! right-most `X-Forwarded-For` entry that is not itself trusted, or
//! `X-Real-IP` when there is no `X-Forwarded-For`.
//!
//! Decisions where the contract is silent:
//! * Every `X-Forwarded-For` header line counts, in order, as one list.
//! * Walking from the right, an entry that is not an address (`unknown`,
//!   garbage a client sent to the proxy) stops the walk: the address is
//!   then the nearest trusted hop (the last one checked, or the peer). A
//!   proxy such as nginx appends the real peer after anything a client
//!   sent, so a client's forged entries are never reached.
//! * Entries may carry a port (`1.2.3.4:5678`, `[2001:db8::1]:443`); it is
//!   ignored. IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) count as IPv4.
//! * A request from an untrusted peer is never parsed for these headers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What limits, blocks and bans count by: an IPv4 address, or the /64 an
/// IPv6 address is in. Small and `Copy`: a hash-map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrKey {
    /// One IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl AddrKey {
    /// The key of `ip` (IPv4-mapped IPv6 counts as its IPv4 address).
    pub fn of(ip: IpAddr) -> AddrKey {
        match canonical(ip) {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => AddrKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddrKey::V4(a) => write!(f, "{}", Ipv4Addr::from(a)),
            AddrKey::V6(n) => write!(f, "{}/64", Ipv6Addr::from(u128::from(n) << 64)),
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// An address range: `203.0.113.0/24`, `2001:db8::/64`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or a bare address. A bare address is that one
    /// address when `bare_v6_is_64` is false (`--trust-proxy`), and its /64
    /// for IPv6 when true (bans: "a single IPv6 address covers its /64").
    /// Host bits after the prefix are cleared.
    pub fn parse(text: &str, bare_v6_is_64: bool) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or CIDR range"))?;
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{text}': the prefix must be 0 to {max}")),
            },
            None if ip.is_ipv6() && bare_v6_is_64 => 64,
            None => max,
        };
        let net = match ip {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix))),
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// Whether `ip` is inside any of `ranges`.
pub fn is_trusted(ip: IpAddr, ranges: &[Cidr]) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

/// Most header lines looked at when resolving a proxied client (the
/// request parser's own limit is 32).
const MAX_HEADERS: usize = 64;

/// The client's address for a request from `peer` whose head is `head`
/// (the bytes up to and including the blank line). Parses the head only
/// when `peer` is trusted.
pub fn client_addr(peer: IpAddr, head: &[u8], trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return peer;
    }
    let mut forwarded: Vec<&[u8]> = Vec::new();
    let mut real_ip: Option<&[u8]> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded.push(h.value);
        } else if h.name.eq_ignore_ascii_case("x-real-ip") {
            real_ip.get_or_insert(h.value);
        }
    }
    if forwarded.is_empty() {
        return real_ip.and_then(parse_entry).unwrap_or(peer);
    }
    let mut nearest = peer;
    for line in forwarded.iter().rev() {
        for entry in line.rsplit(|&b| b == b',') {
            match parse_entry(entry) {
                Some(ip) if is_trusted(ip, trusted) => nearest = ip,
                Some(ip) => return ip,
                None => return nearest,
            }
        }
    }
    nearest
}

/// One list entry: an address, maybe with a port; surrounding blanks and
/// quotes are ignored.
fn parse_entry(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    text.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn head(headers: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    }

    fn trusted() -> Vec<Cidr> {
        vec![
            Cidr::parse("127.0.0.1", false).unwrap(),
            Cidr::parse("10.0.0.0/8", false).unwrap(),
        ]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = head("X-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.8\r\n");
        assert_eq!(
            client_addr(ip("198.51.100.1"), &h, &trusted()),
            ip("198.51.100.1")
        );
        // No trusted proxies at all: the same.
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_entry() {
        let t = trusted();
        let h = head("X-Forwarded-For: 1.1.1.1, 203.0.113.9, 10.1.2.3\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("203.0.113.9"));
        // Several header lines are one list, in order.
        let h = head("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("203.0.113.7"));
        // A client's forged left-most entry is never reached.
        let h = head("X-Forwarded-For: 127.0.0.1, 198.51.100.2\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("198.51.100.2"));
    }

    #[test]
    fn x_real_ip_counts_only_without_x_forwarded_for() {
        let t = trusted();
        let h = head("X-Real-IP: 203.0.113.5\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("203.0.113.5"));
        let h = head("X-Real-IP: 203.0.113.5\r\nX-Forwarded-For: 203.0.113.6\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("203.0.113.6"));
        let h = head("X-Real-IP: nonsense\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("127.0.0.1"));
    }

    #[test]
    fn all_trusted_or_garbage_stops_at_the_nearest_trusted_hop() {
        let t = trusted();
        let h = head("X-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("10.0.0.2"));
        let h = head("X-Forwarded-For: 203.0.113.1, unknown, 10.0.0.3\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("10.0.0.3"));
        let h = head("");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("127.0.0.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let t = trusted();
        let h = head("X-Forwarded-For: [2001:db8::1]:443\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("2001:db8::1"));
        let h = head("X-Forwarded-For: 203.0.113.4:5555\r\n");
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &t), ip("203.0.113.4"));
        // A mapped peer is the IPv4 peer, trusted as such.
        let h = head("X-Forwarded-For: 203.0.113.3\r\n");
        assert_eq!(
            client_addr(ip("::ffff:127.0.0.1"), &h, &t),
            ip("203.0.113.3")
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_ipv4_per_address() {
        let a = AddrKey::of(ip("2001:db8:1:2:aaaa::1"));
        let b = AddrKey::of(ip("2001:db8:1:2:ffff::9"));
        let c = AddrKey::of(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_ne!(AddrKey::of(ip("192.0.2.1")), AddrKey::of(ip("192.0.2.2")));
        assert_eq!(
            AddrKey::of(ip("::ffff:192.0.2.1")),
            AddrKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn cidr_ranges() {
        let r = Cidr::parse("198.51.100.77/24", false).unwrap();
        assert_eq!(r.to_string(), "198.51.100.0/24");
        assert!(r.contains(ip("198.51.100.1")));
        assert!(!r.contains(ip("198.51.101.1")));
        assert!(!r.contains(ip("2001:db8::1")));
        let one = Cidr::parse("2001:db8::5", true).unwrap();
        assert!(one.contains(ip("2001:db8::ffff:1")));
        assert!(!one.contains(ip("2001:db8:0:1::1")));
        let exact = Cidr::parse("2001:db8::5", false).unwrap();
        assert!(!exact.contains(ip("2001:db8::6")));
        assert!(Cidr::parse("0.0.0.0/0", false)
            .unwrap()
            .contains(ip("8.8.8.8")));
        assert!(Cidr::parse("1.2.3.4/33", false).is_err());
        assert!(Cidr::parse("nope", false).is_err());
        assert!(Cidr::parse("1.2.3.4/x", false).is_err());
    }
}
