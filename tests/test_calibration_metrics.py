"""Agreement metrics match hand-computed values."""

from __future__ import annotations

import pytest

from roleplay.metrics import agreement, auroc, balanced_accuracy, cohen_kappa, quadratic_weighted_kappa


def test_perfect_agreement() -> None:
    a = [1, 2, 3, 4, 2, 3]
    res = agreement(a, a)
    assert res.qwk == 1.0 and res.exact == 1.0 and res.adjacent == 1.0 and res.mean_difference == 0
    assert sum(res.confusion[i][i] for i in range(4)) == len(a)


def test_qwk_against_a_hand_computed_case() -> None:
    # a = [1,2,3,4], b = [2,2,3,3]: observed weighted disagreement 2/9 over expected 6/9 gives 2/3
    assert quadratic_weighted_kappa([1, 2, 3, 4], [2, 2, 3, 3]) == pytest.approx(2 / 3, abs=1e-4)


def test_systematic_disagreement_is_negative_and_adjacent_counts_one_step() -> None:
    assert quadratic_weighted_kappa([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    res = agreement([1, 2, 3, 4], [2, 3, 4, 4])
    assert res.exact == 0.25 and res.adjacent == 1.0 and res.mean_difference == 0.75


def test_auroc_and_balanced_accuracy() -> None:
    assert auroc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([1.0], [True]) is None
    assert balanced_accuracy([True, False, True, True], [True, False, False, True]) == pytest.approx(0.75)


def test_cohen_kappa_categories() -> None:
    assert cohen_kappa(["q", "r", "q", "o"], ["q", "r", "q", "o"]) == 1.0
    assert cohen_kappa(["q", "q", "r", "r"], ["q", "r", "q", "r"]) == 0.0


def test_unpaired_ratings_are_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        agreement([1, 2], [1])
