//! The command line's contract: output shapes, errors, exit codes, git integration.

use gatos_testutil::{TempRepo, TestResult};

use crate::support::{gatos, gatos_ok, gatos_stdin, json_lines, path_with_bins};

#[test]
fn git_runs_git_gatos_as_a_subcommand_from_any_directory() -> TestResult {
    let repo = TempRepo::new()?;
    std::fs::create_dir_all(repo.path().join("sub/dir"))?;
    let out = repo
        .git_cmd(&[
            "-C", "sub/dir", "gatos", "messages", "publish", "t", "--data", "1", "--json",
        ])
        .env("PATH", path_with_bins())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(row["seq"], 1);
    assert_eq!(row["duplicate"], false);
    for key in ["ulid", "seq", "topic", "content_id", "commit", "duplicate"] {
        assert!(row.get(key).is_some(), "missing {key}");
    }
    repo.assert_fsck_strict()
}

#[test]
fn init_is_idempotent_and_creates_a_private_key() -> TestResult {
    let repo = TempRepo::new()?;
    let first = json_lines(&gatos_ok(&repo, &["init", "--json"])?)?;
    let second = json_lines(&gatos_ok(&repo, &["init", "--json"])?)?;
    assert_eq!(first[0]["node"], second[0]["node"]);
    assert_eq!(first[0]["key"], second[0]["key"]);
    assert_eq!(first[0]["created_key"], true);
    assert_eq!(second[0]["created_key"], false);
    let key_path = first[0]["key_path"].as_str().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key_path)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        repo.git(&["config", "gatos.node"])?.trim(),
        first[0]["node"].as_str().unwrap()
    );
    assert!(
        repo.git(&["config", "--get-all", "gatos.trust"])?
            .contains(first[0]["key"].as_str().unwrap())
    );
    // The default identity applies when git has none.
    assert_eq!(first[0]["name"], "gatos");
    Ok(())
}

#[test]
fn errors_have_codes_exit_statuses_and_json_bodies() -> TestResult {
    let repo = TempRepo::new()?;
    let bad_name = gatos(&repo, &["messages", "publish", "Bad", "--data", "1"])?;
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad_name.stderr)
            .starts_with("error[InvalidInput]: invalid topic \"Bad\"")
    );
    let usage = gatos(&repo, &["messages", "publish", "t", "--nope"])?;
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).starts_with("error[InvalidInput]:"));
    let both = gatos(
        &repo,
        &["messages", "publish", "t", "--data", "1", "--file", "x"],
    )?;
    assert_eq!(both.status.code(), Some(2));
    let lost = gatos(
        &repo,
        &[
            "messages",
            "publish",
            "t",
            "--data",
            "1",
            "--expect-last-seq",
            "9",
            "--json",
        ],
    )?;
    assert_eq!(lost.status.code(), Some(3));
    let body: serde_json::Value = serde_json::from_slice(&lost.stdout)?;
    assert_eq!(body["error"]["code"], "Conflict");
    assert_eq!(body["error"]["status"], 409);
    let missing = gatos(
        &repo,
        &[
            "messages",
            "read",
            "t",
            "--since",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ],
    )?;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("error[NotFound]:"));
    let not_repo = tempfile::tempdir()?;
    let out = std::process::Command::new(crate::support::git_gatos_bin())
        .current_dir(not_repo.path())
        .args(["messages", "topics"])
        .env("GIT_CEILING_DIRECTORIES", not_repo.path().parent().unwrap())
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[NotFound]: not a git repository"));
    assert!(
        repo.refs("refs/gatos/")?.is_empty(),
        "failed commands changed nothing"
    );
    let help = gatos(&repo, &["messages", "publish", "-h"])?;
    assert_eq!(help.status.code(), Some(0));
    Ok(())
}

#[test]
fn a_closed_stdout_ends_output_quietly() -> TestResult {
    let repo = TempRepo::new()?;
    let lines: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    let out = gatos_stdin(
        &repo,
        &["messages", "publish", "t", "--batch", "-", "--quiet"],
        lines.as_bytes(),
    )?;
    assert!(out.status.success());
    let mut child = crate::support::gatos_cmd(&repo, &["messages", "read", "t"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first)?;
    drop(stdout);
    let status = child.wait()?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

#[test]
fn batch_failures_say_where_to_resume() -> TestResult {
    let repo = TempRepo::new()?;
    let input = "1\n2\n\n3\n{oops\n5\n";
    let out = gatos_stdin(
        &repo,
        &[
            "messages", "publish", "t", "--batch", "-", "--chunk", "2", "--json",
        ],
        input.as_bytes(),
    )?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 messages landed (through line 2); re-send from line 3"),
        "{stderr}"
    );
    let lines = json_lines(&String::from_utf8(out.stdout)?)?;
    assert_eq!(lines.len(), 3, "two rows, then the error object");
    assert_eq!(lines[2]["error"]["landed"], 2);
    assert_eq!(lines[2]["error"]["next_line"], 3);
    assert_eq!(
        gatos_ok(&repo, &["messages", "read", "t"])?.lines().count(),
        2
    );
    Ok(())
}

#[test]
fn a_closed_stderr_is_no_reason_to_panic() -> TestResult {
    let repo = TempRepo::new()?;
    crate::support::gatos_ok(&repo, &["init"])?;
    // stderr is a pipe whose reader has gone: writes fail with EPIPE.
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let out = crate::support::gatos_cmd(&repo, &["jobs", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()?;
    assert_eq!(out.code(), Some(1), "{out:?}");
    Ok(())
}
