//! Criterion benches of the per-frame pipeline. The model benches need the base-size
//! random-weight bundle (not committed, ~1 GB):
//!
//!     .venv/bin/python tools/export_model.py --random base --seed 0 --out models/random-base
//!
//! then `cargo bench` (or `SIGLIPD_BENCH_MODEL=<bundle dir> cargo bench` for another bundle,
//! e.g. the real SigLIP from `siglipd model pull`). Without a bundle the model benches are
//! skipped with a message; decode/resize/score benches always run.
//! Bench names carry their parameters: `vision/fp32/threads=2`, `score/labels=1000`.
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use image::{Rgb, RgbImage};
use siglipd::bench::{cores, set_threads};
use siglipd::classify::Calibration;
use siglipd::daemon::label_score;
use siglipd::embeddings::LabelEmbedding;
use siglipd::model::{preprocess, Bundle, Precision, Preprocessor, TextEncoder, TextTokenizer, Tower, VisionEncoder};
use siglipd::sink::{DropQueue, Output};

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SIGLIPD_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/random-base"));
    if dir.join("siglip.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipping model benches: no bundle at {} (make it with `.venv/bin/python tools/export_model.py --random base --seed 0 --out models/random-base`)",
            dir.display()
        );
        None
    }
}

/// A camera-like test picture (gradients and texture, so JPEG has real work to do).
fn jpeg(w: u32, h: u32, quality: u8) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 24;
        Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) as u8 / 2).wrapping_add(n as u8 / 8)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img).unwrap();
    out
}

fn unit(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v: Vec<f32> = (0..dim).map(|_| rng.f32() - 0.5).collect();
    siglipd::classify::l2_normalize(&mut v);
    v
}

fn preprocess_benches(c: &mut Criterion) {
    let pre =
        Preprocessor::new(&Bundle::open(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")).unwrap().manifest);
    let mut pixels = vec![0f32; pre.tensor_len()];
    let mut g = c.benchmark_group("preprocess");
    for (name, w, h, q) in [("jpeg_1920x1080", 1920, 1080, 90), ("mjpeg_640x480", 640, 480, 80)] {
        let bytes = jpeg(w, h, q);
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| preprocess::decode(black_box(&bytes), "bench", u64::MAX).unwrap())
        });
        let img = preprocess::decode(&bytes, "bench", u64::MAX).unwrap();
        g.bench_function(BenchmarkId::new("resize_normalize", name), |b| b.iter(|| pre.pixels_into(black_box(&img), &mut pixels)));
        g.bench_function(BenchmarkId::new("decode_resize_normalize", name), |b| {
            b.iter(|| {
                let img = preprocess::decode(black_box(&bytes), "bench", u64::MAX).unwrap();
                pre.pixels_into(&img, &mut pixels)
            })
        });
    }
    g.finish();
}

fn score_benches(c: &mut Criterion) {
    let cal = Calibration::from_log_scale(4.7, -16.5);
    let img = unit(768, 1);
    let mut g = c.benchmark_group("score");
    for n in [10usize, 1000] {
        let labels: Vec<LabelEmbedding> =
            (0..n).map(|i| LabelEmbedding { positive: unit(768, 100 + i as u64), negatives: vec![] }).collect();
        let mut scores = vec![0f32; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("labels", n), |b| {
            b.iter(|| {
                for (s, l) in scores.iter_mut().zip(&labels) {
                    *s = label_score(&cal, black_box(&img), l);
                }
            })
        });
    }
    g.finish();
}

