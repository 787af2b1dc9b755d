//! The file-system floor of each write path considered for issue #21 (ADR 0045): the
//! system calls one acknowledged publish needs under each design, issued directly (no
//! hashing, no encoding, no gatos), so the figures say what the file system allows.
//!
//! `fsops <dir> <path> <n> <group> <fsync:0|1>` writes n "publishes" into a fresh Git-like
//! layout under `dir` and prints the rate. One publish is four objects of the sizes a
//! one-message publish writes (blob 176, two trees 60 and 53, commit 616 bytes, encoded)
//! and one ref update. Paths:
//! * `loose`: today's loose path, call for call (an existence `statx`, a temp file, its
//!   write and close, the fan-out `mkdir`, a `rename`; the ref's `.lock` file and rename).
//! * `loose-trim`: the same files with the calls that can go: no existence probe (a
//!   rename onto an equal object is harmless), the fan-out directory made only when the
//!   rename says it is missing, every path relative to kept directory handles.
//! * `pack`: each group of `group` publishes as one pack and its index (two temp files,
//!   two renames) and one ref update.
//! * `journal`: one append per publish to an open journal file; a group's objects become
//!   a pack later, off the acknowledgement path (not measured here: it is `pack`'s cost
//!   divided among many publishes).
//!
//! With fsync on, `loose` and `loose-trim` fsync each object, the ref and their
//! directories; `pack` fsyncs the two files and the directory once per group; `journal`
//! `fdatasync`s once per group.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use serde_json::json;

use super::R;

const SIZES: [usize; 4] = [176, 60, 53, 616];

fn fake_id(i: u64, k: usize) -> String {
    format!(
        "{:040x}",
        (u128::from(i) << 8 | k as u128) * 0x9e37_79b9_7f4a_7c15
    )
}

fn fsync_dir(p: &Path) -> R {
    File::open(p)?.sync_all()?;
    Ok(())
}

/// Runs the `fsops` workload and prints its JSON line.
pub fn run(args: &[String]) -> R {
    let dir = PathBuf::from(args.get(2).ok_or("dir missing")?);
    let path = args.get(3).ok_or("path missing")?.clone();
    let n: u64 = args.get(4).ok_or("n missing")?.parse()?;
    let group: u64 = args.get(5).ok_or("group missing")?.parse::<u64>()?.max(1);
    let durable = args.get(6).is_some_and(|a| a == "1");
    let _ = std::fs::remove_dir_all(&dir);
    let objects = dir.join("objects");
    let refs = dir.join("refs/fsops/t");
    std::fs::create_dir_all(&objects)?;
    std::fs::create_dir_all(objects.join("pack"))?;
    std::fs::create_dir_all(&refs)?;
    std::fs::write(refs.join("head"), format!("{}\n", fake_id(0, 9)))?;
    let bytes: Vec<Vec<u8>> = SIZES.iter().map(|s| vec![b'x'; *s]).collect();
    let start = Instant::now();
    match path.as_str() {
        "loose" => loose(&objects, &refs, n, &bytes, durable)?,
        "loose-trim" => loose_trim(&objects, &refs, n, &bytes, durable)?,
        "pack" => pack(&objects, &refs, n, group, &bytes, durable)?,
        "journal" => journal(&dir, n, group, &bytes, durable)?,
        other => return Err(format!("unknown path {other}").into()),
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"workload": "fsops", "path": path, "group": group, "durable": durable,
               "count": n, "seconds": secs, "rate": n as f64 / secs})
    );
    Ok(())
}

/// Creates `path` (it must not exist), writes `data`, fsyncs it when `durable`, closes it.
fn write_new(path: &Path, data: &[u8], durable: bool) -> R {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    Ok(())
}

fn ref_update(refs: &Path, i: u64, durable: bool) -> R {
    let lock = refs.join("head.lock");
    write_new(&lock, format!("{}\n", fake_id(i, 8)).as_bytes(), durable)?;
    std::fs::rename(&lock, refs.join("head"))?;
    if durable {
        fsync_dir(refs)?;
    }
    Ok(())
}

