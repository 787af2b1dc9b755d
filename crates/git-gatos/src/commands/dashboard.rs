//! `git gatos dashboard`: a sign-in URL for the dashboard of the running gatosd
//! (`dashboard.signin_code` over its Unix socket, ADR 0045), and its sessions.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use gatos::Error;
use gatos_api::types::{RevokeResult, SessionsResult, SigninCode};
use gatos_types::ErrorCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::{DashboardArgs, DashboardCommand};
use crate::output::Output;

/// How long the daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One JSON-RPC connection to gatosd's Unix socket.
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next: u64,
}

impl Client {
    fn connect(path: &PathBuf) -> Result<Client, Error> {
        let s = UnixStream::connect(path).map_err(|e| {
            Error::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot reach gatosd at {}: {e}; start it with gatosd --http (or pass --socket)",
                    path.display()
                ),
            )
        })?;
        let io = |e: std::io::Error| Error::new(ErrorCode::Unavailable, e.to_string());
        s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        let writer = s.try_clone().map_err(io)?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
            next: 1,
        })
    }

    /// Calls `method`; the result, or the daemon's error with its taxonomy code.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        let io = |e: std::io::Error| Error::new(ErrorCode::Unavailable, format!("gatosd: {e}"));
        let id = self.next;
        self.next += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        // One write for the line: `writeln!` on the socket would send each piece that
        // `Display` makes as a system call of its own.
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        self.writer.write_all(&bytes).map_err(io)?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).map_err(io)?;
        let v: Value = serde_json::from_str(&answer).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("gatosd answered something that is not JSON: {e}"),
            )
        })?;
        if let Some(err) = v.get("error") {
            let code = err
                .pointer("/data/code")
                .and_then(Value::as_str)
                .and_then(|c| c.parse::<ErrorCode>().ok())
                .unwrap_or(ErrorCode::Internal);
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(Error::new(code, format!("gatosd: {msg}")));
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }
}

/// The first token of a token file: a bare token, or the TOKEN of the first `NAME TOKEN
/// [ro]` line.
fn first_token(path: &PathBuf) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorCode::Unauthorized,
            format!(
                "cannot read the daemon's token file {}: {e}; pass --token-file",
                path.display()
            ),
        )
    })?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let token = match lines.as_slice() {
        [one] if !one.contains(char::is_whitespace) => Some((*one).to_owned()),
        many => many
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned),
    };
    token.ok_or_else(|| {
        Error::new(
            ErrorCode::Unauthorized,
            format!("{} holds no token", path.display()),
        )
    })
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Error> {
    serde_json::from_value(v)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("gatosd's answer: {e}")))
}

/// Runs `git gatos dashboard …`.
pub fn run(ctx: &Ctx, out: &mut Output, a: &DashboardArgs) -> Result<(), Error> {
    let gatos = ctx.gatos()?;
    let socket = a
        .socket
        .clone()
        .unwrap_or_else(|| gatos.gatos_dir().join("gatosd.sock"));
    let token_file = a
        .token_file
        .clone()
        .unwrap_or_else(|| gatos.gatos_dir().join("gatosd").join("token"));
    let token = first_token(&token_file)?;
    let mut c = Client::connect(&socket)?;
    c.call("gatos.auth", json!({ "token": token }))?;
    match &a.command {
        None => {
            let code: SigninCode =
                decode(c.call("dashboard.signin_code", json!({ "read_only": a.read_only }))?)?;
            out.row(&code, |w| write!(w, "{}", code.url))?;
            out.hint(&format!(
                "open this URL within {} s; it signs in once{}",
                code.expires_in_seconds,
                if code.read_only { " (read-only)" } else { "" }
            ));
            if a.open {
                out.flush()?;
                // The URL goes to the opener as an argument, never through a shell.
                if let Err(e) = std::process::Command::new("xdg-open")
                    .arg(&code.url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                {
                    out.hint(&format!(
                        "could not run xdg-open ({e}); open the URL yourself"
                    ));
                }
            }
        }
        Some(DashboardCommand::Sessions) => {
            let r: SessionsResult = decode(c.call("dashboard.sessions", json!({}))?)?;
            for s in &r.sessions {
                out.row(s, |w| {
                    write!(
                        w,
                        "{}  opened {}  expires {}  last used {}  {}by {}",
                        s.id,
                        s.created_at,
                        s.expires_at,
                        s.last_used_at,
                        if s.read_only { "read-only  " } else { "" },
                        s.minted_by
                    )
                })?;
            }
        }
        Some(DashboardCommand::Revoke { id, all }) => {
            let params = match (id, all) {
                (Some(id), false) => json!({ "id": id }),
                (None, true) => json!({ "all": true }),
                _ => {
                    return Err(Error::new(
                        ErrorCode::InvalidInput,
                        "give a session id, or --all",
                    ));
                }
            };
            let r: RevokeResult = decode(c.call("dashboard.revoke", params)?)?;
            out.row(&r, |w| write!(w, "revoked {}", r.revoked.join(" ")))?;
        }
    }
    Ok(())
}
