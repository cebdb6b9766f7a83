#!/usr/bin/env python3
"""Reference values for siglipd's label calibration (src/calibrate.rs): scikit-learn's
LogisticRegression (L2, intercept not penalised) fitted on synthetic data shaped like what the
daemon fits — a zero-shot logit and two cosines per marked example, a few to a few dozen
examples, overlapping classes, and one separable case.

    .venv/bin/python tools/make_logreg_fixture.py    # writes tests/fixtures/golden/logreg.json
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden" / "logreg.json"


def case(rng: np.random.Generator, n_pos: int, n_neg: int, sep: float, c: float) -> dict:
    # features: zero-shot logit (−15..5), cos to mean positive, cos to mean negative
    pos = np.column_stack([rng.normal(-2 + sep, 2.0, n_pos), rng.normal(0.6 + 0.1 * sep, 0.1, n_pos), rng.normal(0.4, 0.1, n_pos)])
    neg = np.column_stack([rng.normal(-6, 2.0, n_neg), rng.normal(0.45, 0.1, n_neg), rng.normal(0.6, 0.1, n_neg)])
    x = np.vstack([pos, neg])
    y = np.array([1] * n_pos + [0] * n_neg)
    m = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(x, y)
    return {"c": c, "x": x.round(6).tolist(), "y": y.tolist(), "coef": m.coef_[0].tolist(), "intercept": float(m.intercept_[0])}


def cases() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        case(rng, 3, 3, 1.0, 1.0),
        case(rng, 5, 12, 0.5, 1.0),
        case(rng, 20, 30, 2.0, 0.3),
        case(rng, 8, 8, 6.0, 10.0),  # nearly separable: the penalty keeps it finite
    ]


def main() -> None:
    cs = cases()
    OUT.write_text(json.dumps({"sklearn_version": sklearn.__version__, "cases": cs}, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cs)} cases, scikit-learn {sklearn.__version__})")


if __name__ == "__main__":
    main()
