//! `siglipd model pull` against a local server in the Hugging Face hub's URL layout
//! (`/<repo>/resolve/<revision>/<file>`, `x-repo-commit`, `x-linked-etag` = sha256, Range):
//! an interrupted download resumes, a corrupted one is refused, `logit_scale`/`logit_bias` are
//! read by byte range from a checkpoint behind a redirect, and the bundle classifies exactly
//! like the bundle made by tools/export_model.py from the same weights.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Default)]
struct Hub {
    /// "<repo>/<file>" → content
    files: HashMap<String, Vec<u8>>,
    /// files to cut off after this many bytes, once
    cut_once: Mutex<HashMap<String, usize>>,
    /// files whose advertised sha256 is wrong
    bad_etag: Vec<String>,
    /// requests seen: (path, range header)
    log: Mutex<Vec<(String, String)>>,
    full_gets: AtomicUsize,
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, _rev, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = format!("{org}/{name}/{file}");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    hub.log.lock().unwrap().push((key.clone(), range.clone()));
    // the checkpoint lives "on a CDN": redirect like the hub does for LFS files
    if key.ends_with(".safetensors") && !headers.contains_key("x-cdn") {
        return (StatusCode::FOUND, [(header::LOCATION, format!("/cdn/{org}/{name}/{file}"))]).into_response();
    }
    serve_file(&hub, &key, &range)
}

async fn cdn(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, file)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = format!("{org}/{name}/{file}");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    hub.log.lock().unwrap().push((format!("cdn:{key}"), range.clone()));
    serve_file(&hub, &key, &range)
}

