//! The `clients` map of a `tcp` serve: which client IP gets which identity.
//!
//! As in zrepl, a key is an IP address or a CIDR subnet, each optionally with an
//! IPv6 zone (`fe80::1%eth0`, `fe80::/16%eth1`). A plain address maps to a fixed
//! identity, which must not contain `*`. A subnet's identity must contain exactly
//! one `*`, which is replaced by the client's address (and `-ZONE` when the
//! client has a zone): `"10.0.0.0/24": "client-*"` gives `client-10.0.0.7`. The
//! most specific entry (longest prefix) wins. Every identity, also after the
//! substitution, must be a single valid ZFS dataset path component, because a
//! sink receives under `root_fs/IDENTITY`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

use crate::zfs::path::DatasetPath;

/// One entry of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// The prefix length: 32 or 128 for a single address.
    pub prefix_len: u8,
    /// The IPv6 zone, if the key had one.
    pub zone: Option<String>,
    /// The identity, with at most one `*` (exactly one for a subnet).
    pub identity: String,
}

/// The parsed `clients` map, most specific entry first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientMap {
    pub entries: Vec<ClientEntry>,
}

/// The longest expansion of `*`: a full IPv6 address and a zone of IFNAMSIZ (16) bytes, as zrepl checks.
const LONGEST_EXPANSION: &str = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff-iiiiiiiiiiiiiiii";

pub fn validate_identity(identity: &str) -> Result<(), String> {
    let path = DatasetPath::parse(identity).map_err(|e| {
        format!("client identity {identity:?} is not a valid dataset name component: {e}")
    })?;
    if path.depth() != 1 {
        return Err(format!(
            "client identity {identity:?} must be a single dataset name component (no '/')"
        ));
    }
    Ok(())
}

impl ClientMap {
    pub fn parse(map: &BTreeMap<String, String>) -> Result<ClientMap, String> {
        let mut entries = Vec::with_capacity(map.len());
        for (key, identity) in map {
            entries.push(
                parse_entry(key, identity)
                    .map_err(|e| format!("clients entry {key:?}: {identity:?}: {e}"))?,
            );
        }
        entries.sort_by(|a, b| {
            b.prefix_len
                .cmp(&a.prefix_len)
                .then_with(|| a.addr.cmp(&b.addr))
                .then_with(|| a.zone.cmp(&b.zone))
        });
        for pair in entries.windows(2) {
            if pair[0].addr == pair[1].addr
                && pair[0].prefix_len == pair[1].prefix_len
                && pair[0].zone == pair[1].zone
            {
                return Err(format!(
                    "clients has two entries for {}/{}",
                    pair[0].addr, pair[0].prefix_len
                ));
            }
        }
        Ok(ClientMap { entries })
    }

    /// The identity of a client connecting from `ip` (with IPv6 zone `zone`), or
    /// `None` if no entry matches. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn identity_for(&self, ip: IpAddr, zone: Option<&str>) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let e = self
            .entries
            .iter()
            .find(|e| e.zone.as_deref() == zone && contains(e.addr, e.prefix_len, ip))?;
        let rendered = match zone {
            Some(z) => format!("{ip}-{z}"),
            None => ip.to_string(),
        };
        Some(e.identity.replacen('*', &rendered, 1))
    }
}

