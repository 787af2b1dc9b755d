//! `gatosd`: the gatos daemon, serving JSON-RPC 2.0 over JSONL (one JSON value per line) on
//! stdin/stdout, a Unix socket and TCP, on the same repository that `git gatos` writes.
//!
//! The daemon holds no domain logic: every method calls the blocking `gatos` library on
//! tokio's blocking pool (ADR 0004). What it adds is transport: framing with a line cap
//! that recovers (`gatos-rpc`), per-connection caps on requests in flight and on queued
//! bytes, subscriptions that notice writes by any process, TCP authentication, and a
//! shutdown that answers every request it accepted (ADR 0011).
#![deny(missing_docs)]

pub mod args;
pub mod connection;
pub mod limits;
pub mod methods;
pub mod outbox;
pub mod server;
pub mod shared;
pub mod subscriptions;
pub mod transport;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gatos::Gatos;

/// Runs the daemon with command-line `args` (without the program name).
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "usage, version and start-up failures go to the terminal"
)]
pub fn main_with(args: Vec<String>) -> ExitCode {
    let args = match args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error[InvalidInput]: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("gatosd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    init_logging(&args);
    match start(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gatosd could not start");
            eprintln!("error[{}]: {}", e.0, e.1);
            ExitCode::from(1)
        }
    }
}

/// A start-up failure: a code and a message.
#[derive(Debug)]
struct StartError(gatos_types::ErrorCode, String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.1)
    }
}

fn start(args: &args::Args) -> Result<(), StartError> {
    use gatos_types::ErrorCode;
    let cwd =
        std::env::current_dir().map_err(|e| StartError(ErrorCode::Internal, e.to_string()))?;
    let dir = args.repo.clone().unwrap_or(cwd);
    let open =
        gatos::OpenOptions::from_test_env().map_err(|e| StartError(e.code(), e.to_string()))?;
    let gatos = Gatos::discover(&dir, open).map_err(|e| StartError(e.code(), e.to_string()))?;
    match gatos.store().recover_stale_locks() {
        Ok(removed) if !removed.is_empty() => {
            tracing::warn!(
                count = removed.len(),
                "removed stale locks left by a crashed writer"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not check for stale locks"),
    }
    install_maintenance(&gatos);
    let sync_remote = match &args.sync {
        Some(r) => Some(
            gatos::sync::resolve_remote(&gatos, Some(r))
                .map_err(|e| StartError(e.code(), e.to_string()))?,
        ),
        None => None,
    };
    // The token of `gatos.auth`: `--token-file`, else (when a socket or TCP is served) the
    // repository's own, made on first start (ADR 0023). stdio needs none.
    let token = match &args.token_file {
        Some(p) => Some(transport::token::Token {
            bytes: transport::tcp::read_token(p)
                .map_err(|e| StartError(ErrorCode::InvalidInput, e))?,
            file: p.clone(),
        }),
        None if !args.stdio => Some(
            transport::token::ensure(&transport::token::default_path(&gatos.store().gatos_dir()))
                .map_err(|e| StartError(ErrorCode::Unavailable, e))?,
        ),
        None => None,
    };
    let mut limits = limits::Limits::default();
    if let Some(n) = args.max_line {
        limits.max_line = n;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gatosd")
        .build()
        .map_err(|e| StartError(ErrorCode::Internal, e.to_string()))?;
    runtime.block_on(async {
        let mut endpoints = server::Endpoints { stdio: args.stdio, ..Default::default() };
        if !args.stdio {
            let path = match &args.socket {
                Some(p) => p.clone(),
                None => transport::unix::default_path(&gatos).map_err(|e| StartError(ErrorCode::Unavailable, e))?,
            };
            let ep = transport::unix::bind(&gatos, &path).map_err(|e| StartError(ErrorCode::Unavailable, e))?;
            tracing::info!(socket = %ep.path.display(), repository = %gatos.store().git_dir().display(), "listening");
            endpoints.unix = Some(ep);
        }
        if let Some(addr) = args.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError(ErrorCode::Unavailable, format!("listening on {addr}: {e}")))?;
            tracing::info!(address = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening on TCP");
            endpoints.tcp = Some(l);
        }
        let shared = shared::Shared::with_config(gatos.clone(), limits, token, sync_remote.clone(), args.read_only);
        let syncer = sync_remote.map(|r| {
            background_sync(gatos, r, args.sync_interval.unwrap_or(gatos_types::Dur::from_secs(30)))
        });
        server::run(shared, endpoints, shutdown_signal()).await;
        if let Some(s) = syncer {
            s.stop();
        }
        Ok(())
    })
}

/// The background sync thread of `--sync`.
struct Syncer {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// Asks the thread to stop and waits for a sync in progress (at most a minute: a remote
    /// that hangs must not keep the daemon from exiting; an interrupted sync is recoverable).
    fn stop(self) {
        let (flag, cv) = &*self.stop;
        *flag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
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
fn background_sync(gatos: Gatos, remote: String, interval: gatos_types::Dur) -> Syncer {
    let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let flag = stop.clone();
    let every = interval.to_std();
    let thread = std::thread::Builder::new()
        .name("gatosd-sync".into())
        .spawn(move || {
            let (lock, cv) = &*flag;
            loop {
                let started = std::time::Instant::now();
                match gatos.sync(&gatos::sync::SyncOptions {
                    remote: Some(remote.clone()),
                    strict: false,
                    progress: false,
                    accept_unsigned: false,
                }) {
                    Ok(r) => {
                        let moved: u64 = r.topics.iter().map(|t| t.received + t.sent).sum();
                        tracing::info!(
                            remote = %r.remote,
                            messages = moved,
                            adopted = r.adopted,
                            pushed = r.pushed,
                            conflicts = r.conflicts.len(),
                            retry = r.retry.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "synced"
                        );
                    }
                    Err(e) => tracing::warn!(remote = %remote, error = %e, "sync failed; retrying at the next interval"),
                }
                let mut stopped = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let deadline = std::time::Instant::now() + every;
                while !*stopped {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    stopped = cv
                        .wait_timeout(stopped, deadline - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            // A finished thread stands in, so that shutdown has nothing to wait for.
            Syncer {
                stop,
                thread: std::thread::spawn(|| {}),
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

/// Runs automatic maintenance on a thread when writers find it due (one at a time).
fn install_maintenance(gatos: &Gatos) {
    let running = Arc::new(AtomicBool::new(false));
    gatos.set_maintenance_hook(Some(Arc::new(move |g: &Gatos| {
        if running.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = g.store().clone();
        let thresholds = g.settings().maintenance;
        let g = g.clone();
        let running = running.clone();
        let spawned = std::thread::Builder::new()
            .name("gatosd-maintenance".into())
            .spawn(move || {
                match gatos::jobs::archive::archive_if_due(&g) {
                    Ok(Some(r)) if r.archived > 0 => {
                        tracing::info!(archived = r.archived, "archived finished jobs");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "archiving jobs failed"),
                }
                match store.run_maintenance(Some(thresholds)) {
                    Ok(r) if !r.steps.is_empty() => {
                        tracing::info!(steps = r.steps.len(), "maintenance done")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "maintenance failed"),
                }
                running.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            tracing::warn!("could not start the maintenance thread");
        }
    })));
}

fn init_logging(args: &args::Args) {
    let filter = args
        .log_level
        .clone()
        .or_else(|| std::env::var("GATOS_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = if args.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
