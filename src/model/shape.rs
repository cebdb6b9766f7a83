//! The vision graph shaped for tract, on the ONNX protobuf: the two exact rewrites of
//! `tools/export_model.py::shape_vision_for_tract`, for vision towers that did not come from our
//! exporter (`siglipd model pull`: transformers.js's exports are torch's graph as written).
//!
//! - [`PATCH_EMBEDDING_MATMUL`]: the stride-p `Conv` of the patch embedding, followed by torch's
//!   `Reshape(B, C, H·W/p²)` and `Transpose(0, 2, 1)`, becomes patchify (Reshape → Transpose →
//!   Reshape into `[B, patches, 3·p·p]`) + MatMul + Add. torch's layout made tract carry the
//!   residual stream channel-major, so every LayerNorm reduced a strided axis.
//! - `mlp-split-N`: a `MatMul(x, W[in, out])` whose constant weight holds more than `hidden²`
//!   values (the MLP's fc1 and fc2) is cut into column blocks + `Concat`: tract ran 768×768
//!   weights at ≈ 30 GMAC/s but 768×3072 ones at ≈ 17 (per-node profile, docs/profile-int8.md).
//!
//! Both are the same sums per output value, blocked differently; `siglipd model pull` also runs
//! the graph before and after on one input and keeps the original if they differ
//! ([`probe_outputs`], [`outputs_agree`]). A graph that does not have the expected pattern is left as it is.
use std::collections::HashSet;

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// Name of the patch-embedding rewrite in the manifest's `vision.graph_shape`.
pub const PATCH_EMBEDDING_MATMUL: &str = "patch-embedding-matmul";
/// tract's fp32 kernels take 16 output columns per panel (x86 16×6, ARM 16×4 or 8×8).
const SPLIT_WIDTH_MULTIPLE: usize = 16;
/// `Concat` with a negative axis needs opset 11.
const MIN_OPSET_FOR_SPLIT: i64 = 11;

/// Rewrites `model`'s graph in place into the shape tract runs fastest; returns the names of the
/// rewrites applied (for the manifest's `vision.graph_shape.fp32`), empty if none applied.
///
/// `image_size` is the square input side in pixels (224 for base), `hidden_size` the vision
/// width (768): weights with more than `hidden_size²` values are split. A graph whose result
/// would read a value nobody defines is not rewritten (empty list): the rewrites assume torch's
/// patch-embedding pattern and are refused rather than half-applied.
pub fn shape_vision_for_tract(model: &mut ModelProto, image_size: usize, hidden_size: usize) -> Vec<String> {
    let Some(graph) = model.graph.as_ref() else { return Vec::new() };
    if hidden_size == 0 || image_size == 0 {
        return Vec::new();
    }
    let mut shaped = graph.clone();
    let opset = model.opset_import.iter().filter(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).max();
    let mut applied = Vec::new();
    // split first: the patch embedding's own MatMul (3·p² inputs) is not a Linear to cut
    let parts = if opset.unwrap_or(0) >= MIN_OPSET_FOR_SPLIT {
        split_wide_linears(&mut shaped, hidden_size * hidden_size)
    } else {
        Vec::new()
    };
    if patch_embedding_as_matmul(&mut shaped, image_size) {
        applied.push(PATCH_EMBEDDING_MATMUL.to_string());
    }
    if let Some(most) = parts.iter().max() {
        applied.push(format!("mlp-split-{most}"));
    }
    prune_unused(&mut shaped);
    if applied.is_empty() || !every_input_defined(&shaped) {
        return Vec::new();
    }
    model.graph = Some(shaped);
    applied
}

