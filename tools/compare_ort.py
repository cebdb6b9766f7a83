#!/usr/bin/env python3
"""Peer comparison: the same ONNX vision tower through onnxruntime and through siglipd (tract),
in the same run, same input, same thread counts. Prints ms/image and the ratio tract/ORT.

    .venv/bin/python tools/compare_ort.py --model models/random-base --threads 1,2
    .venv/bin/python tools/compare_ort.py --model models/random-base --ort-dynamic   # + ORT int8
    .venv/bin/python tools/compare_ort.py --model base-weight-only --also base-dynamic --also base-static \
        --threads 1,2 --ort-dynamic        # every export form of one checkpoint, in one run

siglipd is timed with `siglipd bench --one` (one configuration per process, warm-up run, then
--runs timed runs, median), ORT the same way inside this process. Configurations alternate
between the two engines so that machine noise hits both alike. `--ort-dynamic` also times
onnxruntime's own dynamic int8 (quantize_dynamic, QUInt8 weights: QInt8 loses accuracy with
AVX2's vpmaddubsw) as a reference for what int8 can do on this CPU; siglipd does not ship
that form because tract's x86 int8 kernels are slow.

`--also DIR` adds the int8 file of other bundles exported from the same checkpoint (their
vision_fp32.onnx must be byte-identical to --model's), so every export form (weight-only,
dynamic, static) is timed against onnxruntime in the same run. The CPU (lscpu model name and
its int8/AVX features) is printed with the figures and stored in the JSON.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


def cpu_label():
    """lscpu's model name plus the ISA features that decide tract's kernels."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        name = m.group(1).strip() if m else name
        f = re.search(r"^Flags:\s*(.+)$", out, re.M)
        flags = set(f.group(1).split()) if f else set()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        info = Path("/proc/cpuinfo").read_text()
        fam = re.search(r"^cpu family\s*:\s*(\d+)", info, re.M)
        mod = re.search(r"^model\s*:\s*(\d+)", info, re.M)
        if fam and mod:
            name += f", family {fam.group(1)} model {mod.group(1)}"
    except OSError:
        pass
    isa = [x for x in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "asimdhp") if x in flags]
    return f"{name} ({os.cpu_count()} CPUs; {' '.join(isa) or 'no AVX2/AVX-512/dot-product flags'})"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fixed_input(size):
    # the same gradient `siglipd bench` feeds (src/bench.rs)
    n = 3 * size * size
    return (((np.arange(n) % 251).astype(np.float32) / 125.0) - 1.0).reshape(1, 3, size, size)


def time_ort(path, threads, runs, pixels, input_name):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3
    feed = {input_name: pixels}
    sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1], "load_ms": load_ms, "out": out[0]}


