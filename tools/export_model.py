#!/usr/bin/env python3
"""Export a SigLIP checkpoint to a siglipd model bundle (the one way a bundle is made).

Usage
-----
    python3 tools/export_model.py --from <HF model id | local checkpoint dir> --out <dir>
    python3 tools/export_model.py --random tiny|base --seed N --out <dir> [--checkpoint-out <dir>]

``--from`` takes a directory written by ``save_pretrained`` (config.json, weights,
spiece.model + tokenizer_config.json, preprocessor_config.json or transformers 5's
processor_config.json) or a Hugging Face model
id (downloaded with huggingface_hub; needs network access).

``--random`` builds a random-weight ``SiglipModel`` (offline, deterministic):

* tokenizer: a SigLIP-style sentencepiece *unigram* model trained (num_threads=1,
  deterministic) on ``tools/corpus.txt`` with the special-piece layout of SigLIP's real
  tokenizer (the T5 "cc_en" layout): ``<pad>``=0, ``</s>``=1, ``<unk>``=2, no ``<s>``,
  nmt_nfkc normalisation, dummy prefix on.  It is wrapped as a ``SiglipTokenizer``
  (``</s>`` is eos *and* pad).  The corpus only supports a few hundred pieces, so the
  tokenizer is that size; ``tiny`` uses it as the text vocab size, ``base`` keeps the
  text embedding table at 32000 rows so compute/params match siglip-base-patch16-224.
* image processor config identical to google/siglip-base-patch16-224's
  (224x224, bicubic, no crop, rescale 1/255, mean = std = 0.5).
* weights: ``torch.manual_seed(seed)`` then ``SiglipModel(config)``.
* logit_scale / logit_bias: SiglipModel initialises both to 0, which makes every
  probability ~0.5 and useless for parity tests.  We therefore *calibrate* them on the
  random model: cosines c between a few scikit-image photos and the sample prompts
  (``PROMPTS``) are computed, and we set s = 4 / std(c), logit_scale = log(s),
  logit_bias = -s * mean(c), so sigmoid(s*c + b) spreads over (0, 1) for typical inputs.
  These values are written into the checkpoint, so the checkpoint alone is the truth.

The checkpoint is ``save_pretrained``-ed (to a temp dir or ``--checkpoint-out``) and then
exported through exactly the same code path as ``--from``.

Bundle contents (see models/README.md): vision_fp32.onnx, vision_int8.onnx,
text_fp32.onnx, text_int8.onnx (only if its cosine vs fp32 >= 0.99 on PROMPTS),
tokenizer.json, siglip.json (manifest with sha256 of every other file).

int8 form: weight-only, per-output-channel, symmetric int8 QDQ.  Every MatMul/Gemm whose
second input is a 2-D constant initializer (= a Linear weight) gets that weight stored
as int8 + a DequantizeLinear(axis=output channel) feeding the MatMul.  Activations stay
float; attention MatMuls (two activations), LayerNorm, Softmax, GELU, Add, the Conv patch
embedding and the token-embedding Gather stay fp32.

tokenizer.json: converted with transformers' ``SpmConverter`` (there is no SigLIP
converter in transformers; SpmConverter gives the sentencepiece-compatible
Precompiled(nmt_nfkc) normaliser + Metaspace(prepend "always") pre-tokenizer + Unigram
model) plus a post-processor appending ``</s>``.  It must be fed text that is *already*
canonicalised exactly as ``SiglipTokenizer`` does (rules recorded in the manifest's
``text_preprocessing`` and implemented by ``canonicalize()`` below); then
``Tokenizer.encode(canonical).ids`` equals the slow tokenizer's ids (before padding).
This is verified on ``TRICKY_STRINGS`` at export time; a mismatch aborts the export.
Known, accepted divergences (pathological inputs, not in the check list):
  * raw text containing the literal special-token strings ``</s>`` / ``<unk>``: the slow
    tokenizer splits them out as special ids *before* canonicalising; we do not.
  * a combining mark right after a character whose NFKC form expands (``ﬁ``, fullwidth
    ``！``): tokenizers' Precompiled normaliser drops the mark, sentencepiece emits <unk>.
  * exact ties between equal-score segmentations (e.g. "333" = "33"+"3" or "3"+"33"):
    sentencepiece and tokenizers' Viterbi break ties differently.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import string
import sys
import tempfile
import warnings
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
CORPUS = TOOLS_DIR / "corpus.txt"

FORMAT = "siglipd-bundle"
FORMAT_VERSION = 1
MAX_TEXT_LENGTH = 64
# Opset 20: torch writes the tanh GELU of SigLIP's MLPs as one ONNX `Gelu(approximate="tanh")`,
# which tract runs as its fused GeluApproximate kernel; at opset 17 it was a chain of eight
# element-wise ops that tract's pattern detector no longer fuses (docs/profile-int8.md).
ONNX_OPSET = 20
INT8_MIN_COSINE = 0.99

TEMPLATE = "This is a photo of {}."
LABELS = [
    "cat",
    "a cup of coffee",
    "rocket",
    "astronaut",
    "text on a page",
    "a grayscale photo of a man with a camera",
    "coins",
    "a horse",
]
PROMPTS = [TEMPLATE.format(label) for label in LABELS]

# scikit-image photos used to calibrate logit_scale/bias of random models
CALIBRATION_IMAGES = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "camera.png", "coins.png", "page.png", "horse.png"]

# strings on which tokenizer.json(canonicalize(s)) must equal SiglipTokenizer(s)
TRICKY_STRINGS = [
    "hello, world!",
    "a dog's ball.",
    "x--y...z",
    "A PHOTO OF A CAT",
    "MiXeD CaSe Words",
    "café crème",
    "naïve Zürich",
    "日本の猫",
    "a cat 🐈 on a mat 😀",
    "e\u0301",
    "cafe\u0301 au lait",
    "tabs\tand\nnewlines\r\nhere",
    "multiple    spaces   between",
    "   leading and trailing   ",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "under\u2581score \u2581 and ▁▁double",
    "\u2581",
    "",
    " ",
    "!?.,;:'\"()[]{}<>-_/\\@#$%^&*+=~`|",
    "... --- !!!",
    "route 66",
    "3.14159 and 2,000,000",
    "snake_case and kebab-case",
    "I'm can't won't",
    "ΣΑΣ ΟΔΟΣ",
    "İstanbul",
    "ﬁne ligature",
    "fullwidth ＡＢＣ and ！",
    "x\x1cy\x1dz",
    "zero\u200bwidth",
    "a " * 40 + "b",
    "The quick brown fox jumps over the lazy dog while an astronaut photographs a rocket launch from the space station window at dusk, and a cat watches from the windowsill next to a cup of coffee.",
    "buffalo " * 80,
] + PROMPTS

PREPROCESSOR_CONFIG_LIKE_REAL = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 224, "width": 224},
}

RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

# Python's str.isspace() set == what `re.sub(r"\s+", ...)` and str.strip() use on str
WHITESPACE_CHARS = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


class UserError(Exception):
    """An error caused by the user's input: reported as one line, no traceback."""


