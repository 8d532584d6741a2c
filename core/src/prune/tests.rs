use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::config::{parse_grid, KeepRule};
use crate::zfs::VersionKind;

const M: i64 = 60;
const H: i64 = 3600;
const D: i64 = 86_400;
/// An arbitrary "now" for tests that do not care: 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;

/// A snapshot; its guid is derived from its createtxg so tests can name both.
fn s(name: &str, createtxg: u64, creation: i64) -> FilesystemVersion {
    FilesystemVersion {
        kind: VersionKind::Snapshot,
        name: name.to_owned(),
        guid: 1000 + createtxg,
        createtxg,
        creation,
    }
}

fn b(name: &str, createtxg: u64, creation: i64) -> FilesystemVersion {
    FilesystemVersion { kind: VersionKind::Bookmark, ..s(name, createtxg, creation) }
}

fn grid(spec: &str, regex: &str) -> KeepRule {
    KeepRule::Grid { grid: parse_grid(spec).unwrap(), regex: regex.to_owned() }
}

fn last_n(count: u32, regex: Option<&str>) -> KeepRule {
    KeepRule::LastN { count, regex: regex.map(str::to_owned) }
}

fn regex(regex: &str, negate: bool) -> KeepRule {
    KeepRule::Regex { regex: regex.to_owned(), negate }
}

fn not_replicated(keep_snapshot_at_cursor: bool) -> KeepRule {
    KeepRule::NotReplicated { keep_snapshot_at_cursor }
}

struct Case<'a> {
    rules: Vec<KeepRule>,
    versions: Vec<FilesystemVersion>,
    now: i64,
    candidates: CandidateFilter,
    protected: &'a [u64],
    cursor: Option<Cursor>,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Case {
            rules: vec![],
            versions: vec![],
            now: NOW,
            candidates: CandidateFilter::All,
            protected: &[],
            cursor: None,
        }
    }
}

