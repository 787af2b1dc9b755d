//! Commit trailers: the `Key: value` lines that make every gatos commit self-describing.
//!
//! Every trailer key used anywhere in gatos is a constant in [`keys`], so a key is spelled
//! in one place only.

/// The trailer keys of DESIGN §3 (and the few gatos adds, see ADR 0007).
pub mod keys {
    /// The kind of commit: message, checkpoint, job, claim, result, …
    pub const KIND: &str = "Gatos-Kind";
    /// The ULID of a message.
    pub const MESSAGE_ID: &str = "Message-Id";
    /// `blake3:` of the JCS bytes of the commit's main document.
    pub const CONTENT_ID: &str = "Content-Id";
    /// The topic of a message or checkpoint.
    pub const TOPIC: &str = "Topic";
    /// A message's position in its topic, from 1 across segments.
    pub const SEQ: &str = "Seq";
    /// A message's position in its segment, from 1.
    pub const SEGMENT_SEQ: &str = "Segment-Seq";
    /// Envelope bytes in the segment up to and including this message.
    pub const SEGMENT_BYTES: &str = "Segment-Bytes";
    /// The ULID of the first message of the segment (its sealed ref's name).
    pub const SEGMENT_ID: &str = "Segment-Id";
    /// On a segment's first message: the last message of the previous segment.
    pub const PREV_SEGMENT: &str = "Prev-Segment";
    /// The node id that wrote the message.
    pub const ORIGIN: &str = "Origin";
    /// The consumer group of a checkpoint.
    pub const GROUP: &str = "Group";
    /// The job ULID of a job, claim, result or cancel commit.
    pub const JOB: &str = "Job";
    /// The attempt number of a claim or result.
    pub const ATTEMPT: &str = "Attempt";
    /// The state of a claim commit (running, heartbeat, released, closed).
    pub const STATE: &str = "State";
    /// The worker id of a claim.
    pub const WORKER: &str = "Worker";
    /// The name of a manifest.
    pub const MANIFEST: &str = "Manifest";
    /// The version of a manifest.
    pub const VERSION: &str = "Version";
    /// Who did a privileged action (name or worker id).
    pub const ACTOR: &str = "Actor";
    /// The key id of the actor, where it has one.
    pub const ACTOR_KEY: &str = "Actor-Key";
    /// A key id (key and revocation records).
    pub const KEY: &str = "Key";
    /// Whether a move was forced.
    pub const FORCED: &str = "Forced";
    /// The job a retried job was made from (`jobs retry`).
    pub const RETRY_OF: &str = "Retry-Of";
}

/// An ordered list of trailers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers(Vec<(String, String)>);

/// Why trailers could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A key is empty or has characters other than `A-Za-z0-9-`.
    #[error("invalid trailer key {0:?}")]
    Key(String),
    /// A value contains a line break or is empty.
    #[error("invalid value for trailer {0}: must be one non-empty line")]
    Value(String),
}

impl Trailers {
    /// Returns an empty list.
    pub fn new() -> Trailers {
        Trailers(Vec::new())
    }

    /// Appends a trailer.
    ///
    /// # Errors
    /// When the key or value cannot be written as a trailer line.
    pub fn push(&mut self, key: &str, value: impl ToString) -> Result<&mut Self, Error> {
        let value = value.to_string();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Error::Key(key.to_owned()));
        }
        if value.is_empty() || value.contains(['\n', '\r']) || value.trim() != value {
            return Err(Error::Value(key.to_owned()));
        }
        self.0.push((key.to_owned(), value));
        Ok(self)
    }

    /// Appends a trailer whose key and value are known to be valid (constants and ids).
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        debug_assert!(!value.contains('\n'), "trailer values are single lines");
        self.0.push((key.to_owned(), value));
        self
    }

    /// Returns the first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Returns every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Iterates over the trailers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Builds a commit message: a subject line, a blank line and the trailers.
    pub fn to_message(&self, subject: &str) -> String {
        let mut s = String::with_capacity(64 + self.0.len() * 40);
        s.push_str(subject.lines().next().unwrap_or(""));
        s.push_str("\n\n");
        for (k, v) in &self.0 {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push('\n');
        }
        s
    }

    /// Parses the trailers of a commit message: the `Key: value` lines of its last paragraph.
    pub fn parse(message: &[u8]) -> Trailers {
        let text = String::from_utf8_lossy(message);
        let text = text.trim_end_matches(['\n', '\r']);
        let last = text.rsplit("\n\n").next().unwrap_or("");
        let mut out = Vec::new();
        for line in last.lines() {
            let Some((k, v)) = line.split_once(": ") else {
                return Trailers::new();
            };
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Trailers::new();
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        // A one-paragraph message is a subject only, never trailers.
        if !text.contains("\n\n") {
            return Trailers::new();
        }
        Trailers(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_message_round_trips() {
        let t = Trailers::new()
            .with(keys::KIND, "message")
            .with(keys::SEQ, 42);
        let msg = t.to_message("message ci.events 42");
        assert_eq!(
            msg,
            "message ci.events 42\n\nGatos-Kind: message\nSeq: 42\n"
        );
        let back = Trailers::parse(msg.as_bytes());
        assert_eq!(back, t);
        assert_eq!(back.get(keys::SEQ), Some("42"));
    }

    #[test]
    fn a_subject_only_message_has_no_trailers() {
        assert_eq!(Trailers::parse(b"Key: value\n"), Trailers::new());
        assert_eq!(
            Trailers::parse(b"subject\n\nnot a trailer\n"),
            Trailers::new()
        );
    }

    #[test]
    fn bad_keys_and_values_are_refused() {
        let mut t = Trailers::new();
        assert!(t.push("Bad Key", "x").is_err());
        assert!(t.push("Key", "two\nlines").is_err());
        assert!(t.push("Key", "").is_err());
        assert!(t.push("Key", "ok").is_ok());
    }

    proptest! {
        #[test]
        fn trailers_round_trip(pairs in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[!-~][ -~]{0,30}[!-~]"), 1..8)) {
            let mut t = Trailers::new();
            for (k, v) in &pairs {
                t.push(k, v).expect("generated pairs are valid");
            }
            let msg = t.to_message("subject");
            prop_assert_eq!(Trailers::parse(msg.as_bytes()), t);
        }
    }
}