/// Runs a vision graph in tract on a fixed pseudo-random `[1, 3, image_size, image_size]` input;
/// returns every output as f32. Run it before and after [`shape_vision_for_tract`] and compare
/// with [`outputs_agree`].
///
/// Errors: tract cannot load, optimize or run the graph.
pub fn probe_outputs(model: &ModelProto, image_size: usize) -> TractResult<Vec<Vec<f32>>> {
    let input = probe_input(image_size);
    let mut parsed = tract_onnx::onnx().model_for_proto_model(model)?;
    // as the loader does: stored intermediate shapes may carry a symbolic batch
    super::encoder::forget_intermediate_shapes(&mut parsed)?;
    let runnable = parsed.with_input_fact(0, f32::fact(input.shape()).into())?.into_optimized()?.into_runnable()?;
    let out = runnable.run(tvec!(input.into()))?;
    out.into_iter().map(|t| Ok(t.into_tensor().cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
}

/// True when both runs have the same outputs, each within `1e-4` of its largest magnitude (the
/// rewrites only change how the sums are blocked; fp32 rounding stays far below that).
pub fn outputs_agree(before: &[Vec<f32>], after: &[Vec<f32>]) -> bool {
    before.len() == after.len()
        && before.iter().zip(after).all(|(x, y)| {
            let scale = x.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-4 * scale)
        })
}

/// A fixed pseudo-random image in the normalized range [-1, 1) (xorshift: no dependency on a
/// random crate's stream across versions).
fn probe_input(image_size: usize) -> Tensor {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<f32> = (0..3 * image_size * image_size)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    tract_ndarray::Array4::from_shape_vec((1, 3, image_size, image_size), values).expect("3·s² values").into_tensor()
}

/// `Conv(kernel = stride = p, no padding, one group)` → `Reshape` → `Transpose(0, 2, 1)` replaced
/// by patchify + MatMul + Add; false (graph untouched) when the pattern is not there.
fn patch_embedding_as_matmul(graph: &mut GraphProto, image_size: usize) -> bool {
    let convs: Vec<usize> = (0..graph.node.len()).filter(|&i| graph.node[i].op_type == "Conv").collect();
    let [conv_at] = convs[..] else { return false };
    let conv = graph.node[conv_at].clone();
    let [_, w_name, b_name] = &conv.input[..] else { return false };
    if conv.output.len() != 1 {
        return false;
    }
    let (Some(w), Some(_)) = (initializer(graph, w_name), initializer(graph, b_name)) else { return false };
    let Some(weights) = floats(w) else { return false };
    let Ok([out_ch, ch, kh, kw]) = <[usize; 4]>::try_from(w.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect::<Vec<_>>())
    else {
        return false;
    };
    if [out_ch, ch, kh, kw].contains(&0) {
        return false;
    }
    let plain = ints_attr(&conv, "strides") == Some(vec![kh as i64, kw as i64])
        && ints_attr(&conv, "pads").is_none_or(|p| p.iter().all(|&v| v == 0))
        && ints_attr(&conv, "dilations").is_none_or(|d| d.iter().all(|&v| v == 1))
        && int_attr(&conv, "group").unwrap_or(1) == 1
        && image_size.is_multiple_of(kh)
        && image_size.is_multiple_of(kw);
    if !plain {
        return false;
    }
    // torch also reads the Conv's shape (Shape → … → the Reshape's target): pruned afterwards
    let Some(reshape) = only_reader(graph, &conv.output[0], |n| n.op_type != "Shape") else { return false };
    if graph.node[reshape].op_type != "Reshape" {
        return false;
    }
    let Some(reshaped) = graph.node[reshape].output.first().cloned() else { return false };
    let Some(transpose) = only_reader(graph, &reshaped, |_| true) else { return false };
    if graph.node[transpose].op_type != "Transpose" || ints_attr(&graph.node[transpose], "perm") != Some(vec![0, 2, 1]) {
        return false;
    }
    let Some(embedded) = graph.node[transpose].output.first().cloned() else { return false };
    let (gh, gw, patch) = (image_size / kh, image_size / kw, ch * kh * kw);
    let base = format!("{}/patchify", conv.name.rsplit_once('/').map_or(conv.name.as_str(), |(head, _)| head));
    // weight [out, C·kh·kw] → [C·kh·kw, out]: a patch's values in the Conv weight's (C, kh, kw) order
    let mut transposed = vec![0f32; weights.len()];
    for o in 0..out_ch {
        for k in 0..patch {
            transposed[k * out_ch + o] = weights[o * patch + k];
        }
    }
    graph.initializer.extend([
        float_tensor(&format!("{base}.weight"), &[patch, out_ch], &transposed),
        int64_tensor(&format!("{base}.grid_shape"), &[-1, ch as i64, gh as i64, kh as i64, gw as i64, kw as i64]),
        int64_tensor(&format!("{base}.patches_shape"), &[-1, (gh * gw) as i64, patch as i64]),
    ]);
    let new = vec![
        node("Reshape", &[&conv.input[0], &format!("{base}.grid_shape")], &format!("{base}.grid"), &format!("{base}/Reshape"), vec![]),
        // [B, C, gh, p, gw, p] → [B, gh, gw, C, p, p]
        node(
            "Transpose",
            &[&format!("{base}.grid")],
            &format!("{base}.by_patch"),
            &format!("{base}/Transpose"),
            vec![ints("perm", &[0, 2, 4, 1, 3, 5])],
        ),
        node(
            "Reshape",
            &[&format!("{base}.by_patch"), &format!("{base}.patches_shape")],
            &format!("{base}.patches"),
            &format!("{base}/Reshape_1"),
            vec![],
        ),
        node(
            "MatMul",
            &[&format!("{base}.patches"), &format!("{base}.weight")],
            &format!("{base}.matmul"),
            &format!("{base}/MatMul"),
            vec![],
        ),
        node("Add", &[&format!("{base}.matmul"), b_name], &embedded, &format!("{base}/Add"), vec![]),
    ];
    replace_nodes(graph, &[conv_at, reshape, transpose], new);
    true
}

/// Splits each `MatMul(x, W[in, out])` with `in·out > max_values` into column blocks + Concat;
/// returns the block counts used.
fn split_wide_linears(graph: &mut GraphProto, max_values: usize) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut at = 0;
    while at < graph.node.len() {
        match split_one(graph, at, max_values) {
            Some((blocks, added)) => {
                counts.push(blocks);
                at += added;
            }
            None => at += 1,
        }
    }
    counts
}

