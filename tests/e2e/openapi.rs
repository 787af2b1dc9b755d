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

/// The patterns the schemas give names, ULIDs, digests, object and key ids hold for exactly
/// the texts gatos parses, checked with Python's `re` (JSON Schema's patterns are ECMA-262;
/// these use only what both dialects share: classes, counts, anchors, lookahead) over a
/// corpus of near misses.
#[test]
fn schema_patterns_accept_exactly_what_gatos_parses() -> TestResult {
    use gatos_types::{Digest, KeyId, Oid, Topic, Ulid};
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_file("docs/openapi.json"))?)?;
    let pattern = |name: &str| -> TestResult<String> {
        Ok(doc["components"]["schemas"][name]["pattern"]
            .as_str()
            .ok_or(format!("{name} has no pattern"))?
            .to_owned())
    };
    // Every string of up to 3 of these pieces, and some longer ones.
    let pieces = ["a", "z", "0", ".", "_", "-", "lock", "A", "/", " ", "é"];
    let mut names: Vec<String> = vec![String::new()];
    for _ in 0..3 {
        let longer: Vec<String> = names
            .iter()
            .flat_map(|n| pieces.iter().map(move |p| format!("{n}{p}")))
            .collect();
        names.extend(longer);
    }
    names.sort();
    names.dedup();
    names.extend([
        "a".repeat(64),
        "a".repeat(65),
        "ci.events".into(),
        "a.lock.b".into(),
    ]);
    let ulid = Ulid::from_parts(1_700_000_000_000, 42).to_string();
    let mut ulids = vec![ulid.clone(), ulid.to_lowercase(), format!("{ulid}0")];
    for bad in ['I', 'L', 'O', 'U', '8', 'Z'] {
        ulids.push(format!("{bad}{}", &ulid[1..]));
        ulids.push(format!("{}{bad}", &ulid[..25]));
    }
    let digest = Digest::of(b"x").to_string();
    let digests = vec![
        digest.clone(),
        digest.to_uppercase(),
        digest.replacen("blake3", "sha256", 1),
        format!("{digest}0"),
    ];
    let oid = "0123456789abcdef0123456789abcdef01234567".to_owned();
    let oids = vec![
        oid.clone(),
        oid.to_uppercase(),
        oid[1..].to_owned(),
        format!("{oid}8"),
    ];
    let key = format!("ed25519:{}", "ab".repeat(32));
    let keys = vec![
        key.clone(),
        key.to_uppercase(),
        key.replace("ed25519:", ""),
        format!("{key}a"),
    ];

    let mut cases = Vec::new();
    for n in &names {
        cases.push(serde_json::json!([
            pattern("Topic")?,
            n,
            n.parse::<Topic>().is_ok()
        ]));
    }
    for u in &ulids {
        cases.push(serde_json::json!([
            pattern("Ulid")?,
            u,
            u.parse::<Ulid>().is_ok()
        ]));
    }
    for d in &digests {
        cases.push(serde_json::json!([
            pattern("Digest")?,
            d,
            d.parse::<Digest>().is_ok()
        ]));
    }
    for o in &oids {
        cases.push(serde_json::json!([
            pattern("Oid")?,
            o,
            o.parse::<Oid>().is_ok()
        ]));
    }
    for k in &keys {
        cases.push(serde_json::json!([
            pattern("KeyId")?,
            k,
            k.parse::<KeyId>().is_ok()
        ]));
    }
    let script = "import json, re, sys\n\
        bad = [(p, s, ok) for p, s, ok in json.load(sys.stdin) if (re.search(p, s) is not None) != ok]\n\
        print(json.dumps(bad[:20]))\n\
        sys.exit(1 if bad else 0)\n";
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    py.stdin
        .take()
        .ok_or("no stdin")?
        .write_all(serde_json::to_string(&cases)?.as_bytes())?;
    let out = py.wait_with_output()?;
    assert!(
        out.status.success(),
        "patterns and parsers disagree on {} of {} texts (pattern, text, parses): {}{}",
        String::from_utf8_lossy(&out.stdout).matches("],").count() + 1,
        cases.len(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Property-based tests of a live daemon from its own document, bounded (issue #17 point
/// 8): schemathesis (Python, independent of gatos) makes requests to every route from the
/// served OpenAPI document — valid ones and, as negative tests, invalid ones — and checks
/// that no answer is a 5xx and that every answer's status, content type, headers and body
/// are the ones the document gives (every route but the event streams, whose answers do
/// not end). The seed is fixed so the run is the same each time
/// (`GATOS_FUZZ_SEED=N` explores another; `GATOS_FUZZ_EXAMPLES=N` more cases per route).
#[test]
fn generated_requests_get_no_server_error_and_only_documented_answers() -> TestResult {
    let repo = TempRepo::new()?;
    let token = "fuzz0123456789abcdef0123456789abcdef";
    let tokens = crate::support::token_file(&repo, &format!("fuzz {token}\n"))?;
    let (mut child, addr, log) =
        crate::support::http_daemon(&repo, &tokens, "gatosd", &["--http-rate", "off"])?;
    let seed = std::env::var("GATOS_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("GATOS_FUZZ_EXAMPLES").unwrap_or_else(|_| "10".into());
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{addr}/api/v1/openapi.json"))
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--workers",
            "1",
            "--no-color",
            // The event streams answer 200 and then stream until the client leaves: a
            // request to one never ends (tests/e2e/http_sse.rs and http_jobstream.rs test
            // them with clients that read events).
            "--exclude-path-regex",
            "/stream$|^/api/v1/events/",
        ])
        .current_dir(repo.root())
        .env("HOME", repo.home())
        .stdin(Stdio::null())
        .output();
    let alive = child.try_wait()?.is_none();
    let _ = child.kill();
    let _ = child.wait();
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers the document does not give (pip install -r \
         scripts/requirements.txt if the module is missing):\n{text}{}\ngatosd's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        alive,
        "gatosd exited during the run: {}",
        std::fs::read_to_string(&log)?
    );
    // It tested every operation of the document, with real cases.
    let count = |label: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_owned())
    };
    let selected = count("Selected:").ok_or(format!("no Selected: line in {text}"))?;
    let tested = count("Tested:").ok_or(format!("no Tested: line in {text}"))?;
    // Every operation of the document but the streams, and but the document's own route
    // (schemathesis leaves it out; the tests above check it).
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_file("docs/openapi.json"))?)?;
    let (mut all, mut streams) = (0, 0);
    for (path, item) in doc["paths"].as_object().ok_or("no paths")? {
        if path == "/api/v1/openapi.json" {
            continue;
        }
        let n = item.as_object().map_or(0, |m| {
            m.keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .count()
        });
        all += n;
        if path.ends_with("/stream") || path.starts_with("/api/v1/events/") {
            streams += n;
        }
    }
    assert_eq!(selected, format!("{}/{all}", all - streams), "{text}");
    assert_eq!(tested, (all - streams).to_string(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" generated, ") && !l.trim().starts_with("0 ")),
        "{text}"
    );
    Ok(())
}
