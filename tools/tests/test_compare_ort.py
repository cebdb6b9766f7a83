"""tools/compare_ort.py on the tiny fixture bundle: both engines timed, ratios printed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# tools/test-all.sh sets SIGLIPD_BIN to the binary cargo just built (CARGO_TARGET_DIR aware)
EXE = Path(os.environ.get("SIGLIPD_BIN", ROOT / "target/debug/siglipd"))


@pytest.mark.skipif(not EXE.exists(), reason="needs target/debug/siglipd (cargo test builds it first in test-all.sh)")
def test_compare_ort_prints_ratios_for_each_precision_and_thread_count():
    r = subprocess.run([sys.executable, str(ROOT / "tools/compare_ort.py"), "--model", str(ROOT / "tests/fixtures/tiny"),
                        "--threads", "1,2", "--runs", "3", "--siglipd", str(EXE), "--ort-dynamic", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    got = {(row["precision"], row["threads"]) for row in out["rows"]}
    assert got == {(p, t) for p in ("fp32", "int8", "ort-dynamic-int8") for t in (1, 2)}
    for row in out["rows"]:
        assert row["ort_ms"] > 0
        if row["precision"] != "ort-dynamic-int8":
            assert row["tract_ms"] > 0 and abs(row["ratio"] - row["tract_ms"] / row["ort_ms"]) < 1e-9


def test_missing_binary_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "tools/compare_ort.py"), "--model", str(ROOT / "tests/fixtures/tiny"),
                        "--siglipd", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode != 0 and "no siglipd binary at" in r.stderr
