//! Command-line interface. `classify`'s flags and `--json` output are a contract that scripts
//! rely on: change them only compatibly.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::labels::DEFAULT_TEMPLATE;
use crate::model::PrecisionChoice;

#[derive(Debug, Parser)]
#[command(name = "siglipd", version, about = "Zero-shot scene labelling with SigLIP on small devices")]
pub struct Cli {
    /// More log detail on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score images against comma-separated labels
    Classify(ClassifyArgs),
    /// Run the daemon: cameras → scores → MQTT / stdout (without --config: the bundled demo)
    Run(ConfigArg),
    /// Compute the text embeddings of every configured label prompt
    Embed(ConfigArg),
    /// Validate a config file (and its model bundle and embeddings) without running
    CheckConfig(ConfigArg),
    /// Serve the demo web page and JSON API for one model (no cameras)
    Serve(ServeArgs),
    /// Time each precision × thread count on this machine; --save makes it what `auto` picks
    Bench(BenchArgs),
    /// Marked examples that teach labels: add folders of images, list, remove, export/import, reembed
    #[command(subcommand)]
    Examples(ExamplesCommand),
    /// Model bundles: `model pull` downloads the real SigLIP from the Hugging Face hub
    #[command(subcommand)]
    Model(ModelCommand),
    /// Write the man pages (`siglipd.1`, `siglipd-<command>.1`) into a directory (for packagers)
    #[command(hide = true)]
    Man(ManArgs),
}

/// `siglipd examples …`: the state directory's examples (see `examples`, `teach`). Commands
/// that change them need the daemon stopped (it holds the state directory); `list` and
/// `export` read beside a running daemon.
#[derive(Debug, Subcommand)]
pub enum ExamplesCommand {
    /// Embed images as examples of a label: --yes "this is the label", --no "this is not"
    Add(ExamplesAddArgs),
    /// Examples per camera and label, and whether each label has a fitted model
    List(ExamplesListArgs),
    /// Delete examples by id (`list --ids` shows them)
    Remove(ExamplesRemoveArgs),
    /// Write examples, with their images, into one file (to copy to another machine)
    Export(ExamplesExportArgs),
    /// Add the examples of an exported file (re-embedded from their images if another model made them)
    Import(ExamplesImportArgs),
    /// Recompute every example from its stored image with the configured model (after a model change)
    Reembed(ConfigArg),
}

#[derive(Debug, clap::Args)]
pub struct ExamplesAddArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Camera id (as in the config)
    #[arg(long)]
    pub camera: String,
    /// Label: display name or topic id
    #[arg(long)]
    pub label: String,
    /// The images show the label
    #[arg(long, conflicts_with = "no", required_unless_present = "no")]
    pub yes: bool,
    /// The images do not show the label
    #[arg(long)]
    pub no: bool,
    /// Image files, or folders (their image files, not sub-folders)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Which examples `examples list` and `examples export` look at.
#[derive(Debug, clap::Args)]
pub struct ExampleFilter {
    /// Only this camera
    #[arg(long)]
    pub camera: Option<String>,
    /// Only this label (display name or topic id)
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExamplesListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub only: ExampleFilter,
    /// Also list each example (id, yes/no, when)
    #[arg(long)]
    pub ids: bool,
    /// One JSON document on stdout instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExamplesRemoveArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Camera id
    #[arg(long)]
    pub camera: String,
    /// Example ids
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<u64>,
}

#[derive(Debug, clap::Args)]
pub struct ExamplesExportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub only: ExampleFilter,
    /// File to write (JSON)
    #[arg(long, short, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ExamplesImportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Put every example under this camera (default: the camera each was collected on, if configured here)
    #[arg(long)]
    pub camera: Option<String>,
    /// Put every example under this label (default: its own label, if configured here)
    #[arg(long)]
    pub label: Option<String>,
    /// A file from `siglipd examples export`
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes `siglipd.1` and one `siglipd-<command>.1` per subcommand (clap_mangen, from the
/// same definitions `--help` prints). Returns the files written.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let root = Cli::command();
    let mut written = Vec::new();
    let mut write = |name: String, cmd: clap::Command| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(&path, out)?;
        written.push(path);
        Ok(())
    };
    for sub in root.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("siglipd-{}", sub.get_name());
        write(name.clone(), sub.clone().name(name))?;
    }
    write("siglipd".into(), root)?;
    Ok(written)
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model bundle directory (with siglip.json)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Precisions to time (default: every one the bundle has; fp16 only on CPUs with fp16 arithmetic)
    #[arg(long, value_delimiter = ',', value_parser = parse_fixed_precision)]
    pub precision: Vec<crate::model::Precision>,
    /// Thread counts to time, e.g. 1,2,4 (default: 1, 2, 4 … up to the core count)
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Timed runs per configuration (after one warm-up run)
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Print the measurements as JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Write the fastest configuration to `<bundle>/auto.json` for `--precision auto` and `threads = 0`
    #[arg(long)]
    pub save: bool,
    /// Internal: measure exactly one configuration in this process
    #[arg(long, hide = true)]
    pub one: bool,
}

