//! Images per second on all cores, two ways: one plan whose matmuls use every thread (what the
//! daemon does today: lowest latency per frame), against one single-threaded execution state per
//! core on a shared plan ([`VisionEncoder::fork`]: frames in flight side by side, weights held
//! once). Tells whether a second core is better spent inside an image or beside it.
//!
//! ```text
//! cargo run --release --example throughput -- <bundle> [images per worker=6] [precision=fp32] [workers=cores]
//! ```
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context};
use siglipd::model::{Bundle, PrecisionChoice, VisionEncoder};
use tract_linalg::multithread::{multithread_tract_scope, Executor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        bail!("usage: throughput <bundle> [images per worker=6] [precision=fp32] [workers=cores]");
    };
    let n: usize = args.get(1).map(|s| s.parse().context("images")).unwrap_or(Ok(6))?;
    let precision = match PrecisionChoice::from_str(args.get(2).map(String::as_str).unwrap_or("fp32")).map_err(anyhow::Error::msg)? {
        PrecisionChoice::Fixed(p) => p,
        PrecisionChoice::Auto => bail!("name a precision, not auto"),
    };
    let workers: usize = args.get(3).map(|s| s.parse().context("workers")).unwrap_or(Ok(siglipd::bench::cores()))?;
    if n == 0 || workers == 0 {
        bail!("images and workers must be at least 1");
    }
    let bundle = Bundle::open(&PathBuf::from(dir))?;
    let pixels = siglipd::bench::timing_input(bundle.manifest.image_size as usize);
    siglipd::bench::set_threads(1);
    let mut first = VisionEncoder::load(&bundle, precision)?;
    let reference = first.embed(&pixels)?;

    // a: one state, matmuls on `workers` threads
    siglipd::bench::set_threads(workers);
    first.embed(&pixels)?; // warm-up with the pool
    let t = Instant::now();
    for _ in 0..n * workers {
        first.embed(&pixels)?;
    }
    let inside = (n * workers) as f64 / t.elapsed().as_secs_f64();
    let latency_inside = 1e3 / inside; // one image at a time

    // b: `workers` single-threaded states on the shared plan, one OS thread each
    let mut forks = vec![first];
    for _ in 1..workers {
        let f = forks[0].fork()?;
        forks.push(f);
    }
    let t = Instant::now();
    let results: Vec<anyhow::Result<(f64, f32)>> = std::thread::scope(|s| {
        let handles: Vec<_> = forks
            .iter_mut()
            .map(|v| {
                let (pixels, reference) = (&pixels, &reference);
                s.spawn(move || {
                    multithread_tract_scope(Executor::SingleThread, || -> anyhow::Result<(f64, f32)> {
                        let e = v.embed(pixels)?; // warm-up of this state
                        let t = Instant::now();
                        for _ in 0..n {
                            v.embed(pixels)?;
                        }
                        let cos = e.iter().zip(reference).map(|(a, b)| a * b).sum::<f32>();
                        Ok((t.elapsed().as_secs_f64() * 1e3 / n as f64, cos))
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker panicked")).collect()
    });
    let wall = t.elapsed().as_secs_f64();
    let mut latency_beside = 0f64;
    for r in results {
        let (ms, cos) = r?;
        latency_beside = latency_beside.max(ms);
        if cos < 0.99999 {
            bail!("a forked state embedded differently (cosine {cos})");
        }
    }
    // each worker warmed up inside `wall` once: count those images too
    let beside = (n * workers + workers) as f64 / wall;
    println!("bundle {dir} ({precision}), {workers} workers, {n} images each, cpu: {}", siglipd::bench::cpu_name());
    println!("one plan, {workers} threads in each matmul: {inside:.2} images/s, {latency_inside:.0} ms per image");
    println!("{workers} single-threaded states side by side: {beside:.2} images/s, {latency_beside:.0} ms per image (slowest worker)");
    println!("ratio beside / inside: {:.2}", beside / inside);
    Ok(())
}
