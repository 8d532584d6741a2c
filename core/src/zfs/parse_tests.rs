use proptest::prelude::*;

use super::*;

const FUSE_FILESYSTEMS: &[u8] = include_bytes!("testdata/zfs-fuse-get-filesystems.stdout");
const FUSE_VERSIONS: &[u8] = include_bytes!("testdata/zfs-fuse-get-versions.stdout");

fn fs(s: &str) -> DatasetPath {
    DatasetPath::parse(s).expect("path")
}

fn v(kind: VersionKind, name: &str, guid: u64, createtxg: u64, creation: i64) -> FilesystemVersion {
    FilesystemVersion { kind, name: name.to_owned(), guid, createtxg, creation }
}

#[test]
fn checked_on_zfs_fuse_filesystem_listing() {
    // Real output of zfs-fuse 0.7.0 for the ListFilesystems command (its argv
    // with the pool zt-A as root), after: zt-A/a marked zferry:placeholder=on,
    // zt-A/a/b marked zrepl:placeholder=on, zt-A/ph created as a placeholder
    // with readonly=on. Snapshot rows are in it because zfs-fuse has no `get -t`.
    let got = parse_filesystems(FUSE_FILESYSTEMS).expect("parses");
    let summary: Vec<(String, bool, bool)> =
        got.iter().map(|f| (f.path.to_string(), f.is_placeholder, f.readonly)).collect();
    assert_eq!(
        summary,
        [
            ("zt-A".to_owned(), false, false),
            ("zt-A/a".to_owned(), true, false),
            ("zt-A/a/b".to_owned(), true, false),
            ("zt-A/ph".to_owned(), true, true),
        ]
    );
    assert_eq!(got[0].guid, 14986070801948340070);
    assert!(got
        .iter()
        .all(|f| f.dataset_type == DatasetType::Filesystem && f.resume_token.is_none()));
}

#[test]
fn checked_on_zfs_fuse_version_listing() {
    // Real output of zfs-fuse 0.7.0 for the ListVersions command on zt-A.
    let got = parse_versions(ListingFormat::PropertyTable, FUSE_VERSIONS).expect("parses");
    use VersionKind::Snapshot as S;
    assert_eq!(
        got,
        BTreeMap::from([
            (
                fs("zt-A/a"),
                vec![
                    v(S, "s1", 6810271751167897652, 15, 1795602314),
                    v(S, "s2", 13828720274891544060, 25, 1795602314)
                ]
            ),
            (
                fs("zt-A/a/b"),
                vec![
                    v(S, "s1", 4459964410971926454, 20, 1795602314),
                    v(S, "with space:1.x_y-z", 9375964772854218737, 107, 1795602483),
                ]
            ),
        ])
    );
}

#[test]
fn openzfs_filesystem_listing_with_token_and_volume() {
    let out = "p\ttype\tfilesystem\t-\n\
               p\tguid\t11\t-\n\
               p\treadonly\toff\tdefault\n\
               p\tzferry:placeholder\t-\t-\n\
               p\tzrepl:placeholder\t-\t-\n\
               p\treceive_resume_token\t1-e604ea4bf-e0-789c63a2\t-\n\
               p/v\ttype\tvolume\t-\n\
               p/v\tguid\t12\t-\n\
               p/v\treadonly\ton\tlocal\n\
               p/v\treceive_resume_token\t-\t-\n";
    let got = parse_filesystems(out.as_bytes()).expect("parses");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].resume_token.as_ref().map(ResumeToken::as_str),
        Some("1-e604ea4bf-e0-789c63a2")
    );
    assert_eq!(got[1].dataset_type, DatasetType::Volume);
    assert!(got[1].readonly && got[1].resume_token.is_none());
}

