use std::sync::Arc;

use gatos::clock::FixedClock;
use gatos::{Gatos, OpenOptions};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::Timestamp;

pub fn open(repo: &TempRepo) -> TestResult<Gatos> {
    Ok(Gatos::open(
        repo.path(),
        OpenOptions {
            clock: None,
            seed: Some(7),
        },
    )?)
}

pub fn open_at(repo: &TempRepo, t: &str) -> TestResult<(Gatos, Arc<FixedClock>)> {
    let clock = Arc::new(FixedClock::at(Timestamp::parse_rfc3339(t)?));
    let g = Gatos::open(
        repo.path(),
        OpenOptions {
            clock: Some(clock.clone()),
            seed: Some(7),
        },
    )?;
    Ok((g, clock))
}
