//! The manifest every export carries: what was read, how it was filtered, what came out.

use std::collections::BTreeMap;

use gatos::Error;
use gatos_types::{ErrorCode, Oid};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::Format;
use crate::filter::Filter;
use crate::root::{self, EXPORTER_VERSION, TableEntry};

/// Where a topic's exported rows end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSource {
    /// The head commit read.
    pub head: Oid,
    /// Its seq: rows up to it were read.
    pub head_seq: u64,
    /// The first seq read (rows below it were pruned or filtered out).
    pub first_seq: u64,
}

/// The manifest (`_gatos_manifest` in SQLite, `manifest.json` beside Parquet files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The exporter version (it enters the root).
    pub exporter: String,
    /// The file format (it does not enter the root).
    pub format: String,
    /// How many incremental exports extended the first one.
    pub increments: u32,
    /// The canonical filter spec (its JCS bytes enter the root).
    pub filter: Json,
    /// The refs read, sorted by name: `[name, oid]` (SQLite keeps them in `_gatos_refs`
    /// and leaves them out of the stored text).
    #[serde(default)]
    pub refs: Vec<(String, Oid)>,
    /// `blake3:` ref-state digest over `refs`.
    pub ref_state: String,
    /// Per exported topic, where its rows end.
    pub topics: BTreeMap<String, TopicSource>,
    /// Per table, rows and digest.
    pub tables: BTreeMap<String, TableEntry>,
    /// `blake3:` Explorer-Root.
    pub explorer_root: String,
}

impl Manifest {
    /// Assembles a manifest and computes its root.
    pub fn new(
        format: Format,
        filter: &Filter,
        mut refs: Vec<(String, Oid)>,
        topics: BTreeMap<String, TopicSource>,
        tables: Vec<(String, u64, [u8; 32])>,
        increments: u32,
    ) -> Manifest {
        refs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let spec = filter.spec();
        let ref_state = root::ref_state_digest(&refs);
        let rt = root::explorer_root(
            &ref_state,
            gatos_types::jcs::to_string(&spec).as_bytes(),
            &tables,
            EXPORTER_VERSION,
        );
        Manifest {
            exporter: EXPORTER_VERSION.to_owned(),
            format: format.as_str().to_owned(),
            increments,
            filter: spec,
            refs,
            ref_state: root::digest_text(&ref_state),
            topics,
            tables: tables
                .into_iter()
                .map(|(t, rows, d)| {
                    (
                        t,
                        TableEntry {
                            rows,
                            digest: root::digest_text(&d),
                        },
                    )
                })
                .collect(),
            explorer_root: root::digest_text(&rt),
        }
    }

    /// Parses a stored manifest.
    ///
    /// # Errors
    /// `DigestMismatch` when it is not a manifest (it was changed).
    pub fn parse(text: &str) -> Result<Manifest, Error> {
        serde_json::from_str(text).map_err(|e| {
            Error::new(
                ErrorCode::DigestMismatch,
                format!("manifest: not a gatos export manifest ({e})"),
            )
        })
    }

    /// Serialises it (pretty: people read it).
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Serialises it without `refs`, which a SQLite export keeps in a table of its own
    /// (so that `--incremental` rewrites only the refs that moved).
    pub fn to_text_without_refs(&self) -> String {
        #[derive(Serialize)]
        struct Stored<'a> {
            exporter: &'a str,
            format: &'a str,
            increments: u32,
            filter: &'a Json,
            ref_state: &'a str,
            topics: &'a BTreeMap<String, TopicSource>,
            tables: &'a BTreeMap<String, TableEntry>,
            explorer_root: &'a str,
        }
        serde_json::to_string_pretty(&Stored {
            exporter: &self.exporter,
            format: &self.format,
            increments: self.increments,
            filter: &self.filter,
            ref_state: &self.ref_state,
            topics: &self.topics,
            tables: &self.tables,
            explorer_root: &self.explorer_root,
        })
        .unwrap_or_default()
    }
}
