//! Export, Explorer-Root, `export verify`, the audit trail and doctor, with real
//! processes and independent readers: the `sqlite3` command-line tool and pyarrow.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, wait_for};
use serde_json::Value;

use crate::support::{enqueue, gatos, gatos_cmd, gatos_ok, jobs_shared, json_lines};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ulid_of(repo: &TempRepo, topic: &str, n: usize) -> TestResult<String> {
    let rows = json_lines(&gatos_ok(repo, &["messages", "read", topic, "--json"])?)?;
    Ok(rows[n]["ulid"].as_str().unwrap().to_owned())
}

/// A repository with messages over several segments, a consumer checkpoint, and jobs
/// succeeded, failed, cancelled and pending, with proofs.
fn fixture() -> TestResult<TempRepo> {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(
        &repo,
        &["messages", "config", "ci.events", "--max-messages", "3"],
    )?;
    for i in 0..8 {
        let data = format!(r#"{{"n":{i},"text":"line\nbreak \"q\" é"}}"#);
        gatos_ok(
            &repo,
            &["messages", "publish", "ci.events", "--data", &data],
        )?;
    }
    gatos_ok(&repo, &["messages", "publish", "other", "--data", "[1,2]"])?;
    gatos_ok(
        &repo,
        &["messages", "consume", "g1", "ci.events", "--limit", "5"],
    )?;
    gatos_ok(&repo, &["jobs", "enqueue", "--", "echo", "hello"])?;
    gatos_ok(
        &repo,
        &["jobs", "enqueue", "--max-attempts", "1", "--", "false"],
    )?;
    let cancel = json_lines(&gatos_ok(
        &repo,
        &[
            "jobs", "enqueue", "--queue", "later", "--json", "--", "true",
        ],
    )?)?;
    gatos_ok(
        &repo,
        &["jobs", "cancel", cancel[0]["id"].as_str().unwrap()],
    )?;
    gatos_ok(
        &repo,
        &["jobs", "enqueue", "--queue", "later", "--", "true"],
    )?;
    gatos_ok(&repo, &["worker", "--drain", "--lease", "5s"])?;
    Ok(repo)
}

fn export(repo: &TempRepo, args: &[&str]) -> TestResult<Value> {
    let mut all = vec!["export", "--json"];
    all.extend_from_slice(args);
    Ok(json_lines(&gatos_ok(repo, &all)?)?.remove(0))
}

fn sqlite_json(db: &Path, sql: &str) -> TestResult<Vec<Value>> {
    let out = Command::new("sqlite3")
        .arg("-json")
        .arg(db)
        .arg(sql)
        .output()
        .map_err(|e| {
            format!("the sqlite3 command-line tool is needed (apt-get install sqlite3): {e}")
        })?;
    if !out.status.success() {
        return Err(format!("sqlite3 failed: {}", stderr(&out)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn sqlite_export_matches_messages_read_and_jobs_ls() -> TestResult {
    let repo = fixture()?;
    let db = repo.root().join("out.db");
    let m = export(
        &repo,
        &["--format", "sqlite", "--out", db.to_str().unwrap()],
    )?;
    assert!(m["explorer_root"].as_str().unwrap().starts_with("blake3:"));
    for topic in ["ci.events", "other", "gatos.jobs"] {
        let read = json_lines(&gatos_ok(&repo, &["messages", "read", topic, "--json"])?)?;
        let rows = sqlite_json(
            &db,
            &format!("SELECT * FROM messages WHERE topic = '{topic}' ORDER BY seq"),
        )?;
        assert_eq!(rows.len(), read.len(), "{topic}");
        for (r, m) in rows.iter().zip(&read) {
            assert_eq!(r["ulid"], m["ulid"]);
            assert_eq!(r["seq"], m["seq"]);
            assert_eq!(r["commit"], m["commit"]);
            assert_eq!(r["content_id"], m["content_id"]);
            let payload: Value = serde_json::from_str(r["payload"].as_str().unwrap())?;
            assert_eq!(payload, m["payload"]);
            let t = r["published_at"].as_str().unwrap();
            assert!(t.ends_with('Z') && t.len() == 24, "{t}");
        }
    }
    let jobs = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--all", "--json"])?)?;
    let rows = sqlite_json(&db, "SELECT * FROM jobs ORDER BY id")?;
    assert_eq!(rows.len(), jobs.len());
    let mut states: Vec<&str> = Vec::new();
    for (r, j) in rows.iter().zip(&jobs) {
        assert_eq!(r["id"], j["id"]);
        assert_eq!(r["state"], j["state"]);
        assert_eq!(r["attempt"], j["attempt"]);
        assert_eq!(r["queue"], j["queue"]);
        let manifest: Value = serde_json::from_str(r["manifest"].as_str().unwrap())?;
        assert_eq!(manifest, j["manifest"]);
        states.push(j["state"].as_str().unwrap());
    }
    states.sort_unstable();
    assert_eq!(states, ["cancelled", "failed", "pending", "succeeded"]);
    let results = sqlite_json(&db, "SELECT * FROM results ORDER BY job")?;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["proof_verified"] == 1));
    let attempts = sqlite_json(&db, "SELECT * FROM attempts")?;
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a["worker_key"].as_str().is_some()));
    let cps = sqlite_json(&db, "SELECT * FROM checkpoints")?;
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0]["seq"], 5);
    assert_eq!(
        cps[0]["ulid"].as_str().unwrap(),
        ulid_of(&repo, "ci.events", 4)?
    );
    // Export never writes refs.
    let before = repo.refs("refs/")?;
    export(
        &repo,
        &["--format", "sqlite", "--out", db.to_str().unwrap()],
    )?;
    assert_eq!(repo.refs("refs/")?, before);
    repo.assert_fsck_strict()
}

#[test]
fn parquet_has_the_same_root_and_rows_as_sqlite() -> TestResult {
    let repo = fixture()?;
    let db = repo.root().join("out.db");
    let pq = repo.root().join("out.parquet");
    // Job states depend on the time they are derived at (leases expire), which enters the
    // root: the same --as-of gives the same root.
    let at = "2030-01-01T00:00:00Z";
    let a = export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            db.to_str().unwrap(),
            "--as-of",
            at,
        ],
    )?;
    let b = export(
        &repo,
        &[
            "--format",
            "parquet",
            "--out",
            pq.to_str().unwrap(),
            "--as-of",
            at,
        ],
    )?;
    assert_eq!(a["tables"], b["tables"]);
    assert_eq!(a["explorer_root"], b["explorer_root"]);
    let a = export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            db.to_str().unwrap(),
            "--tables",
            "messages,checkpoints",
        ],
    )?;
    let b = export(
        &repo,
        &[
            "--format",
            "parquet",
            "--out",
            pq.to_str().unwrap(),
            "--tables",
            "messages,checkpoints",
        ],
    )?;
    assert_eq!(a["explorer_root"], b["explorer_root"]);
    // An independent reader: pyarrow reads what we wrote, row for row.
    let script = r#"
import json, sys, sqlite3
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1] + "/messages.parquet").to_pylist()
db = sqlite3.connect(sys.argv[2])
rows = db.execute("SELECT topic, seq, ulid, payload, published_at FROM messages").fetchall()
want = sorted((r[0], r[1], r[2], r[3]) for r in rows)
got = sorted((r["topic"], r["seq"], r["ulid"], r["payload"]) for r in t)
assert want == got, (want[:2], got[:2])
ts = t[0]["published_at"]
assert ts.tzinfo is not None, ts
print(len(got))
"#;
    let out = Command::new("python3")
        .args(["-c", script, pq.to_str().unwrap(), db.to_str().unwrap()])
        .output()?;
    assert!(
        out.status.success(),
        "pyarrow check failed (pip install pyarrow): {}",
        stderr(&out)
    );
    assert_eq!(
        String::from_utf8(out.stdout)?.trim(),
        a["tables"]["messages"]["rows"].to_string()
    );
    let v = json_lines(&gatos_ok(
        &repo,
        &[
            "export",
            "verify",
            pq.to_str().unwrap(),
            "--repo",
            ".",
            "--json",
        ],
    )?)?;
    assert_eq!(v[0]["explorer_root"], b["explorer_root"]);
    Ok(())
}

