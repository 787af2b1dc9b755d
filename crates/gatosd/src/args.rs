//! Command-line arguments of `gatosd` (parsed by hand: clap belongs to `git-gatos`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Usage text.
pub const USAGE: &str = "\
usage: gatosd [--repo DIR] [--socket PATH] [--stdio]
              [--listen 127.0.0.1:PORT] [--token-file F] [--allow-non-loopback]
              [--log-level LEVEL] [--log-format text|json] [--max-line BYTES]
              [--sync REMOTE [--sync-interval DUR]] [--read-only]

Serves JSON-RPC 2.0 over JSONL on the repository containing DIR (default: the current
directory): on a Unix socket (default <git-dir>/gatos/gatosd.sock), or on stdin/stdout
with --stdio, and also on TCP with --listen. The token of gatos.auth is in --token-file,
else in <git-dir>/gatos/gatosd/token (made at first start, mode 0600): on TCP the first
call must be gatos.auth {token}; on the Unix socket calls that write need it first. With --sync, it also syncs with REMOTE every --sync-interval
(default 30s; what `git gatos sync REMOTE` does). With --read-only, every operation that
writes is refused with Forbidden (the background sync of --sync still runs). Logs go to stderr; the level comes from --log-level, else GATOS_LOG,
else RUST_LOG, else info.";

/// Parsed arguments.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `--repo DIR`.
    pub repo: Option<PathBuf>,
    /// `--socket PATH`.
    pub socket: Option<PathBuf>,
    /// `--stdio`.
    pub stdio: bool,
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--token-file F`.
    pub token_file: Option<PathBuf>,
    /// `--allow-non-loopback`.
    pub allow_non_loopback: bool,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_json: bool,
    /// `--max-line`.
    pub max_line: Option<usize>,
    /// `--sync REMOTE`.
    pub sync: Option<String>,
    /// `--sync-interval DUR` (default 30 s).
    pub sync_interval: Option<gatos_types::Dur>,
    /// `--read-only`: every operation that writes is refused on every transport.
    pub read_only: bool,
    /// `--help`.
    pub help: bool,
    /// `--version`.
    pub version: bool,
}

/// Parses `args` (without the program name).
///
/// # Errors
/// A message for the user.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--repo" => a.repo = Some(PathBuf::from(value("--repo")?)),
            "--socket" => a.socket = Some(PathBuf::from(value("--socket")?)),
            "--stdio" => a.stdio = true,
            "--listen" => {
                let v = value("--listen")?;
                a.listen = Some(v.parse().map_err(|_| {
                    format!("--listen: {v:?} is not an address like 127.0.0.1:7070")
                })?);
            }
            "--token-file" => a.token_file = Some(PathBuf::from(value("--token-file")?)),
            "--allow-non-loopback" => a.allow_non_loopback = true,
            "--log-level" => a.log_level = Some(value("--log-level")?),
            "--log-format" => match value("--log-format")?.as_str() {
                "text" => a.log_json = false,
                "json" => a.log_json = true,
                other => return Err(format!("--log-format must be text or json, not {other:?}")),
            },
            "--max-line" => {
                let v = value("--max-line")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--max-line: {v:?} is not a number"))?;
                if n < 1024 {
                    return Err("--max-line must be at least 1024".into());
                }
                a.max_line = Some(n);
            }
            "--sync" => a.sync = Some(value("--sync")?),
            "--sync-interval" => {
                let v = value("--sync-interval")?;
                let d = gatos_types::Dur::parse(&v)
                    .map_err(|e| format!("--sync-interval: {v:?} is not a duration: {e}"))?;
                if d.as_millis() < 1000 {
                    return Err("--sync-interval must be at least 1s".into());
                }
                a.sync_interval = Some(d);
            }
            "--read-only" => a.read_only = true,
            "-h" | "--help" => a.help = true,
            "-V" | "--version" => a.version = true,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if a.stdio && a.socket.is_some() {
        return Err("--stdio and --socket exclude each other".into());
    }
    if a.sync_interval.is_some() && a.sync.is_none() {
        return Err("--sync-interval needs --sync REMOTE".into());
    }
    if let Some(addr) = a.listen
        && !addr.ip().is_loopback()
        && !a.allow_non_loopback
    {
        return Err(format!(
            "--listen {addr} is not a loopback address; add --allow-non-loopback to serve it"
        ));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, String> {
        parse(v.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags_parse_and_conflicts_are_refused() {
        let a = p(&[
            "--repo",
            "/r",
            "--listen=127.0.0.1:7070",
            "--token-file",
            "t",
            "--log-format",
            "json",
        ])
        .expect("valid");
        assert_eq!(a.repo, Some(PathBuf::from("/r")));
        assert!(a.log_json);
        assert!(p(&["--listen", "127.0.0.1:1"]).is_ok());
        assert!(p(&["--listen", "0.0.0.0:1", "--token-file", "t"]).is_err());
        assert!(
            p(&[
                "--listen",
                "0.0.0.0:1",
                "--token-file",
                "t",
                "--allow-non-loopback"
            ])
            .is_ok()
        );
        assert!(p(&["--stdio", "--socket", "x"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["--repo"]).is_err());
    }
}
