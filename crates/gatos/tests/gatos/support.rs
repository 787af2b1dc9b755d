use std::sync::Arc;

use gatos::clock::FixedClock;
use gatos::{Gatos, OpenOptions};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::Timestamp;

pub fn open(repo: &TempRepo) -> TestResult<Gatos> {
    Ok(Gatos::open(
        repo.path(),
        OpenOptions {
            clock: None,
            seed: Some(7),
        },
    )?)
}

pub fn open_at(repo: &TempRepo, t: &str) -> TestResult<(Gatos, Arc<FixedClock>)> {
    let clock = Arc::new(FixedClock::at(Timestamp::parse_rfc3339(t)?));
    let g = Gatos::open(
        repo.path(),
        OpenOptions {
            clock: Some(clock.clone()),
            seed: Some(7),
        },
    )?;
    Ok((g, clock))
}

/// Moves `topic`'s head, outside gatos, to a commit that is no message (its tree, the old
/// head as parent): a topic damaged as ADR 0047 describes.
pub fn move_head_to_no_message(repo: &TempRepo, topic: &str) -> TestResult {
    let name = format!("refs/gatos/messages/{topic}/head");
    let head = repo.git(&["rev-parse", &name])?;
    let bogus = repo.git(&[
        "commit-tree",
        &format!("{}^{{tree}}", head.trim()),
        "-p",
        head.trim(),
        "-m",
        "not a message",
    ])?;
    repo.git(&["update-ref", &name, bogus.trim(), head.trim()])?;
    Ok(())
}

/// Moves `topic`'s head, outside gatos, to a blob (not even a commit).
pub fn move_head_to_blob(repo: &TempRepo, topic: &str) -> TestResult {
    let blob_file = repo.path().join("not-a-commit");
    std::fs::write(&blob_file, "a blob\n")?;
    let blob = repo.git(&["hash-object", "-w", &blob_file.to_string_lossy()])?;
    repo.git(&[
        "update-ref",
        &format!("refs/gatos/messages/{topic}/head"),
        blob.trim(),
    ])?;
    Ok(())
}
