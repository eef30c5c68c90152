//! The `sra-milter` binary: the command line ([`cli`]). All behaviour lives
//! in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
