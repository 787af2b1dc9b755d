//! `git gatos generate` (hidden): the manual pages and shell completions, made from the clap
//! definitions of `cli.rs` so they cannot drift from `-h` (ADR 0032). `scripts/install.sh`
//! runs it.

use std::io::Write as _;
use std::path::Path;

use clap::CommandFactory as _;
use gatos::Error;
use gatos_types::ErrorCode;

use crate::cli::{Cli, GenerateCli, GenerateCommand};

/// The name git runs for `git gatos` and `man` looks up for `git gatos --help`.
const PROGRAM: &str = "git-gatos";

/// Lets git's own bash completion complete `git gatos …`: git calls `_git_gatos` (loading
/// this file by the name `git-gatos` when it is not loaded yet), which hands the words after
/// `gatos` to clap's function for `git-gatos`, `_git__gatos`.
const BASH_GIT_HOOK: &str = r#"
# `git gatos …`: git's bash completion calls _git_gatos (loading this file, by the name
# git-gatos, on first use); it completes the words after `gatos` as `git-gatos` would.
_git_gatos() {
    local i
    for (( i = 1; i < COMP_CWORD; i++ )); do
        [[ ${COMP_WORDS[i]} == gatos ]] && break
    done
    local COMP_WORDS=(git-gatos "${COMP_WORDS[@]:i+1}")
    local COMP_CWORD=$(( COMP_CWORD - i ))
    _git__gatos git-gatos "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
}
"#;

/// Runs `git gatos generate …` (its arguments after the program name).
pub fn main() -> std::process::ExitCode {
    use crate::output;
    let cli = match <GenerateCli as clap::Parser>::try_parse_from(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => return output::print_clap(&e),
        Err(e) => return output::usage_error(&e, None),
    };
    let done = match &cli.what {
        GenerateCommand::Man { dir } => man(dir),
        GenerateCommand::Completions { shell } => completions(shell),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error[{}]: {e}", e.code());
            std::process::ExitCode::from(e.code().exit_status())
        }
    }
}

/// Writes `git-gatos.1` and a page per visible subcommand, named as git-lfs's and
/// clap_mangen's are (`git-gatos-jobs-enqueue.1`), and prints each path.
fn man(dir: &Path) -> Result<(), Error> {
    let failed = |what: &Path, e: std::io::Error| {
        Error::new(
            ErrorCode::Internal,
            format!("writing man page {}: {e}", what.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    // The display name is what pages are named and titled after; `--version` keeps saying
    // `git gatos`.
    let mut cmd = Cli::command()
        .display_name(PROGRAM)
        .disable_help_subcommand(true);
    cmd.build();
    let mut stack = vec![cmd];
    let mut written = Vec::new();
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = clap_mangen::Man::new(cmd)
            .source(format!("gatos {}", env!("CARGO_PKG_VERSION")))
            .manual("gatos Manual");
        let path = dir.join(page.get_filename());
        page.generate_to(dir).map_err(|e| failed(&path, e))?;
        written.push(path);
    }
    written.sort();
    let mut list = String::new();
    for path in &written {
        list.push_str(&format!("{}\n", path.display()));
    }
    print(list.as_bytes())
}

/// Prints the completion script of `shell` for `git-gatos`; bash's also serves `git gatos`
/// through git's completion (zsh's and fish's git completions call the `git-gatos` ones).
fn completions(shell: &str) -> Result<(), Error> {
    let shell = match shell {
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        _ => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    // Named `git-gatos` through and through: clap_complete names its functions after the
    // command's name as well as its bin name, and `git gatos` has a space.
    let mut cmd = Cli::command().name(PROGRAM).bin_name(PROGRAM);
    clap_complete::generate(shell, &mut cmd, PROGRAM, &mut script);
    if shell == clap_complete::Shell::Bash {
        // clap_complete spells the state of a subcommand of a hyphenated program two ways
        // (`git__gatos__subcmd__jobs` in the loop, `git__subcmd__gatos__subcmd__jobs` in the
        // arms), so nothing past the first word completes (clap-rs/clap#6421, open): one
        // spelling.
        let fixed = String::from_utf8_lossy(&script).replace("git__subcmd__gatos", "git__gatos");
        script = fixed.into_bytes();
        script.extend_from_slice(BASH_GIT_HOOK.as_bytes());
    }
    print(&script)
}

fn print(bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Error::from(crate::output::Closed)
            } else {
                Error::new(ErrorCode::Internal, format!("writing output: {e}"))
            }
        })
}
