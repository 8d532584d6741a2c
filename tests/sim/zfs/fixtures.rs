//! The model against real ZFS: each test rebuilds the state a fixture was
//! captured from (core/src/zfs/testdata, see tests/lab/capture-openzfs-outputs.sh
//! and core/src/zfs/parse_tests.rs) and runs the same command on the model.
//! Where the model cannot print the same bytes (sizes of its own streams, its
//! own token payload), the shape is compared and zferry's parser reads both.

use std::collections::BTreeSet;

use super::command::{run, Outcome};
use super::{new_dataset, Bookmark, Flavor, Partial, Snapshot, Zfs};
use crate::rng::Rng;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/src/zfs/testdata/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}{name}")).expect("fixture")
}

fn zfs(model: &mut Zfs, cmd: &str) -> Outcome {
    let argv: Vec<String> = cmd.split(' ').map(str::to_owned).collect();
    run(model, &argv, 0, &mut Rng::new(0))
}

fn fs(model: &mut Zfs, path: &str, guid: u64, txg: u64, creation: i64) {
    model.datasets.insert(path.to_owned(), new_dataset(guid, txg, creation));
}

fn snap(model: &mut Zfs, fs: &str, name: &str, guid: u64, txg: u64, creation: i64) {
    model.datasets.get_mut(fs).expect("fs").snapshots.push(Snapshot {
        name: name.to_owned(),
        guid,
        createtxg: txg,
        creation,
        content: 0,
        holds: BTreeSet::new(),
    });
}

fn set(model: &mut Zfs, fs: &str, prop: &str, value: &str) {
    model.datasets.get_mut(fs).expect("fs").props.insert(prop.to_owned(), value.to_owned());
}

#[test]
fn version_as_each_dialect_prints_it() {
    let o = zfs(&mut Zfs::new(Flavor::OpenZfs), "zfs version");
    assert_eq!(
        (o.code, String::from_utf8(o.stdout).unwrap()),
        (0, fixture("openzfs-version.stdout"))
    );
    let o = zfs(&mut Zfs::new(Flavor::ZfsFuse), "zfs version");
    assert_eq!(o.code, 2, "zfs-fuse has no `version`");
    assert_eq!(o.stderr, fixture("zfs-fuse-version.stderr"));
    assert!(o.stdout.is_empty());
}

/// lp/fs@s1, @s2 and #b1 as the capture script makes them.
fn lp() -> Zfs {
    let mut m = Zfs::new(Flavor::OpenZfs);
    fs(&mut m, "lp", 1, 1, 1795608600);
    fs(&mut m, "lp/fs", 2, 5, 1795608600);
    snap(&mut m, "lp/fs", "s1", 7863515901467168071, 11, 1795608638);
    snap(&mut m, "lp/fs", "s2", 14989521812847416799, 12, 1795608638);
    m.datasets.get_mut("lp/fs").unwrap().bookmarks.push(Bookmark {
        name: "b1".into(),
        guid: 7863515901467168071,
        createtxg: 11,
        creation: 1795608638,
    });
    m
}

#[test]
fn versions_listing_is_openzfs_byte_for_byte() {
    let o =
        zfs(&mut lp(), "zfs list -H -p -r -t snapshot,bookmark -o name,guid,createtxg,creation lp");
    assert_eq!(String::from_utf8(o.stdout).unwrap(), fixture("openzfs-list-versions.stdout"));
}

#[test]
fn filesystems_listing_with_a_partial_receive_is_openzfs_but_for_the_token() {
    let mut m = Zfs::new(Flavor::OpenZfs);
    fs(&mut m, "lq", 8498762743749934406, 1, 0);
    fs(&mut m, "lq/fs", 5448810454787912012, 7, 0);
    snap(&mut m, "lq/fs", "s1", 7863515901467168071, 9, 1795608638);
    m.datasets.get_mut("lq/fs").unwrap().partial = Some(Partial {
        from_guid: 7863515901467168071,
        to_guid: 14989521812847416799,
        to_name: "lp/fs@s2".into(),
        creation: 1795608638,
        content: 0,
        total: 1058864,
        received: 396688,
        hash: 0,
    });
    let cmd = "zfs get -H -p -r -o name,property,value,source type,guid,readonly,zferry:placeholder,zrepl:placeholder,receive_resume_token lq";
    let o = zfs(&mut m, cmd);
    let ours = String::from_utf8(o.stdout).unwrap();
    let real = fixture("openzfs-get-filesystems.stdout");
    assert_eq!(ours.lines().count(), real.lines().count());
    for (a, b) in ours.lines().zip(real.lines()) {
        if b.starts_with("lq/fs\treceive_resume_token\t1-") {
            let token = a.split('\t').nth(2).unwrap();
            zferry_core::zfs::ResumeToken::parse(token).expect("the model's token has ZFS's shape");
            assert!(a.ends_with("\t-"), "{a}");
        } else {
            assert_eq!(a, b);
        }
    }
    zferry_core::job::zfsops::parse_filesystems(ours.as_bytes()).expect("zferry reads it");
}

