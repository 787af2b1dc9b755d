//! A long-running node: what a daemon (or any face that keeps a repository open) runs
//! beside the requests it serves — start-up lock recovery, maintenance when writers find
//! it due, and a background sync — started together and stopped together.
//!
//! Blocking threads, no runtime: sync and maintenance run `git` as child processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gatos::Gatos;
use gatos_types::{Dur, Timestamp};

use crate::types::{MaintenanceStatus, SyncStatus};

/// How long [`Node::stop`] waits for a sync in progress: a remote that hangs must not keep
/// the node from stopping (an interrupted sync is recoverable).
pub const STOP_WAIT: Duration = Duration::from_secs(60);

/// The default interval of background sync.
pub const DEFAULT_SYNC_INTERVAL: Dur = Dur::from_secs(30);

/// What a node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Remove the lock files writers which died left, at start (ADR 0020).
    pub recover_locks: bool,
    /// Run maintenance on a thread when writers find it due ([`run_maintenance`]).
    pub maintenance: bool,
    /// Sync with this remote (already resolved) every `sync_interval`.
    pub sync_remote: Option<String>,
    /// The interval of background sync.
    pub sync_interval: Dur,
    /// Where the node records what its sync and maintenance did: the same one as the
    /// [`crate::Service`] it runs beside ([`crate::Service::node_status`]), so that
    /// `gatos.ready` reports them.
    pub status: Arc<NodeStatus>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            recover_locks: true,
            maintenance: true,
            sync_remote: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            status: Arc::default(),
        }
    }
}