fn model_benches(c: &mut Criterion) {
    let Some(dir) = model_dir() else { return };
    let bundle = Bundle::open(&dir).unwrap();
    let pre = Preprocessor::new(&bundle.manifest);
    let frame = jpeg(640, 480, 80);
    let img = preprocess::decode(&frame, "bench", u64::MAX).unwrap();
    let pixels = pre.pixels(&img);
    let cores = cores();
    let threads: Vec<usize> = if cores > 1 { vec![1, cores] } else { vec![1] };

    let mut g = c.benchmark_group("vision");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    for p in bundle.precisions(Tower::Vision) {
        for &t in &threads {
            set_threads(t);
            let mut v = VisionEncoder::load(&bundle, p).unwrap();
            g.bench_function(BenchmarkId::new(p.as_str(), format!("threads={t}")), |b| {
                b.iter(|| v.embed(black_box(&pixels)).unwrap())
            });
        }
    }
    g.finish();

    if bundle.has_text() {
        let m = &bundle.manifest;
        let tok = TextTokenizer::from_file(
            &bundle.tokenizer_file().unwrap(),
            m.text_preprocessing.clone(),
            m.max_text_length,
            m.pad_id,
            m.eos_id,
        )
        .unwrap();
        let ids = tok.encode("This is a photo of a parked car.").unwrap();
        let mut g = c.benchmark_group("text");
        g.sample_size(10);
        set_threads(cores);
        for p in bundle.precisions(Tower::Text) {
            let mut t = TextEncoder::load(&bundle, p).unwrap();
            g.bench_function(BenchmarkId::new(p.as_str(), "per_label"), |b| b.iter(|| t.embed(black_box(&ids)).unwrap()));
        }
        g.finish();
    }

    // one camera frame end to end: MJPEG bytes → pixels → embedding → 10 label scores → the
    // non-blocking hand-off to the MQTT publisher
    let cal = bundle.calibration();
    let labels: Vec<LabelEmbedding> =
        (0..10).map(|i| LabelEmbedding { positive: unit(bundle.manifest.embed_dim, 7 + i), negatives: vec![] }).collect();
    let queue = Arc::new(DropQueue::new(100));
    let mut g = c.benchmark_group("frame");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    set_threads(cores);
    let precision = if bundle.precisions(Tower::Vision).contains(&Precision::Fp32) { Precision::Fp32 } else { Precision::Int8 };
    let mut v = VisionEncoder::load(&bundle, precision).unwrap();
    let mut buf = vec![0f32; pre.tensor_len()];
    let mut scores = vec![0f32; labels.len()];
    g.bench_function(BenchmarkId::new("end_to_end", format!("mjpeg_640x480/{precision}/threads={cores}/labels=10")), |b| {
        b.iter(|| {
            let img = preprocess::decode(black_box(&frame), "bench", u64::MAX).unwrap();
            pre.pixels_into(&img, &mut buf);
            let emb = v.embed(&buf).unwrap();
            for (s, l) in scores.iter_mut().zip(&labels) {
                *s = label_score(&cal, &emb, l);
            }
            let state = siglipd::sink::StateMsg {
                ts: 0.0,
                top: vec![],
                scores: scores.iter().enumerate().map(|(i, s)| (i.to_string(), *s)).collect(),
                raw: Default::default(),
                calibrated: Default::default(),
                infer_ms: 0.0,
            };
            queue.push(Output::State { camera: "bench".into(), state: std::sync::Arc::new(state) });
            while queue.pop().is_some() {}
        })
    });
    g.finish();
}

/// What recording the score history adds to the inference thread per frame: one push per
/// label under the camera's lock, rings already full (the steady state), 10 labels.
fn history_benches(c: &mut Criterion) {
    use siglipd::history::{LabelHistory, Point};
    let mut labels: Vec<LabelHistory> = (0..10).map(|_| LabelHistory::default()).collect();
    let mut t = 0.0;
    for _ in 0..(siglipd::history::RECENT * 3) {
        t += 0.1;
        for h in &mut labels {
            h.push(Point { t, raw: 0.3, smoothed: 0.3, on: false, n: 1 });
        }
    }
    let lock = std::sync::Mutex::new(labels);
    c.bench_function("history/push_10_labels", |b| {
        b.iter(|| {
            t += 0.1;
            let mut h = lock.lock().unwrap();
            for (i, l) in h.iter_mut().enumerate() {
                l.push(Point { t, raw: black_box(0.01 * i as f32), smoothed: 0.3, on: i == 3, n: 1 });
            }
        })
    });
}

criterion_group!(benches, preprocess_benches, score_benches, model_benches, history_benches);
criterion_main!(benches);