/// Splits node `at` if it is a wide constant-weight MatMul; returns (blocks, nodes now in its place).
fn split_one(graph: &mut GraphProto, at: usize, max_values: usize) -> Option<(usize, usize)> {
    let n = &graph.node[at];
    if n.op_type != "MatMul" || !n.domain.is_empty() || n.input.len() != 2 || n.output.len() != 1 {
        return None;
    }
    let (x, w_name, out) = (n.input[0].clone(), n.input[1].clone(), n.output[0].clone());
    // new nodes are named after the node, or after its output when it has no name
    let name = if n.name.is_empty() { out.clone() } else { n.name.clone() };
    if initializer(graph, &x).is_some() || readers(graph, &w_name) != 1 || reads_the_pixels(graph, &x) || is_a_block(graph, &out) {
        return None;
    }
    let w = initializer(graph, &w_name)?;
    let [rows, cols] = w.dims[..] else { return None };
    let (rows, cols) = (usize::try_from(rows).ok()?, usize::try_from(cols).ok()?);
    if rows.checked_mul(cols)? <= max_values {
        return None;
    }
    let values = floats(w)?;
    let width = block_width(rows, cols, max_values);
    let starts: Vec<usize> = (0..cols).step_by(width).collect();
    if starts.len() < 2 {
        return None;
    }
    let mut new = Vec::new();
    let mut outs = Vec::new();
    for (p, &start) in starts.iter().enumerate() {
        let end = (start + width).min(cols);
        let block: Vec<f32> = (0..rows).flat_map(|r| values[r * cols + start..r * cols + end].iter().copied()).collect();
        let block_name = format!("{w_name}.block{p}");
        graph.initializer.push(float_tensor(&block_name, &[rows, end - start], &block));
        outs.push(format!("{out}.block{p}"));
        new.push(node("MatMul", &[&x, &block_name], &outs[p], &format!("{name}_block{p}"), vec![]));
    }
    let inputs: Vec<&str> = outs.iter().map(String::as_str).collect();
    new.push(node("Concat", &inputs, &out, &format!("{name}_concat"), vec![int("axis", -1)]));
    let added = new.len();
    replace_nodes(graph, &[at], new);
    Some((starts.len(), added))
}

