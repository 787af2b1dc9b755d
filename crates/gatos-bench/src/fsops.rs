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
//!
//! `fsops <dir> claim <n> <workers> 0` is the floor of a claim + complete through gatosd
//! (issue #21's claim rows): for each of n jobs set up beforehand (a `job` ref and its three
//! loose objects), the file operations the contracts need, issued directly by `workers`
//! threads taking jobs in turn. The claim reads the job's four refs and three objects,
//! writes the claim commit's three loose objects and the `claim` ref (a `.lock` file and
//! a rename) and appends one event to an open journal; the complete reads the `claim` and
//! `result` refs and the claim's three objects, writes seven loose objects (the proof, the
//! result's trees and commit, the `closed` claim's blob, tree and commit), the `result` and
//! `claim` refs, and one event. The cheapest calls throughout (`loose-trim`'s: paths
//! relative to kept directory handles, no existence probe, one open of the job's
//! directory per action); no hashing, no encoding, no signature, no socket; the events'
//! own commits (made later, in groups) are left out. `claim-pack` writes each action's
//! objects as one pack instead (the pack and its index as temp files renamed into
//! `objects/pack`, with a `.keep` file from before the pack is there until the refs moved,
//! as `gatos-store`'s group commit does, so a concurrent `git repack -a -d` cannot drop
//! them). So these are what the file system allows a claim + complete written as loose
//! objects or as a pack per action, with refs as git writes them.

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
    if path.starts_with("claim") {
        claim_setup(&dir, n)?;
    }
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
        "claim" | "claim-pack" if durable => {
            return Err("the claim floor is measured without fsync".into());
        }
        "claim" => claim(&dir, n, group, false)?,
        "claim-pack" => claim(&dir, n, group, true)?,
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

/// The sizes of the objects of a claim (blob, tree, commit) and of a complete (proof,
/// two trees, result commit, closed claim blob, tree, commit), encoded, as gatos writes them.
const CLAIM_SIZES: [usize; 3] = [420, 50, 640];
const COMPLETE_SIZES: [usize; 7] = [900, 120, 90, 700, 450, 50, 690];

fn job_dir(i: u64) -> String {
    format!("refs/fsops/jobs/{i:026}")
}

/// Writes the jobs a `claim` run takes: a `job` ref and three loose objects each.
fn claim_setup(dir: &Path, n: u64) -> R {
    let objects = dir.join("objects");
    for i in 0..n {
        let jd = dir.join(job_dir(i));
        std::fs::create_dir_all(&jd)?;
        std::fs::write(jd.join("job"), format!("{}\n", fake_id(i, 100)))?;
        for k in 100..103 {
            let id = fake_id(i, k);
            let fan = objects.join(&id[..2]);
            std::fs::create_dir_all(&fan)?;
            std::fs::write(fan.join(&id[2..]), vec![b'j'; 300])?;
        }
    }
    Ok(())
}

