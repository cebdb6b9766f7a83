//! `siglipd examples …`: the command-line side of teaching by example (folders of images,
//! review, moving examples between machines, recomputing them after a model change).
//!
//! Every command resolves the configured model as `run` does (same bundle, same precision
//! choice), because examples are bound to the sha256 of the vision tower that embedded them;
//! only the commands that embed images load it.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{
    ConfigArg, ExamplesAddArgs, ExamplesCommand, ExamplesExportArgs, ExamplesImportArgs, ExamplesListArgs, ExamplesRemoveArgs,
    UsageError,
};
use crate::config::{CameraConfig, Config, LabelConfig, ScoreKind};
use crate::embeddings::LabelEmbedding;
use crate::engine::Engine;
use crate::examples::{ExampleStore, ExportFile};
use crate::state::{StateDir, StateError};
use crate::teach::{example_from_image, fit_label, LabelText};

pub fn run(cmd: ExamplesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ExamplesCommand::Add(a) => add(a),
        ExamplesCommand::List(a) => list(a),
        ExamplesCommand::Remove(a) => remove(a),
        ExamplesCommand::Export(a) => export(a),
        ExamplesCommand::Import(a) => import(a),
        ExamplesCommand::Reembed(c) => reembed(&c),
    }
}

/// The config, its label embeddings, the examples in its state directory, and the model when
/// the command embeds images (reading commands do not load the vision tower: beside a running
/// daemon on a Pi that would be a second copy in RAM).
struct Loaded {
    config: Config,
    engine: Option<Engine>,
    calibration: crate::classify::Calibration,
    labels: Vec<Vec<LabelEmbedding>>,
    store: ExampleStore,
}

impl Loaded {
    fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("commands that change examples load the model")
    }
}

/// How a command opens the state directory: to read beside a running daemon, or to change it
/// (then `alternative` says what to do while the daemon runs).
enum Access {
    Read,
    Change { alternative: &'static str },
}

fn load(arg: &ConfigArg, access: Access) -> anyhow::Result<Loaded> {
    let config = arg.load()?;
    let state = match access {
        Access::Read => StateDir::open_read_only(&config.state_dir),
        Access::Change { alternative } => StateDir::open(&config.state_dir).map_err(|e| match e {
            // exit 1: the same command works once the daemon is stopped
            e @ StateError::InUse { .. } => anyhow::Error::from(e)
                .context(format!("stop the daemon first (e.g. `systemctl stop siglipd`); while it runs, {alternative}")),
            e => e.into(),
        })?,
    };
    if state.is_read_only() {
        let (bundle, labels) = crate::daemon::prepare_labels(&config)?;
        let (precision, _) = crate::model::auto::resolve(&bundle, crate::model::Tower::Vision, config.model.precision)?;
        let store = ExampleStore::load(Some(state), &crate::engine::vision_sha256_of(&bundle, precision));
        return Ok(Loaded { config, engine: None, calibration: bundle.calibration(), labels, store });
    }
    let (engine, labels) = crate::daemon::prepare(&config)?;
    let store = ExampleStore::load(Some(state), &engine.vision_sha256());
    Ok(Loaded { config, calibration: engine.calibration, engine: Some(engine), labels, store })
}

fn camera<'a>(config: &'a Config, id: &str) -> Result<(usize, &'a CameraConfig), UsageError> {
    config.cameras.iter().enumerate().find(|(_, c)| c.id == id).ok_or_else(|| {
        let ids: Vec<&str> = config.cameras.iter().map(|c| c.id.as_str()).collect();
        UsageError(format!("no camera {id:?} in {} (cameras: {})", config.origin, ids.join(", ")))
    })
}

fn label<'a>(cam: &'a CameraConfig, name: &str) -> Result<(usize, &'a LabelConfig), UsageError> {
    cam.labels.iter().enumerate().find(|(_, l)| l.name == name || l.slug == name).ok_or_else(|| {
        let names: Vec<&str> = cam.labels.iter().map(|l| l.name.as_str()).collect();
        UsageError(format!("camera {:?} has no label {name:?} (labels: {})", cam.id, names.join(", ")))
    })
}

