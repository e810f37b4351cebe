"""Agreement metrics between raters (facilitators, the AI grader): QWK, exact and adjacent agreement, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

LEVELS = (1, 2, 3, 4)


class Agreement(BaseModel):
    """How far two raters agree on 1-4 levels for one criterion (or overall)."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(description="Number of paired ratings.")
    qwk: float | None = Field(description="Quadratic weighted kappa (None when undefined, e.g. no variation).")
    exact: float | None = Field(description="Share of pairs with the same level.")
    adjacent: float | None = Field(description="Share of pairs within one level.")
    mean_difference: float | None = Field(description="Mean of (b - a): positive when rater b scores higher.")
    confusion: list[list[int]] = Field(description="4x4 counts: row = rater a's level, column = rater b's.")


def confusion_matrix(a: Sequence[int], b: Sequence[int], levels: Sequence[int] = LEVELS) -> list[list[int]]:
    """Counts of (a, b) level pairs; rows are a, columns b."""
    index = {lv: i for i, lv in enumerate(levels)}
    m = [[0] * len(levels) for _ in levels]
    for x, y in zip(a, b, strict=True):
        m[index[x]][index[y]] += 1
    return m


def quadratic_weighted_kappa(a: Sequence[int], b: Sequence[int], levels: Sequence[int] = LEVELS) -> float | None:
    """Cohen's kappa with quadratic weights; None when expected disagreement is zero."""
    n = len(a)
    if n == 0:
        return None
    k = len(levels)
    obs = confusion_matrix(a, b, levels)
    row = [sum(r) for r in obs]
    col = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = ((i - j) ** 2) / ((k - 1) ** 2)
            num += w * obs[i][j]
            den += w * row[i] * col[j] / n
    if den == 0:
        return 1.0 if num == 0 and len(set(a)) == 1 and set(a) == set(b) else None
    return round(1 - num / den, 4)


def agreement(a: Sequence[int], b: Sequence[int]) -> Agreement:
    """All agreement figures for paired 1-4 ratings."""
    n = len(a)
    if n != len(b):
        raise ValueError("ratings must be paired: both lists need the same length")
    if n == 0:
        return Agreement(n=0, qwk=None, exact=None, adjacent=None, mean_difference=None,
                         confusion=confusion_matrix([], []))
    return Agreement(
        n=n,
        qwk=quadratic_weighted_kappa(a, b),
        exact=round(sum(x == y for x, y in zip(a, b)) / n, 4),
        adjacent=round(sum(abs(x - y) <= 1 for x, y in zip(a, b)) / n, 4),
        mean_difference=round(sum(y - x for x, y in zip(a, b)) / n, 4),
        confusion=confusion_matrix(a, b),
    )


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return round(wins / (len(pos) * len(neg)), 4)


def balanced_accuracy(predicted: Sequence[bool], actual: Sequence[bool]) -> float | None:
    """Mean of sensitivity and specificity; None without both classes."""
    tp = sum(p and a for p, a in zip(predicted, actual))
    tn = sum((not p) and (not a) for p, a in zip(predicted, actual))
    pos = sum(actual)
    neg = len(actual) - pos
    if not pos or not neg:
        return None
    return round((tp / pos + tn / neg) / 2, 4)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Unweighted Cohen's kappa for categorical labels."""
    n = len(a)
    if n == 0:
        return None
    labels = sorted(set(a) | set(b))
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((list(a).count(lab) / n) * (list(b).count(lab) / n) for lab in labels)
    return None if pe == 1 else round((po - pe) / (1 - pe), 4)
