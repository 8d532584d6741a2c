//! Who a connecting client is: by its address for TCP (the sink's or source's
//! `clients` map, as zrepl writes it), by its own word for in-process clients.

use std::net::IpAddr;

/// Peer strings of in-process connections start with this, then the identity.
pub const LOCAL_PEER_PREFIX: &str = "local:";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    network: IpAddr,
    prefix_len: u8,
    identity: String,
}

/// IP addresses and networks, each mapped to a client identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientMap {
    entries: Vec<Entry>,
}

fn valid_identity(identity: &str) -> Result<(), String> {
    let ok = !identity.is_empty()
        && identity.len() <= 200
        && identity
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        && identity != "."
        && identity != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "client identity {identity:?} is not a valid dataset name component (letters, digits, _ - . :)"
        ))
    }
}

fn masked(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask =
                if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len.min(32))) };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix_len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix_len.min(128)))
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

impl ClientMap {
    /// From `(address or CIDR, identity)` pairs; errors name the offending entry.
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ClientMap, String> {
        let mut entries = Vec::new();
        for (key, identity) in pairs {
            valid_identity(identity).map_err(|e| format!("clients entry {key:?}: {e}"))?;
            let (addr, len) = match key.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (key, None),
            };
            let network: IpAddr = addr.parse().map_err(|_| {
                format!("clients entry {key:?} is not an IP address or CIDR network")
            })?;
            let max = if network.is_ipv4() { 32 } else { 128 };
            let prefix_len =
                match len {
                    None => max,
                    Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| {
                        format!("clients entry {key:?} has an invalid prefix length")
                    })?,
                };
            entries.push(Entry {
                network: masked(network, prefix_len),
                prefix_len,
                identity: identity.to_owned(),
            });
        }
        Ok(ClientMap { entries })
    }

    /// The identity of the peer (`ip:port` from the driver, or an in-process
    /// `local:<identity>`); the most specific matching network wins.
    pub fn identify(&self, peer: &str) -> Result<String, String> {
        if let Some(identity) = peer.strip_prefix(LOCAL_PEER_PREFIX) {
            valid_identity(identity)?;
            return Ok(identity.to_owned());
        }
        let ip: IpAddr = peer
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| peer.parse())
            .map_err(|_| format!("cannot tell the client's address from {peer:?}"))?;
        // An IPv4 client may arrive as an IPv4-mapped IPv6 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.entries
            .iter()
            .filter(|e| {
                e.network.is_ipv4() == ip.is_ipv4() && masked(ip, e.prefix_len) == e.network
            })
            .max_by_key(|e| e.prefix_len)
            .map(|e| e.identity.clone())
            .ok_or_else(|| format!("client {ip} is not in this job's clients list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_network_wins() {
        let map =
            ClientMap::new([("10.0.0.0/8", "lab"), ("10.1.2.3", "backup1"), ("::1", "local6")])
                .unwrap();
        assert_eq!(map.identify("10.1.2.3:5000"), Ok("backup1".into()));
        assert_eq!(map.identify("10.9.9.9:1"), Ok("lab".into()));
        assert_eq!(map.identify("[::1]:7"), Ok("local6".into()));
        assert_eq!(map.identify("[::ffff:10.1.2.3]:9"), Ok("backup1".into()), "v4-mapped");
        assert!(map
            .identify("192.168.1.1:5")
            .unwrap_err()
            .contains("not in this job's clients list"));
        assert_eq!(map.identify("local:laptop"), Ok("laptop".into()));
        assert!(map.identify("local:../etc").is_err(), "an identity cannot climb out of the root");
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(ClientMap::new([("10.0.0.0/33", "x")]).unwrap_err().contains("10.0.0.0/33"));
        assert!(ClientMap::new([("nonsense", "x")]).unwrap_err().contains("nonsense"));
        assert!(ClientMap::new([("10.0.0.1", "a/b")]).unwrap_err().contains("a/b"));
        assert!(ClientMap::new([("10.0.0.1", "")]).is_err());
    }
}
