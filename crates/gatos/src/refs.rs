//! Where a read takes its refs from (ADR 0044 §1): the store as it is now ([`Live`]), or
//! a kept ref state ([`crate::state::At`]). A read with an `_in(&dyn RefSource, …)` form
//! has one implementation; its live form is that one called with [`Live`], so the live
//! paths test the pinned ones too.

use gatos_types::Oid;

use crate::Gatos;
use crate::error::Result;

/// A consistent set of refs to read from.
pub trait RefSource: Send + Sync {
    /// The commit of the ref with this full name (`refs/gatos/…`), if it exists.
    ///
    /// # Errors
    /// When the refs cannot be read.
    fn read(&self, name: &str) -> Result<Option<Oid>>;

    /// At most `max` refs under `prefix` whose names sort after `after` (all of them
    /// without it), in byte order of their names.
    ///
    /// # Errors
    /// When the refs cannot be listed.
    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, Oid)>>;
}

/// The repository's refs as they are at each read.
#[derive(Debug, Clone, Copy)]
pub struct Live<'g>(pub &'g Gatos);

impl RefSource for Live<'_> {
    fn read(&self, name: &str) -> Result<Option<Oid>> {
        // A topic head read live includes its journaled publishes (ADR 0046).
        if let Some(topic) = name
            .strip_prefix(gatos_store::refs::names::MESSAGES_PREFIX)
            .and_then(|rest| rest.strip_suffix("/head"))
            .and_then(|t| t.parse::<gatos_types::Topic>().ok())
        {
            self.0.messages().settle_topic(&topic)?;
        }
        Ok(self.0.store().read_ref_str(name)?)
    }

    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, Oid)>> {
        let messages = gatos_store::refs::names::MESSAGES_PREFIX;
        if after.is_none() && (messages.starts_with(prefix) || prefix.starts_with(messages)) {
            // A damaged topic's journal is left (ADR 0047): its refs are listed as they
            // stand, and a read of that topic says what is wrong with it.
            self.0.messages().settle_healthy()?;
        }
        Ok(self
            .0
            .store()
            .list_refs_after(prefix, after, max)?
            .into_iter()
            .map(|(n, o)| (n.as_str().to_owned(), o))
            .collect())
    }
}
