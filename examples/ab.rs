//! A/B timing of two vision bundles in one process: loads both, then alternates single images
//! A, B, A, B … so that drift of the machine's speed hits both alike, and prints the median of
//! the per-pair ratios A/B (how export variants are compared in `docs/profile-int8.md`).
//!
//! ```text
//! cargo run --example ab -- <bundle A> <bundle B> [threads=1] [pairs=10] [precision=fp32]
//! ```
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context};
use siglipd::model::{Bundle, PrecisionChoice, VisionEncoder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: ab <bundle A> <bundle B> [threads=1] [pairs=10] [precision=fp32]");
    }
    let num = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i).map(|s| s.parse().with_context(|| format!("argument {i}: {s:?}"))).unwrap_or(Ok(default))
    };
    let (threads, pairs) = (num(2, 1)?, num(3, 10)?);
    if threads == 0 || pairs == 0 {
        bail!("threads and pairs must be at least 1");
    }
    let precision = match PrecisionChoice::from_str(args.get(4).map(String::as_str).unwrap_or("fp32")).map_err(anyhow::Error::msg)? {
        PrecisionChoice::Fixed(p) => p,
        PrecisionChoice::Auto => bail!("name a precision, not auto"),
    };
    siglipd::bench::set_threads(threads);
    let load = |dir: &str| -> anyhow::Result<(VisionEncoder, Vec<f32>)> {
        let bundle = Bundle::open(&PathBuf::from(dir))?;
        let v = VisionEncoder::load(&bundle, precision)?;
        let s = bundle.manifest.image_size as usize;
        Ok((v, siglipd::bench::timing_input(s)))
    };
    let (mut a, pa) = load(&args[0])?;
    let (mut b, pb) = load(&args[1])?;
    let ea = a.embed(&pa)?;
    let eb = b.embed(&pb)?;
    // only bundles of one architecture embed the same input comparably
    let cos = if pa.len() == pb.len() && ea.len() == eb.len() {
        format!("{:.6}", ea.iter().zip(&eb).map(|(x, y)| x * y).sum::<f32>())
    } else {
        "n/a (different image or embedding sizes)".to_string()
    };
    let (mut ta, mut tb, mut ratios) = (vec![], vec![], vec![]);
    for _ in 0..pairs {
        let t = Instant::now();
        a.embed(&pa)?;
        let x = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        b.embed(&pb)?;
        let y = t.elapsed().as_secs_f64() * 1e3;
        ta.push(x);
        tb.push(y);
        ratios.push(x / y);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        siglipd::bench::median(v)
    };
    println!(
        "cpu: {}; {threads} thread(s), {pairs} pairs; A {:.1} ms, B {:.1} ms (medians); A/B median {:.3} (min {:.3}, max {:.3}); embedding cosine A·B {cos:.6}",
        siglipd::bench::cpu_name(),
        median(&mut ta),
        median(&mut tb),
        median(&mut ratios),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(())
}
