//! Per-op profile of the vision tower's optimized tract plan: the time of every node, summed
//! by op, for one bundle precision and thread count. Uses the very plan `siglipd` runs
//! (`VisionEncoder::profile`); no external profiler.
//!
//! ```text
//! cargo run --example profile -- <bundle dir> <fp32|int8> [threads=1] [runs=5] [top nodes=0]
//! ```
//!
//! Prints, per op: nodes, ms per image, share of the total; then the plan's op counts (to check
//! that an int8 compute form has no `Reduce<Sum>` / `DynamicQuantizeLinear*` left).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context};
use siglipd::model::{Bundle, Precision, PrecisionChoice, VisionEncoder};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: profile <bundle dir> <fp32|int8> [threads=1] [runs=5] [top nodes=0]");
    }
    let dir = PathBuf::from(&args[0]);
    let precision = match PrecisionChoice::from_str(&args[1]).map_err(anyhow::Error::msg)? {
        PrecisionChoice::Fixed(p) => p,
        PrecisionChoice::Auto => bail!("name a precision, not auto"),
    };
    let arg = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i).map(|s| s.parse().with_context(|| format!("argument {i}: {s:?}"))).unwrap_or(Ok(default))
    };
    let (threads, runs, top) = (arg(2, 1)?, arg(3, 5)?, arg(4, 0)?);
    siglipd::bench::set_threads(threads);
    let bundle = Bundle::open(&dir)?;
    let mut v = VisionEncoder::load(&bundle, precision)?;
    let s = bundle.manifest.image_size as usize;
    let pixels = siglipd::bench::timing_input(s);
    v.embed(&pixels)?; // warm-up
    let nodes = v.profile(&pixels, runs)?;
    let total: f64 = nodes.iter().map(|n| n.ms).sum();
    let mut by_op: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for n in &nodes {
        let e = by_op.entry(&n.op).or_default();
        e.0 += 1;
        e.1 += n.ms;
    }
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let form = bundle.manifest.vision.int8_form.as_deref().unwrap_or("-");
    println!(
        "bundle {} ({}), {} (int8 form {form}), {threads} thread(s), mean of {runs} runs, cpu: {}",
        dir.display(),
        bundle.manifest.source,
        precision_name(precision),
        siglipd::bench::cpu_name()
    );
    println!("kernels: {}", v.kernels().into_iter().collect::<Vec<_>>().join(", "));
    println!("total (sum of nodes): {total:.1} ms per image\n");
    println!("| op | nodes | ms | share |\n|---|---:|---:|---:|");
    for (op, (n, ms)) in &rows {
        println!("| `{op}` | {n} | {ms:.1} | {:.1} % |", 100.0 * ms / total);
    }
    if top > 0 {
        let mut slow: Vec<_> = nodes.iter().collect();
        slow.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        println!("\nslowest nodes:");
        for n in slow.into_iter().take(top) {
            println!("  {:8.2} ms  {:<22} {}", n.ms, n.op, n.name);
            for line in &n.info {
                println!("              {line}");
            }
        }
    }
    Ok(())
}

fn precision_name(p: Precision) -> &'static str {
    p.as_str()
}
