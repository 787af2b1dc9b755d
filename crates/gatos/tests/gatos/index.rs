//! The position index (ADR 0008) is never trusted over the refs: whatever happens to its
//! files — truncated, a flipped byte, another format version, lost side files — reads,
//! cursors, positions and publish deduplication give the same answers as with a fresh
//! index, and nothing panics.

use std::path::{Path, PathBuf};

use gatos::Gatos;
use gatos::messages::{ConfigChange, Cursor, PublishOptions, ReadOptions};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{Oid, Topic, Ulid};
use serde_json::json;

use crate::support::open;

const HEADER: u64 = 128;
const RECORD: u64 = 64;
const MESSAGES: u64 = 10;

/// What the refs say: `(seq, ulid, commit)` of every message.
type Rows = Vec<(u64, Ulid, Oid)>;

/// A topic with segments of 4 messages (1-4, 5-8, 9-10), each with a `msg_id`.
fn topic_with_segments() -> TestResult<(TempRepo, Gatos, Topic, Rows)> {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "idx.damage".parse()?;
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(4),
            ..ConfigChange::default()
        },
    )?;
    let mut rows = Vec::new();
    for i in 0..MESSAGES {
        let row = g.messages().publish(
            &t,
            json!({ "n": i }),
            &PublishOptions {
                headers: Some(json!({ "msg_id": format!("m{i}") })),
                expect_last_seq: None,
            },
        )?;
        rows.push((row.seq, row.ulid, row.commit));
    }
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=MESSAGES).collect::<Vec<_>>()
    );
    Ok((repo, g, t, rows))
}

fn index_dir(repo: &TempRepo, t: &Topic) -> PathBuf {
    repo.git_dir().join("gatos/index/topics").join(t.as_str())
}

/// One way of asking the index something, checked against the refs' answer.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// The whole topic, from the start.
    Start,
    /// A page after each message, by ULID.
    AfterUlid,
    /// A page after each message, by seq.
    AfterSeq,
    /// From the end (only new messages).
    End,
    /// Each ULID's position.
    Position,
    /// Each seq's commit.
    CommitAt,
    /// A publish of an already published `msg_id` is recognised as a duplicate.
    Dedupe,
}

const PROBES: [Probe; 7] = [
    Probe::Start,
    Probe::AfterUlid,
    Probe::AfterSeq,
    Probe::End,
    Probe::Position,
    Probe::CommitAt,
    Probe::Dedupe,
];

fn page_after(g: &Gatos, t: &Topic, since: Cursor) -> TestResult<Vec<u64>> {
    let page = g.messages().read(t, &ReadOptions { since, limit: 3 })?;
    Ok(page.messages.iter().map(|m| m.seq).collect())
}

fn agrees(g: &Gatos, t: &Topic, rows: &Rows, probe: Probe) -> TestResult {
    let after = |i: usize| -> Vec<u64> { rows[i + 1..].iter().take(3).map(|r| r.0).collect() };
    match probe {
        Probe::Start => {
            let mut all = Vec::new();
            g.messages().scan(t, &Cursor::Start, None, |m| {
                all.push((m.seq, m.ulid, m.commit));
                Ok(true)
            })?;
            assert_eq!(&all, rows);
        }
        Probe::AfterUlid => {
            for (i, (_, ulid, _)) in rows.iter().enumerate() {
                assert_eq!(
                    page_after(g, t, Cursor::Ulid(*ulid))?,
                    after(i),
                    "after {ulid}"
                );
            }
        }
        Probe::AfterSeq => {
            for (i, (seq, _, _)) in rows.iter().enumerate() {
                assert_eq!(
                    page_after(g, t, Cursor::Seq(*seq))?,
                    after(i),
                    "after {seq}"
                );
            }
        }
        Probe::End => {
            let end = g.messages().read(
                t,
                &ReadOptions {
                    since: Cursor::End,
                    limit: 3,
                },
            )?;
            assert!(end.messages.is_empty() && end.end);
            assert_eq!(end.next_since, rows.last().map(|r| r.1));
        }
        Probe::Position => {
            for (seq, ulid, commit) in rows {
                assert_eq!(g.messages().position(t, *ulid)?, Some((*seq, *commit)));
            }
        }
        Probe::CommitAt => {
            for (seq, _, commit) in rows {
                assert_eq!(g.messages().commit_at(t, *seq)?, Some(*commit), "seq {seq}");
            }
        }
        Probe::Dedupe => {
            for i in [0, 4, MESSAGES - 1] {
                let row = g.messages().publish(
                    t,
                    json!({ "n": i }),
                    &PublishOptions {
                        headers: Some(json!({ "msg_id": format!("m{i}") })),
                        expect_last_seq: None,
                    },
                )?;
                let (seq, ulid, _) = rows[usize::try_from(i)?];
                assert!(row.duplicate, "m{i} is a duplicate");
                assert_eq!((row.seq, row.ulid), (seq, ulid), "m{i}");
            }
        }
    }
    Ok(())
}

/// The index's files as a fresh build wrote them.
struct Pristine {
    dir: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Pristine {
    fn take(repo: &TempRepo, g: &Gatos, t: &Topic, rows: &Rows) -> TestResult<Pristine> {
        let dir = index_dir(repo, t);
        std::fs::remove_dir_all(&dir)?;
        agrees(g, t, rows, Probe::Start)?;
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            files.push((p.clone(), std::fs::read(&p)?));
        }
        files.sort();
        let names: Vec<_> = files.iter().filter_map(|(p, _)| p.file_name()).collect();
        assert_eq!(
            names,
            ["breaks", "msgids", "positions"],
            "the index's files"
        );
        Ok(Pristine { dir, files })
    }

