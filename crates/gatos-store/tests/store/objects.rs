use gatos_store::objects::{NewCommit, Objects};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::Timestamp;

use crate::{commit, store};

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

/// A commit is written without first looking for it (issue #21); written again, the
/// object file already there is kept (the same inode, its bytes untouched) and no temp
/// file is left: replacing it would put bytes not yet on disk under refs that name it.
#[test]
fn a_commit_written_again_keeps_the_object_file_there() -> TestResult {
    use std::os::unix::fs::MetadataExt as _;
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let write = || -> TestResult<gatos_types::Oid> {
        let mut w = s.writer();
        let tree = w.files(&[])?;
        let c = w.commit(&NewCommit {
            tree,
            parents: &[],
            message: "again\n\nGatos-Kind: test\n",
            time: Timestamp::from_millis(1_700_000_000_000),
        })?;
        w.finish()?;
        Ok(c)
    };
    let c = write()?;
    let hex = c.to_string();
    let dir = repo.git_dir().join("objects").join(&hex[..2]);
    let path = dir.join(&hex[2..]);
    let before = std::fs::metadata(&path)?;
    assert_eq!(write()?, c);
    let after = std::fs::metadata(&path)?;
    assert_eq!(
        (before.ino(), before.mtime(), before.mtime_nsec()),
        (after.ino(), after.mtime(), after.mtime_nsec())
    );
    let temps: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp_obj"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    repo.git(&["update-ref", "refs/gatos/t", &hex])?;
    repo.assert_fsck_strict()
}

/// Writes a pack of a chain of `n` commits (each with a one-file tree); returns its guard
/// and the chain's tip.
fn chain_pack(
    s: &gatos_store::Store,
    n: u32,
) -> Result<(gatos_store::pack::PackGuard, Option<gatos_types::Oid>), gatos_store::Error> {
    let mut w = s.pack_writer();
    let mut tip = None;
    for i in 0..n {
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
    Ok((w.finish()?, tip))
}

#[test]
fn a_pack_keeps_its_keep_until_the_guard_goes() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (guard, tip) = chain_pack(&s, 50)?;
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

/// A pack is named by its checksum (plain SHA-1): one already in place under the name of the
/// pack being written is taken for it only when their bytes are the same. Another pack
/// under that name (a checksum collision, simulated here by changing the file) is an error,
/// not a pack whose objects were silently never written.
#[test]
fn a_pack_in_place_under_the_same_name_is_taken_only_when_its_bytes_are_the_same() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let write = || chain_pack(&s, 40).map(|(guard, _)| guard);
    let first = write()?;
    let pack = first.pack.clone().ok_or("no pack written")?;
    drop(first);
    let bytes = std::fs::read(&pack)?;
    // The same pack again: left alone.
    let again = write()?;
    assert_eq!(again.pack.as_deref(), Some(pack.as_path()));
    drop(again);
    assert_eq!(std::fs::read(&pack)?, bytes);
    // Another pack under its name: refused, and the file is not replaced.
    let mut other = bytes.clone();
    other[12] ^= 0xff;
    std::fs::write(&pack, &other)?;
    let Err(e) = write() else {
        return Err("a different pack under the same name was taken for this one".into());
    };
    assert!(matches!(e, gatos_store::Error::Corrupt { .. }), "{e}");
    assert_eq!(std::fs::read(&pack)?, other);
    Ok(())
}

/// The pack index gatos writes from what it knows while writing the pack (ADR 0046,
/// session 5) is byte for byte the index gix-pack builds by reading the same pack back,
/// and git verifies both: objects of every kind, empty ones, and a blob over 64 KiB (several
/// zlib stored blocks and a long size in the entry header).
#[test]
fn a_pack_index_is_the_one_gix_pack_and_git_would_build() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let mut w = s.pack_writer();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let empty = w.blob(b"")?;
    let large = w.blob(&big)?;
    let mut tip = None;
    for i in 0..300 {
        let b = w.blob(format!("message {i}").as_bytes())?;
        let t = w.files(&[("n", b), ("empty", empty), ("large", large)])?;
        let parents: Vec<_> = tip.into_iter().collect();
        tip = Some(w.commit(&NewCommit {
            tree: t,
            parents: &parents,
            message: &format!("{i}\n"),
            time: Timestamp::from_millis(1_700_000_000_000),
        })?);
    }
    let guard = w.finish()?;
    let pack = guard.pack.clone().ok_or("no pack written")?;
    assert_git_would_index(&repo, &pack)?;
    let tip = tip.ok_or("no commit")?;
    repo.git(&["update-ref", "refs/gatos/t", &tip.to_string()])?;
    drop(guard);
    assert_eq!(
        repo.git(&["cat-file", "-s", &large.to_string()])?.trim(),
        "200000"
    );
    assert_eq!(
        repo.git(&["cat-file", "-s", &empty.to_string()])?.trim(),
        "0"
    );
    repo.assert_fsck_strict()
}