def log(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


# --------------------------------------------------------------------------- text


def canonicalize(text: str, lowercase: bool = True) -> str:
    """What the Rust side must do before calling tokenizer.json (mirrors SiglipTokenizer).

    SiglipTokenizer.tokenize() replaces U+2581 by " ", prepends U+2581 and then
    _tokenize() applies canonicalize_text(): lower(), delete string.punctuation,
    re.sub(r"\\s+", " "), strip(); finally sentencepiece encodes "<unk>" + text and drops
    the pieces of "<unk>".  The prepended U+2581 only keeps one leading space that
    sentencepiece ignores anyway, so it is equivalent to this function.
    """
    text = text.replace("\u2581", " ")
    if lowercase:
        text = text.lower()
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def text_preprocessing_spec(lowercase: bool) -> dict:
    return {
        "steps": ["replace_chars", "lowercase", "strip_punctuation", "collapse_whitespace", "strip"],
        "replace_chars": {"\u2581": " "},
        "lowercase": lowercase,
        "lowercase_method": "Unicode full lowercase mapping (Python str.lower == Rust str::to_lowercase)",
        "strip_punctuation": True,
        "punctuation_chars": string.punctuation,
        "collapse_whitespace": True,
        "whitespace_chars": WHITESPACE_CHARS,
        "whitespace_note": "any run of these chars (Python str.isspace, includes U+001C..U+001F, not U+200B) becomes one ' '",
        "strip": True,
        "then": "tokenizer.encode(canonical, add_special_tokens=true): appends </s> (id 1); empty text gives [1]",
        "truncation": "if longer than max_text_length: keep the first max_text_length-1 ids and end with eos_id (the </s> is always kept)",
        "padding": "right-pad with pad_id to exactly max_text_length; no attention mask is used",
        "special_token_strings": "the slow tokenizer treats literal '</s>' / '<unk>' in raw text as special tokens before canonicalizing; not reproduced (punctuation stripping removes them)",
    }


def pad_ids(ids: list[int], eos_id: int, pad_id: int, length: int = MAX_TEXT_LENGTH) -> list[int]:
    if len(ids) > length:
        ids = ids[: length - 1] + [eos_id]
    return ids + [pad_id] * (length - len(ids))


def build_fast_tokenizer(slow_tok, eos_id: int):
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import SpmConverter

    class SiglipSpmConverter(SpmConverter):
        def post_processor(self):
            return processors.TemplateProcessing(
                single=["$A", "</s>"],
                pair=["$A", "</s>", "$B", "</s>"],
                special_tokens=[("</s>", eos_id)],
            )

    return SiglipSpmConverter(slow_tok).converted()


def verify_tokenizer(tokenizer_json: Path, slow_tok, strings=TRICKY_STRINGS) -> int:
    from tokenizers import Tokenizer

    fast = Tokenizer.from_file(str(tokenizer_json))
    bad = []
    for s in strings:
        want = slow_tok(s)["input_ids"]
        got = fast.encode(canonicalize(s, slow_tok.do_lower_case)).ids
        if want != got:
            bad.append((s, want, got))
        padded = slow_tok(s, padding="max_length", max_length=MAX_TEXT_LENGTH, truncation=True)["input_ids"]
        if padded != pad_ids(got, slow_tok.eos_token_id, slow_tok.pad_token_id):
            bad.append((s + " [padded]", padded, pad_ids(got, slow_tok.eos_token_id, slow_tok.pad_token_id)))
    if bad:
        lines = "\n".join(f"  {s!r}: slow={w} fast={g}" for s, w, g in bad[:10])
        raise RuntimeError(f"tokenizer.json does not reproduce SiglipTokenizer on {len(bad)} strings:\n{lines}")
    return len(strings)


# --------------------------------------------------------------------------- int8


def quantize_weights_int8(model_proto):
    """Weight-only int8 per-output-channel symmetric QDQ rewrite (in place, returns stats)."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    inits = {i.name: i for i in graph.initializer}
    done: dict[tuple[str, int], str] = {}
    new_nodes = []
    stats = {"quantized": 0, "kept_fp32": 0}
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) >= 2 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.ndim == 2 and w.dtype == np.float32:
                if node.op_type == "MatMul":
                    axis = 1  # [in, out]
                else:
                    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                    axis = 0 if trans_b else 1
                key = (node.input[1], axis)
                if key not in done:
                    absmax = np.abs(w).max(axis=1 - axis)
                    scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
                    shape = (1, -1) if axis == 1 else (-1, 1)
                    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
                    base = node.input[1]
                    graph.initializer.extend([
                        numpy_helper.from_array(q, base + "_int8"),
                        numpy_helper.from_array(scale, base + "_scale"),
                        numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), base + "_zero_point"),
                    ])
                    new_nodes.append(helper.make_node(
                        "DequantizeLinear", [base + "_int8", base + "_scale", base + "_zero_point"],
                        [base + "_dequant"], name=base + "_DequantizeLinear", axis=axis))
                    done[key] = base + "_dequant"
                node.input[1] = done[key]
                stats["quantized"] += 1
                continue
        if node.op_type in ("MatMul", "Gemm"):
            stats["kept_fp32"] += 1
    # DequantizeLinear nodes only read initializers: put them first (topological order kept)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + old)
    _drop_unused_initializers(graph)
    return stats


def shape_vision_for_tract(model_proto, image_size: int, hidden_size: int, split_linears: bool = True) -> list[str]:
    """Rewrites the exported vision graph, exactly, into the shape tract runs fastest; returns the
    names of the rewrites applied (written to the manifest as `vision.graph_shape.<precision>`).

    Both were measured per op and end to end against the graph torch writes (docs/profile-int8.md,
    "Graph shape"); each leaves onnxruntime's output bit-identical on the base-size bundle:

    - `patch-embedding-matmul`: the stride-16 `Conv` of the patch embedding becomes
      Reshape → Transpose → Reshape into `[batch, patches, 3·16·16]` and one MatMul. torch's
      Conv → flatten → transpose(1, 2) made tract carry the whole residual stream channel-major
      (`[768, 196]`), so every LayerNorm reduced along a strided axis (`RmsNorm` + `Sub`, 5 % of
      the image) and matmul results were stored strided.
    - `mlp-split-N`: a Linear whose weight holds more than `hidden_size²` values (the MLP's fc1
      and fc2, 4× an attention projection) is cut into column blocks (`_block_width`: as few as
      keep each near `hidden_size²`, widths a multiple of 16, the last block the rest) and the
      block results concatenated. tract's matmul ran the 768×768 projections at ≈ 30 GMAC/s but the
      768×3072 MLP weights at ≈ 17 (per-node profile, Zen 3). The 9.4 MB weight is swept once
      per activation panel; likely it outgrows what the core keeps close (Zen 3's L2 TLB maps
      8 MiB in 4-KiB pages), not isolated further.
      Not for the weight-only memory form (`split_linears=False`): blocks under tract's 4 MiB
      const-fold budget are dequantized to fp32 at load, which gave that form fp32's speed and
      fp32's RAM.
    """
    graph = model_proto.graph
    applied = []
    # split first: the patch embedding's MatMul (3·p² inputs) is not a Linear to cut
    parts = _split_wide_linears(graph, hidden_size * hidden_size) if split_linears else []
    if _patch_embedding_as_matmul(graph, image_size):
        applied.append("patch-embedding-matmul")
    if parts:
        applied.append(f"mlp-split-{max(parts)}")
    _prune_unused(graph)
    return applied


PATCHIFY_MATMUL = "/patchify/MatMul"  # the name ending of the patch embedding's MatMul


def _patch_embedding_as_matmul(graph, image_size: int) -> bool:
    """`Conv(kernel = stride = p, no padding)` → `Reshape(B, C·H·W/p²)` → `Transpose(0, 2, 1)`
    replaced by patchify + MatMul + Add (the same sums; see shape_vision_for_tract)."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != 1 or len(convs[0].input) != 3 or convs[0].input[1] not in inits or convs[0].input[2] not in inits:
        return False
    conv = convs[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    w = numpy_helper.to_array(inits[conv.input[1]])
    out_ch, ch, kh, kw = w.shape
    pads = attrs.get("pads", [0, 0, 0, 0])
    if (list(attrs.get("strides", [])) != [kh, kw] or any(pads) or attrs.get("group", 1) != 1
            or any(d != 1 for d in attrs.get("dilations", [1, 1])) or image_size % kh or image_size % kw):
        return False
    # torch also reads the Conv's shape (Shape → … → the Reshape's target): pruned afterwards
    users = [n for n in graph.node if conv.output[0] in n.input and n.op_type != "Shape"]
    if len(users) != 1 or users[0].op_type != "Reshape":
        return False
    reshape = users[0]
    users = [n for n in graph.node if reshape.output[0] in n.input]
    if len(users) != 1 or users[0].op_type != "Transpose":
        return False
    transpose = users[0]
    if list(helper.get_attribute_value(next(a for a in transpose.attribute if a.name == "perm"))) != [0, 2, 1]:
        return False
    gh, gw = image_size // kh, image_size // kw
    base = conv.name.rsplit("/", 1)[0] + PATCHIFY_MATMUL.rsplit("/", 1)[0]
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(w.reshape(out_ch, ch * kh * kw).T), base + ".weight"),
        numpy_helper.from_array(np.array([-1, ch, gh, kh, gw, kw], np.int64), base + ".grid_shape"),
        numpy_helper.from_array(np.array([-1, gh * gw, ch * kh * kw], np.int64), base + ".patches_shape"),
    ])
    new = [
        helper.make_node("Reshape", [conv.input[0], base + ".grid_shape"], [base + ".grid"], name=base + "/Reshape"),
        # [B, C, gh, p, gw, p] → [B, gh, gw, C, p, p]: a patch's values in the Conv weight's (C, kh, kw) order
        helper.make_node("Transpose", [base + ".grid"], [base + ".by_patch"], perm=[0, 2, 4, 1, 3, 5], name=base + "/Transpose"),
        helper.make_node("Reshape", [base + ".by_patch", base + ".patches_shape"], [base + ".patches"], name=base + "/Reshape_1"),
        helper.make_node("MatMul", [base + ".patches", base + ".weight"], [base + ".matmul"], name=base + "/MatMul"),
        helper.make_node("Add", [base + ".matmul", conv.input[2]], [transpose.output[0]], name=base + "/Add"),
    ]
    _replace_nodes(graph, [conv, reshape, transpose], new)
    return True