#[test]
fn filesystem_listing_rejects_missing_and_odd_values() {
    let missing =
        parse_filesystems(b"p\ttype\tfilesystem\t-\np\treadonly\toff\t-\n").expect_err("no guid");
    assert_eq!(missing.problem, Problem::Missing { name: "p".into(), property: "guid" });
    assert_eq!(missing.line, 1);
    let odd = parse_filesystems(b"p\ttype\tfilesystem\t-\np\tguid\t1\t-\np\treadonly\tmaybe\t-\n");
    assert!(matches!(odd.expect_err("readonly").problem, Problem::Unexpected { .. }));
    let bad_type = parse_filesystems(b"p\ttype\tsnapshot\t-\np\tguid\t1\t-\np\treadonly\ton\t-\n");
    assert!(matches!(
        bad_type.expect_err("type").problem,
        Problem::Unexpected { what: "type", .. }
    ));
    let bad_token = "p\ttype\tfilesystem\t-\np\tguid\t1\t-\np\treadonly\ton\t-\np\treceive_resume_token\tjunk\t-\n";
    assert!(parse_filesystems(bad_token.as_bytes()).is_err());
}

#[test]
fn property_table_errors_quote_line_and_number() {
    let err = parse_property_table(b"p\tguid\t1\t-\np\tguid\n").expect_err("short");
    assert_eq!(
        err,
        ParseError {
            line: 2,
            text: "p\tguid".into(),
            problem: Problem::Columns { expected: 4, found: 2 }
        }
    );
    assert_eq!(err.to_string(), "line 2: expected 4 tab-separated columns, found 2: \"p\\tguid\"");
    let err = parse_property_table(b"p\tguid\t1\n").expect_err("three");
    assert_eq!(err.problem, Problem::Columns { expected: 4, found: 3 });
    let err = parse_property_table(b"p\tguid\t1\t-\np\tguid\t1\t-\n").expect_err("dup");
    assert_eq!(err.line, 2);
    assert!(matches!(err.problem, Problem::Duplicate { .. }));
    assert!(matches!(
        parse_property_table(b"p//a\tguid\t1\t-\n").expect_err("name").problem,
        Problem::Name(_)
    ));
    assert!(matches!(
        parse_property_table(b"p\tGUID\t1\t-\n").expect_err("prop").problem,
        Problem::Property(_)
    ));
    assert_eq!(
        parse_property_table(b"p\tguid\t1\tsomewhere\n").expect_err("src").problem,
        Problem::Source
    );
    assert_eq!(parse_property_table(b"p\tguid\t1\t-\n\n").expect_err("blank").line, 2);
    assert_eq!(
        parse_property_table(b"p\tx:y\t\xff\t-\n").expect_err("utf8").problem,
        Problem::NotUtf8
    );
    assert_eq!(parse_property_table(b"").expect("empty"), vec![]);
}

#[test]
fn property_values_may_contain_tabs() {
    let rows = parse_property_table(b"p\tx:y\ta\tb\tlocal\n").expect("parses");
    assert_eq!(rows[0].1.value, "a\tb");
}

#[test]
fn long_bad_lines_are_quoted_in_part() {
    let line = format!("{}\n", "x".repeat(10_000));
    let err = parse_versions(ListingFormat::Columns, line.as_bytes()).expect_err("garbage");
    assert_eq!(err.text.len(), QUOTE_LIMIT);
}

#[test]
fn openzfs_version_listing_groups_and_sorts() {
    let out = "p/a@s2\t22\t20\t1700000020\n\
               p/a#s1\t11\t10\t1700000010\n\
               p/a@s1\t11\t10\t1700000010\n\
               p/b@x\t33\t5\t1700000005\n";
    let got = parse_versions(ListingFormat::Columns, out.as_bytes()).expect("parses");
    use VersionKind::{Bookmark as B, Snapshot as S};
    assert_eq!(
        got[&fs("p/a")],
        [
            v(S, "s1", 11, 10, 1700000010),
            v(B, "s1", 11, 10, 1700000010),
            v(S, "s2", 22, 20, 1700000020)
        ]
    );
    assert_eq!(got[&fs("p/b")], [v(S, "x", 33, 5, 1700000005)]);
}

