//! zrepl's pruning grid: `1x1h(keep=all) | 24x1h | 14x1d`.
//!
//! The spec is `|`-separated; each part is `N x DURATION` with an optional
//! `(keep=all)` or `(keep=K)`. `N` repeats the interval N times (N >= 1), the
//! duration uses zrepl's interval syntax (see [`super::duration`]) and must be
//! positive, and the default is to keep one snapshot per interval.

use std::time::Duration;

use super::duration::parse_positive_interval;

/// How many snapshots one grid interval keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridKeep {
    /// `(keep=all)`: every snapshot in the interval.
    All,
    /// `(keep=K)`, or 1 when not given: the K oldest snapshots in the interval
    /// (zrepl keeps the oldest ones of each bucket). `K` may be 0.
    Count(u32),
}

/// One interval of the grid, after expanding `N x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridInterval {
    pub length: Duration,
    pub keep: GridKeep,
}

/// Parses a grid spec into its expanded list of intervals, youngest first.
pub fn parse_grid(spec: &str) -> Result<Vec<GridInterval>, String> {
    /// An upper bound so that `100000000x1h` cannot make us allocate without end.
    const MAX_INTERVALS: usize = 100_000;
    let parts: Vec<&str> = spec.split('|').collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let (count, interval) = parse_part(part).map_err(|e| {
            format!(
                "cannot parse grid interval {} of {} ({:?}): {e}",
                i + 1,
                parts.len(),
                part.trim()
            )
        })?;
        if out.len() + count > MAX_INTERVALS {
            return Err(format!("grid has more than {MAX_INTERVALS} intervals"));
        }
        out.extend(std::iter::repeat(interval).take(count));
    }
    Ok(out)
}

fn parse_part(part: &str) -> Result<(usize, GridInterval), String> {
    let expected = "expected N x DURATION, optionally followed by (keep=all) or (keep=K)";
    let part = part.trim();
    let (factor, rest) = part.split_once('x').ok_or_else(|| expected.to_owned())?;
    let factor = factor.trim();
    if factor.is_empty() || !factor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{expected}; {factor:?} is not a whole number"));
    }
    let count: usize = factor.parse().map_err(|_| format!("factor {factor:?} is out of range"))?;
    if count == 0 {
        return Err("factor must be at least 1".to_owned());
    }
    let (duration, params) = match rest.find('(') {
        None => (rest, None),
        Some(open) => {
            let params = rest[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| format!("{expected}; missing closing parenthesis"))?;
            (&rest[..open], Some(params))
        }
    };
    let length = parse_positive_interval(duration)?;
    let keep = match params {
        None => GridKeep::Count(1),
        Some(params) => {
            let value = params
                .trim()
                .strip_prefix("keep=")
                .ok_or_else(|| {
                    format!(
                        "unknown interval parameter {params:?}; only keep=all or keep=K is known"
                    )
                })?
                .trim();
            if value == "all" {
                GridKeep::All
            } else {
                GridKeep::Count(value.parse().map_err(|_| {
                    format!("keep={value:?} is neither \"all\" nor a non-negative whole number")
                })?)
            }
        }
    };
    Ok((count, GridInterval { length, keep }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);
    const D: Duration = Duration::from_secs(86_400);

    #[test]
    fn zrepl_example_grid() {
        let g = parse_grid("1x1h(keep=all) | 24x1h | 14x1d").unwrap();
        assert_eq!(g.len(), 1 + 24 + 14);
        assert_eq!(g[0], GridInterval { length: H, keep: GridKeep::All });
        assert_eq!(g[1], GridInterval { length: H, keep: GridKeep::Count(1) });
        assert_eq!(g[38], GridInterval { length: D, keep: GridKeep::Count(1) });
    }

    #[test]
    fn keep_count_and_blanks() {
        let g = parse_grid(" 2 x 1w ( keep=3 ) ").unwrap();
        assert_eq!(g, vec![GridInterval { length: 7 * D, keep: GridKeep::Count(3) }; 2]);
    }

    #[test]
    fn errors_name_the_interval() {
        let cases = [
            ("", "interval 1 of 1"),
            ("1x1h | 0x1d", "interval 2 of 2"),
            ("1x1h | 24x", "interval 2 of 2"),
            ("1x0h", "positive"),
            ("1x1h(keep=some)", "keep="),
            ("1x1h(foo=1)", "unknown interval parameter"),
            ("1x1h(keep=all", "closing parenthesis"),
            ("-1x1h", "whole number"),
            ("1x1h30m", "interval 1 of 1"),
            ("1x1h(keep=-1)", "non-negative"),
            ("1000000x1h", "more than"),
        ];
        for (spec, needle) in cases {
            let err = parse_grid(spec).unwrap_err();
            assert!(err.contains(needle), "{spec:?}: {err}");
        }
    }
}
