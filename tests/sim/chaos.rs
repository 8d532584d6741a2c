//! What goes wrong, and what people do: crashes, resets, cuts and partitions
//! while faults are on; snapshots, writes, new and destroyed filesystems on
//! the senders (and now and then an admin on the receiver); and the admin's
//! workarounds for known issues.

use zferry_core::node::Input;

use crate::net::{Pid, SockId};
use crate::scenario::SECOND;
use crate::world::{Ev, World};
use crate::zfs::command;

impl World {
    pub(crate) fn fault(&mut self) {
        let choice = self.rng.below(100);
        match choice {
            0..=19 => {
                let hosts: Vec<usize> =
                    (0..self.daemons.len()).filter(|h| self.daemons[*h].is_some()).collect();
                if let Some(&h) = self.rng.pick(&hosts) {
                    let pid = self.daemons[h].expect("running");
                    self.stats.crashes += 1;
                    self.terminate(pid, "crashes (SIGKILL)".into(), true);
                }
            }
            20..=24 => {
                let hosts: Vec<usize> =
                    (0..self.daemons.len()).filter(|h| self.daemons[*h].is_some()).collect();
                if let Some(&h) = self.rng.pick(&hosts) {
                    let pid = self.daemons[h].expect("running");
                    let name = self.host_name(h).to_owned();
                    self.log(format!("{name}[{pid}] gets SIGTERM"));
                    self.input(pid, Input::Shutdown);
                    self.pump(pid);
                }
            }
            25..=74 => {
                let socks: Vec<SockId> =
                    self.net.open_socks().into_iter().filter(|s| !self.net.is_local(*s)).collect();
                let Some(&sock) = self.rng.pick(&socks) else { return };
                self.break_connection(sock, choice >= 55);
            }
            75..=89 => {
                if self.net.partitioned() {
                    return;
                }
                let h = self.rng.usize(0, self.scenario.hosts.len() - 1);
                self.stats.partitions += 1;
                let secs = if self.rng.chance(300) {
                    self.rng.range(30, 200)
                } else {
                    self.rng.range(1, 20)
                };
                let name = self.host_name(h).to_owned();
                self.log(format!("network: {name} partitioned for {secs} s"));
                self.net.partition(h, 1);
                self.at(self.now + secs * SECOND, Ev::Heal);
            }
            _ => {}
        }
    }

    pub(crate) fn break_connection(&mut self, sock: SockId, cut: bool) {
        let owner = self.net.owner(sock).unwrap_or(0);
        self.stats.resets += 1;
        let wake = if cut {
            self.log(format!("network: cut the stream towards program {owner}"));
            self.net.cut(sock, self.now, &mut self.rng)
        } else {
            self.log(format!("network: reset a connection of program {owner}"));
            self.net.reset(sock, self.now)
        };
        for (pid, t) in wake {
            self.wake(pid, t);
        }
    }

    pub(crate) fn heal(&mut self) {
        if !self.net.partitioned() {
            return;
        }
        self.log("network: partition heals".into());
        for (pid, t) in self.net.heal(self.now, &mut self.rng) {
            self.wake(pid, t);
        }
    }

    pub(crate) fn workload(&mut self) {
        let senders: Vec<usize> =
            (0..self.scenario.hosts.len()).filter(|h| self.scenario.hosts[*h].sender).collect();
        let Some(&host) = self.rng.pick(&senders) else { return };
        let name = self.host_name(host).to_owned();
        let existing: Vec<String> = self.zfs[host]
            .datasets
            .keys()
            .filter(|k| k.starts_with("tank/data"))
            .cloned()
            .collect();
        let choice = self.rng.below(100);
        match choice {
            0..=49 => {
                let Some(fs) = self.rng.pick(&existing).cloned() else { return };
                if self.rng.chance(700) {
                    self.zfs[host].write(&fs, &mut self.rng);
                }
                let wall = self.host_now(host).wall.0;
                let snap = if self.scenario.dated_names {
                    dated_name(wall)
                } else {
                    let n = self.snap_counter.entry((host, fs.clone())).or_insert(0);
                    *n += 1;
                    format!("s{n}")
                };
                match self.zfs[host].snapshot(&fs, &snap, wall, &mut self.rng) {
                    Ok(guid) => {
                        self.stats.snapshots += 1;
                        let ds = &self.zfs[host].datasets[&fs];
                        let s = ds.snapshots.last().expect("just taken").clone();
                        let fs_guid = ds.guid;
                        self.history[host].snapshot(&fs, fs_guid, &s);
                        self.log(format!("{name}: zfs snapshot {fs}@{snap} (guid {guid})"));
                    }
                    Err(e) => self.log(format!("{name}: {e}")),
                }
            }
            50..=64 => {
                if let Some(fs) = self.rng.pick(&existing).cloned() {
                    self.zfs[host].write(&fs, &mut self.rng);
                }
            }
            65..=79 => {
                let Some(c) = self.rng.pick(&self.scenario.candidates).copied() else { return };
                let path = format!("tank/data/{c}");
                if self.zfs[host].create(&path, &[], &mut self.rng).is_ok() {
                    let guid = self.zfs[host].datasets[&path].guid;
                    self.history[host].created(&path, guid);
                    self.snap_counter.remove(&(host, path.clone()));
                    self.log(format!("{name}: zfs create {path}"));
                }
            }
            80..=84 => {
                let candidates: Vec<String> =
                    existing.into_iter().filter(|p| p != "tank/data").collect();
                let Some(fs) = self.rng.pick(&candidates).cloned() else { return };
                match self.zfs[host].destroy_recursive(&fs) {
                    Ok(()) => self.log(format!("{name}: zfs destroy -r {fs}")),
                    Err(e) => self.log(format!("{name}: {e}")),
                }
            }
            85..=96 => {
                let Some(fs) = self.rng.pick(&existing).cloned() else { return };
                let snaps: Vec<String> =
                    self.zfs[host].datasets[&fs].snapshots.iter().map(|s| s.name.clone()).collect();
                let Some(snap) = self.rng.pick(&snaps).cloned() else { return };
                match self.zfs[host].destroy_version(&format!("{fs}@{snap}")) {
                    Ok(()) => self.log(format!("{name}: zfs destroy {fs}@{snap}")),
                    Err(e) => self.log(format!("{name}: {e}")),
                }
            }
            97 => self.admin_destroys_a_replica(),
            _ => self.admin_creates_a_filesystem(),
        }
    }