#[test]
fn version_listing_rejects_garbage() {
    let cases: [(&str, Problem); 8] = [
        ("p/a@s\t1\t2\n", Problem::Columns { expected: 4, found: 3 }),
        ("p/a@s\t1\t2\t3\t4\n", Problem::Columns { expected: 4, found: 5 }),
        ("p/a@s\tx\t2\t3\n", Problem::Number { what: "guid" }),
        ("p/a@s\t-1\t2\t3\n", Problem::Number { what: "guid" }),
        ("p/a@s\t0\t2\t3\n", Problem::ZeroGuid),
        ("p/a@s\t1\t+2\t3\n", Problem::Number { what: "createtxg" }),
        ("p/a@s\t1\t2\t3 \n", Problem::Number { what: "creation" }),
        ("p/a@s\t1\t2\t3\np/a@s\t1\t2\t3\n", Problem::Duplicate { name: "p/a@s".into() }),
    ];
    for (input, problem) in cases {
        let err = parse_versions(ListingFormat::Columns, input.as_bytes()).expect_err(input);
        assert_eq!(err.problem, problem, "{input:?}");
    }
    assert!(matches!(
        parse_versions(ListingFormat::Columns, b"p/a\t1\t2\t3\n").expect_err("fs").problem,
        Problem::Name(_)
    ));
    let err = parse_versions(ListingFormat::Columns, b"p/a@s\t7\t2\t3\np/a@t\t7\t4\t5\n")
        .expect_err("guid");
    assert_eq!(
        err.problem,
        Problem::DuplicateGuid { guid: 7, kind: "snapshot", filesystem: "p/a".into() }
    );
    // Several bookmarks of one snapshot share its guid: that is normal.
    let ok = parse_versions(
        ListingFormat::Columns,
        b"p/a@s\t7\t2\t3\np/a#one\t7\t2\t3\np/a#two\t7\t2\t3\n",
    )
    .expect("two bookmarks of one snapshot");
    assert_eq!(ok[&DatasetPath::parse("p/a").unwrap()].len(), 3);
}

#[test]
fn property_table_versions_need_all_fields() {
    let err =
        parse_versions(ListingFormat::PropertyTable, b"p@s\tguid\t1\t-\np@s\tcreatetxg\t2\t-\n")
            .expect_err("no creation");
    assert_eq!(err.problem, Problem::Missing { name: "p@s".into(), property: "creation" });
    let wrong_type =
        b"p@s\ttype\tfilesystem\t-\np@s\tguid\t1\t-\np@s\tcreatetxg\t2\t-\np@s\tcreation\t3\t-\n";
    let err = parse_versions(ListingFormat::PropertyTable, wrong_type).expect_err("type");
    assert!(matches!(err.problem, Problem::Unexpected { what: "type", .. }));
    let err = parse_versions(
        ListingFormat::PropertyTable,
        b"p@s\tguid\tx\t-\np@s\tcreatetxg\t2\t-\np@s\tcreation\t3\t-\n",
    )
    .expect_err("guid");
    assert_eq!((err.line, err.problem), (1, Problem::Number { what: "guid" }));
}

#[test]
fn holds() {
    let out = "p/a@s\tzferry_base\tWed Nov 25 10:25 2026\np/a@s\tother tag\t1700000000\n";
    let got = parse_holds(out.as_bytes()).expect("parses");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].tag, "zferry_base");
    assert_eq!(got[1].tag, "other tag");
    assert_eq!(got[1].snapshot.to_string(), "p/a@s");
    assert!(matches!(
        parse_holds(b"p/a@s\ttag\n").expect_err("short").problem,
        Problem::Columns { .. }
    ));
    assert!(matches!(
        parse_holds(b"p/a@s\t\t1\n").expect_err("empty tag").problem,
        Problem::Columns { .. }
    ));
    assert!(matches!(
        parse_holds(b"p/a#s\tt\t1\n").expect_err("bookmark").problem,
        Problem::Name(_)
    ));
    assert!(matches!(
        parse_holds(b"p/a@s\tt\t1\np/a@s\tt\t2\n").expect_err("dup").problem,
        Problem::Duplicate { .. }
    ));
    assert_eq!(parse_holds(b"").expect("none"), vec![]);
}

