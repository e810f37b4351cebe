"""Reinforcement nudges: one email per due drill, with a signed link back to it and a one-click unsubscribe.

A drill falls due on its `due_on` date. `NudgeService.send_due` (run by `roleplay nudges send` from cron, or by the web
app's `NudgeScheduler` thread) emails each learner whose drill is due, who has an email address and has not
unsubscribed. Delivery is once per drill and nothing is lost:

- each drill is claimed in the database before its email goes out (`status='sending'`, `claimed_at`, `attempts + 1`,
  one conditional UPDATE: of two senders exactly one wins), and marked `sent` with `sent_at` once the mail server has
  accepted it;
- a failure (mail server down, a refused address, a dropped connection) puts the drill back to `scheduled` with the
  reason in `last_error`, to be tried on the next run; a dropped connection ends the run, leaving the rest untouched;
- an email that cannot be made (an address the mail server cannot take, such as one with non-ASCII characters) fails
  alone: its drill is never claimed, the reason goes in `last_error`, and the run carries on with the next drill;
- a claim's time is taken when the drill is claimed, not when the run started, so a drill claimed late in a long run
  is not taken for a stale claim by a run started meanwhile;
- a claim older than `CLAIM_TIMEOUT` (a sender killed between handing the email over and recording it) is tried
  again with the same Message-ID (`<drill-ID.DUE@domain>`), so a rare resend is recognisable as the same email.

A drill practised since it fell due is marked done instead of emailed (see `roleplay.drills`). Links are signed
(`roleplay.mail.LinkSigner`, a key in the data directory); `routes()` serves them under `/nudges/`.
"""

from __future__ import annotations

import email.errors
import logging
import smtplib
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select, update

from roleplay.catalog import Catalog
from roleplay.config import Settings
from roleplay.drills import due_date, practised_at
from roleplay.errors import ConfigError, NotFoundError, RoleplayError
from roleplay.mail import ERROR_MAX, LinkSigner, SmtpConfig, public_base, smtp_problem
from roleplay.models import DrillStatus, Person, ReinforcementDrill, utcnow
from roleplay.programme import Programme
from roleplay.store import Store, person_in

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from roleplay.context import AppContext

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=15)  # longer than any one email takes; an older claim's sender is gone
# Raised while sending (not connecting), these mean this email failed and the next may go. SMTPNotSupportedError
# while sending: the server cannot take this email (e.g. an address that needs SMTPUTF8, which it does not offer).
_ONE_EMAIL = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPNotSupportedError)


def _one_line(text: str) -> str:
    """`text` with every run of whitespace (line breaks included) made one space: a header value must be one line."""
    return " ".join(str(text).split())


def _unclaimed(stale: datetime) -> Any:
    """A drill no run holds: scheduled, or claimed before `stale` by a sender that never finished."""
    return or_(ReinforcementDrill.status == DrillStatus.SCHEDULED,
               (ReinforcementDrill.status == DrillStatus.SENDING) & (ReinforcementDrill.claimed_at < stale))


# --- what a run did -----------------------------------------------------------------------------------------

class Outcome(BaseModel):
    """What happened to one due drill in a run."""

    model_config = ConfigDict(extra="forbid")
    drill_id: int = Field(description="The drill.")
    username: str = Field(description="Its learner.")
    to: str = Field(description="The address emailed ('' when none).")
    subject: str = Field(description="The email's subject ('' when no email was made).")
    result: str = Field(description="sent, would send, failed, done (practised since it fell due) or would mark done.")
    detail: str = Field(default="", description="Why it failed, or when it was practised.")

    def line(self) -> str:
        """One line for the command's output."""
        who = f"{self.username} <{self.to}>" if self.to else self.username
        what = f": {self.subject}" if self.subject else ""
        return f"{self.result:<15} drill {self.drill_id} · {who}{what}" + (f" ({self.detail})" if self.detail else "")


