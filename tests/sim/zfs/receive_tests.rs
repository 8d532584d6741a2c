//! The model's `zfs send | zfs receive`, rule by rule (see the model's doc
//! comment for where each rule comes from).

use std::collections::VecDeque;

use super::command::{classify, plan_send, Kind, Outcome};
use super::receive::Receive;
use super::{Flavor, Zfs};
use crate::rng::Rng;

fn argv(cmd: &str) -> Vec<String> {
    cmd.split(' ').map(str::to_owned).collect()
}

/// `SEND | head -c CUT | RECV`, as a shell would run it.
fn pipe(src: &Zfs, send: &str, dst: &mut Zfs, recv: &str, cut: Option<usize>) -> Outcome {
    let Ok(Kind::Send(args)) = classify(src.flavor, &argv(send)) else { panic!("{send}") };
    let mut bytes = plan_send(src, &args).expect("send starts").bytes();
    if let Some(cut) = cut {
        bytes.truncate(cut);
    }
    let Ok(Kind::Receive(args)) = classify(dst.flavor, &argv(recv)) else { panic!("{recv}") };
    let mut r = Receive::new(args);
    let mut rng = Rng::new(1);
    let mut stdin: VecDeque<u8> = VecDeque::new();
    // Bytes arrive in small pieces, as through a pipe.
    for chunk in bytes.chunks(700) {
        stdin.extend(chunk);
        r.consume(dst, &mut stdin, &mut rng);
        if r.done.is_some() {
            break;
        }
    }
    if r.done.is_none() {
        r.eof(dst);
    }
    r.done.take().expect("finished")
}

fn sender() -> Zfs {
    let mut rng = Rng::new(7);
    let mut z = Zfs::new(Flavor::OpenZfs);
    z.create_pool("lp", &mut rng);
    z.create("lp/fs", &[], &mut rng).unwrap();
    for s in ["s1", "s2", "s3"] {
        z.write("lp/fs", &mut rng);
        z.snapshot("lp/fs", s, 1000, &mut rng).unwrap();
    }
    z
}

fn receiver() -> Zfs {
    let mut z = Zfs::new(Flavor::OpenZfs);
    z.create_pool("lq", &mut Rng::new(8));
    z
}

fn guids(z: &Zfs, fs: &str) -> Vec<u64> {
    z.datasets[fs].snapshots.iter().map(|s| s.guid).collect()
}

#[test]
fn full_then_incremental_keeps_guids_and_content() {
    let src = sender();
    let mut dst = receiver();
    let o = pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u lq/fs", None);
    assert_eq!(o.code, 0, "{o:?}");
    let o = pipe(&src, "zfs send -i lp/fs@s1 lp/fs@s2", &mut dst, "zfs receive -u lq/fs", None);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(guids(&dst, "lq/fs"), guids(&src, "lp/fs")[..2]);
    assert_eq!(dst.datasets["lq/fs"].content, src.datasets["lp/fs"].snapshots[1].content);
}

#[test]
fn a_cut_incremental_with_s_leaves_a_token_and_the_base() {
    // As the capture script does: send -i @s1 @s2 | head -c … | receive -s.
    let src = sender();
    let mut dst = receiver();
    pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u lq/fs", None);
    let o =
        pipe(&src, "zfs send -i lp/fs@s1 lp/fs@s2", &mut dst, "zfs receive -u -s lq/fs", Some(150));
    assert_eq!(o.code, 1);
    assert!(o.stderr.starts_with("cannot receive incremental stream: checksum mismatch or incomplete stream.\nPartially received snapshot is saved.\nA resuming stream can be generated on the sending system by running:\n    zfs send -t 1-"), "{}", o.stderr);
    assert_eq!(guids(&dst, "lq/fs").len(), 1, "s1 stays, s2 is not there");
    let token = dst.fs_prop("lq/fs", "receive_resume_token").0;
    // Nothing else lands on it until the partial state is resumed or aborted.
    let o = pipe(&src, "zfs send -i lp/fs@s1 lp/fs@s2", &mut dst, "zfs receive -u -s lq/fs", None);
    assert_eq!(o.stderr, "cannot receive incremental stream: destination lq/fs contains partially-complete state from \"zfs receive -s\".");
    let o = pipe(&src, &format!("zfs send -t {token}"), &mut dst, "zfs receive -u -s lq/fs", None);
    assert_eq!(o.code, 0, "resumes: {o:?}");
    assert_eq!(guids(&dst, "lq/fs"), guids(&src, "lp/fs")[..2]);
    assert_eq!(dst.fs_prop("lq/fs", "receive_resume_token").0, "-");
}

