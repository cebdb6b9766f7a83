//! Activation packing for tract's optimized plans, split across tract's pool.
//!
//! Before each matrix product tract packs the activation operand into the kernel's panel
//! layout (`OptMatMulPack`). In tract 0.23.9 that runs on the calling thread in two cases that
//! make up most of the vision tower's packing: a batched operand (the attention heads: one
//! `[196, 196]` or `[196, 64]` matrix per head, packed one after the other), and the int8
//! layout of the integer matmuls (`PackedI8K4`, a byte-by-byte gather). At 2 threads packing
//! took *longer* than at 1 (12.4–14.6 vs 11.8 ms per image, static int8, Zen 4;
//! docs/profile-int8.md, "Packing and batches"). [`replace_packs`] swaps each `OptMatMulPack` of an
//! optimized plan for a [`FastPack`], which packs the heads of a batch in parallel, and packs
//! `PackedI8K4` panels in parallel with whole 4-byte copies; every other case runs tract's own
//! op. The packed bytes are the ones tract writes (tested against tract's op on every layout).
use tract_linalg::mmm::{EagerPackedInput, MMMInputFormat, MMMInputValue, PackedExoticFact, PackedMatrixStorage};
use tract_linalg::multithread::par_chunks_mut;
use tract_linalg::pack::PackedI8K4;
use tract_linalg::strided_panel::StridedKMajor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::format_err;
use tract_onnx::tract_core::internal::{EvalContext, EvalOp, Op, StaticName, TensorView, TypedOp};
use tract_onnx::tract_core::ndarray::Dimension;
use tract_onnx::tract_core::ops::matmul::pack::{DynPackedExoticFact, OptMatMulPack};

/// tract's `OptMatMulPack` with a parallel evaluation; output facts and axes are the
/// wrapped op's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FastPack {
    inner: OptMatMulPack,
    /// The formats the inner op packs to: one, or two picked by `mn` (vector vs matrix),
    /// as tract-core's `ModePicker` does.
    packers: Vec<Box<dyn MMMInputFormat>>,
    k_axis: usize,
    mn_axis: usize,
}

/// Replaces every `OptMatMulPack` of an optimized `model` by a [`FastPack`]; returns how many.
pub fn replace_packs(model: &mut TypedModel) -> TractResult<usize> {
    super::swap::swap_nodes(model, |model, node| {
        let Some(pack) = node.op_as::<OptMatMulPack>() else { return Ok(None) };
        let input = model.outlet_fact(node.inputs[0])?;
        let output = model.outlet_fact(OutletId::new(node.id, 0))?;
        let Some(packed) = output.exotic_fact.as_ref().and_then(|f| f.downcast_ref::<DynPackedExoticFact>()) else {
            return Ok(None);
        };
        let axes = pack.axes_mapping(&[input], &[output])?;
        let (k_axis, mn_axis) = (axes.axis('K')?.inputs[0][0], axes.axis('M')?.inputs[0][0]);
        Ok(Some(FastPack { inner: pack.clone(), packers: packed.packers.clone(), k_axis, mn_axis }))
    })
}

impl FastPack {
    /// The format for this input, as tract-core's `ModePicker::pick`: the second one (matrix)
    /// when there are two and `mn > 1`.
    fn packer(&self, mn: usize) -> &dyn MMMInputFormat {
        let mode = if self.packers.len() == 2 && mn > 1 { 1 } else { 0 };
        &*self.packers[mode]
    }

