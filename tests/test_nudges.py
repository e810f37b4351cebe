"""Reinforcement nudges against a real local SMTP server (aiosmtpd): a due drill is emailed once, with a working signed
link back to it and a one-click unsubscribe; nothing is lost or sent twice when the mail server is down or hangs up;
learners mark drills done and turn reminders off from the library and the Progress page."""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any

import alembic.command  # noqa: F401 - the store's migrations; imported at collection like the rest, not in a test
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from content import catalog
from sqlalchemy import select, update

from roleplay.catalog import Catalog, load_catalog
from roleplay.certification import CertificationService
from roleplay.cli import main as cli
from roleplay.config import load_settings
from roleplay.context import AppContext
from roleplay.drills import Drill, drill_id_of, drill_state, due_date, plan_drills, schedule_drills
from roleplay.errors import CertificationError, ConfigError, NotFoundError, RoleplayError
from roleplay.grader import CriterionGrade, finish_grade
from roleplay.mail import LinkSigner, SmtpConfig
from roleplay.models import (
    CertificationRow,
    CertificationStatus,
    DrillStatus,
    Person,
    PracticeSession,
    ReinforcementDrill,
)
from roleplay.nudges import NudgeScheduler, NudgeService, reminder_choice, set_reminders
from roleplay.people import PeopleService
from roleplay.programme import Programme, load_programme
from roleplay.review import ReviewService
from roleplay.store import Store

ROOT = Path(__file__).resolve().parent.parent
SIGNED_OFF = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # drills fall due on 9 Mar (7 days), 23 Mar (21) and 13 Apr (42)
FIRST_DUE = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
SECOND_DUE = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
LEARNERS = ("ana", "ben", "cat")
PUBLIC = "http://roleplay.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a real SMTP server ---------------------------------------------------------------------------------------

@dataclass
class Inbox:
    """What the local mail server accepted; `hang_up_after` makes it drop the connection after that many emails."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    hang_up_after: int | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        if self.hang_up_after is not None and len(self.messages) >= self.hang_up_after:
            server.transport.close()  # gone mid-transaction: this email is not accepted
            return "421 4.3.0 closing"
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture()
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


# --- three learners certified on 2 March 2026, their drills scheduled --------------------------------------------

def answers(programme: Programme) -> dict[str, str]:
    """Pre-assessment answers that score intermediate on the shipped bands."""
    qs = programme.pre_assessment.questions
    best = {q.id: max(q.options, key=lambda o: o.points).id for q in qs}
    worst = {q.id: min(q.options, key=lambda o: o.points).id for q in qs}
    return {q.id: (best if i < 4 else worst)[q.id] for i, q in enumerate(qs)}


def _approved(store: Store, reviews: ReviewService, learner: str, scenario_id: str, level: str) -> None:
    cat = catalog()
    scn = cat.scenario(scenario_id)
    rubric = cat.rubric_for(scn)
    sess = store.start_session(store.person(learner).id, scn.id, level, "offline")
    store.add_turn(sess.id, "persona", scn.opening_line)
    store.add_turn(sess.id, "learner", "What has been going on for you?")
    store.end_session(sess.id, "learner")
    grade = finish_grade(rubric, "offline", [CriterionGrade(criterion_id=c.id, level=3, checks=[], evidence=[],
                                                            rationale="Level 3.", better_alternative="Ask first.")
                                             for c in rubric.criteria])
    store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
    reviews.approve(reviews.for_session(sess.id).review_id, "fay", "Fair grade.")


def certify(store: Store, data_dir: Path, learners: tuple[str, ...] = LEARNERS) -> None:
    """`learners` (with addresses) certified in underperformance on 2 March 2026 by fay; their drills scheduled."""
    programme = load_programme(ROOT / "programs" / "sprint-programme.yaml")
    reviews = ReviewService(store, catalog().rubric)
    cert = CertificationService(store, programme, catalog(), reviews, data_dir=data_dir, clock=lambda: SIGNED_OFF)
    store.add_person("fay", "facilitator", "Fay")
    for name in learners:
        store.add_person(name, "learner", name.capitalize())
        PeopleService(store).set_email(name, f"{name}@example.com")
        cert.pre_assessment(name, answers(programme))
        cert.choose_sprints(name, ["underperformance", "remote-communication"])
        for level in ("intermediate", "expert"):
            _approved(store, reviews, name, "missed-deadlines", level)
        cert.sign_off("underperformance", name, "fay", "Listens first, then is clear.")
    with store.session() as db:  # practised before the sign-off, not after a drill fell due
        db.execute(update(PracticeSession).values(started_at=SIGNED_OFF - timedelta(days=1)))


@lru_cache(maxsize=1)
def drill_catalog() -> Catalog:
    """The one scenario of the underperformance sprint, and its rubric: what the drills and their emails name."""
    found = load_catalog([ROOT / "scenarios" / "missed-deadlines.yaml",
                          ROOT / "rubrics" / "coaching-conversation.yaml"])
    found.raise_errors()
    return found


def seed(store: Store, learners: tuple[str, ...] = LEARNERS) -> None:
    """The rows a sign-off leaves, written directly: `learners` (with addresses) certified in underperformance at
    intermediate on 2 March 2026 by fay, their drills planned and scheduled as `CertificationService.sign_off` does."""
    programme = load_programme(ROOT / "programs" / "sprint-programme.yaml")
    scenarios = [drill_catalog().scenario("missed-deadlines")]
    fay = store.add_person("fay", "facilitator", "Fay")
    with store.session() as db:
        for name in learners:
            person = Person(username=name, role="learner", display_name=name.capitalize(), email=f"{name}@example.com")
            db.add(person)
            db.flush()
            cert = CertificationRow(person_id=person.id, sprint="underperformance", level="intermediate",
                                    status=CertificationStatus.CERTIFIED, signed_off_by=fay.id,
                                    comment="Listens first, then is clear.", issued_at=SIGNED_OFF)
            db.add(cert)
            db.flush()
            schedule_drills(db, plan_drills(programme, "underperformance", scenarios, "intermediate", [], SIGNED_OFF),
                            certification_id=cert.id, person_id=person.id)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with ana, ben and cat certified and their drills scheduled (made once per module, copied
    by each test; cheap: the rows are written directly)."""
    folder = tmp_path_factory.mktemp("nudges-template")
    store = Store(f"sqlite:///{folder / 'roleplay.db'}")
    seed(store)
    store.close()
    return folder / "roleplay.db"


