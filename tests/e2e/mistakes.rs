//! Issue #16, point 5: a user's mistakes get answers — `--since` in every form, a command
//! without `--`, verifying a cancelled job, an untrusted proof, each error printed once.

use gatos_testutil::{TempRepo, TestResult};

use crate::support::{enqueue, gatos, gatos_cmd, gatos_ok, json_lines};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs git-gatos with the test clock at `at`.
fn at(repo: &TempRepo, at: &str, args: &[&str]) -> TestResult<String> {
    let out = gatos_cmd(repo, args)
        .env("GATOS_TEST_CLOCK", at)
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    Ok(stdout(&out))
}

fn seqs(lines: &str) -> TestResult<Vec<u64>> {
    Ok(json_lines(lines)?
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect())
}

#[test]
fn since_takes_a_ulid_a_time_or_a_duration_in_every_command() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let days = [
        "2026-03-01T00:00:00Z",
        "2026-03-02T00:00:00Z",
        "2026-03-03T00:00:00Z",
    ];
    let mut ulids = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let row = json_lines(&at(
            &repo,
            d,
            &[
                "messages",
                "publish",
                "t.days",
                "--data",
                &format!("{{\"i\":{i}}}"),
                "--json",
            ],
        )?)?;
        ulids.push(row[0]["ulid"].as_str().unwrap().to_owned());
    }
    let read = |since: &str| -> TestResult<Vec<u64>> {
        seqs(&at(
            &repo,
            "2026-03-03T12:00:00Z",
            &["messages", "read", "t.days", "--since", since, "--json"],
        )?)
    };
    // A ULID: after that message. A TIME: from the first message made at or after it.
    assert_eq!(read(&ulids[0])?, vec![2, 3]);
    assert_eq!(read("2026-03-02T00:00:00Z")?, vec![2, 3]);
    assert_eq!(read("2026-03-01T06:00:00Z")?, vec![2, 3]);
    assert_eq!(read("2026-02-01T00:00:00Z")?, vec![1, 2, 3]);
    assert_eq!(read("2026-04-01T00:00:00Z")?, Vec::<u64>::new());
    // A DUR: that long before now (the clock starts at 2026-03-03T12:00Z and runs on, so
    // give the boundary an hour's room: 37 h is 2026-03-01T23:00Z and a bit).
    assert_eq!(read("37h")?, vec![2, 3]);
    assert_eq!(read("1h")?, Vec::<u64>::new());

    // The same words, and the same errors, for a bad value everywhere.
    for args in [
        vec!["messages", "read", "t.days", "--since", "yesterday"],
        vec!["jobs", "ls", "--since", "yesterday"],
        vec!["jobs", "watch", "--since", "yesterday", "--limit", "1"],
        vec!["audit", "--since", "yesterday"],
        vec![
            "keys",
            "revoke",
            "ed25519:00",
            "--reason",
            "compromised",
            "--since",
            "yesterday",
        ],
    ] {
        let out = gatos(&repo, &args)?;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains("error[InvalidInput]: --since: \"yesterday\" is not a ULID"),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("error[").count(), 1, "printed once: {err}");
    }

    // jobs ls: a ULID (a job id) stands for the time it carries.
    let first = json_lines(&at(
        &repo,
        "2026-03-01T00:00:00Z",
        &["jobs", "enqueue", "--json", "--", "true"],
    )?)?[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = json_lines(&at(
        &repo,
        "2026-03-02T00:00:00Z",
        &["jobs", "enqueue", "--json", "--", "true"],
    )?)?[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The test clock starts at the given time and then runs, so a duration is checked
    // half a day away from the jobs' times, not on one of them (each process's start-up
    // time would decide which side of the line a job falls on).
    let ls = |now: &str, since: &str| -> TestResult<Vec<String>> {
        Ok(json_lines(&at(
            &repo,
            now,
            &["jobs", "ls", "--since", since, "--json"],
        )?)?
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect())
    };
    let then = "2026-03-03T00:00:00Z";
    assert_eq!(ls(then, &first)?, vec![first.clone(), second.clone()]);
    assert_eq!(ls(then, &second)?, vec![second.clone()]);
    assert_eq!(ls("2026-03-02T12:00:00Z", "1d")?, vec![second.clone()]);

    // jobs watch: a time starts at the first event made then (its enqueue is the second's).
    let events = json_lines(&at(
        &repo,
        "2026-03-03T00:00:00Z",
        &[
            "jobs",
            "watch",
            "--since",
            "2026-03-01T12:00:00Z",
            "--limit",
            "1",
            "--json",
        ],
    )?)?;
    assert_eq!(events[0]["job"], second.as_str());
    assert_eq!(events[0]["event"], "enqueued");

    // audit: a cancel, then the trail from a DUR and from a TIME after it.
    at(
        &repo,
        "2026-03-02T06:00:00Z",
        &["jobs", "cancel", &second, "--reason", "wrong branch"],
    )?;
    let audit = |since: &str| -> TestResult<usize> {
        Ok(json_lines(&at(
            &repo,
            "2026-03-03T00:00:00Z",
            &[
                "audit",
                "--since",
                since,
                "--action",
                "jobs.cancel",
                "--json",
            ],
        )?)?
        .len())
    };
    assert_eq!(audit("1d")?, 1);
    assert_eq!(audit("2026-03-02T07:00:00Z")?, 0);
    Ok(())
}

#[test]
fn a_command_without_the_double_dash_is_answered_with_the_line_that_runs_it() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let out = gatos(
        &repo,
        &["jobs", "enqueue", "--queue", "build", "make", "test"],
    )?;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "hint: the command to run goes after `--`: git gatos jobs enqueue --queue build -- make test"
        ),
        "{err}"
    );
    let out = gatos(&repo, &["jobs", "enqueue", "make", "it's"])?;
    assert!(
        stderr(&out).contains("git gatos jobs enqueue -- make 'it'\\''s'"),
        "{}",
        stderr(&out)
    );
    // Nothing was enqueued.
    assert_eq!(gatos_ok(&repo, &["jobs", "ls"])?, "");
    Ok(())
}

