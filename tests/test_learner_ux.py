"""What a learner notices on the Practice and Progress pages: warnings that hide nothing, text shown as typed, a briefing
in step with the chat, immediate preliminary feedback and notices, a pre-assessment that explains itself, a readable
certificate, and human names in messages. Handlers are called directly, as the browser would call them."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from browser import content_dirs  # noqa: F401  (fixture)
from chatkit import chat_after
from content import GOOD_LINES

from roleplay.notices import NoticeService
from roleplay.programme import load_programme
from roleplay.store import Store
from roleplay.ui import practice_page, progress_page, review_page
from roleplay.ui.common import ctx

pytestmark = [pytest.mark.usefixtures("fixed_seed"), pytest.mark.slow]
SLOTS = progress_page.QUESTION_SLOTS
# positions in certification_outputs (and, after 6 more, in progress_page.enter)
C_ASSESS_BTN, C_SPRINTS, C_CHOOSE_BTN, C_FILES, C_DRILLS = 1 + SLOTS, 2 + SLOTS, 3 + SLOTS, 4 + SLOTS, 5 + SLOTS
C_ASSESSMENT, C_RETAKE, C_CERTIFICATE = 6 + SLOTS, 7 + SLOTS, 8 + SLOTS


@dataclass
class Req:
    """What the handlers read from a gr.Request."""

    username: str | None


def no_progress(*_args: Any, **_kwargs: Any) -> None:
    """Stands in for gr.Progress."""


@pytest.fixture()
def people(content_dirs: Path) -> Store:  # noqa: F811
    store = ctx().store
    for name, role, display in (("ana", "learner", "Ana Lima"), ("ben", "learner", "Ben"),
                                ("fay", "facilitator", "Fay"), ("gus", "facilitator", "Gus")):
        store.add_person(name, role, display_name=display)
    return store


def untouched(value: Any) -> bool:
    """A gr.update() that changes nothing (what a warning leaves on every output)."""
    return isinstance(value, dict) and set(value) <= {"__type__"}


def warned(call: Any) -> tuple[Any, list[str]]:
    """Run `call`, returning its result and the warning toasts it raised (outside a browser they are warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def talk(scenario: str = "missed-deadlines", level: str = "novice", learner: str = "ana",
         lines: list[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    out = practice_page.start(scenario, level, Req(learner))
    session_id, chat = out[1], out[0]
    for line in lines or GOOD_LINES:
        chat = chat_after(chat, list(practice_page.send(line, session_id, Req(learner))))
    return session_id, chat


def practised(scenario: str = "missed-deadlines", level: str = "novice", learner: str = "ana") -> tuple[str, str]:
    session_id, _ = talk(scenario, level, learner)
    _, feedback, *_ = practice_page.end(session_id, Req(learner), no_progress)
    return session_id, feedback


def review_of(session_id: str) -> int:
    return ctx().reviews.for_session(session_id).review_id


def answers(level: str) -> list[str | None]:
    qs = load_programme().pre_assessment.questions
    pick = max if level == "expert" else min
    chosen = [pick(q.options, key=lambda o: o.points).id for q in qs]
    return (chosen + [None] * SLOTS)[:SLOTS]


# --- 1. a learner's slip is a warning that hides nothing ----------------------------------------------

def test_an_empty_line_warns_and_leaves_the_conversation_and_box_as_they_were(people: Store) -> None:
    session_id, chat = talk(lines=GOOD_LINES[:1])
    steps, toasts = warned(lambda: list(practice_page.send("   ", session_id, Req("ana"))))
    assert toasts == ["Type what you want to say first"]
    assert len(steps) == 1 and all(untouched(v) for v in steps[0])  # chat, box, status and Send all as they were
    steps, toasts = warned(lambda: list(practice_page.send("Hello Sam", None, Req("ana"))))
    assert toasts and toasts[0].startswith("Start a session first")
    assert untouched(steps[0][1])  # "Hello Sam" stays in the box


def test_a_failed_turn_gives_the_line_back_and_shows_the_stored_conversation(people: Store,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.errors import ProviderError

    session_id, chat = talk(lines=GOOD_LINES[:1])
    run = ctx().run(session_id)

    def broken(text: str) -> Any:
        raise ProviderError("the model did not answer in time; try again")
        yield  # pragma: no cover

    monkeypatch.setattr(run, "respond_scene", broken)
    steps, toasts = warned(lambda: list(practice_page.send(GOOD_LINES[1], session_id, Req("ana"))))
    assert toasts == ["The model did not answer in time; try again"]
    box = steps[-1][1]
    assert box["value"] == GOOD_LINES[1]  # nothing typed is lost
    shown = chat_after([{"role": "user", "content": "not stored"}], steps)
    assert [m["role"] for m in shown] == ["assistant", "user", "assistant"]  # the stored conversation, whole


def test_three_sprints_or_missing_answers_warn_and_keep_the_choice(people: Store) -> None:
    partial = answers("novice")
    partial[2] = None
    out, toasts = warned(lambda: progress_page.assess(*partial, Req("ana")))
    assert toasts == ["Answer every question first (missing: 3); your other answers are kept"]
    assert all(untouched(v) for v in out)  # the questions keep the answers given
    progress_page.assess(*answers("novice"), Req("ana"))
    three = ["remote-team-setup", "virtual-meetings", "underperformance"]
    out, toasts = warned(lambda: progress_page.choose(three, Req("ana")))
    assert toasts == [("Choose exactly 2 sprints (got 3: Setting up a remote team, Running virtual meetings, "
                       "Addressing underperformance); untick 1 of them")]
    assert all(untouched(v) for v in out)  # the checkboxes keep the three ticks, unlocked
    out, toasts = warned(lambda: progress_page.set_buddy("nobody-here", Req("ana")))
    assert toasts == ["No learner 'nobody-here' here; check the username with them"] and all(untouched(v) for v in out)


def test_refusals_stay_errors(people: Store) -> None:
    session_id, _ = talk(lines=GOOD_LINES[:1])
    with pytest.raises(gr.Error, match="belongs to someone else"):
        list(practice_page.send("Hello", session_id, Req("ben")))
    with pytest.raises(gr.Error, match="page is for learners"):
        progress_page.choose(["underperformance"], Req("fay"))


# --- 2. what people type is shown as text ---------------------------------------------------------------

def test_learner_and_persona_text_is_escaped_for_the_chat(people: Store) -> None:
    session_id, chat = talk(lines=GOOD_LINES[:1])
    steps = list(practice_page.send("<b>bold</b> <img src=x> & more", session_id, Req("ana")))
    assert chat_after(chat, steps)[-2] == {"role": "user",
                                           "content": "&lt;b&gt;bold&lt;/b&gt; &lt;img src=x&gt; &amp; more"}
    reopened = practice_page.open_session(session_id, Req("ana"))[0]
    assert reopened[-2]["content"] == "&lt;b&gt;bold&lt;/b&gt; &lt;img src=x&gt; &amp; more"
    chatbot = next(b for b in practice_page_blocks() if getattr(b, "elem_id", None) == "practice-chat")
    assert chatbot.render_markdown is False  # `**x**` and `![](url)` stay as typed too


def practice_page_blocks() -> list[Any]:
    from roleplay.ui import build_app

    return list(build_app(ctx()).blocks.values())


# --- 3. briefing, pickers and chat show one session -------------------------------------------------------

def test_start_locks_the_pickers_on_the_session_and_the_briefing_names_its_level(people: Store) -> None:
    out = practice_page.start("missed-deadlines", "novice", Req("ana"))
    scenario, level, brief = out[10], out[11], out[12]
    assert scenario == {"__type__": "update", "value": "missed-deadlines", "interactive": False}
    assert level == {"__type__": "update", "value": "novice", "interactive": False}
    assert "### Missed deadlines" in brief and "**Level:** novice" in brief and "Sam Okafor" in brief
    assert "Sam" not in practice_page.briefing_md("meeting-conflict", "expert")


def test_opening_a_past_session_shows_its_scenario_and_level(people: Store) -> None:
    past, _ = practised("missed-deadlines", "novice")
    practice_page.start("sceptical-senior", "expert", Req("ana"))  # the pickers now show another scenario
    out = practice_page.open_session(past, Req("ana"))
    assert out[9]["value"] == "missed-deadlines" and out[10]["value"] == "novice"
    assert out[9]["interactive"] is True  # ended: another scenario may be picked
    assert "### Missed deadlines" in out[11] and "**Level:** novice" in out[11]
    # re-entering the tab keeps the session's scenario and level, whatever the pickers held
    entered = practice_page.enter("sceptical-senior", Req("ana"), "expert", past)
    assert entered[2]["value"] == "missed-deadlines" and "**Level:** novice" in entered[3]
    assert "Preliminary" in entered[7]  # and its feedback, as it stands now


def test_picking_another_scenario_clears_an_ended_session_from_view(people: Store) -> None:
    past, _ = practised()
    out = practice_page.pick("meeting-conflict", "expert", Req("ana"))
    brief, chat, session_id = out[0], out[1], out[2]
    assert "Launch date clash" in brief and "**Level:** expert" in brief
    assert chat == [] and session_id is None
    assert past in [sid for _, sid in practice_page._session_choices(ctx().store.person("ana"))]  # kept


def test_clearing_the_chat_in_the_browser_brings_the_conversation_back(people: Store) -> None:
    session_id, chat = talk(lines=GOOD_LINES[:2])
    assert practice_page.keep_chat(session_id, Req("ana")) == chat
    assert ctx().store.get_session(session_id).status == "active"


# --- 4. immediate, labelled feedback; notices -----------------------------------------------------------

def test_feedback_is_shown_at_once_marked_preliminary_and_counts_only_when_approved(people: Store) -> None:
    progress_page.assess(*answers("novice"), Req("ana"))
    progress_page.choose(["underperformance", "remote-communication"], Req("ana"))
    session_id, feedback = practised()
    assert "Preliminary: your facilitator reviews it before it counts." in feedback
    assert 'class="rp-crit"' in feedback and "Better:" in feedback  # the AI feedback itself, at once
    status = ctx().certification.status("ana")
    assert next(s for s in status.sprints if s.sprint == "underperformance").approved_passing == 0
    review_page.approve(review_of(session_id), None, "Good listening.", "pending", Req("fay"))
    approved = practice_page.refresh_feedback(session_id, Req("ana"))
    assert "Feedback approved by fay" in approved and "Preliminary" not in approved


def test_after_review_shows_nothing_until_approved(people: Store, content_dirs: Path) -> None:  # noqa: F811
    path = content_dirs / "missed-deadlines.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "feedback: after_review\n", encoding="utf-8")
    ctx().reload_catalog()
    session_id, feedback = practised()
    assert "Awaiting facilitator review" in feedback and "rp-crit" not in feedback and "Preliminary" not in feedback
    review_page.approve(review_of(session_id), None, "", "pending", Req("fay"))
    assert "Feedback approved by fay" in practice_page.refresh_feedback(session_id, Req("ana"))


def test_feedback_setting_falls_back_from_scenario_to_programme() -> None:
    from content import catalog

    from roleplay.programme import feedback_mode

    programme = load_programme()
    scenario = catalog().scenario("missed-deadlines")
    assert programme.feedback == "immediate" and feedback_mode(programme, scenario) == "immediate"
    quiet = programme.model_copy(update={"feedback": "after_review"})
    assert feedback_mode(quiet, scenario) == "after_review"
    assert feedback_mode(quiet, scenario.model_copy(update={"feedback": "immediate"})) == "immediate"
    assert feedback_mode(None, scenario) == "immediate"


def test_the_learner_is_notified_of_edits_approvals_and_rejections(people: Store) -> None:
    first, _ = practised()
    second, _ = practised()
    rid = review_of(first)
    version = review_page.open_review(rid, Req("fay"))[4]
    review_page.save_edit(rid, version, "empathy", 4, "You named how hard the mornings were.", "", "Clear empathy.",
                          "pending", Req("fay"))
    notices = NoticeService(ctx().store)
    assert notices.unread("ana") == 1
    preliminary = practice_page.refresh_feedback(first, Req("ana"))
    assert "fay has already changed part of it" in preliminary and "You named how hard the mornings were." in preliminary
    review_page.approve(rid, None, "Well done.", "pending", Req("gus"))
    review_page.reject(review_of(second), None, "The transcript was cut short.", "pending", Req("fay"))
    assert notices.unread("ana") == 3 and notices.unread("ben") == 0

    shown = practice_page.enter(None, Req("ana"))[5]  # the Practice page's notice list
    assert '<span class="rp-badge" id="practice-notice-count">3</span>' in shown
    assert "gus approved the feedback on your “Missed deadlines” session (novice); it is your result now: “Well done.”" in shown
    assert "fay changed the feedback on your “Missed deadlines” session (novice); it counts once approved" in shown
    assert "fay did not accept your “Missed deadlines” session (novice), so it does not count" in shown
    assert notices.unread("ana") == 0  # seen
    again = practice_page.enter(None, Req("ana"))[5]
    assert "rp-badge" not in again and "gus approved" in again  # still listed, no longer new


def test_the_open_page_picks_up_a_decision_on_the_session_in_view(people: Store) -> None:
    session_id, _ = practised()
    assert practice_page.poll(session_id, Req("ana")) == ({"__type__": "update"}, {"__type__": "update"})
    review_page.approve(review_of(session_id), None, "Nice.", "pending", Req("fay"))
    notices, feedback = practice_page.poll(session_id, Req("ana"))
    assert "fay approved" in notices and "Feedback approved by fay" in feedback
    assert practice_page.poll(session_id, Req("ana")) == ({"__type__": "update"}, {"__type__": "update"})
    assert practice_page.poll(None, Req("fay")) == ({"__type__": "update"}, {"__type__": "update"})  # quiet, no error


def test_only_the_learner_marks_their_notices_read(people: Store) -> None:
    session_id, _ = practised()
    review_page.approve(review_of(session_id), None, "", "pending", Req("fay"))
    notices = NoticeService(ctx().store)
    assert notices.mark_read("ben") == 0 and notices.unread("ana") == 1
    assert notices.mark_read("ana", []) == 0 and notices.mark_read("ana") == 1 and notices.unread("ana") == 0


def test_notices_on_each_backend(db_url: str) -> None:
    """The notices table as migrated matches the model; a review action writes a notice; removing the learner takes
    their notices along (ON DELETE CASCADE), on SQLite and PostgreSQL."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from content import catalog
    from sqlalchemy import inspect

    from roleplay.grader import CriterionGrade, finish_grade
    from roleplay.models import Base
    from roleplay.review import ReviewService

    store = Store(db_url)
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            columns = {c["name"] for c in inspect(conn).get_columns("notices")}
        assert diff == [] and {"person_id", "session_id", "review_id", "kind", "read_at"} <= columns
        store.add_person("ana", "learner")
        store.add_person("fay", "facilitator")
        store.add_person("gus", "facilitator")
        scn = catalog().scenario("missed-deadlines")
        rubric = catalog().rubric_for(scn)
        sess = store.start_session(store.person("ana").id, scn.id, "novice", "offline")
        store.add_turn(sess.id, "learner", "What has been going on for you?")
        store.end_session(sess.id, "learner")
        grade = finish_grade(rubric, "offline", [CriterionGrade(criterion_id=c.id, level=3, checks=[], evidence=[],
                                                               rationale="Level 3.", better_alternative="Ask.")
                                                for c in rubric.criteria])
        store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
        reviews = ReviewService(store, catalog().rubric)
        reviews.approve(reviews.queue("pending")[0].review_id, "fay", "Good.")
        notices = NoticeService(store)
        assert [(n.kind, n.actor, n.comment) for n in notices.recent("ana")] == [("approved", "fay", "Good.")]
        assert notices.mark_read("gus") == 0 and notices.unread("ana") == 1
        assert store.remove_person("ana") == 1  # no dangling notice blocks it
    finally:
        store.close()


# --- 5. the pre-assessment explains itself -----------------------------------------------------------------

def test_a_high_score_explains_itself_allows_a_retake_and_says_what_happens_to_past_sessions(people: Store) -> None:
    novice, _ = practised("missed-deadlines", "novice")
    review_page.approve(review_of(novice), None, "", "pending", Req("fay"))
    out = progress_page.assess(*answers("expert"), Req("ana"))
    result = out[C_ASSESSMENT]
    assert "Your pre-assessment: 18 of 18 points → expert" in result
    for band in ("novice</td><td>0–8", "intermediate</td><td>9–14", "expert (you)</td><td>15–18"):
        assert band in result
    assert "resists hard and needs real trust" in result  # what the level means
    assert "Missed deadlines at novice (Addressing underperformance): does not count (practised at novice; only " \
           "expert or harder counts for this learner)" in result
    assert "count toward a sprint when practised at your level or harder" in result
    assert out[C_RETAKE]["visible"] is True and out[C_ASSESS_BTN]["visible"] is False

    again = progress_page.retake(Req("ana"))
    assert again[1]["visible"] is True and again[C_ASSESS_BTN]["visible"] is True
    assert again[C_SPRINTS]["visible"] is False
    out = progress_page.assess(*answers("novice"), Req("ana"))
    assert "→ novice" in out[C_ASSESSMENT] and "Missed deadlines at novice (Addressing underperformance): <b>counts" \
        in out[C_ASSESSMENT]
    out = progress_page.choose(["underperformance", "remote-communication"], Req("ana"))
    assert out[C_RETAKE]["visible"] is False and "Your level is fixed" in out[C_ASSESSMENT]


# --- 6. a readable certificate beside the credential -------------------------------------------------------

def certified(people: Store) -> None:
    progress_page.assess(*answers("novice"), Req("ana"))
    progress_page.choose(["underperformance", "remote-communication"], Req("ana"))
    for _ in range(2):
        session_id, _ = practised()
        review_page.approve(review_of(session_id), None, "Good.", "pending", Req("fay"))
    review_page.sign_off("ana|underperformance", "Consistently listens first.", Req("fay"))


def test_a_certificate_to_read_print_and_verify(people: Store) -> None:
    certified(people)
    cert = progress_page.enter(Req("ana"))[6:]
    files = [Path(f) for f in cert[C_FILES]["value"]]
    assert [f.suffix for f in files] == [".json", ".html", ".pdf"]
    assert "OpenBadgeCredential" in json.loads(files[0].read_text(encoding="utf-8"))["type"]
    page = files[1].read_text(encoding="utf-8")
    for text in ("Hard conversations for remote managers: Addressing underperformance (novice)", "Ana Lima",
                 "Verified: signed with Roleplay Practice Academy", "Consistently listens first.",
                 "Missed deadlines at novice"):
        assert text in page
    pdf = files[2].read_bytes()
    assert pdf.startswith(b"%PDF") and b"Ana Lima" in pdf and b"Verified: signed with" in pdf
    assert cert[C_CERTIFICATE]["visible"] is True and "Ana Lima" in cert[C_CERTIFICATE]["value"]


def test_a_changed_credential_is_shown_as_not_verified(people: Store) -> None:
    from sqlalchemy import update

    from roleplay.models import CertificationRow

    certified(people)
    credential = ctx().certification.certificate("ana", "underperformance")
    credential["credentialSubject"]["achievement"]["name"] = "Expert in everything"
    with ctx().store.session() as db:
        db.execute(update(CertificationRow).values(credential=credential))
    view = ctx().certification.certificate_view("ana", "underperformance")
    assert view.verified is False and view.verification.startswith("Not verified")


# --- 7. human names in what learners read ---------------------------------------------------------------------

def test_messages_name_sprints_and_scenarios_by_title(people: Store) -> None:
    progress_page.assess(*answers("novice"), Req("ana"))
    status = ctx().certification.choose_sprints("ana", ["underperformance", "remote-communication"])
    assert status.next_step == ("practise and get approved passing sessions in Communicating at a distance (2 more at "
                                "novice or harder), Addressing underperformance (2 more at novice or harder)")
    failing, _ = talk(lines=["ok", "fine", "whatever"])
    practice_page.end(failing, Req("ana"), no_progress)
    review_page.approve(review_of(failing), None, "", "pending", Req("fay"))
    md = progress_page.enter(Req("ana"))[6]
    assert "- not counted: Missed deadlines (novice" in md and "missed-deadlines" not in md
