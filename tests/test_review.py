"""Facilitator review: only facilitators decide, never on their own session; history is append-only; one winner."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import pytest
from reviewkit import graded_session, service

from roleplay.errors import PermissionDenied, ReviewError
from roleplay.review import CriterionEdit, approved_results, exemplars_from
from roleplay.models import GradeRow
from roleplay.store import Store


@pytest.fixture()
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    s.add_person("fac", "facilitator")
    s.add_person("fac2", "facilitator")
    s.add_person("des", "designer")
    yield s
    s.close()


@pytest.mark.slow
def test_a_graded_session_waits_in_the_queue_and_does_not_count(store: Store) -> None:
    rid = graded_session(store)
    svc = service(store)
    assert [v.review_id for v in svc.queue()] == [rid]
    assert svc.get(rid).status == "pending"
    assert approved_results(svc, "ana") == []


@pytest.mark.slow
def test_edit_then_approve_keeps_the_ai_grade_and_appends_history(store: Store) -> None:
    rid = graded_session(store)
    svc = service(store)
    before = svc.get(rid)
    old_level = before.ai_grade.criterion("empathy").level
    new_level = 1 if old_level > 1 else 3
    svc.edit(rid, "fac", [CriterionEdit(criterion_id="empathy", level=new_level, feedback="Name the feeling first.")],
             "The empathy line was scripted, not felt.")
    view = svc.approve(rid, "fac2", "Agree with the edit.")
    assert view.status == "approved" and view.decided_by == "fac2"
    assert view.ai_grade.criterion("empathy").level == old_level  # never overwritten
    assert view.current.criterion("empathy").level == new_level
    assert view.current.criterion("empathy").rationale == "Name the feeling first."
    assert view.current.overall != view.ai_grade.overall
    assert [(h.action, h.actor) for h in view.history] == [("created", "grader"), ("edit", "fac"), ("approve", "fac2")]
    assert view.history[1].comment == "The empathy line was scripted, not felt."
    with store.session() as db:
        stored = db.get(GradeRow, store.grades_for(view.session_id)[0].id)
        assert stored.result["criteria"] == before.ai_grade.model_dump(mode="json")["criteria"]
    results = approved_results(svc, "ana")
    assert len(results) == 1 and results[0].grade.overall == view.current.overall


@pytest.mark.slow
def test_rejected_sessions_never_count_and_need_a_reason(store: Store) -> None:
    rid = graded_session(store)
    svc = service(store)
    with pytest.raises(ReviewError, match="reason"):
        svc.reject(rid, "fac", "  ")
    view = svc.reject(rid, "fac", "The transcript was cut short; please practise again.")
    assert view.status == "rejected"
    assert approved_results(svc) == []
    with pytest.raises(ReviewError, match="already rejected by fac"):
        svc.approve(rid, "fac2")


def test_only_facilitators_review_and_never_their_own_session(store: Store) -> None:
    svc = service(store)
    rid = graded_session(store, learner="ana")
    with pytest.raises(PermissionDenied, match="only facilitators"):
        svc.approve(rid, "ana")
    with pytest.raises(PermissionDenied, match="only facilitators"):
        svc.approve(rid, "des")
    own = graded_session(store, learner="fac")
    with pytest.raises(PermissionDenied, match="your own practice session"):
        svc.approve(own, "fac")
    assert svc.approve(own, "fac2").status == "approved"


@pytest.mark.slow
def test_edit_needs_a_comment_and_a_real_criterion(store: Store) -> None:
    rid = graded_session(store)
    svc = service(store)
    with pytest.raises(ReviewError, match="comment is required"):
        svc.edit(rid, "fac", [CriterionEdit(criterion_id="empathy", level=2)], "")
    with pytest.raises(ReviewError, match="not in rubric"):
        svc.edit(rid, "fac", [CriterionEdit(criterion_id="charisma", level=2)], "why")
    assert svc.get(rid).version == 0


@pytest.mark.slow
def test_stale_version_loses_with_a_clear_message(store: Store) -> None:
    rid = graded_session(store)
    svc = service(store)
    seen = svc.get(rid).version
    svc.edit(rid, "fac", [CriterionEdit(criterion_id="empathy", level=2)], "first", expected_version=seen)
    with pytest.raises(ReviewError, match="changed by someone else"):
        svc.approve(rid, "fac2", expected_version=seen)
    assert svc.get(rid).status == "pending"


@pytest.mark.slow
def test_approval_feeds_exemplars_marking_edited_criteria(store: Store) -> None:
    rid = graded_session(store)
    captured: list[Any] = []
    svc = service(store, on_approved=lambda view: captured.extend(exemplars_from(view)))
    svc.edit(rid, "fac", [CriterionEdit(criterion_id="open-questions", level=4)], "Good questions.")
    svc.approve(rid, "fac2")
    sources = {e.criterion_id: e.source for e in captured}
    assert sources["open-questions"] == "edited"
    assert set(sources.values()) <= {"edited", "approved"} and len(sources) >= 2


def _approve(url: str, review_id: int, who: str, barrier: Any, out: Any) -> None:
    from reviewkit import service as make

    store = Store(url, migrate=False)
    barrier.wait()
    try:
        make(store).approve(review_id, who, f"approved by {who}")
        out.put((who, "won"))
    except ReviewError as exc:
        out.put((who, str(exc)))
    finally:
        store.close()


def test_two_processes_approving_at_once_exactly_one_wins(store: Store, db_url: str) -> None:
    rid = graded_session(store)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_approve, args=(db_url, rid, who, barrier, out)) for who in ("fac", "fac2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = dict(out.get(timeout=5) for _ in procs)
    winners = [w for w, r in results.items() if r == "won"]
    assert len(winners) == 1, results
    loser = next(w for w in results if w not in winners)
    assert f"already approved by {winners[0]}" in results[loser]
    view = service(store).get(rid)
    assert view.status == "approved" and view.decided_by == winners[0]
    assert [h.action for h in view.history].count("approve") == 1


def test_cli_review_flow(store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roleplay.cli import main

    monkeypatch.setenv("ROLEPLAY_DATABASE_URL", db_url)
    rid = graded_session(store)
    run = CliRunner().invoke
    out = run(main, ["review", "list"])
    assert out.exit_code == 0 and f"{rid}" in out.stdout and "pending" in out.stdout
    out = run(main, ["review", "show", str(rid)])
    assert "Open questions" in out.stdout and "evidence:" in out.stdout
    out = run(main, ["review", "edit", str(rid), "--as", "fac", "--criterion", "empathy", "--level", "2",
                     "--comment", "Too quick to reassure."])
    assert out.exit_code == 0, out.stderr
    out = run(main, ["review", "approve", str(rid), "--as", "ana"])
    assert out.exit_code == 1 and "only facilitators" in out.stderr and "Traceback" not in out.stderr
    out = run(main, ["review", "approve", str(rid), "--as", "fac2", "--comment", "ok"])
    assert out.exit_code == 0 and "approved" in out.stdout
    out = run(main, ["review", "show", str(rid)])
    assert "edit by fac" in out.stdout and "Too quick to reassure." in out.stdout


@pytest.mark.slow
def test_queue_by_learner_and_review_of_a_session(store: Store) -> None:
    svc = service(store)
    mine = graded_session(store, learner="ana")
    graded_session(store, learner="bob")
    assert [v.review_id for v in svc.queue("pending", learner="ana")] == [mine]
    view = svc.for_session(svc.get(mine).session_id)
    assert view is not None and view.review_id == mine
    assert svc.for_session("no-such-session") is None


@pytest.mark.slow
def test_only_the_owner_gets_a_practice_run(store: Store) -> None:
    from roleplay.context import AppContext
    from roleplay.errors import NotFoundError

    app = AppContext()
    app.__dict__["store"] = store
    get_run = lambda _store, sid, who: app.run(sid, who)  # noqa: E731
    rid = graded_session(store, learner="ana")
    sid = service(store).get(rid).session_id
    with pytest.raises(PermissionDenied, match="someone else"):
        get_run(store, sid, "bob")
    with pytest.raises(NotFoundError):
        get_run(store, "nope", "ana")
    assert get_run(store, sid, "ana").session_id == sid
