//! Marked examples ("this is ⟨label⟩" / "this is not ⟨label⟩"): the store in the state
//! directory and the one-file export/import format.
//!
//! An example is the image embedding of a frame (or of the crop region where the label scored
//! best), per camera and label slug, in `examples.json`, with the image it was computed from
//! as a JPEG (at most [`IMAGE_SIDE`] px, `examples/<id>.jpg`) for review and re-embedding.
//! Embeddings belong to one vision model: the file records the sha256 of the vision tower that
//! made them; with another model they are not used until `siglipd examples reembed` recomputes
//! them from the stored images (approximately: the JPEG is not the original frame).
//!
//! What the examples mean for a label is `teach`'s business.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::{StateDir, StateError};

pub const FILE: &str = "examples.json";
const FORMAT: &str = "siglipd-examples";
const VERSION: u32 = 1;
/// `siglipd examples export` files.
pub const EXPORT_FORMAT: &str = "siglipd-examples-export";
const EXPORT_VERSION: u32 = 1;
/// Examples kept per camera and label: marking is by hand, this is far beyond that.
pub const MAX_PER_LABEL: usize = 500;
/// Longest side of a stored example image: enough to re-embed at SigLIP's 224 px input.
pub const IMAGE_SIDE: u32 = 384;

#[derive(Debug, Error)]
pub enum ExampleError {
    #[error("the examples in {path} were recorded with another vision model (sha256 {theirs}, running {ours}) and are not used: recompute them from their stored images with `siglipd examples reembed` (daemon stopped), or delete them (`siglipd examples remove`, DELETE /api/cameras/<id>/examples/<n>, or the whole file) and mark frames again")]
    OtherModel { path: PathBuf, theirs: String, ours: String },
    #[error("no state directory: examples cannot be kept (see the log for why; set [state] dir)")]
    NoStateDir,
    #[error("camera {camera:?} has {count} examples of {label:?}, at most {MAX_PER_LABEL}")]
    Full { camera: String, label: String, count: usize },
    #[error(transparent)]
    Write(#[from] StateError),
    #[error("cannot write example image {path}: {cause}")]
    Image { path: PathBuf, cause: std::io::Error },
    #[error("cannot read examples file {path}: {cause}")]
    ReadExport { path: PathBuf, cause: std::io::Error },
    #[error("examples file {path} is not a siglipd examples export: {problem}")]
    BadExport { path: PathBuf, problem: String },
    #[error("examples file {path} has no examples of {label:?} but several other labels ({has}): export the one this label needs (`siglipd examples export --label …`)")]
    OtherLabels { path: PathBuf, label: String, has: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: u64,
    pub positive: bool,
    /// Unix seconds.
    pub created: f64,
    /// Unit-length image embedding.
    pub embedding: Vec<f32>,
    /// sha256 of the stored image: the same picture is recognised after a re-embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    vision_sha256: String,
    next_id: u64,
    /// camera → label slug → examples
    cameras: BTreeMap<String, BTreeMap<String, Vec<Example>>>,
    /// `<camera>/<label slug>` → sha256 of the examples file last imported for it from the
    /// config (`examples = …`): a file is imported again only when it changes, so examples
    /// deleted on the device stay deleted.
    #[serde(default)]
    imported: BTreeMap<String, String>,
}

/// One example in an export file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exported {
    pub camera: String,
    /// Label slug (`ids::slug` of its display name).
    pub label: String,
    pub positive: bool,
    pub created: f64,
    pub embedding: Vec<f32>,
    /// The example's image, JPEG, base64: lets another model re-embed it.
    #[serde(default)]
    pub image_jpeg: Option<String>,
}

/// `siglipd examples export`: examples with their images, one JSON file.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportFile {
    pub format: String,
    pub version: u32,
    pub vision_sha256: String,
    pub examples: Vec<Exported>,
}

