//! The `riven` binary: parses the command line and hands it to [`riven_cli::main`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    riven_cli::main(riven_cli::cli::Cli::parse())
}