def time_siglipd(exe, model, precision, threads, runs):
    cmd = [str(exe), "-q", "bench", "--one", "--model", str(model), "--precision", precision,
           "--threads", str(threads), "--runs", str(runs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"siglipd bench failed ({' '.join(cmd)}):\n{r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="siglipd bundle directory")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--int8-runs", type=int, help="timed runs for siglipd's integer compute forms (dynamic/static "
                    "int8; default --runs): tract's AVX2 int8 kernel takes tens of seconds per image")
    ap.add_argument("--siglipd", type=Path, default=ROOT / "target/release/siglipd")
    ap.add_argument("--ort-dynamic", action="store_true", help="also time ORT dynamic int8 (QUInt8)")
    ap.add_argument("--also", type=Path, action="append", default=[],
                    help="another bundle of the same checkpoint: time its int8 form too (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args()
    if not a.siglipd.exists():
        sys.exit(f"no siglipd binary at {a.siglipd} (cargo build --release, or pass --siglipd)")
    manifest = json.loads((a.model / "siglip.json").read_text())
    size = manifest["image_size"]
    vision = manifest["vision"]
    pixels = fixed_input(size)
    threads = [int(t) for t in a.threads.split(",")]

    # (row label, form name, bundle, siglipd precision or None, file)
    forms = [(p, vision.get("int8_form", "int8") if p == "int8" else "fp32", a.model, p, a.model / f)
             for p, f in vision["files"].items()]
    fp32_sha = sha256(a.model / vision["files"]["fp32"])
    for other in a.also:
        ov = json.loads((other / "siglip.json").read_text())["vision"]
        if sha256(other / ov["files"]["fp32"]) != fp32_sha:
            sys.exit(f"{other}: its vision_fp32.onnx differs from {a.model}'s (not the same checkpoint)")
        if "int8" not in ov["files"]:
            sys.exit(f"{other} has no int8 vision file")
        form = ov.get("int8_form", "int8")
        forms.append((f"int8:{form}", form, other, "int8", other / ov["files"]["int8"]))
    tmp = None
    if a.ort_dynamic:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        tmp = tempfile.TemporaryDirectory()
        dyn = Path(tmp.name) / "vision_dynamic_quint8.onnx"
        quantize_dynamic(str(a.model / vision["files"]["fp32"]), str(dyn), weight_type=QuantType.QUInt8)
        forms.append(("ort-dynamic-int8", "ort-dynamic-quint8", a.model, None, dyn))

    cpu = cpu_label()
    if not a.json:
        print(f"cpu: {cpu}; onnxruntime {ort.__version__}; runs {a.runs} (median, min-max)", flush=True)
    rows = []
    for t in threads:
        for label, form, bundle, precision, path in forms:
            o = time_ort(path, t, a.runs, pixels, vision["input"])
            row = {"precision": label, "form": form, "threads": t, "ort_ms": o["median_ms"], "ort_min_ms": o["min_ms"],
                   "ort_max_ms": o["max_ms"], "ort_load_ms": o["load_ms"]}
            if precision is not None:
                compute = form.startswith(("dynamic", "static"))
                s = time_siglipd(a.siglipd, bundle, precision, t, a.int8_runs if compute and a.int8_runs else a.runs)
                row.update(tract_ms=s["median_ms"], tract_min_ms=s["min_ms"], tract_max_ms=s["max_ms"],
                           ratio=s["median_ms"] / o["median_ms"], tract_rss_mb=s["peak_rss_mb"],
                           tract_steady_rss_mb=s.get("rss_mb", float("nan")), tract_runs=s["runs"],
                           tract_load_ms=s["load_ms"], kernels=s.get("kernels", []))
            rows.append(row)
            if not a.json:
                name = label if precision != "int8" else f"int8:{form}"
                if "ratio" in row:
                    print(f"{name:<34} threads={t}  tract {row['tract_ms']:8.1f} ms ({row['tract_min_ms']:.1f}-"
                          f"{row['tract_max_ms']:.1f}, peak RSS {row['tract_rss_mb']:.0f} MB, "
                          f"RSS {row['tract_steady_rss_mb']:.0f} MB, load {row['tract_load_ms']:.0f} ms)"
                          f"  ORT {row['ort_ms']:8.1f} ms ({row['ort_min_ms']:.1f}-{row['ort_max_ms']:.1f})"
                          f"  tract/ORT = {row['ratio']:.2f}", flush=True)
                else:
                    print(f"{label:<30} threads={t}  ORT {row['ort_ms']:8.1f} ms ({row['ort_min_ms']:.1f}-{row['ort_max_ms']:.1f})"
                          f" (reference; not a siglipd form)", flush=True)
    summary = []
    for t in threads:
        mine = [r for r in rows if r["threads"] == t and "tract_ms" in r]
        fp32 = next((r for r in mine if r["precision"] == "fp32"), None)
        best_t = min(mine, key=lambda r: r["tract_ms"])
        best_o = min((r for r in rows if r["threads"] == t), key=lambda r: r["ort_ms"])
        summary.append({"threads": t, "fastest_tract": best_t["precision"], "fastest_tract_ms": best_t["tract_ms"],
                        "fastest_ort": best_o["precision"], "fastest_ort_ms": best_o["ort_ms"],
                        "ratio": best_t["tract_ms"] / best_o["ort_ms"],
                        "fp32_vs_ort_fp32": fp32["ratio"] if fp32 else None})
        if not a.json:
            print(f"threads={t}: fastest siglipd form {best_t['precision']} {best_t['tract_ms']:.1f} ms, fastest ORT form "
                  f"{best_o['precision']} {best_o['ort_ms']:.1f} ms: ratio {summary[-1]['ratio']:.2f}", flush=True)
    if a.json:
        print(json.dumps({"model": str(a.model), "onnxruntime": ort.__version__, "cpu": cpu, "arch": os.uname().machine,
                          "runs": a.runs, "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
