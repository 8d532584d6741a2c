//! Which sender filesystems a job replicates, written as zrepl writes it.
//!
//! A filter is a set of rules `pattern: bool`:
//! - `pool/a` matches exactly that filesystem;
//! - `pool/a<` matches `pool/a` and everything below it;
//! - `<` alone matches every filesystem.
//!
//! `true` includes, `false` excludes. Of all rules that match a filesystem, the most
//! specific decides: the one naming the longest path, and at equal length an exact
//! rule before a subtree rule. A filesystem no rule matches is not replicated.

use std::collections::BTreeMap;

use crate::zfs::{DatasetPath, PathError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filesystem filter has an empty pattern")]
    EmptyPattern,
    #[error("filesystem filter pattern {pattern:?}: `<` may only end a pattern (as in `pool/a<`)")]
    MisplacedSubtreeMark { pattern: String },
    #[error("filesystem filter pattern {pattern:?} is not a valid dataset path: {source}")]
    BadPath { pattern: String, source: PathError },
    #[error("filesystem filter has pattern {pattern:?} twice (as {first:?} and {second:?})")]
    Duplicate { pattern: String, first: String, second: String },
}

/// The two rules one path can carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rules {
    exact: Option<bool>,
    subtree: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilesystemFilter {
    /// The rule of `<`, if any.
    everything: Option<bool>,
    by_path: BTreeMap<DatasetPath, Rules>,
}

impl FilesystemFilter {
    /// Builds a filter from `(pattern, include)` rules, refusing invalid ones with an
    /// error that names the offending pattern.
    pub fn new<I, S>(rules: I) -> Result<FilesystemFilter, FilterError>
    where
        I: IntoIterator<Item = (S, bool)>,
        S: AsRef<str>,
    {
        let mut filter = FilesystemFilter::default();
        // The spelling that first set each rule, for the duplicate message.
        let mut seen: BTreeMap<(Option<DatasetPath>, bool), String> = BTreeMap::new();
        for (pattern, include) in rules {
            let pattern = pattern.as_ref();
            if pattern.is_empty() {
                return Err(FilterError::EmptyPattern);
            }
            let (path_part, subtree) = match pattern.strip_suffix('<') {
                Some(rest) => (rest, true),
                None => (pattern, false),
            };
            if path_part.contains('<') {
                return Err(FilterError::MisplacedSubtreeMark { pattern: pattern.to_owned() });
            }
            let path = if path_part.is_empty() {
                None
            } else {
                Some(DatasetPath::parse(path_part).map_err(|source| FilterError::BadPath {
                    pattern: pattern.to_owned(),
                    source,
                })?)
            };
            // `<` on its own is a subtree rule of the empty path.
            let key = (path.clone(), subtree);
            if let Some(first) = seen.get(&key) {
                return Err(FilterError::Duplicate {
                    pattern: pattern.to_owned(),
                    first: first.clone(),
                    second: pattern.to_owned(),
                });
            }
            seen.insert(key, pattern.to_owned());
            match path {
                None => filter.everything = Some(include),
                Some(path) => {
                    let rules = filter.by_path.entry(path).or_default();
                    if subtree {
                        rules.subtree = Some(include);
                    } else {
                        rules.exact = Some(include);
                    }
                }
            }
        }
        Ok(filter)
    }