fn parse_fixed_precision(s: &str) -> Result<crate::model::Precision, String> {
    match s.parse::<PrecisionChoice>()? {
        PrecisionChoice::Fixed(p) => Ok(p),
        PrecisionChoice::Auto => Err("name a precision to time (fp32, int8 or fp16), not auto".into()),
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a ready ONNX SigLIP (transformers.js export) and write a siglipd bundle
    Pull(PullArgs),
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Hub repository with onnx/vision_model*.onnx, onnx/text_model*.onnx, tokenizer.json
    #[arg(long, default_value = crate::pull::DEFAULT_REPO)]
    pub repo: String,
    /// Branch, tag or commit of --repo
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Repository whose model.safetensors holds logit_scale/logit_bias (read by byte range)
    #[arg(long, default_value = crate::pull::DEFAULT_CHECKPOINT)]
    pub checkpoint: String,
    /// Bundle directory to create
    #[arg(long, default_value = "models/siglip-base-patch16-224")]
    pub dest: PathBuf,
    /// Hub address (a mirror, or a local server in tests)
    #[arg(long, env = "HF_ENDPOINT", default_value = crate::pull::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Access token for gated/private repositories
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Only the vision tower (labels must then be embedded on another machine)
    #[arg(long)]
    pub vision_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model bundle directory (with siglip.json)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Address to listen on; a non-loopback address requires --token
    #[arg(long, default_value = "127.0.0.1:7860")]
    pub bind: std::net::SocketAddr,
    /// Bearer token required on /api and /metrics (or SIGLIPD_TOKEN)
    #[arg(long, env = "SIGLIPD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Default vision precision for requests that do not pick one
    #[arg(long, default_value = "auto", value_parser = parse_precision)]
    pub precision: PrecisionChoice,
    /// Threads for the model (0: the saved `bench` choice, else every core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Largest upload accepted, in MiB
    #[arg(long, default_value_t = 20)]
    pub max_upload_mib: usize,
    /// Most labels per request
    #[arg(long, default_value_t = 100)]
    pub max_labels: usize,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file (TOML); see examples/siglipd.toml
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The config file given, else the embedded demo configuration (said at info level).
    pub fn load(&self) -> Result<crate::config::Config, crate::config::ConfigError> {
        match &self.config {
            Some(path) => crate::config::Config::load(path),
            None => {
                tracing::info!("no --config: running the embedded demo configuration (examples/siglipd.toml, paths relative to the current directory)");
                crate::config::Config::embedded_default()
            }
        }
    }
}

/// A command-line argument that cannot work (the message says which and why): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Model bundle directory (with siglip.json)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Candidate labels, comma-separated, e.g. "cat, dog, a parked car"
    #[arg(long)]
    pub labels: String,
    /// Prompt template; `{}` is replaced by each label
    #[arg(long, default_value = DEFAULT_TEMPLATE)]
    pub template: String,
    /// Vision tower precision: fp32, int8, fp16, or auto (what `siglipd bench --save` measured fastest and parity-checked on this CPU, else fp32)
    #[arg(long, default_value = "auto", value_parser = parse_precision)]
    pub precision: PrecisionChoice,
    /// Print one JSON document on stdout instead of a table
    #[arg(long)]
    pub json: bool,
    /// Threads for the model (0: the saved `bench` choice, else every core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Largest image accepted, in pixels (bounds memory on hostile input)
    #[arg(long, default_value_t = crate::model::preprocess::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Image files (JPEG, PNG, WebP, BMP, GIF)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

fn parse_precision(s: &str) -> Result<PrecisionChoice, String> {
    s.parse()
}
