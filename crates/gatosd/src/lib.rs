//! `gatosd`: the gatos daemon, serving JSON-RPC 2.0 over JSONL (one JSON value per line) on
//! stdin/stdout, a Unix socket and TCP, and REST over HTTP (`--http`), on the same
//! repository that `git gatos` writes; `gatosd mcp --stdio` serves the Model Context
//! Protocol to an agent instead ([`mcp`]).
//!
//! The daemon holds no domain logic: every method calls the blocking `gatos` library on
//! tokio's blocking pool (ADR 0004). What it adds is transport: framing with a line cap
//! that recovers (`gatos-rpc`), per-connection caps on requests in flight and on queued
//! bytes, subscriptions that notice writes by any process, TCP authentication, and a
//! shutdown that answers every request it accepted (ADR 0011).
#![deny(missing_docs)]

pub mod args;
pub mod connection;
pub mod http;
pub mod limits;
pub mod mcp;
pub mod methods;
pub mod metrics;
pub mod outbox;
pub mod server;
pub mod shared;
pub mod subscriptions;
pub mod transport;

use std::process::ExitCode;
use std::sync::Arc;

use gatos::Gatos;

/// How often the streams of expired or evicted dashboard sessions are looked for.
const STREAM_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the daemon with command-line `args` (without the program name).
#[expect(
    clippy::print_stderr,
    reason = "usage errors and start-up failures go to the terminal"
)]
pub fn main_with(args: Vec<String>) -> ExitCode {
    let cli = match args::parse(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // As git-gatos prints a usage error: `error[InvalidInput]: …`, then clap's usage.
            let rendered = e.render().to_string();
            let (first, rest) = rendered.split_once('\n').unwrap_or((&rendered, ""));
            eprintln!(
                "error[InvalidInput]: {}\n{}",
                first.strip_prefix("error: ").unwrap_or(first),
                rest.trim_end()
            );
            return ExitCode::from(2);
        }
    };
    let cli = match cli {
        args::Invocation::Serve(cli) => cli,
        args::Invocation::Generate(g) => return generate(&g.what),
    };
    if let Some(args::Command::Mcp(m)) = &cli.command {
        return mcp_stdio(m);
    }
    let args = cli.serve;
    if let Err(e) = args.check() {
        eprintln!("error[InvalidInput]: {e}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
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

/// `gatosd mcp --stdio`: an MCP server on stdin/stdout until the client closes stdin or a
/// signal (ADR 0043).
#[expect(
    clippy::print_stderr,
    reason = "usage errors and start-up failures go to the terminal"
)]
fn mcp_stdio(m: &args::McpArgs) -> ExitCode {
    let policy = match m.policy() {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            eprintln!("error[InvalidInput]: {e}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    // rmcp logs every session event at info and every error answer at warn: an answered
    // error is not logged twice (STYLE B4), so it speaks at error only unless asked.
    let level = m.log_level.clone().or_else(|| {
        let env = std::env::var("GATOS_LOG").or_else(|_| std::env::var("RUST_LOG"));
        Some(env.unwrap_or_else(|_| "info,rmcp=error".to_owned()))
    });
    init_logging_with(level, false);
    let started = (|| {
        use gatos_types::ErrorCode;
        let cwd =
            std::env::current_dir().map_err(|e| StartError(ErrorCode::Internal, e.to_string()))?;
        let dir = m.repo.clone().unwrap_or(cwd);
        let open =
            gatos::OpenOptions::from_test_env().map_err(|e| StartError(e.code(), e.to_string()))?;
        let gatos = Gatos::discover(&dir, open).map_err(|e| StartError(e.code(), e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("gatosd-mcp")
            .build()
            .map_err(|e| StartError(ErrorCode::Internal, e.to_string()))?;
        Ok::<_, StartError>((gatos, runtime))
    })();
    let (gatos, runtime) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "gatosd mcp could not start");
            eprintln!("error[{}]: {}", e.0, e.1);
            return ExitCode::from(1);
        }
    };
    let mut limits = limits::Limits::default();
    if let Some(n) = m.max_line {
        limits.max_line = n;
    }
    let held = gatos.clone();
    let served = runtime.block_on(async {
        let shared = shared::Shared::with_config(gatos, limits, None, None, m.read_only);
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.cancel();
        });
        tracing::info!(read_only = m.read_only, "serving MCP on stdio");
        mcp::serve_stdio(shared, policy, stop).await
    });
    // A pending read of stdin must not hold the process at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    // Tasks the shutdown abandoned may still hold the handle: what it holds back for the
    // disk (journaled publishes and enqueues, the job catalog's lines of the jobs it
    // enqueued) goes now.
    if let Err(e) = held.flush_journals() {
        tracing::warn!(error = %e, "could not materialize every journal at the stop");
    }
    held.flush_catalog();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gatosd mcp stopped");
            ExitCode::from(1)
        }
    }
}

