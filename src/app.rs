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
use crate::{daemon, embeddings};
use crate::engine::Engine;
use crate::labels::{parse_list, Template};
use crate::model::Bundle;

/// Some inputs failed, the rest were processed.
pub const EXIT_PARTIAL: u8 = 1;
/// Bad arguments, labels or model bundle: retrying will not help.
pub const EXIT_USAGE: u8 = 2;
/// The daemon's configuration (or what it names) is unusable (sysexits EX_CONFIG); the
/// systemd unit lists it in RestartPreventExitStatus so a bad config is not restarted in a loop.
pub const EXIT_CONFIG: u8 = 78;
/// Anything else (network, disk).
pub const EXIT_FAILURE: u8 = 1;

pub fn run(cli: Cli) -> ExitCode {
    let (result, failure_code) = match cli.command {
        Command::Classify(args) => (classify(args), EXIT_USAGE),
        Command::Run(c) => (load_config(&c).and_then(|cfg| daemon::run(cfg).map(|()| ExitCode::SUCCESS)), EXIT_CONFIG),
        Command::Embed(c) => (embed(&c), EXIT_CONFIG),
        Command::CheckConfig(c) => (check_config(&c), EXIT_CONFIG),
        Command::Serve(a) => (serve(a), EXIT_USAGE),
        Command::Model(crate::cli::ModelCommand::Pull(a)) => (pull(a), EXIT_FAILURE),
        Command::Bench(a) => (bench(a), EXIT_USAGE),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            error!("{e:#}");
            ExitCode::from(failure_code)
        }
    }
}

fn load_config(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(match &arg.config {
        Some(path) => Config::load(path)?,
        None => {
            tracing::info!("no --config: running the embedded demo configuration (examples/siglipd.toml, paths relative to the current directory)");
            Config::embedded_default()?
        }
    })
}

fn embed(arg: &ConfigArg) -> anyhow::Result<ExitCode> {
    let config = load_config(arg)?;
    let bundle = Bundle::open(&config.model.bundle)?;
    let file = embeddings::embed(&config, &bundle, std::io::stderr().is_terminal())?;
    println!("wrote {} prompt embeddings to {}", file.prompts.len(), config.model.embeddings.display());
    Ok(ExitCode::SUCCESS)
}

fn serve(a: crate::cli::ServeArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(&a.model)?;
    let limits = crate::http::Limits {
        max_upload_bytes: a.max_upload_mib.max(1) << 20,
        max_labels: a.max_labels.max(1),
        ..Default::default()
    };
    crate::http::check_bind(&a.bind, a.token.as_deref())?;
    anyhow::ensure!(
        bundle.has_text(),
        "model bundle {} has no text tower: the page needs one to score typed labels",
        bundle.dir.display()
    );
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
        let [p] = a.precision[..] else { anyhow::bail!("--one needs exactly one --precision") };
        let threads = a.threads.first().copied().unwrap_or(1);
        let m = bench::measure_one(&a.model, p, threads, a.runs)?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(ExitCode::SUCCESS);
    }
    let precisions = if a.precision.is_empty() { bundle.precisions(crate::model::Tower::Vision) } else { a.precision };
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
            std::fs::write(&path, serde_json::to_string_pretty(&choice)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
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
    anyhow::ensure!(
        bundle.has_text(),
        "model bundle {} has no text tower, so it cannot score free-text labels",
        args.model.display()
    );
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

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &results)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &results, engine.vision.precision.as_str())?;
    }
    out.flush()?;
    if failed > 0 {
        error!("{failed} of {} images could not be classified", names.len());
        return Ok(ExitCode::from(EXIT_PARTIAL));
    }
    Ok(ExitCode::SUCCESS)
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

/// Resolves on SIGINT or SIGTERM (the async part of every long-running command).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
}
