use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatos::OpenOptions;
use gatos_testutil::{TempRepo, TestResult};
use gatosd::limits::Limits;
use gatosd::server::{self, Endpoints};
use gatosd::shared::Shared;
use gatosd::transport::token::Token;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

pub struct Daemon {
    pub repo: TempRepo,
    pub socket: PathBuf,
    pub tcp: Option<std::net::SocketAddr>,
    /// The token of `gatos.auth` and its file.
    pub token: String,
    pub token_file: PathBuf,
    #[allow(dead_code, reason = "for tests that inspect server state")]
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    pub async fn start() -> TestResult<Daemon> {
        Daemon::start_with(Limits::default(), None).await
    }

    pub async fn start_with(limits: Limits, token: Option<&str>) -> TestResult<Daemon> {
        let repo = TempRepo::new()?;
        Daemon::start_in(repo, limits, token).await
    }

    pub async fn start_in(
        repo: TempRepo,
        limits: Limits,
        token: Option<&str>,
    ) -> TestResult<Daemon> {
        // A node as `git gatos init` makes it: with a signing key, so that the jobs it
        // enqueues are signed and its workers run them (ADR 0019).
        let (gatos, _) = gatos::init::init(
            repo.path(),
            OpenOptions {
                clock: None,
                seed: Some(3),
            },
        )?;
        let socket = repo.root().join("d.sock");
        let ep = gatosd::transport::unix::bind(&gatos, &socket)?;
        let (tcp_listener, tcp) = match token {
            Some(_) => {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let a = l.local_addr()?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        // The token as gatosd finds it: `--token-file` when the test names one, else the
        // repository's own file, made on first start.
        let token = match token {
            Some(t) => {
                let file = repo.root().join("token");
                std::fs::write(&file, format!("{t}\n"))?;
                Token {
                    bytes: t.as_bytes().to_vec(),
                    file,
                }
            }
            None => gatosd::transport::token::ensure(&gatosd::transport::token::default_path(
                &gatos.gatos_dir(),
            ))?,
        };
        let (token_text, token_file) =
            (String::from_utf8(token.bytes.clone())?, token.file.clone());
        let shared = Shared::new(gatos, limits, Some(token));
        let (tx, rx) = oneshot::channel::<()>();
        let endpoints = Endpoints {
            unix: Some(ep),
            tcp: tcp_listener,
            stdio: false,
            http: None,
        };
        let handle = tokio::spawn(server::run(shared.clone(), endpoints, async move {
            let _ = rx.await;
        }));
        Ok(Daemon {
            repo,
            socket,
            tcp,
            token: token_text,
            token_file,
            shared,
            stop: Some(tx),
            handle: Some(handle),
        })
    }

    /// A Unix-socket client that authenticated with the token from the token file, as
    /// local clients do (calls that write need it).
    pub async fn client(&self) -> TestResult<Client> {
        let mut c = self.anon_client().await?;
        let token = std::fs::read_to_string(&self.token_file)?;
        let r = c
            .ok("gatos.auth", json!({"token": token.trim_end()}))
            .await?;
        assert_eq!(r["authenticated"], true);
        Ok(c)
    }

    /// A Unix-socket client that never authenticated (anyone who can connect).
    pub async fn anon_client(&self) -> TestResult<Client> {
        let s = tokio::net::UnixStream::connect(&self.socket).await?;
        let (r, w) = s.into_split();
        Ok(Client {
            reader: BufReader::new(Box::new(r)),
            writer: Box::new(w),
            next: 1,
            pending: Vec::new(),
        })
    }

    pub async fn tcp_client(&self) -> TestResult<Client> {
        let s = tokio::net::TcpStream::connect(self.tcp.ok_or("no tcp")?).await?;
        let (r, w) = s.into_split();
        Ok(Client {
            reader: BufReader::new(Box::new(r)),
            writer: Box::new(w),
            next: 1,
            pending: Vec::new(),
        })
    }

    pub async fn stop(mut self) -> TestResult<TempRepo> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(60), h).await??;
        }
        Ok(self.repo)
    }
}

pub struct Client {
    reader: BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
    pub writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    next: u64,
    /// Lines received while waiting for something else (notifications, other replies).
    pub pending: Vec<Value>,
}

pub const DEADLINE: Duration = Duration::from_secs(30);

impl Client {
    pub async fn send_raw(&mut self, bytes: &[u8]) -> TestResult {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    pub async fn send(&mut self, v: &Value) -> TestResult {
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        self.send_raw(&line).await
    }

    /// The next line, or None at EOF.
    pub async fn recv(&mut self) -> TestResult<Option<Value>> {
        if !self.pending.is_empty() {
            return Ok(Some(self.pending.remove(0)));
        }
        self.recv_wire().await
    }

    async fn recv_wire(&mut self) -> TestResult<Option<Value>> {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE, self.reader.read_line(&mut line)).await??;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&line)?))
    }

    /// Sends a request and returns its response (other lines are kept in `pending`).
    pub async fn call(&mut self, method: &str, params: Value) -> TestResult<Value> {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let v = self.recv_wire().await?.ok_or("connection closed")?;
            if v.get("id") == Some(&json!(id)) {
                return Ok(v);
            }
            self.pending.push(v);
        }
    }

    /// Like `call`, returning the result or failing with the error.
    pub async fn ok(&mut self, method: &str, params: Value) -> TestResult<Value> {
        let v = self.call(method, params).await?;
        match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(format!("{method} failed: {v}").into()),
        }
    }

    /// Waits for a notification of `method`.
    pub async fn notification(&mut self, method: &str) -> TestResult<Value> {
        if let Some(i) = self.pending.iter().position(|v| v["method"] == method) {
            return Ok(self.pending.remove(i));
        }
        loop {
            let v = self.recv_wire().await?.ok_or("connection closed")?;
            if v["method"] == method {
                return Ok(v);
            }
            self.pending.push(v);
        }
    }
}
