//! The vision and text towers on tract: loaded once with concrete input shapes, optimized at
//! load, and run with one reused state (no graph work per frame).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::bundle::{Bundle, ModelError, Precision, Tower};
use crate::classify::l2_normalize;

type Plan = TypedSimpleState;

/// The time one node of the optimized plan took (mean over the profiled runs).
#[derive(Debug, Clone)]
pub struct NodeTime {
    pub id: usize,
    pub name: String,
    /// The op's name in tract (`OptMatMul`, `QuantizeLinearI8`, `Reduce<Sum>`, …).
    pub op: String,
    /// tract's description of the node (for matmuls: kernel and packing).
    pub info: Vec<String>,
    pub ms: f64,
}

/// One optimized tower with a reusable execution state.
struct Encoder {
    state: Plan,
    path: PathBuf,
    tower: Tower,
    dim: usize,
    /// What the plan takes: f32, or f16 at [`Precision::Fp16`] (the caller's f32 is cast).
    input_dt: DatumType,
}

impl Encoder {
    fn load(
        bundle: &Bundle,
        tower: Tower,
        precision: Precision,
        input_fact: InferenceFact,
        expected_input: &[usize],
    ) -> Result<Self, ModelError> {
        let path = bundle.model_file(tower, precision)?;
        let heap = LoadingHeap::enter();
        let spec = bundle.tower_spec(tower).expect("model_file checked the tower exists");
        let load = |e: TractError| ModelError::Load { path: path.clone(), reason: format!("{e:#}") };
        let mismatch = |reason: String| ModelError::Mismatch { path: path.clone(), reason };

        // each weight held once while parsing (not file + protobuf copy + tensor): onnx_read
        let (mut model, lean) = super::onnx_read::read_inference_model(&path).map_err(load)?;
        tracing::debug!(path = %path.display(), lean, "parsed");
        check_io(&model, &spec.input, &spec.output, expected_input).map_err(mismatch)?;
        // exporters like optimum put `last_hidden_state` first; keep only the pooled output
        model.select_output_outlets(&[find_output(&model, &spec.output).expect("checked by check_io")]).map_err(load)?;
        // shapes stored in the file for intermediate values may carry a symbolic batch (e.g.
        // after onnxruntime quantization) that contradicts our concrete input: let tract infer them
        forget_intermediate_shapes(&mut model).map_err(load)?;
        let model = optimize(model, input_fact, precision).map_err(load)?;
        let input_dt = model.input_fact(0).map_err(load)?.datum_type;
        let out_shape = model.output_fact(0).map_err(load)?.shape.as_concrete().map(|s| s.to_vec());
        let dim = bundle.manifest.embed_dim;
        if out_shape.as_deref() != Some(&[1, dim][..]) {
            return Err(mismatch(format!(
                "output {:?} has shape {:?}, but the manifest's embed_dim is {dim}",
                spec.output, out_shape
            )));
        }
        let state = model.into_runnable().and_then(|p| p.spawn()).map_err(load)?;
        drop(heap);
        Ok(Self { state, path, tower, dim, input_dt })
    }

    /// Multiply-accumulates per run, from tract's cost model of the optimized graph.
    fn macs(&self) -> u64 {
        let model = self.state.model();
        let mut total = 0u64;
        for node in model.nodes() {
            let Ok(inputs) = model.node_input_facts(node.id) else {
                continue;
            };
            if let Ok(costs) = node.op.cost(&inputs) {
                for (cost, n) in costs {
                    if let (tract_onnx::tract_core::ops::Cost::FMA(_), Ok(n)) = (cost, n.to_i64()) {
                        total += n as u64;
                    }
                }
            }
        }
        total
    }

