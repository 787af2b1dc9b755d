//! Rendering: data on stdout (human lines or JSONL), diagnostics on stderr, exit codes.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::process::ExitCode;

use gatos::Error;
use gatos_types::{Coded, ErrorCode};
use serde::Serialize;

/// Writes a line on stderr; a closed or broken stderr loses the line, never the command
/// (`eprintln!` panics, exit 101, when stderr is a pipe whose reader went away).
/// One line on stderr, control characters but line ends and tabs escaped (errors, hints
/// and warnings quote what others wrote: a hub's reasons, names, commands).
macro_rules! stderr_line {
    ($($t:tt)*) => {{
        let line = format!($($t)*);
        let _ = writeln!(std::io::stderr(), "{}", $crate::output::printable_lines(&line));
    }};
}

use crate::cli::GlobalArgs;

/// The reader of stdout went away (EPIPE): output ends quietly with exit 0.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for Closed {}

impl Coded for Closed {
    fn code(&self) -> ErrorCode {
        ErrorCode::Unavailable
    }
}

fn io_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::from(Closed)
    } else {
        Error::new(ErrorCode::Internal, format!("writing output: {e}"))
    }
}

/// A command-line usage problem found after parsing (exit 2, like clap's own).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

impl Coded for Usage {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidInput
    }
}

/// Makes a usage error.
pub fn usage(text: impl Into<String>) -> Error {
    Error::from(Usage(text.into()))
}

/// Tells whether an error is the closed-stdout case.
pub fn is_broken_pipe(err: &Error) -> bool {
    err.inner().downcast_ref::<Closed>().is_some()
}

/// Where command output goes.
pub struct Output {
    json: bool,
    quiet: bool,
    verbose: u8,
    out: BufWriter<Stdout>,
    /// Flush after every row (streams: --follow).
    pub streaming: bool,
}

impl Output {
    /// Decides human vs JSON once, from the global flags.
    pub fn new(g: &GlobalArgs) -> Output {
        Output {
            json: g.json,
            quiet: g.quiet,
            verbose: g.verbose,
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            streaming: false,
        }
    }

    /// True with `--json`.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// True with `--quiet`.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints one record: its JSON with `--json`, else the human line.
    ///
    /// # Errors
    /// `Closed` when stdout is gone.
    pub fn row<T: Serialize + ?Sized>(
        &mut self,
        row: &T,
        human: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        if self.json {
            serde_json::to_writer(&mut self.out, row).map_err(|e| io_error(e.into()))?;
            self.out.write_all(b"\n").map_err(io_error)?;
        } else {
            // Human lines show what others wrote (commands, names, workers, reasons): a
            // control character in them (an escape sequence that moves the cursor or erases
            // a line) is shown escaped, never sent to the terminal.
            let mut text = Vec::new();
            human(&mut text).map_err(io_error)?;
            let text = String::from_utf8_lossy(&text);
            self.out
                .write_all(printable_lines(&text).as_bytes())
                .map_err(io_error)?;
            self.out.write_all(b"\n").map_err(io_error)?;
        }
        if self.streaming {
            self.flush()?;
        }
        Ok(())
    }

    /// Flushes stdout.
    ///
    /// # Errors
    /// `Closed` when stdout is gone.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(io_error)
    }

    /// Prints a hint on stderr (not with `--quiet`).
    pub fn hint(&self, text: &str) {
        if !self.quiet {
            stderr_line!("hint: {text}");
        }
    }

    /// Prints a warning on stderr.
    pub fn warn(&self, text: &str) {
        stderr_line!("warning: {text}");
    }

    /// True when progress may be shown: stderr is a terminal, no --json, no --quiet.
    pub fn progress_allowed(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }

    /// Reports a failure and returns the exit code: 4 for a full queue (retry after the
    /// hint, ADR 0027), 3 for lost races (retry at once), 2 for usage errors, else 1.
    pub fn fail(&mut self, err: &Error) -> ExitCode {
        let _ = self.out.flush();
        stderr_line!("error[{}]: {}", err.code(), err);
        if let Some(h) = flag_hint(err) {
            self.hint(h);
        }
        if self.verbose > 0 {
            let mut cause = std::error::Error::source(err);
            while let Some(c) = cause {
                stderr_line!("  caused by: {c}");
                cause = c.source();
            }
        }
        if self.json {
            let mut body = serde_json::to_value(err.body()).unwrap_or_default();
            if let Some(obj) = body.as_object_mut() {
                for (k, v) in err.details() {
                    obj.insert(k.clone(), v.clone());
                }
            }
            let line = serde_json::json!({ "error": body });
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
        if err.inner().downcast_ref::<Usage>().is_some() {
            return ExitCode::from(2);
        }
        ExitCode::from(err.code().exit_status())
    }
}

