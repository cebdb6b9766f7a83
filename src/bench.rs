//! `siglipd bench`: which precision and how many threads this board should use.
//!
//! Each (precision, threads) pair runs in a child process of the same binary, so peak RSS and
//! load time are that configuration's own and one run's caches do not flatter the next. The
//! child loads the vision tower, runs it once to warm up, then `runs` times on a fixed input.
//! The result can be saved next to the bundle (`auto.json`), where `--precision auto` and
//! `threads = 0` read it.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::classify::cosine;
use crate::model::auto::{arm_core, cpuinfo, cpuinfo_field};
pub use crate::model::auto::{cores, cpu_name, passed_parity, saved_choice, AutoChoice, AUTO_FILE, PARITY_MIN_COSINE};
use crate::model::{Bundle, Precision, Preprocessor, Tower, VisionEncoder};

/// Real photos the bench embeds with every precision to check parity against fp32 on the
/// running CPU. Both are held out of the static int8 form's calibration set
/// (`tools/export_model.py`), so a form that only fits its calibration photos fails here.
const PARITY_PHOTOS: [(&str, &[u8]); 2] = [
    ("rocket.jpg", include_bytes!("../tests/fixtures/images/rocket.jpg")),
    ("coins.jpg", include_bytes!("../tests/fixtures/images/coins.jpg")),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub precision: Precision,
    pub threads: usize,
    pub load_ms: f64,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Multiply-accumulates per image (tract's cost model of the optimized graph).
    pub macs: u64,
    pub peak_rss_mb: f64,
    /// Resident memory after the timed runs (`VmRSS`, MB): what a running daemon holds; the peak
    /// above is reached while loading (the ONNX parse holds the weights twice).
    #[serde(default)]
    pub rss_mb: f64,
    pub kernels: Vec<String>,
    /// Raw embeddings of the parity probes (the timing input, then `PARITY_PHOTOS`), passed from
    /// the measuring child to the parent, which compares them with fp32's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe: Vec<Vec<f32>>,
    /// Smallest cosine of this configuration's probe embeddings against fp32's, on this CPU.
    #[serde(default)]
    pub parity_cosine: Option<f64>,
}

impl Measurement {
    pub fn gflops(&self) -> f64 {
        2.0 * self.macs as f64 / (self.median_ms / 1000.0) / 1e9
    }
}

/// fp32 FLOP per cycle of an ARM core by its "CPU part", where known.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
fn arm_flops_per_cycle(part: &str) -> Option<(f64, String)> {
    // Cortex-A76/A78 family: two 128-bit FMA pipes = 2 × 4 lanes × 2 FLOP
    matches!(arm_core(part)?, "Cortex-A76" | "Cortex-A78" | "Cortex-A78AE" | "Cortex-A78C")
        .then(|| (16.0, "NEON: 2×4-lane FMA/cycle".to_string()))
}

/// Theoretical fp32 FLOP/s of one core, where the FMA throughput is known: (GFLOP/s, how).
pub fn fp32_peak_per_core() -> Option<(f64, String)> {
    let ghz = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|khz| khz / 1e6)
        .or_else(|| cpuinfo_field(&cpuinfo(), "cpu MHz")?.parse::<f64>().ok().map(|m| m / 1e3))?;
    let (flops_per_cycle, how) = flops_per_cycle()?;
    Some((ghz * flops_per_cycle, format!("{how} at {ghz:.2} GHz")))
}

