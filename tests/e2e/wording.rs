//! What a user reads (#16 point 7): counts of one in the singular, the export's path without
//! `..`, global options apart from a command's own in `-h`, and demos whose expected
//! failures print nothing in a passing run.

use gatos_testutil::{TempRepo, TestResult};

use crate::support::{gatos_cmd, gatos_ok, git_gatos_bin, json_lines};

#[test]
fn counts_of_one_are_singular() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", "1"])?;
    let topics = gatos_ok(&repo, &["messages", "topics"])?;
    assert!(topics.contains("(1 message, 1 segment)"), "{topics}");

    // Segments of two messages, keep one: prune drops the one sealed segment.
    gatos_ok(
        &repo,
        &[
            "messages",
            "config",
            "t",
            "--max-messages",
            "2",
            "--retain-messages",
            "1",
        ],
    )?;
    for n in 2..=3 {
        gatos_ok(
            &repo,
            &["messages", "publish", "t", "--data", &n.to_string()],
        )?;
    }
    let topics = gatos_ok(&repo, &["messages", "topics"])?;
    assert!(topics.contains("(3 messages, 2 segments)"), "{topics}");
    let dry = gatos_ok(&repo, &["messages", "prune", "t", "--dry-run"])?;
    assert!(dry.contains("would prune 2 messages ("), "{dry}");
    assert!(dry.contains(" bytes) in 1 segment of t"), "{dry}");
    let pruned = gatos_ok(&repo, &["messages", "prune", "t"])?;
    assert!(pruned.starts_with("pruned 2 messages ("), "{pruned}");
    assert!(pruned.contains("in 1 segment of t"), "{pruned}");
    Ok(())
}

#[test]
fn export_prints_a_clean_absolute_path() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", "1"])?;
    let out = gatos_ok(
        &repo,
        &["export", "--format", "sqlite", "--out", "../ledger.sqlite"],
    )?;
    let want = std::fs::canonicalize(repo.path().join(".."))?.join("ledger.sqlite");
    assert!(
        out.contains(&format!("exported to {} (sqlite)", want.display())),
        "{out}"
    );
    assert!(!out.contains(".."), "{out}");
    // One message: its table line counts one row.
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(3).eq(["messages", "1", "row"])),
        "{out}"
    );
    let json = json_lines(&gatos_ok(
        &repo,
        &[
            "export",
            "--json",
            "--format",
            "sqlite",
            "--out",
            "../again.sqlite",
        ],
    )?)?;
    assert_eq!(
        json[0]["out"],
        want.with_file_name("again.sqlite").display().to_string()
    );
    Ok(())
}

/// The flags a `-h`/`--help` section lists: its lines that start with `-`, up to the next
/// heading.
fn section_flags(help: &str, heading: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            l.split([' ', '.'])
                .find(|w| w.starts_with("--"))
                .unwrap_or(l)
                .to_owned()
        })
        .collect()
}

#[test]
fn help_lists_global_options_apart_from_the_commands_own() -> TestResult {
    let repo = TempRepo::new()?;
    for args in [&["jobs", "ls", "-h"][..], &["messages", "read", "--help"]] {
        let out = gatos_cmd(&repo, args).output()?;
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout)?;
        let own = section_flags(&help, "Options:");
        let global = section_flags(&help, "Global options:");
        assert!(own.iter().any(|f| f == "--since"), "{args:?}: {own:?}");
        assert!(own.iter().any(|f| f == "--help"), "{args:?}: {own:?}");
        assert_eq!(
            global,
            ["--json", "--quiet", "--verbose", "--color"],
            "{args:?}: {help}"
        );
        assert!(!own.iter().any(|f| global.contains(f)), "{args:?}: {own:?}");
    }
    Ok(())
}

#[test]
fn demos_say_their_failures_are_expected_and_a_quiet_run_prints_no_error() -> TestResult {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bins = git_gatos_bin();
    let bins = bins.parent().ok_or("no bin dir")?;
    for demo in ["jobs.sh", "messages.sh"] {
        let run = |quiet: bool| {
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(root.join("demos").join(demo))
                .env("GATOS_BIN_DIR", bins)
                .env_remove("GATOS_DEMO_QUIET")
                .stdin(std::process::Stdio::null());
            if quiet {
                cmd.env("GATOS_DEMO_QUIET", "1");
            }
            cmd.output()
        };
        // As scripts/test.sh runs them: stdout dropped, stderr shown.
        let quiet = run(true)?;
        let stderr = String::from_utf8_lossy(&quiet.stderr);
        assert!(quiet.status.success(), "{demo}: {stderr}");
        assert!(
            !stderr.contains("error["),
            "{demo} printed an error: {stderr}"
        );
        // Shown in full, each expected failure is announced on the line before its output.
        let full = run(false)?;
        assert!(full.status.success(), "{demo}");
        let shown = String::from_utf8_lossy(&full.stdout);
        let lines: Vec<&str> = shown.lines().collect();
        let mut errors = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("error[") {
                errors += 1;
                assert!(
                    i > 0 && lines[i - 1].starts_with("expected: "),
                    "{demo}: unannounced {l}"
                );
            }
        }
        assert!(errors > 0, "{demo} shows its expected failures: {shown}");
    }
    Ok(())
}
