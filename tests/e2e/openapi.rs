//! The HTTP face's OpenAPI document (ADR 0033): what `gatosd generate openapi` prints is
//! `docs/openapi.json`, an independent validator (openapi-spec-validator, Python) finds it
//! valid OpenAPI 3.1, and a live `gatosd --http` serves it and answers as it says
//! (`scripts/check_http_contract.py`, Python's urllib and jsonschema).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic, wait_for};

fn repo_file(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn the_generated_openapi_document_is_committed_and_valid() -> TestResult {
    let out = Command::new(bin("gatosd"))
        .args(["generate", "openapi"])
        .stdin(Stdio::null())
        .output()?;
    assert!(
        out.status.success(),
        "gatosd generate openapi: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(repo_file("docs/openapi.json"))?;
    assert!(
        out.stdout == committed,
        "gatosd generate openapi differs from docs/openapi.json; \
         run GATOS_BLESS=1 cargo test -p gatos-api --test api -- openapi_doc"
    );

    let mut check = Command::new("python3")
        .arg(repo_file("scripts/validate_openapi.py"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    check
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(&out.stdout)?;
    let done = check.wait_with_output()?;
    assert!(
        done.status.success(),
        "openapi-spec-validator refused the document (pip install -r scripts/requirements.txt \
         if the module is missing):\n{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).starts_with("ok: "));
    Ok(())
}

/// A document that is not OpenAPI 3.1 is refused by the same check (so a passing check
/// means something).
#[test]
fn the_validator_refuses_a_broken_document() -> TestResult {
    let mut check = Command::new("python3")
        .arg(repo_file("scripts/validate_openapi.py"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    check
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(br#"{"openapi": "3.1.0", "info": {"title": "x"}, "paths": {"nope": {}}}"#)?;
    let done = check.wait_with_output()?;
    assert_eq!(done.status.code(), Some(1));
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains("version"), "{err}");
    Ok(())
}

/// A live `gatosd --http 127.0.0.1:0` on a fresh repository answers as its document says:
/// the served document is the committed one, answers fit their schemas, refusals are
/// problems that fit the Problem schema.
#[test]
fn a_live_daemon_answers_as_its_document_says() -> TestResult {
    let repo = TempRepo::new()?;
    let addr_file = repo.git_dir().join("gatos/gatosd/http-addr");
    let log = repo.root().join("gatosd.log");
    let mut cmd = Command::new(bin("gatosd"));
    cmd.args(["--socket", &repo.root().join("g.sock").to_string_lossy()])
        .args(["--http", "127.0.0.1:0"])
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    hermetic(&mut cmd, &repo.home());
    let mut child = cmd.spawn()?;
    let mut addr = String::new();
    let waited = wait_for("gatosd to write http-addr", Duration::from_secs(30), || {
        match std::fs::read_to_string(&addr_file) {
            Ok(a) if a.ends_with('\n') => {
                addr = a.trim().to_owned();
                true
            }
            _ => matches!(child.try_wait(), Ok(Some(_))),
        }
    });
    let result = (|| -> TestResult {
        if waited.is_err() || addr.is_empty() {
            return Err(format!(
                "gatosd did not serve HTTP: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
            .into());
        }
        let token = std::fs::read_to_string(repo.git_dir().join("gatos/gatosd/token"))?;
        let out = Command::new("python3")
            .arg(repo_file("scripts/check_http_contract.py"))
            .arg(format!("http://{addr}"))
            .arg(token.trim_end())
            .arg(repo_file("docs/openapi.json"))
            .stdin(Stdio::null())
            .output()?;
        assert!(
            out.status.success(),
            "the live daemon differs from its document:\n{}{}\ngatosd's log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("all contract checks passed"));
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