    /// Packs `input`, or `None` where tract's own op is as fast (a single plain matrix, or
    /// the strided format, which shares the input instead of packing it).
    fn pack(&self, input: &Tensor) -> TractResult<Option<Tensor>> {
        let shape = input.shape();
        let packer = self.packer(shape[self.mn_axis]);
        let i8k4 = packer.downcast_ref::<PackedI8K4>();
        let batch: TVec<usize> = self.inner.output_shape(shape);
        let count: usize = batch.iter().product();
        if i8k4.is_none() && (count < 2 || packer.downcast_ref::<StridedKMajor>().is_some()) {
            return Ok(None);
        }
        let mut coords_shape: TVec<usize> = shape.into();
        coords_shape[self.k_axis] = 1;
        coords_shape[self.mn_axis] = 1;
        let coords: Vec<TVec<usize>> =
            tract_onnx::tract_core::ndarray::indices(&*coords_shape).into_iter().map(|c| c.slice().into()).collect();
        let pack_one = |coord: &[usize]| -> TractResult<Box<dyn MMMInputValue>> {
            let view = TensorView::offsetting(input, coord)?;
            match i8k4 {
                Some(format) if count == 1 => pack_i8k4_parallel(format, &view, self.k_axis, self.mn_axis),
                _ => packer.prepare_one_view(&view, self.k_axis, self.mn_axis),
            }
        };
        let values: TVec<Box<dyn MMMInputValue>> = if count == 1 {
            tvec![pack_one(&coords[0])?]
        } else {
            let mut slots: Vec<Option<Box<dyn MMMInputValue>>> = (0..count).map(|_| None).collect();
            par_chunks_mut(&mut slots, 1, input.len(), |first, chunk| {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(pack_one(&coords[first + i])?);
                }
                Ok(())
            })?;
            slots.into_iter().map(|v| v.ok_or_else(|| format_err!("a batch entry was not packed"))).collect::<TractResult<_>>()?
        };
        Ok(Some(PackedMatrixStorage::new_batched(&batch, values).into_tensor(input.datum_type())))
    }
}

/// The layout of tract's `PackedI8K4::pack_view` (tract-linalg `frame/pack.rs`): panels of `r`
/// rows of `mn`, each `ceil(k/4)·4·r` bytes, holding for every block of 4 `k` the `r` rows' 4
/// bytes side by side (`out[(k/4)·r·4 + m·4 + k%4] = src[m, k]`), zeros past `k` and past `mn`.
/// Here the panels are filled in parallel, and a row's 4 bytes are one copy where `k` is
/// contiguous.
fn pack_i8k4_parallel(format: &PackedI8K4, view: &TensorView, k_axis: usize, mn_axis: usize) -> TractResult<Box<dyn MMMInputValue>> {
    let (k, mn) = (view.shape()[k_axis], view.shape()[mn_axis]);
    let (ks, ms) = (view.strides()[k_axis], view.strides()[mn_axis]);
    let r = format.r;
    let panel = format.single_panel_len(k);
    let panels = mn.div_ceil(r);
    // SAFETY: every byte of the blob is written below (zeros, then the values)
    let mut blob = unsafe { Blob::new_for_size_and_align(panels * panel, format.alignment()) };
    // SAFETY: the view is of i8 values (the format's precursor), within its tensor
    let src = unsafe { view.as_ptr_unchecked::<i8>() } as usize;
    if panel > 0 {
        par_chunks_mut(blob.as_bytes_mut(), panel, panels * panel, |first, chunk| {
            for (p, out) in chunk.chunks_mut(panel).enumerate() {
                out.fill(0);
                let p = first + p;
                let rows = r.min(mn - p * r);
                for m in 0..rows {
                    let row = (src as *const i8).wrapping_offset(((p * r + m) as isize) * ms);
                    // SAFETY: row + kk·ks for kk < k is inside the view (shape and strides)
                    unsafe { pack_row(out, row, m, r, k, ks) };
                }
            }
            Ok(())
        })?;
    }
    Ok(Box::new(EagerPackedInput {
        fact: PackedExoticFact { format: Box::new(format.clone()), mn: mn.to_dim(), k },
        packed: std::sync::Arc::new(blob),
        panel_bytes: panel,
        mn,
    }))
}

