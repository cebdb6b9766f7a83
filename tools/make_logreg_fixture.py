#!/usr/bin/env python3
"""Reference values for siglipd's label calibration (src/calibrate.rs): scikit-learn's
LogisticRegression (L2, intercept not penalised), alone and after a StandardScaler, fitted on
synthetic data shaped like what the daemon fits — a zero-shot logit and two cosines per marked example, a few to a few dozen
examples, overlapping classes, and one separable case.

    .venv/bin/python tools/make_logreg_fixture.py    # writes tests/fixtures/golden/logreg.json
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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


def scaled_case(rng: np.random.Generator, n_pos: int, n_neg: int, spread: float, c: float, logit: bool) -> dict:
    # what teach.rs fits: cosines between image embeddings of one model differ by hundredths
    # (`spread`), so the pipeline standardizes before the penalised fit
    def rows(n: int, pos: bool) -> np.ndarray:
        cols = [rng.normal(0.95 + (spread if pos else 0.0), spread, n), rng.normal(0.94 + (0.0 if pos else spread), spread, n)]
        if logit:
            cols.insert(0, rng.normal(-3.0 + (1.0 if pos else 0.0), 1.0, n))
        return np.column_stack(cols)

    x = np.vstack([rows(n_pos, True), rows(n_neg, False)]).round(6)
    y = np.array([1] * n_pos + [0] * n_neg)
    m = make_pipeline(StandardScaler(), LogisticRegression(C=c, tol=1e-12, max_iter=100_000)).fit(x, y)
    sc = m.named_steps["standardscaler"]
    return {
        "c": c,
        "x": x.tolist(),
        "y": y.tolist(),
        "mean": sc.mean_.tolist(),
        "scale": sc.scale_.tolist(),
        "proba": m.predict_proba(x)[:, 1].tolist(),
    }


def scaled_cases() -> list[dict]:
    rng = np.random.default_rng(1)
    return [
        scaled_case(rng, 3, 3, 0.01, 1.0, True),
        scaled_case(rng, 4, 6, 0.005, 1.0, False),
        scaled_case(rng, 15, 25, 0.02, 1.0, True),
        scaled_case(rng, 6, 5, 0.05, 0.5, False),
    ]


def main() -> None:
    cs, ss = cases(), scaled_cases()
    doc = {"sklearn_version": sklearn.__version__, "cases": cs, "scaled_cases": ss}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cs)} + {len(ss)} cases, scikit-learn {sklearn.__version__})")


if __name__ == "__main__":
    main()
