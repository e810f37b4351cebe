"""A learner's whole journey: pre-assessment, practice, grading, facilitator edit and approval, a signed credential.
Pending and rejected sessions never count."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from reviewkit import graded_session

from roleplay.certification import CertificationService
from roleplay.programme import load_programme
from roleplay.errors import RoleplayError
from content import catalog
from roleplay.review import CriterionEdit, ReviewService, approved_results
from roleplay.badges import verify_credential
from roleplay.xapi import xapi_statement
from roleplay.store import Store


def lowest_answers(programme) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {q.id: min(q.options, key=lambda o: o.points).id for q in programme.pre_assessment.questions}


def test_learner_journey_to_a_verifiable_credential(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    for name, role in (("ana", "learner"), ("fac", "facilitator"), ("fac2", "facilitator")):
        store.add_person(name, role)
    programme = load_programme()
    reviews = ReviewService(store, catalog().rubric)
    cert = CertificationService(store, programme, catalog(), reviews, data_dir=tmp_path / "data")

    assert cert.pre_assessment("ana", lowest_answers(programme)) == "novice"
    cert.choose_sprints("ana", ["underperformance", "remote-communication"])

    def sprint_status():  # type: ignore[no-untyped-def]
        return next(s for s in cert.status("ana").sprints if s.sprint == "underperformance")

    pending = graded_session(store, "ana", "missed-deadlines", "novice")
    assert sprint_status().approved_passing == 0 and sprint_status().pending_reviews == 1

    rejected = graded_session(store, "ana", "missed-deadlines", "novice")
    reviews.reject(rejected, "fac", "The learner read from a script; practise again in your own words.")

    edited = graded_session(store, "ana", "missed-deadlines", "novice")
    ai = reviews.get(edited).ai_grade
    assert ai.passed, ai.summary
    new_level = 3 if ai.criterion("empathy").level == 4 else 4
    reviews.edit(edited, "fac", [CriterionEdit(criterion_id="empathy", level=new_level, feedback="Name the feeling.")],
                 "Calibrated the empathy level.")
    reviews.approve(edited, "fac2", "Good session.")
    status = sprint_status()
    assert status.approved_passing == 1 and not status.ready_for_sign_off
    assert status.pending_reviews == 1  # the pending one is still waiting, and does not count
    with pytest.raises(RoleplayError):
        cert.sign_off("underperformance", "ana", "fac", "Not yet ready.")

    second = graded_session(store, "ana", "missed-deadlines", "intermediate")  # harder levels count too
    reviews.approve(second, "fac")
    status = sprint_status()
    assert status.ready_for_sign_off, status
    counted = {c.session_id for c in status.counted}
    assert reviews.get(pending).session_id not in counted
    assert reviews.get(rejected).session_id not in counted

    cert.sign_off("underperformance", "ana", "fac", "Candid and kind; a real plan with Sam.")
    credential = cert.certificate("ana", "underperformance")
    assert verify_credential(credential)
    forged = copy.deepcopy(credential)
    forged["credentialSubject"]["achievement"]["name"] = "Something else"
    assert not verify_credential(forged)
    assert sprint_status().certified and cert.drills("ana")

    # the xAPI statement carries the approved (edited) score, not the AI's
    result = next(r for r in approved_results(reviews, "ana") if r.review_id == edited)
    statement = xapi_statement(result)
    assert statement["result"]["score"]["scaled"] == pytest.approx(result.grade.scaled)
    assert result.grade.overall != ai.overall
    assert statement["verb"]["id"].endswith("/passed")
    store.close()


def test_cli_certify_and_export(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roleplay.cli import main
    from roleplay.config import load_settings

    store = Store(load_settings().database_url)
    store.add_person("ana", "learner")
    store.add_person("fac", "facilitator")
    programme = load_programme()
    run = CliRunner().invoke
    answers = "\n".join(lowest_answers(programme)[q.id] for q in programme.pre_assessment.questions) + "\n"
    out = run(main, ["certify", "assess", "ana"], input=answers)
    assert out.exit_code == 0 and "starting level: novice" in out.stdout
    assert run(main, ["certify", "choose", "ana", "underperformance", "virtual-meetings"]).exit_code == 0
    for _ in range(2):
        rid = graded_session(store, "ana", "missed-deadlines", "novice")
        assert run(main, ["review", "approve", str(rid), "--as", "fac"]).exit_code == 0
    out = run(main, ["certify", "status", "ana"])
    assert "ready for sign-off" in out.stdout
    out = run(main, ["certify", "issue", "ana", "underperformance", "--as", "ana", "--comment", "me"])
    assert out.exit_code == 1 and "Traceback" not in out.stderr
    out = run(main, ["certify", "issue", "ana", "underperformance", "--as", "fac", "--comment", "Well done."])
    assert out.exit_code == 0 and "drill" in out.stdout
    badge = tmp_path / "badge.json"
    out = run(main, ["export", "badge", "ana", "underperformance", "--out", str(badge)])
    assert "verifies: True" in out.stdout
    out = run(main, ["export", "xapi", "--learner", "ana"])
    import json

    statements = json.loads(out.stdout)
    assert len(statements) == 2 and all(s["verb"]["id"].endswith(("passed", "failed")) for s in statements)
    assert "BEGIN PUBLIC KEY" in run(main, ["export", "public-key"]).stdout