@pytest.fixture(scope="module")
def certified_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database where ana, ben and cat went through the whole programme (pre-assessment, sprints, approved sessions,
    sign-off): for the Progress page, which shows all of it (slow tests only)."""
    folder = tmp_path_factory.mktemp("nudges-certified")
    store = Store(f"sqlite:///{folder / 'roleplay.db'}")
    certify(store, folder)
    store.close()
    return folder / "roleplay.db"


def context_of(template: Path, data_dir: Path, cat: Catalog) -> AppContext:
    """The app context of a copy of `template` in `data_dir`, with the catalog `cat` (loaded once for the module)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, data_dir / "roleplay.db")
    ctx = AppContext()
    ctx.__dict__["catalog"] = cat
    return ctx


@pytest.fixture()
def context(template: Path, isolated_settings: Path) -> Iterator[AppContext]:
    """The app context of a copy of the template database (in this test's data directory)."""
    ctx = context_of(template, isolated_settings, drill_catalog())
    yield ctx
    ctx.close()


@pytest.fixture()
def certified(certified_template: Path, isolated_settings: Path) -> Iterator[AppContext]:
    """The app context of a copy of the fully certified database, with the shipped scenarios."""
    ctx = context_of(certified_template, isolated_settings, catalog())
    yield ctx
    ctx.close()


def service(ctx: AppContext, port: int, when: datetime = FIRST_DUE, clock: Callable[[], datetime] | None = None,
            **kwargs: Any) -> NudgeService:
    """The nudge service of `ctx` at time `when` (or on `clock`), sending through the mail server on `port`."""
    smtp = SmtpConfig(host="127.0.0.1", port=port, security="none", sender="Roleplay <drills@roleplay.test>",
                      timeout=5)
    return NudgeService(ctx.store, ctx.programme, ctx.catalog, LinkSigner.for_data_dir(ctx.settings.data_dir),
                        public_url=PUBLIC, smtp=smtp, clock=clock or (lambda: when), **kwargs)


def rows(ctx: AppContext) -> dict[tuple[str, int], ReinforcementDrill]:
    """Every drill by (learner, days after sign-off)."""
    with ctx.store.session() as db:
        names = {p.id: p.username for p in ctx.store.people()}
        return {(names[r.person_id], r.after_days): r for r in db.scalars(select(ReinforcementDrill))}


def links(message: EmailMessage) -> tuple[str, str]:
    """The drill link and the unsubscribe link of a reminder email (from its plain text)."""
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.findall(r"http://\S+", text)
    return next(u for u in found if "/nudges/drill/" in u), next(u for u in found if "/nudges/unsubscribe/" in u)


# --- sending --------------------------------------------------------------------------------------------------