    /// The matrix-multiply kernels tract picked for this CPU (e.g. `arm64simd_mmm_i32_8x8_dot`).
    fn kernels(&self) -> std::collections::BTreeSet<String> {
        let model = self.state.model();
        let mut out = std::collections::BTreeSet::new();
        for node in model.nodes() {
            for line in node.op.info().unwrap_or_default() {
                for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    // SIMD kernels are `<isa>_mmm_<type>_<m>x<n>`, tract's portable Rust ones
                    // `generic_<type>_<m>x<n>` (what armv7 without NEON gets for int8)
                    let generic = word.strip_prefix("generic_").is_some_and(|rest| rest.contains('x'));
                    if word.contains("_mmm_") || word.starts_with("mmm_") || generic {
                        out.insert(word.to_string());
                    }
                }
            }
        }
        out
    }

    /// How many nodes of each op the optimized plan has (`OptMatMul`, `Reduce<Sum>`, …).
    fn op_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for node in self.state.model().nodes() {
            *out.entry(node.op.name().to_string()).or_insert(0) += 1;
        }
        out
    }

    /// Runs the plan `runs` times timing every node; returns per-node times (ms, summed over
    /// the runs) in plan order. The timing wraps tract's own per-node evaluation, so the plan
    /// and the kernels are the ones `run` uses.
    fn profile(&mut self, input: Tensor, runs: usize) -> Result<Vec<NodeTime>, ModelError> {
        let tower = self.tower;
        let fail = |e: TractError| ModelError::Inference { tower, reason: format!("{e:#}") };
        let n = self.state.model().nodes().len();
        let mut spent = vec![0f64; n];
        let input: TValue = input.into();
        for _ in 0..runs.max(1) {
            let (state, spent, input) = (&mut self.state, &mut spent, &input);
            in_tract_pool(move || {
                state.run_plan_with_eval(tvec!(input.clone()), |ctx, op_state, node, inputs| {
                    let t = Instant::now();
                    let r = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                    spent[node.id] += t.elapsed().as_secs_f64() * 1e3;
                    r
                })
            })
            .map_err(fail)?;
        }
        let model = self.state.model();
        let order = model.eval_order().map_err(fail)?;
        Ok(order
            .into_iter()
            .map(|id| {
                let node = model.node(id);
                NodeTime {
                    id,
                    name: node.name.clone(),
                    op: node.op.name().to_string(),
                    info: node.op.info().unwrap_or_default(),
                    ms: spent[id] / runs.max(1) as f64,
                }
            })
            .collect())
    }

    fn run(&mut self, input: Tensor) -> Result<Vec<f32>, ModelError> {
        let fail = |e: TractError| ModelError::Inference { tower: self.tower, reason: format!("{e:#}") };
        let input = match input.datum_type() == self.input_dt {
            true => input,
            false => input.cast_to_dt(self.input_dt).map_err(fail)?.into_owned(),
        };
        let state = &mut self.state;
        let out = in_tract_pool(move || state.run(tvec!(input.into()))).map_err(fail)?;
        let out = out[0].cast_to::<f32>().map_err(fail)?;
        let plain = out.try_as_plain_ram().map_err(fail)?;
        let view = plain.as_slice::<f32>().map_err(fail)?;
        debug_assert_eq!(view.len(), self.dim);
        Ok(view.to_vec())
    }
}

/// Runs `f` (a plan run) on a thread of tract's matmul pool when one is set
/// (`bench::set_threads` with n > 1), else on the calling thread.
///
/// Why: tract dispatches each parallel op into its n-thread rayon pool and the calling thread
/// waits, so a run from outside the pool is n + 1 threads on n cores. Between parallel ops the
/// pool's workers spin for a while (rayon's sleep protocol), on the cores the calling thread
/// needs for the ops tract runs serially (casts, packing, softmax, …): those ran up to 2× slower
/// at 2 threads than at 1 (docs/profile-int8.md, "Zen 4 with VNNI"). Inside the pool the run is one of
/// the n threads, and tract's nested dispatch (`ThreadPool::install` from a worker of the same
/// pool) runs inline.
/// The executor is handed to the pool thread too: tract reads a thread-local override
/// (`multithread_tract_scope`) before its process-wide default, and a pool thread has none.
///
/// One plan at a time runs inside the pool ([`IN_POOL`]); a second concurrent caller (text
/// embedded on a reload while the inference thread runs vision) runs from outside, as before.
/// Two plans inside could meet on one pool thread: tract's `OptMatMul` keeps its thread-local
/// scratch borrowed while it dispatches, and a worker waiting on that dispatch may pick up the
/// other caller's whole plan and re-enter it ("RefCell already borrowed").
fn in_tract_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::TryLockError;
    use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, Executor};
    let Executor::MultiThread(pool) = current_tract_executor() else { return f() };
    let _only_run_in_pool = match IN_POOL.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return f(),
    };
    let executor = Executor::MultiThread(pool.clone());
    pool.install(move || multithread_tract_scope(executor, f))
}

