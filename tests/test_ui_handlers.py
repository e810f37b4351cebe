"""UI handlers called directly (no browser): role checks on the server and library errors turned into messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from browser import content_dirs  # noqa: F401  (fixture)
from chatkit import chat_after
from content import GOOD_LINES

from roleplay.context import AppContext
from roleplay.programme import load_programme
from roleplay.store import Store
from roleplay.ui import author_page, calibrate_page, practice_page, progress_page, review_page
from roleplay.ui.common import auth_callable, ctx, handler, use_context

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("fixed_seed")
LINES = GOOD_LINES


@dataclass
class FakeRequest:
    """What the handlers read from a gr.Request: the signed-in username."""

    username: str | None


def no_progress(*_args: Any, **_kwargs: Any) -> None:
    """Stands in for gr.Progress."""


@pytest.fixture()
def people(content_dirs: Path) -> Store:  # noqa: F811 - the fixture imported above
    """A store with two learners, two facilitators and a designer; private scenario copies and two anchors."""
    store = ctx().store
    for name, role in (("ana", "learner"), ("ben", "learner"), ("fay", "facilitator"), ("gus", "facilitator"),
                       ("dee", "designer")):
        store.add_person(name, role)
        store.set_password(name, f"{name}-secret")
    return store


def as_(name: str | None) -> FakeRequest:
    return FakeRequest(name)


def drain(gen: Any) -> list[Any]:
    return list(gen)


def practised(learner: str = "ana", lines: list[str] | None = None) -> str:
    """Start, talk and end a session through the Practice handlers; returns the session id."""
    out = practice_page.start("missed-deadlines", "novice", as_(learner))
    session_id = out[1]
    for line in lines or LINES:
        drain(practice_page.send(line, session_id, as_(learner)))
    practice_page.end(session_id, as_(learner), no_progress)
    return session_id


# --- who may do what --------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "page"), [
    (lambda r: review_page.load_queue("pending", r), "Review"),
    (lambda r: review_page.open_review(1, r), "Review"),
    (lambda r: review_page.approve(1, 0, "ok", "pending", r), "Review"),
    (lambda r: review_page.reject(1, 0, "no", "pending", r), "Review"),
    (lambda r: review_page.save_edit(1, 0, "empathy", 4, "x", "y", "z", "pending", r), "Review"),
    (lambda r: review_page.sign_off("ana|underperformance", "well done", r), "Review"),
    (lambda r: calibrate_page.submit("a1", 1, 1, 1, 1, 1, None, None, None, r), "Calibrate"),
    (lambda r: author_page.save("id: x", "x.yaml", None, r), "Author"),
    (lambda r: author_page.validate("id: x", "x.yaml", r), "Author"),
    (lambda r: author_page.preview_start("id: x", "x.yaml", "novice", r), "Author"),
])
def test_learner_is_refused_facilitator_and_designer_handlers(people: Store, call: Any, page: str) -> None:
    with pytest.raises(gr.Error) as exc:
        call(as_("ana"))
    assert f"The {page} page is for" in exc.value.message
    assert "'ana', a learner" in exc.value.message


@pytest.mark.parametrize(("call", "who"), [
    (lambda r: practice_page.start("missed-deadlines", "novice", r), "fay"),
    (lambda r: drain(practice_page.send("hello", "nope", r)), "dee"),
    (lambda r: practice_page.end("nope", r, no_progress), "fay"),
    (lambda r: progress_page.assess("a", "a", "a", "a", "a", "a", None, None, r), "dee"),
    (lambda r: progress_page.choose(["underperformance"], r), "fay"),
])
def test_learner_pages_refuse_other_roles(people: Store, call: Any, who: str) -> None:
    with pytest.raises(gr.Error, match="page is for learners"):
        call(as_(who))


def test_anonymous_and_unknown_users_are_refused(people: Store) -> None:
    with pytest.raises(gr.Error, match="Sign in first"):
        review_page.load_queue("pending", as_(None))
    with pytest.raises(gr.Error, match="has no account here"):
        practice_page.start("missed-deadlines", "novice", as_("mallory"))


def test_gates_show_a_refusal_and_hide_the_page(people: Store) -> None:
    message, body, *_ = review_page.enter("pending", as_("ana"))
    assert "Review page is for facilitators" in message and body["visible"] is False
    message, body, *_ = practice_page.enter(None, as_("ana"))
    assert message == "" and body["visible"] is True
    message, body, *_ = author_page.enter(as_("fay"))
    assert "learning designers" in message and body["visible"] is False


def test_sign_in_checks_the_stored_password(people: Store) -> None:
    import asyncio
    import inspect

    check = auth_callable()
    assert inspect.iscoroutinefunction(check)  # awaited by Gradio: hashing runs off the event loop
    assert asyncio.run(check("ana", "ana-secret")) is True
    assert asyncio.run(check("ana", "wrong")) is False
    assert asyncio.run(check("nobody", "x")) is False


def test_naming_a_buddy_does_not_reveal_who_has_an_account(people: Store) -> None:
    messages = []
    for name in ("mallory", "fay", "dee"):  # nobody, a facilitator, a designer: one and the same answer
        with pytest.warns(UserWarning) as caught:
            progress_page.set_buddy(name, as_("ana"))
        messages.append(str(caught[0].message).replace(name, "NAME"))
    assert len(set(messages)) == 1 and "roleplay people add" not in messages[0]
    assert ctx().buddies.buddy_of("ana") is None
    progress_page.set_buddy("ben", as_("ana"))
    assert ctx().buddies.buddy_of("ana") == "ben"


# --- errors become messages ------------------------------------------------------------------------

def test_library_errors_become_messages_not_tracebacks(people: Store) -> None:
    with pytest.raises(gr.Error) as exc:
        practice_page.start("no-such-scenario", "novice", as_("ana"))
    assert "no scenario 'no-such-scenario'" in exc.value.message and exc.value.title == "Not found"

    @handler
    def boom() -> None:
        raise ValueError("disk on fire [SQL: SELECT * FROM people]")

    with pytest.raises(gr.Error) as unforeseen:
        boom()
    assert unforeseen.value.message.startswith("Something went wrong on the server (ValueError)")
    assert "disk on fire" not in unforeseen.value.message and "SQL" not in unforeseen.value.message

    @handler
    def streaming() -> Any:
        yield 1
        raise KeyError("gone")

    with pytest.raises(gr.Error, match="KeyError"):
        drain(streaming())


def test_a_learner_cannot_use_someone_elses_session(people: Store) -> None:
    session_id = practice_page.start("missed-deadlines", "novice", as_("ana"))[1]
    with pytest.raises(gr.Error, match="belongs to someone else"):
        drain(practice_page.send("Hello", session_id, as_("ben")))
    with pytest.raises(gr.Error, match="belongs to someone else"):
        practice_page.refresh_feedback(session_id, as_("ben"))


def test_concurrent_review_changes_are_reported(people: Store) -> None:
    session_id = practised()
    view = review_page.open_review(1, as_("fay"))
    version = view[4]
    level = review_page.pick_criterion(1, "empathy", as_("fay"))[0]["value"]
    review_page.save_edit(1, version, "empathy", 1 if level > 1 else 2, "", "", "Needs more warmth.", "pending",
                          as_("fay"))
    with pytest.warns(UserWarning, match="changed by someone else"):  # gus still holds the old version
        assert review_page.approve(1, version, "fine", "pending", as_("gus")) == gr.skip()  # the page stays as it is
    review_page.approve(1, version + 1, "fine", "pending", as_("gus"))
    with pytest.warns(UserWarning, match="already approved by gus"):
        review_page.reject(1, version + 2, "too late", "pending", as_("fay"))
    assert practised() != session_id
    with pytest.warns(UserWarning, match="(?i)give the learner a reason"):
        review_page.reject(2, None, "  ", "pending", as_("fay"))


def test_edit_needs_a_change_and_a_reason(people: Store) -> None:
    practised()
    version = review_page.open_review(1, as_("fay"))[4]
    level, feedback, better = review_page.pick_criterion(1, "empathy", as_("fay"))
    with pytest.warns(UserWarning, match="Nothing changed"):
        review_page.save_edit(1, version, "empathy", level["value"], feedback, better, "why", "pending", as_("fay"))
    with pytest.warns(UserWarning, match="(?i)say why you changed the grade"):
        review_page.save_edit(1, version, "empathy", 1, feedback, better, "", "pending", as_("fay"))


# --- the pages' flows -----------------------------------------------------------------------------

def test_practice_until_approved_feedback(people: Store) -> None:
    out = practice_page.start("missed-deadlines", "novice", as_("ana"))
    chat, session_id, notice = out[0], out[1], out[2]
    assert "Offline engine" in notice and chat[0]["role"] == "assistant"
    steps = drain(practice_page.send(LINES[0], session_id, as_("ana")))
    shown = chat_after(chat, steps)
    assert len(steps) >= 2 and [m["role"] for m in shown] == ["assistant", "user", "assistant"]
    assert shown[-1]["content"] not in ("", "…") and "Turn 1 of" in steps[-1][2]
    for line in LINES[1:]:
        drain(practice_page.send(line, session_id, as_("ana")))
    _status, feedback, *_rest, download, _sessions, _timer = practice_page.end(session_id, as_("ana"), no_progress)
    assert "Awaiting facilitator review" in feedback
    assert LINES[1] in Path(download["value"]).read_text(encoding="utf-8")
    assert "Preliminary" in feedback  # the AI feedback at once, marked as not yet counting
    review_page.approve(1, None, "Good listening.", "pending", as_("fay"))
    approved = practice_page.refresh_feedback(session_id, as_("ana"))
    assert "Feedback approved by fay" in approved and "<mark>" in approved and "Better:" in approved


def test_author_validates_with_line_numbers_and_saves_only_valid_text(people: Store) -> None:
    folder = Path(people.url.split("///")[-1]).parent.parent / "scenarios"
    target = folder / "missed-deadlines.yaml"
    original = target.read_text(encoding="utf-8")
    text, name, problems, save_btn, opened = author_page.open_file("missed-deadlines.yaml", as_("dee"))
    assert text == original and "Valid" in problems and save_btn["interactive"] is True
    broken = original.replace("sprint: underperformance", "sprint: under-performance")
    problems, save_btn = author_page.validate(broken, name, as_("dee"))
    assert "Line 3" in problems and "sprint" in problems and save_btn["interactive"] is False
    with pytest.warns(UserWarning, match="Not saved.*Nothing was written"):
        author_page.save(broken, name, opened, as_("dee"))
    assert target.read_text(encoding="utf-8") == original
    problems, _ = author_page.validate("id: x\n  bad: [", name, as_("dee"))
    assert "YAML syntax error" in problems and "Line" in problems
    with pytest.warns(UserWarning, match="file name"):
        author_page.save(original, "../escape.yaml", opened, as_("dee"))
    with pytest.warns(UserWarning, match="already used by missed-deadlines.yaml"):
        author_page.save(original, "copy.yaml", opened, as_("dee"))
    assert not (folder / "copy.yaml").exists()
    revised = original.replace("title: Missed deadlines", "title: Missed deadlines (revised)")
    saved, *_ = author_page.save(revised, name, opened, as_("dee"))
    assert "Saved missed-deadlines.yaml" in saved
    assert ctx().catalog.scenario("missed-deadlines").title == "Missed deadlines (revised)"


def test_author_preview_chat_is_not_stored(people: Store) -> None:
    text, name, *_ = author_page.open_file("missed-deadlines.yaml", as_("dee"))
    chat, conv, notice, _ = author_page.preview_start(text, name, "novice", as_("dee"))
    steps = drain(author_page.preview_send("What has been going on for you lately?", chat, conv, as_("dee")))
    assert "Offline engine" in notice
    assert steps[-1][0][-1]["role"] == "assistant" and "trust" in steps[-1][2] and "of 5" in steps[-1][2]
    assert people.sessions_for(people.person("dee").id) == []


def test_calibration_is_blind_until_submitted(people: Store) -> None:
    out = calibrate_page.enter(as_("fay"))
    anchor_id, header = out[2], out[3]
    assert anchor_id and "Anchor 1 of 2" in header
    assert "Grader" not in out[3 + 1]  # the transcript shows no AI levels
    with pytest.warns(UserWarning, match="Score every criterion"):
        calibrate_page.submit(anchor_id, 2, None, 2, 2, 2, None, None, None, as_("fay"))
    after = calibrate_page.submit(anchor_id, 2, 3, 2, 3, 2, None, None, None, as_("fay"))
    reveal = after[3 + calibrate_page.SLOTS + 1]
    assert "The grader scored this anchor" in reveal
    summary = after[3 + calibrate_page.SLOTS + 2]
    assert "**1 facilitator** has scored **1 anchor**" in summary
    with pytest.warns(UserWarning, match="already scored"):
        calibrate_page.submit(anchor_id, 2, 3, 2, 3, 2, None, None, None, as_("fay"))


def test_progress_certification_buddy_and_credential(people: Store) -> None:
    programme = load_programme()
    weakest = [min(q.options, key=lambda o: o.points).id for q in programme.pre_assessment.questions]
    answers = (weakest + [None] * 8)[:8]
    with pytest.warns(UserWarning, match="(?i)Answer every question"):
        progress_page.assess(*([None] * 8), as_("ana"))
    out = progress_page.assess(*answers, as_("ana"))
    assert "Your level: **novice**" in out[0]
    with pytest.warns(UserWarning, match="(?i)choose exactly 2 sprints"):
        progress_page.choose(["underperformance"], as_("ana"))
    out = progress_page.choose(["underperformance", "remote-communication"], as_("ana"))
    assert "0 of 2 approved passing sessions" in out[0]

    first, second = practised(), practised()
    for review_id in (1, 2):
        review_page.approve(review_id, None, "Good.", "pending", as_("fay"))
    enter = progress_page.enter(as_("ana"))
    assert "2 approved sessions" in enter[2] and len(enter[3]) == 2
    assert enter[4]["visible"] is True  # the trend line, with two sessions
    sessions = list(dict.fromkeys(enter[4]["value"]["session"]))  # one tick per approved session, not a time axis
    assert len(sessions) == 2 and sessions[0].startswith("1. ") and sessions[1].startswith("2. ")
    ready = review_page.load_sign_offs(as_("fay"))
    assert ready["choices"] == [(ready["choices"][0][0], "ana|underperformance")]
    with pytest.warns(UserWarning, match="comment"):
        review_page.sign_off("ana|underperformance", "", as_("fay"))
    message, *_ = review_page.sign_off("ana|underperformance", "Consistently listens first.", as_("fay"))
    assert "certified" in message
    cert = progress_page.enter(as_("ana"))[6:]
    files = cert[1 + progress_page.QUESTION_SLOTS + 3]
    assert files["visible"] is True
    credential = json.loads(Path(files["value"][0]).read_text(encoding="utf-8"))
    assert "OpenBadgeCredential" in credential["type"]
    drills = cert[1 + progress_page.QUESTION_SLOTS + 4]
    assert drills and all(len(row) == 5 for row in drills)

    with pytest.warns(UserWarning, match="(?i)name a learning buddy first"):
        practice_page.share(first, as_("ana"))
    progress_page.set_buddy("ben", as_("ana"))
    assert "Shared with your learning buddy **ben**" in practice_page.share(first, as_("ana"))
    shared = progress_page.enter(as_("ben"))[-1]
    assert [value for _, value in shared["choices"]] == [first]
    with pytest.raises(gr.Error, match="not been shared with"):
        progress_page.open_shared(second, as_("ben"))
    transcript, notes = progress_page.reflect(first, "Great reflection on the mornings.", as_("ben"))[:2]
    assert "Great reflection" in notes and "The last two reports missed the Friday deadline" in transcript
    assert "Reflections from your learning buddy" in practice_page.refresh_feedback(first, as_("ana"))


def test_pages_degrade_to_a_message_when_content_is_missing(people: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-anchors"
    empty.mkdir()
    monkeypatch.setenv("ROLEPLAY_ANCHORS_DIR", str(empty))
    use_context(AppContext())  # the settings are read once, when the app's context is built
    out = calibrate_page.enter(as_("fay"))
    assert out[1]["visible"] is True and "Calibration is not available" in out[3]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("roleplay.config.PROJECT_ROOT", tmp_path)
    use_context(AppContext())
    out = progress_page.enter(as_("ana"))
    assert "Certification is not available" in out[6] and "approved session" in out[2]


def test_a_grade_made_in_the_background_shows_when_ready_and_facilitators_see_the_job(
        people: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    app = ctx()
    monkeypatch.setattr(app, "settings", app.settings.model_copy(update={"grading_wait": 0.0}))
    release = threading.Event()
    grade_now = app.grade_stored

    def slow_grade(session_id: str) -> None:
        release.wait(30)
        grade_now(session_id)

    monkeypatch.setattr(app, "grade_stored", slow_grade)
    app.__dict__.pop("jobs", None)  # built again with the slow grader
    out = practice_page.start("missed-deadlines", "novice", as_("ana"))
    session_id = out[1]
    for line in LINES[:3]:
        drain(practice_page.send(line, session_id, as_("ana")))
    status, feedback, _box, _send, end_btn, *_rest, timer = practice_page.end(session_id, as_("ana"), no_progress)
    assert "being graded" in status or "waiting for a grader" in status
    assert feedback == "" and end_btn["interactive"] is False and timer["active"] is True
    assert practice_page.grading_done(session_id, as_("ana"))[3]["active"] is True  # still waiting: nothing changes
    listing = review_page.enter("pending", as_("fay"))
    assert "Grading in progress:" in listing[-1] and "Missed deadlines" in listing[-1]
    release.set()
    app.jobs.wait(session_id, timeout=30)
    status, feedback, end_btn, timer = practice_page.grading_done(session_id, as_("ana"))
    assert "graded" in status and "Awaiting facilitator review" in feedback and timer["active"] is False
    assert review_page.enter("pending", as_("fay"))[-1] == ""  # nothing left being graded
    with pytest.raises(gr.Error, match="belongs to someone else"):
        practice_page.grading_done(session_id, as_("ben"))
