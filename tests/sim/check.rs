//! What must hold: after every change to any host's ZFS ([`invariants`]) and
//! once the faults have stopped ([`converged`]). The checks read the model's
//! state and the senders' histories, never what zferry says about itself,
//! except to tell a conflict zferry must report from one it must resolve.

use std::collections::BTreeMap;

use crate::scenario::{selects, Link, BYSTANDER, PULL_ROOT, SINK_ROOT};
use crate::world::World;
use crate::zfs::{parent_of, Dataset, Snapshot, Source, Zfs};

/// Every snapshot a sender ever had, per filesystem and per incarnation (a
/// filesystem destroyed and created again under the same name is a new one).
#[derive(Debug, Default, Clone)]
pub struct History {
    filesystems: BTreeMap<String, Vec<Incarnation>>,
    /// guid -> (path, incarnation, position)
    by_guid: BTreeMap<u64, (String, usize, usize)>,
}

#[derive(Debug, Clone)]
struct Incarnation {
    guid: u64,
    snapshots: Vec<Snapshot>,
}

impl History {
    pub fn created(&mut self, path: &str, guid: u64) {
        self.filesystems
            .entry(path.to_owned())
            .or_default()
            .push(Incarnation { guid, snapshots: Vec::new() });
    }

    pub fn snapshot(&mut self, path: &str, fs_guid: u64, snap: &Snapshot) {
        let Some(incs) = self.filesystems.get_mut(path) else { return };
        let Some(i) = incs.iter().rposition(|inc| inc.guid == fs_guid) else { return };
        let pos = incs[i].snapshots.len();
        incs[i].snapshots.push(snap.clone());
        self.by_guid.insert(snap.guid, (path.to_owned(), i, pos));
    }
}

fn is_placeholder(zfs: &Zfs, path: &str) -> bool {
    let (v, s) = zfs.fs_prop(path, "zferry:placeholder");
    v == "on" && s == Source::Local
}

/// The receiver-side datasets of `link`, with the sender path each replicates.
fn replicas<'a>(zfs: &'a Zfs, link: &Link) -> Vec<(&'a String, &'a Dataset, String)> {
    let prefix = format!("{}/", link.receiver_prefix);
    zfs.datasets
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .map(|(p, d)| (p, d, p[prefix.len()..].to_owned()))
        .collect()
}

/// After every change: every received snapshot is one the sender had (same
/// guid, name, creation and content), of the filesystem it replicates, of one
/// incarnation of it, in the sender's order, with no snapshot of the sender
/// missing in between; placeholders hold no data; nothing outside the receive
/// roots changed.
pub fn invariants(w: &World) -> Result<(), String> {
    for link in &w.scenario.links {
        let recv = &w.zfs[link.receiver];
        let hist = &w.history[link.sender];
        let sender = &w.zfs[link.sender];
        let name = &w.scenario.hosts[link.sender].name;
        if let Some(root) = recv.datasets.get(&link.receiver_prefix) {
            if !root.snapshots.is_empty() && link.receiver_prefix != PULL_ROOT {
                return Err(format!("the client root {} holds snapshots", link.receiver_prefix));
            }
        }
        for (path, ds, sender_path) in replicas(recv, link) {
            let followup = followup_pending(w, link.receiver, path).1;
            if is_placeholder(recv, path) && !ds.snapshots.is_empty() && !followup {
                return Err(format!(
                    "placeholder {path} holds data: {:?}",
                    ds.snapshots.iter().map(|s| &s.name).collect::<Vec<_>>()
                ));
            }
            let pruned = |guid: u64| w.pruned.contains(&(link.receiver, path.clone(), guid));
            check_replica(hist, sender, name, &sender_path, path, ds, &pruned)?;
        }
    }
    for ((host, path), (guid, content)) in &w.foreign {
        match w.zfs[*host].datasets.get(path) {
            None => return Err(format!("the admin's own {path} vanished")),
            Some(d) if d.guid != *guid || d.content != *content || !d.snapshots.is_empty() => {
                return Err(format!("zferry overwrote the admin's own {path}"))
            }
            Some(_) => {}
        }
    }
    let recv = &w.zfs[0];
    let bystander = recv.datasets.get(BYSTANDER).ok_or("backup/other vanished")?;
    if bystander.snapshots.len() != 1 || !bystander.props.is_empty() {
        return Err(format!("zferry touched {BYSTANDER}, outside every receive root"));
    }
    for root in [SINK_ROOT, PULL_ROOT] {
        let d = recv.datasets.get(root).ok_or_else(|| format!("{root} vanished"))?;
        if !d.props.is_empty() {
            return Err(format!(
                "zferry changed the properties of the receive root {root}: {:?}",
                d.props
            ));
        }
    }
    for path in recv.datasets.keys() {
        let inside = w.scenario.links.iter().any(|l| {
            path == &l.receiver_prefix || path.starts_with(&format!("{}/", l.receiver_prefix))
        });
        let known = ["backup", SINK_ROOT, PULL_ROOT, BYSTANDER].contains(&path.as_str());
        if !inside && !known {
            return Err(format!("zferry created {path}, outside its receive roots"));
        }
    }
    Ok(())
}