def _split_wide_linears(graph, max_values: int) -> list[int]:
    """Splits each `MatMul(x, W[in, out])` with `in·out > max_values` into column blocks + Concat;
    returns the block counts used (see shape_vision_for_tract)."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    used_by = {}
    for n in graph.node:
        for i in n.input:
            used_by[i] = used_by.get(i, 0) + 1
    counts = []
    for node in [n for n in graph.node if n.op_type == "MatMul"]:
        if node.input[1] not in inits or node.input[0] in inits or used_by.get(node.input[1]) != 1:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.ndim != 2 or w.size <= max_values:
            continue
        cols = w.shape[1]
        width = _block_width(w.shape[0], cols, max_values)
        starts = list(range(0, cols, width))
        if len(starts) < 2:
            continue
        new, outs = [], []
        for p, start in enumerate(starts):
            name = f"{node.input[1]}.block{p}"
            block = w[:, start:start + width]
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(block), name))
            outs.append(f"{node.output[0]}.block{p}")
            new.append(helper.make_node("MatMul", [node.input[0], name], [outs[-1]], name=f"{node.name}_block{p}"))
        new.append(helper.make_node("Concat", outs, [node.output[0]], axis=-1, name=f"{node.name}_concat"))
        _replace_nodes(graph, [node], new)
        counts.append(len(starts))
    return counts


SPLIT_WIDTH_MULTIPLE = 16  # tract's fp32 kernels take 16 output columns per panel (x86 16x6, ARM 16x4 or 8x8)


def _block_width(rows: int, cols: int, max_values: int) -> int:
    """Column width of the blocks a `rows × cols` weight is cut into: as few blocks as keep each
    within `max_values`, the width rounded up to a multiple of 16 so no block wastes kernel
    panels (the last block takes the rest). 768×3072 → 768 (4 blocks); 3072×768 → 192; a prime
    width such as 67 → 32, 32, 3 rather than 67 one-column blocks."""
    blocks = -(-rows * cols // max_values)
    width = -(-cols // blocks)
    return -(-width // SPLIT_WIDTH_MULTIPLE) * SPLIT_WIDTH_MULTIPLE


def _replace_nodes(graph, old: list, new: list) -> None:
    """Puts `new` where the earliest of `old` was (topological order kept: `new` reads only what
    that node could read, or initializers) and drops `old`."""
    nodes = list(graph.node)
    # by value: protobuf copies the nodes on every extend, so earlier handles are not these objects
    drop = {nodes.index(n) for n in old}
    first = min(drop)
    kept = [n for i, n in enumerate(nodes) if i not in drop]
    at = sum(1 for i in range(first) if i not in drop)
    del graph.node[:]
    graph.node.extend(kept[:at] + new + kept[at:])


def _prune_unused(graph) -> None:
    """Drops nodes whose outputs nobody reads and initializers no node reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    _drop_unused_initializers(graph)