#[cfg(target_arch = "x86_64")]
fn flops_per_cycle() -> Option<(f64, String)> {
    if is_x86_feature_detected!("avx512f") {
        // Xeon Scalable Gold/Platinum: two 512-bit FMA units; parts with one reach half of this
        return Some((64.0, "AVX-512: 2×16-lane FMA/cycle".to_string()));
    }
    // two 256-bit FMA units (Haswell and later, Zen 2 and later): 2 × 8 lanes × 2 FLOP
    (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then(|| (32.0, "AVX2: 2×8-lane FMA/cycle".to_string()))
}

#[cfg(target_arch = "aarch64")]
fn flops_per_cycle() -> Option<(f64, String)> {
    arm_flops_per_cycle(&cpuinfo_field(&cpuinfo(), "CPU part")?)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn flops_per_cycle() -> Option<(f64, String)> {
    None
}

/// Peak resident memory of this process so far, in MB: the high-water mark of this program's
/// own address space (`VmHWM`). `getrusage`'s `ru_maxrss` survives `exec`, so a child started
/// by a big process (`tools/compare_ort.py` after onnxruntime loaded the model) would report its
/// parent's peak; it is only the fallback where /proc is missing.
pub fn peak_rss_mb() -> f64 {
    if let Some(kb) = std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(|status| status_kb(status, "VmHWM:")) {
        return kb as f64 / 1024.0;
    }
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we own
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    ru.ru_maxrss as f64 / 1024.0 // KiB on Linux
}

/// The median of sorted values (the mean of the two middle ones for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Resident memory of this process now, in MB (`VmRSS`; NaN where /proc is missing).
pub fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status_kb(&status, "VmRSS:").map(|kb| kb as f64 / 1024.0).unwrap_or(f64::NAN)
}

/// The kB figure of one `/proc/<pid>/status` line (`key` with its colon).
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.trim_start_matches(key).trim().trim_end_matches("kB").trim().parse().ok()
}

/// Sets tract's matrix-multiply executor for this process: `n` threads (1 = none).
pub fn set_threads(n: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    set_default_executor(if n > 1 { Executor::multithread(n) } else { Executor::SingleThread });
}

/// Threads to use: the configured count, else the saved choice, else every core.
pub fn resolve_threads(configured: usize, saved: Option<&AutoChoice>) -> usize {
    if configured > 0 {
        configured
    } else if let Some(c) = saved {
        c.threads
    } else {
        cores()
    }
}

/// Picks and sets the thread count for a bundle (`configured` 0 = saved choice or all cores).
pub fn apply_threads(bundle: &Bundle, configured: usize) -> usize {
    let n = resolve_threads(configured, saved_choice(bundle).as_ref());
    set_threads(n);
    tracing::info!(threads = n, "model threads");
    n
}

/// The child's part: one configuration, measured in this process.
pub fn measure_one(model: &Path, precision: Precision, threads: usize, runs: usize) -> anyhow::Result<Measurement> {
    set_threads(threads);
    let bundle = Bundle::open(model)?;
    let started = Instant::now();
    let mut v = VisionEncoder::load(&bundle, precision)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let s = bundle.manifest.image_size as usize;
    let pixels = timing_input(s);
    v.embed(&pixels)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        v.embed(&pixels)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let peak_rss_mb = peak_rss_mb();
    let rss_mb = rss_mb();
    let probe = parity_probes(&bundle, &mut v, &pixels)?;
    Ok(Measurement {
        precision,
        threads,
        load_ms,
        runs: times.len(),
        median_ms: median(&times),
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        macs: v.macs(),
        peak_rss_mb,
        rss_mb,
        kernels: v.kernels().into_iter().collect(),
        probe,
        parity_cosine: None,
    })
}

/// Raw embeddings of the parity probes: the timing input and the held-out photos.
fn parity_probes(bundle: &Bundle, v: &mut VisionEncoder, timing_input: &[f32]) -> anyhow::Result<Vec<Vec<f32>>> {
    let pre = Preprocessor::new(&bundle.manifest);
    let mut out = vec![v.embed_raw(timing_input)?];
    for (name, bytes) in PARITY_PHOTOS {
        out.push(v.embed_raw(&pre.load_bytes(bytes, name)?)?);
    }
    Ok(out)
}

/// Smallest cosine between two sets of probe embeddings (None when they do not pair up).
pub fn probe_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
        return None;
    }
    Some(a.iter().zip(b).map(|(x, y)| cosine(x, y) as f64).fold(f64::INFINITY, f64::min))
}

