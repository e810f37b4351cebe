"""Train the offline judge's level model (`roleplay/data/judge_levels.json`) from scored practice transcripts.

    python training/judge/train_levels.py            # train, report cross-validated agreement, write the model
    python training/judge/train_levels.py --check    # report only

Input: `training/judge/transcripts/*.yaml` (practice conversations for the shipped scenarios) and
`training/judge/scores.yaml` (a level 1-4 per criterion for each, assigned from the rubric anchors by people who
had not read the judge's code). The gold set (`evals/gold/`) is never read here: it measures the result.

The model is a ridge regression from the checks' figures (`roleplay.level_model.FEATURES`) to the level, pooled over
every criterion of every rubric, with an offset per criterion and cut points between levels; the ridge strength is
chosen by cross-validation over transcripts (five folds, cut points fitted inside each fold), so the figures it
reports come from transcripts the model had not seen.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from roleplay.catalog import load_catalog  # noqa: E402
from roleplay.level_model import FEATURES, LevelModel  # noqa: E402
from roleplay.metrics import agreement  # noqa: E402
from roleplay.offline_judge import OfflineJudge  # noqa: E402
from roleplay.transcript import Transcript, Turn  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "features.json"
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0)
FOLDS = 5


def load_rows() -> list[tuple[str, str, list[float], int]]:
    """(transcript id, rubric/criterion, features, human level) for every scored criterion."""
    catalog = load_catalog([ROOT / "scenarios", ROOT / "rubrics"])
    scores = yaml.safe_load((HERE / "scores.yaml").read_text(encoding="utf-8"))
    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    judge = OfflineJudge(model=None)
    rows = []
    for path in sorted((HERE / "transcripts").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc["id"] not in scores:
            continue
        scenario = catalog.scenario(doc["scenario"])
        rubric = catalog.rubric_for(scenario)
        key = f"{doc['id']}:{path.stat().st_mtime_ns}:{len(FEATURES)}"
        if key not in cache:
            turns = [Turn(speaker=k, text=v) for t in doc["turns"] for k, v in t.items()]
            cache[key] = judge.features(Transcript(scenario_id=scenario.id, turns=turns), rubric, scenario)
            print(f"  read {doc['id']}", file=sys.stderr)
        for cid, feats in cache[key].items():
            rows.append((doc["id"], f"{rubric.id}/{cid}", feats, int(scores[doc["id"]][cid])))
    CACHE.parent.mkdir(exist_ok=True)
    CACHE.write_text(json.dumps(cache))
    return rows


def fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Ridge regression (the bias is not penalised)."""
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return w, float(mean_y - mean_x @ w)


def best_cuts(scores: np.ndarray, y: np.ndarray) -> list[float]:
    """Cut points between levels that agree best (QWK) with `y`, searched one at a time from the midpoints."""
    cuts = [1.5, 2.5, 3.5]
    grid = np.linspace(1.0, 4.0, 61)
    for _ in range(3):
        for i in range(3):
            lo = cuts[i - 1] if i else 0.0
            hi = cuts[i + 1] if i < 2 else 5.0
            options = [c for c in grid if lo < c < hi] or [cuts[i]]
            cuts[i] = max(options, key=lambda c: _qwk(scores, y, [*cuts[:i], c, *cuts[i + 1:]]))
    return [round(float(c), 3) for c in cuts]


def _qwk(scores: np.ndarray, y: np.ndarray, cuts: list[float]) -> float:
    pred = 1 + (scores[:, None] >= np.asarray(cuts)[None, :]).sum(axis=1)
    return agreement(list(map(int, y)), list(map(int, pred))).qwk or 0.0


def design(x: np.ndarray, keys: list[str], known: list[str]) -> np.ndarray:
    """The figures plus one indicator column per known criterion (its offset)."""
    return np.hstack([x, np.asarray([[1.0 if k == c else 0.0 for c in known] for k in keys])])


def cross_validate(ids: list[str], x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Out-of-fold predicted levels, folds by transcript."""
    people = sorted(set(ids))
    random.Random(7).shuffle(people)
    fold = {t: i % FOLDS for i, t in enumerate(people)}
    pred = np.zeros(len(y), dtype=int)
    for k in range(FOLDS):
        train = np.array([fold[t] != k for t in ids])
        w, b = fit(x[train], y[train], lam)
        cuts = best_cuts(x[train] @ w + b, y[train])
        s = x[~train] @ w + b
        pred[~train] = 1 + (s[:, None] >= np.asarray(cuts)[None, :]).sum(axis=1)
    return pred


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only; do not write the model")
    args = parser.parse_args()
    rows = load_rows()
    ids = [r[0] for r in rows]
    keys = [r[1] for r in rows]
    known = sorted(set(keys))
    figures = np.asarray([r[2] for r in rows], dtype=float)
    x = design(figures, keys, known)
    y = np.asarray([r[3] for r in rows], dtype=float)
    rule = [int(round(f[FEATURES.index("rule_level")] * 4)) for f in figures]
    print(f"{len(set(ids))} transcripts, {len(rows)} scored criteria")
    print(f"rule alone: QWK {agreement(list(map(int, y)), rule).qwk}")
    results = {}
    for lam in LAMBDAS:
        pred = cross_validate(ids, x, y, lam)
        results[lam] = agreement(list(map(int, y)), list(map(int, pred)))
        a = results[lam]
        print(f"ridge {lam:>5}: cross-validated QWK {a.qwk}, exact {a.exact}, adjacent {a.adjacent}")
    lam = max(LAMBDAS, key=lambda v: results[v].qwk or 0.0)
    w, b = fit(x, y, lam)
    cuts = best_cuts(x @ w + b, y)
    n = len(FEATURES)
    model = LevelModel(weights=[round(float(v), 5) for v in w[:n]], bias=round(b, 5), cuts=cuts,
                       offsets={k: round(float(v), 5) for k, v in zip(known, w[n:])}, meta={
        "trained_on": f"{len(set(ids))} transcripts, {len(rows)} scored criteria (training/judge/)",
        "ridge": lam, "cv_qwk": results[lam].qwk, "cv_exact": results[lam].exact,
        "cv_adjacent": results[lam].adjacent})
    print(f"chosen ridge {lam}; cut points {cuts}; weights " + ", ".join(f"{f} {v:+.2f}" for f, v in zip(FEATURES, w)))
    if not args.check:
        model.save()
        print("wrote roleplay/data/judge_levels.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
