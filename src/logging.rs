//! Log setup: human-readable lines on stderr, level from `-v`/`-q` or `RUST_LOG`.
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "siglipd=error",
        (false, 0) => "siglipd=info",
        (false, 1) => "siglipd=debug",
        (false, _) => "siglipd=trace,tract=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // stdout is reserved for results (`--json` must be exactly one document).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
