//! Subcommands, wired from validated arguments to the library, and the mapping of failures to
//! exit codes (documented in the README).
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use tracing::error;

use crate::classify::LabelScore;
use std::io::IsTerminal;

use crate::cli::{ClassifyArgs, Cli, Command, ConfigArg};
use crate::config::Config;
use crate::engine::Engine;
use crate::labels::{parse_list, Template};
use crate::model::Bundle;
use crate::{daemon, embeddings};

/// Some inputs failed (the rest were processed), or a failure a retry may fix (network, disk,
/// I/O): systemd's `Restart=on-failure` restarts the service.
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments, labels or template: what was typed must change.
pub const EXIT_USAGE: u8 = 2;
/// The configuration, model bundle or embeddings are unusable (sysexits EX_CONFIG): a restart
/// cannot fix it, so the unit lists it in `RestartPreventExitStatus`.
pub const EXIT_CONFIG: u8 = 78;

/// What an error means for the exit code — the one place that decides it (README table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// stdout was closed by the reader (`siglipd classify … | head`): not a failure.
    ClosedPipe,
    Usage,
    Config,
    /// Anything a retry may fix.
    Transient,
}

impl Cause {
    pub fn of(e: &anyhow::Error) -> Self {
        use crate::model::ModelError;
        for c in e.chain() {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return Cause::ClosedPipe;
                }
            }
        }
        for c in e.chain() {
            if c.is::<crate::labels::LabelError>() || c.is::<UsageError>() {
                return Cause::Usage;
            }
            if c.is::<crate::config::ConfigError>() || c.is::<crate::embeddings::EmbeddingsError>() {
                return Cause::Config;
            }
            if let Some(m) = c.downcast_ref::<ModelError>() {
                // reading a model file can fail for reasons a retry fixes; the rest cannot
                return if matches!(m, ModelError::Io { .. }) { Cause::Transient } else { Cause::Config };
            }
            if let Some(x) = c.downcast_ref::<crate::examples::ExampleError>() {
                use crate::examples::ExampleError as X;
                // examples of another model, or a file that is not an export: not for a retry
                match x {
                    X::OtherModel { .. } | X::NoStateDir => return Cause::Config,
                    // a file named on the command line (a config's `examples` is checked as config)
                    X::BadExport { .. } | X::OtherLabels { .. } => return Cause::Usage,
                    _ => {}
                }
            }
            if c.is::<crate::state::StateError>() || c.is::<std::io::Error>() {
                return Cause::Transient;
            }
        }
        Cause::Transient
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Cause::ClosedPipe => 0,
            Cause::Usage => EXIT_USAGE,
            Cause::Config => EXIT_CONFIG,
            Cause::Transient => EXIT_FAILURE,
        }
    }
}

pub use crate::cli::UsageError;

pub fn run(cli: Cli) -> ExitCode {
    if let Err(e) = std::env::var("TRACT_CPU_ISA").map_or(Ok(()), |spec| crate::model::encoder::check_cpu_isa(&spec)) {
        error!("{e}");
        return ExitCode::from(Cause::Usage.exit_code());
    }
    let result = match cli.command {
        Command::Classify(args) => classify(args),
        Command::Run(c) => {
            crate::host::raise_fd_limit();
            load_config(&c).and_then(|cfg| daemon::run(cfg, c.config.clone()).map(|()| ExitCode::SUCCESS))
        }
        Command::Embed(c) => embed(&c),
        Command::CheckConfig(c) => check_config(&c),
        Command::Serve(a) => {
            crate::host::raise_fd_limit();
            serve(a)
        }
        Command::Model(crate::cli::ModelCommand::Pull(a)) => pull(a),
        Command::Examples(c) => crate::examples_cmd::run(c),
        Command::Bench(a) => bench(a),
        Command::Man(a) => crate::cli::write_man_pages(&a.dir)
            .map(|files| {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            })
            .map_err(|e| anyhow::anyhow!(e).context(format!("cannot write man pages to {}", a.dir.display()))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let cause = Cause::of(&e);
            if cause != Cause::ClosedPipe {
                error!("{e:#}");
            }
            ExitCode::from(cause.exit_code())
        }
    }
}

fn load_config(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(arg.load()?)
}

