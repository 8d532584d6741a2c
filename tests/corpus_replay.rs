//! Replays every fuzz corpus file through the fuzz entry points on stable Rust, so
//! each seed and each crash ever found stays a regression test.

use std::fs;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    // Seeds, plus crash artifacts that a developer has not yet turned into seeds.
    for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.push((path, data));
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= 5,
        "the {target} corpus has only {} files; run fuzz/make_seeds.py",
        files.len()
    );
    for (path, data) in files {
        let result = std::panic::catch_unwind(|| entry(&data));
        assert!(result.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", zferry_core::fuzzing::frame_decoder);
}

#[test]
fn rpc_session_corpus() {
    replay("rpc_session", zferry_core::fuzzing::rpc_session);
}

#[test]
fn zfs_parsers_corpus() {
    replay("zfs_parsers", zferry_core::zfs::parse::fuzz_parsers);
}
