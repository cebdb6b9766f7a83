//! Element type casts for tract's optimized plans, vectorized and split across tract's pool.
//!
//! tract 0.23.9 evaluates `Cast` one scalar conversion at a time on the calling thread
//! (`Tensor::cast_to_dt` → `natural_cast`). In the static int8 form every matmul input is cast
//! f32 → i8 after its quantization chain and every integer matmul output i32 → f32 before its
//! rescale: those casts were 9 % of an image on a Zen 4 at 1 thread and did not shrink at 2
//! (docs/profile-int8.md, "Zen 4 with VNNI"). [`replace_casts`] swaps each such `Cast` of an optimized plan
//! for a [`FastCast`] node, which computes the same values as Rust's `as` (what tract's `Cast`
//! does): for f32 → i8 truncation toward zero, saturation to [-128, 127] and NaN → 0; for
//! i32 → f32 rounding to nearest, ties to even.
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::format_err;
use tract_onnx::tract_core::internal::{AxesMapping, EvalContext, EvalOp, Op, StaticName, TypedOp};
use tract_onnx::tract_core::ops::cast::Cast;

/// One of the casts tract runs slowly, with the same results as tract's `Cast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FastCast {
    /// f32 → i8 (`x as i8`): a quantized activation on its way into an integer matmul.
    F32ToI8,
    /// i32 → f32 (`x as f32`): an integer matmul's accumulators on their way to the rescale.
    I32ToF32,
}

impl FastCast {
    /// The replacement for a cast from `from` to `to`, if there is one.
    pub fn for_types(from: DatumType, to: DatumType) -> Option<Self> {
        match (from, to) {
            (DatumType::F32, DatumType::I8) => Some(Self::F32ToI8),
            (DatumType::I32, DatumType::F32) => Some(Self::I32ToF32),
            _ => None,
        }
    }

    fn output_type(self) -> DatumType {
        match self {
            Self::F32ToI8 => DatumType::I8,
            Self::I32ToF32 => DatumType::F32,
        }
    }
}

/// Replaces every `Cast` of `model` that [`FastCast::for_types`] covers; returns how many.
/// Run on an optimized model: the optimizer knows `Cast` (it fuses some into matrix products),
/// not [`FastCast`].
pub fn replace_casts(model: &mut TypedModel) -> TractResult<usize> {
    super::swap::swap_nodes(model, |model, node| {
        let Some(cast) = node.op_as::<Cast>() else { return Ok(None) };
        Ok(FastCast::for_types(model.outlet_fact(node.inputs[0])?.datum_type, cast.to))
    })
}

impl Op for FastCast {
    fn name(&self) -> StaticName {
        match self {
            Self::F32ToI8 => "FastCast<f32,i8>".into(),
            Self::I32ToF32 => "FastCast<i32,f32>".into(),
        }
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for FastCast {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.eval(&EvalContext::out_of_plan(), inputs)?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let [input] = &*inputs else {
            return Err(format_err!("{} takes one input, got {}", self.name(), inputs.len()));
        };
        let output = match self {
            Self::F32ToI8 => map_parallel(input, f32_to_i8)?,
            Self::I32ToF32 => map_parallel(input, i32_to_f32)?,
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for FastCast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output_type().fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(&self, inputs: &[&TypedFact], outputs: &[&TypedFact]) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }
}

/// `out[i] = f(in[i])` for a whole tensor, in chunks across tract's pool when it has one
/// (`tract_linalg::multithread::par_chunks_mut`, which keeps small tensors on one thread).
fn map_parallel<A: Datum + Copy, B: Datum + Copy>(input: &Tensor, f: fn(&[A], &mut [B])) -> TractResult<Tensor> {
    let plain = input.try_as_plain_ram()?;
    let src = plain.as_slice::<A>()?;
    // not zeroed first (a pass over the output for nothing): `f` writes every element, since
    // the chunks cover the whole slice
    // SAFETY: B is a plain number type (f32 or i8), valid for any bits, and is all written below
    let mut output = unsafe { Tensor::uninitialized::<B>(input.shape())? };
    {
        let mut out_plain = output.try_as_plain_ram_mut()?;
        let dst = out_plain.as_slice_mut::<B>()?;
        let len = dst.len();
        tract_linalg::multithread::par_chunks_mut(dst, 1, len, |first, chunk| {
            f(&src[first..first + chunk.len()], chunk);
            Ok(())
        })?;
    }
    Ok(output)
}

/// `x as i8` for each element, written so that the compiler vectorizes it: the clamp and NaN → 0
/// are min/max/select, and what is left is a truncating conversion of values known to be in
/// range (`as` itself compiles to a saturating conversion with fix-ups that LLVM does not
/// vectorize well: 0.66 ns per element against 0.13 here with AVX2, Zen 4, release build). In a
/// dev build (our crate at opt-level 0) this loop is slower than tract's optimized `Cast`:
/// benchmark and deploy release builds.
fn f32_to_i8(src: &[f32], dst: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above)
        return unsafe { f32_to_i8_avx2(src, dst) };
    }
    f32_to_i8_portable(src, dst)
}