fn embed(arg: &ConfigArg) -> anyhow::Result<ExitCode> {
    let config = load_config(arg)?;
    let bundle = Bundle::open(&config.model.bundle)?;
    let file = embeddings::embed(&config, &bundle, std::io::stderr().is_terminal(), true)?;
    println!("wrote {} prompt embeddings to {}", file.prompts.len(), config.model.embeddings.display());
    Ok(ExitCode::SUCCESS)
}

fn serve(a: crate::cli::ServeArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(&a.model)?;
    let limits =
        crate::http::Limits { max_upload_bytes: a.max_upload_mib.max(1) << 20, max_labels: a.max_labels.max(1), ..Default::default() };
    crate::http::check_bind(&a.bind, a.token.as_deref())?;
    if !bundle.has_text() {
        return Err(crate::model::ModelError::Mismatch {
            path: bundle.dir.clone(),
            reason: "the bundle has no text tower: the page needs one to score typed labels".into(),
        }
        .into());
    }
    crate::bench::apply_threads(&bundle, a.threads);
    let mut engine = crate::engine::Engine::load(bundle, a.precision, true)?;
    engine.pre.max_pixels = limits.max_pixels;
    crate::http::serve(engine, a.bind, a.token, limits)?;
    Ok(ExitCode::SUCCESS)
}