#[test]
fn verifying_a_cancelled_job_says_it_will_never_have_a_result() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let id = enqueue(&repo, &["--", "true"])?;
    gatos_ok(&repo, &["jobs", "cancel", &id, "--reason", "not needed"])?;
    let out = gatos(&repo, &["jobs", "verify", &id])?;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("before it ran: it will never have a result or a proof"),
        "{err}"
    );
    assert!(err.contains("(not needed)"), "{err}");
    assert_eq!(err.matches("error[").count(), 1, "printed once: {err}");
    assert_eq!(stdout(&out), "", "no second copy on stdout");
    // With --json: the operation's answer (as over RPC), then the error object.
    let out = gatos(&repo, &["jobs", "verify", &id, "--json"])?;
    let lines = json_lines(&stdout(&out))?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["verified"], false);
    assert_eq!(lines[1]["error"]["code"], "NotFound");
    Ok(())
}

#[test]
fn an_untrusted_proof_reads_as_a_valid_signature_by_a_key_not_trusted_here() -> TestResult {
    let repo = TempRepo::new()?;
    let key = json_lines(&gatos_ok(&repo, &["init", "--json"])?)?[0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = enqueue(&repo, &["--", "true"])?;
    gatos_ok(&repo, &["worker", "--drain"])?;
    let show = gatos_ok(&repo, &["jobs", "show", &id])?;
    assert!(
        show.contains(&format!("proof    verified, signed by {key}")),
        "{show}"
    );

    repo.git(&["config", "--unset-all", "gatos.trust"])?;
    let show = gatos_ok(&repo, &["jobs", "show", &id])?;
    assert!(
        show.contains(&format!(
            "proof    valid signature by {key}, a key this node does not trust (git gatos keys trust {key})"
        )),
        "{show}"
    );
    assert!(!show.contains("NOT"), "{show}");
    let row = json_lines(&gatos_ok(&repo, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(row[0]["poe"]["verified"], false);
    assert_eq!(row[0]["poe"]["code"], "UntrustedKey");

    // jobs verify says the same, once.
    let out = gatos(&repo, &["jobs", "verify", &id])?;
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error[UntrustedKey]: valid signature by {key}, a key this node does not trust"
        )),
        "{err}"
    );
    assert_eq!(err.matches(key.as_str()).count(), 2, "{err}");
    assert_eq!(stdout(&out), "");
    Ok(())
}