#[inline(always)]
#[allow(clippy::manual_clamp)] // max/min, unlike clamp, map NaN to a bound (then to 0 below) and vectorize as maxps/minps
fn f32_to_i8_portable(src: &[f32], dst: &mut [i8]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        // f32::max/min return the other operand for NaN, so y is finite; x != x is NaN → 0
        let y = x.max(-128.0).min(127.0);
        let y = if x.is_nan() { 0.0 } else { y };
        // SAFETY: y is finite and in [-128, 127], so it truncates to an i32 without overflow
        *d = unsafe { y.to_int_unchecked::<i32>() } as i8;
    }
}

/// The same loop compiled for AVX2: 8 lanes instead of SSE2's 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn f32_to_i8_avx2(src: &[f32], dst: &mut [i8]) {
    f32_to_i8_portable(src, dst)
}

/// `x as f32` for each element.
fn i32_to_f32(src: &[i32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = x as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 → i8 edge against Rust's `as` (tract's `Cast`): ties, one ulp either side of
    /// the saturation bounds, ±0, ±∞, NaN, subnormals, and a sweep of ordinary values.
    #[test]
    fn f32_to_i8_equals_as_everywhere() {
        let mut xs = vec![0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MIN_POSITIVE / 2.0, 1e30, -1e30];
        for b in [-129.0f32, -128.0, -127.5, -0.5, 0.5, 126.5, 127.0, 127.5, 128.0] {
            xs.extend([b, f32::from_bits(b.to_bits() + 1), f32::from_bits(b.to_bits() - 1)]);
        }
        xs.extend((-3000..3000).map(|i| i as f32 * 0.0917));
        let mut got = vec![0i8; xs.len()];
        f32_to_i8(&xs, &mut got);
        let mut portable = vec![0i8; xs.len()];
        f32_to_i8_portable(&xs, &mut portable);
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(got[i], x as i8, "{x:e}");
            assert_eq!(portable[i], x as i8, "{x:e}");
        }
    }

    #[test]
    fn i32_to_f32_equals_as() {
        let xs: Vec<i32> = [0, 1, -1, i32::MAX, i32::MIN, (1 << 24) + 1, -(1 << 24) - 3].into_iter().chain(-5000..5000).collect();
        let mut got = vec![0f32; xs.len()];
        i32_to_f32(&xs, &mut got);
        assert!(xs.iter().zip(&got).all(|(&x, &y)| y.to_bits() == (x as f32).to_bits()));
    }

    /// The replacement in a plan: same tensor as tract's `Cast`, and the node really swapped.
    #[test]
    fn replaced_cast_gives_tract_casts_values() {
        let xs: Vec<f32> = (-70_000..70_000).map(|i| i as f32 * 0.0031).chain([f32::NAN, 1e9, -1e9]).collect();
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([xs.len()])).unwrap();
        let y = model.wire_node("cast", Cast { to: DatumType::I8 }, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        let want = model.clone().into_runnable().unwrap().run(tvec!(tensor1(&xs).into())).unwrap();
        assert_eq!(replace_casts(&mut model).unwrap(), 1);
        let out = model.output_outlets().unwrap()[0];
        assert!(model.node(out.node).op_is::<FastCast>());
        assert!(!model.nodes().iter().any(|n| n.op_is::<Cast>()), "the replaced Cast is still in the model");
        let got = model.into_runnable().unwrap().run(tvec!(tensor1(&xs).into())).unwrap();
        assert_eq!(*got[0], *want[0]);
    }
}
