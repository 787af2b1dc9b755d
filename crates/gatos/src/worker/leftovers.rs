//! What a crashed worker left running, and how the next one ends it (ADR 0021).
//!
//! While an attempt runs, its worker keeps a record in
//! `<git-dir>/gatos/worker/running/<job>-<attempt>-<pid>.json`: the node's boot id, the
//! worker's and the supervisor's process ids with their start times, and the attempt's
//! run id (`GATOS_RUN_ID` in the job's environment). The supervisor leads a process group
//! that the job shares, and it kills every descendant when the job ends or the worker
//! dies. If the supervisor itself was killed (`kill -9` of the whole tree), a worker that
//! starts on the same node — and a worker about to take the job over — ends what is left:
//! the members of that process group and every process carrying the run id, each checked
//! by start time and boot id, never by a process id alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatos_types::Ulid;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::Gatos;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`, …
    pub state: char,
    /// The parent.
    pub ppid: i32,
    /// The process group.
    pub pgid: i32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

/// Reads a process's state, parent, group and start time; `None` when it is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice threads itrealvalue starttime …`; comm may
    // hold spaces and parentheses, so split after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Tells whether the process `pid` is the one that started at `start` and still runs.
fn alive(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|s| s.start == start && s.state != 'Z' && s.state != 'X')
}

/// One running attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The job.
    pub job: Ulid,
    /// The attempt.
    pub attempt: u32,
    /// The boot it ran in.
    pub boot_id: String,
    /// The worker process and its start time.
    pub worker: (i32, u64),
    /// The supervisor process (leader of the job's process group) and its start time.
    pub supervisor: (i32, u64),
    /// `GATOS_RUN_ID` of the attempt.
    pub run_id: String,
}

fn dir(gatos: &Gatos) -> PathBuf {
    gatos.store().gatos_dir().join("worker").join("running")
}

/// Writes the record of an attempt whose supervisor is `supervisor`; returns its path.
///
/// # Errors
/// When the file cannot be written.
pub fn write(
    gatos: &Gatos,
    job: Ulid,
    attempt: u32,
    supervisor: i32,
    run_id: &str,
) -> std::io::Result<PathBuf> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let missing = || std::io::Error::other("cannot read this process's start time or boot id");
    let rec = Record {
        job,
        attempt,
        boot_id: boot_id().ok_or_else(missing)?,
        worker: (me, stat(me).ok_or_else(missing)?.start),
        supervisor: (supervisor, stat(supervisor).map_or(0, |s| s.start)),
        run_id: run_id.to_owned(),
    };
    let d = dir(gatos);
    std::fs::create_dir_all(&d)?;
    let path = d.join(format!("{job}-{attempt}-{supervisor}.json"));
    // Written aside and renamed: a reader never sees a half-written record (it removes
    // what it cannot read, which must only ever be a crash's leftover).
    let tmp = d.join(format!(".{job}-{attempt}-{supervisor}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec(&rec).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn read_all(gatos: &Gatos) -> Vec<(PathBuf, Record)> {
    let Ok(entries) = std::fs::read_dir(dir(gatos)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let rec = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match rec {
                Some(r) => Some((p, r)),
                None => {
                    // Unreadable: not something a worker wrote (records are renamed into place).
                    let _ = std::fs::remove_file(&p);
                    None
                }
            }
        })
        .collect()
}

/// The processes left by an attempt: its supervisor if it still runs, the members of the
/// supervisor's process group that started after it, and any process started after it
/// whose environment carries the run id.
fn remains(rec: &Record) -> Vec<i32> {
    let (sup, sup_start) = rec.supervisor;
    let marker = format!("GATOS_RUN_ID={}", rec.run_id);
    // A process id in use as a group id is never handed to a new process, so while any
    // member of the group lives, a process with the supervisor's id is the supervisor.
    let leader_reused = stat(sup).is_some_and(|s| s.start != sup_start);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(st) = stat(pid) else { continue };
        if st.state == 'Z' || st.state == 'X' || st.start < sup_start {
            continue;
        }
        let ours = (pid == sup && st.start == sup_start)
            || (st.pgid == sup && !leader_reused)
            || environ_has(pid, &marker);
        if ours {
            out.push(pid);
        }
    }
    out
}

fn environ_has(pid: i32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
}

/// Kills what is left of an attempt and waits (up to `within`) until nothing is.
/// Returns whether nothing is left.
fn end(rec: &Record, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = remains(rec);
        if left.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            tracing::warn!(job = %rec.job, attempt = rec.attempt, pids = ?left, "processes of an earlier attempt would not end");
            return false;
        }
        for pid in &left {
            if let Some(p) = Pid::from_raw(*pid) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// At worker start: ends what workers that died on this node left running, and forgets
/// records of other boots. Returns the number of attempts whose processes were ended.
pub fn reap_dead_workers(gatos: &Gatos) -> usize {
    let boot = boot_id();
    let mut ended = 0;
    for (path, rec) in read_all(gatos) {
        if boot.as_deref() != Some(rec.boot_id.as_str()) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if alive(rec.worker.0, rec.worker.1) {
            continue;
        }
        if !remains(&rec).is_empty() {
            tracing::warn!(job = %rec.job, attempt = rec.attempt, "ending what a crashed worker left running");
            ended += 1;
        }
        if end(&rec, Duration::from_secs(10)) {
            let _ = std::fs::remove_file(&path);
        }
    }
    ended
}

/// Before an attempt of `job` starts here: ends every earlier attempt of it still running
/// on this node (a takeover never runs beside the attempt it replaces). Returns false
/// when something would not end.
pub fn end_earlier_attempts(gatos: &Gatos, job: Ulid, attempt: u32) -> bool {
    let boot = boot_id();
    let mut ok = true;
    for (path, rec) in read_all(gatos) {
        if rec.job != job || rec.attempt >= attempt {
            continue;
        }
        if boot.as_deref() != Some(rec.boot_id.as_str()) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if end(&rec, Duration::from_secs(10)) {
            let _ = std::fs::remove_file(&path);
        } else {
            ok = false;
        }
    }
    ok
}

/// Ends whatever is left of the attempt recorded at `path` (its supervisor did not end
/// normally, so it may not have killed what the job started). Returns whether nothing is
/// left.
pub fn end_recorded(path: &Path) -> bool {
    let rec = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
    rec.is_none_or(|r| end(&r, Duration::from_secs(10)))
}

/// Removes an attempt's record once everything of it has ended.
pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_reads_this_process() {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let st = stat(me).expect("our own stat");
        assert!(st.start > 0);
        assert!(alive(me, st.start));
        assert!(
            !alive(me, st.start + 1),
            "another start time is another process"
        );
        assert!(boot_id().is_some_and(|b| b.len() >= 32));
    }
}
