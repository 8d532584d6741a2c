#!/bin/bash
# Usage, from the repository root: shared/zfs-lab/run -- bash -s < tests/lab/capture-openzfs-outputs.sh
# Runs inside the OpenZFS lab guest: captures real outputs for zferry's parsers.
set -u
out=$PWD/core/src/zfs/testdata
truncate -s 512M /scratch/lp.img; truncate -s 512M /scratch/lq.img
zpool create -f lp /scratch/lp.img; zpool create -f lq /scratch/lq.img
zfs create lp/fs
head -c 30000000 /dev/urandom > /lp/fs/blob
zfs snapshot lp/fs@s1
head -c 1000000 /dev/urandom > /lp/fs/blob2
zfs snapshot lp/fs@s2
zfs bookmark lp/fs@s1 lp/fs#b1
zfs version > $out/openzfs-version.stdout 2>&1
zfs send -nvP lp/fs@s2 > $out/openzfs-send-estimate-full.stdout 2>&1
zfs send -nvP -i @s1 lp/fs@s2 > $out/openzfs-send-estimate-incremental.stdout 2>&1
zfs list -H -p -r -t snapshot,bookmark -o name,guid,createtxg,creation lp > $out/openzfs-list-versions.stdout 2>&1
zfs send lp/fs@s1 | zfs receive -u lq/fs
zfs send -i @s1 lp/fs@s2 | head -c 500000 | zfs receive -u -s lq/fs
zfs get -H -p -r -o name,property,value,source type,guid,readonly,zferry:placeholder,zrepl:placeholder,receive_resume_token lq > $out/openzfs-get-filesystems.stdout 2>&1
token=$(zfs get -H -o value receive_resume_token lq/fs)
zfs send -nv -t "$token" > $out/openzfs-send-token.stdout 2>&1
echo "token exit $?"
zpool destroy lp; zpool destroy lq; rm -f /scratch/lp.img /scratch/lq.img
ls -la $out