/// What a node's background work did last: the background sync and the maintenance hook
/// write it, `gatos.ready` reads it ([`crate::Service::ready`]). Counters start at the
/// node's start; nothing here is stored.
#[derive(Debug, Default)]
pub struct NodeStatus {
    sync: Mutex<Option<SyncStatus>>,
    maintenance: Mutex<MaintenanceStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NodeStatus {
    /// The background sync; `None` when the node does not sync.
    pub fn sync(&self) -> Option<SyncStatus> {
        lock(&self.sync).clone()
    }

    /// Automatic maintenance (its `debt` is measured by the reader, not kept here).
    pub fn maintenance(&self) -> MaintenanceStatus {
        lock(&self.maintenance).clone()
    }

    fn sync_configured(&self, remote: &str, interval: Dur) {
        *lock(&self.sync) = Some(SyncStatus {
            remote: remote.to_owned(),
            interval_seconds: interval.as_millis() / 1000,
            ..SyncStatus::default()
        });
    }

    /// Records a sync that ended at `at`.
    fn sync_ended(&self, at: Timestamp, r: Result<&gatos_types::sync::SyncReport, &gatos::Error>) {
        let mut guard = lock(&self.sync);
        let Some(s) = guard.as_mut() else {
            return;
        };
        s.last_at = Some(at);
        s.runs_total += 1;
        match r {
            Ok(report) => {
                s.last_ok = Some(true);
                s.last_code = None;
                s.last_error = None;
                s.consecutive_failures = 0;
                s.rejected_total += report.rejected_count;
            }
            Err(e) => {
                s.last_ok = Some(false);
                s.last_code = Some(e.code());
                s.last_error = Some(e.to_string());
                s.consecutive_failures += 1;
                s.failures_total += 1;
            }
        }
    }

    fn maintenance_enabled(&self, on: bool) {
        lock(&self.maintenance).enabled = on;
    }

    fn maintenance_running(&self, running: bool) {
        lock(&self.maintenance).running = running;
    }

    /// Records a maintenance run that ended at `at`.
    fn maintenance_ended(&self, at: Timestamp, r: &gatos::Result<()>) {
        let mut m = lock(&self.maintenance);
        m.running = false;
        m.last_at = Some(at);
        match r {
            Ok(()) => {
                m.last_ok = Some(true);
                m.last_code = None;
                m.last_error = None;
                m.consecutive_failures = 0;
            }
            Err(e) => {
                m.last_ok = Some(false);
                m.last_code = Some(e.code());
                m.last_error = Some(e.to_string());
                m.consecutive_failures += 1;
            }
        }
    }
}

/// A running node; [`Node::stop`] ends what it started.
#[derive(Debug)]
pub struct Node {
    gatos: Gatos,
    /// Set while a maintenance run is in progress (when the node runs maintenance).
    maintenance: Option<Arc<AtomicBool>>,
    syncer: Option<Syncer>,
    status: Arc<NodeStatus>,
}

impl Node {
    /// Recovers stale locks, installs the maintenance hook and starts background sync, as
    /// `opts` says. Failures are logged, never fatal: a node that cannot sync still serves.
    pub fn start(gatos: &Gatos, opts: NodeOptions) -> Node {
        if opts.recover_locks {
            match gatos.recover_stale_locks() {
                Ok(removed) if !removed.is_empty() => {
                    tracing::warn!(
                        count = removed.len(),
                        "removed stale locks left by a crashed writer"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not check for stale locks"),
            }
        }
        // A node lives long: its journaled publishes and enqueues become commits and refs
        // within gatos.journal.flushMs (ADR 0046); with the flusher running, its enqueues
        // are journaled.
        gatos.start_journal_flusher();
        let status = opts.status;
        status.maintenance_enabled(opts.maintenance);
        let maintenance = opts
            .maintenance
            .then(|| install_maintenance(gatos, status.clone()));
        let syncer = opts.sync_remote.map(|r| {
            status.sync_configured(&r, opts.sync_interval);
            background_sync(gatos.clone(), r, opts.sync_interval, status.clone())
        });
        Node {
            gatos: gatos.clone(),
            maintenance,
            syncer,
            status,
        }
    }

    /// What its sync and maintenance did last.
    pub fn status(&self) -> &Arc<NodeStatus> {
        &self.status
    }

    /// Uninstalls the maintenance hook and stops background sync, waiting at most
    /// [`STOP_WAIT`] each for a maintenance run and a sync in progress (a remote or a
    /// repack that hangs must not keep the node from stopping; both are crash-safe).
    pub fn stop(self) {
        if let Some(running) = &self.maintenance {
            self.gatos.set_maintenance_hook(None);
            let deadline = Instant::now() + STOP_WAIT;
            while running.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if running.load(Ordering::Acquire) {
                tracing::warn!("maintenance is still running; stopping without it");
            }
            self.status.maintenance_enabled(false);
        }
        if let Some(s) = self.syncer {
            s.stop();
        }
    }
}

/// Archives finished jobs if due, then compacts if due, logging what happened: the
/// daemon's automatic maintenance (`git gatos maintenance --auto` runs the same
/// [`gatos::maintenance::run`]).
///
/// # Errors
/// The first failure (archiving's, else compaction's; both are logged, and compaction
/// runs even when archiving failed).
pub fn run_maintenance(g: &Gatos) -> gatos::Result<()> {
    let outcome = gatos::maintenance::run(g, gatos::maintenance::Options { auto: true });
    let mut failed = None;
    match outcome.archive {
        Ok(Some(r)) if r.archived > 0 => {
            tracing::info!(archived = r.archived, "archived finished jobs");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "archiving jobs failed");
            failed = Some(e);
        }
    }
    match outcome.compaction {
        Ok(r) if !r.steps.is_empty() => tracing::info!(steps = r.steps.len(), "maintenance done"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "maintenance failed");
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Runs automatic maintenance on a thread when writers find it due (one at a time);
/// returns the flag that is set while a run is in progress.
fn install_maintenance(gatos: &Gatos, status: Arc<NodeStatus>) -> Arc<AtomicBool> {
    let running = Arc::new(AtomicBool::new(false));
    let flag = running.clone();
    gatos.set_maintenance_hook(Some(Arc::new(move |g: &Gatos| {
        if running.swap(true, Ordering::AcqRel) {
            return;
        }
        status.maintenance_running(true);
        let g = g.clone();
        let done = running.clone();
        let record = status.clone();
        let spawned = std::thread::Builder::new()
            .name("gatosd-maintenance".into())
            .spawn(move || {
                let r = run_maintenance(&g);
                record.maintenance_ended(g.now(), &r);
                done.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            status.maintenance_running(false);
            running.store(false, Ordering::Release);
            tracing::warn!("could not start the maintenance thread");
        }
    })));
    flag
}

/// The background sync thread.
#[derive(Debug)]
struct Syncer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Asks the thread to stop and waits for a sync in progress (at most [`STOP_WAIT`]).
    fn stop(self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        let deadline = Instant::now() + STOP_WAIT;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            tracing::warn!("a sync is still running; exiting without it (the next sync resumes)");
        }
    }
}

/// Syncs with `remote` every `interval` on a thread (sync is blocking: git runs as a child
/// process). Subscribers see what arrived like any other write: their watchers poll the
/// refs, and a rewritten tail is in the fork journal.
fn background_sync(gatos: Gatos, remote: String, interval: Dur, status: Arc<NodeStatus>) -> Syncer {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let flag = stop.clone();
    let every = interval.to_std();
    let thread = std::thread::Builder::new()
        .name("gatosd-sync".into())
        .spawn(move || {
            let (lock, cv) = &*flag;
            loop {
                let started = Instant::now();
                let synced = gatos.sync(&gatos::sync::SyncOptions {
                    remote: Some(remote.clone()),
                    strict: false,
                    progress: false,
                    accept_unsigned: false,
                });
                status.sync_ended(gatos.now(), synced.as_ref());
                match synced {
                    Ok(r) => {
                        let moved: u64 = r.topics.iter().map(|t| t.received + t.sent).sum();
                        tracing::info!(
                            remote = %r.remote,
                            messages = moved,
                            adopted = r.adopted,
                            pushed = r.pushed,
                            conflicts = r.conflicts.len(),
                            retry = r.retry.len(),
                            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "synced"
                        );
                    }
                    Err(e) => tracing::warn!(
                        remote = %remote,
                        error = %e,
                        "sync failed; retrying at the next interval"
                    ),
                }
                let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let deadline = Instant::now() + every;
                while !*stopped {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    stopped = cv
                        .wait_timeout(stopped, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                if *stopped {
                    return;
                }
            }
        });
    match thread {
        Ok(thread) => Syncer { stop, thread },
        Err(e) => {
            tracing::error!(error = %e, "could not start the sync thread");
            // A finished thread stands in, so that stopping has nothing to wait for.
            Syncer {
                stop,
                thread: std::thread::spawn(|| {}),
            }
        }
    }
}
