//! `scripts/install.sh` (#16 point 2): both binaries, man pages generated from the clap
//! definitions, bash/zsh/fish completions; idempotent; `git gatos` found through PATH alone.
//! The script installs the debug binaries of this build (`--bin-dir`): a release build
//! here would take minutes. `man` is used only where it is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gatos_testutil::{TestResult, hermetic};

use crate::support::git_gatos_bin;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first executable `name` on this process's PATH.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `scripts/install.sh --prefix PREFIX --bin-dir <this build's binaries>`.
fn install(prefix: &Path, home: &Path) -> TestResult<Output> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bins = git_gatos_bin();
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/install.sh"))
        .arg("--prefix")
        .arg(prefix)
        .arg("--bin-dir")
        .arg(bins.parent().ok_or("no bin dir")?);
    hermetic(&mut cmd, home);
    let out = cmd.env_remove("MANPATH").output()?;
    assert!(
        out.status.success(),
        "install.sh failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(out)
}

/// `git gatos ARGS` with PATH = the prefix's bin and a directory holding only `git`: no
/// workspace binaries, no exec-path tricks, no `man`.
fn git_gatos(prefix: &Path, home: &Path, args: &[&str]) -> TestResult<Output> {
    let git_only = home.join("git-only");
    if !git_only.exists() {
        std::fs::create_dir_all(&git_only)?;
        std::os::unix::fs::symlink(which("git").ok_or("no git on PATH")?, git_only.join("git"))?;
    }
    let path = std::env::join_paths([prefix.join("bin"), git_only])?;
    let mut cmd = Command::new("git");
    cmd.arg("gatos").args(args).current_dir(home);
    hermetic(&mut cmd, home);
    Ok(cmd.env("PATH", path).output()?)
}

/// The subcommands `git-gatos PLANE -h` lists under "Commands:".
fn subcommands(prefix: &Path, home: &Path, plane: &str) -> TestResult<Vec<String>> {
    let out = git_gatos(prefix, home, &[plane, "-h"])?;
    let help = text(&out.stdout);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a description's second line
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() > 3, "no subcommands in: {help}");
    Ok(names)
}

/// True when a line of install.sh's report is `STATE  WHAT`.
fn says(report: &str, state: &str, what: &str) -> bool {
    report.lines().any(|l| {
        l.trim_start()
            .strip_prefix(state)
            .is_some_and(|r| r.trim_start() == what)
    })
}

/// A man page's text, checked to be roff: `.TH` first (after the roff crate's definition
/// of the apostrophe string, `.ie`/`.el`), then NAME, SYNOPSIS and DESCRIPTION.
fn roff(path: &Path) -> TestResult<String> {
    let page = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap_or_default();
    assert!(
        first.starts_with(".TH "),
        "{} is not roff: {first}",
        path.display()
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"] {
        assert!(page.contains(section), "{} lacks {section}", path.display());
    }
    Ok(page)
}

#[test]
fn install_sh_installs_binaries_man_pages_and_completions_idempotently() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let prefix = tmp.path().join("prefix");
    let first = install(&prefix, &home)?;
    let said = text(&first.stdout);
    for b in ["bin/git-gatos", "bin/gatosd"] {
        assert!(says(&said, "new", b), "new {b} not in: {said}");
    }
    // The prefix's bin is not on this PATH: the script says what to add.
    assert!(
        said.contains(&format!("export PATH=\"{}/bin:$PATH\"", prefix.display())),
        "{said}"
    );

    // Binaries.
    for b in ["git-gatos", "gatosd"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(prefix.join("bin").join(b))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{b}");
    }

    // Man pages: one per command, subcommand and verb, valid roff, naming their subcommands.
    let man1 = prefix.join("share/man/man1");
    let top = roff(&man1.join("git-gatos.1"))?;
    assert!(top.contains("git\\-gatos\\-jobs(1)"), "{top}");
    let jobs = roff(&man1.join("git-gatos-jobs.1"))?;
    for sub in subcommands(&prefix, &home, "jobs")? {
        assert!(
            jobs.contains(&format!("git\\-gatos\\-jobs\\-{sub}(1)")),
            "git-gatos-jobs.1 does not name {sub}"
        );
        roff(&man1.join(format!("git-gatos-jobs-{sub}.1")))?;
    }
    let enqueue = roff(&man1.join("git-gatos-jobs-enqueue.1"))?;
    assert!(enqueue.contains("max\\-attempts"), "{enqueue}");
    let gatosd = roff(&man1.join("gatosd.1"))?;
    for flag in ["listen", "read\\-only", "sync\\-interval"] {
        assert!(gatosd.contains(flag), "gatosd.1 lacks {flag}");
    }
    assert!(
        !man1.join("git-gatos-generate.1").exists(),
        "hidden command"
    );
    assert!(!man1.join("gatosd-generate.1").exists(), "hidden command");

    // Completions, where bash-completion, zsh and fish look.
    let share = prefix.join("share");
    let bash = std::fs::read_to_string(share.join("bash-completion/completions/git-gatos"))?;
    assert!(
        bash.contains("_git_gatos()") && bash.contains("enqueue"),
        "{bash}"
    );
    let zsh = std::fs::read_to_string(share.join("zsh/site-functions/_git-gatos"))?;
    assert!(zsh.starts_with("#compdef git-gatos") && zsh.contains("enqueue"));
    let fish = std::fs::read_to_string(share.join("fish/vendor_completions.d/git-gatos.fish"))?;
    assert!(fish.contains("complete -c git-gatos") && fish.contains("enqueue"));
    for f in [
        "bash-completion/completions/gatosd",
        "zsh/site-functions/_gatosd",
        "fish/vendor_completions.d/gatosd.fish",
    ] {
        let s = std::fs::read_to_string(share.join(f))?;
        assert!(s.contains("listen"), "{f}");
    }

    // Again, with a page of a command that no longer exists: nothing changes but that page.
    std::fs::write(man1.join("git-gatos-gone.1"), ".TH old\n")?;
    let again = text(&install(&prefix, &home)?.stdout);
    assert!(again.contains("done: 0 new, 0 updated"), "{again}");
    assert!(says(&again, "unchanged", "bin/git-gatos"), "{again}");
    assert!(
        says(
            &again,
            "removed",
            "share/man/man1: git-gatos-gone.1 (no such command any more)"
        ),
        "{again}"
    );
    assert!(!man1.join("git-gatos-gone.1").exists());

    // git finds `git gatos` through PATH alone; -h and `help` need no man.
    let version = git_gatos(&prefix, &home, &["--version"])?;
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert_eq!(
        text(&version.stdout).trim(),
        format!("git gatos {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [&["-h"][..], &["help"], &["jobs", "-h"], &["help", "jobs"]] {
        let out = git_gatos(&prefix, &home, args)?;
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(help.contains("Usage: git gatos"), "{args:?}: {help}");
        assert!(
            !help.contains("generate"),
            "{args:?} shows the hidden command"
        );
    }

    // Where man is installed: it finds the pages, and `git gatos --help` shows one.
    if which("man").is_some() {
        let mut cmd = Command::new("man");
        hermetic(&mut cmd, &home);
        let found = cmd
            .args(["-w", "git-gatos"])
            .env("MANPATH", prefix.join("share/man"))
            .output()?;
        assert!(found.status.success(), "{}", text(&found.stderr));
        assert_eq!(
            PathBuf::from(text(&found.stdout).trim()),
            man1.join("git-gatos.1")
        );
    }
    if which("man").is_some() && which("nroff").is_some() {
        let mut cmd = Command::new("git");
        hermetic(&mut cmd, &home);
        let path = format!(
            "{}:{}",
            prefix.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let help = cmd
            .args(["gatos", "--help"])
            .current_dir(&home)
            .env("PATH", path)
            .env("MANPATH", prefix.join("share/man"))
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()?;
        assert!(help.status.success(), "{}", text(&help.stderr));
        let page = text(&help.stdout);
        assert!(page.contains("SYNOPSIS") && page.contains("jobs"), "{page}");
    }
    Ok(())
}