fn verify_fails(repo: &TempRepo, path: &Path, table: &str) -> TestResult {
    let out = gatos(repo, &["export", "verify", path.to_str().unwrap()])?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("DigestMismatch"), "{e}");
    assert!(e.contains(table), "expected {table} in: {e}");
    Ok(())
}

fn sqlite_exec(db: &Path, sql: &str) -> TestResult {
    let out = Command::new("sqlite3").arg(db).arg(sql).output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    Ok(())
}

#[test]
fn verify_catches_a_changed_cell_a_deleted_or_added_row_and_a_changed_manifest() -> TestResult {
    let repo = fixture()?;
    let db = repo.root().join("good.db");
    export(
        &repo,
        &["--format", "sqlite", "--out", db.to_str().unwrap()],
    )?;
    let v = json_lines(&gatos_ok(
        &repo,
        &[
            "export",
            "verify",
            db.to_str().unwrap(),
            "--repo",
            ".",
            "--json",
        ],
    )?)?;
    assert_eq!(v[0]["ok"], true);
    let tampered = repo.root().join("bad.db");
    let cases: &[(&str, &str)] = &[
        (
            "UPDATE messages SET payload = '{\"n\":99}' WHERE seq = 2 AND topic = 'ci.events'",
            "messages",
        ),
        (
            "DELETE FROM jobs WHERE rowid = (SELECT min(rowid) FROM jobs)",
            "jobs",
        ),
        (
            "INSERT INTO checkpoints SELECT * FROM checkpoints",
            "checkpoints",
        ),
        ("UPDATE results SET proof_verified = 0", "results"),
        ("UPDATE attempts SET worker = 'mallory'", "attempts"),
        (
            "UPDATE _gatos_manifest SET json = replace(json, '\"since\": null', '\"since\": \"2020-01-01T00:00:00.000Z\"')",
            "manifest",
        ),
        // The refs read are part of the manifest, kept in a table of their own.
        (
            "DELETE FROM _gatos_refs WHERE name = (SELECT max(name) FROM _gatos_refs)",
            "manifest",
        ),
        (
            "UPDATE _gatos_refs SET oid = '0000000000000000000000000000000000000000' WHERE name = (SELECT min(name) FROM _gatos_refs)",
            "manifest",
        ),
    ];
    for (sql, table) in cases {
        std::fs::copy(&db, &tampered)?;
        sqlite_exec(&tampered, sql)?;
        verify_fails(&repo, &tampered, table)?;
    }
    // Parquet: a changed manifest, and a changed cell (rewritten with pyarrow).
    let pq = repo.root().join("p");
    export(
        &repo,
        &["--format", "parquet", "--out", pq.to_str().unwrap()],
    )?;
    let m = pq.join("manifest.json");
    let text = std::fs::read_to_string(&m)?;
    let v: Value = serde_json::from_str(&text)?;
    let rs = v["ref_state"].as_str().unwrap();
    std::fs::write(&m, text.replace(rs, &format!("blake3:{}", "1".repeat(64))))?;
    verify_fails(&repo, &pq, "manifest")?;
    std::fs::write(&m, &text)?;
    let script = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
path = sys.argv[1] + "/messages.parquet"
t = pq.read_table(path)
rows = t.to_pylist()
rows[0]["payload"] = '{"forged":true}'
pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), path)
"#;
    let out = Command::new("python3")
        .args(["-c", script, pq.to_str().unwrap()])
        .output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    verify_fails(&repo, &pq, "messages")?;
    Ok(())
}

#[test]
fn verify_with_the_repository_catches_a_consistently_rewritten_export() -> TestResult {
    let repo = fixture()?;
    let db = repo.root().join("x.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            db.to_str().unwrap(),
            "--tables",
            "messages",
        ],
    )?;
    // Someone changes a payload and recomputes every digest: only the repository can tell.
    let other = TempRepo::new()?;
    gatos_ok(&other, &["init"])?;
    let forged = other.root().join("f.db");
    export(
        &other,
        &[
            "--format",
            "sqlite",
            "--out",
            forged.to_str().unwrap(),
            "--tables",
            "messages",
        ],
    )?;
    gatos_ok(&repo, &["export", "verify", forged.to_str().unwrap()])?;
    let out = gatos(
        &repo,
        &[
            "export",
            "verify",
            db.to_str().unwrap(),
            "--repo",
            other.path().to_str().unwrap(),
        ],
    )?;
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("NotFound") || e.contains("DigestMismatch"),
        "{e}"
    );
    Ok(())
}

#[test]
fn incremental_export_extends_to_the_same_root_as_a_full_one() -> TestResult {
    let repo = fixture()?;
    let inc = repo.root().join("inc.db");
    let full = repo.root().join("full.db");
    let args = ["--tables", "messages,checkpoints,jobs,attempts,results"];
    let mut a = vec!["--format", "sqlite", "--out", inc.to_str().unwrap()];
    a.extend_from_slice(&args);
    export(&repo, &a)?;
    for i in 0..5 {
        gatos_ok(
            &repo,
            &[
                "messages",
                "publish",
                "ci.events",
                "--data",
                &format!("{{\"more\":{i}}}"),
            ],
        )?;
    }
    gatos_ok(
        &repo,
        &["messages", "consume", "g1", "ci.events", "--limit", "2"],
    )?;
    gatos_ok(&repo, &["jobs", "enqueue", "--", "echo", "late"])?;
    gatos_ok(&repo, &["worker", "--once"])?;
    // Extends the incremental export, and checks its tables against a full export at the
    // same state (the time for job states comes from the clock, so the roots differ; the
    // tables hold every row).
    let extend_and_compare = |what: &str| -> TestResult<Value> {
        let i = export(
            &repo,
            &[
                "--format",
                "sqlite",
                "--out",
                inc.to_str().unwrap(),
                "--incremental",
            ],
        )?;
        let _ = std::fs::remove_file(&full);
        let mut f = vec!["--format", "sqlite", "--out", full.to_str().unwrap()];
        f.extend_from_slice(&args);
        let f = export(&repo, &f)?;
        for t in ["messages", "checkpoints", "jobs", "attempts", "results"] {
            assert_eq!(i["tables"][t], f["tables"][t], "{what}: {t}");
        }
        Ok(i)
    };
    let i = extend_and_compare("first increment")?;
    assert_eq!(i["increments"], 1);
    // More rounds: every one stores what it added and removed as sorted runs of its own,
    // until they are merged back into one (a queued job and the checkpoint are replaced
    // each time).
    for round in 0..6 {
        gatos_ok(
            &repo,
            &[
                "messages",
                "publish",
                "ci.events",
                "--data",
                &format!("{{\"round\":{round}}}"),
            ],
        )?;
        gatos_ok(
            &repo,
            &["messages", "consume", "g1", "ci.events", "--limit", "1"],
        )?;
        extend_and_compare(&format!("round {round}"))?;
        let runs = sqlite_json(
            &inc,
            "SELECT count(DISTINCT run) AS n FROM _gatos_sorted WHERE tbl = 'jobs'",
        )?;
        assert!(
            runs[0]["n"].as_i64().unwrap() <= 8,
            "round {round}: {runs:?}"
        );
    }
    gatos_ok(
        &repo,
        &["export", "verify", inc.to_str().unwrap(), "--repo", "."],
    )?;
    // Filters cannot change on an incremental export.
    let out = gatos(
        &repo,
        &[
            "export",
            "--format",
            "sqlite",
            "--out",
            inc.to_str().unwrap(),
            "--incremental",
            "--tables",
            "jobs",
        ],
    )?;
    assert!(stderr(&out).contains("InvalidInput"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn filters_select_while_reading_and_bad_predicates_name_the_part() -> TestResult {
    let repo = fixture()?;
    let db = repo.root().join("f.db");
    let m = export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            db.to_str().unwrap(),
            "--tables",
            "messages",
            "--columns",
            "messages:topic,seq,payload",
            "--where",
            "topic = 'ci.events' AND seq >= 3",
            "--where",
            "seq < 6",
        ],
    )?;
    assert_eq!(m["tables"]["messages"]["rows"], 3);
    let rows = sqlite_json(&db, "SELECT * FROM messages ORDER BY seq")?;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["seq"], 3);
    assert!(rows[0].get("ulid").is_none());
    for (pred, part) in [
        ("seq ~ 3", "~"),
        ("topic = a OR seq = 1", "OR"),
        ("seq != 1", "!"),
        ("nosuch = 1", "nosuch"),
        ("seq = abc", "not an integer"),
        ("payload = 1", "JSON"),
        ("messages.published_at > yesterday", "RFC 3339"),
    ] {
        let out = gatos(
            &repo,
            &[
                "export",
                "--format",
                "sqlite",
                "--out",
                db.to_str().unwrap(),
                "--where",
                pred,
            ],
        )?;
        let e = stderr(&out);
        assert!(
            !out.status.success() && e.contains("InvalidInput") && e.contains(part),
            "{pred}: {e}"
        );
    }
    let out = gatos(
        &repo,
        &[
            "export",
            "--format",
            "sqlite",
            "--out",
            db.to_str().unwrap(),
            "--tables",
            "nope",
        ],
    )?;
    assert!(stderr(&out).contains("nope"));
    // --since a commit: the messages from that message's time on.
    let read = json_lines(&gatos_ok(
        &repo,
        &["messages", "read", "ci.events", "--json"],
    )?)?;
    let commit = read[6]["commit"].as_str().unwrap();
    let m = export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            db.to_str().unwrap(),
            "--tables",
            "messages",
            "--where",
            "topic = ci.events",
            "--since",
            commit,
        ],
    )?;
    assert_eq!(m["tables"]["messages"]["rows"], 2);
    Ok(())
}