/// Column width of the blocks a `rows × cols` weight is cut into: as few blocks as keep each
/// within `max_values`, rounded up to a multiple of 16 (the last block takes the rest).
/// 768×3072 → 768; 3072×768 → 192; a prime width 67 → 32.
fn block_width(rows: usize, cols: usize, max_values: usize) -> usize {
    let blocks = (rows * cols).div_ceil(max_values);
    cols.div_ceil(blocks).div_ceil(SPLIT_WIDTH_MULTIPLE) * SPLIT_WIDTH_MULTIPLE
}

/// Puts `new` where the earliest of `old` was and drops `old` (order kept: `new` reads only what
/// that node could read, or initializers).
fn replace_nodes(graph: &mut GraphProto, old: &[usize], new: Vec<NodeProto>) {
    let first = *old.iter().min().expect("at least one node");
    let mut nodes = Vec::with_capacity(graph.node.len() + new.len());
    let mut new = Some(new);
    for (i, n) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        if i == first {
            nodes.extend(new.take().expect("once"));
        }
        if !old.contains(&i) {
            nodes.push(n);
        }
    }
    graph.node = nodes;
}

/// Drops nodes whose outputs nobody reads, then initializers no node reads.
fn prune_unused(graph: &mut GraphProto) {
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    loop {
        let used: HashSet<&str> =
            graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).chain(outputs.iter().map(String::as_str)).collect();
        let keep: Vec<bool> = graph.node.iter().map(|n| n.output.iter().any(|o| used.contains(o.as_str()))).collect();
        if keep.iter().all(|&k| k) {
            break;
        }
        let mut flags = keep.into_iter();
        graph.node.retain(|_| flags.next().unwrap_or(true));
    }
    let used: HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    let dropped: HashSet<String> = graph.initializer.iter().filter(|t| !used.contains(&t.name)).map(|t| t.name.clone()).collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    // older files also list initializers as graph inputs (IR < 4): those go with them
    graph.input.retain(|i| !dropped.contains(&i.name));
}

/// Every node input (and graph output) is a graph input, an initializer or an earlier node's output.
fn every_input_defined(graph: &GraphProto) -> bool {
    let mut defined: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    defined.insert("");
    for n in &graph.node {
        if !n.input.iter().all(|i| defined.contains(i.as_str())) {
            return false;
        }
        defined.extend(n.output.iter().map(String::as_str));
    }
    graph.output.iter().all(|o| defined.contains(o.name.as_str()))
}

/// `value` is read only by a `Concat`: the MatMul is a block of an already-split Linear (the
/// exporter rounds block widths up to 16, so a block may itself hold a little more than hidden²).
fn is_a_block(graph: &GraphProto, value: &str) -> bool {
    let readers: Vec<&NodeProto> = graph.node.iter().filter(|n| n.input.iter().any(|i| i == value)).collect();
    !readers.is_empty() && readers.iter().all(|n| n.op_type == "Concat")
}

/// `value` is a graph input or made from one by reshapes, transposes and casts only: the patch
/// embedding's MatMul in an already-shaped graph (3·p² inputs; not a Linear to cut).
fn reads_the_pixels(graph: &GraphProto, value: &str) -> bool {
    let mut value = value;
    loop {
        if graph.input.iter().any(|i| i.name == value) {
            return true;
        }
        let producer = graph.node.iter().find(|n| n.output.iter().any(|o| o == value));
        match producer {
            Some(n) if matches!(n.op_type.as_str(), "Reshape" | "Transpose" | "Cast") => value = &n.input[0],
            _ => return false,
        }
    }
}

