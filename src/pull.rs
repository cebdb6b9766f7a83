//! `siglipd model pull`: a ready SigLIP ONNX bundle from the Hugging Face hub (by default the
//! transformers.js exports in `Xenova/siglip-base-patch16-224`), turned into the same bundle
//! layout and `siglip.json` manifest that `tools/export_model.py` writes.
//!
//! Files come through `hf-hub` (resumable `.part` downloads, retries, progress bar) into a
//! cache inside the destination, are checked against the hub's sha256 (the LFS etag), then
//! linked under our names. The towers there carry no `logit_scale`/`logit_bias`: those two
//! scalars are read from the original checkpoint's `model.safetensors` with HTTP range
//! requests (8-byte header length, the JSON header, then 4 bytes each), not an 800 MB download.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use serde_json::Value;
use tracing::{info, warn};
use tract_onnx::prelude::Framework;

use crate::model;
use crate::model::bundle::{sha256_file, Manifest, TextPreprocessing, TowerSpec, MANIFEST};

pub const DEFAULT_REPO: &str = "Xenova/siglip-base-patch16-224";
pub const DEFAULT_CHECKPOINT: &str = "google/siglip-base-patch16-224";
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub repo: String,
    pub revision: String,
    /// Where `logit_scale` / `logit_bias` come from (a repo with `model.safetensors`).
    pub checkpoint: String,
    pub dest: PathBuf,
    pub endpoint: String,
    pub token: Option<String>,
    pub progress: bool,
    /// Skip the text tower and tokenizer (labels then come from an embeddings file made elsewhere).
    pub vision_only: bool,
}

/// (file in the hub repo, our name in the bundle, required)
fn wanted(vision_only: bool) -> Vec<(&'static str, &'static str, bool)> {
    let mut v = vec![
        ("config.json", "config.json", true),
        ("preprocessor_config.json", "preprocessor_config.json", true),
        ("onnx/vision_model.onnx", "vision_fp32.onnx", true),
        ("onnx/vision_model_quantized.onnx", "vision_int8.onnx", false),
    ];
    if !vision_only {
        v.extend([
            ("tokenizer.json", "tokenizer.json", true),
            ("onnx/text_model.onnx", "text_fp32.onnx", true),
            ("onnx/text_model_quantized.onnx", "text_int8.onnx", false),
        ]);
    }
    v
}