/// One row `m` of a `PackedI8K4` panel: its `k` bytes, 4 at a time, at `kb·r·4 + m·4`.
///
/// # Safety
/// `row.offset(kk·ks)` must be readable for every `kk < k`.
#[inline]
unsafe fn pack_row(out: &mut [u8], row: *const i8, m: usize, r: usize, k: usize, ks: isize) {
    // contiguous k: whole blocks of 4 as one copy each, then the rest byte by byte
    let words = if ks == 1 { k / 4 } else { 0 };
    for kb in 0..words {
        let at = kb * r * 4 + m * 4;
        // SAFETY: bytes kb·4 .. kb·4 + 4 ≤ k of the row (caller)
        let word = unsafe { std::ptr::read_unaligned(row.add(kb * 4) as *const [u8; 4]) };
        out[at..at + 4].copy_from_slice(&word);
    }
    for kk in words * 4..k {
        // SAFETY: kk < k (caller)
        out[(kk / 4) * r * 4 + m * 4 + kk % 4] = unsafe { *row.offset(kk as isize * ks) } as u8;
    }
}

impl Op for FastPack {
    fn name(&self) -> StaticName {
        "FastPack".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.inner.info()
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for FastPack {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.eval(&EvalContext::out_of_plan(), inputs)?))
    }

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [input] = &*inputs else {
            return Err(format_err!("{} takes one input, got {}", self.name(), inputs.len()));
        };
        match self.pack(input)? {
            Some(packed) => Ok(tvec!(packed.into_tvalue())),
            None => self.inner.eval(ctx, inputs),
        }
    }
}

super::swap::typed_op_of_inner!(FastPack);

