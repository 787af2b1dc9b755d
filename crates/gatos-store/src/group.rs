//! Group commits of several writers' changes (ADR 0011, ADR 0046): the objects of every
//! member are written once (one pack when there are enough of them, else loose objects),
//! made durable once, and every member's ref edits are applied in one ref transaction.
//!
//! A member whose compare-and-swap does not hold is taken out of the group and retried
//! alone; the rest are applied together again. Any other failure of a group transaction
//! (a foreign `.lock`, a git error) retries every member alone, so a failure belongs to the
//! member it is about.
//!
//! The caller holds the lock families of every member's refs (each member's writer holds
//! its own while it waits for the group), as for [`Store::update_refs_locked`]. Edits that
//! delete a ref are not grouped: deletes need `packed-refs`'s family.

use gatos_types::Oid;

use crate::Store;
use crate::error::{Error, Result};
use crate::objects::{Kind, Objects as _};
use crate::refs::{Edit, Options};

/// One writer's part of a group.
#[derive(Debug, Clone, Default)]
pub struct Member {
    /// Its encoded objects (any order; duplicates across members are written once).
    pub objects: Vec<(Oid, Kind, Vec<u8>)>,
    /// Its ref edits (compare-and-swap or create-only; no deletes).
    pub edits: Vec<Edit>,
}

/// How a group's objects were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// As loose objects.
    Loose,
    /// As one pack.
    Pack,
}

/// What a group commit did.
#[derive(Debug)]
pub struct Outcome {
    /// Per member, in order: `Ok` when its edits were applied, else why not
    /// ([`Error::CasMismatch`] when one of its expectations did not hold).
    pub members: Vec<Result<()>>,
    /// Ref transactions made (1 when the whole group went through at once).
    pub transactions: usize,
    /// How the objects were written (`None`: there were none).
    pub written: Option<Written>,
}

impl Store {
    /// Writes the objects of every member (one pack from `min_packed` objects on, else loose
    /// objects; fsynced before any ref moves when `gatos.fsync` is on), then applies every
    /// member's edits in one ref transaction; see the module documentation for failures.
    ///
    /// # Errors
    /// When the objects cannot be written: then no ref moved. Per-member failures of the
    /// ref updates are in [`Outcome::members`].
    pub fn commit_group(&self, members: &[Member], min_packed: usize) -> Result<Outcome> {
        if let Some(e) = members
            .iter()
            .flat_map(|m| &m.edits)
            .find(|e| e.new.is_none())
        {
            return Err(Error::Corrupt {
                what: format!("group edit of {}", e.name),
                reason: "a group commit does not delete refs".into(),
            });
        }
        let count: usize = members.iter().map(|m| m.objects.len()).sum();
        // Held until the refs moved: no repack may drop the new pack's objects before then.
        let mut _keep = None;
        let written = if count == 0 {
            None
        } else if count >= min_packed {
            let mut w = self.pack_writer();
            for m in members {
                for (_, kind, data) in &m.objects {
                    w.put(*kind, data)?;
                }
            }
            _keep = Some(w.finish()?);
            Some(Written::Pack)
        } else {
            let mut w = self.writer();
            for m in members {
                for (_, kind, data) in &m.objects {
                    w.put(*kind, data)?;
                }
            }
            w.finish()?;
            Some(Written::Loose)
        };
        let opts = Options::default();
        let mut results: Vec<Option<Result<()>>> = members.iter().map(|_| None).collect();
        let mut together: Vec<usize> = (0..members.len())
            .filter(|&i| !members[i].edits.is_empty())
            .collect();
        for i in 0..members.len() {
            if members[i].edits.is_empty() {
                results[i] = Some(Ok(()));
            }
        }
        let mut alone: Vec<usize> = Vec::new();
        let mut transactions = 0;
        while !together.is_empty() {
            if together.len() == 1 {
                alone.push(together[0]);
                break;
            }
            let edits: Vec<Edit> = together
                .iter()
                .flat_map(|&i| members[i].edits.iter().cloned())
                .collect();
            transactions += 1;
            match self.update_refs_locked(&edits, &opts, false) {
                Ok(_) => {
                    for &i in &together {
                        results[i] = Some(Ok(()));
                    }
                    together.clear();
                }
                Err(Error::CasMismatch { name, .. }) => {
                    // The member whose expectation failed is retried alone; the others
                    // go together again.
                    match together
                        .iter()
                        .position(|&i| members[i].edits.iter().any(|e| e.name.as_str() == name))
                    {
                        Some(p) => alone.push(together.remove(p)),
                        None => alone.append(&mut together),
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, members = together.len(), "group transaction failed; each member alone");
                    alone.append(&mut together);
                }
            }
        }
        alone.sort_unstable();
        for i in alone {
            transactions += 1;
            results[i] = Some(
                self.update_refs_locked(&members[i].edits, &opts, false)
                    .map(|_| ()),
            );
        }
        Ok(Outcome {
            members: results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect(),
            transactions,
            written,
        })
    }
}
