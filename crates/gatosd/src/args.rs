//! Command-line arguments of `gatosd`, as clap types (ADR 0032: the man page and
//! completions are generated from them). Doc comments are the help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gatosd: the gatos daemon, serving JSON-RPC 2.0 over JSONL on a repository.
///
/// Serves the repository containing --repo DIR (default: the current directory) on a Unix
/// socket (default <git-dir>/gatos/gatosd.sock), or on stdin/stdout with --stdio, and also
/// on TCP with --listen. The token of gatos.auth is in --token-file, else in
/// <git-dir>/gatos/gatosd/token (made at first start, mode 0600): on TCP the first call must
/// be gatos.auth {token}; on the Unix socket calls that write need it first. With --sync, it
/// also syncs with REMOTE every --sync-interval (default 30s; what `git gatos sync REMOTE`
/// does). With --read-only, every operation that writes is refused with Forbidden (the
/// background sync of --sync still runs). Logs go to stderr; the level comes from
/// --log-level, else GATOS_LOG, else RUST_LOG, else info.
#[derive(Debug, Parser)]
#[command(
    name = "gatosd",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// How to serve.
    #[command(flatten)]
    pub serve: Args,
    /// Another server instead (`gatosd mcp --stdio`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The servers besides the daemon's own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Model Context Protocol on stdin/stdout, for an agent that starts gatosd as
    /// its tool server (docs/mcp.md).
    Mcp(McpArgs),
}

/// `gatosd mcp`: an MCP server on stdin/stdout (ADR 0043).
///
/// The tools are the operation table's MCP rows; jobs.enqueue (an arbitrary command) is
/// offered only with --allow-tools jobs.enqueue. Calls act as mcp:<client name>@stdio.
/// Logs go to stderr; stdout is the protocol.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct McpArgs {
    /// Serve stdin/stdout (the only transport of this command; /mcp is on gatosd --http).
    #[arg(long, required = true)]
    pub stdio: bool,
    /// The repository containing DIR (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Offer read tools only, and refuse every write (Forbidden).
    #[arg(long)]
    pub read_only: bool,
    /// Offer only these tools (comma-separated or repeated); the only way to offer
    /// jobs.enqueue.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub allow_tools: Vec<String>,
    /// Never offer these tools (comma-separated or repeated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub deny_tools: Vec<String>,
    /// The log filter (default: GATOS_LOG, else RUST_LOG, else info).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// The longest JSON-RPC line accepted, in bytes (default 8 MiB, at least 1024).
    #[arg(long, value_name = "BYTES", value_parser = max_line)]
    pub max_line: Option<usize>,
}

impl McpArgs {
    /// The offer policy the flags say.
    ///
    /// # Errors
    /// A message naming a flag value that is no tool.
    pub fn policy(&self) -> Result<crate::mcp::Policy, String> {
        let p = crate::mcp::Policy {
            read_only: self.read_only,
            allow: (!self.allow_tools.is_empty())
                .then(|| self.allow_tools.iter().cloned().collect()),
            deny: self.deny_tools.iter().cloned().collect(),
        };
        p.check()?;
        Ok(p)
    }
}

/// `gatosd generate` (hidden: dispatched before [`Cli`] is parsed, so neither `--help`, the
/// man page nor the completions offer it).
#[derive(Debug, Parser)]
#[command(name = "gatosd generate", version)]
pub struct GenerateCli {
    /// What to make.
    #[command(subcommand)]
    pub what: Generate,
}

/// What a command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve (boxed: the serving options are most of the size).
    Serve(Box<Cli>),
    /// `gatosd generate …`.
    Generate(GenerateCli),
}

/// `gatosd generate`.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Write gatosd.1 into DIR.
    Man {
        /// The directory (made if missing).
        dir: PathBuf,
    },
    /// Print the completion script of SHELL.
    Completions {
        /// bash, zsh or fish.
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
    /// Print the HTTP face's OpenAPI 3.1 document (docs/openapi.json holds it; ADR 0033).
    Openapi,
    /// Print the GraphQL face's schema, as SDL (docs/schema.graphql holds it; ADR 0044).
    #[command(name = "graphql-schema")]
    GraphqlSchema,
}