#[test]
fn audit_lists_privileged_actions() -> TestResult {
    let repo = fixture()?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "checkpoint",
            "set",
            "g1",
            "ci.events",
            &ulid_of(&repo, "ci.events", 0)?,
            "--force",
        ],
    )?;
    let rows = json_lines(&gatos_ok(&repo, &["audit", "--json"])?)?;
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"jobs.cancel"), "{actions:?}");
    assert!(actions.contains(&"config.topic"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a.starts_with("checkpoint")),
        "{actions:?}"
    );
    for r in &rows {
        for k in [
            "ulid", "actor", "key", "action", "target", "before", "after",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    let last = rows.last().unwrap()["ulid"].as_str().unwrap().to_owned();
    assert!(json_lines(&gatos_ok(&repo, &["audit", "--json", "--since", &last])?)?.is_empty());
    let only = json_lines(&gatos_ok(
        &repo,
        &["audit", "--json", "--action", "jobs.cancel"],
    )?)?;
    assert_eq!(only.len(), 1);
    Ok(())
}

fn doctor(repo: &TempRepo, fix: bool) -> TestResult<(Option<i32>, Vec<Value>)> {
    let mut args = vec!["doctor", "--json"];
    if fix {
        args.push("--fix");
    }
    let out = gatos(repo, &args)?;
    let rows = json_lines(&String::from_utf8(out.stdout)?)?
        .into_iter()
        .filter(|r| r.get("code").is_some())
        .collect();
    Ok((out.status.code(), rows))
}

/// Writes an object of type `kind` with plain git; returns its id.
fn write_object(repo: &TempRepo, kind: &str, bytes: &[u8]) -> TestResult<String> {
    let mut hash = repo.git_cmd(&["hash-object", "-t", kind, "-w", "--stdin"]);
    hash.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = hash.spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().ok_or("no stdin")?, bytes)?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "hash-object: {}", stderr(&out));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Writes a copy of commit `oid` whose text lines `edit` changed; returns its id.
fn rewrite(repo: &TempRepo, oid: &str, edit: impl FnOnce(&mut Vec<String>)) -> TestResult<String> {
    let body = repo.git(&["cat-file", "commit", oid])?;
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    edit(&mut lines);
    write_object(repo, "commit", (lines.join("\n") + "\n").as_bytes())
}

/// Writes a copy of commit `oid` with the file at `path` holding `bytes` instead.
fn rewrite_file(repo: &TempRepo, oid: &str, path: &str, bytes: &[u8]) -> TestResult<String> {
    let blob = write_object(repo, "blob", bytes)?;
    let index = repo.root().join("scratch.index");
    let git = |args: &[&str]| -> TestResult<String> {
        let out = repo.git_cmd(args).env("GIT_INDEX_FILE", &index).output()?;
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    git(&["read-tree", &format!("{oid}^{{tree}}")])?;
    git(&[
        "update-index",
        "--cacheinfo",
        &format!("100644,{blob},{path}"),
    ])?;
    let tree = git(&["write-tree"])?;
    std::fs::remove_file(&index)?;
    rewrite(repo, oid, |lines| lines[0] = format!("tree {tree}"))
}

fn has(rows: &[Value], code: &str, severity: &str) -> bool {
    rows.iter()
        .any(|r| r["code"] == code && r["severity"] == severity)
}

#[test]
fn doctor_is_quiet_on_a_healthy_repository() -> TestResult {
    let repo = fixture()?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert!(rows.iter().all(|r| r["severity"] == "warning"), "{rows:?}");
    Ok(())
}

#[test]
fn doctor_reports_each_finding_made_with_plain_git() -> TestResult {
    // Warnings: exit 0.
    let repo = fixture()?;
    let head = repo
        .rev_parse("refs/gatos/messages/ci.events/head")?
        .unwrap();
    repo.git(&["update-ref", "refs/gatos/bogus/thing", &head])?;
    let lock = repo.git_dir().join("refs/gatos/jobs/stale.lock");
    std::fs::write(&lock, "")?;
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&lock)?
        .set_modified(old)?;
    std::fs::create_dir_all(repo.git_dir().join("refs/gatos/empty/dir"))?;
    // A rotation that stopped after writing the sealed ref: named as a rotation names it
    // (the UTC date and ULID of the segment's first message).
    let first = ulid_of(&repo, "other", 0)?;
    let sealed = format!(
        "refs/gatos/messages/other/{}/{first}",
        gatos::messages::ulid_time(first.parse()?).utc_date()
    );
    let other_head = repo.rev_parse("refs/gatos/messages/other/head")?.unwrap();
    repo.git(&["update-ref", &sealed, &other_head])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(0), "{rows:?}");
    for c in [
        "ref-unknown",
        "lock-foreign",
        "ref-leftover",
        "rotation-unfinished",
    ] {
        assert!(has(&rows, c, "warning"), "{c}: {rows:?}");
    }
    // A lock gatos did not write stays through --fix (ADR 0020); --force removes it.
    let (_, rows) = doctor(&repo, true)?;
    assert!(
        rows.iter()
            .any(|r| r["code"] == "lock-foreign" && r["fixed"] == false)
    );
    assert!(lock.exists());
    gatos_ok(&repo, &["doctor", "--fix", "--force"])?;
    assert!(!lock.exists());

    // A lost job event and a lost audit record: warnings, republished by --fix.
    let repo = fixture()?;
    for topic in ["gatos.jobs", "gatos.audit"] {
        let name = format!("refs/gatos/messages/{topic}/head");
        let head = repo.rev_parse(&name)?.unwrap();
        repo.git(&["update-ref", &name, &format!("{head}~1"), &head])?;
    }
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert!(has(&rows, "event-missing", "warning"), "{rows:?}");
    assert!(has(&rows, "audit-missing", "warning"), "{rows:?}");
    doctor(&repo, true)?;
    let (_, rows) = doctor(&repo, false)?;
    assert!(
        !rows
            .iter()
            .any(|r| r["code"] == "event-missing" || r["code"] == "audit-missing"),
        "{rows:?}"
    );

    // Broken invariants: exit 1.
    let repo = fixture()?;
    let other_ulid = ulid_of(&repo, "other", 0)?;
    // A checkpoint pointing at another group's checkpoint on another topic.
    gatos_ok(&repo, &["messages", "consume", "g2", "other"])?;
    let foreign = repo.rev_parse("refs/gatos/consumers/g2/other")?.unwrap();
    repo.git(&["update-ref", "refs/gatos/consumers/g1/ci.events", &foreign])?;
    // A message whose Content-Id no longer matches its envelope.
    let name = "refs/gatos/messages/other/head";
    let head = repo.rev_parse(name)?.unwrap();
    let new = rewrite(&repo, &head, |lines| {
        for l in lines {
            if let Some(rest) = l.strip_prefix("Content-Id: blake3:") {
                *l = format!("Content-Id: blake3:{}", "0".repeat(rest.len()));
            }
        }
    })?;
    repo.git(&["update-ref", name, &new, &head])?;
    // A sealed segment off the chain.
    let off = format!("refs/gatos/messages/ci.events/2020-01-02/{other_ulid}");
    repo.git(&["update-ref", &off, &new])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1), "{rows:?}");
    for c in [
        "checkpoint-outside-topic",
        "content-id-mismatch",
        "segment-detached",
    ] {
        assert!(has(&rows, c, "error"), "{c}: {rows:?}");
    }

    // A missing object: git fsck.
    let repo = fixture()?;
    let head = repo.rev_parse("refs/gatos/messages/other/head")?.unwrap();
    let tree = repo
        .git(&["rev-parse", &format!("{head}^{{tree}}")])?
        .trim()
        .to_owned();
    repo.git(&["repack", "-a", "-d", "-q"])?;
    // Unpack everything but the tree, then drop the packs: the tree is gone.
    let packs: Vec<_> = std::fs::read_dir(repo.git_dir().join("objects/pack"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    for p in &packs {
        let mut cmd = repo.git_cmd(&["unpack-objects", "-q"]);
        let f = std::fs::File::open(p)?;
        let moved = repo.root().join("moved.pack");
        std::fs::rename(p, &moved)?;
        drop(f);
        cmd.stdin(std::fs::File::open(&moved)?);
        assert!(cmd.status()?.success());
        std::fs::remove_file(p.with_extension("idx"))?;
    }
    std::fs::remove_file(
        repo.git_dir()
            .join(format!("objects/{}/{}", &tree[..2], &tree[2..])),
    )?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1), "{rows:?}");
    assert!(has(&rows, "fsck", "error"), "{rows:?}");

    // Invalid settings.
    let repo = fixture()?;
    repo.git(&["config", "gatos.dedupeWindow", "many"])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1));
    assert!(has(&rows, "config-invalid", "error"), "{rows:?}");

    // Maintenance debt, fixed by --fix.
    let repo = fixture()?;
    repo.git(&["config", "gatos.maintenance.looseObjects", "1"])?;
    repo.git(&["config", "gatos.maintenance.auto", "false"])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(0));
    assert!(has(&rows, "maintenance-due", "warning"), "{rows:?}");
    let (_, rows) = doctor(&repo, true)?;
    assert!(
        rows.iter()
            .any(|r| r["code"] == "maintenance-due" && r["fixed"] == true),
        "{rows:?}"
    );

    // A proof by a key this node does not trust: a warning.
    let repo = fixture()?;
    repo.git(&["config", "--unset-all", "gatos.trust"])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert!(has(&rows, "proof-untrusted-key", "warning"), "{rows:?}");
    Ok(())
}

