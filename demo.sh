#!/usr/bin/env bash
# The demo. Replication between two pools arrives with the replication jobs; until
# then this shows what exists: both binaries talking zferry's protocol over
# loopback TCP, streaming 1 GiB through real sessions and verifying it end to end,
# in every pairing (mio<->mio, mio<->smol, smol<->mio, smol<->smol).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is needed: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
cargo build --release --workspace --bins
bins=(target/release/zferry target/release/zferry-smol)
bytes=$((1024 * 1024 * 1024))

for server in "${bins[@]}"; do
  for client in "${bins[@]}"; do
    log=$(mktemp)
    "$server" probe serve --listen 127.0.0.1:0 --once 2>"$log" &
    pid=$!
    addr=""
    for _ in $(seq 1 100); do
      addr=$(sed -n 's/.*listening on //p' "$log")
      [ -n "$addr" ] && break
      sleep 0.05
    done
    [ -n "$addr" ] || { cat "$log"; kill "$pid"; exit 1; }
    echo "== $(basename "$client") -> $(basename "$server") on $addr"
    "$client" probe send --connect "$addr" --bytes "$bytes"
    wait "$pid"
    rm -f "$log"
  done
done
echo "== all pairings verified"
