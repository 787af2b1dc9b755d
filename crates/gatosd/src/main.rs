//! `gatosd`: parse arguments, install logging, run the server until a signal.

fn main() -> std::process::ExitCode {
    gatosd::main_with(std::env::args().skip(1).collect())
}