fn initializer<'g>(graph: &'g GraphProto, name: &str) -> Option<&'g TensorProto> {
    graph.initializer.iter().find(|t| t.name == name)
}

fn readers(graph: &GraphProto, value: &str) -> usize {
    graph.node.iter().map(|n| n.input.iter().filter(|i| *i == value).count()).sum()
}

/// The one node reading `value` among those `keep` accepts.
fn only_reader(graph: &GraphProto, value: &str, keep: impl Fn(&NodeProto) -> bool) -> Option<usize> {
    let found: Vec<usize> =
        (0..graph.node.len()).filter(|&i| graph.node[i].input.iter().any(|v| v == value) && keep(&graph.node[i])).collect();
    match found[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// A float tensor's values (raw little-endian bytes or `float_data`); None for other types and
/// for weights stored outside the file.
fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 || t.data_location == Some(DataLocation::External as i32) {
        return None;
    }
    let count: usize = t.dims.iter().map(|&d| usize::try_from(d).ok()).product::<Option<usize>>()?;
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        t.float_data.clone()
    };
    (values.len() == count).then_some(values)
}

fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, name: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        attribute,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: values.to_vec(), ..Default::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

fn ints_attr(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

fn int_attr(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_widths_match_the_exporter() {
        // the same table as tools/tests/test_export.py::test_block_width
        for (rows, cols, width) in [(768, 3072, 768), (3072, 768, 192), (768, 3074, 624)] {
            assert_eq!(block_width(rows, cols, 768 * 768), width, "{rows}x{cols}");
        }
        assert_eq!(block_width(32, 64, 32 * 32), 32);
        assert_eq!(block_width(32, 67, 32 * 32), 32);
    }

    #[test]
    fn a_graph_without_the_pattern_is_left_alone() {
        let mut model = ModelProto {
            opset_import: vec![tract_onnx::pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(GraphProto { node: vec![node("Relu", &["x"], "y", "relu", vec![])], ..Default::default() }),
            ..Default::default()
        };
        let before = model.clone();
        assert!(shape_vision_for_tract(&mut model, 224, 768).is_empty());
        assert_eq!(model, before);
    }

    #[test]
    fn outputs_agree_within_rounding_only() {
        let a = vec![vec![1.0, -2.0, 3.5], vec![0.25]];
        assert!(outputs_agree(&a, &a));
        let rounded = vec![vec![1.0 + 1e-6, -2.0, 3.5], vec![0.25]];
        assert!(outputs_agree(&a, &rounded));
        let moved = vec![vec![1.0 + 1e-3, -2.0, 3.5], vec![0.25]];
        assert!(!outputs_agree(&a, &moved));
        assert!(!outputs_agree(&a, &a[..1]));
        assert!(!outputs_agree(&a, &[vec![1.0, -2.0], vec![0.25]]));
    }

    #[test]
    fn a_rewrite_that_leaves_a_dangling_input_is_refused() {
        let graph = GraphProto {
            node: vec![node("Relu", &["x"], "y", "relu", vec![]), node("Add", &["y", "gone"], "z", "add", vec![])],
            input: vec![tract_onnx::pb::ValueInfoProto { name: "x".into(), ..Default::default() }],
            output: vec![tract_onnx::pb::ValueInfoProto { name: "z".into(), ..Default::default() }],
            ..Default::default()
        };
        assert!(!every_input_defined(&graph));
        let mut fine = graph.clone();
        fine.node[1].input[1] = "x".into();
        assert!(every_input_defined(&fine));
    }

    fn torch_graph_fixture() -> ModelProto {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-torch-graph/vision_fp32.onnx");
        tract_onnx::onnx().proto_model_for_path(path).expect("fixture")
    }

    /// the tiny fixture's geometry (tests/fixtures/tiny/siglip.json)
    const TINY_IMAGE: usize = 224;
    const TINY_HIDDEN: usize = 32;

    #[test]
    fn nameless_nodes_get_unique_names_from_their_outputs() {
        let mut model = torch_graph_fixture();
        let before = probe_outputs(&model, TINY_IMAGE).unwrap();
        for n in &mut model.graph.as_mut().unwrap().node {
            n.name.clear();
        }
        assert_eq!(shape_vision_for_tract(&mut model, TINY_IMAGE, TINY_HIDDEN), ["patch-embedding-matmul", "mlp-split-2"]);
        let named: Vec<&str> = model.graph.as_ref().unwrap().node.iter().map(|n| n.name.as_str()).filter(|n| !n.is_empty()).collect();
        assert_eq!(named.len(), named.iter().collect::<HashSet<_>>().len(), "duplicate node names");
        assert!(outputs_agree(&before, &probe_outputs(&model, TINY_IMAGE).unwrap()));
    }

    #[test]
    fn initializers_listed_as_inputs_leave_with_them() {
        let mut model = torch_graph_fixture();
        let graph = model.graph.as_mut().unwrap();
        let listed: Vec<tract_onnx::pb::ValueInfoProto> =
            graph.initializer.iter().map(|t| tract_onnx::pb::ValueInfoProto { name: t.name.clone(), ..Default::default() }).collect();
        graph.input.extend(listed);
        assert!(!shape_vision_for_tract(&mut model, TINY_IMAGE, TINY_HIDDEN).is_empty());
        let graph = model.graph.as_ref().unwrap();
        let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let dangling: Vec<&str> =
            graph.input.iter().map(|i| i.name.as_str()).filter(|n| *n != "pixel_values" && !inits.contains(n)).collect();
        assert!(dangling.is_empty(), "{dangling:?}");
        probe_outputs(&model, TINY_IMAGE).unwrap();
    }

    #[test]
    fn degenerate_sizes_are_left_alone() {
        let mut model = torch_graph_fixture();
        let before = model.clone();
        assert!(shape_vision_for_tract(&mut model, TINY_IMAGE, 0).is_empty());
        assert!(shape_vision_for_tract(&mut model, 0, TINY_HIDDEN).is_empty());
        assert_eq!(model, before);
    }

    #[test]
    fn blocks_of_a_split_linear_are_not_split_again() {
        // x·W (4×40 > 8²) feeding a Concat is a block the exporter made; the same MatMul read by
        // an Add is a Linear to cut (into 16 + 16 + 8 columns)
        let w = float_tensor("w", &[4, 40], &[0.5; 160]);
        let graph = |reader: &str| GraphProto {
            node: vec![
                node("MatMul", &["x", "w"], "y", "mm", vec![]),
                node(reader, &["y", "y"], "z", "r", if reader == "Concat" { vec![int("axis", -1)] } else { vec![] }),
            ],
            initializer: vec![w.clone()],
            input: vec![tract_onnx::pb::ValueInfoProto { name: "x".into(), ..Default::default() }],
            output: vec![tract_onnx::pb::ValueInfoProto { name: "z".into(), ..Default::default() }],
            ..Default::default()
        };
        assert!(is_a_block(&graph("Concat"), "y"));
        assert!(!is_a_block(&graph("Add"), "y"));
        let mut g = graph("Add");
        // x is a graph input: give the MatMul a computed input so it is not taken for the pixels
        g.node.insert(0, node("Relu", &["x"], "h", "relu", vec![]));
        g.node[1].input[0] = "h".into();
        assert_eq!(split_wide_linears(&mut g, 64), vec![3]);
        let mut g = graph("Concat");
        g.node.insert(0, node("Relu", &["x"], "h", "relu", vec![]));
        g.node[1].input[0] = "h".into();
        assert!(split_wide_linears(&mut g, 64).is_empty());
    }
}