#[test]
fn doctor_reports_broken_chains_made_with_plain_git() -> TestResult {
    let name = "refs/gatos/messages/other/head";
    // A commit on a topic that is not a message.
    let repo = fixture()?;
    let head = repo.rev_parse(name)?.unwrap();
    let bogus = repo.git(&[
        "commit-tree",
        &format!("{head}^{{tree}}"),
        "-p",
        &head,
        "-m",
        "not a message",
    ])?;
    repo.git(&["update-ref", name, bogus.trim(), &head])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1), "{rows:?}");
    assert!(has(&rows, "chain-invalid", "error"), "{rows:?}");

    // A message dropped from the middle of a topic.
    let repo = fixture()?;
    for d in ["[2]", "[3]"] {
        gatos_ok(&repo, &["messages", "publish", "other", "--data", d])?;
    }
    let head = repo.rev_parse(name)?.unwrap();
    let grandparent = repo.git(&["rev-parse", &format!("{head}~2")])?;
    let skipped = rewrite(&repo, &head, |lines| {
        for l in lines.iter_mut().filter(|l| l.starts_with("parent ")) {
            *l = format!("parent {}", grandparent.trim());
        }
    })?;
    repo.git(&["update-ref", name, &skipped, &head])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1), "{rows:?}");
    assert!(has(&rows, "seq-gap", "error"), "{rows:?}");

    // An envelope that is no longer canonical JSON.
    let repo = fixture()?;
    let head = repo.rev_parse(name)?.unwrap();
    let path = "message/envelope.json";
    let envelope = repo.git(&["cat-file", "blob", &format!("{head}:{path}")])?;
    let padded = rewrite_file(&repo, &head, path, format!("{envelope} ").as_bytes())?;
    repo.git(&["update-ref", name, &padded, &head])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1), "{rows:?}");
    assert!(has(&rows, "envelope-not-canonical", "error"), "{rows:?}");

    // A forced prune past a group's checkpoint: a warning, right after the prune.
    let repo = fixture()?;
    gatos_ok(
        &repo,
        &["messages", "consume", "g3", "ci.events", "--limit", "1"],
    )?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "prune",
            "ci.events",
            "--older-than",
            "0s",
            "--force",
        ],
    )?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert!(has(&rows, "checkpoint-behind-prune", "warning"), "{rows:?}");
    assert!(
        !rows.iter().any(|r| r["severity"] == "error"),
        "a prune breaks no chain: {rows:?}"
    );

    // A file in the ref directory that is not a ref hides no ref: doctor names it, and
    // export reads everything else.
    let repo = fixture()?;
    std::fs::write(repo.git_dir().join("refs/gatos/junk"), "not a ref\n")?;
    let (_, rows) = doctor(&repo, false)?;
    assert!(has(&rows, "ref-leftover", "warning"), "{rows:?}");
    let db = repo.root().join("junk.db");
    let m = export(
        &repo,
        &["--format", "sqlite", "--out", db.to_str().unwrap()],
    )?;
    assert_eq!(m["tables"]["jobs"]["rows"], 4, "{m}");
    Ok(())
}

