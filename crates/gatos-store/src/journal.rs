//! Write-ahead journals (ADR 0046): one append-only file per lock family under
//! `<git-dir>/gatos/journal/`, local state like `gatos/locks/`, never synced.
//!
//! A record is `len (u32, little-endian) ‖ body ‖ BLAKE3(len ‖ body)[..16]`, written with one
//! `write` on a file opened for appending, by a writer holding the family's lock. What a
//! body means is the caller's business. A record whose length, bytes or checksum do not
//! hold is one that was never acknowledged (a crash during its `write`): [`Journal::records`]
//! stops before it and reports the length of the good prefix, which the caller (holding
//! the lock) cuts the file back to.
//!
//! The last 16 bytes of a journal are its last record's checksum: a writer that keeps a
//! journal open checks them (with the length) before appending, to learn whether another
//! process emptied or extended the journal meanwhile.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use gatos_types::Digest;

use crate::Store;
use crate::error::{Error, Result};

/// The largest body a record may have.
pub const MAX_RECORD: usize = 64 << 20;

/// Bytes a record adds around its body.
const FRAME: u64 = 4 + 16;

/// The checksum that ends a record.
pub type Checksum = [u8; 16];

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

/// The records of a journal, as read by [`Journal::records`].
#[derive(Debug, Default)]
pub struct Records {
    /// The bodies of the good records, oldest first.
    pub bodies: Vec<Vec<u8>>,
    /// Bytes of the good records (where a torn tail starts).
    pub good_len: u64,
    /// The file's length (more than `good_len` when a tail is torn).
    pub file_len: u64,
}

impl Store {
    /// The directory of the journals.
    pub fn journal_dir(&self) -> PathBuf {
        self.gatos_dir().join("journal")
    }

