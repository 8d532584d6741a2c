//! Who a connecting client is: by its address for TCP (the job's `clients` map,
//! as zrepl writes it), by its own word for in-process clients.

use super::JobCtx;
use crate::config::{validate_identity, ClientMap};
use crate::node::{ConnId, Level};

/// Peer strings of in-process connections start with this, then the identity.
pub const LOCAL_PEER_PREFIX: &str = "local:";

/// The identity of the peer: an in-process `local:<identity>`, or an `ip:port`
/// (as the driver reports it) looked up in `clients`.
pub fn identify(clients: &ClientMap, peer: &str) -> Result<String, String> {
    if let Some(identity) = peer.strip_prefix(LOCAL_PEER_PREFIX) {
        validate_identity(identity)?;
        return Ok(identity.to_owned());
    }
    let addr: core::net::SocketAddr =
        peer.parse().map_err(|_| format!("cannot tell the client's address from {peer:?}"))?;
    let zone = None;
    let identity = clients
        .identity_for(addr.ip(), zone)
        .ok_or_else(|| format!("client {} is not in this job's clients list", addr.ip()))?;
    validate_identity(&identity)?;
    Ok(identity)
}

/// Identifies a newly accepted client of a passive job; a stranger is logged
/// and its connection closed with the reason. Returns the identity.
pub fn admit(
    ctx: &mut JobCtx<'_, '_>,
    job: &str,
    clients: &ClientMap,
    conn: ConnId,
    peer: &str,
) -> Option<String> {
    match identify(clients, peer) {
        Ok(identity) => {
            ctx.log(Level::Info, format!("job {job}: client {identity} connected from {peer}"));
            Some(identity)
        }
        Err(why) => {
            ctx.log(Level::Warn, format!("job {job}: refused connection from {peer}: {why}"));
            ctx.close(conn, &why);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> ClientMap {
        let m: BTreeMap<String, String> =
            pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        ClientMap::parse(&m).unwrap()
    }

    #[test]
    fn tcp_peers_by_address_local_peers_by_name() {
        let m = map(&[("10.0.0.0/8", "lab-*"), ("10.1.2.3", "backup1"), ("::1", "local6")]);
        assert_eq!(identify(&m, "10.1.2.3:5000"), Ok("backup1".into()));
        assert_eq!(identify(&m, "10.9.9.9:1"), Ok("lab-10.9.9.9".into()));
        assert_eq!(identify(&m, "[::1]:7"), Ok("local6".into()));
        assert!(identify(&m, "192.168.1.1:5")
            .unwrap_err()
            .contains("not in this job's clients list"));
        assert_eq!(identify(&m, "local:laptop"), Ok("laptop".into()));
        assert!(identify(&m, "local:../etc").is_err(), "an identity cannot climb out of its root");
        assert!(identify(&m, "local:a/b").is_err());
    }
}