/// Checks that the index gatos wrote for `pack` is byte for byte the one gix-pack builds
/// by reading the pack back, that the pack's name is its checksum, and that git verifies it.
fn assert_git_would_index(repo: &TempRepo, pack: &std::path::Path) -> TestResult {
    let ours = std::fs::read(pack.with_extension("idx"))?;
    let bytes = std::fs::read(pack)?;
    let theirs_dir = tempfile::tempdir()?;
    let interrupt = std::sync::atomic::AtomicBool::new(false);
    let outcome = gix_pack::Bundle::write_to_directory(
        &mut &bytes[..],
        Some(theirs_dir.path()),
        &mut gix::progress::Discard,
        &interrupt,
        None::<gix::objs::find::Never>,
        gix::hash::Kind::Sha1,
        gix_pack::bundle::write::Options::default(),
    )?;
    let theirs_pack = outcome.data_path.ok_or("gix-pack wrote no pack")?;
    assert_eq!(
        theirs_pack.file_name(),
        pack.file_name(),
        "the pack's name is its checksum"
    );
    let theirs = std::fs::read(outcome.index_path.ok_or("gix-pack wrote no index")?)?;
    assert_eq!(ours.len(), theirs.len());
    assert!(ours == theirs, "the index differs from gix-pack's");
    let verify = repo.git(&[
        "verify-pack",
        "-v",
        &pack.with_extension("idx").to_string_lossy(),
    ])?;
    assert!(verify.contains(": ok"), "{verify}");
    Ok(())
}

/// How a test of [`gatos_store::pack::PackWriter::write_ahead`] goes on after starting it.
#[derive(Clone, Copy, Debug)]
enum Ahead {
    /// The commits said.
    AsSaid,
    /// Fewer commits than said.
    Fewer,
    /// The commits said and one object more, a blob put a second time.
    Twice,
}

/// Writes 400 blobs of 300 bytes and their trees (one blob twice), starts the pack's writing
/// ahead, then puts
/// a chain of 400 commits (as a batch does), and checks the pack: the index is git's, every
/// object is in it once and reads back, and the refs pass `fsck --strict`. Returns the
/// pack's objects in the pack's order, as `git verify-pack -v` lists them (id and type).
fn ahead_pack(how: Ahead) -> TestResult<Vec<(String, String)>> {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let mut w = s.pack_writer();
    let n = 400u32;
    let mut made = Vec::new();
    for i in 0..n {
        let body = format!("{i:0>300}");
        let b = w.blob(body.as_bytes())?;
        let t = w.files(&[("n", b)])?;
        made.push((b, t));
    }
    // Put twice before the writing ahead starts: the first part holds it once.
    w.blob(format!("{:0>300}", 5).as_bytes())?;
    let said = match how {
        Ahead::AsSaid => n as usize,
        Ahead::Twice => n as usize + 1,
        Ahead::Fewer => n as usize + 7,
    };
    w.write_ahead(said);
    let mut tip = None;
    for (i, (_, t)) in made.iter().enumerate() {
        if matches!(how, Ahead::Twice) && i == 200 {
            // Put again: a pack that held it twice would be refused by git.
            w.blob(format!("{:0>300}", 17).as_bytes())?;
        }
        let parents: Vec<_> = tip.into_iter().collect();
        let message = format!("message {i}\n\n{}\n", "x".repeat(400));
        tip = Some(w.commit(&NewCommit {
            tree: *t,
            parents: &parents,
            message: &message,
            time: Timestamp::from_millis(1_700_000_000_000),
        })?);
    }
    let guard = w.finish()?;
    assert_eq!(guard.objects, 3 * n as usize, "{how:?}: each object once");
    let pack = guard.pack.clone().ok_or("no pack written")?;
    assert_git_would_index(&repo, &pack)?;
    let tip = tip.ok_or("no commit")?;
    repo.git(&["update-ref", "refs/gatos/t", &tip.to_string()])?;
    drop(guard);
    assert_eq!(
        repo.git(&["rev-list", "--count", "refs/gatos/t"])?.trim(),
        n.to_string()
    );
    assert_eq!(
        repo.git(&["cat-file", "blob", &format!("{tip}:n")])?,
        format!("{:0>300}", n - 1)
    );
    repo.assert_fsck_strict()?;
    let listed = repo.git(&[
        "verify-pack",
        "-v",
        &pack.with_extension("idx").to_string_lossy(),
    ])?;
    let mut entries: Vec<(u64, String, String)> = listed
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[0].len() == 40)
                .then(|| Some((f[4].parse().ok()?, f[0].to_owned(), f[1].to_owned())))
                .flatten()
        })
        .collect();
    entries.sort();
    let pack_dir = pack.parent().ok_or("a pack with no directory")?;
    let left: Vec<_> = std::fs::read_dir(pack_dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("pack-"))
        .collect();
    assert!(left.is_empty(), "{how:?}: temporary files left: {left:?}");
    Ok(entries
        .into_iter()
        .map(|(_, id, kind)| (id, kind))
        .collect())
}

