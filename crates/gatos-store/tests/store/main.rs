//! gatos-store against real repositories, checked with real git.
#![allow(clippy::unwrap_used, missing_docs, reason = "tests")]

mod fsck;
mod group;
mod journal;
mod locks;
mod names;
mod objects;
mod refs;
mod remote;

use gatos_store::Store;
use gatos_testutil::{TempRepo, TestResult};

fn store(repo: &TempRepo) -> TestResult<Store> {
    Ok(Store::open(repo.path())?)
}

fn commit(s: &Store, msg: &str) -> TestResult<gatos_types::Oid> {
    use gatos_store::objects::{NewCommit, Objects};
    let mut w = s.writer();
    let blob = w.blob(msg.as_bytes())?;
    let tree = w.files(&[("f", blob)])?;
    let c = w.commit(&NewCommit {
        tree,
        parents: &[],
        message: &format!("{msg}\n"),
        time: gatos_types::Timestamp::from_millis(0),
    })?;
    w.finish()?;
    Ok(c)
}