fn check_replica(
    hist: &History,
    sender: &Zfs,
    sender_name: &str,
    sender_path: &str,
    path: &str,
    ds: &Dataset,
    pruned: &dyn Fn(u64) -> bool,
) -> Result<(), String> {
    if let Some(p) = &ds.partial {
        match hist.by_guid.get(&p.to_guid) {
            Some((sp, _, _)) if sp == sender_path => {}
            _ => {
                return Err(format!(
                    "{path} holds a partial receive of {} (guid {}), which {sender_path} never had",
                    p.to_name, p.to_guid
                ))
            }
        }
    }
    let mut incarnation: Option<usize> = None;
    let mut positions = Vec::new();
    for s in &ds.snapshots {
        let Some((sp, i, pos)) = hist.by_guid.get(&s.guid) else {
            return Err(format!(
                "{path}@{} (guid {}) is no snapshot {sender_name} ever had",
                s.name, s.guid
            ));
        };
        if sp != sender_path {
            return Err(format!(
                "{path}@{} is a snapshot of {sp}, but {path} replicates {sender_path}",
                s.name
            ));
        }
        let h = &hist.filesystems[sp][*i].snapshots[*pos];
        if h.name != s.name || h.content != s.content || h.creation != s.creation {
            return Err(format!(
                "{path}@{} (guid {}) differs from the sender's: name {} vs {}, content {:x} vs {:x}, creation {} vs {}",
                s.name, s.guid, s.name, h.name, s.content, h.content, s.creation, h.creation
            ));
        }
        if incarnation.is_some_and(|inc| inc != *i) {
            return Err(format!(
                "{path} mixes snapshots of two different filesystems that were both {sender_path} (forked history)"
            ));
        }
        if positions.last().is_some_and(|last| pos <= last) {
            return Err(format!("{path}@{} is out of the sender's order", s.name));
        }
        incarnation = Some(*i);
        positions.push(*pos);
    }
    let (Some(i), Some(first), Some(last)) = (incarnation, positions.first(), positions.last())
    else {
        return Ok(());
    };
    let inc = &hist.filesystems[sender_path][i];
    let Some(live) = sender.datasets.get(sender_path).filter(|d| d.guid == inc.guid) else {
        return Ok(());
    };
    for s in &live.snapshots {
        let pos = hist.by_guid.get(&s.guid).map(|x| x.2).unwrap_or(0);
        if pos > *first
            && pos < *last
            && !ds.snapshots.iter().any(|r| r.guid == s.guid)
            && !pruned(s.guid)
        {
            return Err(format!(
                "{path} lacks {sender_path}@{}, which the sender has between snapshots it received",
                s.name
            ));
        }
    }
    Ok(())
}

/// Before zferry destroys a snapshot: it must not be what the next
/// incremental of any link starts from (DESIGN.md: "pruning never destroys the
/// version that the next incremental step needs"). On a sender that is the
/// replica's newest snapshot, unless a bookmark keeps its guid; on a receiver,
/// a replica's newest snapshot.
pub fn destroy_is_safe(w: &World, host: usize, argv: &[String]) -> Result<(), String> {
    let Some((fs, '@', list)) = argv.last().and_then(|n| crate::zfs::split_version(n)) else {
        return Ok(());
    };
    for snap in list.split(',') {
        destroy_one_is_safe(w, host, fs, snap)?;
    }
    Ok(())
}

