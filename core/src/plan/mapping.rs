//! Where sender filesystems land on the receiver, and which parents must be
//! created as placeholders so they can land there.
//!
//! - push to a sink: `sender/path` → `root_fs/<client identity>/sender/path`
//!   (each client gets its own receive root, so clients cannot touch each other's);
//! - pull: `sender/path` → `root_fs/sender/path`.
//!
//! The full sender path, pool included, is kept below the receive root, so two
//! pools of one sender never collide.

use std::collections::BTreeSet;
use std::fmt;

use crate::zfs::{DatasetPath, PathError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("client identity {identity:?} is not a single valid dataset name component: {reason}")]
    BadClientIdentity { identity: String, reason: String },
    #[error("sender filesystem {sender} cannot be placed below {root}: {source}")]
    TooLong { sender: DatasetPath, root: DatasetPath, source: PathError },
    #[error(
        "sender filesystem {sender} has a component {component:?}, which ZFS forbids and which \
         could name a place outside the receive root"
    )]
    DotComponent { sender: DatasetPath, component: String },
}

/// A client's name as a sink knows it: one dataset name component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientIdentity(String);

/// `.` and `..` pass the dataset character set but ZFS rejects them; refusing them
/// here as well keeps every mapped path inside its root by construction.
fn is_dot_component(c: &str) -> bool {
    c == "." || c == ".."
}