def _drop_unused_initializers(graph) -> None:
    """Drops the initializers no node reads (order of the rest kept)."""
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


FORM_NAMES = {"weight-only": "weight-only-qdq-per-channel", "dynamic": "dynamic-int8", "static": "static-int8-compute"}
# what each --int8-form is for: a *memory* form shrinks files and RAM but computes in fp32 in
# tract; a *compute* form runs the weight matmuls on tract's integer kernels
FORM_PURPOSE = {"weight-only": "memory", "dynamic": "compute", "static": "compute"}

# static int8 compute form: calibration photos (the bundled sample photos, tests/fixtures/images)
# and held-out photos that only check the result.  Activation scales come from the first list.
FIXTURE_IMAGES = TOOLS_DIR.parent / "tests" / "fixtures" / "images"
STATIC_CALIBRATION_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "camera_gray.png"]
STATIC_HELDOUT_PHOTOS = ["rocket.jpg", "coins.jpg"]  # fixtures, not used for calibration
STATIC_HELDOUT_SKIMAGE = ["motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg"]
STATIC_MIN_COSINE = 0.999  # image-embedding cosine vs fp32 every compute form must reach


def fixture_check_images() -> list[Path]:
    """Every other decodable image of tests/fixtures/images (odd sizes, EXIF rotations, palettes,
    16-bit, alpha): the parity gate holds on all of them, as tests/parity.rs checks."""
    from PIL import Image

    out = []
    for f in sorted(FIXTURE_IMAGES.iterdir()) if FIXTURE_IMAGES.is_dir() else []:
        if f.name in STATIC_CALIBRATION_PHOTOS or f.name in STATIC_HELDOUT_PHOTOS:
            continue
        try:
            with Image.open(f) as im:
                im.convert("RGB")
        except Exception:  # noqa: BLE001 - the deliberately broken fixtures
            continue
        out.append(f)
    return out


def weight_matmuls(graph) -> list[tuple[int, int]]:
    """(node index, output axis of the weight) of every MatMul/Gemm whose B is a 2-D fp32
    initializer (a Linear layer) and whose A is not a constant.  Attention matmuls (two
    activations) and the MAP head's k/v in-projections (B = Transpose(Slice(in_proj_weight)),
    0.23 of 17.7 GMAC at base size) are not matched and stay fp32."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    out = []
    for k, node in enumerate(graph.node):
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        if node.input[1] not in inits or node.input[0] in inits:
            continue
        if node.name.endswith(PATCHIFY_MATMUL):
            continue  # the patch embedding reads raw pixels: it stays float, as the Conv it replaces did
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.ndim != 2 or w.dtype != np.float32:
            continue
        if node.op_type == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            if attrs.get("transA") and attrs["transA"].i:
                continue
            if any(n in attrs and attrs[n].f != 1.0 for n in ("alpha", "beta")):
                continue
            out.append((k, 0 if (attrs.get("transB") and attrs["transB"].i) else 1))
        else:
            out.append((k, 1))
    return out


def calibrate_activations(model_proto, inp: str, batches, names: list[str]) -> dict[str, float]:
    """Largest |value| of each named activation over the calibration inputs (onnxruntime, fp32)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model_proto)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    absmax = {n: 0.0 for n in names}
    for b in batches:
        outs = sess.run(names, {inp: b})
        for n, v in zip(names, outs):
            absmax[n] = max(absmax[n], float(np.abs(v).max()))
    return absmax

QUANTIZE_LO, QUANTIZE_HI = "quantize_int8_lo", "quantize_int8_hi"
# 1.5·2^23: for |v| ≤ 2^22, (v + M) − M is v rounded to the nearest integer, ties to even, in
# IEEE-754 f32 under the default rounding mode (the sum's ulp is 1). The clip keeps |v| ≤ 128.
QUANTIZE_ROUNDER = "quantize_round_half_even"
ROUND_HALF_EVEN_MAGIC = 12582912.0


def add_quantize_constants(graph) -> None:
    """The scalar constants `quantize_nodes` refers to, once per graph."""
    import numpy as np
    from onnx import numpy_helper

    graph.initializer.extend([
        numpy_helper.from_array(np.float32(-128.0), QUANTIZE_LO),
        numpy_helper.from_array(np.float32(127.0), QUANTIZE_HI),
        numpy_helper.from_array(np.float32(ROUND_HALF_EVEN_MAGIC), QUANTIZE_ROUNDER),
    ])


def quantize_nodes(x: str, inv_scale: str, out: str, name: str) -> list:
    """ONNX QuantizeLinear(x, s, zero_point = int8 0) — saturate(round_half_to_even(x / s)) to
    [-128, 127] (onnx.ai/onnx/operators/onnx__QuantizeLinear.html) — as element-wise ops:

        Cast<int8>(((clip(x · (1/s), -128, 127) + M) − M)        M = 1.5·2^23

    Why not QuantizeLinear itself: tract 0.23.9 runs it as `QuantizeLinearI8`, a scalar loop
    (28 % of the static form's time on a Zen 4) and merges these five into one vectorized
    binary chain plus a cast (docs/profile-int8.md, "Zen 4 with VNNI"). tract's
    own QuantizeLinearI8 multiplies by the reciprocal too. `inv_scale` names a scalar f32
    initializer holding 1/s; `add_quantize_constants` must have run on the graph."""
    from onnx import TensorProto, helper

    return [
        helper.make_node("Mul", [x, inv_scale], [out + "_scaled"], name=name + "_Mul"),
        helper.make_node("Clip", [out + "_scaled", QUANTIZE_LO, QUANTIZE_HI], [out + "_clipped"], name=name + "_Clip"),
        helper.make_node("Add", [out + "_clipped", QUANTIZE_ROUNDER], [out + "_biased"], name=name + "_RoundAdd"),
        helper.make_node("Sub", [out + "_biased", QUANTIZE_ROUNDER], [out + "_rounded"], name=name + "_RoundSub"),
        helper.make_node("Cast", [out + "_rounded"], [out], name=name + "_Cast", to=TensorProto.INT8),
    ]


