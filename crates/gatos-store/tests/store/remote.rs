//! Pushes with leases against a real bare repository: the lease on a ref the push changes
//! is what keeps a taken-over worker from landing its result (DESIGN §5).

use gatos_store::Expect;
use gatos_store::remote::{PushRef, PushStatus};
use gatos_testutil::{TempRepo, TestResult};

use crate::{commit, store};

const CLAIM: &str = "refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/claim";
const RESULT: &str = "refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/result";

fn push(to: &str, expect: Expect, new: gatos_types::Oid) -> PushRef {
    PushRef {
        name: to.to_owned(),
        expect,
        new: Some(new),
    }
}

#[test]
fn an_atomic_push_with_a_stale_claim_lease_lands_nothing() -> TestResult {
    let hub = TempRepo::bare()?;
    let node = TempRepo::new()?;
    node.git(&["remote", "add", "hub", &hub.path().to_string_lossy()])?;
    let s = store(&node)?;
    let (mine, theirs, closed, result) = (
        commit(&s, "claim by a")?,
        commit(&s, "takeover by b")?,
        commit(&s, "closed by a")?,
        commit(&s, "result by a")?,
    );
    // a's claim lands first (create-only lease).
    let r = s.push("hub", &[push(CLAIM, Expect::Absent, mine)], true)?;
    assert!(r.all_ok(), "{r:?}");
    // A second create-only claim is refused as stale.
    let r = s.push("hub", &[push(CLAIM, Expect::Absent, theirs)], true)?;
    assert_eq!(r.status(CLAIM), Some(&PushStatus::Stale));
    // b takes it over at the hub (a lease on a's claim).
    let r = s.push("hub", &[push(CLAIM, Expect::Value(mine), theirs)], true)?;
    assert!(r.all_ok(), "{r:?}");
    // a, unaware, pushes its closed claim and its result together: nothing lands.
    let r = s.push(
        "hub",
        &[
            push(CLAIM, Expect::Value(mine), closed),
            push(RESULT, Expect::Absent, result),
        ],
        true,
    )?;
    assert!(!r.all_ok(), "{r:?}");
    assert_eq!(hub.rev_parse(CLAIM)?, Some(theirs.to_string()));
    assert_eq!(hub.rev_parse(RESULT)?, None, "a's result landed");
    Ok(())
}

#[test]
fn an_unreachable_remote_is_an_error_not_a_report() -> TestResult {
    let node = TempRepo::new()?;
    node.git(&["remote", "add", "hub", "/nonexistent/hub.git"])?;
    let s = store(&node)?;
    let c = commit(&s, "x")?;
    let err = s
        .push("hub", &[push(CLAIM, Expect::Absent, c)], true)
        .unwrap_err();
    assert!(matches!(err, gatos_store::Error::Remote { .. }), "{err:?}");
    let err = s.fetch_gatos("hub", None, false).unwrap_err();
    assert!(matches!(err, gatos_store::Error::Remote { .. }), "{err:?}");
    Ok(())
}