    /// True if `fs` is to be replicated. Cost: one map lookup per path component.
    pub fn selects(&self, fs: &DatasetPath) -> bool {
        if let Some(include) = self.by_path.get(fs).and_then(|r| r.exact.or(r.subtree)) {
            return include;
        }
        let mut ancestor = fs.parent();
        while let Some(path) = ancestor {
            if let Some(include) = self.by_path.get(&path).and_then(|r| r.subtree) {
                return include;
            }
            ancestor = path.parent();
        }
        self.everything.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> DatasetPath {
        DatasetPath::parse(s).unwrap()
    }

    fn selected(rules: &[(&str, bool)], fs: &[&str]) -> Vec<String> {
        let filter = FilesystemFilter::new(rules.iter().copied()).unwrap();
        fs.iter().filter(|f| filter.selects(&p(f))).map(|f| f.to_string()).collect()
    }

    const TREE: [&str; 9] = [
        "pool",
        "pool/a",
        "pool/a/b",
        "pool/a/b/c",
        "pool/a/bc",
        "pool/ab",
        "pool/x",
        "other",
        "other/a",
    ];

    /// What, rules, selected filesystems of `TREE`.
    type Case = (&'static str, Vec<(&'static str, bool)>, Vec<&'static str>);

    #[test]
    fn table() {
        let cases: Vec<Case> = vec![
            ("no rules select nothing", vec![], vec![]),
            ("everything", vec![("<", true)], TREE.to_vec()),
            ("exact only", vec![("pool/a", true)], vec!["pool/a"]),
            (
                "subtree, not a name prefix",
                vec![("pool/a<", true)],
                vec!["pool/a", "pool/a/b", "pool/a/b/c", "pool/a/bc"],
            ),
            (
                "subtree minus a deeper subtree",
                vec![("pool/a<", true), ("pool/a/b<", false)],
                vec!["pool/a", "pool/a/bc"],
            ),
            (
                "subtree minus exact keeps children",
                vec![("pool/a<", true), ("pool/a/b", false)],
                vec!["pool/a", "pool/a/b/c", "pool/a/bc"],
            ),
            (
                "exact beats subtree at the same path",
                vec![("pool/a<", false), ("pool/a", true)],
                vec!["pool/a"],
            ),
            (
                "exact exclusion beats subtree inclusion at the same path",
                vec![("pool/a<", true), ("pool/a", false)],
                vec!["pool/a/b", "pool/a/b/c", "pool/a/bc"],
            ),
            (
                "everything but one pool",
                vec![("<", true), ("other<", false)],
                vec!["pool", "pool/a", "pool/a/b", "pool/a/b/c", "pool/a/bc", "pool/ab", "pool/x"],
            ),
            (
                "nothing but a deep include",
                vec![("<", false), ("pool/a/b/c", true)],
                vec!["pool/a/b/c"],
            ),
            (
                "pool root exact",
                vec![("pool", true), ("other<", true), ("other/a", false)],
                vec!["pool", "other"],
            ),
        ];
        for (what, rules, expected) in cases {
            assert_eq!(selected(&rules, &TREE), expected, "case: {what}");
        }
    }

    #[test]
    fn invalid_patterns_are_named() {
        let err =
            |rules: &[(&str, bool)]| FilesystemFilter::new(rules.iter().copied()).unwrap_err();
        assert_eq!(err(&[("pool", true), ("", false)]), FilterError::EmptyPattern);
        for bad in ["pool<a", "<<", "pool/<a<", "<pool"] {
            let e = err(&[(bad, true)]);
            assert_eq!(e, FilterError::MisplacedSubtreeMark { pattern: bad.into() }, "{bad}");
            assert!(e.to_string().contains(bad));
        }
        for bad in ["pool/", "/pool", "pool//a<", "pool/a/<", "po@ol", "pool#a<", "pool/a*"] {
            let e = err(&[(bad, true)]);
            assert!(
                matches!(&e, FilterError::BadPath { pattern, .. } if pattern == bad),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        let e = err(&[("pool/a<", true), ("pool/a", true), ("pool/a<", false)]);
        assert_eq!(
            e,
            FilterError::Duplicate {
                pattern: "pool/a<".into(),
                first: "pool/a<".into(),
                second: "pool/a<".into()
            }
        );
        assert!(matches!(err(&[("<", true), ("<", true)]), FilterError::Duplicate { .. }));
    }

    /// Every rule that matches, ranked by (path length, exact before subtree).
    fn reference(rules: &[(String, bool)], fs: &DatasetPath) -> bool {
        let text = fs.to_string();
        let mut best: Option<((usize, bool), bool)> = None;
        for (pattern, include) in rules {
            let rank = if pattern == "<" {
                Some((0, false))
            } else if let Some(base) = pattern.strip_suffix('<') {
                let inside = text == base || text.starts_with(&format!("{base}/"));
                inside.then(|| (base.split('/').count(), false))
            } else {
                (text == *pattern).then(|| (pattern.split('/').count(), true))
            };
            if let Some(rank) = rank {
                if best.map_or(true, |(b, _)| rank > b) {
                    best = Some((rank, *include));
                }
            }
        }
        best.is_some_and(|(_, include)| include)
    }

    fn small_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof!["a", "b", "ab"], 1..4).prop_map(|c| c.join("/"))
    }

    proptest! {
        #[test]
        fn filter_matches_reference(
            rules in proptest::collection::btree_map(
                prop_oneof![
                    1 => Just("<".to_string()),
                    4 => small_path(),
                    4 => small_path().prop_map(|p| format!("{p}<")),
                ],
                any::<bool>(),
                0..8,
            ),
            probes in proptest::collection::vec(small_path(), 1..10),
        ) {
            let rules: Vec<(String, bool)> = rules.into_iter().collect();
            let filter = FilesystemFilter::new(rules.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
            for probe in probes {
                let fs = p(&probe);
                prop_assert_eq!(filter.selects(&fs), reference(&rules, &fs), "{}", probe);
            }
        }
    }
}
