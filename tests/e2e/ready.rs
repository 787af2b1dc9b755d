//! `gatos.ready` against a real gatosd: ready on a healthy repository; the background
//! sync's state after syncs with a real bare remote, a failing sync reflected and
//! recovered; the maintenance debt.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic, wait_for};
use serde_json::{Value, json};

use crate::support::gatos_ok;

/// A gatosd on a Unix socket, killed when dropped.
struct Daemon {
    child: Child,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next: u64,
}

impl Daemon {
    fn start(repo: &TempRepo, args: &[&str]) -> TestResult<Daemon> {
        let socket = repo.root().join("ready.sock");
        let mut cmd = Command::new(bin("gatosd"));
        cmd.args(["--socket", &socket.to_string_lossy()])
            .args(args)
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        hermetic(&mut cmd, &repo.home());
        let mut child = cmd.spawn()?;
        if let Err(e) = wait_for("gatosd to accept", Duration::from_secs(30), || {
            UnixStream::connect(&socket).is_ok()
        }) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let s = UnixStream::connect(&socket)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Daemon {
            child,
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            next: 1,
        })
    }

    /// `gatos.ready {}`: a read, open on the socket without the token.
    fn ready(&mut self) -> TestResult<Value> {
        let id = self.next;
        self.next += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "gatos.ready", "params": {}});
        writeln!(self.writer, "{req}")?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line)?;
        assert_eq!(v["id"], id, "{v}");
        v.get("result")
            .cloned()
            .ok_or_else(|| format!("gatos.ready: {v}").into())
    }

    /// Asks until `cond` holds for the answer (or the deadline passes); returns it.
    fn ready_when(&mut self, what: &str, cond: impl Fn(&Value) -> bool) -> TestResult<Value> {
        let mut last = Value::Null;
        let waited = wait_for(what, Duration::from_secs(60), || match self.ready() {
            Ok(r) => {
                let ok = cond(&r);
                last = r;
                ok
            }
            Err(_) => false,
        });
        waited.map_err(|e| format!("{e}; last answer {last}"))?;
        Ok(last)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_syncing_daemon_is_ready_and_reports_its_syncs_failing_and_recovering() -> TestResult {
    let repo = TempRepo::new()?;
    let hub = TempRepo::bare()?;
    gatos_ok(&repo, &["init"])?;
    let hub_path = hub.path().to_string_lossy().into_owned();
    repo.git(&["remote", "add", "origin", &hub_path])?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", "{}"])?;
    let mut d = Daemon::start(&repo, &["--sync", "origin", "--sync-interval", "1s"])?;

    let r = d.ready_when("a background sync that succeeded", |r| {
        r["sync"]["last_ok"] == true
    })?;
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["repository_readable"], true, "{r}");
    assert_eq!(r["shutting_down"], false, "{r}");
    assert!(r.get("repository_error").is_none(), "{r}");
    let sync = &r["sync"];
    assert_eq!(sync["remote"], "origin", "{r}");
    assert_eq!(sync["interval_seconds"], 1, "{r}");
    assert!(sync["last_at"].is_string(), "{r}");
    assert_eq!(sync["consecutive_failures"], 0, "{r}");
    assert_eq!(sync["rejected_total"], 0, "{r}");
    assert!(sync["runs_total"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert!(sync.get("last_code").is_none(), "{r}");
    assert!(
        hub.rev_parse("refs/gatos/messages/t/head")?.is_some(),
        "the sync reached the hub"
    );
    let m = &r["maintenance"];
    assert_eq!(m["enabled"], true, "{r}");
    let debt = &m["debt"];
    for k in [
        "loose_objects",
        "packs",
        "kept_packs",
        "loose_objects_threshold",
        "packs_threshold",
        "archivable_jobs",
        "archive_after_seconds",
    ] {
        assert!(debt[k].is_u64(), "debt.{k}: {r}");
    }
    assert!(debt["compaction_due"].is_boolean(), "{r}");

    // The remote goes away: the next syncs fail, the node stays ready and says so.
    let gone = repo.root().join("no-such-hub.git");
    repo.git(&["remote", "set-url", "origin", &gone.to_string_lossy()])?;
    let r = d.ready_when("a failed sync", |r| r["sync"]["last_ok"] == false)?;
    assert_eq!(
        r["ready"], true,
        "a failing sync does not make a node unready: {r}"
    );
    let sync = &r["sync"];
    assert!(sync["last_code"].is_string(), "{r}");
    assert!(sync["last_error"].is_string(), "{r}");
    assert!(
        sync["consecutive_failures"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{r}"
    );
    assert!(
        sync["failures_total"].as_u64().is_some_and(|n| n >= 1),
        "{r}"
    );
    let r = d.ready_when("two failures in a row", |r| {
        r["sync"]["consecutive_failures"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    })?;
    assert_eq!(r["sync"]["last_ok"], false, "{r}");

    // It comes back: the count of failures in a row starts again.
    repo.git(&["remote", "set-url", "origin", &hub_path])?;
    let r = d.ready_when("a sync that succeeded again", |r| {
        r["sync"]["last_ok"] == true
    })?;
    assert_eq!(r["sync"]["consecutive_failures"], 0, "{r}");
    assert!(r["sync"].get("last_code").is_none(), "{r}");
    assert!(
        r["sync"]["failures_total"].as_u64().is_some_and(|n| n >= 2),
        "{r}"
    );
    Ok(())
}

#[test]
fn a_daemon_without_sync_is_ready_and_counts_archivable_jobs() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let id = crate::support::enqueue(&repo, &["--queue", "q", "--no-checkout", "--", "true"])?;
    gatos_ok(&repo, &["jobs", "cancel", &id])?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", "{}"])?;
    // The daemon's clock is years ahead: the cancelled job is long past archiveAfter.
    let mut cmd = Command::new(bin("gatosd"));
    cmd.arg("--stdio")
        .current_dir(repo.path())
        .env("GATOS_TEST_CLOCK", "2036-01-01T00:00:00Z")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    hermetic(&mut cmd, &repo.home());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"gatos.ready","params":{{}}}}"#
    )?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"gatos.ready","params":{{"x":1}}}}"#
    )?;
    drop(stdin);
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let r = lines
        .iter()
        .find(|l| l["id"] == 1)
        .ok_or("an answer to 1")?["result"]
        .clone();
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["sync"], Value::Null, "no --sync, no sync section: {r}");
    assert_eq!(r["maintenance"]["enabled"], true, "{r}");
    assert_eq!(
        r["maintenance"]["last_at"],
        Value::Null,
        "nothing was due: {r}"
    );
    assert_eq!(r["maintenance"]["debt"]["archivable_jobs"], 1, "{r}");
    let bad = lines
        .iter()
        .find(|l| l["id"] == 2)
        .ok_or("an answer to 2")?;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    Ok(())
}
