"""The calibration reference (tests/fixtures/golden/logreg.json) is what scikit-learn gives."""
import json
import sys
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOOLS))
import make_logreg_fixture as m  # noqa: E402


def test_committed_reference_is_reproducible():
    committed = json.loads(m.OUT.read_text())
    for got, want in zip(m.cases(), committed["cases"], strict=True):
        assert got["x"] == want["x"] and got["y"] == want["y"]
        np.testing.assert_allclose(got["coef"], want["coef"], atol=1e-6)
        np.testing.assert_allclose(got["intercept"], want["intercept"], atol=1e-6)
    for got, want in zip(m.scaled_cases(), committed["scaled_cases"], strict=True):
        assert got["x"] == want["x"] and got["y"] == want["y"]
        for k in ("mean", "scale", "proba"):
            np.testing.assert_allclose(got[k], want[k], atol=1e-9)