fn loose(objects: &Path, refs: &Path, n: u64, bytes: &[Vec<u8>], durable: bool) -> R {
    let mut tmp_n = 0u64;
    for i in 0..n {
        for (k, b) in bytes.iter().enumerate() {
            let id = fake_id(i, k);
            let fan = objects.join(&id[..2]);
            let path = fan.join(&id[2..]);
            if path.exists() {
                continue;
            }
            tmp_n += 1;
            let tmp = objects.join(format!("tmp_obj_bench_{tmp_n}"));
            write_new(&tmp, b, durable)?;
            match std::fs::create_dir(&fan) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
            std::fs::rename(&tmp, &path)?;
            if durable {
                fsync_dir(&fan)?;
            }
        }
        ref_update(refs, i, durable)?;
    }
    Ok(())
}

fn loose_trim(objects: &Path, refs: &Path, n: u64, bytes: &[Vec<u8>], durable: bool) -> R {
    let odir = rustix::fs::open(objects, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
    let rdir = rustix::fs::open(refs, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
    let mut tmp_n = 0u64;
    for i in 0..n {
        for (k, b) in bytes.iter().enumerate() {
            let id = fake_id(i, k);
            let target = format!("{}/{}", &id[..2], &id[2..]);
            tmp_n += 1;
            let tmp = format!("tmp_obj_bench_{tmp_n}");
            let fd = rustix::fs::openat(
                odir.as_fd(),
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o444),
            )?;
            let mut f = File::from(fd);
            f.write_all(b)?;
            if durable {
                f.sync_all()?;
            }
            drop(f);
            match rustix::fs::renameat(odir.as_fd(), tmp.as_str(), odir.as_fd(), target.as_str()) {
                Ok(()) => {}
                Err(rustix::io::Errno::NOENT) => {
                    rustix::fs::mkdirat(odir.as_fd(), &id[..2], Mode::from_raw_mode(0o777))?;
                    rustix::fs::renameat(
                        odir.as_fd(),
                        tmp.as_str(),
                        odir.as_fd(),
                        target.as_str(),
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
            if durable {
                fsync_dir(&objects.join(&id[..2]))?;
            }
        }
        let fd = rustix::fs::openat(
            rdir.as_fd(),
            "head.lock",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let mut f = File::from(fd);
        f.write_all(format!("{}\n", fake_id(i, 8)).as_bytes())?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        rustix::fs::renameat(rdir.as_fd(), "head.lock", rdir.as_fd(), "head")?;
        if durable {
            rustix::fs::fsync(rdir.as_fd())?;
        }
    }
    Ok(())
}

fn pack(objects: &Path, refs: &Path, n: u64, group: u64, bytes: &[Vec<u8>], durable: bool) -> R {
    let packs = objects.join("pack");
    let per_publish: usize = bytes.iter().map(|b| b.len() + 3).sum();
    let mut i = 0;
    let mut g = 0u64;
    while i < n {
        let m = group.min(n - i);
        g += 1;
        let objs = 4 * m as usize;
        let pack_bytes = vec![b'p'; 12 + per_publish * m as usize + 20];
        let idx_bytes = vec![b'i'; 8 + 1024 + objs * 28 + 40];
        for (data, ext) in [(&pack_bytes, "pack"), (&idx_bytes, "idx")] {
            let tmp = packs.join(format!("tmp_{ext}_{g}"));
            write_new(&tmp, data, durable)?;
            std::fs::rename(&tmp, packs.join(format!("pack-{g:040x}.{ext}")))?;
        }
        if durable {
            fsync_dir(&packs)?;
        }
        ref_update(refs, i + m, durable)?;
        i += m;
    }
    Ok(())
}

fn journal(dir: &Path, n: u64, group: u64, bytes: &[Vec<u8>], durable: bool) -> R {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("journal"))?;
    let mut rec = Vec::new();
    for i in 0..n {
        rec.clear();
        for b in bytes {
            rec.extend_from_slice(&(b.len() as u32).to_le_bytes());
            rec.extend_from_slice(b);
        }
        rec.extend_from_slice(fake_id(i, 8).as_bytes());
        f.write_all(&rec)?;
        if durable && (i + 1) % group == 0 {
            rustix::fs::fdatasync(&f)?;
        }
    }
    if durable {
        rustix::fs::fdatasync(&f)?;
    }
    Ok(())
}