    /// The receiver's admin removes a replica; replication starts over.
    fn admin_destroys_a_replica(&mut self) {
        let prefixes: Vec<String> =
            self.scenario.links.iter().map(|l| l.receiver_prefix.clone()).collect();
        let receiver = 0;
        let replicas: Vec<String> = self.zfs[receiver]
            .datasets
            .iter()
            .filter(|(p, d)| {
                !d.snapshots.is_empty() && prefixes.iter().any(|x| p.starts_with(&format!("{x}/")))
            })
            .map(|(p, _)| p.clone())
            .collect();
        let Some(fs) = self.rng.pick(&replicas).cloned() else { return };
        match self.zfs[receiver].destroy_recursive(&fs) {
            Ok(()) => {
                self.log(format!("backup: admin runs zfs destroy -r {fs}"));
                let below = format!("{fs}/");
                self.foreign.retain(|(_, p), _| *p != fs && !p.starts_with(&below));
            }
            Err(e) => self.log(format!("backup: {e}")),
        }
    }

    /// The receiver's admin creates a filesystem of their own, with data,
    /// where a replica of a sender's filesystem would go: zferry must leave it
    /// alone and report the conflict.
    fn admin_creates_a_filesystem(&mut self) {
        let Some(link) = self.rng.pick(&self.scenario.links).cloned() else { return };
        let receiver = link.receiver;
        let spots: Vec<String> = self.zfs[link.sender]
            .datasets
            .keys()
            .filter(|p| p.starts_with("tank/data"))
            .map(|p| format!("{}/{p}", link.receiver_prefix))
            .filter(|r| !self.zfs[receiver].exists(r))
            .filter(|r| crate::zfs::parent_of(r).is_some_and(|p| self.zfs[receiver].exists(p)))
            .collect();
        let Some(path) = self.rng.pick(&spots).cloned() else { return };
        if self.zfs[receiver].create(&path, &[], &mut self.rng).is_ok() {
            self.zfs[receiver].write(&path, &mut self.rng);
            let d = &self.zfs[receiver].datasets[&path];
            self.foreign.insert((receiver, path.clone()), (d.guid, d.content));
            self.log(format!("backup: admin runs zfs create {path} and writes to it"));
        }
    }

    /// The simulation's own `zfs receive -A` on every partial receive: what an
    /// admin does when told to (see `check::known_issue_workarounds`).
    pub fn abort_partial_receives(&mut self, host: usize) -> Vec<String> {
        let partial: Vec<String> = self.zfs[host]
            .datasets
            .iter()
            .filter(|(_, d)| d.partial.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        for p in &partial {
            let argv: Vec<String> =
                ["zfs", "receive", "-A", p].iter().map(|s| s.to_string()).collect();
            let wall = self.host_now(host).wall.0;
            let o = command::run(&mut self.zfs[host], &argv, wall, &mut self.rng);
            self.log(format!("backup: admin runs zfs receive -A {p}: exit {}", o.code));
        }
        partial
    }

    /// `systemctl restart zferry` on every host whose daemon could not learn
    /// the zfs dialect; returns how many.
    pub fn restart_dialect_failures(&mut self) -> u32 {
        let stuck: Vec<Pid> = std::mem::take(&mut self.dialect_failed)
            .into_iter()
            .filter(|p| self.progs.contains_key(p))
            .collect();
        for pid in &stuck {
            let host = self.progs[pid].host;
            self.terminate(*pid, "is restarted by the admin".into(), false);
            self.queue.retain(|_, ev| !matches!(ev, Ev::Restart(h) if *h == host));
            self.start_daemon(host);
        }
        stuck.len() as u32
    }
}

/// zrepl's snapshot name format, from a (possibly skewed) wall clock.
fn dated_name(wall: i64) -> String {
    let days = wall.div_euclid(86400);
    let secs = wall.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "zrepl_{y:04}{m:02}{d:02}_{:02}{:02}{:02}_000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