fn bench(a: crate::cli::BenchArgs) -> anyhow::Result<ExitCode> {
    use crate::bench;
    let bundle = Bundle::open(&a.model)?;
    if a.one {
        let [p] = a.precision[..] else {
            return Err(UsageError("--one needs exactly one --precision".into()).into());
        };
        let threads = a.threads.first().copied().unwrap_or(1);
        let m = bench::measure_one(&a.model, p, threads, a.runs)?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(ExitCode::SUCCESS);
    }
    let precisions = if a.precision.is_empty() { bench::default_precisions(&bundle) } else { a.precision };
    let threads = if a.threads.is_empty() {
        let cores = bench::cores();
        let mut t: Vec<usize> = [1, 2, 4, 8].into_iter().filter(|&n| n < cores).collect();
        t.push(cores);
        t.dedup();
        t
    } else {
        a.threads
    };
    let ms = bench::measure_all(&bench::BenchOptions { model: a.model.clone(), precisions, threads, runs: a.runs })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ms)?);
    } else {
        print!("{}", bench::render(&bundle, &ms));
    }
    if let Some(best) = bench::choose(&ms) {
        let line = format!("auto → {} with {} thread(s): {:.1} ms per image", best.precision, best.threads, best.median_ms);
        if a.save {
            let choice = bench::auto_choice(&bundle, best)?;
            let path = bundle.dir.join(bench::AUTO_FILE);
            std::fs::write(&path, serde_json::to_string_pretty(&choice)? + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{line} (saved to {})", path.display());
        } else {
            eprintln!("{line} (--save to make it the default)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pull(a: crate::cli::PullArgs) -> anyhow::Result<ExitCode> {
    let o = crate::pull::PullOptions {
        repo: a.repo,
        revision: a.revision,
        checkpoint: a.checkpoint,
        dest: a.dest,
        endpoint: a.endpoint,
        token: a.token.filter(|t| !t.is_empty()),
        progress: std::io::stderr().is_terminal(),
        vision_only: a.vision_only,
    };
    let dir = crate::pull::pull(&o)?;
    // prove the bundle loads and runs in tract before calling it done
    let bundle = Bundle::open(&dir)?;
    for p in bundle.precisions(crate::model::Tower::Vision) {
        let started = std::time::Instant::now();
        let mut v = crate::model::VisionEncoder::load(&bundle, p)?;
        let load_ms = started.elapsed().as_millis();
        let pixels = vec![0f32; 3 * (bundle.manifest.image_size as usize).pow(2)];
        let started = std::time::Instant::now();
        v.embed(&pixels)?;
        println!("vision {p}: loads in {load_ms} ms, one image in {} ms", started.elapsed().as_millis());
    }
    println!("bundle ready: {} (use it with --model {0} or [model] bundle = \"{0}\")", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn check_config(arg: &ConfigArg) -> anyhow::Result<ExitCode> {
    let config = load_config(arg)?;
    // loads the bundle and embeddings exactly as `run` would (computing stale embeddings)
    let (engine, _) = daemon::prepare(&config)?;
    println!(
        "config {} is valid: {} camera(s), {} label(s), model {} ({})",
        config.origin,
        config.cameras.len(),
        config.cameras.iter().map(|c| c.labels.len()).sum::<usize>(),
        engine.bundle.dir.display(),
        engine.vision.precision
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ImageResult<'a> {
    image: &'a str,
    scores: Vec<LabelScore>,
}

fn classify(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let labels = parse_list(&args.labels).context("invalid --labels")?;
    let template = Template::new(&args.template).context("invalid --template")?;
    let bundle = Bundle::open(&args.model)?;
    if !bundle.has_text() {
        return Err(crate::model::ModelError::Mismatch {
            path: args.model.clone(),
            reason: "the bundle has no text tower, so it cannot score free-text labels".into(),
        }
        .into());
    }
    crate::bench::apply_threads(&bundle, args.threads);
    let mut engine = Engine::load(bundle, args.precision, true)?;
    engine.pre.max_pixels = args.max_pixels;
    let prompts: Vec<(String, String)> = labels.iter().map(|l| (l.clone(), template.apply(l))).collect();
    let label_embs = engine.embed_labels(&prompts)?;

    let names: Vec<String> = args.images.iter().map(|p| p.display().to_string()).collect();
    let mut results = Vec::new();
    let mut failed = 0usize;
    for (path, name) in args.images.iter().zip(&names) {
        let started = std::time::Instant::now();
        match engine.classify_file(path, &label_embs) {
            Ok(scores) => {
                tracing::debug!(image = %name, ms = started.elapsed().as_millis() as u64, "classified");
                results.push(ImageResult { image: name, scores });
            }
            Err(e) => {
                failed += 1;
                error!("{e:#}");
            }
        }
    }

    // a reader that closed the pipe (`| head`) is not an error; failed images still are
    if let Err(e) = write_results(&results, args.json, engine.vision.precision.as_str()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if failed > 0 {
        error!("{failed} of {} images could not be classified", names.len());
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

/// Results on stdout: one JSON document, or the table. The JSON is rendered first, so a closed
/// pipe arrives as an `io::Error` (serde_json would hide its kind).
fn write_results(results: &[ImageResult], json: bool, precision: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(results).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
    } else {
        write_table(&mut out, results, precision)?;
    }
    out.flush()
}

fn write_table(out: &mut impl Write, results: &[ImageResult], precision: &str) -> std::io::Result<()> {
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}  ({precision})", r.image)?;
        for s in &r.scores {
            let bar = "█".repeat((s.score * 20.0).round() as usize);
            writeln!(out, "  {:>7.4}  {bar:<20}  {}", s.score, s.label)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's exit-code table, cause by cause.
    #[test]
    fn exit_codes_by_cause() {
        let io = |k: std::io::ErrorKind| anyhow::Error::from(std::io::Error::from(k));
        assert_eq!(Cause::of(&io(std::io::ErrorKind::BrokenPipe)).exit_code(), 0);
        assert_eq!(Cause::of(&io(std::io::ErrorKind::StorageFull).context("cannot write x")).exit_code(), EXIT_FAILURE);
        assert_eq!(Cause::of(&io(std::io::ErrorKind::ConnectionRefused)).exit_code(), EXIT_FAILURE);
        let cfg = crate::config::Config::parse("[model]\nbundle = 3\n", "t", std::path::Path::new("/")).unwrap_err();
        assert_eq!(Cause::of(&anyhow::Error::from(cfg).context("loading")).exit_code(), EXIT_CONFIG);
        let model = crate::model::Bundle::open(std::path::Path::new("/nonexistent")).unwrap_err();
        assert_eq!(Cause::of(&model.into()).exit_code(), EXIT_CONFIG);
        let read = crate::model::ModelError::Io { path: "/x".into(), cause: std::io::Error::other("eio") };
        assert_eq!(Cause::of(&read.into()).exit_code(), EXIT_FAILURE, "reading a model file may work next time");
        let labels = crate::labels::parse_list("cat,,dog").unwrap_err();
        assert_eq!(Cause::of(&anyhow::Error::from(labels).context("invalid --labels")).exit_code(), EXIT_USAGE);
        let emb = crate::embeddings::EmbeddingsError::MissingPrompt("x".into());
        assert_eq!(Cause::of(&emb.into()).exit_code(), EXIT_CONFIG);
    }
}