class SendReport(BaseModel):
    """What one run of `send_due` did."""

    model_config = ConfigDict(extra="forbid")
    dry_run: bool = Field(description="Nothing was sent or recorded.")
    outcomes: list[Outcome] = Field(default_factory=list, description="One per due drill acted on.")
    no_email: list[str] = Field(default_factory=list, description="Learners with due drills and no email address.")
    unsubscribed: int = Field(default=0, description="Due drills of learners who turned reminders off.")
    stopped: str = Field(default="", description="Why the run stopped early ('' when it did not).")

    def count(self, result: str) -> int:
        """How many outcomes had `result`."""
        return sum(o.result == result for o in self.outcomes)

    def summary(self) -> str:
        """One line: what was sent, what failed and will be retried, what is waiting for an address."""
        parts = ([f"{self.count('would send')} would be sent (dry run: nothing sent or recorded)"] if self.dry_run
                 else [f"{self.count('sent')} sent"])
        failed = self.count("failed")
        if failed:
            parts.append(f"{failed} could not be made" if self.dry_run
                         else f"{failed} failed (tried again on the next run)")
        done = self.count("done") + self.count("would mark done")
        if done:
            parts.append(f"{done} already practised (done, no email)")
        if self.no_email:
            names = ", ".join(sorted(set(self.no_email)))
            parts.append(f"{len(self.no_email)} due drill(s) without an email address ({names}; add one with "
                         "`roleplay people set NAME --email ADDRESS`)")
        if self.unsubscribed:
            parts.append(f"{self.unsubscribed} not emailed (learner unsubscribed)")
        return "; ".join(parts) + (f"; stopped early: {self.stopped}" if self.stopped else "")


# --- the service --------------------------------------------------------------------------------------------