/// One loose object, `loose-trim`'s way: a temp file in `objects/`, renamed into place.
fn put_trim(odir: &rustix::fd::OwnedFd, tmp: &str, id: &str, data: &[u8]) -> R {
    let fd = rustix::fs::openat(
        odir.as_fd(),
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
    )?;
    File::from(fd).write_all(data)?;
    let target = format!("{}/{}", &id[..2], &id[2..]);
    match rustix::fs::renameat(odir.as_fd(), tmp, odir.as_fd(), target.as_str()) {
        Err(rustix::io::Errno::NOENT) => {
            match rustix::fs::mkdirat(odir.as_fd(), &id[..2], Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            rustix::fs::renameat(odir.as_fd(), tmp, odir.as_fd(), target.as_str())?;
        }
        r => r?,
    }
    Ok(())
}

/// A ref written as git does: `name.lock` created exclusively, written, renamed.
fn set_ref(jdir: &rustix::fd::OwnedFd, name: &str, value: &str) -> R {
    let lock = format!("{name}.lock");
    let fd = rustix::fs::openat(
        jdir.as_fd(),
        lock.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    File::from(fd).write_all(value.as_bytes())?;
    rustix::fs::renameat(jdir.as_fd(), lock.as_str(), jdir.as_fd(), name)?;
    Ok(())
}

/// Reads a file relative to a directory handle, if it is there.
fn read_at(dir: &rustix::fd::OwnedFd, name: &str, buf: &mut Vec<u8>) -> R {
    use std::io::Read as _;
    buf.clear();
    match rustix::fs::openat(
        dir.as_fd(),
        name,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            File::from(fd).read_to_end(buf)?;
            Ok(())
        }
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One action's objects as one pack: `.keep` first, the pack and its index renamed into
/// place; the `.keep` is removed by [`unkeep`] once the refs moved.
fn put_pack(pdir: &rustix::fd::OwnedFd, name: &str, objects: &[usize]) -> R {
    let create = |p: &str| {
        rustix::fs::openat(
            pdir.as_fd(),
            p,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o444),
        )
    };
    File::from(create(&format!("pack-{name}.keep"))?).write_all(b"gatos\n")?;
    let pack = vec![b'p'; 12 + objects.iter().map(|s| s + 3).sum::<usize>() + 20];
    let idx = vec![b'i'; 8 + 1024 + objects.len() * 28 + 40];
    for (data, ext) in [(&pack, "pack"), (&idx, "idx")] {
        let tmp = format!("tmp_{ext}_{name}");
        File::from(create(&tmp)?).write_all(data)?;
        let target = format!("pack-{name}.{ext}");
        rustix::fs::renameat(pdir.as_fd(), tmp.as_str(), pdir.as_fd(), target.as_str())?;
    }
    Ok(())
}

fn unkeep(pdir: &rustix::fd::OwnedFd, name: &str) -> R {
    rustix::fs::unlinkat(
        pdir.as_fd(),
        format!("pack-{name}.keep").as_str(),
        rustix::fs::AtFlags::empty(),
    )?;
    Ok(())
}

fn claim(dir: &Path, n: u64, workers: u64, packs: bool) -> R {
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| -> R {
        let mut threads = Vec::new();
        for w in 0..workers {
            let next = &next;
            threads.push(s.spawn(move || -> Result<(), String> {
                claim_worker(dir, n, w, next, packs).map_err(|e| e.to_string())
            }));
        }
        for t in threads {
            t.join().map_err(|_| "a worker panicked")??;
        }
        Ok(())
    })
}

/// Reads loose objects `ks` of job `i`.
fn read_objects(
    odir: &rustix::fd::OwnedFd,
    i: u64,
    ks: std::ops::Range<usize>,
    buf: &mut Vec<u8>,
) -> R {
    for k in ks {
        let id = fake_id(i, k);
        read_at(odir, &format!("{}/{}", &id[..2], &id[2..]), buf)?;
    }
    Ok(())
}

/// Writes one action's objects of `sizes`: one pack named `name`, or loose objects `first..`.
#[allow(clippy::too_many_arguments)]
fn put_action(
    odir: &rustix::fd::OwnedFd,
    pdir: &rustix::fd::OwnedFd,
    packs: bool,
    name: &str,
    i: u64,
    first: usize,
    sizes: &[usize],
    tmp: &mut impl FnMut() -> String,
) -> R {
    if packs {
        return put_pack(pdir, name, sizes);
    }
    for (k, size) in sizes.iter().enumerate() {
        put_trim(odir, &tmp(), &fake_id(i, first + k), &vec![b'o'; *size])?;
    }
    Ok(())
}

fn claim_worker(dir: &Path, n: u64, w: u64, next: &std::sync::atomic::AtomicU64, packs: bool) -> R {
    let open_dir = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let odir = open_dir(&dir.join("objects"))?;
    let pdir = open_dir(&dir.join("objects/pack"))?;
    let mut events = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("events.journal"))?;
    let mut buf = Vec::new();
    let mut tmp_n = 0u64;
    let mut tmp = || {
        tmp_n += 1;
        format!("tmp_obj_bench_{w}_{tmp_n}")
    };
    let event = vec![b'e'; 400];
    loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if i >= n {
            return Ok(());
        }
        // The claim.
        let jdir = open_dir(&dir.join(job_dir(i)))?;
        for r in ["job", "claim", "result", "cancel"] {
            read_at(&jdir, r, &mut buf)?;
        }
        read_objects(&odir, i, 100..103, &mut buf)?;
        let name = fake_id(i, 50);
        put_action(&odir, &pdir, packs, &name, i, 0, &CLAIM_SIZES, &mut tmp)?;
        set_ref(&jdir, "claim", &format!("{}\n", fake_id(i, 2)))?;
        if packs {
            unkeep(&pdir, &name)?;
        }
        events.write_all(&event)?;
        drop(jdir);
        // The complete.
        let jdir = open_dir(&dir.join(job_dir(i)))?;
        for r in ["claim", "result"] {
            read_at(&jdir, r, &mut buf)?;
        }
        if !packs {
            read_objects(&odir, i, 0..3, &mut buf)?;
        }
        let name = fake_id(i, 51);
        put_action(&odir, &pdir, packs, &name, i, 10, &COMPLETE_SIZES, &mut tmp)?;
        set_ref(&jdir, "result", &format!("{}\n", fake_id(i, 13)))?;
        set_ref(&jdir, "claim", &format!("{}\n", fake_id(i, 16)))?;
        if packs {
            unkeep(&pdir, &name)?;
        }
        events.write_all(&event)?;
    }
}
