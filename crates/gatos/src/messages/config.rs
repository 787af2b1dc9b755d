//! Per-topic settings under `refs/gatos/config/topics/<topic>` (they replicate with sync).

use gatos_store::objects::{NewCommit, Objects};
use gatos_store::refs::{Edit, Options, names};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::wire::TopicConfig;
use gatos_types::{Coded, ErrorCode, Oid, Topic, jcs};

use crate::Gatos;
use crate::error::Result;

/// Why a topic's settings could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A size limit of 0 (the field is [`Change`]'s).
    #[error("{field} must be at least 1")]
    Zero {
        /// `max_messages` or `max_bytes`.
        field: &'static str,
    },
    /// A settings commit without its document.
    #[error("config commit {commit} has no {CONFIG_PATH}")]
    NoDocument {
        /// The commit.
        commit: Oid,
    },
    /// A settings document that does not parse.
    #[error("settings of topic '{topic}': {reason}")]
    Malformed {
        /// The topic.
        topic: Topic,
        /// What the parser said.
        reason: String,
    },
    /// Another writer changed the settings at the same moment.
    #[error("settings of topic '{topic}' changed while being updated; try again")]
    Raced {
        /// The topic.
        topic: Topic,
    },
}

impl Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::Zero { .. } => ErrorCode::InvalidInput,
            Error::NoDocument { .. } | Error::Malformed { .. } => ErrorCode::InvalidEnvelope,
            Error::Raced { .. } => ErrorCode::Conflict,
        }
    }
}

/// The file holding a topic's settings in its config commit.
pub const CONFIG_PATH: &str = "config.json";

/// Changes to a topic's settings; `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Segment size in messages (at least 1).
    pub max_messages: Option<u64>,
    /// Segment size in envelope bytes (at least 1).
    pub max_bytes: Option<u64>,
    /// Age after which sealed segments are pruned, in seconds; `Some(None)` clears it.
    pub ttl: Option<Option<u64>>,
    /// Messages to retain; `Some(None)` clears it.
    pub retain_messages: Option<Option<u64>>,
    /// Envelope bytes to retain; `Some(None)` clears it.
    pub retain_bytes: Option<Option<u64>>,
    /// Sign the topic's messages (and require signatures from remotes).
    pub sign: Option<bool>,
}

impl Change {
    /// Tells whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Change::default()
    }
}

impl Gatos {
    /// Reads a topic's settings (defaults when none are stored), with the config commit.
    ///
    /// # Errors
    /// `InvalidEnvelope` when the stored settings do not parse.
    pub(crate) fn topic_config(&self, topic: &Topic) -> Result<(TopicConfig, Option<Oid>)> {
        let name = names::config_topic(topic);
        let at = self.store().read_ref(&name)?;
        self.topic_config_at(topic, at)
    }

    /// A topic's settings as the refs of `src` have them.
    pub(crate) fn topic_config_in(
        &self,
        src: &dyn crate::refs::RefSource,
        topic: &Topic,
    ) -> Result<(TopicConfig, Option<Oid>)> {
        let at = src.read(names::config_topic(topic).as_str())?;
        self.topic_config_at(topic, at)
    }

    fn topic_config_at(
        &self,
        topic: &Topic,
        at: Option<Oid>,
    ) -> Result<(TopicConfig, Option<Oid>)> {
        let Some(commit) = at else {
            return Ok((TopicConfig::defaults(topic.clone()), None));
        };
        if let Some(cached) = self.cached_topic_config(topic, commit) {
            return Ok((cached, Some(commit)));
        }
        let mut r = self.store().reader();
        let c = r.commit(commit)?;
        let bytes = r
            .file(c.tree, CONFIG_PATH)?
            .ok_or(Error::NoDocument { commit })?;
        let cfg: TopicConfig = serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
            topic: topic.clone(),
            reason: e.to_string(),
        })?;
        self.cache_topic_config(topic, commit, &cfg);
        Ok((cfg, Some(commit)))
    }

    /// Applies a change to a topic's settings and returns them with the commit (unchanged
    /// when the change is empty or changes nothing).
    ///
    /// # Errors
    /// `InvalidInput` for a zero size; `Conflict` when another writer changed them at the
    /// same moment.
    pub(crate) fn set_topic_config(
        &self,
        topic: &Topic,
        change: &Change,
    ) -> Result<(TopicConfig, Option<Oid>, bool)> {
        for (field, v) in [
            ("max_messages", change.max_messages),
            ("max_bytes", change.max_bytes),
        ] {
            if v == Some(0) {
                return Err(Error::Zero { field }.into());
            }
        }
        // What this change sets must read back as given; a value stored before stays as
        // it is and does not block other changes.
        for (field, v) in [
            ("max_messages", change.max_messages),
            ("max_bytes", change.max_bytes),
            ("ttl", change.ttl.flatten()),
            ("retain_messages", change.retain_messages.flatten()),
            ("retain_bytes", change.retain_bytes.flatten()),
        ] {
            if let Some(v) = v {
                jcs::exact_u64(field, v)?;
            }
        }
        let (old, at) = self.topic_config(topic)?;
        let mut new = old.clone();
        if let Some(v) = change.max_messages {
            new.max_messages = v;
        }
        if let Some(v) = change.max_bytes {
            new.max_bytes = v;
        }
        if let Some(v) = change.ttl {
            new.ttl = v;
        }
        if let Some(v) = change.retain_messages {
            new.retain_messages = v;
        }
        if let Some(v) = change.retain_bytes {
            new.retain_bytes = v;
        }
        if let Some(v) = change.sign {
            new.sign = v;
        }
        if new == old && at.is_some() {
            return Ok((new, at, false));
        }
        let doc = jcs::to_vec_of(&new)?;
        let mut w = self.store().writer();
        let blob = w.blob(&doc)?;
        let tree = w.files(&[(CONFIG_PATH, blob)])?;
        let trailers = Trailers::new()
            .with(keys::KIND, "config")
            .with(keys::TOPIC, topic)
            .with(keys::CONTENT_ID, gatos_types::Digest::of(&doc))
            .with(keys::VERSION, self.next_chain_place(at)?)
            .with(keys::ACTOR, self.actor());
        let trailers = self.signed_if_control(tree, trailers)?;
        let parents: Vec<Oid> = at.into_iter().collect();
        let commit = w.commit(&NewCommit {
            tree,
            parents: &parents,
            message: &trailers.to_message(&format!("config topic {topic}")),
            time: self.now(),
        })?;
        w.finish()?;
        self.store()
            .update_refs(
                &[Edit::update(names::config_topic(topic), at, commit)],
                &Options::default(),
            )
            .map_err(|e| match e {
                gatos_store::Error::CasMismatch { .. } => crate::Error::from(Error::Raced {
                    topic: topic.clone(),
                }),
                other => crate::Error::from(other),
            })?;
        self.cache_topic_config(topic, commit, &new);
        super::audit::record(
            self,
            "config.topic",
            &format!("topic:{topic}"),
            serde_json::to_value(&old).unwrap_or_default(),
            serde_json::to_value(&new).unwrap_or_default(),
            Some(commit),
        );
        Ok((new, Some(commit), true))
    }
}