/// The decision as `name:CODE` words in output order: `D` destroy, `R<i>` kept
/// by rule i, `B` bookmark, `P` protected, `N` not a candidate, `E` no rules.
fn run(case: Case) -> String {
    let rules = compile(&case.rules, RuleSide::Sender).unwrap();
    let protected: BTreeSet<u64> = case.protected.iter().copied().collect();
    let ctx = PruneContext {
        now: WallTime(case.now),
        candidates: &case.candidates,
        protected: &protected,
        cursor: case.cursor,
    };
    let decision = rules.evaluate(&case.versions, &ctx);
    assert_eq!(decision.entries.len(), case.versions.len());
    decision
        .entries
        .iter()
        .map(|d| {
            let code = match d.verdict {
                Verdict::Destroy => "D".to_owned(),
                Verdict::Keep(KeepReason::Rule(i)) => format!("R{i}"),
                Verdict::Keep(KeepReason::Bookmark) => "B".to_owned(),
                Verdict::Keep(KeepReason::IncrementalBase) => "P".to_owned(),
                Verdict::Keep(KeepReason::NotCandidate) => "N".to_owned(),
                Verdict::Keep(KeepReason::NoRules) => "E".to_owned(),
            };
            format!("{}{}:{code}", d.version.kind.delimiter(), d.version.name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn no_versions_no_decisions() {
    let out = run(Case { rules: vec![last_n(1, None)], ..Case::default() });
    assert_eq!(out, "");
}

#[test]
fn no_rules_keeps_everything_as_zrepl_does() {
    let out = run(Case {
        versions: vec![s("a", 1, NOW - 2 * H), b("a", 1, NOW - 2 * H), s("b", 2, NOW - H)],
        protected: &[1002],
        ..Case::default()
    });
    assert_eq!(out, "@a:E #a:B @b:P");
}

#[test]
fn rules_are_a_union_and_the_first_keeper_is_named() {
    let out = run(Case {
        rules: vec![regex("^manual_", false), last_n(2, None)],
        versions: vec![
            s("manual_1", 1, NOW - 4 * H),
            s("zrepl_1", 2, NOW - 3 * H),
            s("zrepl_2", 3, NOW - 2 * H),
            s("manual_2", 4, NOW - H),
        ],
        ..Case::default()
    });
    assert_eq!(out, "@manual_1:R0 @zrepl_1:D @zrepl_2:R1 @manual_2:R0");
}

#[test]
fn regex_and_negate() {
    let versions = vec![s("zrepl_1", 1, NOW - 2 * H), s("other", 2, NOW - H)];
    let kept = run(Case {
        rules: vec![regex("^zrepl_.*", false)],
        versions: versions.clone(),
        ..Case::default()
    });
    assert_eq!(kept, "@zrepl_1:R0 @other:D");
    // zrepl's example: keep everything zrepl did not create.
    let negated = run(Case { rules: vec![regex("^zrepl_.*", true)], versions, ..Case::default() });
    assert_eq!(negated, "@zrepl_1:D @other:R0");
}

#[test]
fn regex_matches_anywhere_unless_anchored() {
    // Go's MatchString and Rust's is_match both search, they do not anchor.
    let out = run(Case {
        rules: vec![regex("daily", false)],
        versions: vec![s("zrepl_daily_1", 1, NOW - H), s("hourly", 2, NOW)],
        ..Case::default()
    });
    assert_eq!(out, "@zrepl_daily_1:R0 @hourly:D");
}

#[test]
fn last_n_keeps_the_youngest() {
    let table: [(u32, Option<&str>, &str); 5] = [
        (2, None, "@a1:D @b1:D @a2:R0 @b2:R0"),
        (10, None, "@a1:R0 @b1:R0 @a2:R0 @b2:R0"),
        (1, Some("^a"), "@a1:D @b1:D @a2:R0 @b2:D"),
        // More than match: only the matching ones are kept (zrepl's docs; its code
        // keeps everything when count exceeds all snapshots, regex or not).
        (3, Some("^a"), "@a1:R0 @b1:D @a2:R0 @b2:D"),
        (0, None, "@a1:D @b1:D @a2:D @b2:D"),
    ];
    for (count, re, want) in table {
        let out = run(Case {
            rules: vec![last_n(count, re)],
            versions: vec![
                s("a1", 10, NOW - 40 * M),
                s("b1", 11, NOW - 30 * M),
                s("a2", 12, NOW - 20 * M),
                s("b2", 13, NOW - 10 * M),
            ],
            ..Case::default()
        });
        assert_eq!(out, want, "last_n {count} {re:?}");
    }
}

#[test]
fn last_n_breaks_equal_creation_times_by_createtxg() {
    // Two snapshots in the same second: the later txg is the younger one.
    let out = run(Case {
        rules: vec![last_n(1, None)],
        versions: vec![s("y", 8, NOW), s("x", 7, NOW), s("old", 3, NOW - H)],
        ..Case::default()
    });
    assert_eq!(out, "@old:D @x:D @y:R0");
}

/// zrepl's documented example: grid `1x1h(keep=all) | 2x2h | 1x3h`, buckets at
/// ages [0,1h) [1h,3h) [3h,5h) [5h,8h) behind the youngest snapshot.
#[test]
fn grid_follows_zrepls_documented_example() {
    let t = NOW - D; // the youngest snapshot, a day old: the grid ignores the clock.
    let at = |name: &str, txg: u64, age: i64| s(name, txg, t - age);
    let out = run(Case {
        rules: vec![grid("1x1h(keep=all) | 2x2h | 1x3h", "^")],
        versions: vec![
            at("D", 1, 8 * H + 50 * M),
            at("A", 2, 8 * H), // on the old edge of the last bucket: outside
            at("z", 3, 8 * H - 1),
            at("q", 4, 5 * H), // on a boundary: the older bucket
            at("p", 5, 4 * H + 50 * M),
            at("k", 6, 3 * H), // on a boundary: bucket 3, so j is bucket 2's oldest
            at("j", 7, 2 * H + 50 * M),
            at("e", 8, H + 30 * M),
            at("d", 9, H),
            at("c", 10, 40 * M),
            at("b", 11, 20 * M),
            at("a", 12, 0),
        ],
        ..Case::default()
    });
    assert_eq!(out, "@D:D @A:D @z:R0 @q:D @p:R0 @k:D @j:R0 @e:D @d:D @c:R0 @b:R0 @a:R0");
}

#[test]
fn grid_keep_k_keeps_the_k_oldest() {
    let out = run(Case {
        rules: vec![grid("1x1h(keep=all) | 1x1d(keep=2)", "^")],
        versions: vec![
            s("d1", 1, NOW - 20 * H),
            s("d2", 2, NOW - 10 * H),
            s("d3", 3, NOW - 5 * H),
            s("h", 4, NOW),
        ],
        ..Case::default()
    });
    assert_eq!(out, "@d1:R0 @d2:R0 @d3:D @h:R0");
}

#[test]
fn grid_keep_zero_keeps_nothing_of_that_bucket() {
    let out = run(Case {
        rules: vec![grid("1x1h | 1x1h(keep=0) | 1x1d", "^")],
        versions: vec![s("c", 1, NOW - 3 * H), s("b", 2, NOW - 90 * M), s("a", 3, NOW)],
        ..Case::default()
    });
    assert_eq!(out, "@c:R0 @b:D @a:R0");
}

#[test]
fn grid_equal_times_keep_the_lower_createtxg() {
    let out = run(Case {
        rules: vec![grid("1x1h(keep=all) | 1x1d", "^")],
        versions: vec![s("y", 6, NOW - 5 * H), s("x", 5, NOW - 5 * H), s("now", 7, NOW)],
        ..Case::default()
    });
    assert_eq!(out, "@x:R0 @y:D @now:R0");
}

#[test]
fn grid_only_sees_snapshots_matching_its_regex() {
    // The manual snapshot is younger, but it neither anchors the grid nor fills a
    // bucket; without another rule it is destroyed.
    let out = run(Case {
        rules: vec![grid("1x1h | 1x1h", "^zrepl_")],
        versions: vec![
            s("zrepl_old", 1, NOW - 4 * H),
            s("zrepl_a", 2, NOW - 3 * H),
            s("zrepl_b", 3, NOW - 2 * H),
            s("manual", 4, NOW),
        ],
        ..Case::default()
    });
    // Anchored at zrepl_b: zrepl_a is 1 h behind it (bucket 2), zrepl_old 2 h
    // (just past the grid). Anchored at `manual`, both zrepl_a and zrepl_b would go.
    assert_eq!(out, "@zrepl_old:D @zrepl_a:R0 @zrepl_b:R0 @manual:D");
}

#[test]
fn grid_with_nothing_matching_keeps_nothing() {
    let out = run(Case {
        rules: vec![grid("1x1h(keep=all)", "^zrepl_")],
        versions: vec![s("manual", 1, NOW)],
        ..Case::default()
    });
    assert_eq!(out, "@manual:D");
}

#[test]
fn grid_keeps_future_snapshots_and_anchors_below_them() {
    let out = run(Case {
        rules: vec![grid("1x1h", "^")],
        versions: vec![
            s("old", 1, NOW - 2 * H),
            s("b", 2, NOW - 30 * M),
            s("a", 3, NOW - 20 * M),
            s("future", 4, NOW + 10 * D),
        ],
        ..Case::default()
    });
    // Anchored at a (not at the future one, which would leave nothing in the grid).
    assert_eq!(out, "@old:D @b:R0 @a:D @future:R0");
}

#[test]
fn not_replicated_keeps_what_the_receiver_lacks() {
    let versions = || {
        vec![
            s("s1", 10, NOW - 3 * H),
            s("s2", 20, NOW - 2 * H),
            b("s2", 20, NOW - 2 * H),
            s("s3", 30, NOW - H),
        ]
    };
    let at_s2 = Some(Cursor { guid: 1020, createtxg: 20 });
    let table: [(bool, Option<Cursor>, &str); 5] = [
        (true, None, "@s1:R0 @s2:R0 #s2:B @s3:R0"),
        (true, at_s2, "@s1:D @s2:R0 #s2:B @s3:R0"),
        (false, at_s2, "@s1:D @s2:D #s2:B @s3:R0"),
        // The cursor's snapshot is gone (only its bookmark, guid 9999, is left):
        // the createtxg still orders the rest.
        (true, Some(Cursor { guid: 9999, createtxg: 25 }), "@s1:D @s2:D #s2:B @s3:R0"),
        // A snapshot of the cursor's txg that is not the cursor: kept.
        (false, Some(Cursor { guid: 9999, createtxg: 20 }), "@s1:D @s2:R0 #s2:B @s3:R0"),
    ];
    for (at_cursor, cursor, want) in table {
        let out = run(Case {
            rules: vec![not_replicated(at_cursor)],
            versions: versions(),
            cursor,
            ..Case::default()
        });
        assert_eq!(out, want, "keep_snapshot_at_cursor {at_cursor}, cursor {cursor:?}");
    }
}

#[test]
fn prefix_filter_limits_destruction_not_evaluation() {
    // last_n 1 counts the manual snapshot (as zrepl would), so zrepl_2 goes too;
    // but the manual snapshot itself is not ours to destroy.
    let out = run(Case {
        rules: vec![last_n(1, None)],
        versions: vec![
            s("manual", 1, NOW - 3 * H),
            s("zrepl_1", 2, NOW - 2 * H),
            s("zrepl_2", 3, NOW - H),
            s("zrepl_3", 4, NOW),
        ],
        candidates: CandidateFilter::Prefix("zrepl_".to_owned()),
        ..Case::default()
    });
    assert_eq!(out, "@manual:N @zrepl_1:D @zrepl_2:D @zrepl_3:R0");
}

#[test]
fn protection_wins_over_every_rule() {
    let out = run(Case {
        rules: vec![last_n(0, None)],
        versions: vec![s("a", 1, NOW - H), s("b", 2, NOW)],
        protected: &[1001],
        ..Case::default()
    });
    assert_eq!(out, "@a:P @b:D");
}

#[test]
fn output_is_in_createtxg_order_whatever_the_input_order() {
    let out = run(Case {
        rules: vec![regex("^", false)],
        versions: vec![
            s("c", 3, NOW),
            b("a", 1, NOW - 2 * H),
            s("a", 1, NOW - 2 * H),
            s("b", 2, NOW),
        ],
        ..Case::default()
    });
    assert_eq!(out, "@a:R0 #a:B @b:R0 @c:R0");
}

#[test]
fn destroys_lists_only_destroyed_snapshots_oldest_first() {
    let rules = compile(&[regex("^keep", false)], RuleSide::Receiver).unwrap();
    let versions = vec![s("z", 3, NOW), s("keep", 2, NOW), s("y", 1, NOW), b("y", 1, NOW)];
    let protected = BTreeSet::new();
    let ctx = PruneContext {
        now: WallTime(NOW),
        candidates: &CandidateFilter::All,
        protected: &protected,
        cursor: None,
    };
    let decision = rules.evaluate(&versions, &ctx);
    let names: Vec<String> = decision.destroys().iter().map(|v| v.relative_name()).collect();
    assert_eq!(names, ["@y", "@z"]);
}

#[test]
fn explanations_name_the_rule_as_configured() {
    let rules = compile(
        &[
            grid("1x1h(keep=all) | 24x1h | 14x1d", "^zrepl_"),
            last_n(10, Some("^zrepl_")),
            last_n(3, None),
            regex("^zrepl_", true),
            not_replicated(false),
            grid("2x1w(keep=3)", "."),
        ],
        RuleSide::Sender,
    )
    .unwrap();
    let table = [
        (
            Verdict::Keep(KeepReason::Rule(0)),
            r#"kept by grid 1x1h(keep=all) | 24x1h | 14x1d (regex "^zrepl_")"#,
        ),
        (Verdict::Keep(KeepReason::Rule(1)), r#"kept by last_n 10 (regex "^zrepl_")"#),
        (Verdict::Keep(KeepReason::Rule(2)), "kept by last_n 3"),
        (Verdict::Keep(KeepReason::Rule(3)), r#"kept by regex "^zrepl_" (negate)"#),
        (
            Verdict::Keep(KeepReason::Rule(4)),
            "kept by not_replicated (keep_snapshot_at_cursor: false)",
        ),
        (Verdict::Keep(KeepReason::Rule(5)), r#"kept by grid 2x1w(keep=3) (regex ".")"#),
        (Verdict::Keep(KeepReason::IncrementalBase), "kept: incremental base"),
        (Verdict::Destroy, "destroy: no rule keeps it"),
    ];
    for (verdict, want) in table {
        assert_eq!(rules.explain(&verdict), want);
    }
    assert_eq!(rules.len(), 6);
}

#[test]
fn compile_errors_name_the_rule_and_the_problem() {
    let shrinking = grid("1x1d | 1x1h", "^");
    let shrinking_later = grid("1x1h(keep=all) | 1x1d | 1x1h", "^");
    let table: [(RuleSide, Vec<KeepRule>, &str); 8] = [
        (
            RuleSide::Sender,
            vec![not_replicated(true), regex("^(zrepl", false)],
            r#"keep_sender[1] (regex "^(zrepl"): invalid regex "^(zrepl": regex parse error"#,
        ),
        (
            RuleSide::Receiver,
            vec![last_n(1, Some("[a-"))],
            r#"keep_receiver[0] (last_n 1 (regex "[a-")): invalid regex "[a-""#,
        ),
        (
            RuleSide::Receiver,
            vec![not_replicated(true)],
            "keep_receiver[0] (not_replicated): not_replicated only makes sense for the \
             sending side's snapshots; use it in keep_sender, not in keep_receiver",
        ),
        (RuleSide::SnapJob, vec![not_replicated(true)], "not in keep\n"),
        (
            RuleSide::Sender,
            vec![grid("1x1h", "")],
            "keep_sender[0] (grid 1x1h (regex \"\")): regex must not be empty",
        ),
        (RuleSide::Sender, vec![regex("", true)], "regex must not be empty"),
        (
            RuleSide::Sender,
            vec![shrinking],
            "grid interval 2 (1h) is shorter than the one before it (1d)",
        ),
        (RuleSide::Sender, vec![shrinking_later], "grid interval 3 (1h) is shorter"),
    ];
    for (side, rules, want) in table {
        let err = compile(&rules, side).unwrap_err();
        // A trailing \n in `want` asks for the message to end there.
        match want.strip_suffix('\n') {
            Some(end) => assert!(err.ends_with(end), "{err}"),
            None => assert!(err.contains(want), "{err}"),
        }
    }
}

#[test]
fn compile_accepts_zrepls_example_rules() {
    // A short keep=all head may be shorter than what follows it, and a grid may
    // shrink after it: zrepl allows that, and so do we.
    let rules = [
        not_replicated(true),
        regex("^manual_.*", false),
        grid("1x1h(keep=all) | 24x1h | 14x1d", "^zrepl_.*"),
        grid("4x15m(keep=all) | 1x10m(keep=all) | 1x1h", "^zrepl_.*"),
        // Each interval is compared with the one just before it.
        grid("1x1d(keep=all) | 1x1h | 1x2h", "^zrepl_.*"),
        last_n(10, Some(r"^zrepl_\d+$")),
        regex("(?i)^ZREPL_", false),
    ];
    assert!(compile(&rules, RuleSide::Sender).is_ok(), "{:?}", compile(&rules, RuleSide::Sender));
    assert!(compile(&rules[1..], RuleSide::Receiver).is_ok());
}

fn arb_rule() -> impl Strategy<Value = KeepRule> {
    let re = prop::sample::select(vec!["^z_", "^m_", "1", ".", "^"]);
    prop_oneof![
        (0u32..4, prop::option::of(re.clone())).prop_map(|(n, r)| last_n(n, r)),
        (re.clone(), any::<bool>()).prop_map(|(r, neg)| regex(r, neg)),
        any::<bool>().prop_map(not_replicated),
        (
            prop::sample::select(vec![
                "1x1h(keep=all) | 2x1h",
                "3x30m | 1x1d(keep=2)",
                "1x1m(keep=0)"
            ]),
            re
        )
            .prop_map(|(g, r)| grid(g, r)),
    ]
}

/// Versions with createtxg 1..=n; names, kinds, times drawn at random.
fn arb_versions() -> impl Strategy<Value = Vec<FilesystemVersion>> {
    prop::collection::vec(
        (prop::sample::select(vec!["z_", "m_", "x"]), 0u8..4, -3 * H..2 * H, any::<bool>()),
        0..24,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (prefix, n, offset, bookmark))| {
                let txg = i as u64 + 1;
                let name = format!("{prefix}{n}_{txg}");
                if bookmark {
                    b(&name, txg, NOW + offset)
                } else {
                    s(&name, txg, NOW + offset)
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn never_destroys_what_it_must_not(
        rules in prop::collection::vec(arb_rule(), 0..4),
        versions in arb_versions(),
        protected in prop::collection::btree_set(1001u64..1025, 0..6),
        cursor_txg in prop::option::of(0u64..26),
    ) {
        let rules = compile(&rules, RuleSide::Sender).unwrap();
        let cursor = cursor_txg.map(|t| Cursor { guid: 1000 + t, createtxg: t });
        let prefix = CandidateFilter::Prefix("z_".to_owned());
        let eval = |candidates: &CandidateFilter| {
            rules.evaluate(
                &versions,
                &PruneContext { now: WallTime(NOW), candidates, protected: &protected, cursor },
            )
        };
        let decision = eval(&prefix);

        // Every input comes out exactly once, in createtxg order.
        let mut seen: Vec<&FilesystemVersion> = decision.entries.iter().map(|d| &d.version).collect();
        prop_assert!(seen.windows(2).all(|w| w[0].createtxg <= w[1].createtxg));
        seen.sort_by_key(|v| (v.createtxg, v.kind));
        let mut input: Vec<&FilesystemVersion> = versions.iter().collect();
        input.sort_by_key(|v| (v.createtxg, v.kind));
        prop_assert_eq!(seen, input);

        for v in decision.destroys() {
            prop_assert!(v.is_snapshot(), "destroys a bookmark: {:?}", v);
            prop_assert!(!protected.contains(&v.guid), "destroys a protected snapshot: {:?}", v);
            prop_assert!(v.name.starts_with("z_"), "destroys a non-candidate: {:?}", v);
        }
        // The prefix filter only ever keeps more than zrepl's "all" would.
        let all = eval(&CandidateFilter::All);
        let all_destroys: BTreeSet<u64> = all.destroys().iter().map(|v| v.guid).collect();
        for v in decision.destroys() {
            prop_assert!(all_destroys.contains(&v.guid));
        }
        if rules.is_empty() {
            prop_assert!(all_destroys.is_empty());
        }
    }
}
