#!/usr/bin/env python3
"""ARM cost proxy: guest instructions executed per image, per vision form, under qemu-user.

No ARM board here, and qemu's wall time says nothing about one. What qemu does say exactly is
which instructions tract's kernels execute on an emulated Cortex-A72 (Pi 4: no fp16 arithmetic,
no dot product) or Cortex-A76 (Pi 5, Jetson Orin's A78 alike: FEAT_FP16 and FEAT_DotProd). The
count per image is a hardware-independent cost proxy: one FMLA does 4 f32 or 8 f16
multiply-adds, one SDOT 16 int8 ones, and the A76 issues two of any of them per cycle, so the
ratio of counts between forms on one CPU model tracks their ratio of compute time there (it
does not see cache misses or latency chains; it is a proxy, not a timing).

How: `tools/arm-cost/insn_count.c`, a TCG plugin (QEMU plugin API v1, as Debian bookworm's
dynamic `qemu-aarch64` 7.2 loads; Debian ships no plugins, so it is built here from the
`qemu-plugin.h` of Debian's QEMU 7.2 source, fetched from the Debian archive and checked by
sha256), counts every executed instruction of `siglipd bench --one` for one form. That run
loads the model, embeds a warm-up image, N timed images and the bench's parity probes; two runs
with N = 1 and N = 2 differ by exactly one image, so their difference is the per-image count
without loading. The parity probes of the two runs also give each form's image-embedding cosine
against fp32 on that emulated CPU.

qemu-user 7.2 shows the host's /proc/cpuinfo, where tract looks for fp16 (`asimdhp`); the dot
product it reads from the auxiliary vector, which qemu does emulate. So on cortex-a76 this
script states fp16 with `TRACT_CPU_ISA=+fp16` (the emulated CPU has it); the kernels tract
picked are printed beside every count.

    .venv/bin/python tools/arm_cost.py --model b2-shaped --int8-model b2-static --int8-model b2-dynamic
"""
import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QEMU_ORIG = "qemu_7.2+dfsg.orig.tar.xz"
QEMU_URL = f"http://deb.debian.org/debian/pool/main/q/qemu/{QEMU_ORIG}"
# from qemu_7.2+dfsg-7+deb12u18.dsc (Checksums-Sha256), the version bookworm's qemu-user runs
QEMU_SHA256 = "91aca71520040edc40b8d437aa3004dae614f58e286cf653ee8996c07af2962f"
HEADER = "qemu-7.2.0/include/qemu/qemu-plugin.h"
# what each emulated CPU has that qemu-user 7.2 cannot show tract (see the module docstring)
CPU_ENV = {"cortex-a72": {}, "cortex-a76": {"TRACT_CPU_ISA": "+fp16"}}


def plugin(work: Path) -> Path:
    """Builds the instruction-count plugin once (target/arm-cost/insn_count.so)."""
    work.mkdir(parents=True, exist_ok=True)
    so = work / "insn_count.so"
    src = ROOT / "tools/arm-cost/insn_count.c"
    if so.exists() and so.stat().st_mtime >= src.stat().st_mtime:
        return so
    include = work / "include"
    if not (include / "qemu-plugin.h").exists():
        tarball = work / QEMU_ORIG
        if not tarball.exists():
            print(f"fetching {QEMU_URL} (for qemu-plugin.h)", file=sys.stderr)
            urllib.request.urlretrieve(QEMU_URL, tarball)
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if digest != QEMU_SHA256:
            tarball.unlink()
            sys.exit(f"arm_cost: {QEMU_ORIG} has sha256 {digest}, expected {QEMU_SHA256}")
        include.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as t:
            member = t.getmember(HEADER)
            (include / "qemu-plugin.h").write_bytes(t.extractfile(member).read())
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", f"-I{include}", "-o", str(so), str(src)], check=True)
    return so


def count(so: Path, binary: Path, cpu: str, model: Path, precision: str, runs: int) -> tuple[int, dict]:
    """Instructions executed by one `siglipd bench --one` run, and its measurement JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "count"
        cmd = ["qemu-aarch64", "-cpu", cpu, "-plugin", f"{so},out={out}", str(binary), "-q", "bench", "--one",
               "--model", str(model), "--precision", precision, "--threads", "1", "--runs", str(runs)]
        env = dict(os.environ, **CPU_ENV[cpu])
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"arm_cost: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
        fields = out.read_text().split()
        return int(fields[1]), json.loads(r.stdout)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def worst_cosine(probe: list, reference: list) -> float:
    return min(cosine(a, b) for a, b in zip(probe, reference))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="bundle for fp32 and fp16 (and its int8 file)")
    ap.add_argument("--int8-model", type=Path, action="append", default=[], help="more bundles whose int8 form to count")
    ap.add_argument("--cpu", default="cortex-a72,cortex-a76")
    ap.add_argument("--precision", default="fp32,fp16,int8", help="forms of --model to count")
    ap.add_argument("--binary", type=Path, default=ROOT / "target/cross/aarch64-unknown-linux-gnu/release/siglipd")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    if not a.binary.exists():
        sys.exit(f"arm_cost: no {a.binary}: build it with `sudo bash cross/aarch64.sh --build-only`")
    so = plugin(ROOT / "target/arm-cost")
    jobs = [(a.model, p) for p in a.precision.split(",")] + [(m, "int8") for m in a.int8_model]
    rows = []
    for cpu in a.cpu.split(","):
        reference = None
        for model, precision in jobs:
            one, m1 = count(so, a.binary, cpu, model, precision, 1)
            two, _ = count(so, a.binary, cpu, model, precision, 2)
            if precision == "fp32" and model == a.model:
                reference = m1["probe"]
            form = json.loads((model / "siglip.json").read_text())["vision"].get("int8_form") if precision == "int8" else None
            row = {
                "cpu": cpu,
                "model": str(model),
                "precision": precision,
                "int8_form": form,
                "insns_per_image": two - one,
                "insns_load_and_probes": one - (two - one) * 2,
                "macs": m1["macs"],
                "kernels": m1["kernels"],
                "cos_vs_fp32": worst_cosine(m1["probe"], reference) if reference else None,
                "tract_cpu_isa": CPU_ENV[cpu].get("TRACT_CPU_ISA"),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| CPU | form | G instructions / image | vs fp32 | MAC / instruction | cos vs fp32 | kernels |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        fp32 = next((x for x in rows if x["cpu"] == r["cpu"] and x["precision"] == "fp32"), None)
        ratio = f"{r['insns_per_image'] / fp32['insns_per_image']:.2f}" if fp32 else "–"
        form = r["precision"] + (f" ({r['int8_form']})" if r["int8_form"] else "")
        cos = f"{r['cos_vs_fp32']:.5f}" if r["cos_vs_fp32"] is not None else "–"
        print(f"| {r['cpu']} | {form} | {r['insns_per_image'] / 1e9:.2f} | {ratio} | {r['macs'] / r['insns_per_image']:.1f} | {cos} | {', '.join(r['kernels'])} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