/// Held while a plan runs inside tract's pool (see [`in_tract_pool`]).
static IN_POOL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Typed, decluttered and optimized for this CPU. At [`Precision::Fp16`] the matrix products
/// (`EinSum`, every MatMul/Gemm after decluttering) are switched to half precision between
/// decluttering and optimizing (tract-core's float translator, `tract_core::floats`, the engine
/// of its `f32_to_f16` transform), so the optimizer picks tract's f16 kernels
/// (`arm64fp16_mmm_f16_*` where the CPU has FEAT_FP16), with casts at their edges. Everything
/// else stays f32: tract 0.23.9's f16 element-wise paths (softmax, exp, powi, LayerNorm) are
/// scalar software, which the ARM cost proxy measured at a third of all instructions when the
/// whole graph was f16 (docs/profile-int8.md, "ARM cost proxy"). The input becomes f16.
fn optimize(model: InferenceModel, input_fact: InferenceFact, precision: Precision) -> TractResult<TypedModel> {
    use tract_onnx::tract_core::{floats::FloatPrecisionTranslator, ops::einsum::EinSum, transform::ModelTransform};
    let model = model.with_input_fact(0, input_fact)?;
    let mut optimized = if precision != Precision::Fp16 {
        model.into_optimized()?
    } else {
        let mut typed = model.into_typed()?.into_decluttered()?;
        FloatPrecisionTranslator::with_filter(DatumType::F32, DatumType::F16, |node| node.op_is::<EinSum>()).transform(&mut typed)?;
        typed.into_optimized()?
    };
    super::fast_cast::replace_casts(&mut optimized)?;
    super::fast_pack::replace_packs(&mut optimized)?;
    super::fast_batch::replace_batched(&mut optimized)?;
    Ok(optimized)
}

/// Checks a `TRACT_CPU_ISA` value (tract-linalg's knob: comma-separated `+feature`/`-feature`
/// edits of the detected instruction set, `tract_linalg::isa`) before tract reads it: a feature
/// of another architecture (`+fp16` on x86) makes tract panic at its first matrix product, so it
/// is refused here with the reason. Unknown names pass: tract ignores them with a warning.
pub fn check_cpu_isa(spec: &str) -> Result<(), String> {
    for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let name = token.trim_start_matches(['+', '-']);
        let Some(arch) = name.parse::<tract_linalg::isa::IsaSet>().ok().and_then(|s| s.arch()) else {
            continue;
        };
        if !arch.is_native() {
            return Err(format!(
                "TRACT_CPU_ISA={spec:?} names {name}, a feature of {arch}, and this is {}: name only this CPU's features (or unset it)",
                std::env::consts::ARCH
            ));
        }
    }
    Ok(())
}

/// Checks the ONNX graph against the manifest before tract's shape inference, so that a wrong
/// manifest gives a message about names and sizes, not a tract analysis trace.
fn check_io(model: &InferenceModel, input: &str, output: &str, expected_input: &[usize]) -> Result<(), String> {
    let inputs = model.input_outlets().map_err(|e| e.to_string())?;
    let [in_outlet] = inputs else {
        return Err(format!("expected one input ({input:?}), the model has {}", inputs.len()));
    };
    let in_name = &model.node(in_outlet.node).name;
    if in_name != input {
        return Err(format!("input is named {in_name:?}, the manifest says {input:?}"));
    }
    let declared = model.input_fact(0).map_err(|e| e.to_string())?;
    let dims: Vec<Option<i64>> = declared.shape.dims().map(|d| d.concretize().and_then(|t| t.as_i64())).collect();
    if !dims.is_empty() {
        let fits =
            dims.len() == expected_input.len() && dims.iter().zip(expected_input).all(|(d, e)| d.is_none_or(|d| d == *e as i64));
        if !fits {
            return Err(format!("input {input:?} has shape {dims:?} (None = any), the manifest implies {expected_input:?}"));
        }
    }
    let outputs = model.output_outlets().map_err(|e| e.to_string())?;
    let out_names: Vec<&str> = outputs.iter().filter_map(|o| model.outlet_label(*o)).collect();
    if !out_names.contains(&output) {
        return Err(format!("no output named {output:?} (the model has {out_names:?})"));
    }
    Ok(())
}