/// Writes that a reader would refuse, or that git would: each is refused when it is asked
/// for, with `InvalidInput` naming what is wrong, and nothing is written (found by a
/// black-box test of the release binaries). Before: a `--run-after` past year 9999 was
/// stored as 1970 and the job ran at once; a priority beyond 2^53, a NUL in an env value,
/// or a `max_messages` of `u64::MAX` were acknowledged, then the job or the topic no
/// longer read; an output under `.git` gave results `git fsck --strict` rejects; a YAML
/// key given twice took the last.
#[test]
fn writes_no_reader_or_git_would_accept_are_refused_before_anything_is_written() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let refused = |args: &[&str], says: &str| -> TestResult {
        let out = gatos(&repo, args)?;
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "{args:?} was accepted: {}",
            stdout(&out)
        );
        assert!(err.contains("error[InvalidInput]"), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        Ok(())
    };
    let manifest = |name: &str, text: &str| -> TestResult<String> {
        let p = repo.root().join(name);
        std::fs::write(&p, text)?;
        Ok(p.to_string_lossy().into_owned())
    };
    refused(
        &[
            "jobs",
            "enqueue",
            "--run-after",
            "99999999999d",
            "--",
            "true",
        ],
        "9999-12-31",
    )?;
    refused(
        &["jobs", "enqueue", "--run-after", "P9999999W", "--", "true"],
        "9999-12-31",
    )?;
    for p in [
        "9223372036854775807",
        "-9223372036854775808",
        "9007199254740993",
    ] {
        refused(
            &["jobs", "enqueue", &format!("--priority={p}"), "--", "true"],
            "priority",
        )?;
    }
    let nul = manifest(
        "nul.json",
        r#"{"command":["sh","-c","echo $A"],"env":{"A":"x\u0000y"}}"#,
    )?;
    refused(
        &["jobs", "enqueue", "--manifest", &nul],
        "env.A holds a NUL",
    )?;
    let nul = manifest("nul-arg.json", r#"{"command":["echo","a\u0000b"]}"#)?;
    refused(
        &["jobs", "enqueue", "--manifest", &nul],
        "command[1] holds a NUL",
    )?;
    for output in [
        ".git/x",
        "sub/.GIT/y",
        "git~1/x",
        ".gitmodules",
        ".gitattributes",
        "gi7d29~1",
    ] {
        let m = manifest(
            "outputs.json",
            &serde_json::json!({"command": ["true"], "outputs": [output]}).to_string(),
        )?;
        refused(
            &["jobs", "enqueue", "--manifest", &m],
            "git reads a file of this name",
        )?;
        refused(
            &["manifests", "put", "m", &m],
            "git reads a file of this name",
        )?;
    }
    let twice = manifest("twice.yaml", "command: [\"true\"]\ncommand: [\"false\"]\n")?;
    refused(
        &["jobs", "enqueue", "--manifest", &twice],
        "duplicate member name",
    )?;
    assert_eq!(
        repo.git(&["for-each-ref", "refs/gatos/jobs", "refs/gatos/manifests"])?,
        ""
    );

    // Settings a reader could not read back are refused; the topic goes on.
    gatos_ok(&repo, &["messages", "publish", "t", "--data", "{}"])?;
    refused(
        &[
            "messages",
            "config",
            "t",
            "--max-messages",
            "18446744073709551615",
        ],
        "max_messages",
    )?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", "{}"])?;
    assert_eq!(
        json_lines(&gatos_ok(&repo, &["messages", "read", "t", "--json"])?)?.len(),
        2
    );

    let lines = manifest("batch.jsonl", "{\"payload\": {}}\n")?;
    for chunk in ["0", "100001"] {
        refused(
            &[
                "messages", "publish", "t", "--batch", &lines, "--chunk", chunk,
            ],
            "chunk must be 1 to 100000",
        )?;
    }
    refused(
        &["jobs", "config", "q", "--backoff-max", "31d"],
        "at most 30 days",
    )?;
    refused(
        &[
            "jobs",
            "config",
            "q",
            "--max-pending",
            "18446744073709551615",
        ],
        "max_pending",
    )?;

    // What is at the edges is taken, and reads back as given.
    let ok = manifest(
        "ok.json",
        r#"{"command":["true"],"priority":9007199254740992,"outputs":[".gitignore",".github/x",".gitattributes.bak"],"run_after":"9999-12-31T00:00:00Z"}"#,
    )?;
    let id = enqueue(&repo, &["--manifest", &ok])?;
    let show = json_lines(&gatos_ok(&repo, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(
        show[0]["manifest"]["priority"], 9_007_199_254_740_992_i64,
        "{}",
        show[0]
    );
    assert_eq!(
        show[0]["manifest"]["run_after"], "9999-12-31T00:00:00Z",
        "{}",
        show[0]
    );
    refused(
        &["worker", "--once", "--lease", "31d"],
        "between 1 second and 30 days",
    )?;
    repo.assert_fsck_strict()
}

/// `messages prune` of a topic this node has never seen is `NotFound` with the closest
/// names, as `read` is: a misspelt name passed for a quiet topic (found by a black-box
/// test).
#[test]
fn pruning_a_misspelt_topic_names_the_close_ones() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "orders", "--data", "{}"])?;
    let out = gatos(&repo, &["messages", "prune", "order"])?;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("error[NotFound]") && err.contains("'orders'"),
        "{err}"
    );
    assert!(
        gatos(&repo, &["messages", "prune", "orders"])?
            .status
            .success()
    );
    Ok(())
}

/// A job author's newline or escape sequence in a command is shown escaped in the human
/// reports: it cannot fake a line (`proof verified …`) or move the terminal's cursor.
#[test]
fn control_characters_in_what_others_wrote_are_shown_escaped() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let evil = "sh\nproof    verified, signed by ed25519:0000\u{1b}[2K";
    let out = gatos_ok(
        &repo,
        &["jobs", "enqueue", "--json", "--", evil, "-c", "exit 3"],
    )?;
    let id = json_lines(&out)?[0]["id"]
        .as_str()
        .ok_or("no id")?
        .to_owned();
    for args in [vec!["jobs", "show", id.as_str()], vec!["jobs", "ls"]] {
        let text = gatos_ok(&repo, &args)?;
        assert!(!text.contains('\u{1b}'), "{args:?}: {text:?}");
        assert!(
            !text.lines().any(|l| l.starts_with("proof    verified")),
            "{args:?}: {text}"
        );
        assert!(text.contains("\\u{1b}[2K"), "{args:?}: {text}");
    }
    // The JSON keeps the value as it is.
    let row = json_lines(&gatos_ok(&repo, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(row[0]["manifest"]["command"][0], evil);
    Ok(())
}
