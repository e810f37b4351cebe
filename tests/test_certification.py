"""Certification: pre-assessment, sprint choice, only approved passing sessions at the learner's level count,
facilitator sign-off issues a verifiable badge and reinforcement drills; learning buddies see only what is shared."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from roleplay.buddies import BuddyService
from roleplay.certification import CertificationService
from roleplay.errors import BuddyError, CertificationError
from roleplay.programme import Programme, load_programme
from roleplay.errors import NotFoundError, PermissionDenied, ValidationErrors
from roleplay.grader import CriterionGrade, finish_grade
from content import catalog
from roleplay.review import ReviewService
from roleplay.badges import identity_matches, verify_credential
from roleplay.store import Store

ROOT = Path(__file__).resolve().parent.parent
PROGRAMME = ROOT / "programs" / "sprint-programme.yaml"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def programme() -> Programme:
    return load_programme(PROGRAMME)


def answers_for(programme: Programme, level: str) -> dict[str, str]:
    """Answers that score into `level` on the shipped bands."""
    qs = programme.pre_assessment.questions
    best = {q.id: max(q.options, key=lambda o: o.points).id for q in qs}
    worst = {q.id: min(q.options, key=lambda o: o.points).id for q in qs}
    if level == "expert":
        return best
    if level == "novice":
        return worst
    return {q.id: (best if i < 4 else worst)[q.id] for i, q in enumerate(qs)}  # 12-13 of 18


class World:
    """A real store, review service and certification service, plus helpers to make graded sessions."""

    def __init__(self, url: str, programme: Programme, data_dir: Path) -> None:
        self.store = Store(url)
        self.cat = catalog()
        self.reviews = ReviewService(self.store, self.cat.rubric)
        self.buddies = BuddyService(self.store, clock=lambda: NOW)
        self.cert = CertificationService(self.store, programme, self.cat, self.reviews, data_dir=data_dir,
                                         clock=lambda: NOW)
        self.store.add_person("ana", "learner", "Ana Lima")
        self.store.add_person("ben", "learner")
        self.store.add_person("cat", "learner")
        self.store.add_person("fay", "facilitator")
        self.store.add_person("gil", "facilitator")
        self.store.add_person("dee", "designer")

    def session(self, scenario_id: str, level: str, criterion_level: int, learner: str = "ana") -> tuple[str, int]:
        """A practised session graded with every criterion at `criterion_level`; returns (session id, review id)."""
        scn = self.cat.scenario(scenario_id)
        rubric = self.cat.rubric_for(scn)
        sess = self.store.start_session(self.store.person(learner).id, scn.id, level, "offline")
        self.store.add_turn(sess.id, "persona", scn.opening_line)
        self.store.add_turn(sess.id, "learner", "What has been going on for you?")
        self.store.end_session(sess.id, "learner")
        criteria = [CriterionGrade(criterion_id=c.id, level=criterion_level, checks=[], evidence=[],
                                   rationale=f"Level {criterion_level}.", better_alternative="Ask first.")
                    for c in rubric.criteria]
        grade = finish_grade(rubric, "offline", criteria)
        self.store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
        review = next(v for v in self.reviews.queue("pending") if v.session_id == sess.id)
        return sess.id, review.review_id

    def approved(self, scenario_id: str, level: str, criterion_level: int = 3, learner: str = "ana") -> str:
        sid, rid = self.session(scenario_id, level, criterion_level, learner)
        self.reviews.approve(rid, "fay", "Fair grade.")
        return sid

    def enrol(self, learner: str = "ana", level: str = "intermediate",
              sprints: tuple[str, ...] = ("underperformance", "remote-communication")) -> None:
        assert self.cert.pre_assessment(learner, answers_for(self.cert.programme, level)) == level
        self.cert.choose_sprints(learner, list(sprints))

    def close(self) -> None:
        self.store.close()


@pytest.fixture()
def world(tmp_path: Path, programme: Programme) -> Iterator[World]:
    w = World(f"sqlite:///{tmp_path / 'cert.db'}", programme, tmp_path / "data")
    yield w
    w.close()


def sprint(world: World, sprint_id: str, learner: str = "ana"):  # type: ignore[no-untyped-def]
    return next(s for s in world.cert.status(learner).sprints if s.sprint == sprint_id)


# --- the programme file ----------------------------------------------------------------------------

def test_shipped_programme(programme: Programme) -> None:
    assert programme.sprint_ids == ["remote-team-setup", "virtual-meetings", "remote-communication", "underperformance"]
    assert programme.choose == 2 and programme.sessions_required == 2
    assert 5 <= len(programme.pre_assessment.questions) <= 8
    assert all(len(q.options) >= 2 for q in programme.pre_assessment.questions)
    assert [r.after_days for r in programme.reinforcement] == [7, 21, 42]
    assert [programme.level_for(n) for n in (0, 9, 14, 15, 18)] == ["novice", "intermediate", "intermediate",
                                                                    "expert", "expert"]
    assert {s.sprint for s in catalog().scenarios.values()} >= set(programme.sprint_ids)


@pytest.mark.parametrize(("old", "new", "field", "problem"), [
    ("choose: 2", "choose: two", "choose", "expected a whole number"),
    ("      min_score: 15", "      min_score: 99", "pre_assessment.bands[2].min_score", "nobody can reach expert"),
    ("  - after_days: 21", "  - after_days: 5", "reinforcement[1].after_days", "list drills in order"),
])
def test_programme_errors_name_file_and_line(tmp_path: Path, old: str, new: str, field: str, problem: str) -> None:
    text = PROGRAMME.read_text()
    assert text.count(old + "\n") == 1
    line = text.splitlines().index(old) + 1
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, new))
    with pytest.raises(ValidationErrors) as err:
        load_programme(broken)
    assert f"{broken}:{line}: {field}: " in str(err.value) and problem in str(err.value)


# --- pre-assessment and sprint choice ----------------------------------------------------------------

def test_pre_assessment_sets_the_level(world: World) -> None:
    p = world.cert.programme
    assert world.cert.pre_assessment("ana", answers_for(p, "expert")) == "expert"
    assert world.cert.pre_assessment("ana", answers_for(p, "novice")) == "novice"  # may retake before choosing
    status = world.cert.status("ana")
    assert status.assessed and status.level == "novice" and status.sprints == []
    assert "choose 2 sprints" in status.next_step
    assert world.cert.status("ben").next_step.startswith("take the pre-assessment")


def test_pre_assessment_lists_what_is_missing_or_unknown(world: World) -> None:
    answers = answers_for(world.cert.programme, "expert")
    answers.pop("late-reports")
    answers.pop("silent-starter")
    answers["favourite-colour"] = "a"
    answers["angry-unmute"] = "z"
    with pytest.raises(CertificationError) as err:
        world.cert.pre_assessment("ana", answers)
    msg = str(err.value)
    assert "unanswered: late-reports, silent-starter" in msg
    assert "not questions of this pre-assessment: favourite-colour" in msg
    assert "'z' is not an option of question 'angry-unmute' (options: a, b, c, d)" in msg
    assert world.cert.status("ana").assessed is False
    with pytest.raises(NotFoundError, match="no person 'zed'"):
        world.cert.pre_assessment("zed", answers_for(world.cert.programme, "novice"))


def test_choosing_sprints(world: World) -> None:
    with pytest.raises(CertificationError, match="has not taken the pre-assessment"):
        world.cert.choose_sprints("ana", ["underperformance", "virtual-meetings"])
    world.cert.pre_assessment("ana", answers_for(world.cert.programme, "intermediate"))
    with pytest.raises(CertificationError, match="choose exactly 2 sprints \\(got 1\\)"):
        world.cert.choose_sprints("ana", ["underperformance"])
    with pytest.raises(CertificationError, match="chosen twice: underperformance"):
        world.cert.choose_sprints("ana", ["underperformance", "underperformance"])
    with pytest.raises(CertificationError, match="not sprints of this programme: coding; choose from: remote-team-setup"):
        world.cert.choose_sprints("ana", ["underperformance", "coding"])
    status = world.cert.choose_sprints("ana", ["underperformance", "virtual-meetings"])
    assert [s.sprint for s in status.sprints] == ["virtual-meetings", "underperformance"]
    assert all(s.level == "intermediate" and s.still_needed == 2 and not s.ready_for_sign_off for s in status.sprints)
    status = world.cert.choose_sprints("ana", ["underperformance", "remote-communication"])
    assert [s.sprint for s in status.sprints] == ["remote-communication", "underperformance"]
    with pytest.raises(CertificationError, match="can no longer change"):
        world.cert.pre_assessment("ana", answers_for(world.cert.programme, "novice"))


# --- what counts ----------------------------------------------------------------------------------

def test_only_approved_passing_sessions_at_or_above_the_level_count(world: World) -> None:
    world.enrol()
    pending, _ = world.session("missed-deadlines", "intermediate", 4)
    rejected, rid = world.session("missed-deadlines", "expert", 4)
    world.reviews.reject(rid, "fay", "The transcript was cut short; practise it again.")
    failing = world.approved("missed-deadlines", "intermediate", 1)
    too_easy = world.approved("missed-deadlines", "novice", 4)
    other_sprint = world.approved("meeting-conflict", "expert", 4)
    s = sprint(world, "underperformance")
    assert s.approved_passing == 0 and s.still_needed == 2 and not s.ready_for_sign_off
    assert s.pending_reviews == 1
    reasons = {u.session_id: u.reason for u in s.not_counted}
    assert set(reasons) == {failing, too_easy}
    assert reasons[too_easy] == "practised at novice; only intermediate or harder counts for this learner"
    assert reasons[failing].startswith("did not pass")
    assert pending not in reasons and rejected not in reasons and other_sprint not in reasons

    first = world.approved("missed-deadlines", "intermediate", 3)
    second = world.approved("missed-deadlines", "expert", 3)  # harder than the learner's level counts too
    s = sprint(world, "underperformance")
    assert [c.session_id for c in s.counted] == [first, second]
    assert s.counted[0].approved_by == "fay" and s.still_needed == 0 and s.ready_for_sign_off
    assert sprint(world, "remote-communication").approved_passing == 0
    assert "ask a facilitator to sign off: Addressing underperformance" in world.cert.status("ana").next_step


def test_a_facilitator_edit_decides_whether_a_session_counts(world: World) -> None:
    world.enrol()
    _, rid = world.session("missed-deadlines", "intermediate", 1)  # the AI grade fails it
    rubric = world.cat.rubric("coaching-conversation")
    from roleplay.review import CriterionEdit

    world.reviews.edit(rid, "fay", [CriterionEdit(criterion_id=c.id, level=3) for c in rubric.criteria],
                       "The judge missed the acknowledgement in turn 2.")
    assert sprint(world, "underperformance").approved_passing == 0  # edited but not yet approved
    world.reviews.approve(rid, "gil")
    assert sprint(world, "underperformance").approved_passing == 1


# --- sign-off -------------------------------------------------------------------------------------

def test_sign_off_rules(world: World) -> None:
    world.enrol()
    world.approved("missed-deadlines", "intermediate")
    with pytest.raises(PermissionDenied, match="only facilitators"):
        world.cert.sign_off("underperformance", "ana", "ben", "Well done.")
    with pytest.raises(PermissionDenied, match="only facilitators"):
        world.cert.sign_off("underperformance", "ana", "dee", "Well done.")
    with pytest.raises(CertificationError, match="written comment"):
        world.cert.sign_off("underperformance", "ana", "fay", "   ")
    with pytest.raises(CertificationError, match="not ready for sign-off.*1 of 2.*1 more needed"):
        world.cert.sign_off("underperformance", "ana", "fay", "Well done.")
    with pytest.raises(CertificationError, match="has not chosen the sprint 'virtual-meetings'"):
        world.cert.sign_off("virtual-meetings", "ana", "fay", "Well done.")
    with pytest.raises(NotFoundError, match="no sprint 'coding'"):
        world.cert.sign_off("coding", "ana", "fay", "Well done.")
    assert not sprint(world, "underperformance").certified
    assert world.cert.drills("ana") == []


def test_a_facilitator_cannot_sign_off_themself(world: World) -> None:
    world.enrol("gil")
    with pytest.raises(PermissionDenied, match="your own certification"):
        world.cert.sign_off("underperformance", "gil", "gil", "I am great.")


def test_sign_off_issues_a_verifiable_badge_and_schedules_drills(world: World) -> None:
    world.enrol()
    world.approved("missed-deadlines", "intermediate")
    world.approved("missed-deadlines", "expert")
    cert = world.cert.sign_off("underperformance", "ana", "fay", "  Clear, kind and specific. Well done.  ")
    assert cert.comment == "Clear, kind and specific. Well done." and cert.level == "intermediate"

    cred = world.cert.certificate("ana", "underperformance")
    assert cred == cert.credential and verify_credential(cred)
    assert cred["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert cred["issuer"]["name"] == "Roleplay Practice Academy"
    assert cred["validFrom"] == "2026-03-02T09:30:00Z"
    achievement = cred["credentialSubject"]["achievement"]
    assert achievement["id"] == "https://roleplay.example/achievements/remote-manager-sprints/underperformance/intermediate"
    assert "Addressing underperformance" in achievement["name"] and "approved by a facilitator" in achievement["criteria"]["narrative"]
    assert identity_matches(cred, "ana@roleplay.example")
    tampered = {**cred, "credentialSubject": {**cred["credentialSubject"], "achievement": {**achievement, "name": "Expert"}}}
    assert not verify_credential(tampered)
    assert (world.cert.data_dir / "keys" / "badge-ed25519.pem").is_file()  # type: ignore[operator]

    s = sprint(world, "underperformance")
    assert s.certified and not s.ready_for_sign_off and s.signed_off_by == "fay"
    assert s.comment == cert.comment and s.credential_id == cred["id"]

    drills = world.cert.drills("ana")
    assert [(d.due_on, d.after_days) for d in drills] == [(date(2026, 3, 9), 7), (date(2026, 3, 23), 21),
                                                          (date(2026, 4, 13), 42)]
    assert all(d.sprint == "underperformance" and d.level == "intermediate" for d in drills)
    assert all(world.cat.scenario(d.scenario_id).sprint == "underperformance" for d in drills)
    assert drills[0].purpose and cert.drills == drills

    with pytest.raises(CertificationError, match="already certified in 'underperformance' by fay"):
        world.cert.sign_off("underperformance", "ana", "gil", "Again.")
    with pytest.raises(CertificationError, match="already certified in underperformance; keep it"):
        world.cert.choose_sprints("ana", ["virtual-meetings", "remote-communication"])
    with pytest.raises(NotFoundError, match="no certificate in 'remote-communication'"):
        world.cert.certificate("ana", "remote-communication")


def test_drills_prefer_scenarios_the_learner_practised_least(world: World) -> None:
    world.enrol(sprints=("remote-communication", "underperformance"), level="novice")
    world.approved("quiet-new-starter", "novice")
    world.approved("quiet-new-starter", "intermediate")
    world.cert.sign_off("remote-communication", "ana", "fay", "Good listening throughout.")
    assert [d.scenario_id for d in world.cert.drills("ana")] == ["left-out-of-change", "quiet-new-starter",
                                                                "left-out-of-change"]
    assert {d.level for d in world.cert.drills("ana")} == {"novice"}


# --- learning buddies -------------------------------------------------------------------------------

def test_buddies_see_only_what_is_shared_with_them(world: World) -> None:
    shared = world.approved("missed-deadlines", "novice")
    private = world.approved("missed-deadlines", "novice")
    bens = world.approved("missed-deadlines", "novice", learner="ben")

    with pytest.raises(BuddyError, match="your own learning buddy"):
        world.buddies.name_buddy("ana", "ana")
    with pytest.raises(BuddyError, match="name a learning buddy first"):
        world.buddies.share_session("ana", shared)
    world.buddies.name_buddy("ana", "ben")
    assert world.buddies.buddy_of("ana") == "ben"
    with pytest.raises(PermissionDenied, match="only share your own"):
        world.buddies.share_session("ana", bens)
    world.buddies.share_session("ana", shared)
    world.buddies.share_session("ana", shared)  # sharing twice is harmless

    assert [s.session_id for s in world.buddies.buddy_sessions("ben")] == [shared]
    assert world.buddies.buddy_sessions("ben")[0].learner == "ana"
    view = world.buddies.shared_session("ben", shared)
    assert view.turns[1].text == "What has been going on for you?"
    assert world.buddies.buddy_sessions("cat") == []
    for who, sid in (("cat", shared), ("ben", private), ("fay", shared)):
        with pytest.raises(PermissionDenied, match="has not been shared with"):
            world.buddies.shared_session(who, sid)
        with pytest.raises(PermissionDenied):
            world.buddies.add_reflection(who, sid, "Nice.")

    world.buddies.add_reflection("ben", shared, "  Your second question opened her up.  ")
    world.buddies.add_reflection("ana", shared, "Next time I'll name the impact earlier.")
    with pytest.raises(BuddyError, match="cannot be empty"):
        world.buddies.add_reflection("ben", shared, " ")
    notes = world.buddies.reflections(shared)
    assert [(r.author, r.note) for r in notes] == [("ben", "Your second question opened her up."),
                                                   ("ana", "Next time I'll name the impact earlier.")]
    assert world.buddies.reflections(shared, viewer="ben") == notes
    with pytest.raises(PermissionDenied):
        world.buddies.reflections(shared, viewer="cat")

    world.buddies.name_buddy("ana", "cat")  # a new buddy: the old one loses access
    assert world.buddies.buddy_sessions("ben") == []
    with pytest.raises(PermissionDenied):
        world.buddies.shared_session("ben", shared)
    assert world.buddies.buddy_sessions("cat") == []  # nothing shared with cat yet
    world.buddies.share_session("ana", shared)
    assert [s.session_id for s in world.buddies.buddy_sessions("cat")] == [shared]


# --- both database backends ---------------------------------------------------------------------------

class TestOnEachBackend:
    """The whole path on SQLite and PostgreSQL: enrol, count, sign off, drills (dates), buddies."""

    def test_end_to_end(self, db_url: str, programme: Programme, tmp_path: Path) -> None:
        world = World(db_url, programme, tmp_path / "data")
        try:
            world.enrol(level="expert", sprints=("virtual-meetings", "underperformance"))
            world.approved("meeting-conflict", "intermediate")
            world.approved("meeting-conflict", "expert")
            sid = world.approved("meeting-conflict", "expert")
            s = sprint(world, "virtual-meetings")
            assert s.approved_passing == 2 and s.ready_for_sign_off and len(s.not_counted) == 1
            cert = world.cert.sign_off("virtual-meetings", "ana", "gil", "Kept it fair and neutral.")
            assert verify_credential(world.cert.certificate("ana", "virtual-meetings"))
            assert [d.due_on for d in world.cert.drills("ana")] == [d.due_on for d in cert.drills]
            assert world.cert.drills("ana")[0].due_on == date(2026, 3, 9)
            world.buddies.name_buddy("ana", "ben")
            world.buddies.share_session("ana", sid)
            world.buddies.add_reflection("ben", sid, "Good reset of the ground rules.")
            assert [r.author for r in world.buddies.reflections(sid)] == ["ben"]
        finally:
            world.close()
