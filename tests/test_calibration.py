"""Blind calibration: facilitators score anchors, then see agreement with the grader and each other; drift signal."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from reviewkit import graded_session, service

from roleplay.calibration import CalibrationService
from roleplay.errors import PermissionDenied, RoleplayError
from roleplay.grader import OfflineJudge
from content import catalog
from roleplay.review import CriterionEdit, ReviewService
from roleplay.store import Store

CRITERIA = ["open-questions", "reflective-listening", "empathy", "candid-feedback", "next-steps"]


def write_anchor(d: Path, name: str, lines: list[str]) -> None:
    turns = [{"persona": "Hi. You wanted to talk about the reports?"}]
    for line in lines:
        turns += [{"learner": line}, {"persona": "Okay."}]
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(yaml.safe_dump({"id": name, "scenario": "missed-deadlines", "quality": "fair",
                                                    "turns": turns, "scores": {c: 2 for c in CRITERIA}}))


@pytest.fixture()
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    for name, role in (("fac", "facilitator"), ("fac2", "facilitator"), ("ana", "learner")):
        store.add_person(name, role)
    anchors = tmp_path / "anchors"
    write_anchor(anchors, "a1", ["Is everything okay?", "You need to plan better."])
    write_anchor(anchors, "a2", ["What's been going on?", "It sounds like mornings are hard.",
                                 "Shall we check in next Monday?"])
    svc = CalibrationService(store, catalog(), ReviewService(store, catalog().rubric), judge=OfflineJudge(),
                             anchors_dir=anchors)
    yield store, svc
    store.close()


@pytest.mark.slow
def test_blind_scoring_then_agreement(setup) -> None:  # type: ignore[no-untyped-def]
    store, svc = setup
    first = svc.next_blind("fac")
    assert first is not None and first.id == "a1"
    ai = svc.submit("fac", "a1", dict.fromkeys(CRITERIA, 1))
    assert set(ai) == set(CRITERIA)
    assert svc.next_blind("fac").id == "a2"  # type: ignore[union-attr]
    svc.submit("fac", "a2", dict.fromkeys(CRITERIA, 3))
    assert svc.next_blind("fac") is None
    svc.submit("fac2", "a1", dict.fromkeys(CRITERIA, 2))
    rep = svc.report()
    assert rep.raters == ["fac", "fac2"] and rep.anchors_rated == 2
    assert rep.facilitator_vs_grader["empathy"].n == 3
    assert rep.between_facilitators["empathy"].n == 1 and rep.between_facilitators["empathy"].exact == 0.0
    assert rep.overall_vs_grader.n == 15


def test_blind_scores_are_complete_final_and_facilitator_only(setup) -> None:  # type: ignore[no-untyped-def]
    _, svc = setup
    with pytest.raises(PermissionDenied):
        svc.submit("ana", "a1", dict.fromkeys(CRITERIA, 2))
    with pytest.raises(RoleplayError, match="missing: next-steps"):
        svc.submit("fac", "a1", dict.fromkeys(CRITERIA[:-1], 2))
    svc.submit("fac", "a1", dict.fromkeys(CRITERIA, 2))
    with pytest.raises(RoleplayError, match="already scored"):
        svc.submit("fac", "a1", dict.fromkeys(CRITERIA, 4))


def test_drift_signal_rises_when_facilitators_keep_correcting_the_grader(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, svc = setup
    monkeypatch.setenv("ROLEPLAY_DRIFT_THRESHOLD", "0.3")
    rs = service(store)
    quiet = graded_session(store)
    rs.approve(quiet, "fac")
    assert svc.report().drifting is False and svc.report().recent_disagreement == 0
    for _ in range(2):
        rid = graded_session(store)
        view = rs.get(rid)
        edits = [CriterionEdit(criterion_id=c.criterion_id, level=1 if c.level > 1 else 4) for c in view.ai_grade.criteria]
        rs.edit(rid, "fac", edits, "grader too generous")
        rs.approve(rid, "fac2")
    rep = svc.report()
    assert rep.recent_disagreement == pytest.approx(2 / 3, abs=0.01)
    assert rep.drifting and rep.drift[-1].reviews == 3
