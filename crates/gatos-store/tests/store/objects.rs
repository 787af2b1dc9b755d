use gatos_store::objects::{NewCommit, Objects};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::Timestamp;

use crate::store;

#[test]
fn nested_trees_with_tricky_names_pass_fsck() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let mut w = s.writer();
    let x = w.blob(b"x")?;
    let tree = w.files(&[
        ("a.b", x),
        ("a/c", x),
        ("a-c", x),
        ("a0", x),
        ("logs/stdout", x),
        ("logs/stderr", x),
    ])?;
    let c = w.commit(&NewCommit {
        tree,
        parents: &[],
        message: "t\n\nGatos-Kind: test\n",
        time: Timestamp::from_millis(1_700_000_000_000),
    })?;
    w.finish()?;
    repo.git(&["update-ref", "refs/gatos/t", &c.to_string()])?;
    assert_eq!(repo.git(&["cat-file", "blob", &format!("{c}:a/c")])?, "x");
    let mut r = s.reader();
    let commit = r.commit(c)?;
    assert_eq!(commit.trailers().get("Gatos-Kind"), Some("test"));
    assert_eq!(commit.time, 1_700_000_000);
    assert_eq!(r.file(commit.tree, "logs/stdout")?, Some(b"x".to_vec()));
    assert_eq!(r.file(commit.tree, "logs/none")?, None);
    assert!(s.writer().files(&[("", x)]).is_err());
    assert!(s.writer().files(&[("a", x), ("a", x)]).is_err());
    repo.assert_fsck_strict()
}

#[test]
fn a_pack_keeps_its_keep_until_the_guard_goes() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let mut w = s.pack_writer();
    let mut tip = None;
    for i in 0..50 {
        let b = w.blob(format!("{i}").as_bytes())?;
        let t = w.files(&[("n", b)])?;
        let parents: Vec<_> = tip.into_iter().collect();
        tip = Some(w.commit(&NewCommit {
            tree: t,
            parents: &parents,
            message: &format!("{i}\n"),
            time: Timestamp::from_millis(0),
        })?);
    }
    let guard = w.finish()?;
    let pack = guard.pack.clone().unwrap();
    let keep = pack.with_extension("keep");
    assert!(keep.exists());
    assert!(std::fs::read_to_string(&keep)?.starts_with(gatos_store::pack::KEEP_MARKER));
    let tip = tip.unwrap();
    assert!(s.reader().exists(tip), "the same store sees the new pack");
    repo.git(&["update-ref", "refs/gatos/t", &tip.to_string()])?;
    drop(guard);
    assert!(!keep.exists());
    let verify = repo.git(&[
        "verify-pack",
        "-v",
        &pack.with_extension("idx").to_string_lossy(),
    ])?;
    assert!(verify.contains("ok"));
    assert_eq!(
        repo.git(&["rev-list", "--count", "refs/gatos/t"])?.trim(),
        "50"
    );
    repo.assert_fsck_strict()
}

#[test]
fn local_config_is_written_as_git_reads_it() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    s.set_local_config(&[
        ("gatos.node", vec!["N1".into()]),
        ("gatos.trust", vec!["a".into(), "b".into()]),
    ])?;
    s.set_local_config(&[("gatos.trust", vec!["b".into(), "c".into()])])?;
    assert_eq!(repo.git(&["config", "gatos.node"])?.trim(), "N1");
    assert_eq!(repo.git(&["config", "--get-all", "gatos.trust"])?, "b\nc\n");
    let again = store(&repo)?;
    assert_eq!(again.config_strings("gatos.trust"), vec!["b", "c"]);
    Ok(())
}
