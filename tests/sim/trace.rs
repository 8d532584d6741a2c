//! What happened in a run, for the person reading a failure: the last lines in
//! full, and a hash of every line so two runs of one seed can be compared.

use std::collections::VecDeque;

use crate::rng::{fnv, FNV_START};

#[derive(Debug)]
pub struct Trace {
    recent: VecDeque<String>,
    keep: usize,
    hash: u64,
    lines: u64,
    /// Every line, when a test compares whole traces.
    all: Option<Vec<String>>,
}

impl Trace {
    pub fn new(keep: usize, keep_all: bool) -> Trace {
        Trace {
            recent: VecDeque::new(),
            keep,
            hash: FNV_START,
            lines: 0,
            all: keep_all.then(Vec::new),
        }
    }

    pub fn line(&mut self, now_ns: u64, text: String) {
        let line = format!("{:>10.3}s {text}", now_ns as f64 / 1e9);
        self.hash = fnv(self.hash, line.as_bytes());
        self.lines += 1;
        if let Some(all) = &mut self.all {
            all.push(line.clone());
        }
        if self.recent.len() == self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn all(&self) -> Option<&[String]> {
        self.all.as_deref()
    }

    /// The last lines, oldest first.
    pub fn tail(&self) -> String {
        let mut out = String::new();
        for l in &self.recent {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}
