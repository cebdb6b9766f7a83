//! Where loading a vision tower spends time and memory, and what tract's NNEF format would
//! save as a cache of the prepared graph (the measurement behind "Optimized-model cache" in
//! `docs/profile-int8.md`).
//!
//! ```text
//! cargo run --example load_stages -- onnx <bundle dir> [cache.nnef.tar]   # parse → declutter (→ write NNEF) → optimize
//! cargo run --example load_stages -- lean <bundle dir>                     # the same, parsed as siglipd does (model::onnx_read)
//! cargo run --example load_stages -- nnef <cache.nnef.tar> <image size>    # read NNEF → declutter → optimize
//! ```
//!
//! Prints each stage's time with `VmHWM` (peak) and `VmRSS` (now), then one run on a
//! `[1, 3, S, S]` input (S from the bundle's manifest). glibc's malloc is set for loading as
//! `VisionEncoder::load` sets it (`LoadingHeap`); `GLIBC_ADJUSTS=1` leaves glibc's defaults.
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_transformers::WithTractTransformers;

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: load_stages onnx|lean <bundle dir> [cache.nnef.tar] | nnef <cache.nnef.tar> <image size>";
    let (Some(mode), Some(path)) = (args.first(), args.get(1)) else {
        anyhow::bail!(usage);
    };
    let (file, size) = match mode.as_str() {
        "onnx" | "lean" => {
            let bundle = siglipd::model::Bundle::open(std::path::Path::new(path))?;
            let file = bundle.model_file(siglipd::model::Tower::Vision, siglipd::model::Precision::Fp32)?;
            (file, bundle.manifest.image_size as usize)
        }
        "nnef" => (path.into(), args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?),
        _ => anyhow::bail!(usage),
    };
    let shape = [1, 3, size, size];
    let nnef = tract_nnef::nnef().with_tract_transformers().with_tract_resource();
    // as VisionEncoder::load sets glibc's malloc; `GLIBC_ADJUSTS=1` leaves glibc's own behaviour
    let heap = std::env::var_os("GLIBC_ADJUSTS").is_none().then(siglipd::model::encoder::LoadingHeap::enter);
    let started = Instant::now();
    let stage = |name: &str, t: Instant| println!("{name:<10} {:>7.0} ms  {}", t.elapsed().as_secs_f64() * 1e3, memory());
    let model = if mode != "nnef" {
        let t = Instant::now();
        let m = match mode.as_str() {
            "lean" => siglipd::model::onnx_read::read_inference_model(&file)?.0,
            _ => tract_onnx::onnx().model_for_path(&file)?,
        };
        stage("parse", t);
        let t = Instant::now();
        let m = m.with_input_fact(0, f32::fact(shape).into())?.into_typed()?.into_decluttered()?;
        stage("declutter", t);
        if let Some(cache) = args.get(2) {
            let t = Instant::now();
            nnef.write_to_tar(&m, std::io::BufWriter::new(std::fs::File::create(cache)?))?;
            stage("write nnef", t);
        }
        m
    } else {
        let t = Instant::now();
        let m = nnef.model_for_path(&file)?;
        stage("read nnef", t);
        // the graph read back carries casts and axis moves around every constant
        let t = Instant::now();
        let m = m.into_decluttered()?;
        stage("declutter", t);
        m
    };
    let t = Instant::now();
    let plan = model.into_optimized()?.into_runnable()?;
    drop(heap);
    stage("optimize", t);
    println!("load total {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    plan.run(tvec!(Tensor::zero::<f32>(&shape)?.into()))?;
    stage("one run", t);
    Ok(())
}