/// The serving options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The repository containing DIR (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// The Unix socket (default <git-dir>/gatos/gatosd.sock).
    #[arg(long, value_name = "PATH", conflicts_with = "stdio")]
    pub socket: Option<PathBuf>,
    /// Serve stdin/stdout instead of the Unix socket.
    #[arg(long)]
    pub stdio: bool,
    /// Also serve TCP on this address (loopback unless --allow-non-loopback).
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub listen: Option<SocketAddr>,
    /// The file holding the token of gatos.auth (default <git-dir>/gatos/gatosd/token).
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,
    /// Let --listen serve an address that is not loopback.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// The log filter (default: GATOS_LOG, else RUST_LOG, else info).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// The log format.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
    /// The longest JSONL line accepted, in bytes (default 8 MiB, at least 1024).
    #[arg(long, value_name = "BYTES", value_parser = max_line)]
    pub max_line: Option<usize>,
    /// Also sync with REMOTE in the background (what `git gatos sync REMOTE` does).
    #[arg(long, value_name = "REMOTE")]
    pub sync: Option<String>,
    /// Time between two syncs of --sync (DUR, at least 1s; default 30s).
    #[arg(long, value_name = "DUR", value_parser = sync_interval, requires = "sync")]
    pub sync_interval: Option<gatos_types::Dur>,
    /// Refuse every operation that writes, on every transport (Forbidden).
    #[arg(long)]
    pub read_only: bool,
    /// Also serve HTTP (REST under /api/v1, the dashboard at /) on ADDR (default
    /// 127.0.0.1:6767); clients send 'Authorization: Bearer TOKEN' with a token of the token
    /// file, browsers sign in with git gatos dashboard. The bound address is written to
    /// <git-dir>/gatos/gatosd/http-addr.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::http::DEFAULT_ADDR,
          value_parser = listen_addr, conflicts_with = "stdio")]
    pub http: Option<SocketAddr>,
    /// A host name (NAME or NAME:PORT) accepted in the Host header of HTTP requests,
    /// besides IP addresses and localhost (behind a reverse proxy); repeatable.
    #[arg(long, value_name = "NAME", requires = "http")]
    pub http_allowed_host: Vec<String>,
    /// Serve HTTPS: the certificate chain (PEM, leaf first) of --http; needs --tls-key.
    #[arg(long, value_name = "F", requires_all = ["http", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "F", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let --http serve an address that is not loopback without TLS: tokens and data cross
    /// the network in clear text.
    #[arg(long, requires = "http")]
    pub allow_insecure_non_loopback: bool,
    /// Requests per second each HTTP token may send (N, or off); past it, 429 RateLimited
    /// with Retry-After.
    #[arg(long, value_name = "N", value_parser = crate::http::limit::parse_rate, requires = "http")]
    pub http_rate: Option<crate::http::limit::RateFlag>,
    /// Requests each HTTP token may send at once, after a quiet time.
    #[arg(long, value_name = "N", requires = "http")]
    pub http_burst: Option<std::num::NonZeroU32>,
    /// An origin (like https://app.example) whose pages may call the HTTP face from a
    /// browser (CORS); repeatable, exact origins only. Without it, no CORS headers.
    #[arg(long, value_name = "ORIGIN", value_parser = crate::http::limit::parse_origin, requires = "http")]
    pub http_cors_origin: Vec<String>,
    /// Offer only these MCP tools at /mcp of --http (comma-separated or repeated); the
    /// only way to offer jobs.enqueue there (docs/mcp.md).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', requires = "http")]
    pub mcp_allow_tools: Vec<String>,
    /// Never offer these MCP tools at /mcp of --http (comma-separated or repeated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', requires = "http")]
    pub mcp_deny_tools: Vec<String>,
    /// The deepest GraphQL query served (default 12); deeper is InvalidInput.
    #[arg(long, value_name = "N", requires = "http")]
    pub graphql_max_depth: Option<usize>,
    /// The most complex GraphQL query served (default 10000: a field costs 1, a page of N
    /// costs N times its fields); more is InvalidInput.
    #[arg(long, value_name = "N", requires = "http")]
    pub graphql_max_complexity: Option<usize>,
    /// Answer GraphQL introspection (__schema, __type); off by default (the SDL is served
    /// at /api/v1/graphql/schema either way).
    #[arg(long, requires = "http")]
    pub graphql_introspection: bool,
    /// How long a GraphQL ref state is kept after its last use (DUR, at least 1m; default
    /// 15m).
    #[arg(long, value_name = "DUR", value_parser = parse_state_ttl, requires = "http")]
    pub graphql_state_ttl: Option<std::time::Duration>,
    /// The memory GraphQL's kept ref states may take (SIZE: N MiB, or NMiB / NGiB; at
    /// least 1 MiB; default 256 MiB). Past it the oldest states go first, even within the
    /// ttl (a client paging on one gets Gone, reason memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_state_memory, requires = "http")]
    pub graphql_state_memory: Option<usize>,
}

