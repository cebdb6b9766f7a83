"""Tests for tools/export_model.py and the committed fixtures (tiny models only, CPU).

Run: .venv/bin/python -m pytest tools/tests -q
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1]
REPO = TOOLS.parent
FIX = REPO / "tests" / "fixtures"
sys.path.insert(0, str(TOOLS))
import export_model as em  # noqa: E402

warnings.filterwarnings("ignore")

MANIFEST_KEYS = {
    "format", "format_version", "model_type", "source", "created_by", "versions", "image_size", "image_mean",
    "image_std", "rescale_factor", "resample", "max_text_length", "pad_id", "eos_id", "text_preprocessing",
    "embed_dim", "logit_scale", "logit_bias", "vision", "text", "tokenizer", "sha256",
}


def run_export(*args):
    return subprocess.run([sys.executable, str(TOOLS / "export_model.py"), *args], capture_output=True, text=True, timeout=600)


def ort_run(path: Path, name: str, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]


def build_tiny_checkpoint(tmp_path_factory, trained_like: bool):
    """A tiny random SigLIP checkpoint built independently of export_model's --random path
    (different seed, logit scale/bias set by hand), save_pretrained into a tmp dir."""
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipTokenizer

    d = tmp_path_factory.mktemp("ckpt")
    sp = em.train_tokenizer(tmp_path_factory.mktemp("sp"))
    tok = SiglipTokenizer(str(sp))
    tok.save_pretrained(str(d))
    (d / "preprocessor_config.json").write_text(json.dumps(em.PREPROCESSOR_CONFIG_LIKE_REAL))
    cfg = SiglipConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=1, eos_token_id=1),
        vision_config=dict(image_size=224, patch_size=32, hidden_size=24, intermediate_size=48,
                           num_hidden_layers=1, num_attention_heads=2),
    )
    torch.manual_seed(123)
    model = SiglipModel(cfg).eval()
    if trained_like:
        em.give_trained_like_affines(model)
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
        model.logit_bias.fill_(-1.25)
    model.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Non-zero biases and LayerNorm affines: the graph rewrites must carry them."""
    return build_tiny_checkpoint(tmp_path_factory, trained_like=True)