/// The committed tiny static-int8 vision tower optimized by tract alone (none of siglipd's
/// swaps), and its image size: the plan the swap tests compare against.
#[cfg(test)]
pub(crate) fn tiny_static_plan() -> (TypedModel, usize) {
    use crate::model::{Bundle, Precision, Tower};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-static");
    let bundle = Bundle::open(&dir).unwrap();
    let s = bundle.manifest.image_size as usize;
    let file = bundle.model_file(Tower::Vision, Precision::Int8).unwrap();
    let model = tract_onnx::onnx().model_for_path(&file).unwrap();
    (model.with_input_fact(0, f32::fact([1, 3, s, s]).into()).unwrap().into_optimized().unwrap(), s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tract_linalg::multithread::{
        current_threading_element_threshold, multithread_tract_scope, set_threading_element_threshold, Executor,
    };

    /// Held by the tests that lower tract's element threshold (process-wide) so that every
    /// size takes the parallel path, and restore it.
    static THRESHOLD: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Deterministic values of every sign for a tensor of `shape`.
    pub(crate) fn filled(dt: DatumType, shape: &[usize], seed: u32) -> Tensor {
        let n: usize = shape.iter().product();
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        if dt == DatumType::I8 {
            Tensor::from_shape(shape, &(0..n).map(|_| next() as i8).collect::<Vec<_>>()).unwrap()
        } else {
            Tensor::from_shape(shape, &(0..n).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect::<Vec<_>>()).unwrap()
        }
    }

    /// The swapped plan's output equals tract's own plan's, bit for bit, on a `[1, 3, s, s]`
    /// input, at each thread count.
    pub(crate) fn assert_same_output(tracts: TypedModel, swapped: TypedModel, s: usize, threads: &[usize]) {
        let pixels = filled(DatumType::F32, &[1, 3, s, s], s as u32);
        let want = tracts.into_runnable().unwrap().run(tvec!(pixels.clone().into_tvalue())).unwrap();
        let plan = swapped.into_runnable().unwrap();
        for &n in threads {
            let got = multithread_tract_scope(Executor::multithread(n), || plan.run(tvec!(pixels.clone().into_tvalue())).unwrap());
            assert_eq!(*got[0], *want[0], "at {n} threads");
        }
    }

    /// Both tract's and our packing of one input, as the packed storages.
    fn both(fast: &FastPack, input: Tensor) -> (Tensor, Tensor) {
        let theirs = fast.inner.eval(&EvalContext::out_of_plan(), tvec!(input.clone().into_tvalue())).unwrap();
        let ours = fast.eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue())).unwrap();
        (theirs[0].clone().into_tensor(), ours[0].clone().into_tensor())
    }

    fn storage(t: &Tensor) -> &PackedMatrixStorage {
        t.try_storage_as::<PackedMatrixStorage>().unwrap()
    }

    /// The int8 panel layout, ours against tract's `PackedI8K4::pack_view`, byte for byte:
    /// `k` not a multiple of 4, `mn` not a multiple of `r`, one row, and `k` strided (a
    /// transposed view) as well as contiguous; at 1 and 2 threads with every size split.
    #[test]
    fn i8k4_panels_are_tracts_bytes() {
        let _threshold = THRESHOLD.lock().unwrap_or_else(|e| e.into_inner());
        let threshold = current_threading_element_threshold();
        set_threading_element_threshold(0);
        for threads in [1, 2] {
            multithread_tract_scope(Executor::multithread(threads), || {
                for (format, (mn, k)) in [8, 16, 32]
                    .map(PackedI8K4::new)
                    .into_iter()
                    .flat_map(|f| [(196, 768), (9, 7), (1, 5), (17, 3072), (8, 4), (3, 1), (33, 13)].map(|shape| (f.clone(), shape)))
                {
                    for (k_axis, mn_axis, shape) in [(1, 0, [mn, k]), (0, 1, [k, mn])] {
                        let t = filled(DatumType::I8, &shape, (mn * 31 + k) as u32);
                        let want = format.pack_view(&t.view(), k_axis, mn_axis).unwrap();
                        let got = pack_i8k4_parallel(&format, &t.view(), k_axis, mn_axis).unwrap();
                        let (want, got) =
                            (want.downcast_ref::<EagerPackedInput>().unwrap(), got.downcast_ref::<EagerPackedInput>().unwrap());
                        assert_eq!(
                            got.packed.as_bytes(),
                            want.packed.as_bytes(),
                            "mn {mn} k {k} k_axis {k_axis} at {threads} threads"
                        );
                        assert_eq!((got.panel_bytes, got.mn, &got.fact), (want.panel_bytes, want.mn, &want.fact));
                    }
                }
            })
        }
        set_threading_element_threshold(threshold);
    }

    /// Every pack of a real static-int8 plan (the committed tiny bundle: attention heads packed
    /// batched, f32 and int8 matmul operands) gives tract's own storage, and the plan's embedding
    /// is bit-identical with and without the swap, at 1 and 2 threads.
    #[test]
    fn every_pack_of_a_plan_matches_tracts_op() {
        let (optimized, s) = tiny_static_plan();
        let mut swapped = optimized.clone();
        let packs = optimized.nodes().iter().filter(|n| n.op_is::<OptMatMulPack>()).count();
        assert!(packs > 0);
        assert_eq!(replace_packs(&mut swapped).unwrap(), packs);
        assert!(!swapped.nodes().iter().any(|n| n.op_is::<OptMatMulPack>()), "an OptMatMulPack is left");

        let _threshold = THRESHOLD.lock().unwrap_or_else(|e| e.into_inner());
        let threshold = current_threading_element_threshold();
        set_threading_element_threshold(0);
        let (mut batched, mut int8) = (0, 0);
        for node in swapped.nodes().iter().filter(|n| n.op_is::<FastPack>()) {
            let fast = node.op_as::<FastPack>().unwrap();
            let fact = swapped.outlet_fact(node.inputs[0]).unwrap();
            let shape = fact.shape.as_concrete().unwrap().to_vec();
            let input = filled(fact.datum_type, &shape, node.id as u32);
            batched += (fast.inner.output_shape(&shape).iter().product::<usize>() > 1) as usize;
            int8 += (fact.datum_type == DatumType::I8) as usize;
            for threads in [1, 2] {
                let (theirs, ours) = multithread_tract_scope(Executor::multithread(threads), || both(fast, input.clone()));
                assert_eq!(storage(&ours), storage(&theirs), "{} at {threads} threads", node.name);
            }
        }
        assert!(batched > 0 && int8 > 0, "the fixture has no batched ({batched}) or int8 ({int8}) pack");

        assert_same_output(optimized, swapped, s, &[1, 2]);
        set_threading_element_threshold(threshold);
    }
}
