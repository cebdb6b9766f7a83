#!/usr/bin/env python3
"""Regenerate tests/fixtures/ deterministically.

    python3 tools/make_fixtures.py            # everything
    python3 tools/make_fixtures.py --goldens-only   # keep bundle + images, recompute goldens

Writes
  tests/fixtures/tiny/             tiny random bundle   (export_model.py --random tiny --seed 0)
  tests/fixtures/tiny-checkpoint/  its save_pretrained checkpoint (source of truth for goldens)
  tests/fixtures/tiny-dyn/         the same weights, int8 as dynamic MatMulInteger
  tests/fixtures/tiny-static/      the same weights, int8 as the static int8 compute form
  tests/fixtures/quantize-probe/   that form's activation quantization alone, with inputs and the
                                   int8 values the ONNX QuantizeLinear definition gives them
  tests/fixtures/tiny-torch-graph/ the same weights' vision tower as torch writes it (--graph-shape
                                   none, opset 14, onnx's inferred shapes): what `siglipd model
                                   pull` gets from transformers.js
  tests/fixtures/images/           scikit-image photos + awkward/bad files made with PIL
  tests/fixtures/golden/golden.json, golden/pixels/<name>.npy
  tests/fixtures/images/rules/     one image per decoding/resizing rule (tools/input_rules.py)
                                   + case_* files from issue 11, kept as they are
  tests/fixtures/golden-rules/     rules.json (probabilities, sizes, rule texts, versions) and, per
                                   image, the RGB the processor resizes (decoded/<name>.png:
                                   load_image + convert_to_rgb) and the 224x224 pixels transformers
                                   feeds the model (pixels/<name>.png)

    python3 tools/make_fixtures.py --rules-only     # only images/rules + golden-rules
    python3 tools/make_fixtures.py --reexport       # bundles re-exported from the committed
                                                    # checkpoint (exporter changed, weights not),
                                                    # then goldens as --goldens-only

Goldens come from the *reference* pipeline, never from the ONNX files:
  transformers.image_utils.load_image(path)   (EXIF transpose + .convert("RGB"))
  SiglipImageProcessorPil                      (PIL backend: bicubic 224x224, 1/255, mean/std 0.5)
  SiglipTokenizer (slow) padding="max_length", max_length=64, truncation=True
  SiglipModel (torch fp32, eval, no_grad), probs = sigmoid(logits_per_image)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
FIX = REPO / "tests" / "fixtures"
sys.path.insert(0, str(TOOLS))
import export_model as em  # noqa: E402

BAD_IMAGES = ["truncated.jpg", "not_an_image.jpg", "empty.png"]
RULES_DIR = FIX / "images" / "rules"
RULES_GOLDEN = FIX / "golden-rules"
# crop regions (pixel boxes left, top, right, bottom) scored like the daemon's `crop`: PIL's
# Image.crop on the loaded image, then the processor
RULE_CROPS = [("resize_1500x1000.png", (600, 0, 900, 1000)), ("resize_1500x1000.png", (0, 400, 1500, 560))]


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16_rgb(path: Path, arr: np.ndarray) -> None:
    """PIL cannot write 48-bit RGB PNGs; write one by hand (bit depth 16, colour type 2)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    data += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)


