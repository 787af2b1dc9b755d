//! Names accepted by gatos are valid ref components by git's own rules.

use gatos_testutil::TempRepo;
use proptest::prelude::*;

fn git_accepts(repo: &TempRepo, name: &str) -> bool {
    repo.git_output(&[
        "check-ref-format",
        &format!("refs/gatos/messages/{name}/head"),
    ])
    .map(|o| o.status.success())
    .unwrap_or(false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn accepted_names_pass_git_check_ref_format(name in "[a-z][a-z0-9._-]{0,20}") {
        let repo = TempRepo::new().map_err(|e| TestCaseError::fail(e.to_string()))?;
        if gatos_types::name::check_name(&name).is_ok() {
            prop_assert!(git_accepts(&repo, &name), "git refuses {name:?}");
        }
    }
}

#[test]
fn names_git_refuses_are_refused_too() -> gatos_testutil::TestResult {
    let repo = TempRepo::new()?;
    for bad in [
        "a..b", "a.lock", "a.", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "a@{b",
    ] {
        if !git_accepts(&repo, bad) {
            assert!(gatos_types::name::check_name(bad).is_err(), "{bad:?}");
        }
    }
    Ok(())
}
