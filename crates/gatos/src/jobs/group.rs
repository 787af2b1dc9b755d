//! Group commit of job actions (ADR 0046): with `gatos.group.jobs` on, claims, heartbeats
//! and ends of attempts made through one handle at the same time share one object write,
//! one flush and one ref transaction. Off by default: on the project VM it measured slower
//! with four clients, with and without `gatos.fsync` (ADR 0046, "As built").
//!
//! Each action decides and builds its commits under its job's lock exactly as alone, then
//! hands its objects and ref edits to [`Gatos::commit_job_action`] and keeps the lock until
//! the group holding them was committed: no other gatos writer can move that job's refs in
//! between, and the action is answered only once its refs are committed. A member whose
//! compare-and-swap does not hold is retried alone and the rest of its group is committed
//! without it ([`gatos_store::Store::commit_group`]).

use gatos_store::group::{Member, Written};
use gatos_store::objects::{Kind, Objects};
use gatos_store::refs::Edit;
use gatos_types::{ErrorCode, Oid, Ulid};

use crate::Gatos;
use crate::error::{Error, Result};

/// The job actions waiting to be committed together.
pub(crate) type JobGroup = crate::group::Combiner<Member, Result<bool>>;

/// The default of `gatos.group.windowUs`: a lone action is never delayed.
pub const DEFAULT_WINDOW_US: u64 = 0;
/// The longest `gatos.group.windowUs` (100 ms).
pub const MAX_WINDOW_US: u64 = 100_000;
/// The default of `gatos.group.packObjects`: groups with at least this many objects are
/// written as one pack, smaller ones as loose objects.
pub const DEFAULT_PACK_OBJECTS: u64 = 32;

/// Where a job action writes its objects while it builds them ([`Gatos::job_writer`]).
#[allow(
    clippy::large_enum_variant,
    reason = "one per job action, on its stack, never in a collection: boxing would only add an allocation"
)]
pub(crate) enum JobWriter<'s> {
    /// Loose objects written at once, as an action alone always wrote them (grouping off,
    /// or an arbiter).
    Now(gatos_store::objects::LooseWriter<'s>),
    /// Collected in memory for the group commit to write.
    Later(gatos_store::objects::Collector<'s>),
}

impl Objects for JobWriter<'_> {
    fn put(&mut self, kind: Kind, data: &[u8]) -> gatos_store::Result<Oid> {
        match self {
            JobWriter::Now(w) => w.put(kind, data),
            JobWriter::Later(w) => w.put(kind, data),
        }
    }

    fn identity(&self) -> &gatos_store::Identity {
        match self {
            JobWriter::Now(w) => w.identity(),
            JobWriter::Later(w) => w.identity(),
        }
    }
}

impl Gatos {
    /// The writer a job action builds its commits into: loose objects written at once when
    /// the action will be written alone, else a collector for its group.
    pub(crate) fn job_writer(&self) -> JobWriter<'_> {
        if self.job_arbiter().is_some() || !self.settings().group_jobs {
            JobWriter::Now(self.store().writer())
        } else {
            JobWriter::Later(self.store().collector())
        }
    }

    /// Makes one job action's objects durable (with `gatos.fsync`) and applies its ref
    /// edits: alone when its objects were written at once, else in a group with the
    /// actions other threads of this process make through this handle at the same time.
    /// The caller holds the job's lock. Returns `false` when a compare-and-swap did not
    /// hold (after a retry alone).
    ///
    /// # Errors
    /// When the objects or refs cannot be written.
    pub(crate) fn commit_job_action(
        &self,
        id: Ulid,
        written: JobWriter<'_>,
        edits: Vec<Edit>,
    ) -> Result<bool> {
        let objects = match written {
            JobWriter::Now(w) => {
                w.finish()?;
                return self.apply_job_edits(id, &edits);
            }
            JobWriter::Later(c) => c.objects,
        };
        let settings = self.settings();
        let pack_from = usize::try_from(settings.group_pack_objects).unwrap_or(usize::MAX);
        self.inner
            .job_group
            .submit(
                Member { objects, edits },
                settings.group_window,
                |members| match self.store().commit_group(&members, pack_from) {
                    Ok(done) => {
                        tracing::trace!(
                            members = members.len(),
                            transactions = done.transactions,
                            written = ?done.written,
                            "job group commit"
                        );
                        if done.written == Some(Written::Pack) {
                            self.maybe_maintain();
                        }
                        done.members
                            .into_iter()
                            .map(|r| match r {
                                Ok(()) => Ok(true),
                                Err(gatos_store::Error::CasMismatch { .. }) => Ok(false),
                                Err(e) => Err(e.into()),
                            })
                            .collect()
                    }
                    Err(e) => {
                        let e = Error::from(e);
                        members
                            .iter()
                            .map(|_| Err(Error::new(e.code(), e.to_string())))
                            .collect()
                    }
                },
            )
            .unwrap_or_else(|| Err(Error::new(ErrorCode::Internal, "the job group failed")))
    }
}

/// Holds the job group of a handle (tests): actions made through it queue until dropped,
/// then go in one group.
#[doc(hidden)]
pub struct Hold<'a>(
    #[allow(dead_code, reason = "held for its Drop")] std::sync::MutexGuard<'a, ()>,
);

/// Holds `gatos`'s job group until the result is dropped (tests).
#[doc(hidden)]
pub fn hold(gatos: &Gatos) -> Hold<'_> {
    Hold(gatos.inner.job_group.hold())
}

/// How many job actions wait in `gatos`'s job group (tests).
#[doc(hidden)]
pub fn waiting(gatos: &Gatos) -> usize {
    gatos.inner.job_group.waiting()
}