impl ClientIdentity {
    pub fn new(identity: &str) -> Result<ClientIdentity, MappingError> {
        let bad = |reason: &str| MappingError::BadClientIdentity {
            identity: identity.to_owned(),
            reason: reason.to_owned(),
        };
        let path = DatasetPath::parse(identity).map_err(|e| bad(&e.to_string()))?;
        if path.depth() != 1 {
            return Err(bad("it contains `/`"));
        }
        if is_dot_component(identity) {
            return Err(bad("`.` and `..` are not names"));
        }
        Ok(ClientIdentity(identity.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How one job maps sender paths onto the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The configured `root_fs`: must exist; never created or changed by zferry.
    root_fs: DatasetPath,
    /// Where sender paths are joined on: `root_fs` or `root_fs/<client>`.
    receive_root: DatasetPath,
}

impl Mapping {
    /// A sink receiving pushes from `client`.
    pub fn push_to_sink(
        root_fs: DatasetPath,
        client: &ClientIdentity,
    ) -> Result<Mapping, MappingError> {
        let receive_root = root_fs.join(std::slice::from_ref(&client.0)).map_err(|source| {
            MappingError::BadClientIdentity {
                identity: client.0.clone(),
                reason: source.to_string(),
            }
        })?;
        Ok(Mapping { root_fs, receive_root })
    }

    /// A pull job receiving into `root_fs`.
    pub fn pull(root_fs: DatasetPath) -> Mapping {
        Mapping { receive_root: root_fs.clone(), root_fs }
    }

    pub fn root_fs(&self) -> &DatasetPath {
        &self.root_fs
    }

    pub fn receive_root(&self) -> &DatasetPath {
        &self.receive_root
    }

    /// The receiver path of `sender`: always strictly below the receive root.
    pub fn map(&self, sender: &DatasetPath) -> Result<DatasetPath, MappingError> {
        if let Some(c) = sender.components().iter().find(|c| is_dot_component(c)) {
            return Err(MappingError::DotComponent {
                sender: sender.clone(),
                component: c.clone(),
            });
        }
        let mapped = self.receive_root.join(sender.components()).map_err(|source| {
            MappingError::TooLong {
                sender: sender.clone(),
                root: self.receive_root.clone(),
                source,
            }
        })?;
        // Holds by construction; checked because a wrong answer here writes into
        // someone else's dataset.
        debug_assert!(
            mapped.has_prefix(&self.receive_root) && mapped.depth() > self.receive_root.depth()
        );
        Ok(mapped)
    }

    /// The receiver filesystems that must exist for `targets` to be received and are
    /// not targets themselves: every ancestor of a target strictly below `root_fs`
    /// (for a sink that includes the client's receive root). Top-down: a parent
    /// always comes before its children. Targets outside the receive root are
    /// ignored (they cannot come from [`Mapping::map`]).
    pub fn placeholders<'a>(
        &self,
        targets: impl IntoIterator<Item = &'a DatasetPath>,
    ) -> Vec<DatasetPath> {
        let targets: BTreeSet<&DatasetPath> =
            targets.into_iter().filter(|t| t.has_prefix(&self.receive_root)).collect();
        let mut needed = BTreeSet::new();
        for target in &targets {
            let mut ancestor = target.parent();
            while let Some(path) = ancestor {
                if path.depth() <= self.root_fs.depth() || needed.contains(&path) {
                    break;
                }
                ancestor = path.parent();
                if !targets.contains(&path) {
                    needed.insert(path);
                }
            }
        }
        // Component-wise order puts every path before the paths below it.
        needed.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> DatasetPath {
        DatasetPath::parse(s).unwrap()
    }

    fn strings(paths: &[DatasetPath]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn push_maps_under_the_client_root() {
        let m = Mapping::push_to_sink(p("backup/zferry"), &ClientIdentity::new("host1").unwrap())
            .unwrap();
        assert_eq!(m.root_fs(), &p("backup/zferry"));
        assert_eq!(m.receive_root(), &p("backup/zferry/host1"));
        assert_eq!(m.map(&p("tank")).unwrap(), p("backup/zferry/host1/tank"));
        assert_eq!(m.map(&p("tank/vm/disk0")).unwrap(), p("backup/zferry/host1/tank/vm/disk0"));
    }

    #[test]
    fn pull_maps_under_root_fs() {
        let m = Mapping::pull(p("backup"));
        assert_eq!(m.receive_root(), &p("backup"));
        assert_eq!(m.map(&p("tank/home")).unwrap(), p("backup/tank/home"));
    }

    #[test]
    fn client_identity_is_one_component() {
        assert_eq!(
            ClientIdentity::new("host-1.example.com").unwrap().as_str(),
            "host-1.example.com"
        );
        for bad in ["", "a/b", "/a", "a/", "..", ".", "a@b", "a#b", "ä", "a\nb"] {
            let e = ClientIdentity::new(bad).unwrap_err();
            assert!(
                matches!(&e, MappingError::BadClientIdentity { identity, .. } if identity == bad),
                "{bad}"
            );
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        let long = "h".repeat(250);
        let client = ClientIdentity::new(&long).unwrap();
        assert!(Mapping::push_to_sink(p("backup/zferry"), &client).is_err());
    }

    #[test]
    fn mapped_paths_never_escape() {
        let m = Mapping::pull(p("backup"));
        for bad in ["tank/..", "../x", "tank/./a"] {
            // Such a path cannot even be named: parsing refuses it, so no mapping
            // ever sees one.
            assert!(DatasetPath::parse(bad).is_err(), "{bad}");
        }
        let deep = p(&format!("tank/{}", "x".repeat(248)));
        assert!(matches!(m.map(&deep), Err(MappingError::TooLong { .. })));
    }

    #[test]
    fn placeholders_are_missing_ancestors_top_down() {
        let m =
            Mapping::push_to_sink(p("backup/zferry"), &ClientIdentity::new("h").unwrap()).unwrap();
        let targets: Vec<DatasetPath> = ["tank/a/b/c", "tank/a", "tank/x/y", "data"]
            .iter()
            .map(|s| m.map(&p(s)).unwrap())
            .collect();
        assert_eq!(
            strings(&m.placeholders(&targets)),
            [
                "backup/zferry/h",
                "backup/zferry/h/tank",
                "backup/zferry/h/tank/a/b",
                "backup/zferry/h/tank/x",
            ]
        );
        let pull = Mapping::pull(p("backup"));
        let targets = vec![pull.map(&p("tank")).unwrap(), pull.map(&p("tank/a/b")).unwrap()];
        assert_eq!(strings(&pull.placeholders(&targets)), ["backup/tank/a"]);
        assert!(pull.placeholders(&[]).is_empty());
        assert!(pull.placeholders(&[p("elsewhere/a/b")]).is_empty());
    }

    proptest! {
        #[test]
        fn placeholders_complete_and_minimal(
            senders in proptest::collection::btree_set(
                proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..5).prop_map(|c| c.join("/")),
                0..12,
            ),
            push in any::<bool>(),
        ) {
            let m = if push {
                Mapping::push_to_sink(p("r/z"), &ClientIdentity::new("c").unwrap()).unwrap()
            } else {
                Mapping::pull(p("r/z"))
            };
            let targets: BTreeSet<DatasetPath> = senders.iter().map(|s| m.map(&p(s)).unwrap()).collect();
            let placeholders = m.placeholders(&targets);
            let all: BTreeSet<&DatasetPath> = targets.iter().chain(placeholders.iter()).collect();
            for t in &targets {
                prop_assert!(t.has_prefix(m.receive_root()) && t != m.receive_root());
            }
            // Complete: every node's parent exists, down from root_fs.
            for node in &all {
                let parent = node.parent().unwrap();
                prop_assert!(parent == *m.root_fs() || all.contains(&parent), "{} lacks {}", node, parent);
            }
            // Minimal: each placeholder is an ancestor of some target, and not one.
            for ph in &placeholders {
                prop_assert!(!targets.contains(ph));
                prop_assert!(targets.iter().any(|t| t.has_prefix(ph)));
            }
            // Top-down and without repeats.
            for (i, ph) in placeholders.iter().enumerate() {
                for later in &placeholders[i + 1..] {
                    prop_assert!(!ph.has_prefix(later));
                }
            }
        }
    }
}