/// The flag that answers a refusal, in this command line's words: the library names an
/// option by its meaning ("a forced move"), the CLI by its flag. Only typed refusals get
/// one, so a hint never guesses from a message's text.
fn flag_hint(err: &Error) -> Option<&'static str> {
    use gatos::checkpoints::MoveError;
    use gatos::jobs::logs;
    use gatos::messages::{PruneError, config};
    use gatos::worker::{OptionsError, SecretSource};
    let inner = err.inner();
    if let Some(e) = inner.downcast_ref::<OptionsError>() {
        return Some(match e {
            OptionsError::Concurrency { .. } => "--concurrency takes 1 to 256",
            OptionsError::Lease { .. } => "--lease takes a duration from 1s to 30d",
            OptionsError::WorkdirNotADirectory { .. } | OptionsError::WorkdirHoldsGitDir { .. } => {
                "--workdir DIR sets the work directory"
            }
            OptionsError::NoSandbox => {
                "--sandbox auto runs jobs unsandboxed where the kernel has no Landlock"
            }
            OptionsError::SecretsReadable { which, .. } => match which {
                SecretSource::File => "--secrets FILE sets the secrets file",
                SecretSource::Directory => "--secrets-dir DIR sets the secrets directory",
            },
            OptionsError::SecretsUnreadable { .. }
            | OptionsError::SecretsLine { .. }
            | OptionsError::SecretsLineName { .. }
            | OptionsError::SecretsFileName { .. }
            | OptionsError::SecretTooLarge { .. } => {
                "--secrets FILE and --secrets-dir DIR name the secret sources"
            }
            OptionsError::SecretEnvName { .. } | OptionsError::SecretEnvMissing { .. } => {
                "--secret-env NAME takes a variable of the worker's environment"
            }
        });
    }
    if let Some(e) = inner.downcast_ref::<MoveError>() {
        return match e {
            MoveError::Backwards { .. } => Some("--force moves a checkpoint back (audited)"),
            MoveError::NotRetained { .. }
            | MoveError::Pruned { .. }
            | MoveError::NotInTopic { .. }
            | MoveError::Raced { .. } => None,
        };
    }
    if let Some(e) = inner.downcast_ref::<config::Error>() {
        return match e {
            config::Error::Zero { .. } => Some("--max-messages and --max-bytes take at least 1"),
            config::Error::NoDocument { .. }
            | config::Error::Malformed { .. }
            | config::Error::Raced { .. } => None,
        };
    }
    if let Some(e) = inner.downcast_ref::<PruneError>() {
        return Some(match e {
            PruneError::GroupsBehind { .. } => "--force prunes anyway (audited)",
        });
    }
    match inner.downcast_ref::<logs::Error>()? {
        logs::Error::NotStarted { .. } | logs::Error::Elsewhere { .. } => {
            Some("jobs logs --follow waits for the log")
        }
        logs::Error::NoSuchJob { .. }
        | logs::Error::NoSuchAttempt { .. }
        | logs::Error::BadOptions(_)
        | logs::Error::NoLog { .. }
        | logs::Error::Spool { .. }
        | logs::Error::Read(_) => None,
    }
}

/// A number and its noun, singular for one: `count(1, "segment", "segments")` is
/// "1 segment", `count(2, …)` "2 segments".
/// `s` with every control character escaped (`\u{1b}`), line ends and tabs included: a
/// value shown on one line of a human report.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `s` with every control character but line ends and tabs escaped: human output, whose
/// lines are its own.
pub(crate) fn printable_lines(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if unsafe_char(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

pub fn count<N: std::fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let noun = if n == N::from(1) { one } else { many };
    format!("{n} {noun}")
}

/// Prints `--help` / `--version` (exit 0).
pub fn print_clap(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::SUCCESS
}

/// Prints a usage error as `error[InvalidInput]: …` (exit 2), then `hint` if any.
pub fn usage_error(e: &clap::Error, hint: Option<&str>) -> ExitCode {
    let rendered = e.render().to_string();
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    stderr_line!("error[InvalidInput]: {first}");
    for l in lines.filter(|l| !l.trim().is_empty()) {
        stderr_line!("{l}");
    }
    if let Some(h) = hint {
        stderr_line!("hint: {h}");
    }
    ExitCode::from(2)
}

/// Installs the log subscriber: stderr only, level from GATOS_LOG, RUST_LOG or -v.
///
/// Without any of those only warnings and errors are printed, by a minimal subscriber:
/// `tracing-subscriber`'s registry costs a noticeable part of a one-message command.
pub fn init_logging(g: &GlobalArgs) {
    let env = std::env::var("GATOS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    if env.is_none() && g.verbose == 0 {
        let _ = tracing::subscriber::set_global_default(Quiet);
        return;
    }
    let default = match g.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = env.unwrap_or_else(|| default.to_owned());
    let use_color = g.color == "always"
        || (g.color == "auto"
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stderr().is_terminal());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(use_color)
        .with_target(false)
        .try_init();
}

/// Prints warnings and errors as `warning: message key=value …`; ignores spans.
struct Quiet;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl tracing::Subscriber for Quiet {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::WARN
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let level = if *event.metadata().level() == tracing::Level::ERROR {
            "error"
        } else {
            "warning"
        };
        stderr_line!("{level}: {}", f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
