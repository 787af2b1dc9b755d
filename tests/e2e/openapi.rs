//! The HTTP face's OpenAPI document (ADR 0033): what `gatosd generate openapi` prints is
//! `docs/openapi.json`, and an independent validator (openapi-spec-validator, Python)
//! finds it valid OpenAPI 3.1.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use gatos_testutil::{TestResult, bin};

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
