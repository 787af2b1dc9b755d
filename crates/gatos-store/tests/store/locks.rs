use std::time::Duration;

use gatos_store::locks::Locks;
use gatos_testutil::{TempRepo, TestResult};

#[test]
fn families_exclude_across_handles_and_are_taken_in_order() -> TestResult {
    let repo = TempRepo::new()?;
    let a = Locks::new(&repo.git_dir())?;
    let b = Locks::new(&repo.git_dir())?;
    let g = a.acquire(&["x".into(), "y".into()], Duration::from_secs(1))?;
    assert!(b.try_acquire("y")?.is_none());
    let err = b
        .acquire(&["y".into()], Duration::from_millis(50))
        .unwrap_err();
    assert!(err.to_string().contains("busy"));
    drop(g);
    let _g = b.acquire(
        &["y".into(), "x".into(), "x".into()],
        Duration::from_secs(1),
    )?;
    Ok(())
}