def make_images(dst: Path) -> list[str]:
    from PIL import Image

    data = em.skimage_data_dir()
    dst.mkdir(parents=True, exist_ok=True)
    for old in dst.iterdir():  # files only: images/rules keeps the case files
        if old.is_file():
            old.unlink()
    open_rgb = lambda n: Image.open(data / n).convert("RGB")  # noqa: E731
    names = []

    def save(img, name, **kw):
        img.save(dst / name, **kw)
        names.append(name)

    # real photos
    shutil.copyfile(data / "rocket.jpg", dst / "rocket.jpg")  # kept as-is (640x427 baseline JPEG)
    names.append("rocket.jpg")
    save(open_rgb("chelsea.png"), "chelsea.png", optimize=True)  # 451x300, as-is
    save(open_rgb("coffee.png").resize((300, 200), Image.LANCZOS), "coffee.png", optimize=True)
    save(open_rgb("astronaut.png").resize((256, 256), Image.LANCZOS), "astronaut.png", optimize=True)
    save(Image.open(data / "camera.png").resize((256, 256), Image.LANCZOS), "camera_gray.png", optimize=True)  # mode L
    save(open_rgb("coins.png").resize((192, 152), Image.LANCZOS), "coins.jpg", quality=90)

    chelsea = open_rgb("chelsea.png").resize((225, 150), Image.LANCZOS)
    # RGBA with real transparency: alpha ramps 0..255 left->right, and fully transparent pixels
    # hide saturated magenta (load_image's convert("RGB") drops alpha *without* compositing).
    rgba = chelsea.convert("RGBA")
    a = np.array(rgba)
    a[..., 3] = np.linspace(0, 255, a.shape[1]).astype(np.uint8)[None, :]
    a[:, :40, :3] = (255, 0, 255)
    a[:, :40, 3] = 0
    save(Image.fromarray(a, "RGBA"), "rgba_transparent.png")
    la = np.stack([np.array(chelsea.convert("L")), np.tile(np.linspace(255, 0, 225).astype(np.uint8), (150, 1))], -1)
    save(Image.fromarray(la, "LA"), "la.png")
    save(open_rgb("coffee.png").resize((240, 160), Image.LANCZOS).quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE), "palette.gif")
    save(open_rgb("astronaut.png").resize((5, 3), Image.BOX), "tiny_5x3.png")
    save(open_rgb("rocket.jpg").crop((0, 180, 640, 207)).resize((1200, 40), Image.BICUBIC), "wide_1200x40.png")
    # EXIF orientation on non-square content: stored pixels are landscape, the tag rotates them
    stored = open_rgb("rocket.jpg").crop((120, 20, 480, 260)).resize((180, 120), Image.LANCZOS)
    for orient in (6, 8):
        exif = Image.Exif()
        exif[0x0112] = orient
        save(stored, f"exif_orient{orient}.jpg", quality=90, exif=exif.tobytes())
    # 16-bit: full-range gradients (PIL clips I;16 -> 8 bit instead of scaling, see README/report)
    g = np.array(Image.open(data / "camera.png").resize((128, 128), Image.LANCZOS), dtype=np.uint32)
    save(Image.fromarray((g * 257).astype(np.uint16)), "gray16.png")
    rgb16 = (np.array(open_rgb("chelsea.png").resize((150, 100), Image.LANCZOS), dtype=np.uint32) * 257)
    rgb16[..., 2] = (rgb16[..., 2] + np.arange(150)[None, :] * 3) % 65536  # low byte is informative too
    write_png16_rgb(dst / "rgb16.png", rgb16.astype(np.uint16))
    names.append("rgb16.png")
    save(open_rgb("coffee.png").resize((120, 80), Image.LANCZOS), "lossless.webp", lossless=True)
    save(open_rgb("chelsea.png").resize((90, 60), Image.LANCZOS), "chelsea.bmp")

    # bad files
    jpg = (data / "rocket.jpg").read_bytes()
    (dst / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (dst / "not_an_image.jpg").write_text("this is not an image, just text pretending to be a JPEG\n")
    (dst / "empty.png").write_bytes(b"")
    return names


def make_bundle() -> None:
    for d in (FIX / "tiny", FIX / "tiny-checkpoint"):
        if d.exists():
            shutil.rmtree(d)
    rc = em.main(["--random", "tiny", "--seed", "0", "--out", str(FIX / "tiny"), "--checkpoint-out", str(FIX / "tiny-checkpoint")])
    if rc:
        raise SystemExit(rc)
    make_dynamic_bundle()
    make_static_bundle()
    make_torch_graph_fixture()


def export_from_checkpoint(out: Path, *args: str) -> None:
    """export_model.py --from the committed tiny-checkpoint into `out` (replaced), with `args`."""
    if out.exists():
        shutil.rmtree(out)
    cwd = os.getcwd()
    os.chdir(REPO)  # a relative source path keeps the manifest independent of the checkout
    try:
        rc = em.main(["--from", "tests/fixtures/tiny-checkpoint", *args, "--out", str(out)])
    finally:
        os.chdir(cwd)
    if rc:
        raise SystemExit(rc)


def reexport_bundles() -> None:
    """tiny, tiny-dyn and tiny-static exported again from the committed tiny-checkpoint: what
    the exporter writes changed (e.g. the ONNX opset), the weights and so the goldens did not."""
    export_from_checkpoint(FIX / "tiny")
    make_dynamic_bundle()
    make_static_bundle()
    make_torch_graph_fixture()


def make_torch_graph_fixture() -> None:
    """The tiny vision tower as torch writes it (`--graph-shape none`: Conv patch embedding, whole
    MLP weights) at opset 14, optimum's default for CLIP-like models and so, as far as we can tell
    without the hub, transformers.js's (LayerNorm and the tanh GELU as element-wise chains),
    with onnx's inferred intermediate shapes: `siglipd model pull` shapes such a file itself
    (tests/pull.rs). Only that file is kept."""
    out = FIX / "tiny-torch-graph"
    opset, em.ONNX_OPSET = em.ONNX_OPSET, TRANSFORMERS_JS_OPSET
    try:
        with tempfile.TemporaryDirectory() as tmp:
            export_from_checkpoint(Path(tmp) / "b", "--graph-shape", "none")
            if out.exists():
                shutil.rmtree(out)
            out.mkdir()
            # with the intermediate shapes onnx infers (symbolic batch), as files that went
            # through onnxruntime's or onnx's tools carry: pull must not trip over them
            import onnx

            model = onnx.shape_inference.infer_shapes(onnx.load(str(Path(tmp) / "b" / "vision_fp32.onnx")))
            onnx.save(model, str(out / "vision_fp32.onnx"))
    finally:
        em.ONNX_OPSET = opset


TRANSFORMERS_JS_OPSET = 14


def make_static_bundle() -> None:
    """The same tiny weights in the static int8 compute form (export_model.py --int8-form static),
    and the quantization probe its activations go through (make_quantize_probe)."""
    export_from_checkpoint(FIX / "tiny-static", "--int8-form", "static")
    make_quantize_probe(FIX / "quantize-probe")


QUANTIZE_PROBE_SCALE = 0.037  # an activation scale (absmax / 127) whose reciprocal is inexact in f32


def quantize_probe_inputs(s: np.float32) -> np.ndarray:
    """f32 inputs x for which x·(1/s) hits every tie from -130.5 to 130.5 (both signs), the values
    one ulp either side, zeros, tiny and huge values (saturation), the int8 range's ends, and
    4096 normal activations: where a rounding or saturation rule can go wrong."""
    inv = np.float32(1.0) / s
    halves = np.arange(-130.5, 131.0, 1.0, dtype=np.float32)
    near = np.concatenate([np.nextafter(halves, np.float32(np.inf)), np.nextafter(halves, np.float32(-np.inf))])
    domain = np.concatenate([halves, near, [0.0, -0.0, 1e-30, -1e-30, 127.0, -128.0, 1e9, -1e9]]).astype(np.float32)
    rng = np.random.default_rng(0)
    x = np.concatenate([domain / inv, rng.normal(0, 3.0, 4096), [np.float32(127) * s, np.float32(-128) * s]])
    return x.astype(np.float32)


def int8_probe_model(nodes: list, initializers: list, length: int):
    """An ONNX model of `nodes` from a float vector `x` of `length` to an int8 vector `x_q`: the
    quantization probe's graph (and the tests' onnxruntime reference beside it)."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "quantize_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [length])],
                          [helper.make_tensor_value_info("x_q", TensorProto.INT8, [length])], initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", em.ONNX_OPSET)], ir_version=9)
    onnx.checker.check_model(m)
    return m


def quantize_probe_model(inv_scale: np.float32, length: int):
    """`export_model.quantize_nodes` alone, with its constants and `inv_scale` as 1/s."""
    from onnx import helper, numpy_helper

    g = helper.make_graph([], "constants", [], [])
    em.add_quantize_constants(g)
    return int8_probe_model(em.quantize_nodes("x", "inv_scale", "x_q", "quantize"),
                            [numpy_helper.from_array(inv_scale, "inv_scale"), *g.initializer], length)


def make_quantize_probe(out: Path) -> None:
    """quantize-probe/: the exporter's element-wise QuantizeLinear (export_model.quantize_nodes)
    alone as an ONNX graph, its inputs (x.npy) and the int8 values the ONNX definition gives them
    (want.npy: numpy's round-half-to-even of x·(1/s), saturated to [-128, 127]). tests/parity.rs
    runs the graph through tract and wants want.npy exactly: a tract that folded the rounding
    away would cast by truncation."""
    import onnx

    s = np.float32(QUANTIZE_PROBE_SCALE)
    inv = np.float32(1.0) / s
    x = quantize_probe_inputs(s)
    m = quantize_probe_model(inv, len(x))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out / "quantize.onnx"))
    np.save(out / "x.npy", x)
    np.save(out / "want.npy", np.clip(np.round(x * inv), -128, 127).astype(np.int8))


def make_dynamic_bundle() -> None:
    """The same tiny weights with the dynamic int8 form (MatMulInteger): exercises tract's int8
    kernels (x86, ARM NEON, ARM dot product under qemu) against the fp32 goldens."""
    out = FIX / "tiny-dyn"
    if out.exists():
        shutil.rmtree(out)
    rc = em.main(["--from", str(FIX / "tiny-checkpoint"), "--int8-form", "dynamic", "--out", str(out)])
    if rc:
        raise SystemExit(rc)


def compute_goldens(ckpt: Path, image_names: list[str]) -> dict:
    """Reference goldens from the checkpoint with transformers (shared with tools/tests)."""
    import PIL
    import torch
    import transformers
    from transformers import SiglipModel
    from transformers.image_utils import load_image

    tok = em.load_slow_tokenizer(ckpt)
    proc = em.pil_image_processor(ckpt)
    model = SiglipModel.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    enc = lambda s: tok(s, padding="max_length", max_length=em.MAX_TEXT_LENGTH, truncation=True)["input_ids"]  # noqa: E731
    prompt_ids = [enc(p) for p in em.PROMPTS]
    ids_t = torch.tensor(prompt_ids)
    images = []
    pixels = {}
    with torch.no_grad():
        text_embeds = model.get_text_features(input_ids=ids_t).pooler_output
        for name in image_names:
            img = load_image(str(FIX / "images" / name))
            pv = proc(images=img, return_tensors="pt")["pixel_values"].to(torch.float32)
            out = model(input_ids=ids_t, pixel_values=pv)
            emb = model.get_image_features(pixel_values=pv).pooler_output  # un-normalized, == ONNX output
            stem = Path(name).stem + "_" + Path(name).suffix[1:]
            pixels[stem] = pv.numpy()
            images.append({
                "file": f"images/{name}",
                "pixels": f"pixels/{stem}.npy",
                "image_embeds": emb[0].tolist(),
                "probs": torch.sigmoid(out.logits_per_image)[0].tolist(),
            })
    return {
        "reference": {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                      "pillow": PIL.__version__, "image_processor_class": type(proc).__name__,
                      "image_loader": "transformers.image_utils.load_image", "tokenizer_class": type(tok).__name__},
        "bundle": "tiny",
        "template": em.TEMPLATE,
        "labels": em.LABELS,
        "prompts": em.PROMPTS,
        "prompt_ids": prompt_ids,
        "text_embeds": text_embeds.tolist(),
        "images": images,
        "bad_images": [f"images/{n}" for n in BAD_IMAGES],
        "tokenization": [{"text": s, "ids": enc(s)} for s in em.TRICKY_STRINGS],
        "logit_scale": float(model.logit_scale.item()),
        "logit_bias": float(model.logit_bias.item()),
    }, pixels


def pixels_as_u8(pv) -> np.ndarray:
    """The 224x224x3 uint8 image behind a pixel tensor (mean = std = 0.5, rescale 1/255),
    verified to map back to exactly the same float32 tensor."""
    arr = pv[0].numpy().transpose(1, 2, 0)
    u8 = np.rint((arr * 0.5 + 0.5) * 255).astype(np.uint8)
    back = ((u8.astype(np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    assert np.array_equal(back, arr), "pixel tensor is not an 8-bit image: cannot store it as PNG"
    return u8


def make_rule_goldens(ckpt: Path) -> None:
    """Goldens for images/rules: Pillow's decoded RGB, transformers' 224x224 pixels, probabilities.
    The text tower is called with input_ids only: SigLIP was trained without an attention mask."""
    import PIL
    import torch
    import transformers
    from PIL import Image
    from transformers import SiglipModel
    from transformers.image_transforms import convert_to_rgb
    from transformers.image_utils import load_image

    import input_rules

    tok = em.load_slow_tokenizer(ckpt)
    proc = em.pil_image_processor(ckpt)
    model = SiglipModel.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    ids = torch.tensor([tok(p, padding="max_length", max_length=em.MAX_TEXT_LENGTH, truncation=True)["input_ids"] for p in em.PROMPTS])
    if RULES_GOLDEN.exists():
        shutil.rmtree(RULES_GOLDEN)
    (RULES_GOLDEN / "decoded").mkdir(parents=True)
    (RULES_GOLDEN / "pixels").mkdir(parents=True)
    entries = []
    jobs = [(n, None) for n in sorted(p.name for p in RULES_DIR.iterdir())] + [(n, box) for n, box in RULE_CROPS]
    with torch.no_grad():
        for name, box in jobs:
            img = load_image(str(RULES_DIR / name))
            if box:
                img = img.crop(box)
            key = Path(name).stem + "_" + Path(name).suffix[1:] + ("_crop_" + "_".join(map(str, box)) if box else "")
            pv = proc(images=img, return_tensors="pt")["pixel_values"].to(torch.float32)
            probs = torch.sigmoid(model(input_ids=ids, pixel_values=pv).logits_per_image)[0].tolist()
            Image.fromarray(pixels_as_u8(pv)).save(RULES_GOLDEN / "pixels" / f"{key}.png", optimize=True)
            # what the processor resizes: load_image's RGB after transformers' convert_to_rgb (which
            # paints a colour key that survived convert("RGB") white)
            Image.fromarray(convert_to_rgb(img, return_numpy=True)).save(RULES_GOLDEN / "decoded" / f"{key}.png", optimize=True)
            text, exact = input_rules.RULES.get(name, ("issue 11 case file, as reported", True))
            if box:
                text = f"crop region {img.size[0]}x{img.size[1]} (as the daemon's crop): resize pass order of the crop, not the frame"
            entries.append({"file": f"images/rules/{name}", "crop": list(box) if box else None, "rule": text,
                            "bit_exact": exact, "size": list(img.size), "decoded": f"decoded/{key}.png",
                            "pixels": f"pixels/{key}.png", "probs": probs})
    golden = {
        "reference": {"transformers": transformers.__version__, "pillow": PIL.__version__, "torch": torch.__version__.split("+")[0],
                      "image_processor_class": type(proc).__name__, "image_loader": "transformers.image_utils.load_image",
                      "text_inputs": "input_ids only (no attention_mask)"},
        "labels": em.LABELS, "prompts": em.PROMPTS, "images": entries,
    }
    (RULES_GOLDEN / "rules.json").write_text(json.dumps(golden, indent=1) + "\n")
    p = np.array([e["probs"] for e in entries])
    print(f"[fixtures] {len(entries)} rule images; probabilities min {p.min():.3f} max {p.max():.3f} mean {p.mean():.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goldens-only", action="store_true", help="reuse the bundle and images, recompute goldens")
    ap.add_argument("--rules-only", action="store_true", help="only images/rules and golden-rules (bundle, images, goldens untouched)")
    ap.add_argument("--reexport", action="store_true", help="re-export the bundles from the committed checkpoint, then recompute goldens")
    args = ap.parse_args()
    if args.reexport:
        args.goldens_only = True  # the images and rule goldens stay as they are
    warnings.filterwarnings("ignore")
    import torch

    import input_rules

    torch.set_num_threads(2)
    if args.rules_only or not args.goldens_only:
        input_rules.make(RULES_DIR)
    if args.rules_only:
        make_rule_goldens(FIX / "tiny-checkpoint")
        return 0

    if not args.goldens_only:
        make_bundle()
        names = make_images(FIX / "images")
    else:
        if args.reexport:
            reexport_bundles()
        names = sorted(p.name for p in (FIX / "images").iterdir() if p.is_file() and p.name not in BAD_IMAGES)
    names = sorted(names)
    golden, pixels = compute_goldens(FIX / "tiny-checkpoint", names)
    gdir = FIX / "golden"
    # golden/ also holds logreg.json (tools/make_logreg_fixture.py): only this script's files go
    if (gdir / "pixels").exists():
        shutil.rmtree(gdir / "pixels")
    (gdir / "pixels").mkdir(parents=True)
    for stem, arr in pixels.items():
        np.save(gdir / "pixels" / f"{stem}.npy", arr.astype(np.float32))

    # int8 parity info + consistency check with onnxruntime
    import onnxruntime as ort

    man = json.loads((FIX / "tiny" / "siglip.json").read_text())
    sess = lambda f: ort.InferenceSession(str(FIX / "tiny" / f), providers=["CPUExecutionProvider"])  # noqa: E731
    v32, v8, t32 = sess(man["vision"]["files"]["fp32"]), sess(man["vision"]["files"]["int8"]), sess(man["text"]["files"]["fp32"])
    vdiff, cos8 = 0.0, []
    for im in golden["images"]:
        pv = np.load(gdir / im["pixels"])
        e32 = v32.run(None, {"pixel_values": pv})[0][0]
        e8 = v8.run(None, {"pixel_values": pv})[0][0]
        im["image_embeds_int8_ort"] = e8.tolist()
        vdiff = max(vdiff, float(np.abs(e32 - np.array(im["image_embeds"])).max()))
        cos8.append(float(em.cosine_rows(e8.astype(np.float64), e32.astype(np.float64))))
    tout = t32.run(None, {"input_ids": np.array(golden["prompt_ids"], dtype=np.int64)})[0]
    tdiff = float(np.abs(tout - np.array(golden["text_embeds"])).max())
    (gdir / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    if not args.reexport:  # the rule goldens do not depend on the bundle (and need input_rules.make)
        make_rule_goldens(FIX / "tiny-checkpoint")

    probs = np.array([im["probs"] for im in golden["images"]])
    print(f"[fixtures] {len(golden['images'])} golden images, {len(golden['tokenization'])} tokenization cases")
    print(f"[fixtures] onnxruntime fp32 vs torch: vision max abs diff {vdiff:.3g}, text max abs diff {tdiff:.3g}")
    print(f"[fixtures] vision int8 vs fp32 cosine: min {min(cos8):.5f}")
    print(f"[fixtures] probability spread: min {probs.min():.4f} max {probs.max():.4f} mean {probs.mean():.4f} std {probs.std():.4f}")
    if vdiff > 1e-4 or tdiff > 1e-4:
        print("[fixtures] ERROR: ONNX fp32 does not reproduce the torch reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