pub(super) fn forget_intermediate_shapes(model: &mut InferenceModel) -> TractResult<()> {
    let inputs = model.input_outlets()?.to_vec();
    for id in 0..model.nodes().len() {
        for slot in 0..model.node(id).outputs.len() {
            let outlet = OutletId::new(id, slot);
            if !inputs.contains(&outlet) {
                let fact = model.outlet_fact(outlet)?.clone();
                // keep the element type, drop the shape
                let mut fresh = InferenceFact::default();
                if let Some(dt) = fact.datum_type.concretize() {
                    fresh = fresh.with_datum_type(dt);
                }
                model.set_outlet_fact(outlet, fresh)?;
            }
        }
    }
    Ok(())
}

/// glibc's malloc set for loading a model while alive, for running it once dropped.
///
/// Optimizing repacks every weight and frees the original. glibc gives an allocation above its
/// mmap threshold a mapping of its own, returned to the kernel when freed, but raises the
/// threshold to the size of each such buffer freed (up to 32 MiB; mallopt(3), `M_MMAP_THRESHOLD`).
/// From the first weight on, weights then came from the heap and their freed space stayed
/// resident: an fp32 base tower peaked at ≈ 750 MB for 372 MB of weights. While a guard lives the
/// threshold is fixed at 128 KiB (glibc's starting value), so each weight-sized buffer is its own
/// mapping and the peak is about the live data (≈ 400 MB with [`super::onnx_read`];
/// docs/profile-int8.md, "Memory"). On drop the thresholds go where glibc's own adjustment would
/// have taken them (mmap 32 MiB, trim 64 MiB on 64-bit; 512 KiB and 1 MiB on 32-bit: per-frame
/// activations stay on the heap, no page faults per frame) and `malloc_trim(0)` hands back the
/// free heap pages. Setting them turns glibc's adjustment off for the process. Overlapping loads
/// share one setting (the last guard restores it). Elsewhere (musl, other OSes) this does nothing.
pub struct LoadingHeap(());

/// Loads in progress: the thresholds are process-wide, so the first guard sets them and the
/// last one restores them (the text tower may load while the vision tower does).
static LOADS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Where glibc's dynamic threshold stops: `DEFAULT_MMAP_THRESHOLD_MAX`, 4 MiB × sizeof(long)
/// on 64-bit, 512 KiB on 32-bit (mallopt(3)); larger values are refused.
const MMAP_THRESHOLD_MAX: i32 = if cfg!(target_pointer_width = "64") { 32 << 20 } else { 512 << 10 };

impl LoadingHeap {
    pub fn enter() -> Self {
        let mut loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
        if *loads == 0 {
            set_malloc_thresholds(128 << 10, 128 << 10);
        }
        *loads += 1;
        Self(())
    }
}

impl Drop for LoadingHeap {
    fn drop(&mut self) {
        let mut loads = LOADS.lock().unwrap_or_else(|e| e.into_inner());
        *loads -= 1;
        if *loads == 0 {
            // glibc's own rule after a free: trim threshold = 2 × mmap threshold
            set_malloc_thresholds(MMAP_THRESHOLD_MAX, 2 * MMAP_THRESHOLD_MAX);
            return_freed_heap();
        }
    }
}

fn set_malloc_thresholds(mmap: i32, trim: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets the allocator's parameters; it returns 0 for a refused value
        let accepted = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1 };
        if !accepted {
            tracing::debug!(mmap, trim, "glibc refused a malloc threshold");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (mmap, trim);
}

/// Hands the heap pages freed by loading back to the kernel (`malloc_trim(0)`, glibc ≥ 2.8:
/// releases free pages anywhere in the heap, not only at its top). Elsewhere this does nothing.
pub fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists
    unsafe {
        libc::malloc_trim(0);
    }
}

fn find_output(model: &InferenceModel, name: &str) -> Option<OutletId> {
    model.output_outlets().ok()?.iter().copied().find(|o| model.outlet_label(*o) == Some(name))
}

/// Image → unit-length embedding.
pub struct VisionEncoder {
    enc: Encoder,
    size: usize,
    pub precision: Precision,
}