def test_a_due_drill_is_emailed_once_and_says_what_to_practise(context: AppContext, inbox: Inbox) -> None:
    nudges = service(context, inbox.port)
    report = nudges.send_due()
    assert report.count("sent") == 3 and report.summary().startswith("3 sent")
    assert [len(inbox.to(f"{n}@example.com")) for n in LEARNERS] == [1, 1, 1]
    again = nudges.send_due()
    assert again.count("sent") == 0 and len(inbox.messages) == 3  # run twice: still one email each

    mail = inbox.to("ana@example.com")[0]
    drill = context.certification.drills("ana")[0]
    assert mail["Subject"] == f"Time to practise: {drill.scenario_title} ({drill.level})"
    assert mail["From"] == "Roleplay <drills@roleplay.test>" and mail["To"] == "Ana <ana@example.com>"
    assert mail["Message-ID"] == f"<drill-{drill.id}.20260309@roleplay.test>"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for body in (text, html):
        assert drill.scenario_title in body and drill.purpose in body and "Addressing underperformance" in body
    drill_link, unsubscribe = links(mail)
    assert drill_link.startswith(f"{PUBLIC}/nudges/drill/") and f'href="{drill_link}"' in html
    assert mail["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    shown = context.certification.drills("ana")
    assert shown[0].status == DrillStatus.SENT and shown[0].sent_at is not None
    assert [d.status for d in shown[1:]] == [DrillStatus.SCHEDULED] * 2


def test_a_drill_not_yet_due_waits_for_its_day(context: AppContext, inbox: Inbox) -> None:
    assert service(context, inbox.port, FIRST_DUE - timedelta(days=1)).send_due().count("sent") == 0
    assert inbox.messages == []
    service(context, inbox.port, FIRST_DUE).send_due()
    service(context, inbox.port, SECOND_DUE).send_due()
    subjects = [m["Message-ID"] for m in inbox.to("ana@example.com")]
    assert len(subjects) == 2 and len(set(subjects)) == 2  # the first drill, then the second on its day
    assert rows(context)[("ana", 42)].status == DrillStatus.SCHEDULED


def test_unsubscribed_or_addressless_learners_get_no_email(context: AppContext, inbox: Inbox) -> None:
    set_reminders(context.store, "ben", False)
    PeopleService(context.store).set_email("cat", "")
    report = service(context, inbox.port).send_due()
    assert [m["To"] for m in inbox.messages] == ["Ana <ana@example.com>"]
    assert report.unsubscribed == 1 and report.no_email == ["cat"]
    assert "1 not emailed (learner unsubscribed)" in report.summary()
    assert "without an email address (cat; add one with `roleplay people set NAME --email ADDRESS`)" in report.summary()
    assert rows(context)[("ben", 7)].status == DrillStatus.SCHEDULED  # kept: emailed if ben turns reminders on
    set_reminders(context.store, "ben", True)
    assert reminder_choice(context.store, "ben") == (True, "ben@example.com")
    service(context, inbox.port).send_due()
    assert len(inbox.to("ben@example.com")) == 1


def test_mail_server_down_loses_nothing_and_the_next_run_sends(context: AppContext, inbox: Inbox) -> None:
    down = service(context, free_port())  # nothing listens there
    report = down.send_due()
    assert report.count("sent") == 0 and report.count("failed") == 1
    assert "cannot reach the mail server 127.0.0.1" in report.stopped
    for name in LEARNERS:
        row = rows(context)[(name, 7)]
        assert row.status == DrillStatus.SCHEDULED and row.sent_at is None
        assert "cannot reach the mail server" in (row.last_error or "")
    report = service(context, inbox.port).send_due()
    assert report.count("sent") == 3 and len(inbox.messages) == 3
    assert rows(context)[("ana", 7)].last_error is None


def test_a_hang_up_mid_batch_sends_no_duplicates_on_the_rerun(context: AppContext, inbox: Inbox) -> None:
    inbox.hang_up_after = 1
    first = service(context, inbox.port).send_due()
    assert first.count("sent") == 1 and first.count("failed") == 1
    assert "closed the connection" in first.stopped and len(inbox.messages) == 1
    inbox.hang_up_after = None
    rerun = service(context, inbox.port).send_due()
    assert rerun.count("sent") == 2
    ids = [m["Message-ID"] for m in inbox.messages]
    assert len(ids) == 3 and len(set(ids)) == 3  # one email per learner, none twice
    assert all(len(inbox.to(f"{n}@example.com")) == 1 for n in LEARNERS)


def test_a_sender_killed_after_handing_over_is_retried_later_with_the_same_message_id(
        context: AppContext, inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    nudges = service(context, inbox.port)
    real_finish = NudgeService._finish

    def killed(self: NudgeService, drill_id: int, attempt: int, **values: Any) -> None:
        if values.get("status") == DrillStatus.SENT:
            raise KeyboardInterrupt  # the process dies between the server's 250 and the database write
        real_finish(self, drill_id, attempt, **values)

    monkeypatch.setattr(NudgeService, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        nudges.send_due()
    monkeypatch.setattr(NudgeService, "_finish", real_finish)
    assert len(inbox.messages) == 1 and rows(context)[("ana", 7)].status == DrillStatus.SENDING
    soon = service(context, inbox.port, FIRST_DUE + timedelta(minutes=5)).send_due()
    assert soon.count("sent") == 2 and len(inbox.to("ana@example.com")) == 1  # the claim holds: no second email
    later = service(context, inbox.port, FIRST_DUE + timedelta(minutes=20)).send_due()
    assert later.count("sent") == 1
    first, resent = inbox.to("ana@example.com")
    assert first["Message-ID"] == resent["Message-ID"]  # a resend is recognisable as the same email
    assert rows(context)[("ana", 7)].status == DrillStatus.SENT


def test_an_email_that_cannot_be_made_fails_alone_and_blocks_nothing(context: AppContext, inbox: Inbox,
                                                                      tmp_path: Path) -> None:
    """A non-ASCII address, a display name and a scenario title with line breaks (a YAML `title: >` block ends in
    one): the bad address fails on its own, the others go out with one-line headers, and no later run is blocked."""
    scenario = (ROOT / "scenarios" / "missed-deadlines.yaml").read_text()
    (tmp_path / "missed-deadlines.yaml").write_text(
        scenario.replace("title: Missed deadlines\n", "title: >\n  Missed deadlines,\n  again\n", 1))
    folded = load_catalog([tmp_path / "missed-deadlines.yaml", ROOT / "rubrics" / "coaching-conversation.yaml"])
    folded.raise_errors()
    assert folded.scenario("missed-deadlines").title == "Missed deadlines, again\n"
    context.__dict__["catalog"] = folded
    with context.store.session() as db:  # an address stored before addresses had to be ASCII; a two-line name
        db.execute(update(Person).where(Person.username == "ana").values(email="josé@exämple.com"))
        db.execute(update(Person).where(Person.username == "ben").values(display_name="Ben\nBarker"))
    report = service(context, inbox.port).send_due()
    assert (report.count("sent"), report.count("failed"), report.stopped) == (2, 1, "")
    (failed,) = [o for o in report.outcomes if o.result == "failed"]
    assert failed.username == "ana" and "josé@exämple.com has characters outside plain ASCII" in failed.detail
    assert "roleplay people set ana --email ADDRESS" in failed.detail and "\n" not in failed.line()
    assert [m["Subject"] for m in inbox.messages] == ["Time to practise: Missed deadlines, again (intermediate)"] * 2
    assert inbox.to("ben@example.com")[0]["To"] == "Ben Barker <ben@example.com>"
    drill = rows(context)[("ana", 7)]
    assert drill.status == DrillStatus.SCHEDULED and drill.attempts == 0 and drill.claimed_at is None
    assert "outside plain ASCII" in (drill.last_error or "")
    assert service(context, inbox.port).send_due().count("failed") == 1  # the next run tries it again, alone

    with pytest.raises(RoleplayError, match=r"outside plain ASCII.*\(for this domain: ana@xn--exmple-cua\.com\)"):
        PeopleService(context.store).set_email("ana", "ana@exämple.com")
    PeopleService(context.store).set_email("ana", "jose@example.com")
    rerun = service(context, inbox.port).send_due()
    assert rerun.count("sent") == 1 and len(inbox.to("jose@example.com")) == 1
    assert rows(context)[("ana", 7)].status == DrillStatus.SENT


def test_an_email_the_mail_server_cannot_take_fails_alone(context: AppContext, inbox: Inbox,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_send = smtplib.SMTP.send_message

    def without_smtputf8(conn: smtplib.SMTP, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if "ben@" in str(msg["To"]):  # what smtplib raises for an address the server cannot take
            raise smtplib.SMTPNotSupportedError("One or more source or delivery addresses require internationalized "
                                                "email support, but the server does not advertise the required "
                                                "SMTPUTF8 capability")
        return real_send(conn, msg, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "send_message", without_smtputf8)
    report = service(context, inbox.port).send_due()
    assert (report.count("sent"), report.count("failed"), report.stopped) == (2, 1, "")
    (failed,) = [o for o in report.outcomes if o.result == "failed"]
    assert failed.detail.startswith("the mail server cannot take the email to ben@example.com") and "SMTPUTF8" in (
        failed.detail)
    assert "ROLEPLAY_SMTP_SECURITY" not in failed.detail  # not a setting to change: this one email
    assert rows(context)[("ben", 7)].status == DrillStatus.SCHEDULED and len(inbox.messages) == 2


def test_a_drill_claimed_late_in_a_long_run_is_not_taken_as_stale_by_another_run(
        context: AppContext, inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow mail server: each email takes 10 minutes, so the run's third claim comes 20 minutes after it began. A
    run started 25 minutes in (cron beside the app) must see that claim as 5 minutes old, not as a stale one."""
    now = [FIRST_DUE]
    first, second = (service(context, inbox.port, clock=lambda: now[0]) for _ in range(2))
    real_finish, meanwhile = first._finish, []

    def slow(drill_id: int, attempt: int, **values: Any) -> None:
        if values.get("status") == DrillStatus.SENT and len(inbox.messages) == 3:
            now[0] = FIRST_DUE + timedelta(minutes=25)
            meanwhile.append(second.send_due())  # while the third email's claim is held
        real_finish(drill_id, attempt, **values)
        now[0] += timedelta(minutes=10)

    monkeypatch.setattr(first, "_finish", slow)
    assert first.send_due().count("sent") == 3
    assert meanwhile[0].count("sent") == 0 and meanwhile[0].outcomes == []
    assert [len(inbox.to(f"{n}@example.com")) for n in LEARNERS] == [1, 1, 1]  # cat's email once, not twice
    claimed = rows(context)[("cat", 7)]
    assert claimed.status == DrillStatus.SENT and claimed.attempts == 1
    assert claimed.claimed_at is not None and claimed.claimed_at.replace(tzinfo=UTC) == FIRST_DUE + timedelta(
        minutes=20)


def test_a_drill_is_due_from_its_utc_date_for_the_sender_and_the_page(context: AppContext, inbox: Inbox) -> None:
    far_east, far_west = timezone(timedelta(hours=14)), timezone(timedelta(hours=-10))
    early = datetime(2026, 3, 9, 0, 30, tzinfo=far_east)  # 9 March there, still 8 March in UTC
    late = datetime(2026, 3, 8, 23, 30, tzinfo=far_west)  # 8 March there, already 9 March in UTC
    assert (due_date(early), due_date(late), due_date(datetime(2026, 3, 9, 0, 30))) == (
        date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 9))
    drill = Drill(sprint="underperformance", scenario_id="missed-deadlines", scenario_title="Missed deadlines",
                  level="intermediate", after_days=7, due_on=date(2026, 3, 9), purpose="", status=DrillStatus.SCHEDULED)
    assert (drill_state(drill, early), drill_state(drill, late)) == ("scheduled", "due")
    assert drill_state(drill.model_copy(update={"status": DrillStatus.SENT, "sent_at": FIRST_DUE}), late) == (
        "emailed 09 Mar")
    assert drill_state(drill.model_copy(update={"status": DrillStatus.DONE, "done_at": FIRST_DUE}), early) == (
        "done 09 Mar")
    assert service(context, inbox.port, early).send_due().outcomes == []  # the sender agrees: not due yet
    assert service(context, inbox.port, late).send_due().count("sent") == 3


def test_a_drill_id_from_the_page_is_checked() -> None:
    assert [drill_id_of(v) for v in (7, "7", " 12 ", 3.0)] == [7, 7, 12, 3]
    for typed in ("my drill", "7a", "-3", "0", "²", "9" * 40, True, 7.5, [7]):
        with pytest.raises(CertificationError, match="^pick a drill from the list"):
            drill_id_of(typed)
    for nothing in (None, "", "  "):
        with pytest.raises(CertificationError, match="^pick the drill you have done first$"):
            drill_id_of(nothing)


@pytest.mark.slow
def test_claims_hold_on_sqlite_and_postgresql(db_url: str, inbox: Inbox, isolated_settings: Path) -> None:
    """The conditional claim and its attempt check, on both databases: a hang-up and two reruns, one email each."""
    store = Store(db_url)
    try:
        certify(store, isolated_settings, ("ana", "ben"))
        nudges = NudgeService(store, load_programme(ROOT / "programs" / "sprint-programme.yaml"), catalog(),
                              LinkSigner.for_data_dir(isolated_settings), public_url=PUBLIC, clock=lambda: FIRST_DUE,
                              smtp=SmtpConfig(host="127.0.0.1", port=inbox.port, security="none",
                                              sender="r@roleplay.test", timeout=5))
        inbox.hang_up_after = 1
        assert nudges.send_due().count("sent") == 1
        inbox.hang_up_after = None
        assert [nudges.send_due().count("sent") for _ in range(2)] == [1, 0]
        assert sorted(str(m["To"]) for m in inbox.messages) == ["Ana <ana@example.com>", "Ben <ben@example.com>"]
    finally:
        store.close()


def test_dry_run_sends_and_records_nothing(context: AppContext) -> None:
    report = service(context, free_port()).send_due(dry_run=True)
    assert report.count("would send") == 3 and "dry run" in report.summary()
    assert report.outcomes[0].line().startswith("would send      drill ")
    assert all(r.status == DrillStatus.SCHEDULED and r.attempts == 0 for r in rows(context).values())


# --- links ------------------------------------------------------------------------------------------------------

def test_forged_or_changed_links_are_refused_with_a_clear_message(context: AppContext, inbox: Inbox) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from roleplay.nudges import routes

    service(context, inbox.port).send_due()
    drill_link, unsubscribe = links(inbox.to("ana@example.com")[0])
    with TestClient(Starlette(routes=routes(context))) as client:
        good = client.get(drill_link.removeprefix(PUBLIC), follow_redirects=False)
        assert good.status_code == 303 and good.headers["location"].startswith("/?scenario=")
        token = unsubscribe.rsplit("/", 1)[1]
        payload, mac = token.split(".")
        for bad in (f"{payload}.{mac[:-2]}", f"{payload[:-2]}AA.{mac}", "nothing", f"{payload}.",
                    drill_link.rsplit("/", 1)[1]):  # cut short, changed, made up, unsigned, a drill link's token
            page = client.post(f"/nudges/unsubscribe/{bad}")
            assert page.status_code == 400 and "this link is not valid" in page.text
        forged = LinkSigner(b"k" * 32).sign("drill", 1, 1)
        assert "this link is not valid" in client.get(f"/nudges/drill/{forged}").text
    assert reminder_choice(context.store, "ana")[0] is True  # nothing was changed


@pytest.mark.slow
def test_the_links_in_the_email_work_against_the_running_app(template: Path, isolated_settings: Path,
                                                            inbox: Inbox, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from roleplay.ui import build_app, practice_page
    from roleplay.ui.app import launch_options

    port = free_port()
    isolated_settings.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, isolated_settings / "roleplay.db")
    for name, value in {"PUBLIC_URL": f"http://127.0.0.1:{port}", "SMTP_HOST": "127.0.0.1",
                        "SMTP_PORT": str(inbox.port), "SMTP_SECURITY": "none",
                        "SMTP_FROM": "Roleplay <drills@roleplay.test>"}.items():
        monkeypatch.setenv(f"ROLEPLAY_{name}", value)
    ctx = AppContext()
    demo = build_app(ctx)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        ctx.nudges.send_due()  # today every drill of the three learners is due
        mail = next(m for m in inbox.to("ana@example.com") if "20260309" in m["Message-ID"])
        drill_link, unsubscribe = links(mail)
        drill = ctx.certification.drills("ana")[0]
        with httpx.Client(timeout=10) as http:
            moved = http.get(drill_link)
            assert moved.status_code == 303
            assert moved.headers["location"] == (f"http://127.0.0.1:{port}/?scenario={drill.scenario_id}"
                                                 f"&level={drill.level}")
            assert http.get(moved.headers["location"]).status_code == 200  # the app (its sign-in, then the page)
            ask = http.get(unsubscribe)
            assert ask.status_code == 200 and "Stop reminder emails" in ask.text and 'method="post"' in ask.text
            assert reminder_choice(ctx.store, "ana")[0] is True  # a GET (a mail scanner, a preview) changes nothing
            done = http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})  # RFC 8058 one-click
            assert done.status_code == 200 and "no more drill reminder emails" in done.text
            changed = http.get(drill_link[:-3] + ("AAA" if not drill_link.endswith("AAA") else "BBB"))
            assert changed.status_code == 400 and "this link is not valid" in changed.text
        assert reminder_choice(ctx.store, "ana")[0] is False

        @dataclass
        class Req:
            username: str
            query_params: dict[str, str]

        # the page the link opens: the Practice page on the drill's scenario and level
        opened = practice_page.enter(None, Req("ana", {"scenario": drill.scenario_id, "level": drill.level}),
                                     "intermediate", None)
        assert opened[2]["value"] == drill.scenario_id and opened[-1]["value"] == drill.level
        assert f"**Level:** {drill.level}" in opened[3]
    finally:
        demo.close()
        ctx.close()


# --- done and unsubscribe ---------------------------------------------------------------------------------------

def test_a_drill_marked_done_is_not_emailed(context: AppContext, inbox: Inbox) -> None:
    first = context.certification.drills("ana")[0]
    done = context.certification.mark_drill_done("ana", first.id)
    assert done.status == DrillStatus.DONE and done.done_at is not None
    with pytest.raises(CertificationError, match="already done"):
        context.certification.mark_drill_done("ana", first.id)
    with pytest.raises(NotFoundError, match="you have no reinforcement drill"):
        context.certification.mark_drill_done("ben", first.id)  # someone else's
    service(context, inbox.port).send_due()
    assert inbox.to("ana@example.com") == [] and len(inbox.messages) == 2


def test_a_drill_practised_before_its_reminder_is_done_without_an_email(context: AppContext, inbox: Inbox) -> None:
    drill = context.certification.drills("ana")[0]
    sess = context.store.start_session(context.store.person("ana").id, drill.scenario_id, "expert", "offline")
    with context.store.session() as db:
        db.execute(update(PracticeSession).where(PracticeSession.id == sess.id)
                   .values(started_at=FIRST_DUE - timedelta(hours=2)))  # on the due date, before the run
    report = service(context, inbox.port).send_due()
    assert report.count("done") == 1 and report.count("sent") == 2 and inbox.to("ana@example.com") == []
    assert "practised 09 Mar 2026 06:00" in next(o.line() for o in report.outcomes if o.result == "done")
    shown = context.certification.drills("ana")[0]
    assert shown.status == DrillStatus.DONE and shown.done_at is not None


@pytest.mark.slow
def test_mark_done_and_reminders_on_the_progress_page(certified: AppContext) -> None:
    from roleplay.ui import progress_page
    from roleplay.ui.common import use_context

    @dataclass
    class Req:
        username: str

    use_context(certified)
    out = progress_page.enter(Req("ana"))[6:]
    slots = progress_page.QUESTION_SLOTS
    table, (pick, row, reminders) = out[5 + slots], out[9 + slots:12 + slots]
    assert [r[0] for r in table] == ["2026-03-09 · due", "2026-03-23 · due", "2026-04-13 · due"]  # all due by now
    assert row["visible"] is True and len(pick["choices"]) == 3
    assert reminders["value"] is True and "ana@example.com" in reminders["info"]
    drill_id = pick["choices"][0][1]
    with pytest.warns(UserWarning, match="ick the drill you have done first"):
        progress_page.mark_drill_done(None, Req("ana"))
    table, pick, row, _ = progress_page.mark_drill_done(drill_id, Req("ana"))
    assert table[0][0].startswith("2026-03-09 · done ") and len(pick["choices"]) == 2
    assert certified.certification.drills("ana")[0].status == DrillStatus.DONE
    progress_page.choose_reminders(False, Req("ana"))
    assert reminder_choice(certified.store, "ana")[0] is False
    assert progress_page.enter(Req("ana"))[6 + 11 + slots]["value"] is False


@pytest.mark.slow
def test_the_progress_page_dates_drills_by_the_services_utc_clock_and_refuses_typed_drills(
        context: AppContext) -> None:
    from roleplay.ui import progress_page
    from roleplay.ui.common import use_context

    @dataclass
    class Req:
        username: str

    on_the_eve = datetime(2026, 3, 9, 0, 30, tzinfo=timezone(timedelta(hours=14)))  # 8 March 10:30 UTC
    context.__dict__["certification"] = CertificationService(
        context.store, context.programme, context.catalog, context.reviews, data_dir=context.settings.data_dir,
        clock=lambda: on_the_eve)
    use_context(context)
    table, pick, _, _ = progress_page.drill_outputs("ana")
    assert [r[0] for r in table] == ["2026-03-09 · scheduled", "2026-03-23 · scheduled", "2026-04-13 · scheduled"]
    for typed in ("the first one", "1; drop table", "99999999999999999999999"):  # the picker takes typed text
        with pytest.warns(UserWarning, match="Pick a drill from the list"):
            same = progress_page.mark_drill_done(typed, Req("ana"))
        assert all(update == {"__type__": "update"} for update in same)  # nothing on the page changed
    assert not any(d.done for d in context.certification.drills("ana"))
    table, pick, _, _ = progress_page.mark_drill_done(str(pick["choices"][0][1]), Req("ana"))  # an id sent as text
    assert table[0][0].startswith("2026-03-09 · done ") and len(pick["choices"]) == 2


# --- command line, settings and the background sender -----------------------------------------------------------

@pytest.mark.slow
def test_cli_sends_due_reminders_and_sets_email_addresses(context: AppContext, inbox: Inbox,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    no_server = runner.invoke(cli, ["nudges", "send"])
    assert no_server.exit_code == 1 and "set ROLEPLAY_SMTP_HOST and ROLEPLAY_SMTP_FROM" in no_server.output
    monkeypatch.setenv("ROLEPLAY_PUBLIC_URL", PUBLIC)
    added = runner.invoke(cli, ["people", "add", "dan", "--role", "learner", "--email", "dan@example.com"])
    assert added.exit_code == 0 and "added dan (learner), email dan@example.com" in added.output
    assert reminder_choice(context.store, "dan") == (True, "dan@example.com")
    changed = runner.invoke(cli, ["people", "set", "cat", "--email", "cat@work.example"])
    assert changed.exit_code == 0 and "email of cat: cat@work.example" in changed.output
    bad = runner.invoke(cli, ["people", "set", "cat", "--email", "not an address"])
    assert bad.exit_code == 1 and bad.output.strip().splitlines() == [
        "error: 'not an address' is not an email address; type one like ana@example.com"]

    dry = runner.invoke(cli, ["nudges", "send", "--dry-run"])
    assert dry.exit_code == 0 and dry.output.count("would send") == 9 and inbox.messages == []
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(inbox.port), "SMTP_SECURITY": "none",
                        "SMTP_FROM": "Roleplay <drills@roleplay.test>"}.items():
        monkeypatch.setenv(f"ROLEPLAY_{name}", value)
    sent = runner.invoke(cli, ["nudges", "send"])
    assert sent.exit_code == 0, sent.output
    lines = sent.output.strip().splitlines()
    assert len(lines) == 10 and all(line.startswith("sent ") for line in lines[:9]) and lines[-1] == "9 sent"
    assert len(inbox.to("cat@work.example")) == 3
    assert runner.invoke(cli, ["nudges", "send"]).output.strip() == "0 sent"


def test_mail_settings_are_checked_with_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set ROLEPLAY_SMTP_FROM"):
        SmtpConfig.from_settings(load_settings(smtp_host="mail.example.com"))
    with pytest.raises(ConfigError, match="both ROLEPLAY_SMTP_USER and ROLEPLAY_SMTP_PASSWORD"):
        SmtpConfig.from_settings(load_settings(smtp_host="mail.example.com", smtp_from="r@example.com",
                                               smtp_user="r"))
    assert SmtpConfig.from_settings(load_settings(smtp_host="m", smtp_from="r@example.com")).port == 587
    assert SmtpConfig.from_settings(load_settings(smtp_host="m", smtp_from="r@example.com",
                                                  smtp_security="ssl")).port == 465
    assert SmtpConfig.from_settings(load_settings()) is None
    with pytest.raises(ConfigError, match="smtp_security|ROLEPLAY_SMTP_SECURITY"):
        load_settings(smtp_security="tls")
    with pytest.raises(RoleplayError, match="set ROLEPLAY_PUBLIC_URL"):
        AppContext(load_settings(smtp_host="m", smtp_from="r@example.com", data_dir=tmp_path)).start_nudges()


def test_the_mail_server_password_never_shows_and_still_signs_in() -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[tuple[bytes, bytes]] = []

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            logins.append((data.login, data.password))
        return AuthResult(success=logins[-1:] == [(b"drills", b"s3cret-pw")])

    controller = Controller(Inbox(), hostname="127.0.0.1", port=free_port(), authenticator=check,
                            auth_require_tls=False)
    controller.start()
    try:
        settings = load_settings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_security="none",
                                 smtp_from="r@roleplay.test", smtp_user="drills", smtp_password="s3cret-pw")
        smtp = SmtpConfig.from_settings(settings)
        assert smtp is not None
        for shown in (repr(settings), str(settings.model_dump()), repr(smtp), str(smtp), smtp.model_dump_json()):
            assert "s3cret-pw" not in shown
        smtp.connect().quit()  # signed in with the real password
        assert logins == [(b"drills", b"s3cret-pw")]
    finally:
        controller.stop()


@pytest.mark.slow
def test_the_app_sends_in_the_background_and_stops_when_closed(template: Path, isolated_settings: Path,
                                                               inbox: Inbox) -> None:
    isolated_settings.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, isolated_settings / "roleplay.db")
    ctx = AppContext(load_settings(public_url=PUBLIC, smtp_host="127.0.0.1", smtp_port=inbox.port,
                                   smtp_security="none", smtp_from="r@roleplay.test", nudge_interval=1))
    assert AppContext().start_nudges() is None  # no mail server configured: no thread
    scheduler = ctx.start_nudges()
    assert isinstance(scheduler, NudgeScheduler) and scheduler.running and ctx.start_nudges() is scheduler
    deadline = time.monotonic() + 10
    while len(inbox.messages) < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(inbox.messages) == 9
    ctx.close()
    assert not scheduler.running
    time.sleep(0.2)
    assert len(inbox.messages) == 9  # each due drill once, however many runs