fn parse_state_memory(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("GiB") {
        (n, 1024 * 1024 * 1024)
    } else if let Some(n) = t.strip_suffix("MiB") {
        (n, 1024 * 1024)
    } else {
        (t, 1024 * 1024)
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (N MiB, or NMiB, NGiB)"))?;
    if n == 0 {
        return Err("at least 1 MiB".to_owned());
    }
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_state_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = gatos_types::Dur::parse(s).map_err(|e| e.to_string())?;
    if d.as_secs() < 60 {
        return Err("at least 1m".to_owned());
    }
    Ok(d.to_std())
}

impl Args {
    /// True with `--log-format json`.
    pub fn log_json(&self) -> bool {
        self.log_format == "json"
    }

    /// What the flags cannot say to clap: a non-loopback `--listen` needs
    /// `--allow-non-loopback`, a non-loopback `--http` needs TLS or
    /// `--allow-insecure-non-loopback`.
    ///
    /// # Errors
    /// A message for the user.
    pub fn check(&self) -> Result<(), String> {
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && !self.allow_non_loopback
        {
            return Err(format!(
                "--listen {addr} is not a loopback address; add --allow-non-loopback to serve it"
            ));
        }
        if let Some(addr) = self.http
            && !addr.ip().is_loopback()
            && self.tls_cert.is_none()
            && !self.allow_insecure_non_loopback
        {
            return Err(format!(
                "--http {addr} is not a loopback address: tokens would cross the network in clear text; add --tls-cert F --tls-key F, or serve loopback behind a TLS proxy (with --http-allowed-host), or add --allow-insecure-non-loopback"
            ));
        }
        for h in &self.http_allowed_host {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err(format!("--http-allowed-host {h:?} is not a host name"));
            }
        }
        self.mcp_policy().map(|_| ())
    }

    /// The offer of `/mcp` (ADR 0043): `--mcp-allow-tools`, `--mcp-deny-tools`, and
    /// `--read-only`.
    ///
    /// # Errors
    /// A message naming a flag value that is no MCP tool.
    pub fn mcp_policy(&self) -> Result<crate::mcp::Policy, String> {
        let p = crate::mcp::Policy {
            read_only: self.read_only,
            allow: (!self.mcp_allow_tools.is_empty())
                .then(|| self.mcp_allow_tools.iter().cloned().collect()),
            deny: self.mcp_deny_tools.iter().cloned().collect(),
        };
        p.check()
            .map_err(|e| format!("--mcp-allow-tools/--mcp-deny-tools: {e}"))?;
        Ok(p)
    }
}

fn listen_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an address like 127.0.0.1:7070"))
}

fn max_line(v: &str) -> Result<usize, String> {
    let n: usize = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    if n < 1024 {
        return Err("--max-line must be at least 1024".into());
    }
    Ok(n)
}

fn sync_interval(v: &str) -> Result<gatos_types::Dur, String> {
    let d = gatos_types::Dur::parse(v).map_err(|e| format!("{v:?} is not a duration: {e}"))?;
    if d.as_millis() < 1000 {
        return Err("--sync-interval must be at least 1s".into());
    }
    Ok(d)
}