#[test]
fn send_estimates() {
    // Formats from OpenZFS libzfs_sendrecv.c (send_print_verbose), not yet
    // checked against a real OpenZFS: verify in the lab.
    assert_eq!(parse_send_estimate(b"full\tp/a@s\t123456\nsize\t123456\n"), Ok(123456));
    assert_eq!(parse_send_estimate(b"incremental\tp/a@s1\tp/a@s2\t42\nsize\t42\n"), Ok(42));
    assert_eq!(
        parse_send_estimate(b"incremental\t@s1\tp/a@s2\t40\nincremental\tp/a@s2\tp/a@s3\t2\n"),
        Ok(42)
    );
    assert_eq!(parse_send_estimate(b"full\tp/a@s\n"), Ok(0));
    let err = parse_send_estimate(b"full\tp/a@s\t12x\n").expect_err("number");
    assert_eq!(err.problem, Problem::Number { what: "size" });
    let err = parse_send_estimate(b"total estimated size is 12M\n").expect_err("human");
    assert_eq!((err.line, err.problem), (1, Problem::UnexpectedLine));
    assert_eq!(
        parse_send_estimate(b"").expect_err("empty").problem,
        Problem::Nothing { what: "size estimate" }
    );
    let resumed = "resume token contents:\nnvlist version: 0\n\tobject = 0x1\n\ttoname = p/a@s\n\
                   incremental\tp/a@s1\tp/a@s2\t1000\nsize\t1000\n";
    assert_eq!(parse_send_estimate(resumed.as_bytes()), Ok(1000));
}

const TOKEN_DESCRIPTION: &str = "resume token contents:\n\
nvlist version: 0\n\
\tfromguid = 0x2b7e6b4a2f9b3c1d\n\
\tobject = 0x6\n\
\toffset = 0x0\n\
\tbytes = 0x2e6b0\n\
\ttoguid = 0x5c1b3a7d9e2f4a68\n\
\ttoname = pool/fs@snap2\n\
\tcompressok = 1\n\
\trawok = 1\n\
send from pool/fs@snap1 to pool/fs@snap2 estimated size is 1.21M\n\
total estimated size is 1.21M\n";

#[test]
fn resume_token_description() {
    // Layout from OpenZFS's zfs_send_resume_impl and nvlist_print (uint64 as
    // 0x%llx, one tab of indent); not yet checked against a real OpenZFS.
    let info = parse_resume_token_description(TOKEN_DESCRIPTION.as_bytes()).expect("parses");
    assert_eq!(
        info,
        ResumeTokenInfo {
            from_guid: Some(0x2b7e6b4a2f9b3c1d),
            to_guid: 0x5c1b3a7d9e2f4a68,
            to_name: SnapshotPath::parse("pool/fs@snap2").expect("snapshot"),
            bytes: 0x2e6b0,
        }
    );
    let full = TOKEN_DESCRIPTION.replace("\tfromguid = 0x2b7e6b4a2f9b3c1d\n", "");
    assert_eq!(parse_resume_token_description(full.as_bytes()).expect("full").from_guid, None);
}