#[test]
fn doctor_reports_broken_results_and_lapsed_leases() -> TestResult {
    let repo = fixture()?;
    let jobs = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--all", "--json"])?)?;
    let id_of = |state: &str| -> TestResult<String> {
        Ok(jobs
            .iter()
            .find(|j| j["state"] == state)
            .and_then(|j| j["id"].as_str())
            .ok_or_else(|| format!("no {state} job"))?
            .to_owned())
    };
    // The failed job's result no longer closes its claim (its second parent is gone).
    let name = format!("refs/gatos/jobs/{}/result", id_of("failed")?);
    let result = repo.rev_parse(&name)?.unwrap();
    let orphan = rewrite(&repo, &result, |lines| {
        let mut parents = 0;
        lines.retain(|l| {
            if l.starts_with("parent ") {
                parents += 1;
                return parents == 1;
            }
            true
        });
    })?;
    repo.git(&["update-ref", &name, &orphan, &result])?;
    // The succeeded job's stdout changed after its proof was signed.
    let name = format!("refs/gatos/jobs/{}/result", id_of("succeeded")?);
    let result = repo.rev_parse(&name)?.unwrap();
    let forged = rewrite_file(&repo, &result, "logs/stdout", b"forged\n")?;
    repo.git(&["update-ref", &name, &forged, &result])?;
    let (code, rows) = doctor(&repo, false)?;
    assert_eq!(code, Some(1), "{rows:?}");
    assert!(has(&rows, "result-without-claim", "error"), "{rows:?}");
    assert!(
        rows.iter().any(|r| r["code"] == "proof-invalid"
            && r["severity"] == "error"
            && r["target"] == name.as_str()),
        "{rows:?}"
    );

    // A worker killed mid-job: once its lease lapses, a warning until another takes over.
    let repo = fixture()?;
    // Jobs write only where the sandbox lets them: a directory outside the repository.
    let shared = repo.root().join("jobs-shared");
    std::fs::create_dir_all(&shared)?;
    let pidfile = shared.join("job.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    gatos_ok(
        &repo,
        &[
            "jobs", "enqueue", "--queue", "slow", "--", "sh", "-c", &script,
        ],
    )?;
    let mut worker = gatos_cmd(
        &repo,
        &[
            "worker",
            "--once",
            "--queue",
            "slow",
            "--lease",
            "2s",
            "--sandbox-allow-write",
            &shared.to_string_lossy(),
        ],
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()?;
    let started = gatos_testutil::wait_for(
        "the job to start",
        std::time::Duration::from_secs(60),
        || std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<i32>().is_ok()),
    );
    worker.kill()?;
    worker.wait()?;
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        // The job runs in its own process group, which outlives the worker.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", pid.trim())])
            .status();
    }
    started?;
    let mut last = Vec::new();
    gatos_testutil::wait_for(
        "the lease to lapse",
        std::time::Duration::from_secs(60),
        || match doctor(&repo, false) {
            Ok((_, rows)) => {
                last = rows;
                has(&last, "lease-expired", "warning")
            }
            Err(_) => false,
        },
    )?;
    assert!(
        !last.iter().any(|r| r["severity"] == "error"),
        "an expired lease is expected: {last:?}"
    );
    Ok(())
}

/// Sets a file's modification time an hour back.
fn age_hour(path: &Path) -> TestResult {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(old)?;
    Ok(())
}