/// Image files named on the command line: files as given, folders' image files sorted.
fn image_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    const EXT: [&str; 7] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "jfif"];
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file() && f.extension().is_some_and(|x| EXT.contains(&x.to_string_lossy().to_ascii_lowercase().as_str()))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                eprintln!("warning: folder {} has no image files", p.display());
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn add(a: ExamplesAddArgs) -> anyhow::Result<ExitCode> {
    let files = image_files(&a.paths)?;
    let mut l = load(
        &a.config,
        Access::Change { alternative: "mark examples on its web page or with POST /api/cameras/<id>/examples/image" },
    )?;
    let (ci, cam) = camera(&l.config, &a.camera)?;
    let (li, lab) = label(cam, &a.label)?;
    let (cam_id, slug, name, crops) = (cam.id.clone(), lab.slug.clone(), lab.name.clone(), cam.crops.clone());
    let text = l.labels[ci][li].positive.clone();
    if let Some(e) = l.store.stale() {
        return Err(anyhow::Error::from(e).context("examples cannot be added"));
    }
    let max_pixels = l.engine().pre.max_pixels;
    let (mut added, mut failed) = (0, 0);
    for f in &files {
        // with crop regions: the region where the label scores best, as for a marked frame
        // only a label without prompts picks its region by its fit (`best_region`): fitted
        // again per file, as the examples added so far change it
        let fit = (text.is_empty() && crops.len() > 1)
            .then(|| l.store.list(&cam_id, &slug).ok())
            .flatten()
            .and_then(|ex| fit_label(&ex, LabelText { text: Some(&text), cal: l.calibration }).ok().flatten());
        let one = crate::model::preprocess::decode_file(f, max_pixels).map_err(anyhow::Error::from).and_then(|img| {
            let (emb, jpeg) = example_from_image(l.engine.as_mut().expect("loaded to add"), &img, &crops, &text, fit.as_ref())?;
            if let Some(same) = jpeg.as_deref().and_then(|j| l.store.with_image(&cam_id, &slug, &crate::examples::sha256_hex(j))) {
                let sign = |p: bool| if p { "yes" } else { "no" };
                anyhow::ensure!(
                    same.positive == a.yes,
                    "the same picture is already example {} marked {}: remove it first",
                    same.id,
                    sign(same.positive)
                );
                return Ok(None);
            }
            Ok(Some(l.store.add(&cam_id, &slug, a.yes, emb, crate::host::unix_now(), jpeg.as_deref())?))
        });
        match one {
            Ok(Some(id)) => {
                added += 1;
                println!("{id}\t{}\t{}", if a.yes { "yes" } else { "no" }, f.display());
            }
            Ok(None) => eprintln!("{}: already an example (skipped)", f.display()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", f.display());
            }
        }
    }
    let list = l.store.list(&cam_id, &slug)?;
    let yes = list.iter().filter(|e| e.positive).count();
    eprintln!("added {added} example(s) of {name:?} on camera {cam_id:?}: it has {yes} yes and {} no", list.len() - yes);
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// One label in `examples list --json`.
#[derive(Serialize)]
struct Listed {
    camera: String,
    label: String,
    score: ScoreKind,
    positives: usize,
    negatives: usize,
    /// A model is fitted (enough of each kind).
    fitted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    examples: Vec<ListedExample>,
}

#[derive(Serialize)]
struct ListedExample {
    id: u64,
    positive: bool,
    created: f64,
}

fn list(a: ExamplesListArgs) -> anyhow::Result<ExitCode> {
    let l = load(&a.config, Access::Read)?;
    if let Some(e) = l.store.stale() {
        eprintln!("warning: {e}");
    }
    let mut rows = Vec::new();
    for (ci, cam) in l.config.cameras.iter().enumerate() {
        if a.only.camera.as_ref().is_some_and(|c| *c != cam.id) {
            continue;
        }
        for (li, lab) in cam.labels.iter().enumerate() {
            if a.only.label.as_ref().is_some_and(|n| *n != lab.name && *n != lab.slug) {
                continue;
            }
            let ex = l.store.view(&cam.id, &lab.slug);
            let text = LabelText { text: Some(&l.labels[ci][li].positive), cal: l.calibration };
            let positives = ex.iter().filter(|e| e.positive).count();
            rows.push(Listed {
                camera: cam.id.clone(),
                label: lab.name.clone(),
                score: lab.score,
                positives,
                negatives: ex.len() - positives,
                fitted: l.store.stale().is_none() && fit_label(&ex, text)?.is_some(),
                examples: if a.ids {
                    ex.iter().map(|e| ListedExample { id: e.id, positive: e.positive, created: e.created }).collect()
                } else {
                    vec![]
                },
            });
        }
    }
    for (camera, label, n) in l.store.unclaimed(|c, lab| l.config.has_label(c, lab)) {
        eprintln!("warning: {n} example(s) of camera {camera:?}, label {label:?} belong to no configured label (renamed or removed?): export them with --camera {camera} --label {label}, then import with --label");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16} {:<24} {:<11} {:>4} {:>4}  fitted", "camera", "label", "score", "yes", "no");
    for r in &rows {
        println!(
            "{:<16} {:<24} {:<11} {:>4} {:>4}  {}",
            r.camera,
            r.label,
            r.score.as_str(),
            r.positives,
            r.negatives,
            if r.fitted { "yes" } else { "no" }
        );
        for e in &r.examples {
            println!("    {:>6}  {:<3}  {}", e.id, if e.positive { "yes" } else { "no" }, e.created as u64);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(a: ExamplesRemoveArgs) -> anyhow::Result<ExitCode> {
    let mut l = load(
        &a.config,
        Access::Change { alternative: "delete examples on its web page or with DELETE /api/cameras/<id>/examples/<n>" },
    )?;
    // a camera no longer configured may still hold examples: removing them is allowed
    let mut missing = 0;
    for id in &a.ids {
        if l.store.remove(&a.camera, *id)? {
            println!("removed {id}");
        } else {
            missing += 1;
            eprintln!("error: camera {:?} has no example {id}", a.camera);
        }
    }
    Ok(if missing > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn export(a: ExamplesExportArgs) -> anyhow::Result<ExitCode> {
    let l = load(&a.config, Access::Read)?;
    let kept = |c: Option<&str>, n: Option<&str>| {
        l.store
            .all()
            .any(|(sc, sl, _)| c.is_none_or(|c| c == sc) && n.is_none_or(|n| n == sl || crate::ids::slug(n).as_deref() == Some(sl)))
    };
    match (&a.only.camera, &a.only.label) {
        // examples of a renamed label or a removed camera can still be exported
        (c, n) if (c.is_some() || n.is_some()) && kept(c.as_deref(), n.as_deref()) => {}
        (Some(c), n) => {
            let (_, cam) = camera(&l.config, c)?;
            if let Some(n) = n {
                label(cam, n)?;
            }
        }
        (None, Some(n)) if !l.config.cameras.iter().any(|c| label(c, n).is_ok()) => {
            return Err(UsageError(format!("no camera in {} has a label {n:?}", l.config.origin)).into());
        }
        _ => {}
    }
    // a label given by display name matches its slug in the store
    let slug = a.only.label.as_deref().map(|n| crate::ids::slug(n).unwrap_or_default());
    let file = l.store.export(|c, s| {
        a.only.camera.as_ref().is_none_or(|want| want == c)
            && a.only.label.as_ref().is_none_or(|n| n == s || slug.as_deref() == Some(s))
    })?;
    file.write(&a.out)?;
    eprintln!("wrote {} example(s) to {}", file.examples.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn import(a: ExamplesImportArgs) -> anyhow::Result<ExitCode> {
    let (file, _) = ExportFile::read(&a.file)?;
    let mut l = load(&a.config, Access::Change { alternative: "name the file in the label's `examples` key and reload (SIGHUP)" })?;
    let target_camera = a.camera.as_deref().map(|c| camera(&l.config, c).map(|(_, c)| c.clone())).transpose()?;
    let target_label = match (&target_camera, &a.label) {
        (Some(cam), Some(n)) => Some(label(cam, n)?.1.slug.clone()),
        (None, Some(n)) => Some(crate::ids::slug(n).unwrap_or_default()),
        _ => None,
    };
    let config = l.config.clone();
    let place = |x: &crate::examples::Exported| -> Option<(String, String)> {
        let cam = target_camera.as_ref().map_or(x.camera.as_str(), |c| c.id.as_str());
        let lab = target_label.as_deref().unwrap_or(&x.label);
        config.has_label(cam, lab).then(|| (cam.to_string(), lab.to_string()))
    };
    let placed = file.examples.iter().filter(|x| place(x).is_some()).count();
    if placed == 0 && !file.examples.is_empty() {
        return Err(UsageError(format!(
            "none of the {} example(s) in {} names a camera and label configured in {}: choose them with --camera and --label",
            file.examples.len(),
            a.file.display(),
            config.origin
        ))
        .into());
    }
    if placed < file.examples.len() {
        eprintln!(
            "warning: {} of {} example(s) name a camera or label not in {}: left out (use --camera and --label to choose)",
            file.examples.len() - placed,
            file.examples.len(),
            config.origin
        );
    }
    let engine = l.engine.as_mut().expect("loaded to import");
    let mut reembed = |jpeg: &[u8]| engine.embed_encoded(jpeg, "an imported example's image");
    let r = l.store.import(&file, place, Some(&mut reembed))?;
    eprintln!(
        "imported {} example(s) from {} ({} already there, {} re-embedded with this model, {} without an image to re-embed)",
        r.added,
        a.file.display(),
        r.duplicates,
        r.reembedded,
        r.without_image
    );
    Ok(ExitCode::SUCCESS)
}

fn reembed(arg: &ConfigArg) -> anyhow::Result<ExitCode> {
    let mut l = load(arg, Access::Change { alternative: "nothing can recompute them (the daemon holds its model)" })?;
    if l.store.stale().is_none() {
        eprintln!("the examples already belong to the configured model: nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    let engine = l.engine.as_mut().expect("loaded to re-embed");
    let mut f = |jpeg: &[u8]| engine.embed_encoded(jpeg, "an example's stored image");
    let (done, dropped) = l.store.reembed(&mut f)?;
    eprintln!("recomputed {done} example(s) with the configured model; {dropped} had no stored image and were removed");
    Ok(ExitCode::SUCCESS)
}
