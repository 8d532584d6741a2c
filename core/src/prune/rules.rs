//! Compiling the configured keep rules, and what each one keeps.

use regex::Regex;

use super::grid;
use super::Cursor;
use crate::config::{GridInterval, GridKeep, KeepRule};
use crate::time::WallTime;
use crate::zfs::FilesystemVersion;

/// Which rule list is compiled: the key it has in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSide {
    /// `pruning.keep_sender` of a push or pull job.
    Sender,
    /// `pruning.keep_receiver` of a push or pull job.
    Receiver,
    /// `pruning.keep` of a snap job.
    SnapJob,
}

impl RuleSide {
    fn key(self) -> &'static str {
        match self {
            RuleSide::Sender => "keep_sender",
            RuleSide::Receiver => "keep_receiver",
            RuleSide::SnapJob => "keep",
        }
    }
}

/// Compiled keep rules, in configuration order.
#[derive(Debug, Clone)]
pub struct KeepRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    description: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Grid { grid: Vec<GridInterval>, regex: Regex },
    LastN { count: u32, regex: Option<Regex> },
    Regex { regex: Regex, negate: bool },
    NotReplicated { keep_snapshot_at_cursor: bool },
}

/// Compiles each rule once. Errors name the rule (`keep_sender[1]`) and the
/// offending value, so the config builder can pass them on as they are.
pub fn compile(rules: &[KeepRule], side: RuleSide) -> Result<KeepRules, String> {
    let compiled = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            compile_one(rule, side)
                .map_err(|e| format!("{}[{i}] ({}): {e}", side.key(), describe(rule)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeepRules { rules: compiled })
}

fn compile_one(rule: &KeepRule, side: RuleSide) -> Result<Rule, String> {
    let kind = match rule {
        KeepRule::Grid { grid, regex } => {
            // zrepl refuses an empty grid regex rather than letting it match everything.
            if regex.is_empty() {
                return Err("regex must not be empty".to_owned());
            }
            check_grid(grid)?;
            Kind::Grid { grid: grid.clone(), regex: regex_of(regex)? }
        }
        KeepRule::LastN { count, regex } => {
            let regex = match regex.as_deref() {
                None | Some("") => None,
                Some(r) => Some(regex_of(r)?),
            };
            Kind::LastN { count: *count, regex }
        }
        KeepRule::Regex { regex, negate } => {
            if regex.is_empty() {
                return Err("regex must not be empty".to_owned());
            }
            Kind::Regex { regex: regex_of(regex)?, negate: *negate }
        }
        KeepRule::NotReplicated { keep_snapshot_at_cursor } => {
            if side != RuleSide::Sender {
                return Err(format!(
                    "not_replicated only makes sense for the sending side's snapshots; \
                     use it in keep_sender, not in {}",
                    side.key()
                ));
            }
            Kind::NotReplicated { keep_snapshot_at_cursor: *keep_snapshot_at_cursor }
        }
    };
    Ok(Rule { description: describe(rule), kind })
}

fn regex_of(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

/// zrepl's check: an interval must not be shorter than the one before it,
/// unless every interval before it keeps everything (a short keep=all head is
/// fine). A shrinking grid is almost certainly a typo in the spec.
fn check_grid(grid: &[GridInterval]) -> Result<(), String> {
    if grid.is_empty() {
        return Err("grid has no intervals".to_owned());
    }
    let mut all_keep_all = true;
    for (i, pair) in grid.windows(2).enumerate() {
        all_keep_all &= pair[0].keep == GridKeep::All;
        if pair[1].length < pair[0].length && !all_keep_all {
            return Err(format!(
                "grid interval {} ({}) is shorter than the one before it ({}); interval \
                 lengths must not decrease (except after keep=all intervals)",
                i + 2,
                duration_text(pair[1].length.as_secs()),
                duration_text(pair[0].length.as_secs())
            ));
        }
    }
    Ok(())
}

impl KeepRules {
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule at `index` in words, like `last_n 10 (regex "^zrepl_")`.
    pub fn description(&self, index: usize) -> Option<&str> {
        self.rules.get(index).map(|r| r.description.as_str())
    }

    /// For each snapshot, the first rule that keeps it.
    pub(super) fn kept_by(
        &self,
        snapshots: &[&FilesystemVersion],
        now: WallTime,
        cursor: Option<Cursor>,
    ) -> Vec<Option<usize>> {
        let mut first = vec![None; snapshots.len()];
        for (index, rule) in self.rules.iter().enumerate() {
            let keeps = rule.kind.keeps(snapshots, now, cursor);
            for (slot, keep) in first.iter_mut().zip(keeps) {
                if keep && slot.is_none() {
                    *slot = Some(index);
                }
            }
        }
        first
    }
}

/// Orders snapshots by age: creation time, then createtxg for equal times.
pub(super) fn age_key(v: &FilesystemVersion) -> (i64, u64, u64) {
    (v.creation, v.createtxg, v.guid)
}

impl Kind {
    fn keeps(
        &self,
        snaps: &[&FilesystemVersion],
        now: WallTime,
        cursor: Option<Cursor>,
    ) -> Vec<bool> {
        match self {
            Kind::Grid { grid, regex } => {
                let matching: Vec<usize> =
                    (0..snaps.len()).filter(|&i| regex.is_match(&snaps[i].name)).collect();
                let picked: Vec<&FilesystemVersion> = matching.iter().map(|&i| snaps[i]).collect();
                let mut keep = vec![false; snaps.len()];
                for (i, k) in matching.iter().zip(grid::keeps(grid, &picked, now)) {
                    keep[*i] = k;
                }
                keep
            }
            Kind::LastN { count, regex } => {
                let mut matching: Vec<usize> = (0..snaps.len())
                    .filter(|&i| regex.as_ref().map_or(true, |r| r.is_match(&snaps[i].name)))
                    .collect();
                matching.sort_by_key(|&i| std::cmp::Reverse(age_key(snaps[i])));
                let mut keep = vec![false; snaps.len()];
                for &i in matching.iter().take(*count as usize) {
                    keep[i] = true;
                }
                keep
            }
            Kind::Regex { regex, negate } => {
                snaps.iter().map(|s| regex.is_match(&s.name) != *negate).collect()
            }
            Kind::NotReplicated { keep_snapshot_at_cursor } => snaps
                .iter()
                .map(|s| match cursor {
                    // Nothing replicated yet: every snapshot still has to go over.
                    None => true,
                    Some(c) if s.guid == c.guid => *keep_snapshot_at_cursor,
                    // A snapshot of the cursor's txg that is not the cursor itself
                    // cannot be ordered against it: keep it.
                    Some(c) => s.createtxg >= c.createtxg,
                })
                .collect(),
        }
    }
}

/// A rule in words, close to how it is written in the configuration.
fn describe(rule: &KeepRule) -> String {
    match rule {
        KeepRule::Grid { grid, regex } => format!("grid {} (regex {regex:?})", grid_text(grid)),
        KeepRule::LastN { count, regex: None } => format!("last_n {count}"),
        KeepRule::LastN { count, regex: Some(r) } => format!("last_n {count} (regex {r:?})"),
        KeepRule::Regex { regex, negate: false } => format!("regex {regex:?}"),
        KeepRule::Regex { regex, negate: true } => format!("regex {regex:?} (negate)"),
        KeepRule::NotReplicated { keep_snapshot_at_cursor: true } => "not_replicated".to_owned(),
        KeepRule::NotReplicated { keep_snapshot_at_cursor: false } => {
            "not_replicated (keep_snapshot_at_cursor: false)".to_owned()
        }
    }
}

/// `1x1h(keep=all) | 24x1h | 14x1d`: runs of equal intervals folded back.
fn grid_text(grid: &[GridInterval]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < grid.len() {
        let run = grid[i..].iter().take_while(|g| **g == grid[i]).count();
        let keep = match grid[i].keep {
            GridKeep::All => "(keep=all)".to_owned(),
            GridKeep::Count(1) => String::new(),
            GridKeep::Count(k) => format!("(keep={k})"),
        };
        parts.push(format!("{run}x{}{keep}", duration_text(grid[i].length.as_secs())));
        i += run;
    }
    parts.join(" | ")
}

/// Seconds in the largest of zrepl's interval units that divides them.
fn duration_text(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(7 * 86_400, "w"), (86_400, "d"), (3600, "h"), (60, "m")];
    for (size, unit) in UNITS {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}