/// A `git update-ref --stdin` transaction, prepared: it holds `refs/heads/doomed.lock`
/// and `packed-refs.lock` (a delete of a packed ref) until it is told to commit.
struct GitTransaction {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl GitTransaction {
    fn prepare(repo: &TempRepo, born: &str) -> TestResult<GitTransaction> {
        use std::io::Write as _;
        let head = repo.git(&["rev-parse", "HEAD"])?;
        let head = head.trim();
        repo.git(&["update-ref", "refs/heads/doomed", head])?;
        repo.git(&["pack-refs", "--all"])?;
        let mut child = repo
            .git_cmd(&["update-ref", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        writeln!(stdin, "start")?;
        writeln!(stdin, "delete refs/heads/doomed")?;
        writeln!(stdin, "create refs/heads/{born} {head}")?;
        writeln!(stdin, "prepare")?;
        stdin.flush()?;
        let packed = repo.git_dir().join("packed-refs.lock");
        if let Err(e) = gatos_testutil::wait_for(
            "git to lock packed-refs",
            std::time::Duration::from_secs(30),
            || packed.exists(),
        ) {
            drop(stdin);
            let out = child.wait_with_output()?;
            return Err(format!("{e}: git said {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(GitTransaction { child, stdin })
    }

    /// Commits; returns whether git succeeded.
    fn commit(self) -> TestResult<bool> {
        use std::io::Write as _;
        let GitTransaction { child, mut stdin } = self;
        writeln!(stdin, "commit")?;
        drop(stdin);
        let out = child.wait_with_output()?;
        Ok(out.status.success())
    }
}

/// A commit so HEAD exists.
fn with_head(repo: &TempRepo) -> TestResult {
    repo.git(&["commit", "--allow-empty", "-q", "-m", "base"])?;
    Ok(())
}

#[test]
fn doctor_fix_leaves_a_live_git_transactions_locks_and_force_says_what_it_removes() -> TestResult {
    let repo = fixture()?;
    with_head(&repo)?;
    let packed = repo.git_dir().join("packed-refs.lock");
    let ref_lock = repo.git_dir().join("refs/heads/doomed.lock");

    // A live git transaction whose locks look an hour old.
    let tx = GitTransaction::prepare(&repo, "born")?;
    age_hour(&packed)?;
    if ref_lock.exists() {
        age_hour(&ref_lock)?;
    }
    let (code, rows) = doctor(&repo, true)?;
    assert_eq!(code, Some(0), "{rows:?}");
    let packed_row = rows
        .iter()
        .find(|r| r["target"] == packed.display().to_string())
        .ok_or("packed-refs.lock is reported")?;
    assert_eq!(packed_row["code"], "lock-foreign");
    assert_eq!(packed_row["fixed"], false);
    assert!(
        packed_row["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--force") && f.contains("rm ")),
        "{packed_row}"
    );
    assert!(packed.exists(), "git's live lock is still there");
    assert!(ref_lock.exists(), "and so is its ref lock");
    assert!(tx.commit()?, "git's transaction still commits");
    assert_eq!(repo.rev_parse("refs/heads/doomed")?, None);
    assert!(repo.rev_parse("refs/heads/born")?.is_some());

    // --force removes such a lock and names it.
    let tx = GitTransaction::prepare(&repo, "born-again")?;
    age_hour(&packed)?;
    let out = gatos(&repo, &["doctor", "--fix", "--force", "--json"])?;
    assert_eq!(out.status.code(), Some(0));
    let rows = json_lines(&String::from_utf8(out.stdout)?)?;
    let row = rows
        .iter()
        .find(|r| r["target"] == packed.display().to_string())
        .ok_or("packed-refs.lock is reported")?;
    assert_eq!(row["code"], "lock-foreign");
    assert_eq!(row["fixed"], true);
    assert!(
        row["message"]
            .as_str()
            .is_some_and(|m| m.contains("removed because forced removal was asked for")),
        "{row}"
    );
    assert!(!packed.exists());
    // git's transaction lost its lock: it fails rather than half-committing.
    let _ = tx.commit()?;
    // --force without --fix is a usage error.
    assert_eq!(gatos(&repo, &["doctor", "--force"])?.status.code(), Some(2));
    Ok(())
}

/// Writes what a gatos writer killed mid-transaction leaves: its owner record (ADR 0020)
/// naming `rel`, then the lock file itself. Returns the record's path.
fn dead_gatos_writer(repo: &TempRepo, rel: &str) -> TestResult<std::path::PathBuf> {
    let owners = repo.git_dir().join("gatos/locks/owners");
    std::fs::create_dir_all(&owners)?;
    let record = owners.join("4242-1-0");
    std::fs::write(&record, format!("{rel}\n"))?;
    age_hour(&record)?; // written before the lock, as a writer does
    let lock = repo.git_dir().join(rel);
    std::fs::create_dir_all(lock.parent().ok_or("a parent")?)?;
    std::fs::write(&lock, "0000000000000000000000000000000000000000\n")?;
    // Made right after its record, as a writer does (a lock made long after a dead
    // writer's record is not that writer's: ADR 0020).
    age_hour(&lock)?;
    Ok(record)
}

#[test]
fn doctor_fix_removes_a_dead_gatos_writers_lock_but_not_a_live_ones() -> TestResult {
    let repo = fixture()?;
    let rel = "refs/gatos/messages/ci.events/head.lock";
    let lock = repo.git_dir().join(rel);

    // Its writer is alive: it holds its record's flock. Not reported, not removed.
    let record = dead_gatos_writer(&repo, rel)?;
    let held = std::fs::File::open(&record)?;
    held.lock()?;
    let (_, rows) = doctor(&repo, true)?;
    assert!(
        !rows
            .iter()
            .any(|r| r["target"] == lock.display().to_string()),
        "{rows:?}"
    );
    assert!(lock.exists());

    // The writer dies (its flock goes): plain --fix removes its lock and its record.
    drop(held);
    let (code, rows) = doctor(&repo, true)?;
    assert_eq!(code, Some(0), "{rows:?}");
    assert!(
        rows.iter().any(|r| r["code"] == "lock-stale"
            && r["target"] == lock.display().to_string()
            && r["fixed"] == true),
        "{rows:?}"
    );
    assert!(!lock.exists());
    assert!(!record.exists());
    // And the topic takes writes again.
    gatos_ok(
        &repo,
        &["messages", "publish", "ci.events", "--data", r#"{"n":99}"#],
    )?;
    repo.assert_fsck_strict()
}

#[test]
fn a_lock_made_long_after_a_dead_gatos_writer_is_not_its() -> TestResult {
    let repo = fixture()?;
    // A gatos writer died an hour ago naming packed-refs.lock (every record names it);
    // now git takes packed-refs.lock for a gc of its own.
    let owners = repo.git_dir().join("gatos/locks/owners");
    std::fs::create_dir_all(&owners)?;
    let record = owners.join("4242-1-1");
    std::fs::write(
        &record,
        "refs/gatos/messages/ci.events/head.lock\npacked-refs.lock\n",
    )?;
    age_hour(&record)?;
    let lock = repo.git_dir().join("packed-refs.lock");
    std::fs::write(&lock, "# git's\n")?;
    let (_, rows) = doctor(&repo, true)?;
    assert!(lock.exists(), "git's fresh lock was left alone: {rows:?}");
    assert!(
        !rows
            .iter()
            .any(|r| r["target"] == lock.display().to_string() && r["fixed"] == true),
        "{rows:?}"
    );
    std::fs::remove_file(&lock)?;
    Ok(())
}

// ADR 0024: as_of enters the root only while an exported job has neither a result nor a
// cancel; exports of the previous exporter version (gatos-export/1) still verify.

/// `scripts/explorer_root.py` on a SQLite export: its output, whatever the status.
fn explorer_root_py(db: &Path) -> TestResult<Output> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/explorer_root.py");
    Ok(Command::new("python3").arg(script).arg(db).output()?)
}

/// The Explorer-Root that `scripts/explorer_root.py` recomputes; it must succeed.
fn python_root(db: &Path) -> TestResult<String> {
    let out = explorer_root_py(db)?;
    assert!(
        out.status.success(),
        "explorer_root.py failed (pip install blake3): {}",
        stderr(&out)
    );
    let text = String::from_utf8(out.stdout)?;
    let last = text.lines().last().unwrap_or_default();
    Ok(last
        .strip_prefix("explorer-root ")
        .unwrap_or(last)
        .to_owned())
}

/// The manifest of a SQLite export.
fn sqlite_manifest(db: &Path) -> TestResult<Value> {
    let rows = sqlite_json(db, "SELECT json FROM _gatos_manifest")?;
    Ok(serde_json::from_str(rows[0]["json"].as_str().unwrap())?)
}

/// `export verify PATH [--repo DIR] --json`, which must succeed; returns its root.
fn verified_root(repo: &TempRepo, path: &Path, with_repo: bool) -> TestResult<String> {
    let mut args = vec!["export", "verify", path.to_str().unwrap(), "--json"];
    if with_repo {
        args.extend(["--repo", "."]);
    }
    let v = json_lines(&gatos_ok(repo, &args)?)?;
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["repository_checked"], with_repo);
    Ok(v[0]["explorer_root"].as_str().unwrap().to_owned())
}

/// `export verify` fails with `code`, and its message holds `part`.
fn verify_fails_with(
    repo: &TempRepo,
    path: &Path,
    with_repo: bool,
    code: &str,
    part: &str,
) -> TestResult {
    let mut args = vec!["export", "verify", path.to_str().unwrap()];
    if with_repo {
        args.extend(["--repo", "."]);
    }
    let out = gatos(repo, &args)?;
    let e = stderr(&out);
    assert!(
        !out.status.success(),
        "verify passed, expected {code}: {part}"
    );
    assert!(
        e.contains(code) && e.contains(part),
        "expected {code} and {part:?} in: {e}"
    );
    Ok(())
}

/// Rewrites a SQLite export's filter spec as a forger would: sets `as_of` (or removes
/// it, with `None`) and recomputes the Explorer-Root over the new spec, so that only the
/// as_of rule can tell.
fn reroot_with_as_of(db: &Path, as_of: Option<&str>) -> TestResult {
    let script = r#"
import json, sqlite3, sys
import blake3
db = sqlite3.connect(sys.argv[1])
m = json.loads(db.execute("SELECT json FROM _gatos_manifest").fetchone()[0])
if sys.argv[2] == "-":
    del m["filter"]["as_of"]
else:
    m["filter"]["as_of"] = sys.argv[2]
h = blake3.blake3()
def field(b):
    h.update(len(b).to_bytes(4, "big"))
    h.update(b)
field(bytes.fromhex(m["ref_state"][len("blake3:"):]))
field(json.dumps(m["filter"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
for t in sorted(m["tables"]):
    field(t.encode())
    field(str(m["tables"][t]["rows"]).encode())
    field(bytes.fromhex(m["tables"][t]["digest"][len("blake3:"):]))
field(m["exporter"].encode())
m["explorer_root"] = "blake3:" + h.hexdigest()
db.execute("UPDATE _gatos_manifest SET json = ?", (json.dumps(m, indent=2),))
db.commit()
"#;
    let out = Command::new("python3")
        .args(["-c", script, db.to_str().unwrap(), as_of.unwrap_or("-")])
        .output()?;
    assert!(
        out.status.success(),
        "(pip install blake3) {}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn as_of_enters_the_root_only_while_an_exported_job_has_no_result_and_no_cancel() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let done = enqueue(&repo, &["--queue", "build", "--", "true"])?;
    let cancelled = enqueue(&repo, &["--queue", "build", "--", "true"])?;
    gatos_ok(&repo, &["jobs", "cancel", &cancelled])?;
    let pending = enqueue(&repo, &["--queue", "nightly", "--", "true"])?;
    gatos_ok(&repo, &["worker", "--drain", "--queue", "build"])?;
    let state = |id: &str| -> TestResult<String> {
        let row = json_lines(&gatos_ok(&repo, &["jobs", "show", id, "--json"])?)?;
        Ok(row[0]["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state(&done)?, "succeeded");
    assert_eq!(state(&cancelled)?, "cancelled");
    assert_eq!(state(&pending)?, "pending");

    // Exports the job tables restricted by `where_` at `as_of` (None: the clock) to a new
    // file; returns the file, its manifest and its root.
    let n = std::cell::Cell::new(0);
    let export_at =
        |where_: &[&str], as_of: Option<&str>| -> TestResult<(std::path::PathBuf, Value)> {
            n.set(n.get() + 1);
            let db = repo.root().join(format!("e{}.db", n.get()));
            let mut args = vec![
                "--format",
                "sqlite",
                "--out",
                db.to_str().unwrap(),
                "--tables",
                "jobs,attempts,results",
            ];
            for w in where_ {
                args.extend(["--where", *w]);
            }
            if let Some(t) = as_of {
                args.extend(["--as-of", t]);
            }
            let out = export(&repo, &args)?;
            let m = sqlite_manifest(&db)?;
            assert_eq!(m["exporter"], "gatos-export/3");
            assert_eq!(m["explorer_root"], out["explorer_root"]);
            Ok((db, m))
        };
    let (early, late) = ("2020-01-01T00:00:00Z", "2040-01-01T00:00:00Z");

    // A job with a result, a cancelled job, and both: no as_of, the same root at any time.
    for (what, preds) in [
        (
            "a result",
            vec![format!("jobs.id = {done}"), format!("job = {done}")],
        ),
        (
            "a cancel",
            vec![
                format!("jobs.id = {cancelled}"),
                format!("job = {cancelled}"),
            ],
        ),
        ("finished jobs", vec!["queue = build".to_owned()]),
    ] {
        let preds: Vec<&str> = preds.iter().map(String::as_str).collect();
        let (a, ma) = export_at(&preds, Some(early))?;
        let (b, mb) = export_at(&preds, Some(late))?;
        let (c, mc) = export_at(&preds, None)?;
        for m in [&ma, &mb, &mc] {
            assert!(m["filter"].get("as_of").is_none(), "{what}: {m}");
        }
        assert_eq!(ma["explorer_root"], mb["explorer_root"], "{what}");
        assert_eq!(ma["explorer_root"], mc["explorer_root"], "{what}");
        assert!(
            ma["tables"]["jobs"]["rows"].as_u64().unwrap() >= 1,
            "{what}"
        );
        for db in [&a, &b, &c] {
            let root = verified_root(&repo, db, true)?;
            assert_eq!(root, ma["explorer_root"].as_str().unwrap());
            assert_eq!(python_root(db)?, root);
        }
    }
    let (_, m) = export_at(&["queue = build"], None)?;
    assert_eq!(m["tables"]["results"]["rows"], 1);
    assert_eq!(m["tables"]["jobs"]["rows"], 2);

    // A pending job is exported: as_of enters, and the root moves with it.
    let id = format!("jobs.id = {pending}");
    let (a, ma) = export_at(&[id.as_str()], Some(early))?;
    let (_, mb) = export_at(&[id.as_str()], Some(late))?;
    let (_, mc) = export_at(&[id.as_str()], Some(early))?;
    assert_eq!(ma["filter"]["as_of"], "2020-01-01T00:00:00.000Z");
    assert_eq!(mb["filter"]["as_of"], "2040-01-01T00:00:00.000Z");
    assert_eq!(ma["tables"], mb["tables"]);
    assert_ne!(ma["explorer_root"], mb["explorer_root"]);
    assert_eq!(ma["explorer_root"], mc["explorer_root"]);
    assert_eq!(verified_root(&repo, &a, true)?, python_root(&a)?);
    // Every job: the pending one brings as_of along.
    let (_, m) = export_at(&[], Some(late))?;
    assert_eq!(m["filter"]["as_of"], "2040-01-01T00:00:00.000Z");
    // No job table: never an as_of.
    let events = repo.root().join("events.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            events.to_str().unwrap(),
            "--tables",
            "messages",
        ],
    )?;
    assert!(sqlite_manifest(&events)?["filter"].get("as_of").is_none());

    // A running job: as_of enters (also when only its attempts are exported, and after its
    // lease, when it is failed without a result); once it is cancelled, it no longer does.
    let shared = jobs_shared(&repo);
    let pidfile = shared.join("running.pid");
    let script = format!("echo $$ > {}; exec sleep 120", pidfile.display());
    let running = enqueue(
        &repo,
        &[
            "--queue",
            "slow",
            "--max-attempts",
            "1",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )?;
    let allow = shared.to_string_lossy().into_owned();
    let mut worker = gatos_cmd(
        &repo,
        &[
            "worker",
            "--once",
            "--queue",
            "slow",
            "--lease",
            "3s",
            "--sandbox-allow-write",
            &allow,
        ],
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()?;
    let ran = wait_for("the job to run", Duration::from_secs(60), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty())
            && state(&running).is_ok_and(|s| s == "running")
    });
    let this = [format!("jobs.id = {running}"), format!("job = {running}")];
    let this: Vec<&str> = this.iter().map(String::as_str).collect();
    let checks = (|| -> TestResult {
        ran?;
        let (db, m) = export_at(&this, None)?;
        assert!(m["filter"].get("as_of").is_some(), "{m}");
        let rows = sqlite_json(&db, "SELECT state FROM jobs")?;
        assert_eq!(rows[0]["state"], "running");
        assert_eq!(verified_root(&repo, &db, true)?, python_root(&db)?);
        let (db, m) = export_at(&this, Some(late))?;
        assert!(m["filter"].get("as_of").is_some(), "{m}");
        let rows = sqlite_json(&db, "SELECT state FROM jobs")?;
        assert_eq!(rows[0]["state"], "failed");
        assert_eq!(m["tables"]["results"]["rows"], 0);
        assert_eq!(verified_root(&repo, &db, true)?, python_root(&db)?);
        let attempts = repo.root().join("attempts.db");
        export(
            &repo,
            &[
                "--format",
                "sqlite",
                "--out",
                attempts.to_str().unwrap(),
                "--tables",
                "attempts",
                "--where",
                &format!("job = {running}"),
            ],
        )?;
        let m = sqlite_manifest(&attempts)?;
        assert_eq!(m["tables"]["attempts"]["rows"], 1);
        assert!(m["filter"].get("as_of").is_some(), "{m}");
        Ok(())
    })();
    // The worker stops a cancelled job and exits.
    let cancel = gatos_ok(&repo, &["jobs", "cancel", &running]);
    let mut exited = None;
    wait_for(
        "the worker to stop the job",
        Duration::from_secs(120),
        || {
            exited = worker.try_wait().ok().flatten();
            exited.is_some()
        },
    )
    .inspect_err(|_| {
        let _ = worker.kill();
        let _ = worker.wait();
    })?;
    checks?;
    cancel?;
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    assert_eq!(state(&running)?, "cancelled");
    let (a, ma) = export_at(&this, Some(early))?;
    let (_, mb) = export_at(&this, None)?;
    assert_eq!(ma["tables"]["attempts"]["rows"], 1);
    assert!(ma["filter"].get("as_of").is_none(), "{ma}");
    assert_eq!(ma["explorer_root"], mb["explorer_root"]);
    assert_eq!(verified_root(&repo, &a, true)?, python_root(&a)?);
    repo.assert_fsck_strict()
}

#[test]
fn export_verify_holds_gatos_export_2_to_its_as_of_rule() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let done = enqueue(&repo, &["--queue", "build", "--", "true"])?;
    let pending = enqueue(&repo, &["--queue", "nightly", "--", "true"])?;
    gatos_ok(&repo, &["worker", "--drain", "--queue", "build"])?;
    let copy = |from: &Path, name: &str| -> TestResult<std::path::PathBuf> {
        let to = repo.root().join(name);
        std::fs::copy(from, &to)?;
        Ok(to)
    };

    // A pending job's row, its as_of removed and the root recomputed: its state shows it.
    let with_pending = repo.root().join("pending.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            with_pending.to_str().unwrap(),
            "--tables",
            "jobs",
            "--where",
            &format!("id = {pending}"),
        ],
    )?;
    let forged = copy(&with_pending, "forged1.db")?;
    reroot_with_as_of(&forged, None)?;
    verify_fails_with(&repo, &forged, false, "DigestMismatch", "as_of is missing")?;
    let py = explorer_root_py(&forged)?;
    assert!(
        !py.status.success() && stderr(&py).contains("as_of"),
        "{}",
        stderr(&py)
    );

    // Without the state column only the repository can tell.
    let ids_only = repo.root().join("ids.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            ids_only.to_str().unwrap(),
            "--tables",
            "jobs",
            "--columns",
            "jobs:id",
        ],
    )?;
    assert!(sqlite_manifest(&ids_only)?["filter"].get("as_of").is_some());
    reroot_with_as_of(&ids_only, None)?;
    verified_root(&repo, &ids_only, false)?;
    verify_fails_with(
        &repo,
        &ids_only,
        true,
        "DigestMismatch",
        &format!("job {pending}"),
    )?;

    // Finished jobs only, with an as_of added: the repository shows it is extra.
    let finished = repo.root().join("finished.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            finished.to_str().unwrap(),
            "--where",
            &format!("jobs.id = {done}"),
        ],
    )?;
    let m = sqlite_manifest(&finished)?;
    assert!(m["filter"].get("as_of").is_none(), "{m}");
    let forged = copy(&finished, "forged2.db")?;
    reroot_with_as_of(&forged, Some("2030-01-01T00:00:00.000Z"))?;
    verified_root(&repo, &forged, false)?;
    verify_fails_with(&repo, &forged, true, "DigestMismatch", "as_of is extra")?;

    // An as_of without a job table is refused by both versions' rule.
    let events = repo.root().join("events.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            events.to_str().unwrap(),
            "--tables",
            "messages",
        ],
    )?;
    reroot_with_as_of(&events, Some("2030-01-01T00:00:00.000Z"))?;
    verify_fails_with(
        &repo,
        &events,
        false,
        "DigestMismatch",
        "as_of is missing or extra",
    )?;
    let py = explorer_root_py(&events)?;
    assert!(!py.status.success(), "{}", stderr(&py));
    Ok(())
}

/// Copies a fixture file or directory.
fn copy_fixture(from: &Path, to: &Path) -> TestResult {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    } else {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

#[test]
fn an_export_of_the_previous_version_still_verifies() -> TestResult {
    // Written by gatos-export/1 (tests/fixtures/export-v1/generate.sh says how), with the
    // repository they came from as a bundle.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/export-v1");
    let repo = TempRepo::new()?;
    let bundle = fixtures.join("repo.bundle");
    repo.git(&["fetch", "-q", bundle.to_str().unwrap(), "refs/*:refs/*"])?;
    let key = std::fs::read_to_string(fixtures.join("key.txt"))?;
    gatos_ok(&repo, &["keys", "trust", key.trim()])?;
    let roots = std::fs::read_to_string(fixtures.join("roots.txt"))?;
    for line in roots.lines() {
        let (name, root) = line.split_once(' ').ok_or("roots.txt: NAME ROOT")?;
        let path = repo.root().join(name);
        copy_fixture(&fixtures.join(name), &path)?;
        let manifest = if name.ends_with(".sqlite") {
            sqlite_manifest(&path)?
        } else {
            serde_json::from_str(&std::fs::read_to_string(path.join("manifest.json"))?)?
        };
        assert_eq!(manifest["exporter"], "gatos-export/1", "{name}");
        assert_eq!(verified_root(&repo, &path, false)?, root, "{name}");
        assert_eq!(verified_root(&repo, &path, true)?, root, "{name}");
        if name.ends_with(".sqlite") {
            assert_eq!(python_root(&path)?, root, "{name}");
        }
    }
    // Version 1 put as_of in with any job table, finished jobs or not; version 1's rule
    // still holds it to that.
    let finished = repo.root().join("finished.sqlite");
    let m = sqlite_manifest(&finished)?;
    assert!(m["filter"].get("as_of").is_some(), "{m}");
    let states = sqlite_json(&finished, "SELECT DISTINCT state FROM jobs ORDER BY state")?;
    assert_eq!(states.len(), 2, "{states:?}");
    let forged = repo.root().join("forged.sqlite");
    std::fs::copy(&finished, &forged)?;
    reroot_with_as_of(&forged, None)?;
    verify_fails_with(
        &repo,
        &forged,
        false,
        "DigestMismatch",
        "as_of is missing or extra",
    )?;
    assert!(!explorer_root_py(&forged)?.status.success());
    // Relabelled as version 2, the root no longer matches; an unknown version is refused.
    for (label, code, part) in [
        ("gatos-export/2", "DigestMismatch", "explorer_root"),
        ("gatos-export/9", "InvalidInput", "gatos-export/9"),
    ] {
        std::fs::copy(&finished, &forged)?;
        sqlite_exec(
            &forged,
            &format!(
                "UPDATE _gatos_manifest SET json = replace(json, '\"gatos-export/1\"', '\"{label}\"')"
            ),
        )?;
        verify_fails_with(&repo, &forged, false, code, part)?;
    }
    // --incremental extends a version 1 export into a version 3 one: the same table, and
    // the new version's root, without as_of since every job in it is finished.
    let after = export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            finished.to_str().unwrap(),
            "--incremental",
        ],
    )?;
    assert_eq!(after["tables"], m["tables"]);
    let upgraded = sqlite_manifest(&finished)?;
    assert_eq!(upgraded["exporter"], "gatos-export/3");
    assert_eq!(upgraded["increments"], 1);
    assert!(upgraded["filter"].get("as_of").is_none(), "{upgraded}");
    assert_ne!(upgraded["explorer_root"], m["explorer_root"]);
    assert_eq!(
        verified_root(&repo, &finished, true)?,
        python_root(&finished)?
    );
    // With attempts it is refused: version 3's attempts.outcome says what 1 called
    // `failed` apart (ADR 0029), and the rows would mix the two.
    let all = repo.root().join("all.sqlite");
    let out = gatos(
        &repo,
        &[
            "export",
            "--format",
            "sqlite",
            "--out",
            all.to_str().unwrap(),
            "--incremental",
        ],
    )?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error[InvalidInput]") && stderr(&out).contains("gatos-export/1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sqlite_manifest(&all)?["exporter"], "gatos-export/1");
    Ok(())
}

/// An export of a repository with a damaged topic (its head moved outside gatos to no
/// message, ADR 0047) fails naming the topic and the ways to export the rest, and those
/// ways work: without the messages table, or with the other topic selected.
#[test]
fn a_damaged_topic_is_named_and_the_rest_can_be_exported() -> TestResult {
    let repo = crate::support::a_damaged_topic()?;
    let dir = tempfile::tempdir()?;
    let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let all = out("all.db");
    let failed = gatos(
        &repo,
        &["export", "--json", "--format", "sqlite", "--out", &all],
    )?;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let said = stderr(&failed);
    assert!(
        said.contains("error[InvalidEnvelope]: topic 'bad' does not read")
            && said.contains("--tables without messages"),
        "{said}"
    );
    let body = json_lines(&String::from_utf8(failed.stdout)?)?;
    assert_eq!(body[0]["error"]["topic"], "bad", "{body:?}");
    let jobs = out("jobs.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            &jobs,
            "--tables",
            "jobs,checkpoints",
        ],
    )?;
    let good = out("good.db");
    export(
        &repo,
        &[
            "--format",
            "sqlite",
            "--out",
            &good,
            "--where",
            "topic = good",
        ],
    )?;
    let rows = sqlite_json(Path::new(&good), "SELECT topic FROM messages")?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["topic"], "good");
    Ok(())
}

/// An export killed mid-write (found by a black-box test): an `--incremental` one left a
/// hot journal, and gatos, opening the file read-only, took it for a damaged export
/// (`DigestMismatch`) and would not extend or replace it; a full one left its
/// `<out>.tmp-<pid>` work file, a whole export's size, for good. The journal is rolled
/// back (the export as it was before that write), and a later export removes the work
/// files of processes that are gone.
#[test]
fn an_export_killed_mid_write_is_recovered_and_leaves_no_work_file() -> TestResult {
    let repo = fixture()?;
    let db = repo.root().join("e.db");
    let out = db.to_str().ok_or("path")?;
    let first = export(&repo, &["--format", "sqlite", "--out", out])?;
    // A writer that dies inside its transaction after changing pages: a hot journal, and
    // a file that reads wrong until it is rolled back.
    let died = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('PRAGMA cache_size = 1')\n\
             c.execute('BEGIN IMMEDIATE')\n\
             c.execute('DELETE FROM messages')\n\
             c.execute('DELETE FROM _gatos_manifest')\n\
             os._exit(9)\n",
            out,
        ])
        .status()?;
    assert_eq!(died.code(), Some(9));
    let journal = repo.root().join("e.db-journal");
    assert!(journal.exists(), "the writer left its journal");
    let verified = gatos_ok(&repo, &["export", "verify", out, "--json"])?;
    let root = first["explorer_root"].as_str().ok_or("explorer_root")?;
    assert!(
        verified.contains(root) && verified.contains("\"ok\":true"),
        "{verified}"
    );
    // Extended in place, then replaced, as before the crash.
    export(
        &repo,
        &["--format", "sqlite", "--out", out, "--incremental"],
    )?;
    // A full export removes the work files of exports that are gone, not a live one's.
    let dead = repo.root().join("e.db.tmp-999999999");
    std::fs::write(&dead, "partial")?;
    let live = repo.root().join("e.db.tmp-1");
    std::fs::write(&live, "another export's")?;
    export(&repo, &["--format", "sqlite", "--out", out])?;
    assert!(!dead.exists(), "the dead export's work file is removed");
    assert!(live.exists(), "a live process's work file is kept");
    Ok(())
}