class NudgeService:
    """Reminder emails of due drills and the signed links in them.

    Args:
        store: The database.
        programme: The programme (drill purposes, sprint titles).
        catalog: Scenarios (titles).
        signer: Signs the links.
        public_url: The app's address (links start with it); needed only to make emails.
        smtp: The mail server; None when none is configured (a dry run still works).
        clock: The current UTC time.
        claim_timeout: How old a claim must be before another run tries that drill again.
    """

    def __init__(self, store: Store, programme: Programme, catalog: Catalog, signer: LinkSigner, *,
                 public_url: str | None = None, smtp: SmtpConfig | None = None,
                 clock: Callable[[], datetime] = utcnow, claim_timeout: timedelta = CLAIM_TIMEOUT) -> None:
        self.store, self.programme, self.catalog, self.signer = store, programme, catalog, signer
        self.public_url = public_url.rstrip("/") if public_url else None
        self.smtp, self.clock, self.claim_timeout = smtp, clock, claim_timeout

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, programme: Programme, catalog: Catalog) -> NudgeService:
        """The service as configured (raises ConfigError for a bad mail-server setting)."""
        url = public_base(settings) if settings.public_url else None
        return cls(store, programme, catalog, LinkSigner.for_data_dir(settings.data_dir), public_url=url,
                   smtp=SmtpConfig.from_settings(settings))

    # links ----------------------------------------------------------------------------------------------------
    def _base(self) -> str:
        if not self.public_url:
            raise ConfigError("set ROLEPLAY_PUBLIC_URL to the address learners open the app at (e.g. "
                              "https://roleplay.example.com): reminder emails link back to it")
        return self.public_url

    def drill_url(self, drill_id: int, person_id: int) -> str:
        """The signed link to a drill."""
        return f"{self._base()}/nudges/drill/{self.signer.sign('drill', drill_id, person_id)}"

    def unsubscribe_url(self, person: Person) -> str:
        """The signed one-click unsubscribe link of a person."""
        return f"{self._base()}/nudges/unsubscribe/{self.signer.sign('unsubscribe', person.id, person.username)}"

    def drill_target(self, token: str) -> str:
        """Where a drill link leads: the app's Practice page on the drill's scenario and level.

        Raises:
            LinkError: the link is not valid.
            NotFoundError: the drill or its learner no longer exists.
        """
        drill_id, person_id = self.signer.verify("drill", token)[:2]
        with self.store.session() as db:
            row = db.get(ReinforcementDrill, int(drill_id))
        if row is None or str(row.person_id) != person_id:
            raise NotFoundError("this drill no longer exists; sign in to roleplay to see your drills on the "
                                "Progress page")
        query = urlencode({"scenario": row.scenario_id, "level": row.level})
        return f"{self.public_url or ''}/?{query}"

    def _link_person(self, db: Any, token: str) -> Person:
        person_id, username = self.signer.verify("unsubscribe", token)[:2]
        person = db.get(Person, int(person_id))
        if person is None or person.username != username:
            raise NotFoundError("this link is for an account that no longer exists; nothing was changed")
        return person

    def unsubscribe_name(self, token: str) -> str:
        """The display name an unsubscribe link is for (raises LinkError or NotFoundError)."""
        with self.store.session() as db:
            return self._link_person(db, token).display_name

    def unsubscribe(self, token: str) -> str:
        """Turn off reminder emails for the person of an unsubscribe link; returns their display name.

        Raises:
            LinkError: the link is not valid.
            NotFoundError: their account no longer exists.
        """
        with self.store.session() as db:
            person = self._link_person(db, token)
            if person.unsubscribed_at is None:
                person.unsubscribed_at = self.clock()
                log.info("nudges: %s unsubscribed by email link", person.username)
            return person.display_name

    # composing --------------------------------------------------------------------------------------------------
    def message_id(self, row: ReinforcementDrill) -> str:
        """The drill's Message-ID: the same on every try, so a resend is recognisable."""
        domain = parseaddr(self.smtp.sender)[1].rpartition("@")[2] if self.smtp else ""
        return f"<drill-{row.id}.{row.due_on:%Y%m%d}@{domain or urlsplit(self._base()).hostname or 'roleplay'}>"

    def compose(self, row: ReinforcementDrill, person: Person) -> EmailMessage:
        """The reminder email of a due drill: plain text and HTML, the link back and the unsubscribe headers."""
        scn = self.catalog.scenarios.get(row.scenario_id)
        title = _one_line(scn.title if scn else row.scenario_id)
        name = _one_line(person.display_name)
        purpose = next((r.purpose for r in self.programme.reinforcement if r.after_days == row.after_days), "")
        sprint = self.programme.sprint_title(row.sprint)
        certified = row.due_on - timedelta(days=row.after_days)
        link, unsubscribe = self.drill_url(row.id, person.id), self.unsubscribe_url(person)
        intro = (f"{row.after_days} days ago, on {certified:%d %B %Y}, you were certified in {sprint}. A short drill "
                 "now keeps the skill fresh:")
        why = f"Why now: {purpose}" if purpose else ""
        msg = EmailMessage()
        msg["Subject"] = f"Time to practise: {title} ({_one_line(row.level)})"
        msg["From"] = (_one_line(self.smtp.sender) if self.smtp
                       else f"roleplay <roleplay@{urlsplit(self._base()).hostname}>")
        msg["To"] = formataddr((name, _one_line(person.email or "")))
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = self.message_id(row)
        msg["List-Unsubscribe"] = f"<{unsubscribe}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058 one-click
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(
            f"Hi {name},\n\n{intro}\n\n  {title}, at {row.level} level\n  {why}\n\n"
            f"Start it here (sign in if asked):\n{link}\n\nOnce you have practised it, it counts as done; you can also "
            f"mark it done on your Progress page.\n\n--\nYou get this reminder because a facilitator signed off your "
            f"certification. To stop these emails: {unsubscribe}\n")
        msg.add_alternative(
            f'<!doctype html><html><body style="font-family:sans-serif;line-height:1.5;color:#222">'
            f"<p>Hi {escape(name)},</p><p>{escape(intro)}</p>"
            f"<p><b>{escape(title)}</b>, at {escape(row.level)} level<br>{escape(why)}</p>"
            f'<p><a href="{escape(link)}" style="background:#4f46e5;color:#fff;padding:8px 16px;border-radius:6px;'
            f'text-decoration:none">Start the drill</a></p><p>Once you have practised it, it counts as done; you can '
            f"also mark it done on your Progress page.</p>"
            f'<p style="font-size:12px;color:#666">You get this reminder because a facilitator signed off your '
            f'certification. <a href="{escape(unsubscribe)}">Unsubscribe</a> from these emails.</p></body></html>',
            subtype="html")
        return msg

    # sending ----------------------------------------------------------------------------------------------------
    def _due(self, now: datetime) -> list[tuple[ReinforcementDrill, Person]]:
        """The drills due by `now` that no run holds, with their learners, oldest first."""
        with self.store.session() as db:
            found = db.execute(
                select(ReinforcementDrill, Person).join(Person, Person.id == ReinforcementDrill.person_id)
                .where(ReinforcementDrill.due_on <= due_date(now), _unclaimed(now - self.claim_timeout))
                .order_by(ReinforcementDrill.due_on, ReinforcementDrill.id))
            return [(drill, person) for drill, person in found]

    def _claim(self, row: ReinforcementDrill) -> int | None:
        """Take a drill for this run (one conditional UPDATE); its attempt number, or None if another run has it.

        The claim is timed now, not at the start of the run: a late claim in a long run must not look stale already.
        """
        now = self.clock()
        with self.store.session() as db:
            done = db.execute(update(ReinforcementDrill).where(
                ReinforcementDrill.id == row.id, _unclaimed(now - self.claim_timeout))
                .values(status=DrillStatus.SENDING, claimed_at=now, attempts=ReinforcementDrill.attempts + 1))
            if done.rowcount != 1:
                return None
            return db.scalar(select(ReinforcementDrill.attempts).where(ReinforcementDrill.id == row.id))

    def _finish(self, drill_id: int, attempt: int, **values: Any) -> None:
        """Record the end of this run's attempt (unless the drill was marked done meanwhile)."""
        with self.store.session() as db:
            db.execute(update(ReinforcementDrill).where(
                ReinforcementDrill.id == drill_id, ReinforcementDrill.status == DrillStatus.SENDING,
                ReinforcementDrill.attempts == attempt).values(**values))

    def _note_unsent(self, drill_ids: list[int], problem: str) -> None:
        """Record why drills are still unsent (they stay due): `problem`, one line."""
        with self.store.session() as db:
            db.execute(update(ReinforcementDrill).where(ReinforcementDrill.id.in_(drill_ids),
                                                        ReinforcementDrill.status == DrillStatus.SCHEDULED)
                       .values(last_error=problem[:ERROR_MAX]))

    def _email(self, row: ReinforcementDrill, person: Person) -> tuple[EmailMessage | None, str]:
        """The reminder email of a drill, or None and one line on why it cannot be made."""
        try:
            return self.compose(row, person), ""
        except (ValueError, email.errors.MessageError) as exc:  # (UnicodeEncodeError is a ValueError)
            fix = f"change it with `roleplay people set {person.username} --email ADDRESS`"
            if isinstance(exc, UnicodeError):
                problem = f"the address {person.email} has characters outside plain ASCII; {fix}"
            else:
                problem = f"the email could not be made ({_one_line(str(exc))}); check the learner's name and address"
            return None, problem[:ERROR_MAX]

    def _settle_practised(self, row: ReinforcementDrill, dry_run: bool) -> datetime | None:
        """Mark a drill practised since it fell due done (no email needed); returns when it was practised."""
        with self.store.session() as db:
            when = practised_at(db, row)
            if when is not None and not dry_run:
                db.execute(update(ReinforcementDrill).where(
                    ReinforcementDrill.id == row.id, ReinforcementDrill.status.in_(
                        [DrillStatus.SCHEDULED, DrillStatus.SENDING])).values(status=DrillStatus.DONE, done_at=when))
        return when

    def send_due(self, dry_run: bool = False) -> SendReport:
        """Email every due drill once (see the module's notes on claims and retries).

        Args:
            dry_run: Compose the emails and report them; send and record nothing (no mail server needed).

        Raises:
            ConfigError: no mail server (unless `dry_run`), or no ROLEPLAY_PUBLIC_URL for the links.
        """
        if self.smtp is None and not dry_run:
            raise ConfigError("no mail server is configured: set ROLEPLAY_SMTP_HOST and ROLEPLAY_SMTP_FROM; "
                              "`roleplay nudges send --dry-run` shows what would be sent")
        self._base()
        report = SendReport(dry_run=dry_run)
        conn: smtplib.SMTP | None = None
        due = self._due(self.clock())
        try:
            for i, (row, person) in enumerate(due):
                if person.unsubscribed_at is not None:
                    report.unsubscribed += 1
                    continue
                if not person.email:
                    report.no_email.append(person.username)
                    continue
                when = self._settle_practised(row, dry_run)
                if when is not None:
                    report.outcomes.append(Outcome(drill_id=row.id, username=person.username, to=person.email,
                                                   subject="", result="would mark done" if dry_run else "done",
                                                   detail=f"practised {when:%d %b %Y %H:%M}"))
                    continue
                msg, problem = self._email(row, person)
                if msg is None:  # this one email fails; the others still go
                    report.outcomes.append(Outcome(drill_id=row.id, username=person.username, to=person.email,
                                                   subject="", result="failed", detail=problem))
                    log.warning("nudges: drill %s to %s not sent: %s", row.id, person.username, problem)
                    if not dry_run:
                        self._note_unsent([row.id], problem)
                    continue
                if dry_run:
                    report.outcomes.append(Outcome(drill_id=row.id, username=person.username, to=person.email,
                                                   subject=str(msg["Subject"]), result="would send"))
                    continue
                conn, stop = self._send_one(conn, row, person, msg, report)
                if stop:
                    report.stopped = stop
                    self._note_unsent([r.id for r, p in due[i + 1:] if p.email and p.unsubscribed_at is None],
                                      f"not tried: {stop}")
                    break
        finally:
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        log.info("nudges: %s", report.summary())
        return report

    def _send_one(self, conn: smtplib.SMTP | None, row: ReinforcementDrill, person: Person, msg: EmailMessage,
                  report: SendReport) -> tuple[smtplib.SMTP | None, str]:
        """Claim, send and record one drill; returns the connection and why the run must stop ('' to go on)."""
        attempt = self._claim(row)
        if attempt is None:
            return conn, ""  # another run took it a moment ago
        assert self.smtp is not None
        connected = conn is not None
        try:
            conn = conn or self.smtp.connect()
            connected = True
            conn.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            problem = smtp_problem(exc, self.smtp, person.email or "", sending=connected)
            self._finish(row.id, attempt, status=DrillStatus.SCHEDULED, claimed_at=None, last_error=problem)
            report.outcomes.append(Outcome(drill_id=row.id, username=person.username, to=person.email or "",
                                           subject=str(msg["Subject"]), result="failed", detail=problem))
            log.warning("nudges: drill %s to %s not sent: %s", row.id, person.username, problem)
            if connected and isinstance(exc, _ONE_EMAIL) and getattr(exc, "smtp_code", None) != 421:  # 421: hung up
                return conn, ""
            if conn is not None:
                conn.close()
            return None, problem
        self._finish(row.id, attempt, status=DrillStatus.SENT, sent_at=self.clock(), last_error=None)
        report.outcomes.append(Outcome(drill_id=row.id, username=person.username, to=person.email or "",
                                       subject=str(msg["Subject"]), result="sent"))
        return conn, ""