def static_int8_rewrite(model_proto, absmax: dict[str, float], keep_float: set[str], per_channel: bool = True):
    """The static int8 compute form, in place.  Each weight MatMul/Gemm y = x·W (+ b) becomes

        x_q = quantize(x, s_x)                                 s_x = absmax(x) / 127, calibrated
        y   = Cast(MatMulInteger(x_q, W_q), float) · (s_x · s_w)   (+ b)

    with W_q symmetric int8 (per output channel: s_w is a vector over the output axis) and *no*
    zero-point inputs to MatMulInteger: tract 0.23.9 then runs a bare i8×i8→i32 matmul, with
    no zero-point row/column sums (`Reduce<Sum>`) and no per-call `DynamicQuantizeLinear`.
    `quantize` is ONNX QuantizeLinear(x, s_x, int8 0) written as element-wise ops
    (`quantize_nodes`), which tract runs vectorized. Nodes named in keep_float are left as they are."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model_proto.graph
    inits = {i.name: i for i in graph.initializer}
    targets = dict(weight_matmuls(graph))
    act_scales: dict[str, str] = {}
    add_quantize_constants(graph)
    new_nodes = []
    stats = {"quantized": 0, "kept_fp32": 0, "kept_float_by_parity": 0}
    for k, node in enumerate(graph.node):
        if k not in targets:
            if node.op_type in ("MatMul", "Gemm"):
                stats["kept_fp32"] += 1
            new_nodes.append(node)
            continue
        if node.name in keep_float or absmax.get(node.input[0], 0.0) <= 0.0:
            stats["kept_fp32"] += 1
            stats["kept_float_by_parity"] += node.name in keep_float
            new_nodes.append(node)
            continue
        axis = targets[k]
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        if axis == 0:  # Gemm transB: W is [out, in]; MatMulInteger wants [in, out]
            w = w.T
        if per_channel:
            wmax = np.abs(w).max(axis=0)
        else:
            wmax = np.full(w.shape[1], np.abs(w).max())
        s_w = np.where(wmax > 0, wmax / 127.0, 1.0)
        w_q = np.clip(np.round(w / s_w[None, :]), -127, 127).astype(np.int8)
        x = node.input[0]
        s_x = np.float32(absmax[x] / 127.0)  # the activations are multiplied by its f32 reciprocal
        if x not in act_scales:
            act_scales[x] = f"{node.name}_x_inv_scale"
            graph.initializer.append(numpy_helper.from_array(np.float32(1.0) / s_x, act_scales[x]))
            new_nodes += quantize_nodes(x, act_scales[x], x + "_q", f"{node.name}_Quantize")
        out_scale = (float(s_x) * s_w).astype(np.float32)
        if not per_channel:
            out_scale = np.array(out_scale[0], dtype=np.float32)
        base = node.name
        graph.initializer.extend([
            numpy_helper.from_array(w_q, base + "_W_int8"),
            numpy_helper.from_array(out_scale, base + "_out_scale"),
        ])
        y = node.output[0]
        has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
        new_nodes += [
            helper.make_node("MatMulInteger", [x + "_q", base + "_W_int8"], [base + "_i32"], name=base + "_MatMulInteger"),
            helper.make_node("Cast", [base + "_i32"], [base + "_f32"], name=base + "_Cast", to=TensorProto.FLOAT),
            helper.make_node("Mul", [base + "_f32", base + "_out_scale"], [base + "_scaled" if has_bias else y],
                             name=base + "_Rescale"),
        ]
        if has_bias:
            new_nodes.append(helper.make_node("Add", [base + "_scaled", node.input[2]], [y], name=base + "_Bias"))
        stats["quantized"] += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph)
    # the shapes recorded by the exporter stay valid; nothing else to fix up
    return stats


def quantize_static_int8(fp32_path: Path, out_path: Path, inp: str, calib, check, ref_check, min_cosine: float) -> dict:
    """Builds the static int8 compute form of one tower and gates it on parity: the embedding
    cosine vs fp32 (onnxruntime) on `check` (calibration + held-out inputs) must reach
    min_cosine.  When it does not, the weight matmuls with the largest quantization error fall
    back to float (1, 2, 4, … of them) until it does.  Returns stats incl. the float list."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    base = onnx.load(str(fp32_path))
    names = sorted({base.graph.node[k].input[0] for k, _ in weight_matmuls(base.graph)})
    absmax = calibrate_activations(base, inp, calib, names)

    def build(keep_float):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        stats = static_int8_rewrite(m, absmax, set(keep_float))
        return m, stats

    def cosines(m, inputs, ref):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        got = np.concatenate([sess.run(None, {inp: b})[0] for b in inputs])
        return cosine_rows(got.astype(np.float64), ref.astype(np.float64))

    order: list[str] | None = None
    keep: list[str] = []
    n_float = 0
    while True:
        m, stats = build(keep)
        onnx.checker.check_model(m)
        cos = cosines(m, check, ref_check)
        log(f"  static int8: {stats['quantized']} weight matmuls int8, {len(keep)} kept float for parity: "
            f"cosine vs fp32 min {cos.min():.5f} mean {cos.mean():.5f}")
        if cos.min() >= min_cosine or stats["quantized"] == 0:
            break
        if order is None:
            # leave-one-out on the 3 worst inputs: the worst cosine with only that matmul in
            # float; the matmuls whose float version helps most fall back first
            worst = list(np.argsort(cos)[:3])
            w_in, w_ref = [check[i] for i in worst], ref_check[worst]
            gain = {}
            for k, _ in weight_matmuls(base.graph):
                node_name = base.graph.node[k].name
                gain[node_name] = float(cosines(build([node_name])[0], w_in, w_ref).min())
            order = sorted(gain, key=gain.get, reverse=True)
            log(f"  static int8: most sensitive matmuls: {', '.join(f'{n} ({gain[n]:.5f})' for n in order[:4])}")
        n_float = max(1, 2 * n_float)
        if n_float > len(order):
            keep = list(order)
            continue
        keep = order[:n_float]
    if stats["quantized"] == 0:
        raise UserError(f"static int8: no weight matmul of {fp32_path.name} can be int8 within cosine "
                        f"{min_cosine} of fp32 (best {cos.min():.5f}); this checkpoint has no static compute "
                        f"form: export --int8-form weight-only or dynamic")
    onnx.save(m, str(out_path))
    stats.update(cosine_min=float(cos.min()), cosine_mean=float(cos.mean()), kept_float=keep,
                 activation_scales="per-tensor absmax/127 over the calibration inputs",
                 activation_quantize="QuantizeLinear(int8, zero point 0) as Mul, Clip, round half to even, Cast",
                 weight_scales="per-output-channel absmax/127, symmetric")
    return stats




def quantize_dynamic_int8(fp32_path: Path, out_path: Path) -> dict:
    """onnxruntime dynamic int8 (MatMulInteger + DynamicQuantizeLinear; uint8 weights as the
    transformers.js exports): tract runs it on its int8 kernels — the dot-product ones on
    ARMv8.2+ (Pi 5, Orin). Activation x activation MatMuls (attention) stay fp32: tract gives
    wrong results when a quantized MatMul feeds Softmax."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m = onnx.load(str(fp32_path))
    inits = {i.name for i in m.graph.initializer}
    consts = {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    keep = [n.name for n in m.graph.node if n.op_type == "MatMul" and not (n.input[1] in inits or n.input[1] in consts)]
    quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QUInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=keep)
    q = onnx.load(str(out_path))
    n_int = sum(1 for n in q.graph.node if n.op_type == "MatMulInteger")
    return {"quantized": n_int, "kept_fp32": len(keep)}


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cosine_rows(a, b):
    import numpy as np

    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def pil_image_processor(ckpt_dir: Path):
    """The reference preprocessing: SigLIP's PIL-backend image processor."""
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    return SiglipImageProcessorPil.from_pretrained(str(ckpt_dir))


