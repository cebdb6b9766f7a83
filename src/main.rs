//! The `siglipd` binary: parse the command line, set up logging, hand over to `app::run`.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = siglipd::cli::Cli::parse();
    siglipd::logging::init(cli.verbose, cli.quiet);
    siglipd::app::run(cli)
}