/// A pack written ahead (ADR 0046, session 16): the envelopes' blobs and trees are encoded,
/// checksummed and written on the pack's own thread while the commits are made, and the
/// commits follow in parts. The pack and its index are the ones git reads, each object
/// once; on a machine with a second CPU the pack holds the objects in the order put.
#[test]
fn a_pack_written_ahead_is_the_one_git_would_index() -> TestResult {
    let order = ahead_pack(Ahead::AsSaid)?;
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        assert_eq!(order[0].1, "blob", "written ahead, in the order put");
        assert_eq!(order[1].1, "tree");
        assert_eq!(order.last().map(|o| o.1.as_str()), Some("commit"));
    }
    Ok(())
}

/// When what comes after the start of a pack's writing ahead is not what was said (fewer
/// objects, so the header's count is wrong, or an object put a second time, which would
/// make it twice in the pack), the pack is written again from the same objects, by kind:
/// still the pack git reads, each object once, no temporary file left.
#[test]
fn a_pack_written_ahead_is_written_again_when_its_count_does_not_hold() -> TestResult {
    for how in [Ahead::Fewer, Ahead::Twice] {
        let order = ahead_pack(how)?;
        assert_eq!(
            order[0].1, "commit",
            "{how:?}: written again, commits first"
        );
    }
    Ok(())
}

/// A pack writer given up after its pack's writing ahead started (its caller failed)
/// stops the pack's thread and leaves nothing in `objects/pack`.
#[test]
fn a_pack_writer_given_up_while_writing_ahead_leaves_nothing() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let mut w = s.pack_writer();
    for i in 0..400u32 {
        w.blob(format!("{i:0>300}").as_bytes())?;
    }
    w.write_ahead(10);
    for i in 0..400u32 {
        w.blob(format!("more {i:0>300}").as_bytes())?;
    }
    drop(w);
    let dir = repo.git_dir().join("objects").join("pack");
    let left: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect(),
        Err(_) => Vec::new(),
    };
    assert!(left.is_empty(), "left in objects/pack: {left:?}");
    Ok(())
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

/// A configured name or e-mail holding characters that would break a commit's author line
/// is cleaned as git cleans it (compared with `git var GIT_COMMITTER_IDENT` over the same
/// config), and commits are written: before, every write panicked.
#[test]
fn identities_are_cleaned_as_git_cleans_them() -> TestResult {
    for (name, email) in [
        ("Ann <x> \nB", "<a@b>"),
        ("  .Dr. Who, Jr.  ", "who@tardis."),
        ("Zo\u{eb} \"Z\" O'Neil", " z@x "),
        ("plain", "p@q"),
    ] {
        let repo = TempRepo::new()?;
        repo.git(&["config", "user.name", name])?;
        repo.git(&["config", "user.email", email])?;
        let s = store(&repo)?;
        let mut var = repo.git_cmd(&["var", "GIT_COMMITTER_IDENT"]);
        var.env_remove("GIT_COMMITTER_NAME")
            .env_remove("GIT_COMMITTER_EMAIL");
        let out = var.output()?;
        assert!(out.status.success(), "git var failed for {name:?}");
        let ident = String::from_utf8(out.stdout)?;
        let (who, _) = ident.rsplit_once('>').ok_or("no e-mail in git's ident")?;
        let (git_name, git_email) = who.split_once(" <").ok_or("no name in git's ident")?;
        assert_eq!(
            (s.identity().name.as_str(), s.identity().email.as_str()),
            (git_name, git_email),
            "{name:?} <{email:?}>"
        );
        let c = commit(&s, "x")?;
        let shown = repo.git(&["log", "-1", "--format=%an <%ae>", &c.to_string()])?;
        assert_eq!(shown.trim(), format!("{git_name} <{git_email}>"));
        repo.git(&["update-ref", "refs/gatos/t", &c.to_string()])?;
        repo.assert_fsck_strict()?;
    }
    Ok(())
}