#[test]
fn resume_token_description_rejects_garbage() {
    let no_header = parse_resume_token_description(b"\ttoguid = 0x1\n").expect_err("header");
    assert_eq!((no_header.line, no_header.problem), (1, Problem::UnexpectedLine));
    assert!(matches!(
        parse_resume_token_description(b"").expect_err("empty").problem,
        Problem::Nothing { .. }
    ));
    let no_guid = TOKEN_DESCRIPTION.replace("\ttoguid = 0x5c1b3a7d9e2f4a68\n", "");
    let err = parse_resume_token_description(no_guid.as_bytes()).expect_err("toguid");
    assert_eq!(err.problem, Problem::Missing { name: "resume token".into(), property: "toguid" });
    let bad_hex = TOKEN_DESCRIPTION.replace("0x2e6b0", "0xzz");
    let err = parse_resume_token_description(bad_hex.as_bytes()).expect_err("bytes");
    assert_eq!((err.line, err.problem), (6, Problem::Number { what: "bytes" }));
    let bad_name = TOKEN_DESCRIPTION.replace("pool/fs@snap2\n", "pool/fs\n");
    assert!(matches!(
        parse_resume_token_description(bad_name.as_bytes()).expect_err("name").problem,
        Problem::Name(_)
    ));
    let twice = TOKEN_DESCRIPTION.replace("\tobject = 0x6\n", "\ttoguid = 0x1\n");
    assert!(matches!(
        parse_resume_token_description(twice.as_bytes()).expect_err("dup").problem,
        Problem::Duplicate { .. }
    ));
    let zero = TOKEN_DESCRIPTION.replace("0x5c1b3a7d9e2f4a68", "0x0");
    assert_eq!(
        parse_resume_token_description(zero.as_bytes()).expect_err("zero").problem,
        Problem::ZeroGuid
    );
}

fn render_columns(versions: &[(String, FilesystemVersion)]) -> String {
    versions
        .iter()
        .map(|(fs, v)| {
            format!("{fs}{}\t{}\t{}\t{}\n", v.relative_name(), v.guid, v.createtxg, v.creation)
        })
        .collect()
}

fn render_table(versions: &[(String, FilesystemVersion)]) -> String {
    let mut out = String::new();
    for (fs, v) in versions {
        let name = format!("{fs}{}", v.relative_name());
        let kind = if v.is_snapshot() { "snapshot" } else { "bookmark" };
        out += &format!("{name}\ttype\t{kind}\t-\n{name}\tguid\t{}\t-\n", v.guid);
        out += &format!(
            "{name}\tcreatetxg\t{}\t-\n{name}\tcreation\t{}\t-\n",
            v.createtxg, v.creation
        );
    }
    out
}