fn destroy_one_is_safe(w: &World, host: usize, fs: &str, snap: &str) -> Result<(), String> {
    let Some(guid) = w.zfs[host].datasets.get(fs).and_then(|d| d.snapshot(snap)).map(|s| s.guid)
    else {
        return Ok(());
    };
    for link in &w.scenario.links {
        let prefix = format!("{}/", link.receiver_prefix);
        let (replica, bookmarked) = if link.sender == host {
            let d = &w.zfs[host].datasets[fs];
            (format!("{prefix}{fs}"), d.bookmarks.iter().any(|b| b.guid == guid))
        } else if link.receiver == host && fs.starts_with(&prefix) {
            (fs.to_owned(), false)
        } else {
            continue;
        };
        let newest = w.zfs[link.receiver].datasets.get(&replica).and_then(Dataset::newest);
        if newest.is_some_and(|n| n.guid == guid) && !bookmarked {
            return Err(format!(
                "zferry destroys {fs}@{snap}, the base of the next incremental into {replica}"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Nothing to send (the sender has no snapshot).
    Nothing,
    /// The replica must reach the sender's newest snapshot.
    Converge,
    /// zferry must refuse, and say so.
    Conflict(String),
    /// A parent is in conflict: zferry must skip this one.
    Skipped,
}

fn expect(w: &World, link: &Link, fs: &str, memo: &mut BTreeMap<String, Expect>) -> Expect {
    if let Some(e) = memo.get(fs) {
        return e.clone();
    }
    let sender = &w.zfs[link.sender];
    let recv = &w.zfs[link.receiver];
    let e = 'e: {
        let Some(ds) = sender.datasets.get(fs) else { break 'e Expect::Nothing };
        if ds.snapshots.is_empty() {
            break 'e Expect::Nothing;
        }
        let mut up = parent_of(fs);
        while let Some(a) = up {
            let replicated = sender.exists(a) && selects(&link.filter, a);
            if replicated
                && matches!(expect(w, link, a, memo), Expect::Conflict(_) | Expect::Skipped)
            {
                break 'e Expect::Skipped;
            }
            up = parent_of(a);
        }
        let target = format!("{}/{fs}", link.receiver_prefix);
        let Some(rd) = recv.datasets.get(&target) else { break 'e Expect::Converge };
        match rd.newest() {
            // A partial receive is to be resumed (DESIGN.md, "Replication semantics").
            None if is_placeholder(recv, &target) || rd.partial.is_some() => Expect::Converge,
            None => {
                Expect::Conflict(format!("{target} exists without snapshots and is no placeholder"))
            }
            Some(newest) if ds.snapshots.iter().any(|s| s.guid == newest.guid) => Expect::Converge,
            // A bookmark of it (zferry's replication cursor) is as good a base.
            Some(newest) if ds.bookmarks.iter().any(|b| b.guid == newest.guid) => Expect::Converge,
            Some(newest) => Expect::Conflict(format!(
                "{target}'s newest snapshot @{} (guid {}) is gone from the sender",
                newest.name, newest.guid
            )),
        }
    };
    memo.insert(fs.to_owned(), e.clone());
    e
}

/// Words that a conflict report contains (see plan/diff.rs and job/receiver.rs).
const CONFLICT_WORDS: [&str; 4] =
    ["no common ancestor", "diverged", "ahead of the sender", "is not a placeholder"];

/// Once faults stopped: every link ran a cycle since, and each selected sender
/// filesystem is either replicated up to its newest snapshot (read-only, no
/// placeholder mark, nothing partial), or in a real conflict that zferry
/// reported, or skipped because its parent is.
pub fn converged(w: &World) -> Result<(), String> {
    w.scenario.links.iter().try_for_each(|link| converged_link(w, link))
}

/// [`converged`] for one link.
pub fn converged_link(w: &World, link: &Link) -> Result<(), String> {
    {
        let report = w.reports.get(&(link.active_host, link.job.clone()));
        let Some(report) = report.filter(|r| r.quiet_cycles > 0) else {
            return Err(format!("no cycle of job {} completed since the faults stopped", link.job));
        };
        let sender = &w.zfs[link.sender];
        let recv = &w.zfs[link.receiver];
        let mut memo = BTreeMap::new();
        for (fs, ds) in sender.datasets.range("tank/data".to_owned()..) {
            if !(fs == "tank/data" || fs.starts_with("tank/data/")) {
                break;
            }
            if !selects(&link.filter, fs) {
                continue;
            }
            let line = report.last.iter().find(|l| l.starts_with(&format!("{fs}: ")));
            let line = line.map(String::as_str).unwrap_or("(no report)");
            let target = format!("{}/{fs}", link.receiver_prefix);
            match expect(w, link, fs, &mut memo) {
                Expect::Nothing => {}
                Expect::Converge => {
                    let newest = ds.newest().expect("has snapshots");
                    let Some(rd) = recv.datasets.get(&target) else {
                        return Err(format!(
                            "{target} does not exist; job {} says {line:?}",
                            link.job
                        ));
                    };
                    // Converged: the receiver holds the sender's newest
                    // snapshot, or a newer one that the sender destroyed and
                    // keeps only as a bookmark (its replication cursor).
                    let ahead_by_bookmark = rd.newest().is_some_and(|r| {
                        ds.bookmarks
                            .iter()
                            .any(|b| b.guid == r.guid && b.createtxg > newest.createtxg)
                    });
                    if rd.newest().map(|s| s.guid) != Some(newest.guid) && !ahead_by_bookmark {
                        return Err(format!(
                            "{target} is at {:?}, the sender at @{}; job {} says {line:?}",
                            rd.newest().map(|s| &s.name),
                            newest.name,
                            link.job
                        ));
                    }
                    let (readonly_pending, unmark_pending) =
                        followup_pending(w, link.receiver, &target);
                    if recv.fs_prop(&target, "readonly").0 != "on" && !readonly_pending {
                        return Err(format!("replica {target} is not read-only"));
                    }
                    if is_placeholder(recv, &target) && !unmark_pending {
                        return Err(format!("replica {target} still carries the placeholder mark"));
                    }
                    if let Some(p) = &rd.partial {
                        return Err(format!(
                            "replica {target} holds a partial receive of {}",
                            p.to_name
                        ));
                    }
                }
                Expect::Conflict(why) => {
                    let said =
                        line.contains("failed") && CONFLICT_WORDS.iter().any(|w| line.contains(w));
                    if !said {
                        return Err(format!(
                            "{target} cannot be replicated ({why}), but job {} says {line:?}",
                            link.job
                        ));
                    }
                }
                Expect::Skipped => {
                    if !line.contains("skipped") {
                        return Err(format!(
                            "{fs}'s parent is in conflict, so it must be skipped, but job {} says {line:?}",
                            link.job
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Cycles a job may need, once the faults stopped, to converge: the first
/// may still meet what the faults left (a receive being killed, a stale
/// connection timing out), the second must succeed; one more for slack.
pub const MAX_CYCLES: u32 = 3;

/// Converged, and nothing left running that could still change the result.
pub fn settled(w: &World) -> bool {
    let hosts = w.scenario.hosts.len();
    (0..hosts).all(|h| w.daemon_running(h)) && converged(w).is_ok()
}

/// What this simulator found in zferry. Each remaining one is tolerated and
/// counted, unless `ZFERRY_SIM_STRICT=1`; delete a tolerance when its cause is
/// gone. Fixed since they were found: partial receives are resumed from their
/// token, a failed `zfs version` probe is retried, a pull step waits for its
/// stream to end, and a lost follow-up is redone at the next receive into a
/// still-marked placeholder.
///
/// A partial receive that cannot be resumed (its snapshot is gone from the
/// sender, or the sender cannot read the token) stops its filesystem with a
/// message telling the admin to run `zfs receive -A`: zferry does not discard
/// it by itself. Tolerated by an admin who does so once the faults are over.
pub const PARTIAL_RECEIVE: &str = "a partial receive that cannot be resumed waits for the admin";
/// After a full receive, `zfs set readonly=on` (and, replacing a placeholder,
/// `zfs inherit` of the markers) run once. If that fails or the daemon dies
/// first, the next receive into a target still marked as a placeholder redoes
/// it; but a fresh replica without a marker on a ZFS without `receive -o`
/// stays writable, and a marked replica stays marked until a next snapshot
/// arrives. Tolerated by not counting such replicas against "read-only,
/// unmarked".
pub const FOLLOWUP_LOST: &str = "readonly/placeholder follow-up lost until the next receive";
/// Was: a failed `zfs version` probe was never retried. Fixed; the tolerance
/// (an admin who restarts such daemons) only counts how often it would apply.
pub const DIALECT_STUCK: &str = "a `zfs version` probe failed (retried since the fix)";

/// Was: a pull sent its next request before the last step's stream ended, and
/// the session refused it ("a request is already in flight"). Fixed; counted
/// if it is ever seen again.
pub const PULL_BUSY: &str =
    "pull: next request before the last step's stream ended aborts the cycle";

/// (readonly pending, placeholder mark pending) for a replica whose full
/// receive succeeded: while its follow-up runs, and for good once it was lost
/// ([`FOLLOWUP_LOST`]; not in strict mode).
fn followup_pending(w: &World, host: usize, path: &str) -> (bool, bool) {
    match w.followups.get(&(host, path.to_owned())) {
        Some(f) if !f.lost || !w.strict => (f.readonly, f.unmark),
        _ => (false, false),
    }
}

/// Once the faults are over: what an admin does about known issues (see
/// [`PARTIAL_RECEIVE`]).
pub fn known_issue_workarounds(w: &mut World) {
    if w.strict {
        return;
    }
    let restarted = w.restart_dialect_failures();
    if restarted > 0 {
        *w.known.entry(DIALECT_STUCK).or_default() += restarted;
    }
    let receivers: std::collections::BTreeSet<usize> =
        w.scenario.links.iter().map(|l| l.receiver).collect();
    for host in receivers {
        let n = w.abort_partial_receives(host).len() as u32;
        if n > 0 {
            *w.known.entry(PARTIAL_RECEIVE).or_default() += n;
        }
    }
}

/// Counts the known issues visible in the final state.
pub fn count_known(w: &mut World) {
    if w.strict {
        return;
    }
    let lost = w
        .followups
        .iter()
        .filter(|((h, p), f)| {
            f.lost && w.zfs[*h].datasets.get(p).is_some_and(|d| !d.snapshots.is_empty())
        })
        .count() as u32;
    if lost > 0 && w.quiet_since.is_some() {
        *w.known.entry(FOLLOWUP_LOST).or_default() += lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn destroying_the_next_incrementals_base_is_caught() {
        let mut w = World::new(1, false);
        w.setup();
        let link = w.scenario.links[0].clone();
        let (s, r) = (link.sender, link.receiver);
        let mut rng = Rng::new(2);
        w.zfs[s].snapshot("tank/data", "base", 0, &mut rng).unwrap();
        let snap = w.zfs[s].datasets["tank/data"].snapshots[0].clone();
        let replica = format!("{}/tank/data", link.receiver_prefix);
        for p in [link.receiver_prefix.clone(), format!("{}/tank", link.receiver_prefix)] {
            let _ = w.zfs[r].create(&p, &[], &mut rng);
        }
        w.zfs[r].create(&replica, &[], &mut rng).unwrap();
        w.zfs[r].datasets.get_mut(&replica).unwrap().snapshots.push(snap);
        let argv: Vec<String> =
            ["zfs", "destroy", "tank/data@base"].iter().map(|a| a.to_string()).collect();
        assert!(destroy_is_safe(&w, s, &argv).is_err(), "the sender's base");
        let argv_r: Vec<String> = vec!["zfs".into(), "destroy".into(), format!("{replica}@base")];
        assert!(destroy_is_safe(&w, r, &argv_r).is_err(), "the receiver's base");
        w.zfs[s].bookmark("tank/data@base", "tank/data#base").unwrap();
        assert!(destroy_is_safe(&w, s, &argv).is_ok(), "a bookmark keeps the base");
    }
}
