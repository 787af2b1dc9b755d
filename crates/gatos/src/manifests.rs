//! The manifest registry: a version chain per name under `refs/gatos/manifests/<name>`
//! (DESIGN §2, §4). `put` validates, scans for secrets, hashes and numbers versions 1, 2,
//! … per name; `run` enqueues a job from a stored version, recording name, version and
//! hash in the job.

use gatos_store::refs::{Edit, Options, names};
use gatos_types::jobs::{EnqueueRow, JobSpec, ManifestRow, ManifestSource};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{Coded, Digest, ErrorCode, ManifestName, Oid, jcs};

use crate::Gatos;
use crate::error::Result;
use crate::jobs::manifest::{self, Input};
use crate::jobs::records::read_doc;

/// The document of a manifest version commit.
pub const MANIFEST_PATH: &str = "manifest.json";

/// The manifest registry of one repository.
#[derive(Debug, Clone, Copy)]
pub struct Manifests<'g> {
    gatos: &'g Gatos,
}

impl Gatos {
    /// Returns the manifest registry.
    pub fn manifests(&self) -> Manifests<'_> {
        Manifests { gatos: self }
    }
}

/// What `put` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    /// The version now current.
    pub row: ManifestRow,
    /// The version commit.
    pub commit: Oid,
    /// False when the same document was already the latest version.
    pub changed: bool,
}

/// Why the registry refused (what [`manifest::Error`] says of the document aside).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No manifest has this name.
    #[error("no manifest named '{name}'; `git gatos manifests ls` lists them")]
    NoSuchManifest {
        /// The name.
        name: ManifestName,
    },
    /// The manifest has no such version.
    #[error("manifest '{name}' has no version {version}")]
    NoSuchVersion {
        /// The name.
        name: ManifestName,
        /// The version asked for.
        version: u64,
    },
    /// A version commit without its `Version` trailer (written by hand, or by sync).
    #[error("manifest commit {commit} has no Version trailer")]
    NoVersionTrailer {
        /// The commit.
        commit: Oid,
    },
    /// Another writer added a version first.
    #[error("manifest '{name}' got a new version while this one was written; try again")]
    Raced {
        /// The name.
        name: ManifestName,
    },
}

impl Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::NoSuchManifest { .. } | Error::NoSuchVersion { .. } => ErrorCode::NotFound,
            Error::NoVersionTrailer { .. } => ErrorCode::InvalidEnvelope,
            Error::Raced { .. } => ErrorCode::Conflict,
        }
    }
}

fn not_found(name: &ManifestName) -> crate::Error {
    Error::NoSuchManifest { name: name.clone() }.into()
}

