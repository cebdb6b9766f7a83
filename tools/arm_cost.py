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

    .venv/bin/python tools/arm_cost.py --model l1-shaped --int8-model l1-static --json l1.json

A base-size image takes minutes per form under qemu (TCG emulates every float operation in
software), so the counts come from base-width stand-ins with 1 and 2 encoder layers
(`export_model.py --random base --layers 1`), extrapolated to SigLIP base's 12 layers:

    .venv/bin/python tools/arm_cost.py --extrapolate l1.json:1 l2.json:2 --to-layers 12
"""
import argparse
import hashlib
import json
import math
import os
import re
import shutil
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


def demangle(name: str) -> str:
    """Rust's legacy mangling (`_ZN4core3ptr13drop_in_place17h…E`) as `core::ptr::drop_in_place`."""
    name = re.sub(r"\.llvm\.\d+$", "", name)  # LLVM's suffix on a function it cloned locally
    if not (name.startswith("_ZN") and name.endswith("E")):
        return name
    parts, rest = [], name[3:-1]
    while rest and rest[0].isdigit():
        digits = len(rest) - len(rest.lstrip("0123456789"))
        n = int(rest[:digits])
        parts.append(rest[digits:digits + n])
        rest = rest[digits + n:]
    if parts and parts[-1].startswith("h") and len(parts[-1]) == 17:
        parts.pop()  # the hash
    text = "::".join(parts)
    for code, ch in (("$LT$", "<"), ("$GT$", ">"), ("$u7b$", "{"), ("$u7d$", "}"), ("$C$", ","), ("$u20$", " "), ("$RF$", "&"), ("..", "::")):
        text = text.replace(code, ch)
    return text


class SymbolTable:
    """The guest binary's functions by address (`aarch64-linux-gnu-nm`), for the blocks qemu's own
    lookup leaves unnamed: assembly without an ELF size, like tract's kernels."""

    LIBS = "(shared libraries: libc, libm, libgcc)"
    UNNAMED = "(unnamed code in the binary: PLT stubs, padding)"

    def __init__(self, binary: Path):
        nm = shutil.which("aarch64-linux-gnu-nm") or "nm"
        out = subprocess.run([nm, "-n", "-S", "--defined-only", str(binary)], capture_output=True, text=True, check=True).stdout
        self.addrs, self.sizes, self.names, self.by_name = [], [], [], {}
        for line in out.splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 3:  # no size: assembly without `.size`, like tract's kernels
                parts.insert(1, "0")
            # local labels of assembly (`.packed_packed_loop_4`) and mapping symbols (`$x`) are
            # places inside a function, not functions
            if len(parts) == 4 and parts[2] in "tTwW" and not parts[3].startswith((".", "$")):
                addr = int(parts[0], 16)
                self.addrs.append(addr)
                self.sizes.append(int(parts[1], 16))
                self.names.append(parts[3])
                self.by_name.setdefault(parts[3], addr)
        self.end = self.addrs[-1] + (1 << 20) if self.addrs else 0
        self.bias = 0

    def learn_bias(self, named: list[tuple[int, str]]) -> None:
        """The load address (PIE) of one run: the offset most named blocks agree on between their
        address and their symbol's. Learnt per run; a split vote is an error, not a guess."""
        votes = {}
        for vaddr, name in named:
            if name in self.by_name:
                d = vaddr - self.by_name[name]
                votes[d] = votes.get(d, 0) + 1
        if not votes:
            sys.exit("arm_cost: no block qemu named is in the binary's symbol table: is --binary the binary that ran?")
        best = max(votes, key=votes.get)
        if votes[best] * 2 < sum(votes.values()):
            sys.exit(f"arm_cost: the load address is ambiguous ({len(votes)} offsets, the best has {votes[best]} of {sum(votes.values())} votes)")
        self.bias = best

    def name(self, vaddr: int) -> str:
        import bisect

        a = vaddr - self.bias
        i = bisect.bisect_right(self.addrs, a) - 1
        if i < 0 or a >= self.end:
            return self.LIBS
        if self.sizes[i] and a >= self.addrs[i] + self.sizes[i]:
            return self.UNNAMED  # past a sized function's end: not part of it
        return self.names[i]


