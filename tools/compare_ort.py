#!/usr/bin/env python3
"""Peer comparison: the same ONNX vision tower through onnxruntime and through siglipd (tract),
in the same run, same input, same thread counts. Prints ms/image and the ratio tract/ORT.

    .venv/bin/python tools/compare_ort.py --model models/random-base --threads 1,2
    .venv/bin/python tools/compare_ort.py --model models/random-base --ort-dynamic   # + ORT int8

siglipd is timed with `siglipd bench --one` (one configuration per process, warm-up run, then
--runs timed runs, median), ORT the same way inside this process. Configurations alternate
between the two engines so that machine noise hits both alike. `--ort-dynamic` also times
onnxruntime's own dynamic int8 (quantize_dynamic, QUInt8 weights: QInt8 loses accuracy with
AVX2's vpmaddubsw) as a reference for what int8 can do on this CPU; siglipd does not ship
that form because tract's x86 int8 kernels are slow.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


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
    return {"median_ms": times[len(times) // 2], "min_ms": times[0], "max_ms": times[-1], "load_ms": load_ms, "out": out[0]}


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
    ap.add_argument("--siglipd", type=Path, default=ROOT / "target/release/siglipd")
    ap.add_argument("--ort-dynamic", action="store_true", help="also time ORT dynamic int8 (QUInt8)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args()
    if not a.siglipd.exists():
        sys.exit(f"no siglipd binary at {a.siglipd} (cargo build --release, or pass --siglipd)")
    manifest = json.loads((a.model / "siglip.json").read_text())
    size = manifest["image_size"]
    vision = manifest["vision"]
    pixels = fixed_input(size)
    threads = [int(t) for t in a.threads.split(",")]

    forms = [(p, a.model / f) for p, f in vision["files"].items()]
    tmp = None
    if a.ort_dynamic:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        tmp = tempfile.TemporaryDirectory()
        dyn = Path(tmp.name) / "vision_dynamic_quint8.onnx"
        quantize_dynamic(str(a.model / vision["files"]["fp32"]), str(dyn), weight_type=QuantType.QUInt8)
        forms.append(("ort-dynamic-int8", dyn))

    rows = []
    for t in threads:
        for precision, path in forms:
            o = time_ort(path, t, a.runs, pixels, vision["input"])
            row = {"precision": precision, "threads": t, "ort_ms": o["median_ms"], "ort_min_ms": o["min_ms"],
                   "ort_max_ms": o["max_ms"]}
            if precision in ("fp32", "int8"):
                s = time_siglipd(a.siglipd, a.model, precision, t, a.runs)
                row.update(tract_ms=s["median_ms"], tract_min_ms=s["min_ms"], tract_max_ms=s["max_ms"],
                           ratio=s["median_ms"] / o["median_ms"], tract_rss_mb=s["peak_rss_mb"])
            rows.append(row)
            if not a.json:
                if "ratio" in row:
                    print(f"{precision:<18} threads={t}  tract {row['tract_ms']:8.1f} ms  ORT {row['ort_ms']:8.1f} ms"
                          f"  tract/ORT = {row['ratio']:.2f}", flush=True)
                else:
                    print(f"{precision:<18} threads={t}  ORT {row['ort_ms']:8.1f} ms (reference; not a siglipd form)", flush=True)
    if a.json:
        print(json.dumps({"model": str(a.model), "onnxruntime": ort.__version__, "cpu": os.uname().machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
