//! Harness for zferry's end-to-end suites: the binaries under test, and child
//! processes whose log lines a test can wait for.

pub mod proc;
pub mod zfs;

pub use proc::{binaries, Binary, Child};
pub use zfs::{Flavor, Pool, ZfsEnv};

/// Where the release binaries are, for the benchmarks: `ZFERRY_BIN_DIR`, or the
/// target directory above the running bench. They must be built first.
pub fn release_bin_dir() -> Result<std::path::PathBuf, String> {
    let dir = match std::env::var_os("ZFERRY_BIN_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            exe.ancestors().nth(2).ok_or("no target dir above the bench")?.to_path_buf()
        }
    };
    for name in ["zferry", "zferry-smol"] {
        if !dir.join(name).is_file() {
            return Err(format!(
                "{} missing: run `cargo build --release --workspace --bins` first \
                 (cargo bench does not build other packages' binaries), or set ZFERRY_BIN_DIR",
                dir.join(name).display()
            ));
        }
    }
    Ok(dir)
}
