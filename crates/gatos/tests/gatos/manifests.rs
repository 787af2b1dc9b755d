//! The manifest registry reads its documents back as checked types.

use gatos::jobs::manifest;
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::ErrorCode;
use serde_json::json;

use crate::support::open_at;

/// A version whose document breaks what normalization guarantees (here: no command),
/// written by hand or arrived by sync, is a coded error naming it, and the listing of the
/// other manifests goes on without it.
#[test]
fn a_malformed_manifest_is_left_out_of_the_listing_and_named_when_asked_for() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _) = open_at(&repo, "2026-11-23T10:00:00Z")?;
    let good = manifest::from_value(json!({"command": ["true"]}))?;
    g.manifests().put(&"good".parse()?, good.clone())?;
    g.manifests().put(&"bad".parse()?, good)?;
    // Rewrite bad's document by hand: the same shape, an empty command.
    let head = repo.git(&["rev-parse", "refs/gatos/manifests/bad"])?;
    let head = head.trim();
    let doc = repo.git(&["cat-file", "blob", &format!("{head}:manifest.json")])?;
    let mut v: serde_json::Value = serde_json::from_str(&doc)?;
    v["command"] = json!([]);
    let blob = {
        let mut c = repo.git_cmd(&["hash-object", "-w", "--stdin"]);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn()?;
        std::io::Write::write_all(
            child.stdin.as_mut().ok_or("stdin")?,
            serde_json::to_string(&v)?.as_bytes(),
        )?;
        let out = child.wait_with_output()?;
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    let tree = {
        let mut c = repo.git_cmd(&["mktree"]);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn()?;
        std::io::Write::write_all(
            child.stdin.as_mut().ok_or("stdin")?,
            format!("100644 blob {blob}\tmanifest.json\n").as_bytes(),
        )?;
        let out = child.wait_with_output()?;
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    let commit = repo.git(&["commit-tree", &tree, "-m", "manifest bad\n\nVersion: 2"])?;
    repo.git(&[
        "update-ref",
        "refs/gatos/manifests/bad",
        commit.trim(),
        head,
    ])?;
    let rows = g.manifests().list()?;
    assert_eq!(
        rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec!["good"]
    );
    let e = g
        .manifests()
        .get(&"bad".parse()?, None)
        .err()
        .ok_or("refused")?;
    assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
    assert!(e.to_string().contains("manifest bad version 2"), "{e}");
    assert!(g.manifests().run(&"bad".parse()?, None).is_err());
    Ok(())
}

/// The registry's refusals are typed (`manifests::Error`) with their codes.
#[test]
fn unknown_names_and_versions_are_typed_not_found() -> TestResult {
    use gatos::manifests::Error;
    let repo = TempRepo::new()?;
    let (g, _) = open_at(&repo, "2026-11-23T10:00:00Z")?;
    g.manifests().put(
        &"nightly".parse()?,
        manifest::from_value(json!({"command": ["true"]}))?,
    )?;
    let e = g
        .manifests()
        .get(&"nope".parse()?, None)
        .err()
        .ok_or("found")?;
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(matches!(
        e.inner().downcast_ref::<Error>(),
        Some(Error::NoSuchManifest { name }) if name.as_str() == "nope"
    ));
    let e = g
        .manifests()
        .get(&"nightly".parse()?, Some(7))
        .err()
        .ok_or("found")?;
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert_eq!(e.to_string(), "manifest 'nightly' has no version 7");
    assert!(matches!(
        e.inner().downcast_ref::<Error>(),
        Some(Error::NoSuchVersion { version: 7, .. })
    ));
    Ok(())
}
