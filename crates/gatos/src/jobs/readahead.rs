//! Read-ahead of claims (ADR 0046, session 20). A claim of a job another process enqueued
//! reads the job's documents and checks its enqueue envelope's signature: a fifth of a
//! daemon's work per claim + complete, on the path of the worker's answer. A daemon serving
//! workers does that for the next jobs on a thread of its own, while the worker that just
//! claimed runs its job, so the next claim finds them in the handle's caches.
//!
//! It reads the ready index as a claim does, takes no job's lock and writes nothing of a
//! job, and no decision is taken from it: the caches hold content by commit id (a document
//! by its commit, an envelope's signature check by its job commit), and a claim still reads
//! the job's refs under the job's lock and asks afresh whether the enqueuer's key is
//! trusted. At worst a read ahead is wasted (another node claimed the job).

use std::collections::HashSet;
use std::sync::mpsc;

use gatos_types::Ulid;

use super::ClaimOptions;
use crate::Gatos;

/// The most claims asked for read-ahead while the thread is busy; more are dropped (the
/// pending ones read the same jobs, or the next claim asks again).
const PENDING: usize = 8;

/// The read-ahead thread's nice value (the lowest priority).
const NICE: i32 = 19;

/// The most jobs remembered as read ahead; then forgotten at once (a job read again costs
/// reading its refs, its documents coming from the cache).
const REMEMBERED: usize = 4096;

/// A thread reading the next jobs of the claims this handle serves; stopped when dropped.
#[derive(Debug)]
pub struct ReadAhead {
    tx: Option<mpsc::SyncSender<ClaimOptions>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Claims between two reads: half the depth, so the thread wakes once for every few
    /// claims and reads the jobs of several, the next claims still finding theirs read.
    stride: u64,
    claims: std::sync::atomic::AtomicU64,
    /// Whether the thread was found gone (said once).
    gone: std::sync::atomic::AtomicBool,
}

impl ReadAhead {
    /// Starts the thread, keeping the next `depth` jobs of the claims read
    /// (`gatos.jobs.readAhead`); `None` for a depth of 0.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(gatos: &Gatos, depth: usize) -> std::io::Result<Option<ReadAhead>> {
        if depth == 0 {
            return Ok(None);
        }
        let (tx, rx) = mpsc::sync_channel::<ClaimOptions>(PENDING);
        let gatos = gatos.clone();
        let thread = std::thread::Builder::new()
            .name("gatos-readahead".into())
            .spawn(move || run(&gatos, depth, &rx))?;
        Ok(Some(ReadAhead {
            tx: Some(tx),
            thread: Some(thread),
            stride: u64::try_from(depth / 2).unwrap_or(1).max(1),
            claims: std::sync::atomic::AtomicU64::new(0),
            gone: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Tells the thread a claim for `opts` took a job: every `depth / 2` claims this
    /// handle answers, it reads those of the `depth` jobs a claim for `opts` would take
    /// next that it has not read. Never waits (when the thread is behind, the request is
    /// dropped).
    pub fn after_claim(&self, opts: &ClaimOptions) {
        let n = self
            .claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !n.is_multiple_of(self.stride) {
            return;
        }
        if let Some(tx) = &self.tx
            && let Err(mpsc::TrySendError::Disconnected(_)) = tx.try_send(opts.clone())
            && !self.gone.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!("the read-ahead of claims stopped; claims read their jobs themselves");
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the read in hand.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(gatos: &Gatos, depth: usize, rx: &mpsc::Receiver<ClaimOptions>) {
    // The lowest priority: on a machine of few cores the reads take the time the
    // requests leave, never the other way round (a request's thread waking while this one
    // runs gets the core at once). On Linux a thread has a nice value of its own.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::debug!(error = %e, "read-ahead at the daemon's priority");
    }
    let mut read: HashSet<Ulid> = HashSet::new();
    while let Ok(first) = rx.recv() {
        // Requests that came while the last read ran: each routing once (workers of one
        // pool ask with the same queues and capabilities).
        let mut asked = vec![first];
        while let Ok(o) = rx.try_recv() {
            if !asked
                .iter()
                .any(|a| a.queues == o.queues && a.caps == o.caps)
            {
                asked.push(o);
            }
        }
        for opts in &asked {
            match gatos.jobs().read_ahead(opts, depth, &read) {
                Ok(ids) => {
                    if read.len() + ids.len() > REMEMBERED {
                        read.clear();
                    }
                    read.extend(ids);
                }
                Err(e) => tracing::debug!(error = %e, "read-ahead of claims failed"),
            }
        }
    }
}