#[test]
fn a_cut_first_receive_leaves_an_inconsistent_filesystem_with_s_and_nothing_without() {
    let src = sender();
    let mut dst = receiver();
    let o = pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u lq/fs", Some(200));
    assert!(
        o.stderr.starts_with("cannot receive new filesystem stream: checksum mismatch"),
        "{o:?}"
    );
    assert!(!dst.exists("lq/fs"));
    pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u -s lq/fs", Some(200));
    assert!(dst.exists("lq/fs") && dst.datasets["lq/fs"].snapshots.is_empty());
    let o = pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u -s lq/fs", None);
    assert_eq!(o.stderr, "cannot receive new filesystem stream: destination 'lq/fs' exists\nmust specify -F to overwrite it");
}

#[test]
fn refusals_as_libzfs_words_them() {
    let src = sender();
    let mut dst = receiver();
    let o = pipe(&src, "zfs send -i lp/fs@s1 lp/fs@s2", &mut dst, "zfs receive -u lq/fs", None);
    assert_eq!(o.stderr, "cannot receive incremental stream: destination 'lq/fs' does not exist");
    pipe(&src, "zfs send lp/fs@s2", &mut dst, "zfs receive -u lq/fs", None);
    let o = pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u -F lq/fs", None);
    assert_eq!(o.stderr, "cannot receive new filesystem stream: destination has snapshots (eg. lq/fs@s2)\nmust destroy them to overwrite it");
    let o = pipe(&src, "zfs send -i lp/fs@s1 lp/fs@s3", &mut dst, "zfs receive -u lq/fs", None);
    assert_eq!(o.stderr, "cannot receive incremental stream: most recent snapshot of lq/fs does not\nmatch incremental source");
    let o = pipe(&src, "zfs send -i lp/fs@s2 lp/fs@s3", &mut dst, "zfs receive -u lq/fs", None);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn a_cut_package_keeps_the_snapshots_it_completed() {
    let src = sender();
    let mut dst = receiver();
    pipe(&src, "zfs send lp/fs@s1", &mut dst, "zfs receive -u lq/fs", None);
    let Ok(Kind::Send(args)) = classify(src.flavor, &argv("zfs send -I lp/fs@s1 lp/fs@s3")) else {
        panic!()
    };
    let plan = plan_send(&src, &args).unwrap();
    assert!(plan.compound && plan.substreams.len() == 2);
    let whole = plan.bytes().len();
    let o = pipe(
        &src,
        "zfs send -I lp/fs@s1 lp/fs@s3",
        &mut dst,
        "zfs receive -u lq/fs",
        Some(whole - 20),
    );
    assert_eq!(o.code, 1);
    assert_eq!(guids(&dst, "lq/fs"), guids(&src, "lp/fs")[..2], "s2 arrived whole, s3 did not");
}

#[test]
fn the_model_refuses_to_destroy_a_snapshot_being_sent() {
    let mut src = sender();
    src.hold_busy("lp/fs@s2");
    assert_eq!(
        src.destroy_version("lp/fs@s2"),
        Err("cannot destroy snapshot lp/fs@s2: dataset is busy".into())
    );
    src.release_busy("lp/fs@s2");
    assert_eq!(src.destroy_version("lp/fs@s2"), Ok(()));
}