    /// The length of a family's journal: 0 when it is empty or absent. One `statx`.
    ///
    /// # Errors
    /// When the file exists but cannot be inspected.
    pub fn journal_len(&self, family: &str) -> Result<u64> {
        let path = self.journal_dir().join(family);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(format!("inspecting {}", path.display()), e)),
        }
    }

    /// The families whose journal holds anything (a record or a torn tail).
    ///
    /// # Errors
    /// When the directory cannot be read.
    pub fn journal_families(&self) -> Result<Vec<String>> {
        let dir = self.journal_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let len = entry
                .metadata()
                .map_err(|e| Error::io(format!("inspecting {name} in {}", dir.display()), e))?
                .len();
            if len > 0 {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens (creating) a family's journal. The caller holds the family's lock to append,
    /// read for replay or truncate.
    ///
    /// # Errors
    /// When the file cannot be created or opened.
    pub fn open_journal(&self, family: &str) -> Result<Journal> {
        let dir = self.journal_dir();
        let path = dir.join(family);
        let open = || OpenOptions::new().read(true).append(true).open(&path);
        let file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                let f = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                if self.is_durable() {
                    // The new name must outlive a power cut before a record in it is
                    // acknowledged.
                    self.fsync_paths(crate::durability::Step::Refs, std::slice::from_ref(&path))?;
                }
                f
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        Ok(Journal { file, path })
    }
}

fn checksum(len: &[u8; 4], body: &[u8]) -> Checksum {
    let d = Digest::of_parts(&[len, body]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_bytes()[..16]);
    out
}

impl Journal {
    /// The journal's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one record with one `write` and returns its checksum (the journal's new
    /// last 16 bytes). Not durable until [`Journal::sync`].
    ///
    /// # Errors
    /// When the body is over [`MAX_RECORD`] or the write fails.
    pub fn append(&mut self, body: &[u8]) -> Result<Checksum> {
        if body.len() > MAX_RECORD {
            return Err(Error::Corrupt {
                what: format!("journal record for {}", self.path.display()),
                reason: format!("{} bytes is over {MAX_RECORD}", body.len()),
            });
        }
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
        let sum = checksum(&len, body);
        let mut rec = Vec::with_capacity(body.len() + FRAME as usize);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(body);
        rec.extend_from_slice(&sum);
        self.file
            .write_all(&rec)
            .map_err(|e| Error::io(format!("appending to {}", self.path.display()), e))?;
        Ok(sum)
    }

    /// Makes what was appended durable (`fdatasync`).
    ///
    /// # Errors
    /// When the sync fails.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))
    }

    /// The file's length now (`fstat`).
    ///
    /// # Errors
    /// When the file cannot be inspected.
    pub fn file_len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(format!("inspecting {}", self.path.display()), e))
    }

    /// The last 16 bytes of the first `len` bytes (the checksum of the record ending there).
    ///
    /// # Errors
    /// When they cannot be read (a shorter file).
    pub fn checksum_at(&self, len: u64) -> Result<Checksum> {
        let mut out = [0u8; 16];
        let at = len.checked_sub(16).ok_or_else(|| Error::Corrupt {
            what: self.path.display().to_string(),
            reason: "shorter than a record".into(),
        })?;
        self.file
            .read_exact_at(&mut out, at)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        Ok(out)
    }

    /// Reads every good record, stopping at the first torn or mismatching one. Holds every
    /// body in memory at once: a replay that may meet a large journal uses
    /// [`Journal::scan`], which holds one.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn records(&self) -> Result<Records> {
        let mut scan = self.scan()?;
        let mut bodies = Vec::new();
        while let Some(body) = scan.next_record()? {
            bodies.push(body);
        }
        Ok(Records {
            bodies,
            good_len: scan.at,
            file_len: scan.file_len,
        })
    }

    /// Reads the good records one at a time from the start, each with its own read: what a
    /// replay holds is one body, however long the journal.
    ///
    /// # Errors
    /// When the file cannot be inspected.
    pub fn scan(&self) -> Result<Scan<'_>> {
        Ok(Scan {
            journal: self,
            at: 0,
            file_len: self.file_len()?,
        })
    }

    /// [`Journal::scan`] from `at`, the start of a record an earlier scan returned
    /// ([`Scan::next_at`]); from anywhere else it finds no good record.
    ///
    /// # Errors
    /// When the file cannot be inspected.
    pub fn scan_from(&self, at: u64) -> Result<Scan<'_>> {
        Ok(Scan {
            journal: self,
            at,
            file_len: self.file_len()?,
        })
    }

    /// Cuts the journal back to `len` bytes (0: it is empty).
    ///
    /// # Errors
    /// When the file cannot be truncated.
    pub fn truncate(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io(format!("truncating {}", self.path.display()), e))
    }
}

/// The records of a journal read one at a time, oldest first ([`Journal::scan`]).
#[derive(Debug)]
pub struct Scan<'j> {
    journal: &'j Journal,
    at: u64,
    file_len: u64,
}

impl Scan<'_> {
    /// The next good record's body and the offset where it starts; `None` at the end of
    /// the good records (the end of the file, or a torn or mismatching record).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn next_at(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let start = self.at;
        Ok(self.next_record()?.map(|body| (start, body)))
    }

    /// The next good record's body; `None` at the end of the good records.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>> {
        let left = self.file_len.saturating_sub(self.at);
        if left < FRAME {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.read(&mut len, self.at)?;
        let n = u32::from_le_bytes(len) as usize;
        // A length over the cap or past the file's end is a torn record: never allocated.
        if n > MAX_RECORD || n as u64 + FRAME > left {
            return Ok(None);
        }
        let mut rest = vec![0u8; n + 16];
        self.read(&mut rest, self.at + 4)?;
        if checksum(&len, &rest[..n]) != rest[n..] {
            return Ok(None);
        }
        rest.truncate(n);
        self.at += n as u64 + FRAME;
        Ok(Some(rest))
    }

    /// Bytes of the good records read so far (after the last one: where a torn tail starts).
    pub fn good_len(&self) -> u64 {
        self.at
    }

    /// The file's length when the scan started.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    fn read(&self, buf: &mut [u8], at: u64) -> Result<()> {
        self.journal
            .file
            .read_exact_at(buf, at)
            .map_err(|e| Error::io(format!("reading {}", self.journal.path.display()), e))
    }
}
