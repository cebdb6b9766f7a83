"""Inputs as today's tools produce them (issue 11): transformers 5 checkpoints, the no-mask text
semantics of the goldens, and the per-rule image goldens (tiny models only, CPU).

Run: .venv/bin/python -m pytest tools/tests/test_inputs.py -q
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


def run_export(*args):
    return subprocess.run([sys.executable, str(TOOLS / "export_model.py"), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def v5_checkpoint(tmp_path_factory):
    """The committed tiny checkpoint re-saved the transformers 5 way: SiglipModel.save_pretrained
    + SiglipProcessor.save_pretrained (processor_config.json, no preprocessor_config.json)."""
    import transformers
    from transformers import SiglipModel, SiglipProcessor, SiglipTokenizer

    assert int(transformers.__version__.split(".")[0]) >= 5, transformers.__version__
    src = FIX / "tiny-checkpoint"
    d = tmp_path_factory.mktemp("v5ckpt")
    SiglipModel.from_pretrained(str(src)).save_pretrained(str(d))
    proc = SiglipProcessor(image_processor=em.pil_image_processor(src), tokenizer=SiglipTokenizer.from_pretrained(str(src)))
    proc.save_pretrained(str(d))
    assert (d / "processor_config.json").is_file() and not (d / "preprocessor_config.json").exists()
    assert "image_processor" in json.loads((d / "processor_config.json").read_text())
    return d


def test_transformers5_checkpoint_round_trip(v5_checkpoint, tmp_path):
    import onnxruntime as ort
    import torch
    from transformers import SiglipModel
    from transformers.image_utils import load_image

    r = run_export("--from", str(v5_checkpoint), "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stdout + r.stderr
    man = json.loads((tmp_path / "b" / "siglip.json").read_text())
    ref = json.loads((FIX / "tiny" / "siglip.json").read_text())
    for key in ("image_size", "image_mean", "image_std", "rescale_factor", "resample", "max_text_length", "pad_id", "eos_id",
                "text_preprocessing", "embed_dim", "logit_scale", "logit_bias"):
        assert man[key] == ref[key], key
    # the exported vision tower reproduces the checkpoint on a real image
    proc = em.pil_image_processor(v5_checkpoint)
    pv = proc(images=load_image(str(FIX / "images" / "chelsea.png")), return_tensors="pt")["pixel_values"]
    model = SiglipModel.from_pretrained(str(v5_checkpoint)).eval()
    with torch.no_grad():
        want = model.get_image_features(pixel_values=pv).pooler_output[0].numpy()
    sess = ort.InferenceSession(str(tmp_path / "b" / man["vision"]["files"]["fp32"]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"pixel_values": pv.numpy()})[0][0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_processor_config_without_image_processor_is_a_clear_error(v5_checkpoint, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(v5_checkpoint, bad)
    (bad / "processor_config.json").write_text(json.dumps({"processor_class": "SiglipProcessor"}))
    r = run_export("--from", str(bad), "--out", str(tmp_path / "o1"))
    assert r.returncode != 0 and "no 'image_processor' object" in r.stderr and "Traceback" not in r.stderr
    (bad / "processor_config.json").unlink()
    r = run_export("--from", str(bad), "--out", str(tmp_path / "o2"))
    assert r.returncode != 0 and "neither preprocessor_config.json nor processor_config.json" in r.stderr


def text_embeds(with_mask: bool, prompts):
    import torch
    from transformers import SiglipModel

    ckpt = FIX / "tiny-checkpoint"
    tok = em.load_slow_tokenizer(ckpt)
    enc = tok(prompts, padding="max_length", max_length=em.MAX_TEXT_LENGTH, truncation=True, return_tensors="pt")
    model = SiglipModel.from_pretrained(str(ckpt)).eval()
    kw = {"attention_mask": enc["attention_mask"]} if with_mask else {}
    with torch.no_grad():
        return model.get_text_features(input_ids=enc["input_ids"], **kw).pooler_output.numpy()


def test_goldens_follow_the_trained_model_without_a_text_mask():
    """SigLIP was trained with no text attention mask (pad with </s>, attend to it). transformers 5
    tokenizers return an attention_mask, and passing it changes the embeddings: the goldens must be
    the unmasked ones, and the masked ones must be far enough away for this test to notice."""
    g = json.loads((FIX / "golden" / "golden.json").read_text())
    golden = np.array(g["text_embeds"])
    unmasked, masked = text_embeds(False, g["prompts"]), text_embeds(True, g["prompts"])
    np.testing.assert_allclose(unmasked, golden, atol=1e-5)
    assert np.abs(masked - golden).max() > 1e-2, "masking must make a difference, or this test proves nothing"
    rules = json.loads((FIX / "golden-rules" / "rules.json").read_text())
    assert rules["reference"]["text_inputs"] == "input_ids only (no attention_mask)"
    assert rules["prompts"] == g["prompts"]


def test_rule_goldens_reproducible():
    """Every per-rule golden (decoded RGB, 224x224 pixels, probabilities) is what Pillow and
    transformers give today, with the versions recorded."""
    import PIL
    import torch
    import transformers
    from PIL import Image
    from transformers import SiglipModel
    from transformers.image_transforms import convert_to_rgb
    from transformers.image_utils import load_image

    import make_fixtures as mf

    rules = json.loads((FIX / "golden-rules" / "rules.json").read_text())
    assert rules["reference"]["pillow"] == PIL.__version__ == "13.0.0"
    assert rules["reference"]["transformers"] == transformers.__version__
    ckpt = FIX / "tiny-checkpoint"
    proc = em.pil_image_processor(ckpt)
    model = SiglipModel.from_pretrained(str(ckpt)).eval()
    tok = em.load_slow_tokenizer(ckpt)
    ids = torch.tensor([tok(p, padding="max_length", max_length=64, truncation=True)["input_ids"] for p in rules["prompts"]])
    files = {f"images/rules/{p.name}" for p in (FIX / "images" / "rules").iterdir()}
    assert files <= {e["file"] for e in rules["images"]}, "every rule image has a golden"
    with torch.no_grad():
        for e in rules["images"]:
            img = load_image(str(FIX / e["file"]))
            if e["crop"]:
                img = img.crop(tuple(e["crop"]))
            assert list(img.size) == e["size"], e["file"]
            decoded = convert_to_rgb(img, return_numpy=True)
            assert np.array_equal(decoded, np.asarray(Image.open(FIX / "golden-rules" / e["decoded"]))), e["file"]
            pv = proc(images=img, return_tensors="pt")["pixel_values"]
            assert np.array_equal(mf.pixels_as_u8(pv), np.asarray(Image.open(FIX / "golden-rules" / e["pixels"]))), e["file"]
            probs = torch.sigmoid(model(input_ids=ids, pixel_values=pv).logits_per_image)[0].numpy()
            np.testing.assert_allclose(probs, e["probs"], atol=1e-5, err_msg=e["file"])


def test_rule_images_are_what_the_script_makes(tmp_path):
    """The committed rule images come from tools/input_rules.py, byte for byte (the case_* files
    are the issue's own and are kept as reported)."""
    import input_rules

    names = input_rules.make(tmp_path)
    committed = {p.name for p in (FIX / "images" / "rules").iterdir() if not p.name.startswith("case_")}
    assert set(names) == committed
    for n in names:
        assert (tmp_path / n).read_bytes() == (FIX / "images" / "rules" / n).read_bytes(), n