impl VisionEncoder {
    pub fn load(bundle: &Bundle, precision: Precision) -> Result<Self, ModelError> {
        let s = bundle.manifest.image_size as usize;
        let shape = [1, 3, s, s];
        let enc = Encoder::load(bundle, Tower::Vision, precision, f32::fact(shape).into(), &shape)?;
        Ok(Self { enc, size: s, precision })
    }

    pub fn path(&self) -> &Path {
        &self.enc.path
    }

    /// A second encoder on the same optimized plan: the weights are shared (one `Arc`), only
    /// the execution state is new, so two threads can embed two images at once for the memory
    /// of one model plus activations (`examples/throughput.rs` measures what that gives).
    pub fn fork(&self) -> Result<Self, ModelError> {
        let state =
            self.enc.state.plan().spawn().map_err(|e| ModelError::Load { path: self.enc.path.clone(), reason: format!("{e:#}") })?;
        let enc =
            Encoder { state, path: self.enc.path.clone(), tower: self.enc.tower, dim: self.enc.dim, input_dt: self.enc.input_dt };
        Ok(Self { enc, size: self.size, precision: self.precision })
    }

    /// Multiply-accumulates per image (tract's cost model).
    pub fn macs(&self) -> u64 {
        self.enc.macs()
    }

    /// Matrix-multiply kernels in use.
    pub fn kernels(&self) -> std::collections::BTreeSet<String> {
        self.enc.kernels()
    }

    /// Nodes per op in the optimized plan: shows whether int8 matmuls run bare (no
    /// `Reduce<Sum>` zero-point sums, no `DynamicQuantizeLinear*`).
    pub fn op_counts(&self) -> BTreeMap<String, usize> {
        self.enc.op_counts()
    }

    /// Per-node timing of the optimized plan on a `[3, S, S]` pixel tensor (see `examples/profile.rs`).
    pub fn profile(&mut self, pixels: &[f32], runs: usize) -> Result<Vec<NodeTime>, ModelError> {
        let input = self.input(pixels)?;
        self.enc.profile(input, runs)
    }

    fn input(&self, pixels: &[f32]) -> Result<Tensor, ModelError> {
        let s = self.size;
        Tensor::from_shape(&[1, 3, s, s], pixels).map_err(|e| ModelError::Inference {
            tower: Tower::Vision,
            reason: format!("pixel tensor of {} values for a {s}x{s} model: {e}", pixels.len()),
        })
    }

    /// Raw (un-normalized) embedding of a `[3, S, S]` pixel tensor, as the model outputs it.
    pub fn embed_raw(&mut self, pixels: &[f32]) -> Result<Vec<f32>, ModelError> {
        let input = self.input(pixels)?;
        self.enc.run(input)
    }

    pub fn embed(&mut self, pixels: &[f32]) -> Result<Vec<f32>, ModelError> {
        let mut v = self.embed_raw(pixels)?;
        l2_normalize(&mut v);
        Ok(v)
    }
}

/// Token ids → unit-length embedding.
pub struct TextEncoder {
    enc: Encoder,
    len: usize,
    pub precision: Precision,
}

impl TextEncoder {
    pub fn load(bundle: &Bundle, precision: Precision) -> Result<Self, ModelError> {
        let len = bundle.manifest.max_text_length;
        let shape = [1, len];
        let enc = Encoder::load(bundle, Tower::Text, precision, i64::fact(shape).into(), &shape)?;
        Ok(Self { enc, len, precision })
    }

    pub fn embed_raw(&mut self, ids: &[i64]) -> Result<Vec<f32>, ModelError> {
        let input = Tensor::from_shape(&[1, self.len], ids).map_err(|e| ModelError::Inference {
            tower: Tower::Text,
            reason: format!("{} token ids for a model of length {}: {e}", ids.len(), self.len),
        })?;
        self.enc.run(input)
    }

    pub fn embed(&mut self, ids: &[i64]) -> Result<Vec<f32>, ModelError> {
        let mut v = self.embed_raw(ids)?;
        l2_normalize(&mut v);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::{check_cpu_isa, in_tract_pool};
    use crate::model::{Bundle, Precision, VisionEncoder};
    use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, Executor};