/// Downloads and assembles the bundle; returns its directory.
pub fn pull(o: &PullOptions) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&o.dest).with_context(|| format!("cannot create {}", o.dest.display()))?;
    let cache = o.dest.join(".hub-cache");
    let api = ApiBuilder::new()
        .with_endpoint(o.endpoint.trim_end_matches('/').to_string())
        .with_cache_dir(cache.clone())
        .with_token(o.token.clone())
        .with_progress(o.progress)
        .with_retries(3)
        .build()
        .context("cannot set up the hub client")?;
    let repo = api.repo(Repo::with_revision(o.repo.clone(), RepoType::Model, o.revision.clone()));
    let mut have = BTreeMap::new();
    for (remote, local, required) in wanted(o.vision_only) {
        info!(file = remote, repo = %o.repo, "downloading");
        let cached = match repo.get(remote) {
            Ok(p) => p,
            Err(e) if !required && is_not_found(&e) => {
                warn!(file = remote, "not in {}: skipped (optional)", o.repo);
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot download {remote} from {} ({})", o.repo, o.endpoint)),
        };
        let sha = verify_blob(&cached).with_context(|| format!("{remote} from {}", o.repo))?;
        let target = o.dest.join(local);
        link_or_copy(&cached, &target)?;
        have.insert(local, sha);
    }
    let commit = std::fs::read_dir(cache.join(format!("models--{}", o.repo.replace('/', "--"))).join("snapshots"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_default();

    let (logit_scale, logit_bias) =
        read_calibration(o).with_context(|| format!("cannot read logit_scale/logit_bias from {}/model.safetensors", o.checkpoint))?;
    let mut manifest = build_manifest(o, &commit, &have, logit_scale, logit_bias)?;
    shape_vision(&o.dest, &mut manifest)?;
    let path = o.dest.join(MANIFEST);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    // the linked files are the bundle now; the cache only held them for resuming
    let _ = std::fs::remove_dir_all(&cache);
    info!(dest = %o.dest.display(), "bundle ready");
    Ok(o.dest.clone())
}

/// transformers.js's vision tower is torch's graph as written: rewrites it into the shape tract
/// runs fastest ([`model::shape`], the same rewrites `tools/export_model.py` makes), after
/// checking on one input that tract's outputs agree; records them in `vision.graph_shape.fp32`.
/// A graph without the expected pattern, or whose outputs would change, is kept as published.
///
/// Peak memory: the graph (≈ 370 MB for base) beside one tract model, or beside its copy while
/// rewriting: 1.4 GB measured for base.
///
/// Errors: the file cannot be read as ONNX, or the shaped file cannot be written.
fn shape_vision(dest: &Path, manifest: &mut Manifest) -> anyhow::Result<()> {
    let Some(file) = manifest.vision.files.get("fp32").cloned() else { return Ok(()) };
    let path = dest.join(&file);
    let image_size = manifest.image_size as usize;
    let mut graph = tract_onnx::onnx().proto_model_for_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // run first, shape after: one copy of the graph in memory beside tract's model
    let before = match model::shape::probe_outputs(&graph, image_size) {
        Ok(before) => before,
        Err(e) => {
            // the check after pulling loads it the daemon's way and reports what is wrong
            warn!(file, error = %format!("{e:#}"), "vision graph kept as published: tract cannot run it on a probe input");
            return Ok(());
        }
    };
    let applied = model::shape::shape_vision_for_tract(&mut graph, image_size, manifest.embed_dim);
    if applied.is_empty() {
        info!(file, "vision graph kept as published (no rewrite applies)");
        return Ok(());
    }
    let after = match model::shape::probe_outputs(&graph, image_size) {
        Ok(after) => after,
        Err(e) => {
            warn!(file, error = %format!("{e:#}"), "vision graph kept as published: the shaped graph does not run");
            return Ok(());
        }
    };
    if !model::shape::outputs_agree(&before, &after) {
        warn!(file, ?applied, "vision graph kept as published: the shaped graph's outputs differ");
        return Ok(());
    }
    let bytes = prost::Message::encode_to_vec(&graph);
    drop(graph);
    // write_atomic renames over the hard link into the hub cache: the cached blob stays as downloaded
    crate::state::write_atomic(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    // hashed from the bytes just written, not read back: 370 MB for base
    manifest.sha256.insert(file.clone(), crate::examples::sha256_hex(&bytes));
    info!(file, ?applied, "vision graph shaped for tract");
    manifest.vision.graph_shape.insert("fp32".into(), applied);
    Ok(())
}

fn is_not_found(e: &hf_hub::api::sync::ApiError) -> bool {
    let s = e.to_string();
    s.contains("404") || s.contains("Not Found") || s.contains("EntryNotFound")
}

/// hf-hub stores each file as `blobs/<etag>`; for LFS files the etag is the sha256 of the
/// content, which we check (a truncated or corrupted resume must not become a bundle).
fn verify_blob(cached: &Path) -> anyhow::Result<String> {
    let blob = std::fs::canonicalize(cached).with_context(|| format!("cannot resolve {}", cached.display()))?;
    let etag = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let sha = sha256_file(&blob)?;
    if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) && sha != etag {
        {
            let _ = std::fs::remove_file(&blob);
            bail!("checksum mismatch: the hub says sha256 {etag}, the download has {sha} (removed; run again)");
        }
    }
    Ok(sha)
}

fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let from = std::fs::canonicalize(from)?;
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(&from, to).is_err() {
        std::fs::copy(&from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// One HTTP range of a file in a hub repo, following redirects by hand so the Range header
/// survives the hop to the storage host.
fn fetch_range(o: &PullOptions, repo: &str, file: &str, start: u64, len: u64) -> anyhow::Result<Vec<u8>> {
    ensure!(len > 0 && len <= 64 << 20, "refusing a range of {len} bytes");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut url = format!("{}/{repo}/resolve/{}/{file}", o.endpoint.trim_end_matches('/'), o.revision_for(repo));
    for _ in 0..5 {
        let mut req = agent.get(&url).header("Range", format!("bytes={}-{}", start, start + len - 1));
        if let (Some(t), true) = (&o.token, url.starts_with(o.endpoint.trim_end_matches('/'))) {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).context("redirect without Location")?;
            url = if loc.starts_with('/') {
                let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
                format!("{origin}{loc}")
            } else {
                loc.to_string()
            };
            continue;
        }
        ensure!(status == 206 || status == 200, "GET {url}: HTTP {status}");
        let mut body = Vec::new();
        resp.body_mut().as_reader().take(if status == 200 { start + len } else { len }).read_to_end(&mut body)?;
        if status == 200 {
            // the server ignored Range: skip to the slice (only acceptable for small offsets)
            ensure!(body.len() as u64 >= start + len, "GET {url}: short body");
            body = body[start as usize..].to_vec();
        }
        ensure!(body.len() as u64 == len, "GET {url}: expected {len} bytes, got {}", body.len());
        return Ok(body);
    }
    bail!("GET {url}: too many redirects")
}

impl PullOptions {
    fn revision_for(&self, repo: &str) -> &str {
        if repo == self.repo {
            &self.revision
        } else {
            "main"
        }
    }
}

/// `logit_scale` and `logit_bias` from the checkpoint's safetensors, by byte range.
fn read_calibration(o: &PullOptions) -> anyhow::Result<(f32, f32)> {
    let file = "model.safetensors";
    let n = u64::from_le_bytes(fetch_range(o, &o.checkpoint, file, 0, 8)?.try_into().expect("8 bytes"));
    ensure!(n > 0 && n < 100 << 20, "implausible safetensors header length {n}");
    let header: Value =
        serde_json::from_slice(&fetch_range(o, &o.checkpoint, file, 8, n)?).context("safetensors header is not JSON")?;
    let scalar = |name: &str| -> anyhow::Result<f32> {
        let t = header.get(name).with_context(|| format!("no tensor {name:?} in the checkpoint"))?;
        let dtype = t["dtype"].as_str().unwrap_or_default();
        let offs = t["data_offsets"].as_array().context("no data_offsets")?;
        let (a, b) = (offs[0].as_u64().unwrap_or(0), offs[1].as_u64().unwrap_or(0));
        let bytes = fetch_range(o, &o.checkpoint, file, 8 + n + a, b.saturating_sub(a))?;
        decode_scalar(dtype, &bytes).with_context(|| format!("tensor {name:?}"))
    };
    Ok((scalar("logit_scale")?, scalar("logit_bias")?))
}

fn decode_scalar(dtype: &str, b: &[u8]) -> anyhow::Result<f32> {
    Ok(match (dtype, b.len()) {
        ("F32", 4) => f32::from_le_bytes(b.try_into()?),
        ("F16", 2) => half_to_f32(u16::from_le_bytes(b.try_into()?)),
        ("BF16", 2) => f32::from_bits((u16::from_le_bytes(b.try_into()?) as u32) << 16),
        ("F64", 8) => f64::from_le_bytes(b.try_into()?) as f32,
        _ => bail!("expected one float, got dtype {dtype} with {} bytes", b.len()),
    })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 => f32::INFINITY,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Output names used by the exporters we know (optimum/transformers.js: `pooler_output`;
/// tools/export_model.py: `image_embeds`/`text_embeds`), read from the ONNX graph itself.
fn pick_output(path: &Path, preferred: &[&str]) -> anyhow::Result<(String, String)> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx().model_for_path(path).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let input = model.input_outlets()?.first().map(|o| model.node(o.node).name.clone()).context("no input")?;
    let outs: Vec<String> = model.output_outlets()?.iter().filter_map(|o| model.outlet_label(*o)).map(str::to_string).collect();
    let out = preferred
        .iter()
        .find(|p| outs.iter().any(|o| o == *p))
        .map(|s| s.to_string())
        .with_context(|| format!("{}: none of the outputs {outs:?} is a pooled embedding ({preferred:?})", path.display()))?;
    Ok((input, out))
}

/// transformers' `SiglipConfig` class defaults (`configuration_siglip.py`), and the image
/// processor's (`image_processing_siglip.py`). A hub `config.json` is saved as a diff against
/// them (`to_diff_dict`: google/siglip-base-patch16-224's has no sizes at all), so a key that is
/// absent means exactly this value to transformers — the same values the exporter gets from
/// transformers itself.
mod reference_defaults {
    pub const VISION_HIDDEN_SIZE: u64 = 768;
    pub const TEXT_MAX_POSITION_EMBEDDINGS: u64 = 64;
    pub const RESCALE_FACTOR: f64 = 1.0 / 255.0;
    /// PIL's BICUBIC
    pub const RESAMPLE: u64 = 3;
}

/// The id of `token` in a tokenizer.json (`added_tokens`, else the model vocabulary).
fn token_id(tokenizer_json: &Value, token: &str) -> Option<u32> {
    let added = tokenizer_json["added_tokens"].as_array()?.iter().find(|t| t["content"] == token).and_then(|t| t["id"].as_u64());
    let vocab = || match &tokenizer_json["model"]["vocab"] {
        // unigram: [[piece, score], ...]
        Value::Array(v) => v.iter().position(|p| p[0] == token).map(|i| i as u64),
        Value::Object(m) => m.get(token).and_then(Value::as_u64),
        _ => None,
    };
    added.or_else(vocab).and_then(|id| u32::try_from(id).ok())
}

fn build_manifest(
    o: &PullOptions,
    commit: &str,
    have: &BTreeMap<&str, String>,
    logit_scale: f32,
    logit_bias: f32,
) -> anyhow::Result<Manifest> {
    use reference_defaults as d;
    let read = |name: &str| -> anyhow::Result<Value> {
        let p = o.dest.join(name);
        serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?)
            .with_context(|| format!("{} is not JSON", p.display()))
    };
    let config = read("config.json")?;
    let pre = read("preprocessor_config.json")?;
    let vc = &config["vision_config"];
    let tc = &config["text_config"];
    let image_size = pre["size"]["height"].as_u64().or_else(|| vc["image_size"].as_u64()).context("no image size")?;
    ensure!(pre["size"]["width"].as_u64().is_none_or(|w| w == image_size), "non-square image size is not supported");
    let resample = match pre["resample"].as_u64().unwrap_or(d::RESAMPLE) {
        3 => "bicubic",
        2 => "bilinear",
        r => bail!("preprocessor_config.json: resample {r} is not supported"),
    };
    let triple = |key: &str| -> anyhow::Result<[f32; 3]> {
        serde_json::from_value(pre[key].clone()).with_context(|| format!("preprocessor_config.json: {key} is not three numbers"))
    };
    // SigLIP pads with `</s>` and ends with it (big_vision eos="sticky"): both ids are the
    // tokenizer's `</s>`, not text_config's CLIP-style bos/eos defaults (49406/49407)
    let (pad_id, eos_id) = if have.contains_key("tokenizer.json") {
        let tok = read("tokenizer.json")?;
        let id = token_id(&tok, "</s>").context("tokenizer.json has no </s> token")?;
        (id, id)
    } else {
        let id = tc["pad_token_id"].as_u64().map(|v| v as u32).unwrap_or(1);
        (id, id)
    };
    let tower = |prefix: &str, preferred: &[&str]| -> anyhow::Result<Option<TowerSpec>> {
        let fp32 = format!("{prefix}_fp32.onnx");
        if !have.contains_key(fp32.as_str()) {
            return Ok(None);
        }
        let (input, output) = pick_output(&o.dest.join(&fp32), preferred)?;
        let mut files = BTreeMap::from([("fp32".to_string(), fp32)]);
        let int8 = format!("{prefix}_int8.onnx");
        if have.contains_key(int8.as_str()) {
            files.insert("int8".into(), int8);
        }
        // transformers.js "quantized" = onnxruntime quantize_dynamic: MatMulInteger with
        // int8 activations; tract runs it with its int8 kernels (dot-product ones on ARMv8.2+)
        Ok(Some(TowerSpec { input, output, files, int8_form: Some("dynamic-int8".into()), graph_shape: BTreeMap::new() }))
    };
    let vision = tower("vision", &["image_embeds", "pooler_output"])?.context("no vision tower downloaded")?;
    let text = tower("text", &["text_embeds", "pooler_output"])?;
    let sha256 = have
        .iter()
        .filter(|(k, _)| k.ends_with(".onnx") || **k == "tokenizer.json")
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Ok(Manifest {
        format: "siglipd-bundle".into(),
        format_version: 1,
        model_type: Some("siglip".into()),
        source: format!(
            "hf:{}@{} + calibration from hf:{}",
            o.repo,
            if commit.is_empty() { &o.revision } else { commit },
            o.checkpoint
        ),
        created_by: Some("siglipd model pull".into()),
        image_size: u32::try_from(image_size).context("image size too large")?,
        image_mean: triple("image_mean")?,
        image_std: triple("image_std")?,
        rescale_factor: pre["rescale_factor"].as_f64().unwrap_or(d::RESCALE_FACTOR),
        resample: resample.into(),
        max_text_length: tc["max_position_embeddings"].as_u64().unwrap_or(d::TEXT_MAX_POSITION_EMBEDDINGS) as usize,
        pad_id,
        eos_id,
        text_preprocessing: TextPreprocessing { lowercase: true, strip_punctuation: true, collapse_whitespace: true },
        // SigLIP v1 has no image projection: the pooled vision output is hidden_size wide
        embed_dim: vc["hidden_size"].as_u64().unwrap_or(d::VISION_HIDDEN_SIZE) as usize,
        logit_scale,
        logit_bias,
        vision,
        text,
        tokenizer: (!o.vision_only).then(|| "tokenizer.json".to_string()),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_and_pad_come_from_the_tokenizer() {
        let added = serde_json::json!({"added_tokens": [{"id": 1, "content": "</s>"}, {"id": 2, "content": "<unk>"}]});
        assert_eq!(token_id(&added, "</s>"), Some(1));
        let unigram = serde_json::json!({"added_tokens": [], "model": {"vocab": [["<pad>", 0.0], ["</s>", 0.0]]}});
        assert_eq!(token_id(&unigram, "</s>"), Some(1));
        assert_eq!(token_id(&unigram, "<x>"), None);
    }

    #[test]
    fn scalars_decode_from_every_float_dtype() {
        assert_eq!(decode_scalar("F32", &4.7f32.to_le_bytes()).unwrap(), 4.7);
        assert_eq!(decode_scalar("F16", &0x4500u16.to_le_bytes()).unwrap(), 5.0);
        assert_eq!(decode_scalar("BF16", &(((-10f32).to_bits() >> 16) as u16).to_le_bytes()).unwrap(), -10.0);
        assert!(decode_scalar("I64", &[0; 8]).is_err());
        assert!(decode_scalar("F32", &[0; 8]).is_err());
    }
}
