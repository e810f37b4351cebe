"""The offline judge's level model: from what a criterion's checks found to a level 1-4.

The checks say how much of each behaviour a learner showed (turns that earned a present-check, generic turns, turns
that counted against). How much is enough for level 3 or 4 is learned, not guessed: a small ridge regression over
those figures, pooled across criteria so it serves any rubric (with an offset per criterion it was trained on), trained by `training/judge/train_levels.py` on
practice transcripts scored from the rubric anchors (never on the gold set, which only measures it). Without the
shipped file the judge falls back to the rule in `roleplay.grader.level_from_checks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_PATH = Path(__file__).resolve().parent / "data" / "judge_levels.json"
FEATURES = ("has_present", "present_mean", "present_min", "present_max", "generic_mean", "present_none",
            "against_max", "against_any", "rule_level", "present_beyond")
"""The figures the model reads. The conversation's length is deliberately not one of them: length earns nothing."""


@dataclass(frozen=True)
class CheckFigures:
    """What one check found, as the level model reads it."""

    expect: str
    min_count: int
    earned: float
    generic: float = 0.0


def criterion_features(checks: list[CheckFigures], rule_level: int) -> list[float]:
    """The model's input for one criterion (in `FEATURES` order)."""
    present = [c for c in checks if c.expect == "present"]
    absent = [c for c in checks if c.expect == "absent"]
    p = [min(1.0, c.earned / c.min_count) for c in present]
    g = [min(1.0, c.generic / c.min_count) for c in present]
    a = [min(1.0, c.earned / c.min_count) for c in absent]
    return [
        1.0 if present else 0.0,
        sum(p) / len(p) if p else 0.0,
        min(p) if p else 0.0,
        max(p) if p else 0.0,
        sum(g) / len(g) if g else 0.0,
        1.0 if present and not any(c.earned for c in present) else 0.0,
        max(a) if a else 0.0,
        1.0 if any(c.earned for c in absent) else 0.0,
        rule_level / 4.0,
        sum(min(3.0, c.earned / c.min_count) for c in present) / len(present) / 3.0 if present else 0.0,
    ]


@dataclass
class LevelModel:
    """Ridge regression weights over `FEATURES`, an offset per criterion it was trained on (how strict the anchors
    of that criterion are), and the cut points that turn its score into a level."""

    weights: list[float]
    bias: float
    cuts: list[float]
    meta: dict[str, Any]
    offsets: dict[str, float] = field(default_factory=dict)

    def score(self, features: list[float], criterion: str = "") -> float:
        """The continuous level the figures suggest for `criterion` ('rubric/criterion'; unknown ones get no offset)."""
        return (self.bias + self.offsets.get(criterion, 0.0)
                + sum(w * x for w, x in zip(self.weights, features, strict=True)))

    def level(self, features: list[float], criterion: str = "") -> int:
        """The level 1-4."""
        s = self.score(features, criterion)
        return 1 + sum(s >= c for c in self.cuts)

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> LevelModel | None:
        """The shipped model, or None when there is none (the judge then uses the rule)."""
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if tuple(data["features"]) != FEATURES:
            return None  # trained for other figures: the rule is safer than a misread model
        return cls(weights=list(data["weights"]), bias=float(data["bias"]), cuts=list(data["cuts"]),
                   meta=dict(data.get("meta", {})), offsets=dict(data.get("offsets", {})))

    def save(self, path: Path = MODEL_PATH) -> None:
        """Write the model as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"features": list(FEATURES), "weights": self.weights, "bias": self.bias,
                                    "offsets": self.offsets, "cuts": self.cuts, "meta": self.meta}, indent=1) + "\n",
                        encoding="utf-8")
