#!/usr/bin/env bash
# The test command: builds both binaries (the end-to-end suites run them as real
# processes), then runs every suite of the workspace.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --workspace --bins
cargo test --workspace
