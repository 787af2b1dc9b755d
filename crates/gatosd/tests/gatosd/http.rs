//! The HTTP face in process, where a test sets the limits: a body that does not arrive in
//! time, a connection cap that makes extra clients wait.

use std::sync::Arc;
use std::time::Duration;

use gatos::OpenOptions;
use gatos_testutil::{TempRepo, TestResult};
use gatosd::limits::Limits;
use gatosd::server::{self, Endpoints};
use gatosd::shared::Shared;
use gatosd::transport::token::Token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const TOKEN: &str = "in-process-token-in-process-token";

struct Http {
    _repo: TempRepo,
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Http {
    async fn start(limits: Limits) -> TestResult<Http> {
        let repo = TempRepo::new()?;
        let (gatos, _) = gatos::init::init(
            repo.path(),
            OpenOptions {
                clock: None,
                seed: Some(3),
            },
        )?;
        let ep = gatosd::http::bind(
            "127.0.0.1:0".parse()?,
            gatosd::http::Options::default(),
            None,
        )
        .await?;
        let addr = ep.listener.local_addr()?;
        let token = Token {
            bytes: TOKEN.as_bytes().to_vec(),
            file: repo.root().join("token"),
        };
        let shared = Shared::new(gatos, limits, Some(token));
        let endpoints = Endpoints {
            http: Some(ep),
            ..Endpoints::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(shared.clone(), endpoints, async move {
            let _ = rx.await;
        }));
        Ok(Http {
            _repo: repo,
            addr,
            shared,
            stop: Some(tx),
            handle: Some(handle),
        })
    }

    async fn stop(mut self) -> TestResult {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h).await??;
        }
        Ok(())
    }
}

/// Sends `request` and reads until the daemon closes or `wait` passes.
async fn exchange(addr: std::net::SocketAddr, request: &str, wait: Duration) -> TestResult<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_refused_and_the_connection_closed() -> TestResult {
    let limits = Limits {
        http_body_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let d = Http::start(limits).await?;
    // Headers at once, then 1 byte of a 100-byte body, then nothing.
    let req = format!(
        "POST /api/v1/topics/t/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let answer = exchange(d.addr, &req, Duration::from_secs(20)).await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    d.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_waits_and_is_served_once_a_slot_frees() -> TestResult {
    let limits = Limits {
        max_http_connections: 1,
        ..Limits::default()
    };
    let d = Http::start(limits).await?;
    // The one slot: a connection that sends nothing yet.
    let mut first = TcpStream::connect(d.addr).await?;
    let probe = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    // A second client is accepted by the kernel but not served while the slot is taken.
    let addr = d.addr;
    let second = tokio::spawn(async move {
        exchange(addr, probe, Duration::from_secs(20))
            .await
            .map_err(|e| e.to_string())
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while d
        .shared
        .connections
        .load(std::sync::atomic::Ordering::Relaxed)
        < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first connection was not served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!second.is_finished(), "served past the cap");
    // The first one is served and closes: the waiting client gets its answer.
    first.write_all(probe.as_bytes()).await?;
    let mut out = Vec::new();
    first.read_to_end(&mut out).await?;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    let answer = second.await??;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    d.stop().await
}