/// A long-running process that writes more packs than its object store had slots for at
/// open (maintenance off, or failing) still reads every object: the store opens its object
/// store again when the packs on disk fill three quarters of the slots. Without that, gix
/// fails every read past 1,024 packs ("too few index slots").
#[test]
fn more_packs_than_slots_at_open_are_still_read() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let mut ids = Vec::new();
    for i in 0..1_100u32 {
        let mut w = s.pack_writer();
        let id = w.put_owned(
            gatos_store::objects::Kind::Blob,
            format!("pack {i}\n").into_bytes(),
        )?;
        drop(w.finish()?);
        // Read soon after, as a process does after it wrote: the new pack must be found.
        if i % 8 == 0 {
            assert_eq!(s.reader().blob(id)?, format!("pack {i}\n").into_bytes());
        }
        ids.push(id);
    }
    let mut r = s.reader();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(r.blob(*id)?, format!("pack {i}\n").into_bytes());
    }
    Ok(())
}

/// What a crash of a batch writer leaves in `objects/pack` is removed by maintenance once
/// it is an hour old: gatos's own `.keep` files and the temporary files of packs being
/// written (gix's `.tmp` and six letters or digits). Younger ones, another tool's `.keep`
/// and git's own temporary files stay.
#[test]
fn maintenance_removes_what_a_crashed_batch_left_once_it_is_old() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let dir = repo.git_dir().join("objects").join("pack");
    std::fs::create_dir_all(&dir)?;
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let put = |name: &str, body: &str, old: bool| -> TestResult {
        let path = dir.join(name);
        std::fs::write(&path, body)?;
        if old {
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(two_hours_ago)?;
        }
        Ok(())
    };
    let ours = format!("{} pid=1\n", gatos_store::pack::KEEP_MARKER);
    put("pack-old.keep", &ours, true)?;
    put("pack-new.keep", &ours, false)?;
    put("pack-theirs.keep", "kept by hand\n", true)?;
    put(".tmpAb12Cd", "PACK half written", true)?;
    put(".tmpZz99Yy", "PACK being written", false)?;
    put(".tmp-123-pack-abc", "git's", true)?;
    put("tmp_pack_AbCdEf", "git's", true)?;
    let keeps = s.remove_stale_keeps()?;
    let temporaries = s.remove_stale_temporaries()?;
    assert_eq!(keeps, vec![dir.join("pack-old.keep")]);
    assert_eq!(temporaries, vec![dir.join(".tmpAb12Cd")]);
    let mut left: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".tmp-123-pack-abc",
            ".tmpZz99Yy",
            "pack-new.keep",
            "pack-theirs.keep",
            "tmp_pack_AbCdEf"
        ]
    );
    // A maintenance run does both and says so.
    put(".tmpQq11Rr", "PACK", true)?;
    let report = s.run_maintenance(None)?;
    assert_eq!(
        report.stale_temporaries_removed,
        vec![dir.join(".tmpQq11Rr")]
    );
    Ok(())
}

/// A pack whose writing fails (here `objects/pack` is a file, so its temporary file cannot
/// be made) fails `finish`, written ahead or not: never a pack taken for written.
#[test]
fn a_pack_that_cannot_be_written_fails_its_finish() -> TestResult {
    for ahead in [true, false] {
        let repo = TempRepo::new()?;
        let s = store(&repo)?;
        let dir = repo.git_dir().join("objects").join("pack");
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::write(&dir, "not a directory")?;
        let mut w = s.pack_writer();
        for i in 0..400u32 {
            w.blob(format!("{i:0>300}").as_bytes())?;
        }
        if ahead {
            w.write_ahead(400);
        }
        for i in 0..400u32 {
            w.blob(format!("more {i:0>300}").as_bytes())?;
        }
        let Err(e) = w.finish() else {
            return Err(format!("ahead {ahead}: a pack was taken for written").into());
        };
        assert!(
            matches!(e, gatos_store::Error::Io { .. }),
            "ahead {ahead}: {e}"
        );
        assert_eq!(std::fs::read_to_string(&dir)?, "not a directory");
    }
    Ok(())
}