impl Manifests<'_> {
    fn version_at(&self, name: &ManifestName, commit: Oid) -> Result<(ManifestRow, Option<Oid>)> {
        let mut r = self.gatos.store().reader();
        let c = r.commit(commit)?;
        let version = c
            .trailers()
            .get(keys::VERSION)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(Error::NoVersionTrailer { commit })?;
        let (spec, bytes): (JobSpec, _) = read_doc(&mut r, commit, MANIFEST_PATH)?;
        // A document read from a ref is checked as it was when it was written: a bad one
        // (written by hand, or arrived by sync) is a coded error naming it, never a job.
        crate::jobs::manifest::check_spec(&spec)
            .map_err(|e| e.context(format_args!("manifest {name} version {version}")))?;
        let row = ManifestRow {
            name: name.clone(),
            version,
            content_id: Digest::of(&bytes),
            manifest: spec,
        };
        Ok((row, c.parents.first().copied()))
    }

    /// Registers a manifest as the next version of `name` (idempotent: the same document
    /// as the latest version changes nothing). Audited.
    ///
    /// # Errors
    /// `InvalidInput` for a bad manifest, `SecretDetected` naming the field of a raw
    /// secret, `Conflict` when another writer registered a version at the same moment.
    pub fn put(&self, name: &ManifestName, mut input: Input) -> Result<Put> {
        // A `checkout` revision is pinned to its commit when the version is registered.
        manifest::resolve_checkout(&mut input, None, |rev| self.gatos.resolve_commit(rev))?;
        let spec = manifest::normalize(input, self.gatos.now())?;
        manifest::scan(&spec, &crate::jobs::secrets::Allowlist::of(self.gatos))?;
        let doc = jcs::to_vec_exact(&spec)?;
        let content_id = Digest::of(&doc);
        let refname = names::manifest(name);
        let tip = self.gatos.store().read_ref(&refname)?;
        let before = match tip {
            Some(t) => Some(self.version_at(name, t)?.0),
            None => None,
        };
        if let (Some(b), Some(t)) = (&before, tip)
            && b.content_id == content_id
        {
            return Ok(Put {
                row: b.clone(),
                commit: t,
                changed: false,
            });
        }
        let version = match &before {
            None => 1,
            Some(b) => b.version.checked_add(1).ok_or_else(|| {
                crate::Error::new(
                    gatos_types::ErrorCode::InvalidInput,
                    format!("manifest {name} is at the last version there is"),
                )
            })?,
        };
        let mut trailers = Trailers::new()
            .with(keys::KIND, "manifest")
            .with(keys::MANIFEST, name)
            .with(keys::VERSION, version)
            .with(keys::CONTENT_ID, content_id)
            .with(keys::ACTOR, self.gatos.actor());
        if let Some(k) = self.gatos.keys().current() {
            trailers = trailers.with(keys::ACTOR_KEY, k);
        }
        let parents: Vec<Oid> = tip.into_iter().collect();
        let commit = self.gatos.write_job_commit(
            &[(MANIFEST_PATH, &doc)],
            &parents,
            &trailers,
            &format!("manifest {name} v{version}"),
            self.gatos.now(),
        )?;
        self.gatos
            .store()
            .update_refs(&[Edit::update(refname, tip, commit)], &Options::default())
            .map_err(|e| match e {
                gatos_store::Error::CasMismatch { .. } => {
                    crate::Error::from(Error::Raced { name: name.clone() })
                }
                other => crate::Error::from(other),
            })?;
        let row = ManifestRow {
            name: name.clone(),
            version,
            content_id,
            manifest: spec,
        };
        crate::audit::record(
            self.gatos,
            "manifests.put",
            &format!("manifest:{name}"),
            before.map_or(
                serde_json::Value::Null,
                |b| serde_json::json!({"version": b.version, "content_id": b.content_id}),
            ),
            serde_json::json!({"version": version, "content_id": content_id}),
            Some(commit),
        );
        Ok(Put {
            row,
            commit,
            changed: true,
        })
    }

    /// Returns a version of a manifest (the latest by default).
    ///
    /// # Errors
    /// `NotFound` for an unknown name or version.
    pub fn get(&self, name: &ManifestName, version: Option<u64>) -> Result<ManifestRow> {
        let mut at = self.gatos.store().read_ref(&names::manifest(name))?;
        if at.is_none() {
            return Err(not_found(name));
        }
        while let Some(commit) = at {
            let (row, parent) = self.version_at(name, commit)?;
            match version {
                None => return Ok(row),
                Some(v) if v == row.version => return Ok(row),
                Some(v) if v > row.version => break,
                Some(_) => at = parent,
            }
        }
        Err(Error::NoSuchVersion {
            name: name.clone(),
            version: version.unwrap_or(0),
        }
        .into())
    }

    /// The versions of a manifest at the refs of `src`, newest first: those below `before`
    /// (all without it), at most `limit`; empty for a manifest not there.
    ///
    /// # Errors
    /// When commits cannot be read.
    pub fn versions_in(
        &self,
        src: &dyn crate::refs::RefSource,
        name: &ManifestName,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ManifestRow>> {
        let mut at = src.read(names::manifest(name).as_str())?;
        let mut out = Vec::new();
        while let Some(commit) = at {
            if out.len() == limit {
                break;
            }
            let (row, parent) = self.version_at(name, commit)?;
            if before.is_none_or(|b| row.version < b) {
                out.push(row);
            }
            at = parent;
        }
        Ok(out)
    }

    /// Returns the latest version of every manifest, by name.
    ///
    /// # Errors
    /// When refs or commits cannot be read.
    pub fn list(&self) -> Result<Vec<ManifestRow>> {
        self.list_in(&crate::refs::Live(self.gatos))
    }

    /// [`Manifests::list`] from the refs of `src`.
    ///
    /// # Errors
    /// As [`Manifests::list`].
    pub fn list_in(&self, src: &dyn crate::refs::RefSource) -> Result<Vec<ManifestRow>> {
        let mut rows = Vec::new();
        for (name, commit) in src.list_after(&names::manifests_prefix(), None, usize::MAX)? {
            if let Some(names::RefKind::Manifest(n)) = names::RefKind::parse(&name) {
                // A malformed manifest is left out of the listing (and named in the log);
                // `manifests get` of it says what is wrong.
                match self.version_at(&n, commit) {
                    Ok((row, _)) => rows.push(row),
                    Err(e) if e.code() == ErrorCode::InvalidEnvelope => {
                        tracing::warn!(manifest = %n, error = %e, "a manifest whose document is malformed is left out; see `git gatos manifests get`");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// Enqueues a job from a stored version (the latest by default); the job records the
    /// manifest's name, version and content id.
    ///
    /// # Errors
    /// As [`Manifests::get`] and [`crate::jobs::Jobs::enqueue`].
    pub fn run(&self, name: &ManifestName, version: Option<u64>) -> Result<EnqueueRow> {
        let row = self.get(name, version)?;
        let mut spec = row.manifest;
        spec.source = Some(ManifestSource {
            name: row.name,
            version: row.version,
            content_id: row.content_id,
        });
        self.gatos.jobs().enqueue(spec)
    }
}

impl Manifests<'_> {
    /// The manifest refs by name with their commits (what `get` and `list` answer from),
    /// for a face's state tag (ADR 0042).
    ///
    /// # Errors
    /// A store failure.
    pub fn stamp(&self) -> crate::Result<crate::messages::RefState> {
        let mut out: crate::messages::RefState = self
            .gatos
            .store()
            .list_refs(&names::manifests_prefix())?
            .into_iter()
            .map(|(n, o)| (n.as_str().to_owned(), o))
            .collect();
        out.sort();
        Ok(out)
    }
}
