//! Swapping nodes of an optimized tract plan for siglipd's own ops (`fast_cast`, `fast_pack`,
//! `fast_batch`): each replacement computes what the node it replaces computes, faster.
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{TypedModelPatch, TypedOp};

/// Replaces each node of `model` for which `replacement` gives an op (same inputs, same
/// output facts); returns how many were replaced. Run on an optimized model: tract's optimizer
/// knows its own ops (it fuses some into matrix products), not ours.
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
