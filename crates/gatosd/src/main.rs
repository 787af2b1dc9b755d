//! `gatosd`: parse arguments, install logging, run the server until a signal.

// gatosd keeps the system allocator, unlike git-gatos: with mimalloc its peak RSS through
// `scripts/bench.sh gatosd-flood` rose from 189 MiB to 330 MiB (target < 256 MiB), and its
// publishes gained nothing measurable (ADR 0046, session 7).
fn main() -> std::process::ExitCode {
    gatosd::main_with(std::env::args().skip(1).collect())
}
