//! Swapping nodes of an optimized tract plan for siglipd's own ops (`fast_cast`, `fast_pack`,
//! `fast_batch`): each replacement computes what the node it replaces computes, faster.
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{TypedModelPatch, TypedOp};

/// Replaces each node of `model` for which `replacement` gives an op (same inputs, same
/// output facts); returns how many were replaced. Run on an optimized model: tract's optimizer
/// knows its own ops (it fuses some into matrix products), not ours.
/// `TypedOp` for a wrapper of one of tract's ops held in a field `inner`: output facts, axes
/// and cost model are the wrapped op's (a wrapper that dropped `cost` made `siglipd bench`
/// undercount multiply-adds), only the evaluation is the wrapper's.
macro_rules! typed_op_of_inner {
    ($wrapper:ty) => {
        impl tract_onnx::tract_core::internal::TypedOp for $wrapper {
            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                self.inner.output_facts(inputs)
            }

            fn axes_mapping(
                &self,
                inputs: &[&TypedFact],
                outputs: &[&TypedFact],
            ) -> TractResult<tract_onnx::tract_core::internal::AxesMapping> {
                self.inner.axes_mapping(inputs, outputs)
            }

            fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(tract_onnx::tract_core::internal::Cost, TDim)>> {
                self.inner.cost(inputs)
            }

            fn as_op(&self) -> &dyn tract_onnx::tract_core::internal::Op {
                self
            }

            fn as_op_mut(&mut self) -> &mut dyn tract_onnx::tract_core::internal::Op {
                self
            }
        }
    };
}
pub(crate) use typed_op_of_inner;

pub fn swap_nodes<O: TypedOp>(
    model: &mut TypedModel,
    mut replacement: impl FnMut(&TypedModel, &TypedNode) -> TractResult<Option<O>>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = replacement(model, node)? else { continue };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        model.compact()?; // drops the replaced nodes, which the patches leave unreachable
    }
    Ok(replaced)
}