/// zt-A as core/src/zfs/parse_tests.rs describes its making.
fn zt_a() -> Zfs {
    let mut m = Zfs::new(Flavor::ZfsFuse);
    fs(&mut m, "zt-A", 14986070801948340070, 1, 1795602304);
    fs(&mut m, "zt-A/a", 5474755157147413671, 6, 1795602305);
    fs(&mut m, "zt-A/a/b", 10797921262491774712, 8, 1795602305);
    fs(&mut m, "zt-A/ph", 14128683574920715308, 71, 1795602334);
    snap(&mut m, "zt-A/a", "s1", 6810271751167897652, 15, 1795602314);
    snap(&mut m, "zt-A/a", "s2", 13828720274891544060, 25, 1795602314);
    snap(&mut m, "zt-A/a/b", "s1", 4459964410971926454, 20, 1795602314);
    snap(&mut m, "zt-A/a/b", "with space:1.x_y-z", 9375964772854218737, 107, 1795602483);
    set(&mut m, "zt-A/a", "zferry:placeholder", "on");
    set(&mut m, "zt-A/a/b", "zrepl:placeholder", "on");
    set(&mut m, "zt-A/ph", "zferry:placeholder", "on");
    set(&mut m, "zt-A/ph", "readonly", "on");
    m
}

#[test]
fn zfs_fuse_listings_are_byte_for_byte() {
    let cmd = "zfs get -H -p -r -o name,property,value,source type,guid,readonly,zferry:placeholder,zrepl:placeholder zt-A";
    let o = zfs(&mut zt_a(), cmd);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), fixture("zfs-fuse-get-filesystems.stdout"));
    let cmd = "zfs get -H -p -r -o name,property,value,source type,guid,createtxg,creation zt-A";
    let o = zfs(&mut zt_a(), cmd);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), fixture("zfs-fuse-get-versions.stdout"));
}

#[test]
fn zfs_fuse_refuses_what_it_lacks() {
    for cmd in [
        "zfs list -H -p -r -t snapshot -o name,guid,createtxg,creation zt-A",
        "zfs get -H -p -o name,property,value,source -t filesystem type zt-A",
    ] {
        let o = zfs(&mut zt_a(), cmd);
        assert_eq!(o.code, 2, "{cmd}: {o:?}");
        assert!(o.stderr.starts_with("invalid option"), "{cmd}: {}", o.stderr);
    }
    let argv: Vec<String> = "zfs receive -u -s zt-A/x".split(' ').map(str::to_owned).collect();
    assert!(super::command::classify(Flavor::ZfsFuse, &argv).is_err(), "no resumable receive");
}

/// Numbers differ (the model's streams are its own); the shape must not. A
/// number (decimal, hex, or with a unit like 647K) becomes `#`.
fn shape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.') {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn estimates_and_token_descriptions_have_openzfs_shape() {
    let o = zfs(&mut lp(), "zfs send -n -v -P lp/fs@s2");
    let ours = String::from_utf8(o.stdout).unwrap();
    assert_eq!(shape(&ours), shape(&fixture("openzfs-send-estimate-full.stdout")));
    zferry_core::zfs::parse::parse_send_estimate(ours.as_bytes()).expect("zferry reads it");
    let o = zfs(&mut lp(), "zfs send -n -v -P -i @s1 lp/fs@s2");
    let ours = String::from_utf8(o.stdout).unwrap();
    assert_eq!(shape(&ours), shape(&fixture("openzfs-send-estimate-incremental.stdout")));

    let partial = Partial {
        from_guid: 7863515901467168071,
        to_guid: 14989521812847416799,
        to_name: "lp/fs@s2".into(),
        creation: 0,
        content: 0,
        total: 0,
        received: 300,
        hash: 0,
    };
    let token = super::command::token(&partial);
    let o = zfs(&mut lp(), &format!("zfs send -n -v -t {token}"));
    let ours = String::from_utf8(o.stdout).unwrap();
    let real = fixture("openzfs-send-token.stdout");
    // The real token also records bytes beyond the offset (compression).
    let skip_bytes = |t: &str| {
        shape(&t.lines().filter(|l| !l.contains("bytes =")).collect::<Vec<_>>().join("\n"))
    };
    assert_eq!(skip_bytes(&ours), skip_bytes(&real));
    let info = zferry_core::zfs::parse::parse_resume_token_description(ours.as_bytes())
        .expect("zferry reads it");
    assert_eq!((info.from_guid, info.to_guid), (Some(7863515901467168071), 14989521812847416799));
}

#[test]
fn sizes_for_people_as_zfs_nicenum() {
    use super::command::nicenum;
    assert_eq!(nicenum(512), "512");
    assert_eq!(nicenum(662176), "647K");
    assert_eq!(nicenum(1058864), "1.01M");
    assert_eq!(nicenum(31132872), "29.7M");
    assert_eq!(nicenum(2048), "2K");
}
