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

/// Rewrites the one record of `topic`'s publish journal to say a format version no gatos
/// writes (a newer writer's record, say), with a checksum that holds: a fault of the
/// journal, not of the topic.
pub fn journal_of_an_unknown_version(repo: &TempRepo, topic: &str) -> TestResult {
    let path = repo
        .git_dir()
        .join(format!("gatos/journal/messages.{topic}"));
    let mut bytes = std::fs::read(&path)?;
    // One record: its length, its body (the version first), its checksum.
    let len = usize::try_from(u32::from_le_bytes(bytes[0..4].try_into()?))?;
    assert_eq!(bytes.len(), 4 + len + 16, "one record in the journal");
    bytes[4] = 0xee;
    let mut h = blake3::Hasher::new();
    h.update(&bytes[0..4]);
    h.update(&bytes[4..4 + len]);
    let sum = *h.finalize().as_bytes();
    bytes[4 + len..].copy_from_slice(&sum[..16]);
    std::fs::write(&path, &bytes)?;
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
