//! The `siglipd classify` contract, run as a user runs it: output shape, exit codes, and
//! clear errors for bad input.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn siglipd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siglipd")).args(args).output().expect("run siglipd")
}

fn img(name: &str) -> String {
    fixtures().join("images").join(name).display().to_string()
}

fn tiny() -> String {
    fixtures().join("tiny").display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the tiny bundle that a test may damage.
fn bundle_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join("tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("siglip.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn json_output_is_one_document_sorted_with_labels_as_given() {
    let (a, b) = (img("chelsea.png"), img("rocket.jpg"));
    let o = siglipd(&["-q", "classify", "--model", &tiny(), "--labels", " cat ,A Rocket!", "--json", &a, &b]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["image"], a.as_str());
    assert_eq!(arr[1]["image"], b.as_str());
    for r in arr {
        let scores = r["scores"].as_array().unwrap();
        let labels: Vec<&str> = scores.iter().map(|s| s["label"].as_str().unwrap()).collect();
        assert!(labels.contains(&"cat") && labels.contains(&"A Rocket!"), "{labels:?}");
        let s: Vec<f64> = scores.iter().map(|s| s["score"].as_f64().unwrap()).collect();
        assert!(s.windows(2).all(|w| w[0] >= w[1]), "sorted descending: {s:?}");
        assert!(s.iter().all(|x| (0.0..=1.0).contains(x)));
        assert_eq!(r.as_object().unwrap().len(), 2, "only image and scores: {r}");
    }
}

#[test]
fn table_output_ranks_labels() {
    let o = siglipd(&["classify", "--model", &tiny(), "--labels", "cat, rocket", &img("coffee.png")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.starts_with(&img("coffee.png")), "{out}");
    assert!(out.contains(" cat\n") && out.contains(" rocket\n"), "{out}");
}

#[test]
fn one_bad_image_among_several_is_reported_and_the_rest_classified() {
    let (good, bad) = (img("chelsea.png"), img("truncated.jpg"));
    let o = siglipd(&["classify", "--model", &tiny(), "--labels", "cat", "--json", &bad, &good]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["image"], good.as_str());
    let err = stderr(&o);
    assert!(err.contains("truncated.jpg") && err.contains("1 of 2 images"), "{err}");
}

#[test]
fn bad_labels_and_template_are_usage_errors() {
    let i = img("chelsea.png");
    for (labels, template, needle) in
        [("cat,,dog", "{}", "label 2 is blank"), ("  ", "{}", "no labels given"), ("cat", "a photo", "no `{}` placeholder")]
    {
        let o = siglipd(&["classify", "--model", &tiny(), "--labels", labels, "--template", template, &i]);
        assert_eq!(o.status.code(), Some(2), "{labels:?}");
        assert!(stderr(&o).contains(needle), "{labels:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn missing_or_corrupt_model_names_the_file() {
    let i = img("chelsea.png");
    // a bundle a retry cannot fix: EX_CONFIG, as for every command (README exit codes)
    let o = siglipd(&["classify", "--model", "/nonexistent/bundle", "--labels", "cat", &i]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("no model bundle at /nonexistent/bundle"), "{}", stderr(&o));

    let dir = bundle_copy();
    let d = dir.path().display().to_string();
    // truncated download
    let onnx = dir.path().join("vision_fp32.onnx");
    let bytes = std::fs::read(&onnx).unwrap();
    std::fs::write(&onnx, &bytes[..bytes.len() / 2]).unwrap();
    let o = siglipd(&["classify", "--model", &d, "--labels", "cat", "--precision", "fp32", &i]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("vision_fp32.onnx is corrupt: sha256"), "{}", stderr(&o));

    std::fs::remove_file(&onnx).unwrap();
    let o = siglipd(&["classify", "--model", &d, "--labels", "cat", &i]);
    assert!(stderr(&o).contains("vision_fp32.onnx is missing"), "{}", stderr(&o));

    std::fs::write(dir.path().join("siglip.json"), "{not json").unwrap();
    let o = siglipd(&["classify", "--model", &d, "--labels", "cat", &i]);
    assert!(stderr(&o).contains("invalid manifest") && stderr(&o).contains("siglip.json"), "{}", stderr(&o));
}

#[test]
fn manifest_that_disagrees_with_the_onnx_is_caught() {
    let i = img("chelsea.png");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 4] = [
        ("embed_dim is 48", |v| v["embed_dim"] = 48.into()),
        ("input is named \"pixel_values\", the manifest says \"pixels\"", |v| v["vision"]["input"] = "pixels".into()),
        ("no output named \"embeds\"", |v| v["vision"]["output"] = "embeds".into()),
        ("has shape", |v| v["image_size"] = 256.into()),
    ];
    for (needle, edit) in cases {
        let dir = bundle_copy();
        edit_manifest(dir.path(), edit);
        let d = dir.path().display().to_string();
        let o = siglipd(&["classify", "--model", &d, "--labels", "cat", "--precision", "fp32", &i]);
        assert_eq!(o.status.code(), Some(78), "{needle}");
        let err = stderr(&o);
        assert!(err.contains("disagrees with the manifest") && err.contains(needle), "{needle}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn unknown_precision_and_missing_int8_are_clear() {
    let i = img("chelsea.png");
    let o = siglipd(&["classify", "--model", &tiny(), "--labels", "cat", "--precision", "bf16", &i]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown precision"), "{}", stderr(&o));

    let dir = bundle_copy();
    edit_manifest(dir.path(), |v| {
        v["vision"]["files"].as_object_mut().unwrap().remove("int8");
    });
    let d = dir.path().display().to_string();
    let o = siglipd(&["classify", "--model", &d, "--labels", "cat", "--precision", "int8", &i]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("no int8 vision model (it has: fp32, fp16)"), "{}", stderr(&o));

    // fp16 is made from the fp32 file: without one there is no fp16 either
    let dir = bundle_copy();
    edit_manifest(dir.path(), |v| {
        v["vision"]["files"].as_object_mut().unwrap().remove("fp32");
    });
    let d = dir.path().display().to_string();
    let o = siglipd(&["classify", "--model", &d, "--labels", "cat", "--precision", "fp16", &i]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("no fp16 vision model (it has: int8)"), "{}", stderr(&o));
}

#[test]
fn decompression_bomb_is_refused_before_decoding() {
    let o = siglipd(&["classify", "--model", &tiny(), "--labels", "cat", "--max-pixels", "1000", &img("chelsea.png")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("over the limit of 1000 pixels"), "{}", stderr(&o));
}

/// `siglipd classify … | head`: the reader closing the pipe is not an error.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    let imgs: Vec<String> = (0..3).map(|_| img("chelsea.png")).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_siglipd"))
        .args(["classify", "--model", &tiny(), "--labels", "cat, dog, rocket"])
        .args(&imgs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `head -0`
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");
}

#[test]
fn quoted_labels_may_contain_commas() {
    let o =
        siglipd(&["classify", "--json", "--model", &tiny(), "--labels", r#""a red, white and blue flag", cat"#, &img("chelsea.png")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut labels: Vec<&str> = v[0]["scores"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    labels.sort();
    assert_eq!(labels, vec!["a red, white and blue flag", "cat"]);
}
