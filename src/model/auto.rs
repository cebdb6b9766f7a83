//! The `siglipd bench --save` result (`auto.json` next to a bundle): what `--precision auto`
//! and `threads = 0` use on this CPU for these very files. Lives with the model (the bundle
//! reads it to resolve `auto`); `bench` writes it.
use serde::{Deserialize, Serialize};

use crate::model::{Bundle, Precision};

pub const AUTO_FILE: &str = "auto.json";

/// `Bundle::resolve_with` with the saved `bench --save` choice for this CPU, if any: what
/// `--precision auto` means. Returns the precision and why.
pub fn resolve(
    bundle: &Bundle,
    tower: crate::model::Tower,
    choice: crate::model::PrecisionChoice,
) -> Result<(Precision, &'static str), crate::model::ModelError> {
    let saved = if tower == crate::model::Tower::Vision { saved_choice(bundle).map(|c| c.precision) } else { None };
    bundle.resolve_with(tower, choice, saved)
}

/// What `auto` uses on this machine for this bundle (written by `siglipd bench --save`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AutoChoice {
    pub precision: Precision,
    pub threads: usize,
    pub cpu: String,
    /// sha256 of the vision file measured for each precision: a re-exported bundle invalidates it.
    pub vision_sha256: std::collections::BTreeMap<String, String>,
    pub median_ms: f64,
    /// Cosine of this precision's image embeddings against fp32 on this CPU, over the bench's
    /// probe images (see `bench::parity_probes`); absent in files written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity_cosine: Option<f64>,
}

/// The image-embedding cosine against fp32 a reduced form must reach on the running CPU
/// before `auto` may pick it (the parity gate).
pub const PARITY_MIN_COSINE: f64 = 0.999;

/// Whether a measured choice may be used by `auto`: fp32 always, a reduced form only with
/// parity measured on this CPU.
pub fn passed_parity(precision: Precision, parity_cosine: Option<f64>) -> bool {
    precision == Precision::Fp32 || parity_cosine.is_some_and(|c| c >= PARITY_MIN_COSINE)
}

/// The saved choice, if it was measured on this CPU for these very files.
pub fn saved_choice(bundle: &Bundle) -> Option<AutoChoice> {
    let text = std::fs::read_to_string(bundle.dir.join(AUTO_FILE)).ok()?;
    let c: AutoChoice = serde_json::from_str(&text).ok()?;
    if c.cpu != cpu_name() {
        tracing::info!(measured_on = %c.cpu, "ignoring {AUTO_FILE}: measured on another CPU");
        return None;
    }
    let files = &bundle.manifest.vision.files;
    // the manifest's checksum, else the file's own (bundles made without checksums); the file
    // the chosen precision runs must be among those measured (an empty map proves nothing)
    let same = c.vision_sha256.iter().all(|(p, sha)| files.get(p).is_some_and(|f| bundle.file_sha256(f).is_ok_and(|s| &s == sha)));
    if !same || !c.vision_sha256.contains_key(c.precision.file_key()) {
        tracing::info!("ignoring {AUTO_FILE}: it was measured for other vision files");
        return None;
    }
    if !passed_parity(c.precision, c.parity_cosine) {
        tracing::warn!(
            precision = %c.precision,
            cosine = ?c.parity_cosine,
            "ignoring {AUTO_FILE}: its choice has no passing parity measurement on this CPU (run `siglipd bench --save` again)"
        );
        return None;
    }
    Some(c)
}

/// Cores this process may use (the default thread count).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(crate) fn cpuinfo() -> String {
    std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()
}

/// The first `key : value` line of /proc/cpuinfo text with this key ("model name", "CPU part").
pub(crate) fn cpuinfo_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// A name for this CPU, to tell whether a saved measurement applies.
pub fn cpu_name() -> String {
    let info = cpuinfo();
    let name = cpuinfo_field(&info, "model name")
        .or_else(|| cpuinfo_field(&info, "CPU part").map(|p| format!("{} (part {p})", arm_core(&p).unwrap_or("ARM"))))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{name}, {} cores", cores())
}

pub(crate) fn arm_core(part: &str) -> Option<&'static str> {
    Some(match part {
        "0xd03" => "Cortex-A53",
        "0xd05" => "Cortex-A55",
        "0xd08" => "Cortex-A72",
        "0xd0b" => "Cortex-A76",
        "0xd41" => "Cortex-A78",
        "0xd42" => "Cortex-A78AE",
        "0xd4b" => "Cortex-A78C",
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{PrecisionChoice, Tower};

    /// A copy of the committed tiny static-int8 bundle with `auto.json` as given.
    pub(crate) fn bundle_with(choice: Option<AutoChoice>) -> (tempfile::TempDir, Bundle) {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-static");
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        let b = Bundle::open(dir.path()).unwrap();
        if let Some(mut c) = choice {
            for p in ["fp32", "int8"] {
                let f = &b.manifest.vision.files[p];
                c.vision_sha256.insert(p.into(), b.manifest.sha256[f].clone());
            }
            std::fs::write(dir.path().join(AUTO_FILE), serde_json::to_string(&c).unwrap()).unwrap();
        }
        (dir, b)
    }

    fn int8_choice(parity_cosine: Option<f64>) -> AutoChoice {
        AutoChoice {
            precision: Precision::Int8,
            threads: 1,
            cpu: cpu_name(),
            vision_sha256: Default::default(),
            median_ms: 1.0,
            parity_cosine,
        }
    }

    #[test]
    fn auto_takes_a_reduced_form_only_with_parity_measured_on_this_cpu() {
        let auto = |b: &Bundle| resolve(b, Tower::Vision, PrecisionChoice::Auto).unwrap().0;
        // no measurement: the compute form is not trusted, fp32 it is
        let (_d, b) = bundle_with(None);
        assert_eq!(auto(&b), Precision::Fp32);
        // measured fastest and within the gate
        let (_d, b) = bundle_with(Some(int8_choice(Some(0.9995))));
        assert_eq!(auto(&b), Precision::Int8);
        // fastest but outside the gate, or a file written before parity was measured
        for cos in [Some(0.998), None] {
            let (_d, b) = bundle_with(Some(int8_choice(cos)));
            assert_eq!(auto(&b), Precision::Fp32, "parity {cos:?}");
        }
        // a file that names no measured vision file proves nothing about these files
        let (_d, b) = bundle_with(Some(int8_choice(Some(0.9995))));
        let mut c = saved_choice(&b).unwrap();
        c.vision_sha256.clear();
        std::fs::write(b.dir.join(AUTO_FILE), serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(auto(&b), Precision::Fp32);
        // measured on another CPU
        let mut other = int8_choice(Some(0.9999));
        other.cpu = "another cpu".into();
        let (_d, b) = bundle_with(Some(other));
        assert_eq!(auto(&b), Precision::Fp32);
    }

    #[test]
    fn compute_and_memory_forms_are_told_apart() {
        assert!(Bundle::is_compute_form("static-int8-compute"));
        assert!(Bundle::is_compute_form("dynamic-int8"));
        assert!(!Bundle::is_compute_form("weight-only-qdq-per-channel"));
        assert!(passed_parity(Precision::Fp32, None));
        assert!(!passed_parity(Precision::Int8, Some(f64::NAN)));
    }
}