    /// The pool tests share `IN_POOL`: run one at a time, or one sees the other's run in the pool.
    static POOL_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The committed tiny static-int8 bundle and a `[3, S, S]` gradient input for it.
    fn tiny_static_and_pixels() -> (Bundle, Vec<f32>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-static");
        let bundle = Bundle::open(&dir).unwrap();
        let s = bundle.manifest.image_size as usize;
        let pixels = (0..3 * s * s).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
        (bundle, pixels)
    }

    /// With a pool, the plan runs on one of its threads, which sees the same executor (so tract's
    /// parallel ops inside the run use the pool); without one, on the caller's thread. The
    /// embedding is the same either way.
    #[test]
    fn plans_run_on_tract_pool_threads_with_the_same_result() {
        let _serial = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let (bundle, pixels) = tiny_static_and_pixels();
        let caller = std::thread::current().id();
        let (where_single, single) = {
            let mut v = VisionEncoder::load(&bundle, Precision::Int8).unwrap();
            (in_tract_pool(|| std::thread::current().id()), v.embed_raw(&pixels).unwrap())
        };
        assert_eq!(where_single, caller, "no pool: the caller runs the plan");
        let (name, executor_seen, pooled) = multithread_tract_scope(Executor::multithread(2), || {
            let mut v = VisionEncoder::load(&bundle, Precision::Int8).unwrap();
            let (name, seen) = in_tract_pool(|| {
                let name = std::thread::current().name().map(str::to_string);
                (name, matches!(current_tract_executor(), Executor::MultiThread(_)))
            });
            (name, seen, v.embed_raw(&pixels).unwrap())
        });
        assert!(name.as_deref().is_some_and(|n| n.starts_with("tract-")), "ran on {name:?}, not a tract pool thread");
        assert!(executor_seen, "the pool thread did not see the pool executor");
        let diff = single.iter().zip(&pooled).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-6, "2-thread embedding differs from 1-thread by {diff}");
    }

    /// Two threads embedding at once on one pool (the daemon embeds text on a reload while its
    /// inference thread runs vision) must not re-enter a plan on one pool thread (a reviewer saw
    /// "RefCell already borrowed" in tract's `OptMatMul` when both ran inside the pool). The
    /// threading gates at 0 make every matmul of the tiny model dispatch, as a base-size one does.
    #[test]
    fn concurrent_runs_on_one_pool_do_not_collide() {
        use crate::model::TextEncoder;
        let _serial = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        tract_linalg::multithread::set_threading_panel_threshold(0);
        tract_linalg::multithread::set_threading_element_threshold(0);
        let (bundle, pixels) = tiny_static_and_pixels();
        let executor = Executor::multithread(2);
        std::thread::scope(|scope| {
            let vision = scope.spawn(|| {
                multithread_tract_scope(executor.clone(), || {
                    let mut v = VisionEncoder::load(&bundle, Precision::Int8).unwrap();
                    (0..60).map(|_| v.embed_raw(&pixels).map(|_| ())).collect::<Result<Vec<_>, _>>()
                })
            });
            let text = scope.spawn(|| {
                multithread_tract_scope(executor.clone(), || {
                    let mut t = TextEncoder::load(&bundle, Precision::Int8).unwrap();
                    let ids = vec![1i64; bundle.manifest.max_text_length];
                    (0..60).map(|_| t.embed_raw(&ids).map(|_| ())).collect::<Result<Vec<_>, _>>()
                })
            });
            vision.join().expect("vision thread panicked").unwrap();
            text.join().expect("text thread panicked").unwrap();
        });
    }

    #[test]
    fn a_cpu_isa_knob_of_another_architecture_is_refused() {
        let (native, foreign) = if cfg!(target_arch = "aarch64") { ("+fp16", "+avx512f") } else { ("-avx512f", "+fp16") };
        assert_eq!(check_cpu_isa(native), Ok(()));
        assert_eq!(check_cpu_isa(""), Ok(()));
        assert_eq!(check_cpu_isa("+no-such-feature"), Ok(()), "tract ignores unknown names");
        let err = check_cpu_isa(&format!("{native}, {foreign}")).unwrap_err();
        assert!(err.contains(foreign.trim_start_matches('+')) && err.contains(std::env::consts::ARCH), "{err}");
    }
}
