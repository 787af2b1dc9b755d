//! `gatosd`: parse arguments, install logging, run the server until a signal.

/// mimalloc rather than glibc's malloc: a publish allocates and frees many small buffers,
/// and glibc's allocator was 15–17% of a batch's time (ADR 0046, session 7).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatosd::main_with(std::env::args().skip(1).collect())
}