/// `gatosd generate`: prints what [`args::generate`] made.
#[expect(clippy::print_stderr, reason = "a failure goes to the terminal")]
fn generate(g: &args::Generate) -> ExitCode {
    use std::io::Write as _;
    match args::generate(g) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&text).and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error[Internal]: {e}");
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
    let sync_remote = match &args.sync {
        Some(r) => Some(
            gatos::sync::resolve_remote(&gatos, Some(r))
                .map_err(|e| StartError(e.code(), e.to_string()))?,
        ),
        None => None,
    };
    // The tokens of `gatos.auth` and of HTTP: `--token-file`, else (when a socket, TCP or
    // HTTP is served) the repository's own, made on first start (ADR 0023). stdio needs none.
    let tokens = match &args.token_file {
        Some(p) => Some(
            transport::token::Tokens::load(p)
                .map_err(|e| StartError(ErrorCode::InvalidInput, e))?,
        ),
        None if !args.stdio => Some(
            transport::token::ensure_set(&transport::token::default_path(&gatos.gatos_dir()))
                .map_err(|e| StartError(ErrorCode::Unavailable, e))?,
        ),
        None => None,
    };
    // HTTP clients may be anywhere the address reaches: a token file others can read is
    // refused rather than warned about (ADR 0035).
    if args.http.is_some()
        && let Some(t) = tokens.as_ref().filter(|t| t.open_mode)
    {
        let f = t.file.display();
        return Err(StartError(
            ErrorCode::Forbidden,
            format!(
                "the token file {f} is readable by its group or others, and --http serves it to the network: chmod 600 {f}"
            ),
        ));
    }
    let mut limits = limits::Limits::default();
    if let Some(n) = args.max_line {
        limits.max_line = n;
    }
    if let Some(r) = args.http_rate {
        limits.http_rate = r.0;
    }
    if let Some(b) = args.http_burst {
        limits.http_burst = b;
    }
    if let Some(n) = args.graphql_max_depth {
        limits.graphql.max_depth = n;
    }
    if let Some(n) = args.graphql_max_complexity {
        limits.graphql.max_complexity = n;
    }
    limits.graphql.introspection = args.graphql_introspection;
    if let Some(t) = args.graphql_state_ttl {
        limits.graphql_state_ttl = t;
    }
    if let Some(n) = args.graphql_state_memory {
        limits.graphql_state_memory = n;
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
            tracing::info!(socket = %ep.path.display(), repository = %gatos.git_dir().display(), "listening");
            endpoints.unix = Some(ep);
        }
        if let Some(addr) = args.listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError(ErrorCode::Unavailable, format!("listening on {addr}: {e}")))?;
            tracing::info!(address = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening on TCP");
            endpoints.tcp = Some(l);
        }
        if let Some(addr) = args.http {
            let tls = match (&args.tls_cert, &args.tls_key) {
                (Some(c), Some(k)) => Some(http::tls::acceptor(c, k).map_err(|e| StartError(ErrorCode::InvalidInput, e))?),
                _ => None,
            };
            // Checked by `args.check()` before start: the names are MCP tools.
            let mcp = args.mcp_policy().map_err(|e| StartError(ErrorCode::InvalidInput, e))?;
            let options = http::Options { allowed_hosts: args.http_allowed_host.clone(), tls, cors_origins: args.http_cors_origin.clone(), mcp };
            let ep = http::bind(addr, options, Some(&gatos.gatos_dir()))
                .await
                .map_err(|e| StartError(ErrorCode::Unavailable, e))?;
            tracing::info!(address = %ep.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening on HTTP");
            endpoints.http = Some(ep);
        }
        let shared = shared::Shared::with_config(gatos.clone(), limits, tokens, sync_remote.clone(), args.read_only);
        shared
            .tokens_private
            .store(args.http.is_some(), std::sync::atomic::Ordering::Relaxed);
        shared.service.window().set_max_bytes(shared.limits.graphql_state_memory);
        shared.metrics.watch_states(shared.service.window().clone());
        // SIGHUP re-reads the token file (a bad file keeps the tokens in force).
        let hup = shared.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut s) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot watch SIGHUP; the token file is read at start only");
                return;
            };
            while s.recv().await.is_some() {
                let shared = hup.clone();
                let _ = tokio::task::spawn_blocking(move || shared.reload_tokens()).await;
            }
        });
        // A dashboard session that expires or is evicted ends its streams within this
        // sweep (a re-read, a revoke or a logout ends them at once).
        if args.http.is_some() {
            let sweep = Arc::downgrade(&shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(STREAM_SWEEP);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(shared) = sweep.upgrade() else { return };
                    shared.end_withdrawn_streams();
                }
            });
        }
        // Stale locks, maintenance and background sync: the library's node runtime,
        // started once nothing can fail before serving.
        let node = gatos_api::Node::start(
            &gatos,
            gatos_api::NodeOptions {
                sync_remote,
                sync_interval: args.sync_interval.unwrap_or(gatos_api::node::DEFAULT_SYNC_INTERVAL),
                // What the node's sync and maintenance do, for `gatos.ready`.
                status: shared.service.node_status().clone(),
                ..gatos_api::NodeOptions::default()
            },
        );
        server::run(shared, endpoints, shutdown_signal()).await;
        node.stop();
        Ok(())
    })
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

fn init_logging(args: &args::Args) {
    init_logging_with(args.log_level.clone(), args.log_json());
}

fn init_logging_with(level: Option<String>, json: bool) {
    let filter = level
        .or_else(|| std::env::var("GATOS_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