    fn restore(&self) -> TestResult {
        std::fs::remove_dir_all(&self.dir)?;
        std::fs::create_dir_all(&self.dir)?;
        for (p, b) in &self.files {
            std::fs::write(p, b)?;
        }
        Ok(())
    }
}

/// Applies each damage to a pristine index before each probe (a probe that repairs the
/// index must not hide a probe that does not), and checks the probe's answer.
fn each_probe_survives(
    repo: &TempRepo,
    g: &Gatos,
    t: &Topic,
    rows: &Rows,
    cases: &[(String, &str, Damage)],
    probes: &[Probe],
) -> TestResult {
    let pristine = Pristine::take(repo, g, t, rows)?;
    let mut failed = Vec::new();
    for (what, file, damage) in cases {
        for probe in probes.iter().copied() {
            pristine.restore()?;
            damage(&pristine.dir.join(file))?;
            if let Err(e) = agrees(g, t, rows, probe) {
                failed.push(format!("{what}: {probe:?}: {e}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} failures:\n{}",
        failed.len(),
        failed.join("\n")
    );
    Ok(())
}

type Damage = Box<dyn Fn(&Path) -> TestResult>;

#[test]
fn a_fresh_index_agrees_with_the_refs() -> TestResult {
    let (repo, g, t, rows) = topic_with_segments()?;
    for probe in PROBES {
        agrees(&g, &t, &rows, probe)?;
    }
    // Deleting the directory is always safe.
    for probe in PROBES {
        std::fs::remove_dir_all(index_dir(&repo, &t))?;
        agrees(&g, &t, &rows, probe)?;
    }
    repo.assert_fsck_strict()
}

fn on(path: &Path, f: impl Fn(&mut Vec<u8>)) -> TestResult {
    let mut bytes = std::fs::read(path)?;
    f(&mut bytes);
    std::fs::write(path, bytes)?;
    Ok(())
}

fn flip(at: u64) -> Damage {
    Box::new(move |p| on(p, |b| b[usize::try_from(at).unwrap()] ^= 0x5a))
}

fn cut(len: u64) -> Damage {
    Box::new(move |p| on(p, |b| b.truncate(usize::try_from(len).unwrap())))
}

fn removed() -> Damage {
    Box::new(|p| Ok(std::fs::remove_file(p)?))
}

const P: &str = "positions";

fn record_at(seq: u64) -> u64 {
    HEADER + (seq - 1) * RECORD
}

/// A record's commit, blob, ULID, length and checksum damaged, at segment edges and inside.
fn torn_records() -> Vec<(String, &'static str, Damage)> {
    let mut cases = Vec::new();
    for seq in [1, 4, 5, 6, MESSAGES] {
        for off in [0, 25, 45, 58, 63] {
            cases.push((
                format!("record {seq} byte {off} flipped"),
                P,
                flip(record_at(seq) + off),
            ));
        }
    }
    cases
}

#[test]
fn a_missing_cut_or_foreign_positions_file_never_changes_an_answer() -> TestResult {
    let (repo, g, t, rows) = topic_with_segments()?;
    let mut cases: Vec<(String, &str, Damage)> = vec![
        ("removed".into(), P, removed()),
        ("emptied".into(), P, cut(0)),
        ("cut inside the header".into(), P, cut(HEADER / 2)),
        ("cut to the header".into(), P, cut(HEADER)),
        ("cut inside record 4".into(), P, cut(record_at(4) + 17)),
        (
            "cut before the last record".into(),
            P,
            cut(record_at(MESSAGES)),
        ),
        (
            "another format version".into(),
            P,
            Box::new(|p| on(p, |b| b[0..8].copy_from_slice(b"GATOSIX2"))),
        ),
    ];
    for at in [0, 8, 16, 24, 32, 36, 40, 57, 60, 100, 120, 127] {
        cases.push((format!("header byte {at} flipped"), P, flip(at)));
    }
    each_probe_survives(&repo, &g, &t, &rows, &cases, &PROBES)
}

#[test]
fn a_read_from_the_start_rebuilds_an_index_with_a_torn_record() -> TestResult {
    let (repo, g, t, rows) = topic_with_segments()?;
    each_probe_survives(&repo, &g, &t, &rows, &torn_records(), &[Probe::Start])
}

/// Every other way in meets the torn record too, and rebuilds the index as a read from the
/// start does (ADR 0008).
#[test]
fn every_read_rebuilds_an_index_with_a_torn_record() -> TestResult {
    let (repo, g, t, rows) = topic_with_segments()?;
    each_probe_survives(&repo, &g, &t, &rows, &torn_records(), &PROBES)
}

#[test]
fn lost_or_damaged_side_files_never_change_an_answer() -> TestResult {
    let (repo, g, t, rows) = topic_with_segments()?;
    let every_seq: Damage = Box::new(|p| {
        on(p, |b| {
            for s in 1..=MESSAGES {
                b.extend_from_slice(&s.to_le_bytes());
            }
        })
    });
    let cases: Vec<(String, &str, Damage)> = vec![
        ("breaks removed".into(), "breaks", removed()),
        ("breaks of another generation".into(), "breaks", flip(0)),
        (
            "breaks with a torn entry".into(),
            "breaks",
            Box::new(|p| on(p, |b| b.push(7))),
        ),
        ("breaks naming every seq".into(), "breaks", every_seq),
        ("msgids removed".into(), "msgids", removed()),
        ("msgids cut".into(), "msgids", cut(13)),
        ("msgids flipped".into(), "msgids", flip(4 * 8 + 1)),
    ];
    each_probe_survives(&repo, &g, &t, &rows, &cases, &PROBES)
}