/// Runs `gatosd generate`: writes `DIR/gatosd.1` and returns its path, or returns the
/// completion script of a shell, the OpenAPI document or the GraphQL SDL.
///
/// # Errors
/// A message for the user when the page cannot be written (or the document built).
pub fn generate(g: &Generate) -> Result<Vec<u8>, String> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match g {
        Generate::Man { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
            // gatosd.1, and a page per subcommand (gatosd-mcp.1), as git-gatos names its own.
            let mut cmd = cmd;
            cmd.build();
            let mut pages = vec![cmd.clone()];
            pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
            let mut out = String::new();
            for page in pages {
                let page = clap_mangen::Man::new(page)
                    .source(format!("gatos {}", env!("CARGO_PKG_VERSION")))
                    .manual("gatos Manual");
                let path = page
                    .generate_to(dir)
                    .map_err(|e| format!("writing the man page into {}: {e}", dir.display()))?;
                out.push_str(&format!("{}\n", path.display()));
            }
            Ok(out.into_bytes())
        }
        Generate::Completions { shell } => {
            let shell = match shell.as_str() {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                _ => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), "gatosd", &mut script);
            Ok(script)
        }
        Generate::Openapi => gatos_api::openapi::render()
            .map(String::into_bytes)
            .map_err(|e| format!("building the OpenAPI document: {e}")),
        Generate::GraphqlSchema => Ok(crate::http::graphql::sdl().into_bytes()),
    }
}