@pytest.fixture(scope="module")
def tiny_checkpoint_init(tmp_path_factory):
    """transformers' initial values (zero biases, unit LayerNorm): this 1-layer, 24-wide model
    with trained-like affines loses the static form's parity gate on every matmul, so the
    static test needs this one to have integer matmuls left to check."""
    return build_tiny_checkpoint(tmp_path_factory, trained_like=False)


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    r = run_export("--from", str(tiny_checkpoint), "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


def test_manifest(exported, tiny_checkpoint):
    import torch
    from safetensors.torch import load_file

    out, _ = exported
    man = json.loads((out / "siglip.json").read_text())
    assert set(man) == MANIFEST_KEYS
    assert man["format"] == "siglipd-bundle" and man["format_version"] == 1 and man["model_type"] == "siglip"
    assert man["source"] == str(tiny_checkpoint)
    assert man["image_size"] == 224 and man["resample"] == "bicubic"
    assert man["image_mean"] == [0.5] * 3 and man["image_std"] == [0.5] * 3
    assert man["rescale_factor"] == pytest.approx(1 / 255)
    assert (man["max_text_length"], man["pad_id"], man["eos_id"], man["embed_dim"]) == (64, 1, 1, 24)
    w = load_file(str(tiny_checkpoint / "model.safetensors"))
    assert man["logit_scale"] == pytest.approx(float(w["logit_scale"].to(torch.float64)), abs=1e-7)
    assert man["logit_bias"] == pytest.approx(float(w["logit_bias"].to(torch.float64)), abs=1e-7)
    assert man["vision"]["files"] == {"fp32": "vision_fp32.onnx", "int8": "vision_int8.onnx"}
    tp = man["text_preprocessing"]
    assert tp["lowercase"] is True and tp["strip_punctuation"] is True and tp["collapse_whitespace"] is True
    files = {p.name for p in out.iterdir()} - {"siglip.json"}
    assert set(man["sha256"]) == files
    for name, digest in man["sha256"].items():
        assert em.sha256_file(out / name) == digest, name
    for f in list(man["vision"]["files"].values()) + list(man["text"]["files"].values()) + [man["tokenizer"]]:
        assert (out / f).is_file()


def test_onnx_matches_torch(exported, tiny_checkpoint):
    import torch
    from PIL import Image
    from transformers import SiglipModel

    out, _ = exported
    model = SiglipModel.from_pretrained(str(tiny_checkpoint)).eval()
    tok = em.load_slow_tokenizer(tiny_checkpoint)
    proc = em.pil_image_processor(tiny_checkpoint)
    imgs = [Image.open(em.skimage_data_dir() / n).convert("RGB") for n in ("chelsea.png", "rocket.jpg", "page.png")]
    pv = proc(images=imgs, return_tensors="pt")["pixel_values"]
    ids = torch.tensor([tok(p, padding="max_length", max_length=64, truncation=True)["input_ids"] for p in em.PROMPTS[:3]])
    with torch.no_grad():
        ref_i = model.get_image_features(pixel_values=pv).pooler_output.numpy()
        ref_t = model.get_text_features(input_ids=ids).pooler_output.numpy()
    np.testing.assert_allclose(ort_run(out / "vision_fp32.onnx", "pixel_values", pv.numpy()), ref_i, atol=1e-4)
    np.testing.assert_allclose(ort_run(out / "text_fp32.onnx", "input_ids", ids.numpy()), ref_t, atol=1e-4)
    i8 = ort_run(out / "vision_int8.onnx", "pixel_values", pv.numpy())
    assert em.cosine_rows(i8.astype(np.float64), ref_i.astype(np.float64)).min() >= 0.99
    if (out / "text_int8.onnx").exists():
        t8 = ort_run(out / "text_int8.onnx", "input_ids", ids.numpy())
        assert em.cosine_rows(t8.astype(np.float64), ref_t.astype(np.float64)).min() >= 0.99


def test_vision_graph_shaped_for_tract(exported):
    """The patch embedding is a MatMul (no Conv), each MLP Linear is cut into column blocks of at
    most hidden² weights, and the manifest says so; test_onnx_matches_torch checks the result."""
    import onnx

    out, _ = exported
    man = json.loads((out / "siglip.json").read_text())
    assert man["vision"]["graph_shape"] == {"fp32": ["patch-embedding-matmul", "mlp-split-2"],
                                             "int8": ["patch-embedding-matmul"]}
    i8 = onnx.load(str(out / "vision_int8.onnx"))
    assert not [n for n in i8.graph.node if n.op_type == "Concat" and n.name.endswith("_concat")]
    m = onnx.load(str(out / "vision_fp32.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "Conv" not in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    linear = [inits[n.input[1]] for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    patch = [w for w in linear if w.shape == (3 * 32 * 32, 24)]
    assert len(patch) == 1, "the patch embedding MatMul [3·32·32, 24]"
    # blocks are as few as keep each near hidden² values, widths rounded up to 16 columns:
    # fc1 (24→48) as 32 + 16 columns, fc2 (48→24) as 16 + 8
    widths = sorted(w.shape for w in linear if w.shape[0] != 3 * 32 * 32)
    assert (24, 32) in widths and (24, 16) in widths and (48, 16) in widths and (48, 8) in widths, widths
    # fc1 and fc2 of the one encoder layer and of the pooling head: two blocks each
    concats = [n for n in m.graph.node if n.op_type == "Concat" and n.name.endswith("_concat")]
    assert len(concats) == 4 and all(len(n.input) == 2 for n in concats)


def test_random_checkpoints_have_trained_like_affines(tmp_path):
    """`--random` checkpoints leave no LayerNorm affine or bias at its no-op initial value
    (tract would drop it, timing a cheaper graph than a trained model's)."""
    from safetensors.numpy import load_file

    em.make_random_checkpoint("tiny", 7, tmp_path)
    w = load_file(str(tmp_path / "model.safetensors"))
    for name, t in w.items():
        if name.endswith(".bias") or name.endswith("in_proj_bias"):
            assert np.abs(t).max() > 0, f"{name} is all zero"
        if "norm" in name and name.endswith(".weight"):
            assert np.abs(t - 1).max() > 0, f"{name} is all one"


def test_layers_option_keeps_the_shape_and_needs_random(tmp_path):
    """`--layers N`: the stand-ins tools/arm_cost.py counts have the size's layer shape, N deep."""
    em.make_random_checkpoint("tiny", 7, tmp_path / "ckpt", layers=1)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["vision_config"]["num_hidden_layers"] == 1 and cfg["text_config"]["num_hidden_layers"] == 1
    assert cfg["vision_config"]["hidden_size"] == 32 and cfg["vision_config"]["intermediate_size"] == 64
    for args in (["--from", str(tmp_path / "ckpt"), "--layers", "1"], ["--random", "tiny", "--layers", "0"]):
        r = run_export(*args, "--out", str(tmp_path / "o"))
        assert r.returncode == 2 and "--layers needs --random and at least 1" in r.stderr, r.stderr


def test_untouched_graph_shape_option(tiny_checkpoint, tmp_path):
    """--graph-shape none writes the graph as torch does (for A/B timing): a Conv, no blocks."""
    import onnx

    r = run_export("--from", str(tiny_checkpoint), "--out", str(tmp_path / "b"), "--graph-shape", "none")
    assert r.returncode == 0, r.stdout + r.stderr
    man = json.loads((tmp_path / "b" / "siglip.json").read_text())
    assert "graph_shape" not in man["vision"] or man["vision"]["graph_shape"] == {}
    assert "Conv" in [n.op_type for n in onnx.load(str(tmp_path / "b" / "vision_fp32.onnx")).graph.node]


@pytest.mark.parametrize("rows, cols, limit, width", [
    (768, 3072, 768 * 768, 768),   # SigLIP base fc1: 4 blocks of 768
    (3072, 768, 768 * 768, 192),   # fc2: 4 blocks of 192
    (32, 64, 32 * 32, 32),         # the tiny fixture
    (32, 67, 32 * 32, 32),         # a prime width: 32 + 32 + 3, not 67 one-column blocks
    (768, 3074, 768 * 768, 624),   # 5 blocks (4 × 624 + 578), not 29 of 106
])
def test_block_width(rows, cols, limit, width):
    assert em._block_width(rows, cols, limit) == width


def test_shaping_leaves_other_graphs_alone():
    """A Conv that is not a patch embedding (padding) and small Linears are not rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 2, 2), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    lin = numpy_helper.from_array(np.ones((4, 4), np.float32), "lin")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("MatMul", ["t", "lin"], ["y"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w, b, lin])
    m = helper.make_model(g)
    before = m.SerializeToString()
    assert em.shape_vision_for_tract(m, 8, 4) == []
    assert m.SerializeToString() == before


def test_int8_graph_form(exported):
    import onnx

    out, _ = exported
    m = onnx.load(str(out / "vision_int8.onnx"))
    inits = {i.name: i for i in m.graph.initializer}
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert dq, "no DequantizeLinear nodes"
    dq_out = {n.output[0] for n in dq}
    consumers = [n for n in m.graph.node if set(n.input) & dq_out]
    assert consumers and all(n.op_type in ("MatMul", "Gemm") for n in consumers)
    for n in dq:
        assert inits[n.input[0]].data_type == onnx.TensorProto.INT8
        assert len(inits[n.input[1]].dims) == 1  # per-channel scales
        assert not any(onnx.numpy_helper.to_array(inits[n.input[2]]))  # zero point 0
    assert not any(n.op_type in ("QuantizeLinear", "QLinearMatMul", "MatMulInteger") for n in m.graph.node)


def test_tokenizer_json_matches_slow(exported, tiny_checkpoint):
    from tokenizers import Tokenizer

    out, _ = exported
    fast = Tokenizer.from_file(str(out / "tokenizer.json"))
    tok = em.load_slow_tokenizer(tiny_checkpoint)
    man = json.loads((out / "siglip.json").read_text())
    for s in em.TRICKY_STRINGS + ["Another Photo, of: a DOG!", "  \t x \u2581 y  "]:
        canonical = em.canonicalize(s, man["text_preprocessing"]["lowercase"])
        assert fast.encode(canonical).ids == tok(s)["input_ids"], s
        assert em.pad_ids(fast.encode(canonical).ids, 1, 1) == tok(s, padding="max_length", max_length=64, truncation=True)["input_ids"]


def test_manifest_canonicalization_rules_are_complete():
    """The rules recorded in the manifest, applied literally, equal SiglipTokenizer.canonicalize_text."""
    man = json.loads((FIX / "tiny" / "siglip.json").read_text())
    tp = man["text_preprocessing"]
    tok = em.load_slow_tokenizer(FIX / "tiny-checkpoint")

    def apply(s):
        for a, b in tp["replace_chars"].items():
            s = s.replace(a, b)
        s = s.lower() if tp["lowercase"] else s
        s = "".join(c for c in s if c not in tp["punctuation_chars"])
        ws, res, prev = set(tp["whitespace_chars"]), [], False
        for c in s:
            if c in ws:
                if not prev:
                    res.append(" ")
                prev = True
            else:
                res.append(c)
                prev = False
        return "".join(res).strip("".join(ws))

    for s in em.TRICKY_STRINGS:
        assert apply(s) == tok.canonicalize_text(s.replace("\u2581", " ")), s


def test_committed_goldens_reproducible():
    import torch
    from transformers import SiglipModel

    g = json.loads((FIX / "golden" / "golden.json").read_text())
    ckpt = FIX / "tiny-checkpoint"
    model = SiglipModel.from_pretrained(str(ckpt)).eval()
    tok = em.load_slow_tokenizer(ckpt)
    proc = em.pil_image_processor(ckpt)
    assert g["reference"]["image_processor_class"] == type(proc).__name__ == "SiglipImageProcessorPil"
    assert g["prompts"] == [g["template"].format(label) for label in g["labels"]]
    ids = [tok(p, padding="max_length", max_length=64, truncation=True)["input_ids"] for p in g["prompts"]]
    assert ids == g["prompt_ids"]
    for case in g["tokenization"]:
        assert tok(case["text"], padding="max_length", max_length=64, truncation=True)["input_ids"] == case["ids"]
        assert len(case["ids"]) == 64
    from transformers.image_utils import load_image

    with torch.no_grad():
        for im in g["images"]:
            pv = proc(images=load_image(str(FIX / im["file"])), return_tensors="pt")["pixel_values"]
            np.testing.assert_allclose(pv.numpy(), np.load(FIX / "golden" / im["pixels"]), atol=1e-6)
            probs = torch.sigmoid(model(input_ids=torch.tensor(ids), pixel_values=pv).logits_per_image)[0].numpy()
            np.testing.assert_allclose(probs, im["probs"], atol=1e-5, err_msg=im["file"])
    assert g["logit_scale"] == pytest.approx(model.logit_scale.item(), abs=1e-7)
    assert g["logit_bias"] == pytest.approx(model.logit_bias.item(), abs=1e-7)
    probs = np.array([im["probs"] for im in g["images"]])
    assert probs.min() < 0.2 and probs.max() > 0.8  # goldens are informative


def test_committed_bundle_sha256():
    out = FIX / "tiny"
    man = json.loads((out / "siglip.json").read_text())
    assert set(man) == MANIFEST_KEYS
    assert set(man["sha256"]) == {p.name for p in out.iterdir()} - {"siglip.json"}
    for name, digest in man["sha256"].items():
        assert em.sha256_file(out / name) == digest, name
    g = json.loads((FIX / "golden" / "golden.json").read_text())
    assert man["logit_scale"] == g["logit_scale"] and man["logit_bias"] == g["logit_bias"]


@pytest.mark.parametrize("args,needle", [
    (["--from", "/nonexistent", "--out", "/tmp/x"], "not found"),
    (["--from", str(FIX / "images"), "--out", "/tmp/x"], "config.json"),
])
def test_bad_input(args, needle, tmp_path):
    r = run_export(*[a.replace("/tmp/x", str(tmp_path / "o")) for a in args])
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and needle in err, err
    assert "Traceback" not in r.stderr


def test_not_siglip_and_missing_tokenizer(tiny_checkpoint, tmp_path):
    import shutil

    bad = tmp_path / "notsiglip"
    shutil.copytree(tiny_checkpoint, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "clip"
    (bad / "config.json").write_text(json.dumps(cfg))
    r = run_export("--from", str(bad), "--out", str(tmp_path / "o1"))
    assert r.returncode != 0 and "expected 'siglip'" in r.stderr and "Traceback" not in r.stderr
    notok = tmp_path / "notok"
    shutil.copytree(tiny_checkpoint, notok)
    (notok / "spiece.model").unlink()
    r = run_export("--from", str(notok), "--out", str(tmp_path / "o2"))
    assert r.returncode != 0 and "spiece.model" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- static int8 compute form


def fixture_pixels(ckpt: Path):
    """Every decodable fixture image through the reference image processor."""
    from PIL import Image

    proc = em.pil_image_processor(ckpt)
    names = em.STATIC_CALIBRATION_PHOTOS + em.STATIC_HELDOUT_PHOTOS
    paths = [em.FIXTURE_IMAGES / n for n in names] + em.fixture_check_images()
    assert len(paths) >= 12
    return [proc(images=[Image.open(p).convert("RGB")], return_tensors="np")["pixel_values"].astype(np.float32) for p in paths]


def check_static_graph(path: Path):
    """The form tract runs as a bare integer matmul: QuantizeLinear(x, scalar s_x, int8 0) as
    element-wise ops (Mul(1/s_x) → Clip → Add/Sub round → Cast int8) → MatMulInteger(x_q, W_q)
    with no zero-point inputs → Cast(float) → Mul; no QuantizeLinear, no dynamic quantization;
    Softmax and the activation×activation (attention) MatMuls stay float."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    mmi = [n for n in m.graph.node if n.op_type == "MatMulInteger"]
    assert mmi, "no MatMulInteger"
    for n in mmi:
        assert len(n.input) == 2, f"{n.name}: zero-point inputs {list(n.input[2:])}"
        chain = []
        q = producers[n.input[0]]
        for _ in range(5):
            chain.append(q)
            q = producers.get(q.input[0])
        assert [c.op_type for c in chain] == ["Cast", "Sub", "Add", "Clip", "Mul"], [c.op_type for c in chain]
        cast_i8, sub, add, clip, mul_inv = chain
        assert cast_i8.attribute[0].i == onnx.TensorProto.INT8
        assert inits[mul_inv.input[1]].shape == () and inits[mul_inv.input[1]] > 0  # static per-tensor 1/s_x
        assert [float(inits[i]) for i in clip.input[1:]] == [-128.0, 127.0]
        assert float(inits[add.input[1]]) == float(inits[sub.input[1]]) == em.ROUND_HALF_EVEN_MAGIC
        w = inits[n.input[1]]
        assert w.dtype == np.int8 and w.ndim == 2 and w.min() >= -127  # symmetric
        (cast,) = consumers[n.output[0]]
        assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT
        (mul,) = consumers[cast.output[0]]
        assert mul.op_type == "Mul" and inits[mul.input[1]].shape == (w.shape[1],)  # per-output-channel
    assert not any(n.op_type.startswith("DynamicQuantize") or n.op_type in ("DequantizeLinear", "QuantizeLinear")
                   for n in m.graph.node)
    softmax_in = {n.input[0] for n in m.graph.node if n.op_type == "Softmax"}
    for s in softmax_in:
        assert producers[s].op_type not in ("Cast", "MatMulInteger")
    float_mm = [n for n in m.graph.node if n.op_type == "MatMul"]
    assert all(n.input[1] not in inits for n in float_mm if n.input[1] in inits and inits[n.input[1]].dtype == np.int8)
    return len(mmi)


def test_quantize_nodes_equal_onnx_quantize_linear():
    """quantize_nodes is ONNX QuantizeLinear(x, s, int8 0) computed as round(x·fl(1/s)) — tract's own
    QuantizeLinearI8 multiplies by the reciprocal too; x/s differs from x·fl(1/s) by one step for
    about 4e-7 of activations — checked in onnxruntime: exact
    halves (ties to even, both signs), values just off a half, saturation at both ends, zeros, the
    calibration range's ends and random activations. The reference is onnxruntime's own
    QuantizeLinear on the same inputs and the same stored scale."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    import make_fixtures as mf

    s = np.float32(mf.QUANTIZE_PROBE_SCALE)
    inv = np.float32(1.0) / s
    x = mf.quantize_probe_inputs(s)

    def run(model):
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    ours = run(mf.quantize_probe_model(inv, len(x)))
    # what our Mul computes exactly, rounded half to even by numpy, saturated (the ONNX definition)
    want = np.clip(np.round(x * inv), -128, 127).astype(np.int8)
    assert np.array_equal(ours, want)
    # onnxruntime's QuantizeLinear divides by s: equal wherever x/s and x·(1/s) agree in f32
    ref = run(mf.int8_probe_model([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["x_q"])],
                                  [numpy_helper.from_array(s, "s"), numpy_helper.from_array(np.int8(0), "zp")], len(x)))
    same = (x / s) == (x * inv)
    assert same.mean() > 0.5 and np.array_equal(ours[same], ref[same])
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    # the ties really were ties and were rounded to even
    exact_ties = (x * inv) == np.float32(0.5) + np.floor(x * inv)
    assert exact_ties.sum() > 200 and np.all(ours[exact_ties & (np.abs(x * inv) < 127)] % 2 == 0)


def test_static_int8_form(tiny_checkpoint_init, tmp_path):
    import onnxruntime as ort

    tiny_checkpoint = tiny_checkpoint_init
    r = run_export("--from", str(tiny_checkpoint), "--int8-form", "static", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    man = json.loads((tmp_path / "siglip.json").read_text())
    assert man["vision"]["int8_form"] == "static-int8-compute"
    st = man["vision"]["int8_static"]
    assert st["purpose"] == "compute" and st["calibration"] == em.STATIC_CALIBRATION_PHOTOS
    assert st["cosine_vs_fp32_min"] >= 0.999
    n = check_static_graph(tmp_path / "vision_int8.onnx")
    # this 1-layer, 24-wide model is far more fragile than real ones: the parity fallback may
    # keep most of it float (the committed 2-layer tiny-static keeps 1 of 15; base keeps none)
    assert n == st["int8_matmuls"] >= 1
    px = fixture_pixels(tiny_checkpoint)
    f32 = ort.InferenceSession(str(tmp_path / "vision_fp32.onnx"), providers=["CPUExecutionProvider"])
    i8 = ort.InferenceSession(str(tmp_path / "vision_int8.onnx"), providers=["CPUExecutionProvider"])
    a = np.concatenate([f32.run(None, {"pixel_values": p})[0] for p in px])
    b = np.concatenate([i8.run(None, {"pixel_values": p})[0] for p in px])
    assert em.cosine_rows(a.astype(np.float64), b.astype(np.float64)).min() >= 0.999
    if "int8" in man["text"]["files"]:
        check_static_graph(tmp_path / "text_int8.onnx")


def test_static_form_without_any_int8_matmul_is_an_error(exported, tiny_checkpoint, tmp_path):
    """A static "compute" form whose every matmul had to fall back to float would be mislabelled:
    the exporter refuses it (here forced by an unreachable cosine gate)."""
    import onnxruntime as ort

    out, _ = exported
    px = fixture_pixels(tiny_checkpoint)[:4]
    sess = ort.InferenceSession(str(out / "vision_fp32.onnx"), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"pixel_values": p})[0] for p in px])
    with pytest.raises(em.UserError, match="no static compute form"):
        em.quantize_static_int8(out / "vision_fp32.onnx", tmp_path / "v.onnx", "pixel_values", px, px, ref, 1.01)
    assert not (tmp_path / "v.onnx").exists()


def test_static_rewrite_is_exact_without_rounding():
    """The rewrite's arithmetic: with weights and inputs on the int8 grid, the static form
    reproduces x·W + b exactly (so a wrong scale, axis or transpose cannot hide in noise)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w_q = rng.integers(-127, 128, size=(6, 4)).astype(np.float32)
    w_q[0] = [127, -127, 127, -127]  # every column's absmax is 127: s_w is exactly the grid step
    s_w = np.array([0.5, 0.25, 2.0, 1.0], dtype=np.float32)
    w = w_q * s_w  # [in, out] on a per-column grid
    x = (rng.integers(-127, 128, size=(3, 6)) * (2.0 / 127)).astype(np.float32)
    x[0, 0] = 2.0  # absmax 2 → s_x = 2/127, x exactly on the grid
    bias = rng.normal(size=4).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y0"], name="mm"),
         helper.make_node("Gemm", ["x", "Wt", "b"], ["y1"], name="gemm", transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("y1", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.ascontiguousarray(w.T), "Wt"),
         numpy_helper.from_array(bias, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    stats = em.static_int8_rewrite(m, {"x": 2.0}, set())
    assert stats["quantized"] == 2
    onnx.checker.check_model(m)
    y0, y1 = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(y0, x @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y1, x @ w + bias, rtol=1e-5, atol=1e-5)


def test_committed_static_bundle():
    """tests/fixtures/tiny-static: the tiny checkpoint in the static form, same fp32 files as tiny/."""
    out = FIX / "tiny-static"
    man = json.loads((out / "siglip.json").read_text())
    for name, digest in man["sha256"].items():
        assert em.sha256_file(out / name) == digest, name
    for f in ("vision_fp32.onnx", "text_fp32.onnx", "tokenizer.json"):
        assert em.sha256_file(out / f) == em.sha256_file(FIX / "tiny" / f), f
    check_static_graph(out / "vision_int8.onnx")


def test_committed_quantize_probe():
    """tests/fixtures/quantize-probe (tract's exactness test in tests/parity.rs): the exporter's
    current quantize_nodes, the probe inputs, and want.npy = the ONNX definition on them."""
    import onnx
    from onnx import numpy_helper

    import make_fixtures as mf

    out = FIX / "quantize-probe"
    m = onnx.load(str(out / "quantize.onnx"))
    want_nodes = em.quantize_nodes("x", "inv_scale", "x_q", "quantize")
    assert [(n.op_type, list(n.input)) for n in m.graph.node] == [(n.op_type, list(n.input)) for n in want_nodes]
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    s = np.float32(mf.QUANTIZE_PROBE_SCALE)
    assert inits["inv_scale"] == np.float32(1.0) / s
    assert float(inits[em.QUANTIZE_ROUNDER]) == em.ROUND_HALF_EVEN_MAGIC
    x = np.load(out / "x.npy")
    assert np.array_equal(x, mf.quantize_probe_inputs(s))
    assert np.array_equal(np.load(out / "want.npy"), np.clip(np.round(x * inits["inv_scale"]), -128, 127).astype(np.int8))


def test_committed_torch_graph_fixture():
    """tests/fixtures/tiny-torch-graph (what tests/pull.rs serves as transformers.js's file): torch's
    graph at opset 14 (Conv patch embedding, whole MLP weights, no fused LayerNorm/GELU) of the
    same weights as tiny/, which onnxruntime runs to the same embeddings as the shaped file."""
    import onnx
    import onnxruntime as ort

    path = FIX / "tiny-torch-graph" / "vision_fp32.onnx"
    m = onnx.load(str(path))
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [14]
    ops = {n.op_type for n in m.graph.node}
    assert "Conv" in ops and "Concat" in ops and "Tanh" in ops and "LayerNormalization" not in ops
    px = np.concatenate(fixture_pixels(FIX / "tiny-checkpoint")[:4])
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"pixel_values": px})[0]  # noqa: E731
    np.testing.assert_allclose(run(path), run(FIX / "tiny" / "vision_fp32.onnx"), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not __import__("os").environ.get("SIGLIPD_BASE_STATIC"),
                    reason="set SIGLIPD_BASE_STATIC=<bundle made with --random base --int8-form static>")
def test_base_static_bundle_parity():
    """The parity gate on a base-size bundle (slow: run on demand)."""
    import os

    import onnxruntime as ort

    out = Path(os.environ["SIGLIPD_BASE_STATIC"])
    man = json.loads((out / "siglip.json").read_text())
    assert man["vision"]["int8_form"] == "static-int8-compute"
    check_static_graph(out / "vision_int8.onnx")
    px = fixture_pixels(FIX / "tiny-checkpoint")  # same image processor config as every bundle
    f32 = ort.InferenceSession(str(out / "vision_fp32.onnx"), providers=["CPUExecutionProvider"])
    i8 = ort.InferenceSession(str(out / "vision_int8.onnx"), providers=["CPUExecutionProvider"])
    a = np.concatenate([f32.run(None, {"pixel_values": p})[0] for p in px])
    b = np.concatenate([i8.run(None, {"pixel_values": p})[0] for p in px])
    assert em.cosine_rows(a.astype(np.float64), b.astype(np.float64)).min() >= 0.999
