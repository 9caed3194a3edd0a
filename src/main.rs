//! The `natter` binary: parse the command line and hand over to [`natter::cli::run`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    natter::cli::run(natter::cli::Cli::parse())
}