/// Fills in every measurement's `parity_cosine` against fp32's probe embeddings (from an fp32
/// measurement, else computed here), then drops the embeddings.
fn check_parity(model: &Path, ms: &mut [Measurement]) -> anyhow::Result<()> {
    let reference = match ms.iter().find(|m| m.precision == Precision::Fp32) {
        Some(m) => m.probe.clone(),
        None => {
            let bundle = Bundle::open(model)?;
            if !bundle.precisions(Tower::Vision).contains(&Precision::Fp32) {
                return Ok(()); // nothing to compare with: no reduced form passes
            }
            let s = bundle.manifest.image_size as usize;
            let mut v = VisionEncoder::load(&bundle, Precision::Fp32)?;
            parity_probes(&bundle, &mut v, &timing_input(s))?
        }
    };
    for m in ms.iter_mut() {
        m.parity_cosine = probe_cosine(&m.probe, &reference);
        m.probe.clear();
    }
    Ok(())
}

/// A fixed, non-trivial input (a `[3, S, S]` gradient, values in [-1, 1]), the same for every
/// configuration, for `tools/compare_ort.py` and `examples/ab.rs`.
pub fn timing_input(s: usize) -> Vec<f32> {
    (0..3 * s * s).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect()
}

/// What `siglipd bench` times when not told: every precision the bundle has, fp16 only where
/// the CPU has fp16 arithmetic (tract-linalg's ISA probe, `TRACT_CPU_ISA` edits included);
/// elsewhere tract converts to f32 around its f32 kernels and the form is slower than fp32.
pub fn default_precisions(bundle: &Bundle) -> Vec<Precision> {
    let native_f16 = tract_linalg::isa::native().fp16_arithmetic();
    bundle.precisions(Tower::Vision).into_iter().filter(|&p| p != Precision::Fp16 || native_f16).collect()
}

pub struct BenchOptions {
    pub model: PathBuf,
    pub precisions: Vec<Precision>,
    pub threads: Vec<usize>,
    pub runs: usize,
}

/// Runs every configuration in a child process and returns the measurements.
pub fn measure_all(o: &BenchOptions) -> anyhow::Result<Vec<Measurement>> {
    let exe = std::env::current_exe().context("cannot find the siglipd executable")?;
    let mut out = Vec::new();
    for &p in &o.precisions {
        for &t in &o.threads {
            tracing::info!(precision = %p, threads = t, "measuring");
            let r = Command::new(&exe)
                .args(["-q", "bench", "--one", "--model"])
                .arg(&o.model)
                .args(["--precision", p.as_str(), "--threads", &t.to_string(), "--runs", &o.runs.to_string()])
                .output()
                .context("cannot start the measuring process")?;
            if !r.status.success() {
                bail!("measuring {p} with {t} thread(s) failed: {}", String::from_utf8_lossy(&r.stderr).trim());
            }
            out.push(serde_json::from_slice(&r.stdout).context("unreadable measurement")?);
        }
    }
    check_parity(&o.model, &mut out)?;
    Ok(out)
}

/// The fastest configuration among those that passed parity on this CPU (fp32 always does; a
/// reduced form needs an embedding cosine ≥ `PARITY_MIN_COSINE` against fp32); fp32 wins ties
/// within 3 % (it is the exact one).
pub fn choose(ms: &[Measurement]) -> Option<&Measurement> {
    let best = ms.iter().filter(|m| passed_parity(m.precision, m.parity_cosine)).min_by(|a, b| a.median_ms.total_cmp(&b.median_ms))?;
    let fp32 = ms.iter().filter(|m| m.precision == Precision::Fp32).min_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    Some(match fp32 {
        Some(f) if f.median_ms <= best.median_ms * 1.03 => f,
        _ => best,
    })
}

pub fn auto_choice(bundle: &Bundle, m: &Measurement) -> anyhow::Result<AutoChoice> {
    let mut shas = std::collections::BTreeMap::new();
    for p in bundle.precisions(Tower::Vision) {
        // keyed by file (fp16 runs the fp32 file), as `auto::saved_choice` checks them
        let f = bundle.manifest.vision.files.get(p.file_key()).expect("listed precision has a file");
        let sha = bundle.file_sha256(f)?;
        shas.insert(p.file_key().to_string(), sha);
    }
    Ok(AutoChoice {
        precision: m.precision,
        threads: m.threads,
        cpu: cpu_name(),
        vision_sha256: shas,
        median_ms: m.median_ms,
        parity_cosine: m.parity_cosine,
    })
}