def load_slow_tokenizer(ckpt_dir: Path):
    from transformers import SiglipTokenizer

    return SiglipTokenizer.from_pretrained(str(ckpt_dir))


# --------------------------------------------------------------------------- random checkpoint


def train_tokenizer(workdir: Path) -> Path:
    import sentencepiece as spm

    prefix = workdir / "spiece"
    spm.SentencePieceTrainer.train(
        input=str(CORPUS), model_prefix=str(prefix), model_type="unigram",
        vocab_size=32000, hard_vocab_limit=False,  # the small corpus yields what it can
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        character_coverage=1.0, normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=True, remove_extra_whitespaces=True,
        num_threads=1, minloglevel=2,
    )
    # the proto records the (temporary) paths it was trained from: normalise them so the
    # committed spiece.model is byte-for-byte reproducible
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    path = prefix.with_suffix(".model")
    proto = sp_pb2.ModelProto.FromString(path.read_bytes())
    proto.trainer_spec.model_prefix = "spiece"
    del proto.trainer_spec.input[:]
    proto.trainer_spec.input.append("tools/corpus.txt")
    path.write_bytes(proto.SerializeToString())
    return path


def give_trained_like_affines(model) -> None:
    """LayerNorm scales ~ 1 + N(0, 0.1), LayerNorm shifts and every Linear/Conv bias ~ N(0, 0.02)
    (in place, from torch's current seed).

    transformers initializes them to exactly 1 and 0; a trained SigLIP has neither. With the
    initial values every LayerNorm affine and bias is a no-op that tract's optimizer drops, so the
    random bundles would time a cheaper graph than the real one, and parity would never exercise
    the bias paths of the exported graph (e.g. the patch embedding's bias after
    shape_vision_for_tract)."""
    import torch

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.add_(0.1 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.02 * torch.randn_like(mod.bias))
            elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and mod.bias is not None:
                mod.bias.copy_(0.02 * torch.randn_like(mod.bias))
            elif isinstance(mod, torch.nn.MultiheadAttention):
                mod.in_proj_bias.copy_(0.02 * torch.randn_like(mod.in_proj_bias))


def make_random_checkpoint(size: str, seed: int, ckpt_dir: Path, layers: int | None = None) -> None:
    import numpy as np
    import torch
    from transformers import SiglipConfig, SiglipModel, SiglipTokenizer

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sp_model = train_tokenizer(Path(tmp))
        tok = SiglipTokenizer(str(sp_model), model_max_length=MAX_TEXT_LENGTH)
        tok.save_pretrained(str(ckpt_dir))
    tok = SiglipTokenizer.from_pretrained(str(ckpt_dir))
    (ckpt_dir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG_LIKE_REAL, indent=2) + "\n")

    if size == "tiny":
        text = dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, max_position_embeddings=MAX_TEXT_LENGTH)
        vision = dict(image_size=224, patch_size=16, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2)
    else:  # base == SiglipConfig() defaults == siglip-base-patch16-224 dims
        text, vision = dict(vocab_size=32000), dict()
    if layers is not None:  # fewer encoder layers of the same shape (tools/arm_cost.py's stand-in)
        text["num_hidden_layers"] = vision["num_hidden_layers"] = layers
    text.update(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    config = SiglipConfig(text_config=text, vision_config=vision)
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    give_trained_like_affines(model)

    # calibrate logit_scale / logit_bias (see module docstring)
    from PIL import Image

    proc = pil_image_processor(ckpt_dir)
    data = skimage_data_dir()
    images = [Image.open(data / name).convert("RGB") for name in CALIBRATION_IMAGES]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    ids = torch.tensor([tok(p, padding="max_length", max_length=MAX_TEXT_LENGTH, truncation=True)["input_ids"] for p in PROMPTS])
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels).pooler_output
        txt = model.get_text_features(input_ids=ids).pooler_output
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        cos = (img @ txt.T).double().numpy()
        s = 4.0 / float(np.std(cos))
        model.logit_scale.fill_(math.log(s))
        model.logit_bias.fill_(-s * float(np.mean(cos)))
    log(f"random {size}: vocab {tok.vocab_size} (table {config.text_config.vocab_size}), calibrated "
        f"logit_scale=log({s:.4g}) logit_bias={model.logit_bias.item():.6g} (cos mean {cos.mean():.4g} std {cos.std():.4g})")
    model.save_pretrained(str(ckpt_dir))


# --------------------------------------------------------------------------- export