# --- the learner's choice -----------------------------------------------------------------------------------

def reminder_choice(store: Store, username: str) -> tuple[bool, str | None]:
    """Whether the learner gets drill reminder emails (has not unsubscribed), and the address they go to."""
    with store.session() as db:
        person = person_in(db, username)
        return person.unsubscribed_at is None, person.email


def set_reminders(store: Store, username: str, on: bool, clock: Callable[[], datetime] = utcnow) -> None:
    """Turn the learner's drill reminder emails on or off."""
    with store.session() as db:
        person = person_in(db, username)
        person.unsubscribed_at = None if on else (person.unsubscribed_at or clock())
    log.info("nudges: %s turned reminder emails %s", username, "on" if on else "off")


# --- the web app's background sender ------------------------------------------------------------------------

class NudgeScheduler:
    """A daemon thread running `send` now and then every `interval` seconds, until `close()`."""

    def __init__(self, send: Callable[[], Any], interval: float) -> None:
        self._send, self.interval = send, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="roleplay-nudges", daemon=True)

    def start(self) -> NudgeScheduler:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._send()
            except RoleplayError as exc:
                log.warning("nudges: not sent this time: %s", exc)
            except Exception:  # noqa: BLE001 - the thread must outlive one bad run; the next run tries again
                log.exception("nudges: unexpected error; trying again in %.0f s", self.interval)
            self._stop.wait(self.interval)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the email in hand, if any) and wait for it."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