def count(so: Path, binary: Path, cpu: str, model: Path, precision: str, runs: int, table: SymbolTable) -> tuple[int, dict, dict]:
    """Instructions executed by one `siglipd bench --one` run, its measurement JSON and the
    instructions per guest function (demangled)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "count"
        cmd = ["qemu-aarch64", "-cpu", cpu, "-plugin", f"{so},out={out}", str(binary), "-q", "bench", "--one",
               "--model", str(model), "--precision", precision, "--threads", "1", "--runs", str(runs)]
        env = dict(os.environ, **CPU_ENV[cpu])
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"arm_cost: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
        lines = out.read_text().splitlines()
        total = int(lines[0].split()[1])
        named, unnamed = [], []
        for line in lines[1:]:
            kind, n, *rest = line.split(" ", 3)
            if kind == "dropped":
                if int(n):
                    print(f"arm_cost: {n} instructions not attributed to a function (plugin table full)", file=sys.stderr)
                continue
            vaddr, *name = rest
            (named if kind == "sym" else unnamed).append((int(n), int(vaddr, 16), name[0] if name else None))
        table.learn_bias([(v, name) for _, v, name in named])
        per_symbol = {}
        for n, vaddr, name in named + unnamed:
            key = demangle(name or table.name(vaddr))
            per_symbol[key] = per_symbol.get(key, 0) + n
        return total, json.loads(r.stdout), per_symbol


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def worst_cosine(probe: list, reference: list) -> float:
    return min(cosine(a, b) for a, b in zip(probe, reference))


def extrapolate_rows(rows_a: list, la: int, rows_b: list, lb: int, layers: int) -> list:
    """Rows of the `layers`-layer model from those of `la`- and `lb`-layer stand-ins, matched by
    (cpu, precision, int8_form): counts and MACs linear in the layer count."""
    key = lambda r: (r["cpu"], r["precision"], r["int8_form"])  # noqa: E731
    b_by_key = {key(r): r for r in rows_b}
    out = []
    for ra in rows_a:
        rb = b_by_key.get(key(ra))
        if rb is None:
            continue
        per_layer = (rb["insns_per_image"] - ra["insns_per_image"]) / (lb - la)
        macs_per_layer = (rb["macs"] - ra["macs"]) / (lb - la)
        out.append({**ra, "insns_per_image": ra["insns_per_image"] + (layers - la) * per_layer,
                    "macs": ra["macs"] + (layers - la) * macs_per_layer, "insns_per_layer": per_layer})
    return out


def extrapolate(specs: list[str], layers: int) -> None:
    """Counts of two stand-ins that differ only in encoder layers (`export_model.py --random base
    --layers a` and `--layers b`, same seed) give the cost of one layer, (B − A) / (b − a), and
    of everything else (patch embedding, MAP head, loading-free per-image overhead), A − a·layer:
    the model with `layers` layers is then A + (layers − a)·layer. Prints the form ratios of that."""
    parsed = []
    for spec in specs:
        path, _, n = spec.rpartition(":")
        if not path or not n.isdigit():
            sys.exit(f"arm_cost: --extrapolate takes JSON:LAYERS (e.g. l1.json:1), not {spec!r}")
        parsed.append((Path(path), int(n)))
    (path_a, la), (path_b, lb) = parsed
    if la == lb:
        sys.exit("arm_cost: the two stand-ins must differ in layers")
    out = extrapolate_rows(json.loads(path_a.read_text()), la, json.loads(path_b.read_text()), lb, layers)
    if not out:
        sys.exit(f"arm_cost: {path_a} and {path_b} share no (cpu, form) row")
    missing = {r["cpu"] for r in out} - {r["cpu"] for r in out if r["precision"] == "fp32"}
    if missing:
        sys.exit(f"arm_cost: no fp32 row in both files for {', '.join(sorted(missing))}: nothing to compare with")
    print(f"extrapolated to {layers} layers from {la} and {lb} ({path_a}, {path_b})")
    print("| CPU | form | G instructions / image | vs fp32 | per layer vs fp32 | MAC / instruction |")
    print("|---|---|---:|---:|---:|---:|")
    for r in out:
        fp32 = next(x for x in out if x["cpu"] == r["cpu"] and x["precision"] == "fp32")
        form = r["precision"] + (f" ({r['int8_form']})" if r["int8_form"] else "")
        print(f"| {r['cpu']} | {form} | {r['insns_per_image'] / 1e9:.2f} | {r['insns_per_image'] / fp32['insns_per_image']:.2f} "
              f"| {r['insns_per_layer'] / fp32['insns_per_layer']:.2f} | {r['macs'] / r['insns_per_image']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--extrapolate", nargs=2, metavar="JSON:LAYERS",
                    help="instead of counting: two --json outputs of stand-ins with different --layers, extrapolated to --to-layers")
    ap.add_argument("--to-layers", type=int, default=12, help="with --extrapolate (default 12: SigLIP base)")
    ap.add_argument("--model", type=Path, help="bundle for fp32 and fp16 (and its int8 file)")
    ap.add_argument("--int8-model", type=Path, action="append", default=[], help="more bundles whose int8 form to count")
    ap.add_argument("--cpu", default="cortex-a72,cortex-a76", help=f"qemu CPU models, of: {', '.join(CPU_ENV)}")
    ap.add_argument("--precision", default="fp32,fp16,int8", help="forms of --model to count")
    ap.add_argument("--binary", type=Path, default=ROOT / "target/cross/aarch64-unknown-linux-gnu/release/siglipd")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--symbols", type=int, default=8, help="functions to list per form (instructions per image)")
    a = ap.parse_args()
    if a.extrapolate:
        return extrapolate(a.extrapolate, a.to_layers)
    if a.model is None:
        ap.error("--model is required (or --extrapolate)")
    if not a.binary.exists():
        sys.exit(f"arm_cost: no {a.binary}: build it with `sudo bash cross/aarch64.sh --build-only`")
    cpus = a.cpu.split(",")
    unknown = [c for c in cpus if c not in CPU_ENV]
    if unknown:
        sys.exit(f"arm_cost: no CPU model {', '.join(unknown)} here (known: {', '.join(CPU_ENV)}; each needs its TRACT_CPU_ISA statement)")
    so = plugin(ROOT / "target/arm-cost")
    table = SymbolTable(a.binary)
    jobs = [(a.model, p) for p in a.precision.split(",")] + [(m, "int8") for m in a.int8_model]
    # fp32 first: its probe embeddings are every other form's parity reference
    jobs.sort(key=lambda j: (j[1] != "fp32" or j[0] != a.model))
    rows = []
    for cpu in cpus:
        reference = None
        for model, precision in jobs:
            one, m1, s1 = count(so, a.binary, cpu, model, precision, 1, table)
            two, _, s2 = count(so, a.binary, cpu, model, precision, 2, table)
            per_symbol = {k: s2.get(k, 0) - s1.get(k, 0) for k in s2}
            top = sorted(per_symbol.items(), key=lambda kv: -kv[1])[: a.symbols]
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
                "top_symbols": [{"symbol": k, "insns_per_image": v} for k, v in top],
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
    for r in rows:
        form = r["precision"] + (f" ({r['int8_form']})" if r["int8_form"] else "")
        print(f"\n{r['cpu']}, {form}: where the instructions of one image go")
        for t in r["top_symbols"]:
            print(f"  {t['insns_per_image'] / r['insns_per_image']:6.1%}  {t['symbol']}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