def resolve_source(src: str) -> Path:
    p = Path(src).expanduser()
    if p.exists() or not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", src):
        if not p.is_dir():
            raise UserError(f"checkpoint directory not found: {src}")
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(src, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as e:  # noqa: BLE001 - network/hub errors are user-facing here
        raise UserError(f"{src!r} is not a local directory and could not be downloaded from the Hugging Face hub "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def check_checkpoint(ckpt: Path) -> dict:
    cfg_path = ckpt / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{ckpt} has no config.json (not a save_pretrained checkpoint)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path} is not valid JSON: {e}")
    if cfg.get("model_type") != "siglip":
        raise UserError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, expected 'siglip' (SigLIP dual encoder)")
    if not (ckpt / "spiece.model").is_file():
        raise UserError(f"{ckpt} has no spiece.model (SiglipTokenizer sentencepiece model missing)")
    image_processor_config(ckpt)  # raises if neither layout is there
    if not any(ckpt.glob("*.safetensors")) and not any(ckpt.glob("*.bin")):
        raise UserError(f"{ckpt} has no model weights (*.safetensors / *.bin)")
    return cfg


def image_processor_config(ckpt: Path) -> dict:
    """The image processor settings of a checkpoint, in any layout transformers writes:
    `preprocessor_config.json` (transformers 4, the hub's checkpoints) or `processor_config.json`
    with the settings nested under `image_processor` (transformers 5 `SiglipProcessor.save_pretrained`).
    The first one found wins, in that order (transformers 5 reads both the same way)."""
    pre, proc = ckpt / "preprocessor_config.json", ckpt / "processor_config.json"
    if pre.is_file():
        path, key = pre, None
    elif proc.is_file():
        path, key = proc, "image_processor"
    else:
        raise UserError(f"{ckpt} has neither preprocessor_config.json nor processor_config.json (image processor config missing)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}")
    if key is not None:
        cfg = cfg.get(key)
        if not isinstance(cfg, dict):
            raise UserError(f"{path} has no '{key}' object (image processor settings missing)")
    return cfg


def export_bundle(ckpt: Path, out: Path, source: str, int8_form: str = "weight-only", graph_shape_for: str = "tract") -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    import transformers
    from transformers import SiglipModel

    check_checkpoint(ckpt)
    pp = image_processor_config(ckpt)
    size = pp.get("size", {})
    if not (size.get("height") and size.get("height") == size.get("width")):
        raise UserError(f"unsupported image size in the image processor config: {size}")
    if pp.get("do_center_crop"):
        raise UserError("the image processor config asks for a center crop; SigLIP bundles assume none")
    resample = RESAMPLE_NAMES.get(pp.get("resample", 3))

    tok = load_slow_tokenizer(ckpt)
    model = SiglipModel.from_pretrained(str(ckpt), attn_implementation="eager", dtype=torch.float32).eval()
    image_size = int(size["height"])
    if model.config.vision_config.image_size != image_size:
        raise UserError(f"processor size {image_size} != vision_config.image_size {model.config.vision_config.image_size}")
    if model.config.text_config.max_position_embeddings != MAX_TEXT_LENGTH:
        raise UserError(f"text max_position_embeddings is {model.config.text_config.max_position_embeddings}, expected {MAX_TEXT_LENGTH}")

    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        if f.is_file() and (f.suffix in (".onnx", ".data") or f.name in ("tokenizer.json", "siglip.json")):
            f.unlink()

    class Vision(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.get_image_features(pixel_values=pixel_values).pooler_output

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m.get_text_features(input_ids=input_ids).pooler_output

    # --- reference inputs: calibration photos + PROMPTS
    from PIL import Image

    proc = pil_image_processor(ckpt)
    data = skimage_data_dir()
    pixels = proc(images=[Image.open(data / n).convert("RGB") for n in CALIBRATION_IMAGES[:4]], return_tensors="pt")["pixel_values"]
    ids = torch.tensor([tok(p, padding="max_length", max_length=MAX_TEXT_LENGTH, truncation=True)["input_ids"] for p in PROMPTS])
    with torch.no_grad():
        ref_img = Vision(model)(pixels).numpy()
        ref_txt = Text(model)(ids).numpy()

    # static int8 compute form: calibration inputs (sample photos / prompts) and check inputs
    # (calibration + held-out), as batches of one
    static_inputs = {}
    if int8_form == "static":
        def photos(paths):
            return [proc(images=[Image.open(p).convert("RGB")], return_tensors="np")["pixel_values"].astype(np.float32)
                    for p in paths]
        calib_px = photos([FIXTURE_IMAGES / n for n in STATIC_CALIBRATION_PHOTOS])
        held_px = photos([FIXTURE_IMAGES / n for n in STATIC_HELDOUT_PHOTOS] + [data / n for n in STATIC_HELDOUT_SKIMAGE]
                         + fixture_check_images())
        def id_batch(texts):
            return [np.array([tok(t, padding="max_length", max_length=MAX_TEXT_LENGTH, truncation=True)["input_ids"]],
                             dtype=np.int64) for t in texts]
        static_inputs = {
            "vision": (calib_px, calib_px + held_px),
            "text": (id_batch(PROMPTS), id_batch(PROMPTS + TRICKY_STRINGS[:12])),
        }

    files: dict[str, str] = {}
    graph_shape: dict[str, list[str]] = {}  # vision precision → shape_vision_for_tract's rewrites
    vision_hidden = model.config.vision_config.hidden_size
    results = {}
    for name, wrapper, inp, outp, dummy, ref in [
        ("vision", Vision(model), "pixel_values", "image_embeds", pixels[:2], (pixels.numpy(), ref_img)),
        ("text", Text(model), "input_ids", "text_embeds", ids[:2], (ids.numpy(), ref_txt)),
    ]:
        fp32 = out / f"{name}_fp32.onnx"
        log(f"exporting {fp32.name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (dummy,), str(fp32), input_names=[inp], output_names=[outp],
                              dynamic_axes={inp: {0: "batch"}, outp: {0: "batch"}},
                              opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True)
        m = onnx.load(str(fp32))
        shaped = name == "vision" and graph_shape_for == "tract"
        as_written = None  # torch's graph, for the weight-only form (see shape_vision_for_tract)
        if shaped:
            if int8_form == "weight-only":
                as_written = onnx.ModelProto()
                as_written.CopyFrom(m)
            graph_shape["fp32"] = shape_vision_for_tract(m, image_size, vision_hidden)
            log(f"{fp32.name}: shaped for tract: {', '.join(graph_shape['fp32']) or 'nothing matched'}")
            onnx.save(m, str(fp32))
        onnx.checker.check_model(m)
        sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
        got = sess.run(None, {inp: ref[0]})[0]
        diff = float(np.abs(got - ref[1]).max())
        log(f"{fp32.name}: onnxruntime vs torch max abs diff {diff:.3g} (batch {len(ref[0])})")
        if diff > 1e-3 * max(1.0, float(np.abs(ref[1]).max())):
            raise RuntimeError(f"{fp32.name} does not reproduce torch (max abs diff {diff})")

        int8 = out / f"{name}_int8.onnx"
        if shaped:  # the compute forms quantize the shaped fp32 file
            graph_shape["int8"] = graph_shape["fp32"]
        if int8_form == "dynamic":
            stats = quantize_dynamic_int8(fp32, int8)
        elif int8_form == "static":
            calib, check = static_inputs[name]
            ref_check = np.concatenate([sess.run(None, {inp: b})[0] for b in check])
            stats = quantize_static_int8(fp32, int8, inp, calib, check, ref_check, STATIC_MIN_COSINE)
        else:
            if as_written is not None:
                # the memory form keeps each MLP weight whole: above tract's const-fold budget it
                # stays int8 in RAM (see shape_vision_for_tract)
                m = as_written
                graph_shape["int8"] = shape_vision_for_tract(m, image_size, vision_hidden, split_linears=False)
            stats = quantize_weights_int8(m)
            onnx.checker.check_model(m)
            onnx.save(m, str(int8))
        got8 = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {inp: ref[0]})[0]
        cos = cosine_rows(got8.astype(np.float64), got.astype(np.float64))
        log(f"{int8.name}: {stats['quantized']} MatMul/Gemm weights int8, {stats['kept_fp32']} activation MatMuls fp32; "
            f"cosine vs fp32 min {cos.min():.5f} mean {cos.mean():.5f}")
        results[name] = {"int8_cosine_min": float(cos.min()), "int8_cosine_mean": float(cos.mean()), "fp32_max_abs_diff": diff}
        if int8_form == "static":
            results[name]["static"] = {
                "purpose": FORM_PURPOSE[int8_form],
                "calibration": (STATIC_CALIBRATION_PHOTOS if name == "vision" else "the sample prompts"),
                "activation_scales": stats["activation_scales"],
                "activation_quantize": stats["activation_quantize"],
                "weight_scales": stats["weight_scales"],
                "int8_matmuls": stats["quantized"],
                "float_matmuls": stats["kept_fp32"],
                "kept_float_for_parity": stats["kept_float"],
                "cosine_vs_fp32_min": round(stats["cosine_min"], 6),
                "checked_on": (STATIC_CALIBRATION_PHOTOS + STATIC_HELDOUT_PHOTOS + STATIC_HELDOUT_SKIMAGE
                               + ["every other decodable tests/fixtures/images file"]
                               if name == "vision" else "the sample prompts + 12 tokenizer test strings"),
            }
        files[name] = {"fp32": fp32.name}
        min_cos = STATIC_MIN_COSINE if int8_form == "static" else INT8_MIN_COSINE
        if int8_form == "static" and cos.min() < min_cos:
            # the gate above was met on the check set; the 4 reference photos must agree
            raise RuntimeError(f"{name} static int8 cosine {cos.min():.5f} < {min_cos} on the reference photos")
        if cos.min() >= min_cos:
            files[name]["int8"] = int8.name
        elif name == "vision":
            raise RuntimeError(f"vision int8 cosine {cos.min():.4f} < {INT8_MIN_COSINE}")
        else:
            log(f"text int8 cosine {cos.min():.4f} < {INT8_MIN_COSINE}: text_int8.onnx not shipped")
            int8.unlink()

    # --- tokenizer.json
    tj = out / "tokenizer.json"
    build_fast_tokenizer(tok, tok.eos_token_id).save(str(tj))
    n = verify_tokenizer(tj, tok)
    log(f"tokenizer.json reproduces SiglipTokenizer on {n} tricky strings (canonicalized input)")

    embed_dim = int(ref_img.shape[1])
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": "siglip",
        "source": source,
        "created_by": "tools/export_model.py",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0], "onnx": onnx.__version__},
        "image_size": image_size,
        "image_mean": [float(x) for x in pp["image_mean"]],
        "image_std": [float(x) for x in pp["image_std"]],
        "rescale_factor": float(pp["rescale_factor"]),
        "resample": resample,
        "max_text_length": MAX_TEXT_LENGTH,
        "pad_id": int(tok.pad_token_id),
        "eos_id": int(tok.eos_token_id),
        "text_preprocessing": text_preprocessing_spec(bool(tok.do_lower_case)),
        "embed_dim": embed_dim,
        "logit_scale": float(model.logit_scale.item()),
        "logit_bias": float(model.logit_bias.item()),
        "vision": {"input": "pixel_values", "output": "image_embeds", "files": files["vision"], "int8_form": FORM_NAMES[int8_form],
                   "graph_shape": graph_shape,
                   **({"int8_static": results["vision"]["static"]} if int8_form == "static" else {})},
        "text": {"input": "input_ids", "output": "text_embeds", "files": files["text"]},
        "tokenizer": "tokenizer.json",
        "sha256": {f.name: sha256_file(f) for f in sorted(out.iterdir()) if f.is_file() and f.name != "siglip.json"},
    }
    if "int8" in files["text"]:
        manifest["text"]["int8_form"] = FORM_NAMES[int8_form]
        if int8_form == "static":
            manifest["text"]["int8_static"] = results["text"]["static"]
    (out / "siglip.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    for f in sorted(out.iterdir()):
        log(f"  {f.name:20s} {f.stat().st_size:>12,d} bytes")
    log(f"bundle written to {out} (embed_dim {embed_dim}, int8 cosines: vision {results['vision']['int8_cosine_min']:.5f}, "
        f"text {results['text']['int8_cosine_min']:.5f}{'' if 'int8' in files['text'] else ' (not shipped)'})")
    return {"manifest": manifest, "results": results}


def random_source(args) -> str:
    layers = f":layers={args.layers}" if args.layers is not None else ""
    return f"random:{args.random}:seed={args.seed}{layers}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Export a SigLIP checkpoint to a siglipd bundle.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="src", metavar="MODEL", help="HF model id or local save_pretrained directory")
    src.add_argument("--random", choices=["tiny", "base"], help="build a random-weight model instead")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for --random (default 0)")
    ap.add_argument("--layers", type=int, help="with --random: encoder layers per tower (default: the size's own, 12 "
                    "at base); every layer keeps the size's shape, so --random base --layers 1 is a base-width "
                    "stand-in cheap enough to run under qemu (tools/arm_cost.py)")
    ap.add_argument("--out", required=True, help="bundle output directory")
    ap.add_argument("--checkpoint-out", help="with --random: keep the generated checkpoint here")
    ap.add_argument("--int8-form", choices=["weight-only", "dynamic", "static"], default="weight-only",
                    help="weight-only (memory form): int8 weights expanded to fp32 in tract (4x smaller files, about "
                         "half the RAM, fp32 speed class); dynamic (compute form): MatMulInteger with per-call "
                         "activation quantization, zero-point sums cost more than the integer matmuls save; "
                         "static (compute form): MatMulInteger without zero points, activation scales calibrated "
                         "on the sample photos, bare integer matmuls in tract, gated on cosine >= 0.999 vs fp32")
    ap.add_argument("--graph-shape", choices=["tract", "none"], default="tract",
                    help="tract (default): the vision graph rewritten, exactly, into the shape tract runs fastest "
                         "(patch embedding as a MatMul, MLP weights in column blocks; see shape_vision_for_tract); "
                         "none: as torch writes it, for A/B timing")
    args = ap.parse_args(argv)
    if args.checkpoint_out and not args.random:
        ap.error("--checkpoint-out only makes sense with --random")
    if args.layers is not None and (not args.random or args.layers < 1):
        ap.error("--layers needs --random and at least 1")

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        if args.random:
            import torch

            torch.set_num_threads(min(2, os.cpu_count() or 1))
            if args.checkpoint_out:
                ckpt = Path(args.checkpoint_out)
                if ckpt.exists():
                    shutil.rmtree(ckpt)
                make_random_checkpoint(args.random, args.seed, ckpt, args.layers)
                export_bundle(ckpt, Path(args.out), random_source(args), args.int8_form,
                              args.graph_shape)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    make_random_checkpoint(args.random, args.seed, Path(tmp), args.layers)
                    export_bundle(Path(tmp), Path(args.out), random_source(args), args.int8_form,
                                  args.graph_shape)
        else:
            ckpt = resolve_source(args.src)
            check_checkpoint(ckpt)
            export_bundle(ckpt, Path(args.out), args.src, args.int8_form, args.graph_shape)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