# --- routes -------------------------------------------------------------------------------------------------

def _page(title: str, body: str, status: int = 200) -> Response:
    from starlette.responses import HTMLResponse

    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width"><title>{escape(title)} · roleplay</title></head>'
        f'<body style="font-family:sans-serif;max-width:36rem;margin:3rem auto;line-height:1.5;padding:0 1rem">'
        f"<h1 style=\"font-size:1.4rem\">{escape(title)}</h1>{body}</body></html>", status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _refusal(exc: RoleplayError) -> Response:
    status = 404 if isinstance(exc, NotFoundError) else 400
    return _page("Link not valid" if status == 400 else "Not found", f"<p id=\"nudge-problem\">{escape(str(exc))}</p>",
                 status)


def routes(context: AppContext) -> list[BaseRoute]:
    """The routes of emailed links: `/nudges/drill/{token}` (into the app's Practice page) and
    `/nudges/unsubscribe/{token}` (GET asks, POST unsubscribes: RFC 8058 one-click)."""
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    def drill(request: Request) -> Response:
        try:
            return RedirectResponse(context.nudges.drill_target(request.path_params["token"]), status_code=303)
        except RoleplayError as exc:
            return _refusal(exc)

    def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            if request.method == "POST":
                name = context.nudges.unsubscribe(token)
                return _page("Unsubscribed", f'<p id="nudge-done">{escape(name)}, you will get no more drill reminder '
                             "emails. To have them again, tick “Email me when a drill is due” on your Progress page."
                             "</p>")
            name = context.nudges.unsubscribe_name(token)
        except RoleplayError as exc:
            return _refusal(exc)
        return _page("Stop drill reminders?", f"<p>Stop the reinforcement drill reminder emails for {escape(name)}?</p>"
                     '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
                     '<button type="submit" id="nudge-unsubscribe">Stop reminder emails</button></form>')

    return [Route("/nudges/drill/{token}", drill, methods=["GET"]),
            Route("/nudges/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"])]
