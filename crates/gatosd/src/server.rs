//! Listeners, the connection cap, and shutdown: stop accepting, stop reading, let requests
//! in flight finish and be answered, then return (the socket is removed by its owner).

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{self, Auth, Peer};
use crate::shared::Shared;
use crate::transport::unix;

/// What to serve.
#[derive(Default)]
pub struct Endpoints {
    /// The Unix socket.
    pub unix: Option<unix::Endpoint>,
    /// The TCP listener (connections must authenticate).
    pub tcp: Option<TcpListener>,
    /// Serve stdin/stdout (one connection; the server ends with it).
    pub stdio: bool,
    /// The HTTP listener (every route but `/healthz` needs a token).
    pub http: Option<crate::http::Endpoint>,
}

/// Takes a connection slot of `slots`, then accepts: past the cap, clients wait in the
/// kernel's accept queue instead of costing us memory. (Cancel-safe: a slot taken by a
/// branch that loses the `select!` is given back when the future is dropped.)
async fn accept_unix(
    l: Option<&UnixListener>,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::UnixStream, String, OwnedSemaphorePermit)> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    let Ok(permit) = slots.clone().acquire_owned().await else {
        return std::future::pending().await;
    };
    // The peer's uid names the actor of its calls (`rpc:<uid>`).
    l.accept().await.map(|(s, _)| {
        let who = s
            .peer_cred()
            .map_or_else(|_| "unix".to_owned(), |c| c.uid().to_string());
        (s, who, permit)
    })
}

async fn accept_tcp(
    l: Option<&TcpListener>,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::TcpStream, String, OwnedSemaphorePermit)> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    let Ok(permit) = slots.clone().acquire_owned().await else {
        return std::future::pending().await;
    };
    l.accept().await.map(|(s, a)| (s, a.to_string(), permit))
}

/// Serves until `shutdown` resolves (or, with stdio, until stdin ends), then drains.
pub async fn run(
    shared: Arc<Shared>,
    mut endpoints: Endpoints,
    shutdown: impl Future<Output = ()>,
) {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Journaled publishes become commits within gatos.journal.flushMs (ADR 0046).
    shared.gatos.start_journal_flusher();
    // Every writer's job events count, not only this daemon's requests (ADR 0040).
    crate::metrics::follow_jobs(shared.gatos.clone(), shared.metrics.clone(), stop.clone());
    // Store-derived gauges: read every 5 s into a snapshot a scrape encodes (ADR 0040).
    crate::metrics::refresh_store(
        shared.gatos.clone(),
        shared.service.node_status().clone(),
        shared.metrics.clone(),
        shared.changes.clone(),
        stop.clone(),
    );
    tokio::pin!(shutdown);
    if endpoints.stdio {
        let peer = Peer {
            transport: "stdio",
            addr: "stdio".into(),
            auth: Auth::Trusted,
            actor: gatos_api::Actor::Rpc("stdio".into()),
        };
        let conn = tracker.spawn(connection::serve(
            tokio::io::stdin(),
            tokio::io::stdout(),
            peer,
            shared.clone(),
            stop.child_token(),
        ));
        tokio::select! {
            () = &mut shutdown => tracing::info!("shutting down"),
            _ = conn => tracing::info!("stdin closed; shutting down"),
        }
    } else {
        let unix = endpoints
            .unix
            .as_mut()
            .and_then(unix::Endpoint::take_listener);
        let tcp = endpoints.tcp.take();
        let http = endpoints.http.as_ref().map(|h| &h.listener);
        let router = endpoints.http.as_ref().map(|h| {
            crate::http::router_until(shared.clone(), h.options.clone(), stop.child_token())
        });
        let tls = endpoints.http.as_ref().and_then(|h| h.options.tls.clone());
        if let Some(a) = http.and_then(|l| l.local_addr().ok()) {
            shared
                .dashboard
                .set_origin(crate::http::origin_of(a, tls.is_some()));
        }
        // One cap per transport: a flood of TCP connections (which need not even
        // authenticate to hold a slot until the auth timeout) never keeps Unix-socket
        // clients out, nor the other way round.
        let unix_slots = Arc::new(Semaphore::new(shared.limits.max_unix_connections));
        let tcp_slots = Arc::new(Semaphore::new(shared.limits.max_tcp_connections));
        let http_slots = Arc::new(Semaphore::new(shared.limits.max_http_connections));
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                r = accept_unix(unix.as_ref(), &unix_slots) => match r {
                    Ok((s, addr, permit)) => {
                        let (rd, wr) = s.into_split();
                        let peer = Peer { transport: "unix", actor: gatos_api::Actor::Rpc(addr.clone()), addr, auth: Auth::Writes };
                        let c = connection::serve(rd, wr, peer, shared.clone(), stop.child_token());
                        tracker.spawn(async move { c.await; drop(permit) });
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed on the Unix socket"),
                },
                r = accept_tcp(tcp.as_ref(), &tcp_slots) => match r {
                    Ok((s, addr, permit)) => {
                        let _ = s.set_nodelay(true);
                        let (rd, wr) = s.into_split();
                        let peer = Peer { transport: "tcp", addr, auth: Auth::First, actor: gatos_api::Actor::Rpc("tcp".into()) };
                        let c = connection::serve(rd, wr, peer, shared.clone(), stop.child_token());
                        tracker.spawn(async move { c.await; drop(permit) });
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed on TCP"),
                },
                r = accept_tcp(http, &http_slots) => match (r, &router) {
                    (Ok((s, addr, permit)), Some(router)) => {
                        let c = crate::http::serve_connection(s, addr, router.clone(), tls.clone(), shared.clone(), stop.child_token());
                        tracker.spawn(async move { c.await; drop(permit) });
                    }
                    (Ok(_), None) => {}
                    (Err(e), _) => tracing::warn!(error = %e, "accept failed on HTTP"),
                },
            }
        }
        tracing::info!("shutting down: no new connections; finishing requests in flight");
    }
    stop.cancel();
    tracker.close();
    let grace = shared.limits.drain_timeout + std::time::Duration::from_secs(5);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after the drain timeout");
    }
    drop(endpoints);
    // Every journaled publish this daemon answered becomes a commit before it is gone
    // (ADR 0046): plain git sees them after a clean stop.
    // The job catalog's lines of the jobs it enqueued go in too (its handle may outlive
    // this function in a thread that is not joined).
    let gatos = shared.gatos.clone();
    match tokio::task::spawn_blocking(move || {
        gatos.flush_catalog();
        gatos.flush_journals()
    })
    .await
    {
        // A damaged topic's journal stays, named in a warning (ADR 0047).
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not make every journaled publish a commit; the next reader will")
        }
        Err(e) => tracing::warn!(error = %e, "the journal flush at shutdown failed"),
    }
    tracing::info!("stopped");
}