fn serve_file(hub: &Hub, key: &str, range: &str) -> Response {
    let Some(data) = hub.files.get(key) else {
        return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")], "Entry not found").into_response();
    };
    let mut sha = hex::encode(Sha256::digest(data));
    if hub.bad_etag.iter().any(|b| b == key) {
        sha = hex::encode(Sha256::digest(b"something else"));
    }
    let size = data.len();
    let (start, end) = match range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) {
        Some((a, b)) => (a.parse::<usize>().unwrap(), if b.is_empty() { size - 1 } else { b.parse::<usize>().unwrap().min(size - 1) }),
        None => (0, size - 1),
    };
    if start == 0 && end == size - 1 {
        hub.full_gets.fetch_add(1, Ordering::Relaxed);
    }
    let body = data[start..=end].to_vec();
    let mut h = HeaderMap::new();
    h.insert("x-repo-commit", COMMIT.parse().unwrap());
    h.insert("x-linked-etag", format!("\"{sha}\"").parse().unwrap());
    h.insert("x-linked-size", size.to_string().parse().unwrap());
    h.insert(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}").parse().unwrap());
    h.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
    let status = if range.is_empty() { StatusCode::OK } else { StatusCode::PARTIAL_CONTENT };
    // a connection dropped mid-file (once): the client must resume with a Range request
    let cut = hub.cut_once.lock().unwrap().get(key).copied();
    if let Some(cut) = cut {
        if body.len() > cut {
            hub.cut_once.lock().unwrap().remove(key);
            let first = body[..cut].to_vec();
            // the first part reaches the client, then the connection dies
            let stream = futures_util::stream::unfold(Some(first), |part| async move {
                match part {
                    Some(bytes) => Some((Ok::<_, std::io::Error>(bytes), None)),
                    None => {
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        Some((Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut")), None))
                    }
                }
            });
            h.insert(header::CONTENT_LENGTH, body.len().to_string().parse().unwrap());
            return (status, h, Body::from_stream(stream)).into_response();
        }
    }
    (status, h, body).into_response()
}

fn start_hub(hub: Hub) -> (SocketAddr, Arc<Hub>) {
    let hub = Arc::new(hub);
    let app = Router::new()
        .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
        .route("/cdn/{org}/{name}/{*file}", get(cdn))
        .with_state(hub.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (addr, hub)
}

/// The committed tiny model in the transformers.js repo layout, plus its checkpoint. The vision
/// tower is torch's graph as written (tests/fixtures/tiny-torch-graph), like transformers.js's.
fn fixture_hub() -> Hub {
    let tiny = fixtures().join("tiny");
    let ckpt = fixtures().join("tiny-checkpoint");
    let mut files = HashMap::new();
    let mut put = |repo: &str, file: &str, from: PathBuf| {
        files.insert(format!("{repo}/{file}"), std::fs::read(from).unwrap());
    };
    let onnx = "test/siglip-tiny-onnx";
    put(onnx, "config.json", ckpt.join("config.json"));
    put(onnx, "preprocessor_config.json", ckpt.join("preprocessor_config.json"));
    put(onnx, "tokenizer.json", tiny.join("tokenizer.json"));
    put(onnx, "onnx/vision_model.onnx", fixtures().join("tiny-torch-graph/vision_fp32.onnx"));
    put(onnx, "onnx/vision_model_quantized.onnx", tiny.join("vision_int8.onnx"));
    put(onnx, "onnx/text_model.onnx", tiny.join("text_fp32.onnx"));
    // no onnx/text_model_quantized.onnx: optional files may be absent
    put("test/siglip-tiny", "model.safetensors", ckpt.join("model.safetensors"));
    Hub { files, ..Default::default() }
}

fn pull(addr: SocketAddr, dest: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_siglipd"))
        .args(["model", "pull", "--repo", "test/siglip-tiny-onnx", "--checkpoint", "test/siglip-tiny", "--endpoint"])
        .arg(format!("http://{addr}"))
        .arg("--dest")
        .arg(dest)
        .env_remove("HF_TOKEN")
        .output()
        .unwrap()
}

fn classify(model: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_siglipd"))
        .args(["classify", "--json", "--precision", "fp32", "--labels", "cat, rocket, a cup of coffee", "--model"])
        .arg(model)
        .arg(fixtures().join("images/chelsea.png"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn pull_resumes_checks_and_builds_a_working_bundle() {
    let hub = fixture_hub();
    hub.cut_once.lock().unwrap().insert("test/siglip-tiny-onnx/onnx/vision_model.onnx".into(), 100_000);
    let (addr, hub) = start_hub(hub);
    let dest = tempfile::tempdir().unwrap();
    let bundle = dest.path().join("bundle");
    let o = pull(addr, &bundle);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "pull failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("vision fp32: loads in") && stdout.contains("vision int8: loads in"), "{stdout}");

    // resumed: after the cut, the vision model was asked for again from byte 100000 on
    let log = hub.log.lock().unwrap().clone();
    assert!(log.iter().any(|(k, r)| k.ends_with("vision_model.onnx") && r == "bytes=100000-"), "no resumed range request in {log:?}");
    // the calibration came by small ranges through the redirect, never the whole checkpoint
    let ckpt: Vec<_> = log.iter().filter(|(k, _)| k.starts_with("cdn:")).collect();
    assert_eq!(ckpt.len(), 4, "{ckpt:?}"); // length, header, logit_scale, logit_bias
    assert!(ckpt.iter().all(|(_, r)| r.starts_with("bytes=") && !r.ends_with('-')), "{ckpt:?}");

    // the manifest agrees with the one tools/export_model.py wrote from the same checkpoint
    let ours: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bundle.join("siglip.json")).unwrap()).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny/siglip.json")).unwrap()).unwrap();
    for key in
        ["logit_scale", "logit_bias", "embed_dim", "image_size", "image_mean", "image_std", "max_text_length", "pad_id", "eos_id"]
    {
        // floats as the loader reads them (f32): the exporter writes f64 digits, pull the f32
        let as_f32 = |v: &serde_json::Value| v.as_f64().map(|x| x as f32);
        if ours[key].is_f64() || reference[key].is_f64() {
            assert_eq!(as_f32(&ours[key]), as_f32(&reference[key]), "{key}");
        } else {
            assert_eq!(ours[key], reference[key], "{key}");
        }
    }
    assert_eq!(ours["vision"]["output"], "image_embeds");
    assert!(ours["text"]["files"].get("int8").is_none(), "text int8 was absent on the hub");
    assert!(ours["source"].as_str().unwrap().contains(COMMIT), "{}", ours["source"]);
    assert!(!bundle.join(".hub-cache").exists(), "cache left behind");

    // torch's graph was shaped for tract as the exporter shapes it, and the manifest says so
    assert_eq!(ours["vision"]["graph_shape"]["fp32"], reference["vision"]["graph_shape"]["fp32"]);
    assert_eq!(ours["vision"]["graph_shape"]["fp32"], serde_json::json!(["patch-embedding-matmul", "mlp-split-2"]));
    let shaped = std::fs::read(bundle.join("vision_fp32.onnx")).unwrap();
    assert_eq!(ours["sha256"]["vision_fp32.onnx"], format!("{:x}", Sha256::digest(&shaped)));
    assert_ne!(shaped, std::fs::read(fixtures().join("tiny-torch-graph/vision_fp32.onnx")).unwrap());

    // and it scores like the exported bundle
    let a = classify(&bundle);
    let b = classify(&fixtures().join("tiny"));
    assert_scores_close(&a[0]["scores"], &b[0]["scores"]);
}

/// Same labels, probabilities within 1e-6 (two writers of the same graph may order its nodes
/// differently; tract's sums stay the same up to rounding).
fn assert_scores_close(a: &serde_json::Value, b: &serde_json::Value) {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["label"], y["label"]);
        let (p, q) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
        assert!((p - q).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn pull_keeps_a_graph_already_shaped() {
    let mut hub = fixture_hub();
    let exported = std::fs::read(fixtures().join("tiny/vision_fp32.onnx")).unwrap();
    hub.files.insert("test/siglip-tiny-onnx/onnx/vision_model.onnx".into(), exported.clone());
    let (addr, _hub) = start_hub(hub);
    let dest = tempfile::tempdir().unwrap();
    let o = pull(addr, &dest.path().join("b"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kept = std::fs::read(dest.path().join("b/vision_fp32.onnx")).unwrap();
    assert!(kept == exported, "the shaped graph was rewritten again ({} bytes, was {})", kept.len(), exported.len());
    let man: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dest.path().join("b/siglip.json")).unwrap()).unwrap();
    assert!(man["vision"].get("graph_shape").is_none_or(|g| g.as_object().is_some_and(|g| g.is_empty())), "{man}");
}

#[test]
fn pull_refuses_a_corrupted_download_and_names_missing_files() {
    let mut hub = fixture_hub();
    hub.bad_etag.push("test/siglip-tiny-onnx/onnx/text_model.onnx".into());
    let (addr, _hub) = start_hub(hub);
    let dest = tempfile::tempdir().unwrap();
    let o = pull(addr, &dest.path().join("b"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("onnx/text_model.onnx") && err.contains("checksum mismatch"), "{err}");
    assert!(!dest.path().join("b/siglip.json").exists());

    // a repo without the required files: the error names the file and the repo
    let mut hub = fixture_hub();
    hub.files.remove("test/siglip-tiny-onnx/onnx/vision_model.onnx");
    let (addr, _hub) = start_hub(hub);
    let o = pull(addr, &dest.path().join("c"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot download onnx/vision_model.onnx from test/siglip-tiny-onnx"), "{err}");
}
