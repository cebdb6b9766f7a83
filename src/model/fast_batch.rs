//! Batched matrix products of tract's optimized plans, one batch entry per thread.
//!
//! tract 0.23.9 runs a batched `OptMatMul` (the attention's `Q·Kᵀ` and `P·V`: one product per
//! head) as a loop over the batch, each product split across the pool on its own. A head's
//! product is small (196 × 64 × 196 ≈ 2.5 M multiply-adds in SigLIP base), so at 2 threads
//! the split costs what it saves: `Q·Kᵀ` took 12.8 ms per image at 1 thread and 11.8 at 2
//! (static int8 form, Zen 4; docs/profile-int8.md, "Packing and batches"). [`replace_batched`]
//! wraps each such node in a [`BatchParallelMatMul`], which hands whole batch entries to the
//! pool's threads, each running tract's own kernel and fused ops on one thread. Each entry's
//! arithmetic is the same as in tract's loop, so the output is bit-identical (tested).
use tract_linalg::mmm::{FusedSpec, MatMatMul, ScratchSpace};
use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, par_chunks_mut, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::format_err;
use tract_onnx::tract_core::internal::{EvalContext, EvalOp, Op, StaticName, TypedOp};
use tract_onnx::tract_core::ndarray::Dimension;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;

/// tract's batched `OptMatMul`, evaluated with the batch entries spread over the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchParallelMatMul {
    inner: OptMatMul,
}

/// Wraps every batched `OptMatMul` of an optimized `model` (concrete shapes, more than one
/// product) in a [`BatchParallelMatMul`]; returns how many.
pub fn replace_batched(model: &mut TypedModel) -> TractResult<usize> {
    super::swap::swap_nodes(model, |_, node| {
        let batched = node.op_as::<OptMatMul>().filter(|mm| !mm.trivial_path && batch_coords(mm).is_some_and(|c| c.len() > 1));
        Ok(batched.map(|mm| BatchParallelMatMul { inner: mm.clone() }))
    })
}

/// The output coordinates of each product of a batched matmul (its `m` and `n` axes at 0),
/// in tract's loop order; `None` for a symbolic output shape.
fn batch_coords(mm: &OptMatMul) -> Option<Vec<TVec<usize>>> {
    let mut looping: TVec<usize> = mm.c_fact.shape.as_concrete()?.into();
    for ax in [mm.c_m_axis, mm.c_n_axis].into_iter().flatten() {
        looping[ax] = 1;
    }
    Some(tract_onnx::tract_core::ndarray::indices(&*looping).into_iter().map(|c| c.slice().into()).collect())
}

impl BatchParallelMatMul {
    fn threads() -> usize {
        match current_tract_executor() {
            Executor::MultiThread(pool) => pool.current_num_threads(),
            _ => 1,
        }
    }

    /// The products for `coords` into `c`, one after the other on this thread, with tract's
    /// kernel and fused ops (as `OptMatMul::eval` resolves them for each coordinate).
    ///
    /// # Safety
    /// `c` is the output tensor of this op's shape; each coordinate's product writes only its
    /// own block of `c`, so calls with disjoint `coords` may run at once.
    unsafe fn run_coords(&self, inputs: &[TValue], c: &Tensor, coords: &[TVec<usize>], m: usize, n: usize) -> TractResult<()> {
        let mode = self.inner.mode_picker.pick(n)?;
        let mmm: &dyn MatMatMul = &*self.inner.mmm[mode];
        // SAFETY: a fresh scratch space of this kernel, used by this thread only
        let mut scratch: Box<dyn ScratchSpace> = unsafe { mmm.allocate_scratch_space() };
        for coord in coords {
            let uops: TVec<FusedSpec> = self.inner.micro_ops.iter().map(|op| op.resolve(inputs, coord, c, mmm, mode)).collect();
            // SAFETY: the fused ops were resolved against this op's inputs and output (caller)
            unsafe { mmm.run_with_scratch_space(m, n, &mut *scratch, &uops) }?;
        }
        Ok(())
    }
}

impl Op for BatchParallelMatMul {
    fn name(&self) -> StaticName {
        "BatchParallelMatMul".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.inner.info()
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for BatchParallelMatMul {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.eval(&EvalContext::out_of_plan(), inputs)?))
    }

    /// The 1-thread path is tract's op, which keeps scratch per session: free it as tract does.
    fn drop_session(&self, session: tract_onnx::tract_core::internal::SessionId, node_id: usize) {
        self.inner.drop_session(session, node_id)
    }

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let Some(coords) = batch_coords(&self.inner).filter(|_| Self::threads() > 1) else {
            return self.inner.eval(ctx, inputs);
        };
        let shape = self.inner.c_fact.shape.as_concrete().ok_or_else(|| format_err!("symbolic output shape"))?;
        let dim = |axis: Option<usize>| axis.map(|a| shape[a]).unwrap_or(1);
        let (m, n) = (dim(self.inner.c_m_axis), dim(self.inner.c_n_axis));
        // SAFETY: every element of c is written: the products cover every coordinate
        let c = unsafe { Tensor::uninitialized_dt(self.inner.c_fact.datum_type, shape)? };
        let mut entries: Vec<usize> = (0..coords.len()).collect();
        // one chunk of whole entries per pool task; inside, tract's kernels run single-threaded
        par_chunks_mut(&mut entries, 1, usize::MAX, |first, chunk| {
            let mine = &coords[first..first + chunk.len()];
            // SAFETY: c has the op's output shape, and the chunks' coordinates are disjoint
            multithread_tract_scope(Executor::SingleThread, || unsafe { self.run_coords(&inputs, &c, mine, m, n) })
        })?;
        Ok(tvec!(c.into_tvalue()))
    }
}

super::swap::typed_op_of_inner!(BatchParallelMatMul);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast_pack::{tests::assert_same_output, tiny_static_plan};

    /// The plan's embedding with the batched products spread over the pool is bit-identical to
    /// tract's own loop, at 2 and 3 threads (entries split evenly and not), and a 1-thread
    /// executor runs tract's op itself.
    #[test]
    fn batch_entries_in_parallel_give_tracts_result() {
        let (optimized, s) = tiny_static_plan();
        let mut swapped = optimized.clone();
        let batched = replace_batched(&mut swapped).unwrap();
        assert!(batched > 0, "the fixture has no batched matmul");
        assert_eq!(swapped.nodes().iter().filter(|n| n.op_is::<BatchParallelMatMul>()).count(), batched);
        // siglipd bench counts multiply-adds from the plan's cost model: the wrapper must keep them
        let fmas = |m: &TypedModel| -> TDim {
            m.nodes()
                .iter()
                .flat_map(|n| n.op.cost(&m.node_input_facts(n.id).unwrap()).unwrap())
                .filter(|(c, _)| matches!(c, tract_onnx::tract_core::internal::Cost::FMA(_)))
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(fmas(&swapped), fmas(&optimized));
        assert_same_output(optimized, swapped, s, &[1, 2, 3]);
    }
}