fn contains(net: IpAddr, prefix_len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(a, prefix_len) == n,
        (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(a, prefix_len) == n,
        _ => false,
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(a);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(a);
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    Ipv6Addr::from(bits & mask)
}

fn parse_entry(key: &str, identity: &str) -> Result<ClientEntry, String> {
    let (net, zone) = match key.split_once('%') {
        Some((net, zone)) if !zone.is_empty() => (net, Some(zone.to_owned())),
        Some(_) => return Err("empty IPv6 zone after '%'".to_owned()),
        None => (key, None),
    };
    let stars = identity.matches('*').count();
    match net.split_once('/') {
        None => {
            let addr: IpAddr = net
                .parse()
                .map_err(|_| format!("{net:?} is neither an IP address nor a CIDR subnet"))?;
            if stars != 0 {
                return Err("an identity for a single address must not contain '*' (only subnets expand '*')".to_owned());
            }
            validate_identity(identity)?;
            let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
            Ok(ClientEntry { addr, prefix_len, zone, identity: identity.to_owned() })
        }
        Some((addr, len)) => {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{net:?} is neither an IP address nor a CIDR subnet"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix_len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("prefix length {len:?} is not in 0-{max}"))?;
            if stars != 1 {
                return Err("a subnet's identity must contain exactly one '*', which is replaced by the client's address".to_owned());
            }
            validate_identity(&identity.replacen('*', LONGEST_EXPANSION, 1)).map_err(|e| {
                format!("{e} (after replacing '*' with the longest possible address)")
            })?;
            let addr = match addr {
                IpAddr::V4(a) => IpAddr::V4(mask_v4(a, prefix_len)),
                IpAddr::V6(a) => IpAddr::V6(mask_v6(a, prefix_len)),
            };
            Ok(ClientEntry { addr, prefix_len, zone, identity: identity.to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Result<ClientMap, String> {
        let m: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ClientMap::parse(&m)
    }

    fn who(m: &ClientMap, ip: &str) -> Option<String> {
        let (ip, zone) = match ip.split_once('%') {
            Some((ip, z)) => (ip, Some(z)),
            None => (ip, None),
        };
        m.identity_for(ip.parse().unwrap(), zone)
    }

    #[test]
    fn plain_addresses() {
        let m = map(&[("192.168.123.234", "ident1"), ("192.168.20.23", "ident2")]).unwrap();
        assert_eq!(who(&m, "192.168.123.234").as_deref(), Some("ident1"));
        assert_eq!(who(&m, "192.168.20.23").as_deref(), Some("ident2"));
        assert_eq!(who(&m, "192.168.20.10"), None);
        assert_eq!(who(&m, "::ffff:192.168.20.23").as_deref(), Some("ident2"));
    }

    #[test]
    fn longest_prefix_wins_and_star_expands() {
        let m = map(&[
            ("10.1.2.3", "specific-host"),
            ("10.1.2.0/24", "subnet-one-two-*"),
            ("10.1.0.0/16", "subnet-one-*"),
            ("fde4:8dba:82e1::/48", "v6-48-*"),
            ("fde4:8dba:82e1:1::/64", "v6-64-1-*"),
            ("fe80::/16%eth1", "san-*"),
            ("10.1.4.0/24", "my-*-server"),
        ])
        .unwrap();
        assert_eq!(who(&m, "10.1.2.3").as_deref(), Some("specific-host"));
        assert_eq!(who(&m, "10.1.2.1").as_deref(), Some("subnet-one-two-10.1.2.1"));
        assert_eq!(who(&m, "10.1.3.1").as_deref(), Some("subnet-one-10.1.3.1"));
        assert_eq!(who(&m, "10.1.4.5").as_deref(), Some("my-10.1.4.5-server"));
        assert_eq!(who(&m, "10.2.1.1"), None);
        assert_eq!(who(&m, "fde4:8dba:82e1:23::1").as_deref(), Some("v6-48-fde4:8dba:82e1:23::1"));
        assert_eq!(who(&m, "fde4:8dba:82e1:1::2").as_deref(), Some("v6-64-1-fde4:8dba:82e1:1::2"));
        assert_eq!(who(&m, "fe80::23:42%eth1").as_deref(), Some("san-fe80::23:42-eth1"));
        assert_eq!(who(&m, "fe80::23:42%eth2"), None);
        assert_eq!(who(&m, "fe80::23:42"), None);
    }

    #[test]
    fn full_wildcard() {
        let m = map(&[("0.0.0.0/0", "*"), ("::/0", "*")]).unwrap();
        assert_eq!(who(&m, "10.123.234.24").as_deref(), Some("10.123.234.24"));
        assert_eq!(who(&m, "fe80::23:42").as_deref(), Some("fe80::23:42"));
    }

    #[test]
    fn invalid_entries() {
        for (pairs, needle) in [
            (&[("jimmy", "db")][..], "neither an IP"),
            (&[("192.168.1.2", "db-*")][..], "must not contain '*'"),
            (&[("192.168.1.0/24", "db-")][..], "exactly one '*'"),
            (&[("192.168.1.0/24", "db-*-*")][..], "exactly one '*'"),
            (&[("fe80::/16%eth1", "db-")][..], "exactly one '*'"),
            (&[("fe80::/16", "db@-*")][..], "not a valid dataset name component"),
            (&[("fe80::1", "db@foo")][..], "not a valid dataset name component"),
            (&[("fe80::1", "a/b")][..], "single dataset name component"),
            (&[("fe80::1", "")][..], "not a valid dataset name component"),
            (&[("10.0.0.0/33", "x-*")][..], "prefix length"),
            (&[("10.0.0.1%", "x")][..], "empty IPv6 zone"),
            (&[("10.0.0.0/8", "a-*"), ("10.1.0.0/8", "b-*")][..], "two entries"),
        ] {
            let err = map(pairs).unwrap_err();
            assert!(err.contains(needle), "{pairs:?}: {err}");
        }
    }
}