/// The human table.
pub fn render(bundle: &Bundle, ms: &[Measurement]) -> String {
    let mut s = String::new();
    let macs = ms.first().map(|m| m.macs).unwrap_or(0);
    s += &format!(
        "model: {} ({}), vision tower {:.2} GMAC per image\n",
        bundle.dir.display(),
        bundle.manifest.source,
        macs as f64 / 1e9
    );
    let peak = fp32_peak_per_core();
    s += &format!(
        "cpu: {}; fp32 peak {}\n\n",
        cpu_name(),
        peak.as_ref().map(|(g, how)| format!("≈ {g:.0} GFLOP/s per core ({how})")).unwrap_or_else(|| "unknown for this CPU".into())
    );
    if let Some(form) = &bundle.manifest.vision.int8_form {
        s += &format!("int8 form: {form}\n");
    }
    for (precision, shape) in &bundle.manifest.vision.graph_shape {
        let shape = if shape.is_empty() { "as exported".to_string() } else { shape.join(", ") };
        s += &format!("vision {precision} graph shaped for tract: {shape}\n");
    }
    if bundle.manifest.vision.graph_shape.is_empty() {
        s += "vision graph: as written by its exporter (not shaped for tract)\n";
    }
    s += &format!("parity: image-embedding cosine vs fp32 on this CPU (probe photos), ≥ {PARITY_MIN_COSINE} to be chosen\n\n");
    s += "precision  threads  load ms  median ms  min–max ms        GFLOP/s  % of peak  peak RSS MB  RSS MB  cos vs fp32  kernels\n";
    for m in ms {
        let pct =
            peak.as_ref().map(|(g, _)| format!("{:.0} %", 100.0 * m.gflops() / (g * m.threads as f64))).unwrap_or_else(|| "—".into());
        s += &format!(
            "{:<10} {:>7} {:>8.0} {:>10.1} {:>7.1}–{:<9.1} {:>8.1} {:>10} {:>12.0} {:>7.0} {:>12}  {}\n",
            m.precision.as_str(),
            m.threads,
            m.load_ms,
            m.median_ms,
            m.min_ms,
            m.max_ms,
            m.gflops(),
            pct,
            m.peak_rss_mb,
            m.rss_mb,
            m.parity_cosine.map(|c| format!("{c:.5}")).unwrap_or_else(|| "—".into()),
            m.kernels.join(",")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: Precision, threads: usize, ms: f64) -> Measurement {
        Measurement {
            precision: p,
            threads,
            load_ms: 0.0,
            runs: 1,
            median_ms: ms,
            min_ms: ms,
            max_ms: ms,
            macs: 1_000_000_000,
            peak_rss_mb: 0.0,
            rss_mb: 0.0,
            kernels: vec![],
            probe: vec![],
            parity_cosine: Some(if p == Precision::Fp32 { 1.0 } else { 0.9995 }),
        }
    }

    #[test]
    fn median_of_even_counts_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[1.0, 2.0, 10.0]), 2.0);
        assert_eq!(median(&[820.2, 826.9]), 823.55);
        assert_eq!(median(&[5.0]), 5.0);
    }

    #[test]
    fn peak_rss_reads_vm_hwm() {
        assert_eq!(status_kb("Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t  383336 kB\nVmRSS:\t1 kB\n", "VmHWM:"), Some(383_336));
        assert_eq!(status_kb("Name:\tx\n", "VmHWM:"), None);
        assert!(peak_rss_mb() > 1.0);
        assert!(rss_mb() > 1.0 && rss_mb() <= peak_rss_mb() + 1.0);
    }

    #[test]
    fn a_fast_form_that_fails_parity_is_never_chosen() {
        let mut fast = m(Precision::Int8, 2, 100.0);
        fast.parity_cosine = Some(0.998);
        let ms = [m(Precision::Fp32, 2, 300.0), fast.clone()];
        assert_eq!(choose(&ms).unwrap().precision, Precision::Fp32);
        fast.parity_cosine = None; // not measured (no fp32 to compare with)
        assert_eq!(choose(&[m(Precision::Fp32, 2, 300.0), fast.clone()]).unwrap().precision, Precision::Fp32);
        assert!(choose(&[fast]).is_none(), "no parity-passing configuration: nothing to choose");
    }

    #[test]
    fn probe_cosine_is_the_worst_pair_and_needs_matching_probes() {
        let a = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let b = vec![vec![1.0, 0.0], vec![1.0, 1.0]];
        let c = probe_cosine(&a, &b).unwrap();
        assert!((c - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6, "{c}");
        assert_eq!(probe_cosine(&a, &b[..1]), None);
        assert_eq!(probe_cosine(&[], &[]), None);
    }

    #[test]
    fn choice_is_the_fastest_but_fp32_wins_near_ties() {
        let ms = [m(Precision::Fp32, 1, 500.0), m(Precision::Fp32, 2, 300.0), m(Precision::Int8, 2, 295.0)];
        let c = choose(&ms).unwrap();
        assert_eq!((c.precision, c.threads), (Precision::Fp32, 2));
        let ms = [m(Precision::Fp32, 2, 300.0), m(Precision::Int8, 2, 150.0)];
        assert_eq!(choose(&ms).unwrap().precision, Precision::Int8);
        assert!(choose(&[]).is_none());
        assert!((ms[0].gflops() - 2.0 / 0.3).abs() < 1e-9);
    }

    #[test]
    fn cpuinfo_fields_and_arm_peaks() {
        let info = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0b\ncpu MHz\t\t: 2400.000\n";
        assert_eq!(cpuinfo_field(info, "CPU part").as_deref(), Some("0xd0b"));
        assert_eq!(cpuinfo_field(info, "cpu MHz").as_deref(), Some("2400.000"));
        assert_eq!(cpuinfo_field(info, "model name"), None);
        assert_eq!(arm_flops_per_cycle("0xd0b").map(|(f, _)| f), Some(16.0));
        assert_eq!(arm_flops_per_cycle("0xd4b").map(|(f, _)| f), Some(16.0));
        assert_eq!(arm_flops_per_cycle("0xd08"), None, "Cortex-A72: peak not claimed");
        assert_eq!(arm_flops_per_cycle("0x999"), None);
    }

    /// What `bench --save` writes for each form is what `auto` then accepts: fp16 runs the fp32
    /// file, so its choice is bound to that file's sha256 (a key per precision would name no file).
    #[test]
    fn a_saved_choice_of_every_form_is_taken_by_auto() {
        use crate::model::{auto::resolve, PrecisionChoice};
        let (dir, bundle) = crate::model::auto::tests::bundle_with(None);
        assert_eq!(bundle.precisions(Tower::Vision), [Precision::Fp32, Precision::Int8, Precision::Fp16]);
        assert_eq!(bundle.precisions(Tower::Text), [Precision::Fp32, Precision::Int8], "fp16 is for the vision tower only");
        assert_eq!(
            bundle.model_file(Tower::Vision, Precision::Fp16).unwrap(),
            bundle.model_file(Tower::Vision, Precision::Fp32).unwrap()
        );
        assert!(bundle.model_file(Tower::Text, Precision::Fp16).is_err());
        for p in [Precision::Fp16, Precision::Int8] {
            let choice = auto_choice(&bundle, &m(p, 1, 10.0)).unwrap();
            std::fs::write(dir.path().join(AUTO_FILE), serde_json::to_string(&choice).unwrap()).unwrap();
            assert_eq!(resolve(&bundle, Tower::Vision, PrecisionChoice::Auto).unwrap().0, p);
            assert_eq!(resolve(&bundle, Tower::Text, PrecisionChoice::Auto).unwrap().0, Precision::Fp32);
        }
        assert_eq!("fp16".parse::<PrecisionChoice>(), Ok(PrecisionChoice::Fixed(Precision::Fp16)));
    }

    #[test]
    fn threads_come_from_config_then_saved_choice_then_cores() {
        let saved = AutoChoice {
            precision: Precision::Fp32,
            threads: 3,
            cpu: String::new(),
            vision_sha256: Default::default(),
            median_ms: 1.0,
            parity_cosine: None,
        };
        assert_eq!(resolve_threads(2, Some(&saved)), 2);
        assert_eq!(resolve_threads(0, Some(&saved)), 3);
        assert!(resolve_threads(0, None) >= 1);
    }
}