impl ExportFile {
    /// Reads and checks an export file (format and version).
    pub fn read(path: &Path) -> Result<(Self, String), ExampleError> {
        let bytes = std::fs::read(path).map_err(|cause| ExampleError::ReadExport { path: path.into(), cause })?;
        let bad = |problem: String| ExampleError::BadExport { path: path.into(), problem };
        let f: ExportFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if f.format != EXPORT_FORMAT || f.version != EXPORT_VERSION {
            return Err(bad(format!(
                "it is {} version {}, this siglipd reads {EXPORT_FORMAT} version {EXPORT_VERSION}",
                f.format, f.version
            )));
        }
        Ok((f, sha256_hex(&bytes)))
    }

    /// Which of this file's examples go to the label with topic id `label`: its own (`Ok(false)`),
    /// or all of them when the file holds one other label only (`Ok(true)`: exported as "our
    /// cat", named by a label "kitty"). Several other labels and none of this one: an error.
    /// `path` is where the file was read from, for the error.
    pub fn examples_for(&self, path: &Path, label: &str) -> Result<bool, ExampleError> {
        let labels: std::collections::BTreeSet<&str> = self.examples.iter().map(|x| x.label.as_str()).collect();
        if labels.contains(label) || labels.is_empty() {
            return Ok(false);
        }
        if labels.len() == 1 {
            return Ok(true);
        }
        let has = labels.into_iter().collect::<Vec<_>>().join(", ");
        Err(ExampleError::OtherLabels { path: path.into(), label: label.into(), has })
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<(), ExampleError> {
        let bytes = serde_json::to_vec(self).map_err(|cause| StateError::Encode { name: path.display().to_string(), cause })?;
        Ok(crate::state::write_atomic(path, &bytes)?)
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// How an import went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub added: usize,
    /// Already in the store (same sign and embedding).
    pub duplicates: usize,
    /// Recorded with another model and without an image to re-embed: left out.
    pub without_image: usize,
    /// Recomputed from their images with the running model.
    pub reembedded: usize,
}

/// Recomputes an embedding from an example's JPEG with the running vision model.
pub type Reembed<'a> = &'a mut dyn FnMut(&[u8]) -> anyhow::Result<Vec<f32>>;

/// The examples of every camera, loaded once and written through on every change.
pub struct ExampleStore {
    state: Option<StateDir>,
    stored: Stored,
    /// sha256 of the running vision tower.
    running: String,
    /// The stored examples were made by another model (its sha256) and are not used.
    stale: Option<String>,
}

impl ExampleStore {
    /// Loads `examples.json` from `state` for the vision model with `vision_sha256`.
    pub fn load(state: Option<StateDir>, vision_sha256: &str) -> Self {
        let stored: Stored = state.as_ref().and_then(|s| s.read(FILE, FORMAT, VERSION)).unwrap_or_default();
        let any = stored.cameras.values().any(|c| c.values().any(|v| !v.is_empty()));
        let stale = (any && stored.vision_sha256 != vision_sha256).then(|| stored.vision_sha256.clone());
        let mut s = Self { state, stored, running: vision_sha256.into(), stale };
        if s.stale.is_none() {
            s.stored.vision_sha256 = vision_sha256.into();
        }
        s
    }

    /// Why the examples cannot be used now (another model), if so.
    pub fn stale(&self) -> Option<ExampleError> {
        self.stale.as_ref().map(|theirs| ExampleError::OtherModel {
            path: self.state.as_ref().map(|s| s.path().join(FILE)).unwrap_or_default(),
            theirs: theirs.clone(),
            ours: self.running.clone(),
        })
    }

    fn usable(&self) -> Result<&StateDir, ExampleError> {
        if let Some(e) = self.stale() {
            return Err(e);
        }
        self.state.as_ref().ok_or(ExampleError::NoStateDir)
    }

    /// The examples of one label (empty when none), or why they cannot be used (another
    /// model made them: not for fitting).
    pub fn list(&self, camera: &str, label: &str) -> Result<Vec<Example>, ExampleError> {
        self.usable()?;
        Ok(self.view(camera, label))
    }

    /// The examples of one label whoever made them: to review, delete or export.
    pub fn view(&self, camera: &str, label: &str) -> Vec<Example> {
        self.stored.cameras.get(camera).and_then(|c| c.get(label)).cloned().unwrap_or_default()
    }

    /// Every (camera, label slug, examples) with at least one example, usable or not.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str, &[Example])> {
        self.stored.cameras.iter().flat_map(|(c, labels)| {
            labels.iter().filter(|(_, v)| !v.is_empty()).map(move |(l, v)| (c.as_str(), l.as_str(), v.as_slice()))
        })
    }

    /// (camera, label slug, count) of kept examples that no configured label uses (a label
    /// renamed or a camera removed): kept, listed and exportable, never fitted.
    pub fn unclaimed(&self, configured: impl Fn(&str, &str) -> bool) -> Vec<(String, String, usize)> {
        self.all().filter(|(c, l, _)| !configured(c, l)).map(|(c, l, v)| (c.to_string(), l.to_string(), v.len())).collect()
    }

    /// Adds an example (and its JPEG image, if any); returns its id.
    pub fn add(
        &mut self,
        camera: &str,
        label: &str,
        positive: bool,
        embedding: Vec<f32>,
        created: f64,
        image: Option<&[u8]>,
    ) -> Result<u64, ExampleError> {
        let id = self.insert(camera, label, Example { id: 0, positive, created, embedding, image_sha256: None }, image)?;
        self.save()?;
        Ok(id)
    }

    /// Adds without writing `examples.json` (callers adding many save once).
    fn insert(&mut self, camera: &str, label: &str, mut e: Example, image: Option<&[u8]>) -> Result<u64, ExampleError> {
        let state = self.usable()?.clone();
        let count = self.stored.cameras.get(camera).and_then(|c| c.get(label)).map_or(0, Vec::len);
        if count >= MAX_PER_LABEL {
            return Err(ExampleError::Full { camera: camera.into(), label: label.into(), count });
        }
        e.id = self.stored.next_id;
        self.stored.next_id += 1;
        if let Some(jpeg) = image {
            e.image_sha256 = Some(sha256_hex(jpeg));
            let dir = state.path().join("examples");
            let path = dir.join(format!("{}.jpg", e.id));
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, jpeg))
                .map_err(|cause| ExampleError::Image { path: path.clone(), cause })?;
        }
        let id = e.id;
        self.stored.cameras.entry(camera.into()).or_default().entry(label.into()).or_default().push(e);
        Ok(id)
    }

    fn save(&self) -> Result<(), ExampleError> {
        let state = self.state.as_ref().ok_or(ExampleError::NoStateDir)?;
        Ok(state.write(FILE, FORMAT, VERSION, &self.stored)?)
    }

    /// Removes an example (also one another model made); false if there is none with that id.
    pub fn remove(&mut self, camera: &str, id: u64) -> Result<bool, ExampleError> {
        let state = self.state.clone().ok_or(ExampleError::NoStateDir)?;
        let Some(cam) = self.stored.cameras.get_mut(camera) else { return Ok(false) };
        let before: usize = cam.values().map(Vec::len).sum();
        cam.values_mut().for_each(|v| v.retain(|e| e.id != id));
        if cam.values().map(Vec::len).sum::<usize>() == before {
            return Ok(false);
        }
        let _ = std::fs::remove_file(state.path().join("examples").join(format!("{id}.jpg")));
        self.save()?;
        Ok(true)
    }

    /// The example of this label whose stored image has this sha256, if any.
    pub fn with_image(&self, camera: &str, label: &str, sha256: &str) -> Option<Example> {
        self.view(camera, label).into_iter().find(|e| e.image_sha256.as_deref() == Some(sha256))
    }

    /// Whether an example has a stored image.
    pub fn has_image(&self, id: u64) -> bool {
        self.state.as_ref().is_some_and(|s| s.path().join("examples").join(format!("{id}.jpg")).is_file())
    }

    /// The stored image of an example, if it has one.
    pub fn thumbnail(&self, id: u64) -> Option<Vec<u8>> {
        std::fs::read(self.state.as_ref()?.path().join("examples").join(format!("{id}.jpg"))).ok()
    }

    /// The examples of the cameras/labels `keep` accepts, with their images, as one file
    /// (bound to the model that made them, so an importer re-embeds what is not its own).
    pub fn export(&self, keep: impl Fn(&str, &str) -> bool) -> Result<ExportFile, ExampleError> {
        self.state.as_ref().ok_or(ExampleError::NoStateDir)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let examples = self
            .all()
            .filter(|(c, l, _)| keep(c, l))
            .flat_map(|(c, l, v)| v.iter().map(move |e| (c, l, e)))
            .map(|(c, l, e)| Exported {
                camera: c.into(),
                label: l.into(),
                positive: e.positive,
                created: e.created,
                embedding: e.embedding.clone(),
                image_jpeg: self.thumbnail(e.id).map(|j| b64.encode(j)),
            })
            .collect();
        Ok(ExportFile {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            vision_sha256: self.stored.vision_sha256.clone(),
            examples,
        })
    }

    /// Imports the examples of `file` that `place` maps to a (camera, label slug) here.
    /// Examples of another model are re-embedded from their images with `reembed` (left out
    /// without one); an example already stored (same sign and embedding) is skipped.
    pub fn import(
        &mut self,
        file: &ExportFile,
        place: impl Fn(&Exported) -> Option<(String, String)>,
        mut reembed: Option<Reembed>,
    ) -> Result<Imported, ExampleError> {
        self.usable()?;
        let same_model = file.vision_sha256 == self.running;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut report = Imported::default();
        for x in &file.examples {
            let Some((camera, label)) = place(x) else { continue };
            let image = x.image_jpeg.as_deref().and_then(|s| b64.decode(s).ok());
            let embedding = match (same_model, &image, reembed.as_mut()) {
                (true, _, _) => x.embedding.clone(),
                (false, Some(jpeg), Some(f)) => {
                    report.reembedded += 1;
                    f(jpeg).map_err(|e| ExampleError::BadExport { path: "(import)".into(), problem: format!("{e:#}") })?
                }
                _ => {
                    report.without_image += 1;
                    continue;
                }
            };
            // the same example: same sign and the same embedding, or the same picture (which a
            // re-embedding on the exporting side leaves alone)
            let sha = image.as_deref().map(sha256_hex);
            let exists = self
                .view(&camera, &label)
                .iter()
                .any(|e| e.positive == x.positive && (e.embedding == embedding || (sha.is_some() && e.image_sha256 == sha)));
            if exists {
                report.duplicates += 1;
                continue;
            }
            let e = Example { id: 0, positive: x.positive, created: x.created, embedding, image_sha256: None };
            self.insert(&camera, &label, e, image.as_deref())?;
            report.added += 1;
        }
        self.save()?;
        Ok(report)
    }

    /// Imports the examples file a label names in the config, unless this exact file (by
    /// sha256) was imported for it before. Entries for the label's slug are taken whatever
    /// camera they were collected on. Returns None when there was nothing new to do.
    pub fn import_once(
        &mut self,
        path: &Path,
        camera: &str,
        label: &str,
        reembed: Option<Reembed>,
    ) -> Result<Option<Imported>, ExampleError> {
        self.usable()?;
        let (file, sha) = ExportFile::read(path)?;
        let key = format!("{camera}/{label}");
        if self.stored.imported.get(&key) == Some(&sha) {
            return Ok(None);
        }
        let take_all = file.examples_for(path, label)?;
        let report =
            self.import(&file, |x| (take_all || x.label == label).then(|| (camera.to_string(), label.to_string())), reembed)?;
        self.stored.imported.insert(key, sha);
        self.save()?;
        Ok(Some(report))
    }

    /// Recomputes every example's embedding from its stored image with the running model
    /// (after a model change); examples without an image are dropped. Returns (recomputed,
    /// dropped).
    pub fn reembed(&mut self, reembed: Reembed) -> Result<(usize, usize), ExampleError> {
        let state = self.state.clone().ok_or(ExampleError::NoStateDir)?;
        let (mut done, mut dropped) = (0, 0);
        let ids: Vec<(String, String, u64)> =
            self.all().flat_map(|(c, l, v)| v.iter().map(move |e| (c.to_string(), l.to_string(), e.id))).collect();
        for (c, l, id) in ids {
            let list = self.stored.cameras.get_mut(&c).and_then(|m| m.get_mut(&l)).expect("listed above");
            let image = std::fs::read(state.path().join("examples").join(format!("{id}.jpg"))).ok();
            match image {
                Some(jpeg) => {
                    let embedding = reembed(&jpeg)
                        .map_err(|e| ExampleError::BadExport { path: format!("example {id}").into(), problem: format!("{e:#}") })?;
                    if let Some(e) = list.iter_mut().find(|e| e.id == id) {
                        e.embedding = embedding;
                    }
                    done += 1;
                }
                None => {
                    list.retain(|e| e.id != id);
                    dropped += 1;
                }
            }
        }
        self.stored.vision_sha256 = self.running.clone();
        self.stale = None;
        self.save()?;
        Ok((done, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::classify::l2_normalize(&mut v);
        v
    }

    #[test]
    fn examples_persist_and_belong_to_one_model() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(d.path()).unwrap();
        let mut s = ExampleStore::load(Some(state.clone()), "aaa");
        let id = s.add("door", "cat", true, unit(&[1.0, 0.0]), 10.0, Some(b"\xFF\xD8jpeg")).unwrap();
        s.add("door", "cat", false, unit(&[0.0, 1.0]), 11.0, None).unwrap();
        assert_eq!(s.thumbnail(id).as_deref(), Some(&b"\xFF\xD8jpeg"[..]));
        // survives a restart with the same model
        let again = ExampleStore::load(Some(state.clone()), "aaa");
        assert_eq!(again.list("door", "cat").unwrap().len(), 2);
        // another model: refused with what to do, nothing silently mixed
        let other = ExampleStore::load(Some(state.clone()), "bbb");
        let e = other.list("door", "cat").unwrap_err().to_string();
        assert!(e.contains("another vision model") && e.contains("mark frames again"), "{e}");
        // deleting
        let mut again = again;
        assert!(again.remove("door", id).unwrap());
        assert!(!again.remove("door", id).unwrap());
        assert_eq!(again.list("door", "cat").unwrap().len(), 1);
        assert!(again.thumbnail(id).is_none());
    }

    #[test]
    fn export_import_round_trip_skips_duplicates_and_reembeds_other_models() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut desk = ExampleStore::load(Some(StateDir::open(d1.path()).unwrap()), "aaa");
        desk.add("desk", "our_car", true, unit(&[1.0, 0.0]), 1.0, Some(b"\xFF\xD8one")).unwrap();
        desk.add("desk", "our_car", false, unit(&[0.0, 1.0]), 2.0, None).unwrap();
        desk.add("desk", "cat", true, unit(&[1.0, 1.0]), 3.0, None).unwrap();
        let file = desk.export(|_, l| l == "our_car").unwrap();
        assert_eq!(file.examples.len(), 2);
        let path = d1.path().join("car.examples.json");
        file.write(&path).unwrap();

        // same model on the Pi: embeddings taken as they are, under the Pi's camera
        let mut pi = ExampleStore::load(Some(StateDir::open(d2.path()).unwrap()), "aaa");
        let r = pi.import_once(&path, "drive", "our_car", None).unwrap().unwrap();
        assert_eq!((r.added, r.duplicates), (2, 0));
        assert!(pi.import_once(&path, "drive", "our_car", None).unwrap().is_none(), "the same file is imported once");
        let (again, _) = ExportFile::read(&path).unwrap();
        let r = pi.import(&again, |x| Some(("drive".into(), x.label.clone())), None).unwrap();
        assert_eq!((r.added, r.duplicates), (0, 2));
        let listed = pi.list("drive", "our_car").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(pi.thumbnail(listed[0].id).as_deref(), Some(&b"\xFF\xD8one"[..]), "the image travels with it");

        // another model: re-embedded from the image; without an image, left out
        let d3 = tempfile::tempdir().unwrap();
        let mut other = ExampleStore::load(Some(StateDir::open(d3.path()).unwrap()), "bbb");
        let mut calls = 0;
        let mut f = |jpeg: &[u8]| -> anyhow::Result<Vec<f32>> {
            calls += 1;
            assert_eq!(jpeg, b"\xFF\xD8one");
            Ok(unit(&[0.6, 0.8]))
        };
        let r = other.import(&again, |x| Some(("drive".into(), x.label.clone())), Some(&mut f)).unwrap();
        assert_eq!((r.added, r.reembedded, r.without_image), (1, 1, 1));
        assert_eq!(calls, 1);
        assert_eq!(other.list("drive", "our_car").unwrap()[0].embedding, unit(&[0.6, 0.8]));
    }

    #[test]
    fn a_model_change_is_recomputed_from_the_stored_images() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(d.path()).unwrap();
        let mut s = ExampleStore::load(Some(state.clone()), "aaa");
        s.add("door", "cat", true, unit(&[1.0, 0.0]), 1.0, Some(b"img")).unwrap();
        s.add("door", "cat", false, unit(&[0.0, 1.0]), 2.0, None).unwrap();
        let mut s = ExampleStore::load(Some(state.clone()), "bbb");
        assert!(s.stale().unwrap().to_string().contains("siglipd examples reembed"));
        let (done, dropped) = s.reembed(&mut |_| Ok(unit(&[0.0, 0.0, 1.0]))).unwrap();
        assert_eq!((done, dropped), (1, 1));
        let s = ExampleStore::load(Some(state), "bbb");
        assert!(s.stale().is_none());
        assert_eq!(s.list("door", "cat").unwrap()[0].embedding, unit(&[0.0, 0.0, 1.0]));
    }

    #[test]
    fn a_config_file_of_one_other_label_is_taken_and_pictures_are_not_imported_twice() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut desk = ExampleStore::load(Some(StateDir::open(d1.path()).unwrap()), "aaa");
        desk.add("desk", "our_cat", true, unit(&[1.0, 0.0]), 1.0, Some(b"cat")).unwrap();
        desk.add("desk", "our_cat", false, unit(&[0.0, 1.0]), 2.0, Some(b"dog")).unwrap();
        let path = d1.path().join("f.json");
        desk.export(|_, _| true).unwrap().write(&path).unwrap();
        // the label that names the file is called "kitty" here
        let mut pi = ExampleStore::load(Some(StateDir::open(d2.path()).unwrap()), "aaa");
        let r = pi.import_once(&path, "cam", "kitty", None).unwrap().unwrap();
        assert_eq!(r.added, 2);
        // the exporting side re-embedded (same pictures, new embeddings): nothing is added twice
        let (mut again, _) = ExportFile::read(&path).unwrap();
        again.examples.iter_mut().for_each(|x| x.embedding = unit(&[0.5, 0.5]));
        let r = pi.import(&again, |_| Some(("cam".into(), "kitty".into())), None).unwrap();
        assert_eq!((r.added, r.duplicates), (0, 2));
        // a file of several other labels is refused with what it has
        desk.add("desk", "car", true, unit(&[1.0, 1.0]), 3.0, None).unwrap();
        desk.export(|_, _| true).unwrap().write(&path).unwrap();
        let e = pi.import_once(&path, "cam", "kitty", None).unwrap_err().to_string();
        assert!(e.contains("car, our_cat"), "{e}");
    }
}
