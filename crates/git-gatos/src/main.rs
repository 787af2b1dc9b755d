//! `git gatos`: parse, call the library, render. No domain logic lives here.

mod cli;
mod commands;
mod output;

/// mimalloc rather than glibc's malloc: a publish allocates and frees many small buffers,
/// and glibc's allocator was 15–17% of a batch's time (ADR 0046, session 7).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // The worker's per-attempt supervisor (ADR 0021): hidden, and dispatched before clap
    // and logging so it starts fast and prints nothing of its own but `gatos:` lines.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == gatos::worker::supervisor::SUBCOMMAND)
    {
        let code = gatos::worker::supervisor::main();
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(125));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "generate") {
        return commands::generate::main(); // hidden: man pages and completions
    }
    let cli = match <cli::Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => return output::print_clap(&e), // --help, --version
        Err(e) => {
            // error[InvalidInput]: …, exit 2
            let args: Vec<String> = std::env::args().skip(1).collect();
            return output::usage_error(&e, cli::usage_hint(&e, &args).as_deref());
        }
    };
    output::init_logging(&cli.global);
    let mut out = output::Output::new(&cli.global);
    match commands::run(&cli, &mut out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if output::is_broken_pipe(&err) => std::process::ExitCode::SUCCESS,
        Err(err) => out.fail(&err),
    }
}