fn arb_versions() -> impl Strategy<Value = Vec<(String, FilesystemVersion)>> {
    let one = (
        prop::sample::select(vec!["p", "p/a", "p/a b/c", "q-1/x:y"]),
        prop::bool::ANY,
        "[A-Za-z0-9_.: -]{1,12}",
        1u64..,
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(|(fs, snapshot, name, guid, createtxg, creation)| {
            let kind = if snapshot { VersionKind::Snapshot } else { VersionKind::Bookmark };
            (fs.to_owned(), FilesystemVersion { kind, name, guid, createtxg, creation })
        });
    prop::collection::vec(one, 0..20).prop_map(|mut vs| {
        // Names and guids are unique per filesystem and kind in real output.
        let mut names = std::collections::BTreeSet::new();
        let mut guids = std::collections::BTreeSet::new();
        vs.retain(|(fs, v)| {
            names.insert((fs.clone(), v.relative_name()))
                && guids.insert((fs.clone(), v.kind, v.guid))
        });
        vs
    })
}

fn expected_grouping(versions: &[(String, FilesystemVersion)]) -> VersionsByFilesystem {
    let mut want = VersionsByFilesystem::new();
    for (f, v) in versions {
        want.entry(fs(f)).or_default().push(v.clone());
    }
    for list in want.values_mut() {
        list.sort_by(|a, b| (a.createtxg, a.kind, &a.name).cmp(&(b.createtxg, b.kind, &b.name)));
    }
    want
}

proptest! {
    #[test]
    fn versions_parse_what_was_rendered(versions in arb_versions()) {
        let want = expected_grouping(&versions);
        prop_assert_eq!(&parse_versions(ListingFormat::Columns, render_columns(&versions).as_bytes()).expect("columns"), &want);
        prop_assert_eq!(&parse_versions(ListingFormat::PropertyTable, render_table(&versions).as_bytes()).expect("table"), &want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_parsers(&data);
    }

    #[test]
    fn near_valid_text_never_panics(text in "([pa/@#\t\n 0-9x=-]|resume token contents:\n|nvlist version: 0\n|\ttoguid = |size\t|full\t){0,40}") {
        fuzz_parsers(text.as_bytes());
    }

    #[test]
    fn mutated_real_output_never_panics(cut in 0usize..2000, byte in any::<u8>()) {
        for sample in [FUSE_FILESYSTEMS, FUSE_VERSIONS, TOKEN_DESCRIPTION.as_bytes()] {
            let mut data = sample.to_vec();
            let at = cut % data.len().max(1);
            if at < data.len() { data[at] = byte; }
            fuzz_parsers(&data);
            fuzz_parsers(&data[..at]);
        }
    }
}

/// Real output of OpenZFS 2.3.2 (zfs-lab guest, Debian 6.12 kernel), captured by
/// a script that made pool lp with lp/fs@s1, lp/fs@s2 and bookmark lp/fs#b1, then
/// received s1 into lq/fs and cut the incremental s1->s2 stream after 500 kB with
/// `zfs receive -s`, leaving a resume token.
mod checked_on_openzfs_2_3 {
    use super::*;
    use crate::zfs::command::ListingFormat;
    use crate::zfs::{detect, Dialect, OpenZfsVersion};

    const VERSION: &[u8] = include_bytes!("testdata/openzfs-version.stdout");
    const ESTIMATE_FULL: &[u8] = include_bytes!("testdata/openzfs-send-estimate-full.stdout");
    const ESTIMATE_INCR: &[u8] =
        include_bytes!("testdata/openzfs-send-estimate-incremental.stdout");
    const VERSIONS: &[u8] = include_bytes!("testdata/openzfs-list-versions.stdout");
    const FILESYSTEMS: &[u8] = include_bytes!("testdata/openzfs-get-filesystems.stdout");
    const TOKEN: &[u8] = include_bytes!("testdata/openzfs-send-token.stdout");

    #[test]
    fn version() {
        let expected = Dialect::OpenZfs(OpenZfsVersion { major: 2, minor: 3, patch: 2 });
        assert_eq!(detect(Some(0), VERSION, b""), Ok(expected));
    }

    #[test]
    fn send_estimates() {
        assert_eq!(parse_send_estimate(ESTIMATE_FULL).unwrap(), 31_132_872);
        assert_eq!(parse_send_estimate(ESTIMATE_INCR).unwrap(), 1_058_864);
    }

    #[test]
    fn versions_with_a_bookmark() {
        let by_fs = parse_versions(ListingFormat::Columns, VERSIONS).unwrap();
        let got = &by_fs[&fs("lp/fs")];
        let mut names: Vec<String> = got.iter().map(|v| v.relative_name()).collect();
        names.sort();
        assert_eq!(names, ["#b1", "@s1", "@s2"]);
        let s1 = got.iter().find(|v| v.name == "s1").unwrap();
        let b1 = got.iter().find(|v| v.name == "b1").unwrap();
        assert_eq!((s1.guid, s1.createtxg), (7_863_515_901_467_168_071, 11));
        assert_eq!(
            (b1.kind, b1.guid),
            (VersionKind::Bookmark, s1.guid),
            "a bookmark keeps its snapshot's guid"
        );
    }

    #[test]
    fn filesystems_with_a_resume_token() {
        let got = parse_filesystems(FILESYSTEMS).unwrap();
        assert_eq!(got.len(), 2, "the snapshot rows are skipped");
        assert!(got[0].resume_token.is_none());
        let token = got[1].resume_token.as_ref().expect("lq/fs holds a partial receive");
        assert!(token.as_str().starts_with("1-b4bb63271-e0-"));
        assert!(!got[1].is_placeholder);
    }

    #[test]
    fn resume_token_description_names_the_snapshots_by_guid() {
        let info = parse_resume_token_description(TOKEN).unwrap();
        assert_eq!(info.from_guid, Some(7_863_515_901_467_168_071), "s1's guid");
        assert_eq!(info.to_guid, 14_989_521_812_847_416_799, "s2's guid, as zfs list printed it");
        assert_eq!(info.to_name.to_string(), "lp/fs@s2");
        assert_eq!(info.bytes, 0x60d90);
    }
}
