#!/usr/bin/env bash
# The demo: replicates ZFS filesystems between two pools on this machine with a
# push job and a sink daemon talking over loopback TCP, the way two hosts would.
# Run as root on Debian; installs zfs-fuse if no ZFS is present. Cleans up after
# itself: the pools live in sparse files in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\n== %s\n' "$*"; }

if ! command -v zfs >/dev/null 2>&1; then
  say "no ZFS here: installing zfs-fuse"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zfs-fuse >/dev/null
fi
if ! zpool list >/dev/null 2>&1; then
  say "starting zfs-fuse"
  rm -f /run/zfs-fuse.pid
  setsid zfs-fuse --pidfile /run/zfs-fuse.pid </dev/null >/dev/null 2>&1
  for _ in $(seq 1 40); do zpool list >/dev/null 2>&1 && break; sleep 0.25; done
fi

say "building zferry"
cargo build --release --workspace --bins -q
bin=target/release/zferry

work=$(mktemp -d /tmp/zferry-demo.XXXXXX)
src=zfdemosrc$$ dst=zfdemodst$$
sink_pid=""
cleanup() {
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null || true
  zpool destroy -f "$src" 2>/dev/null || true
  zpool destroy -f "$dst" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say "two pools on files: $src (the laptop) and $dst (the backup server)"
for p in "$src" "$dst"; do
  truncate -s 256M "$work/$p.img"
  zpool create -m "$work/$p.mnt" "$p" "$work/$p.img"
done
zfs create -p "$src/home/alice"
zfs create "$dst/backups"
echo "first draft" > "$work/$src.mnt/home/alice/notes.txt"
zfs snapshot "$src/home@monday" && zfs snapshot "$src/home/alice@monday"

cat > "$work/sink.yml" <<YAML
global:
  control:
    sockpath: $work/sink.sock
jobs:
  - name: backup_server
    type: sink
    serve:
      type: tcp
      listen: "127.0.0.1:0"
      clients:
        "127.0.0.1": "laptop"
    root_fs: $dst/backups
YAML

say "starting the sink daemon"
"$bin" daemon --config "$work/sink.yml" 2>"$work/sink.log" &
sink_pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*listening on //p' "$work/sink.log" | head -n 1)
  [ -n "$addr" ] && break
  sleep 0.05
done
[ -n "$addr" ] || { cat "$work/sink.log"; exit 1; }
echo "sink listens on $addr"

cat > "$work/push.yml" <<YAML
global:
  control:
    sockpath: $work/push.sock
jobs:
  - name: laptop_to_server
    type: push
    connect:
      type: tcp
      address: "$addr"
    filesystems:
      "$src/home<": true
    snapshotting:
      type: manual
    pruning:
      keep_sender:
        - type: last_n
          count: 2
      keep_receiver:
        - type: last_n
          count: 10
YAML

say "first replication: full sends"
"$bin" run --config "$work/push.yml" laptop_to_server

say "more work on the laptop, two more snapshots"
echo "second draft" >> "$work/$src.mnt/home/alice/notes.txt"
zfs snapshot "$src/home/alice@tuesday"
echo "final" >> "$work/$src.mnt/home/alice/notes.txt"
zfs snapshot "$src/home/alice@wednesday"

say "what pruning would do now (keep_sender: last_n 2; nothing is destroyed)"
"$bin" prune --dry-run --config "$work/push.yml" laptop_to_server

say "second replication: incrementals, then pruning (the laptop keeps its last 2)"
"$bin" run --config "$work/push.yml" laptop_to_server
echo "the laptop's snapshots now:"
zfs list -r -t snapshot -o name "$src/home"

say "what the backup server holds"
zfs list -r -t all -o name,used,readonly,mounted "$dst/backups"
echo "placeholders (parents zferry created to hold the replicas, no data of their own):"
zfs get -r -s local -H -o name zferry:placeholder "$dst/backups"

say "the daemon's own view"
"$bin" status --config "$work/sink.yml"
