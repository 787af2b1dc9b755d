//! Per-queue settings under `refs/gatos/config/queues/<queue>` (they replicate with sync):
//! the retry backoff (DESIGN §4) and the admission limit `max_pending` (ADR 0027).

use gatos_store::objects::{NewCommit, Objects};
use gatos_store::refs::{Edit, Options, names};
use gatos_types::jobs::{QueueConfig, QueueRow};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{Digest, ErrorCode, Oid, Queue, jcs};

use super::records::read_doc;
use crate::Gatos;
use crate::error::{Error, Result};

/// The file holding a queue's settings in its config commit.
pub const CONFIG_PATH: &str = "config.json";

/// Reads a queue's settings (defaults when none are stored).
///
/// # Errors
/// `InvalidEnvelope` when the stored settings do not parse.
pub fn config(gatos: &Gatos, queue: &Queue) -> Result<QueueConfig> {
    Ok(config_at(gatos, queue)?.0)
}

fn config_at(gatos: &Gatos, queue: &Queue) -> Result<(QueueConfig, Option<Oid>)> {
    let Some(commit) = gatos.store().read_ref(&names::config_queue(queue))? else {
        return Ok((QueueConfig::defaults(queue.clone()), None));
    };
    let mut r = gatos.store().reader();
    let (cfg, _): (QueueConfig, _) = read_doc(&mut r, commit, CONFIG_PATH)?;
    Ok((cfg, Some(commit)))
}

/// A change of a queue's settings: `None` leaves a value as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// The first retry delay in seconds.
    pub backoff_base: Option<Option<u64>>,
    /// The longest retry delay in seconds.
    pub backoff_max: Option<Option<u64>>,
    /// The admission limit; `Some(Some(0))` clears it as `Some(None)` does.
    pub max_pending: Option<Option<u64>>,
}

impl Change {
    /// Tells whether the change leaves every value as it is.
    pub fn is_empty(&self) -> bool {
        *self == Change::default()
    }
}

/// Changes a queue's backoff; `None` leaves a value as it is, `Some(None)` clears it.
/// Audited. Returns the settings and whether they changed.
///
/// # Errors
/// As [`change`].
pub fn set(
    gatos: &Gatos,
    queue: &Queue,
    backoff_base: Option<Option<u64>>,
    backoff_max: Option<Option<u64>>,
) -> Result<(QueueConfig, bool)> {
    change(
        gatos,
        queue,
        &Change {
            backoff_base,
            backoff_max,
            max_pending: None,
        },
    )
}

/// The longest retry delay a queue may set: thirty days, the longest timeout.
pub const MAX_BACKOFF_SECS: u64 = 30 * 86_400;

/// Changes a queue's settings. Audited (`config.queue`). Returns the settings and whether
/// they changed.
///
/// # Errors
/// `InvalidInput` for a zero delay or a base above the cap; `Conflict` when another writer
/// changed them at the same moment.
pub fn change(gatos: &Gatos, queue: &Queue, change: &Change) -> Result<(QueueConfig, bool)> {
    for (field, v) in [
        ("backoff_base", change.backoff_base.flatten()),
        ("backoff_max", change.backoff_max.flatten()),
    ] {
        // A retry waits at most as long as a job may run: past that a job would sit until
        // a time no document holds.
        if v.is_some_and(|s| s > MAX_BACKOFF_SECS) {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!("{field} must be at most 30 days ({MAX_BACKOFF_SECS} seconds)"),
            ));
        }
    }
    if let Some(v) = change.max_pending.flatten() {
        jcs::exact_u64("max_pending", v)?;
    }
    let (old, at) = config_at(gatos, queue)?;
    let mut new = old.clone();
    if let Some(v) = change.backoff_base {
        new.backoff_base = v;
    }
    if let Some(v) = change.backoff_max {
        new.backoff_max = v;
    }
    if let Some(v) = change.max_pending {
        new.max_pending = v.filter(|n| *n > 0);
    }
    if new.backoff_base == Some(0) || new.backoff_max == Some(0) {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "backoff delays must be at least 1 second",
        ));
    }
    if let (Some(b), Some(m)) = (new.backoff_base, new.backoff_max)
        && b > m
    {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "backoff_base must not exceed backoff_max",
        ));
    }
    if new == old && at.is_some() {
        return Ok((new, false));
    }
    let doc = jcs::to_vec_of(&new)?;
    let mut w = gatos.store().writer();
    let blob = w.blob(&doc)?;
    let tree = w.files(&[(CONFIG_PATH, blob)])?;
    let trailers = Trailers::new()
        .with(keys::KIND, "config")
        .with("Queue", queue)
        .with(keys::CONTENT_ID, Digest::of(&doc))
        .with(keys::VERSION, gatos.next_chain_place(at)?)
        .with(keys::ACTOR, gatos.actor());
    let trailers = gatos.signed_if_control(tree, trailers)?;
    let parents: Vec<Oid> = at.into_iter().collect();
    let commit = w.commit(&NewCommit {
        tree,
        parents: &parents,
        message: &trailers.to_message(&format!("config queue {queue}")),
        time: gatos.now(),
    })?;
    w.finish()?;
    gatos
        .store()
        .update_refs(
            &[Edit::update(names::config_queue(queue), at, commit)],
            &Options::default(),
        )
        .map_err(|e| match e {
            gatos_store::Error::CasMismatch { .. } => Error::new(
                ErrorCode::Conflict,
                format!("settings of queue '{queue}' changed while being updated; try again"),
            ),
            other => other.into(),
        })?;
    crate::audit::record(
        gatos,
        "config.queue",
        &format!("queue:{queue}"),
        serde_json::to_value(&old).unwrap_or_default(),
        serde_json::to_value(&new).unwrap_or_default(),
        Some(commit),
    );
    Ok((new, true))
}

/// Every queue this node knows of — those with settings and those with an unfinished job
/// in the ready index — or only `queue`, each with its settings and its depth (ADR 0027).
///
/// # Errors
/// `InvalidEnvelope` when stored settings do not parse; a store or index failure.
pub fn rows(gatos: &Gatos, queue: Option<&Queue>) -> Result<Vec<QueueRow>> {
    let depths = super::admission::depths_of(gatos, queue)?;
    let by_state = super::admission::states(gatos)?;
    depths
        .into_iter()
        .map(|(q, pending)| {
            let cfg = config(gatos, &q)?;
            let running = by_state.get(&q).map_or(0, |s| s.1);
            Ok(QueueRow {
                queue: q,
                backoff_base: cfg.backoff_base,
                backoff_max: cfg.backoff_max,
                max_pending: cfg.max_pending,
                pending,
                running,
            })
        })
        .collect()
}

/// The queues that have settings.
///
/// # Errors
/// A store failure.
pub(crate) fn configured(gatos: &Gatos) -> Result<Vec<Queue>> {
    Ok(gatos
        .store()
        .list_refs(&names::config_queues_prefix())?
        .into_iter()
        .filter_map(|(name, _)| match name.kind() {
            Some(names::RefKind::ConfigQueue(q)) => Some(q),
            _ => None,
        })
        .collect())
}