/// Parses `args` (without the program name).
///
/// # Errors
/// clap's error: a usage error, or the request for `--help` or `--version`.
pub fn parse(args: Vec<String>) -> Result<Invocation, clap::Error> {
    if args.first().is_some_and(|a| a == "generate") {
        // `generate` stands where clap expects the program name.
        return GenerateCli::try_parse_from(args).map(Invocation::Generate);
    }
    Cli::try_parse_from(std::iter::once("gatosd".to_owned()).chain(args))
        .map(|c| Invocation::Serve(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn p(v: &[&str]) -> Result<Args, String> {
        match parse(args(v)).map_err(|e| e.to_string())? {
            Invocation::Serve(cli) => {
                cli.serve.check()?;
                if let Some(c) = cli.command {
                    return Err(format!("not serving: {c:?}"));
                }
                Ok(cli.serve)
            }
            Invocation::Generate(g) => Err(format!("not serving: {g:?}")),
        }
    }

    #[test]
    fn the_state_memory_is_a_size_of_at_least_one_mebibyte() {
        assert_eq!(parse_state_memory("64"), Ok(64 << 20));
        assert_eq!(parse_state_memory("64MiB"), Ok(64 << 20));
        assert_eq!(parse_state_memory("2GiB"), Ok(2 << 30));
        for bad in ["0", "", "x", "-1", "1.5GiB", "12KB"] {
            assert!(parse_state_memory(bad).is_err(), "{bad}");
        }
        let Ok(Invocation::Serve(c)) = parse(args(&[
            "--http",
            "127.0.0.1:0",
            "--graphql-state-memory",
            "32MiB",
        ])) else {
            panic!("parses");
        };
        assert_eq!(c.serve.graphql_state_memory, Some(32 << 20));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        <GenerateCli as clap::CommandFactory>::command().debug_assert();
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
        assert!(a.log_json());
        assert!(!p(&[]).expect("valid").log_json());
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
        assert!(p(&["--log-format", "xml"]).is_err());
    }

    #[test]
    fn http_rate_burst_and_cors_origins_are_read() {
        let a = p(&["--http"]).expect("valid");
        assert_eq!(a.http_rate, None);
        assert!(a.http_cors_origin.is_empty());
        let a = p(&["--http", "--http-rate", "off"]).expect("valid");
        assert_eq!(a.http_rate, Some(crate::http::limit::RateFlag(None)));
        let a = p(&[
            "--http",
            "--http-rate",
            "20",
            "--http-burst",
            "5",
            "--http-cors-origin",
            "https://a.example",
            "--http-cors-origin",
            "http://localhost:3000",
        ])
        .expect("valid");
        assert_eq!(
            a.http_rate,
            Some(crate::http::limit::RateFlag(std::num::NonZeroU32::new(20)))
        );
        assert_eq!(a.http_burst, std::num::NonZeroU32::new(5));
        assert_eq!(
            a.http_cors_origin,
            ["https://a.example", "http://localhost:3000"]
        );
        for bad in [
            &["--http", "--http-rate", "0"][..],
            &["--http", "--http-burst", "0"],
            &["--http", "--http-cors-origin", "*"],
            &["--http-rate", "5"],
            &["--http-cors-origin", "https://a.example"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_takes_a_default_address_and_refuses_non_loopback_without_the_flag() {
        let a = p(&["--http"]).expect("valid");
        assert_eq!(
            a.http.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:6767")
        );
        let a = p(&["--http", "127.0.0.1:0", "--http-allowed-host", "gatos.lan"]).expect("valid");
        assert_eq!(a.http.map(|a| a.port()), Some(0));
        assert_eq!(a.http_allowed_host, ["gatos.lan"]);
        assert!(p(&[]).expect("valid").http.is_none());
        let e = p(&["--http", "0.0.0.0:6767"]).unwrap_err();
        assert!(e.contains("--allow-insecure-non-loopback"), "{e}");
        assert!(p(&["--http", "0.0.0.0:6767", "--allow-insecure-non-loopback"]).is_ok());
        assert!(
            p(&[
                "--http",
                "0.0.0.0:6767",
                "--tls-cert",
                "c",
                "--tls-key",
                "k"
            ])
            .is_ok()
        );
        assert!(
            p(&["--http", "--tls-cert", "c"]).is_err(),
            "needs --tls-key"
        );
        assert!(
            p(&["--http", "--tls-key", "k"]).is_err(),
            "needs --tls-cert"
        );
        assert!(
            p(&["--tls-cert", "c", "--tls-key", "k"]).is_err(),
            "needs --http"
        );
        assert!(p(&["--http-allowed-host", "x"]).is_err(), "needs --http");
        assert!(p(&["--http", "--stdio"]).is_err());
        assert!(p(&["--http", "nope"]).is_err());
    }

    #[test]
    fn values_are_checked_with_the_old_messages() {
        let e = p(&["--listen", "nope"]).unwrap_err();
        assert!(e.contains("is not an address like 127.0.0.1:7070"), "{e}");
        let e = p(&["--max-line", "12"]).unwrap_err();
        assert!(e.contains("--max-line must be at least 1024"), "{e}");
        assert_eq!(
            p(&["--max-line", "4096"]).expect("valid").max_line,
            Some(4096)
        );
        let e = p(&["--sync", "origin", "--sync-interval", "500ms"]).unwrap_err();
        assert!(e.contains("--sync-interval"), "{e}");
        assert!(p(&["--sync-interval", "5s"]).is_err(), "needs --sync");
        let a = p(&["--sync", "origin", "--sync-interval", "5s"]).expect("valid");
        assert_eq!(a.sync_interval.map(gatos_types::Dur::as_millis), Some(5000));
        assert!(matches!(
            parse(args(&["generate", "man", "d"])),
            Ok(Invocation::Generate(_))
        ));
        assert!(parse(args(&["--stdio", "generate"])).is_err());
    }

    #[test]
    fn mcp_is_a_subcommand_with_its_own_flags() {
        let mcp = |v: &[&str]| match parse(args(v)).map_err(|e| e.to_string())? {
            Invocation::Serve(cli) => match cli.command {
                Some(Command::Mcp(m)) => Ok(m),
                None => Err("serving".to_owned()),
            },
            Invocation::Generate(_) => Err("generate".to_owned()),
        };
        let m = mcp(&[
            "mcp",
            "--stdio",
            "--read-only",
            "--deny-tools",
            "doctor.check,audit.read",
        ])
        .expect("valid");
        assert!(m.stdio && m.read_only);
        assert_eq!(m.deny_tools, ["doctor.check", "audit.read"]);
        assert!(m.policy().is_ok());
        let m = mcp(&[
            "mcp",
            "--stdio",
            "--allow-tools",
            "jobs.enqueue",
            "--allow-tools",
            "jobs.get",
        ])
        .expect("valid");
        assert_eq!(
            m.policy().expect("known tools").allow.map(|a| a.len()),
            Some(2)
        );
        let a = p(&[
            "--http",
            "--mcp-deny-tools",
            "doctor.check",
            "--mcp-allow-tools",
            "jobs.enqueue",
        ])
        .expect("valid");
        let policy = a.mcp_policy().expect("known tools");
        assert!(policy.deny.contains("doctor.check"));
        assert!(p(&["--http", "--mcp-deny-tools", "nope"]).is_err());
        assert!(
            p(&["--mcp-deny-tools", "doctor.check"]).is_err(),
            "needs --http"
        );
        let m = mcp(&["mcp", "--stdio", "--deny-tools", "jobs.claim"]).expect("parses");
        assert!(m.policy().is_err(), "jobs.claim is no MCP tool");
        assert!(mcp(&["mcp"]).is_err(), "needs --stdio");
        assert!(mcp(&["--stdio", "mcp", "--stdio"]).is_err());
        assert!(p(&["--stdio"]).is_ok());
    }
}
