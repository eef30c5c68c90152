//! The `sra-milter` binary: the command line ([`cli`]). All behaviour lives
//! in the library.

mod cli;

/// mimalloc rather than glibc's malloc: the milter makes many short-lived
/// allocations per message while the console keeps its recent verdicts;
/// measured in docs/performance.md ("allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
