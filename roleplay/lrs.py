"""The xAPI outbox: approved results' statements kept in the database until the LRS holds them, across restarts.

An approval is committed first; then its statement is put in the `xapi_outbox` table (`Outbox.on_approved`, one of
the review service's `on_approved` listeners) and the background sender is woken (started by the first approval of
a process, or at start by a long-running one: `AppContext.start_lrs_sender`). Delivery happens outside any
review transaction, in batches, each request retried with `roleplay.retry`. Whatever is not delivered (the LRS down,
5xx, timeouts, refused credentials, a reply without the statement ids) stays queued with its attempt count and last
error, for the sender's next pass (with backoff) or the next `roleplay xapi send` (e.g. from cron). Every pass first
queues the approved results that have no row yet (an approval whose listener never ran because the process stopped
right after the commit, or approvals from before the LRS was configured), so nothing approved is left out.

Statement ids are deterministic (`statement_id(review_id)`), so sending twice is harmless: an LRS treats the same id
with the same statement as a no-op, and a 409 Conflict for one statement means it already holds it (delivered). A
statement the LRS refuses on its own (HTTP 400) is marked failed with the LRS's reason; `roleplay xapi send
--retry-failed` queues it again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from roleplay.config import Settings
from roleplay.errors import LRSError, RoleplayError
from roleplay.models import OutboxStatus, ReviewRow, ReviewStatus, XapiOutboxRow, utcnow
from roleplay.retry import RetryPolicy
from roleplay.review import ApprovedResult, ReviewView
from roleplay.store import Store
from roleplay.xapi import XAPI_2_0, LRSClient, LRSConfig, XapiConfig, xapi_statement

if TYPE_CHECKING:
    from roleplay.scenario import Scenario

log = logging.getLogger(__name__)

SEND_POLICY = RetryPolicy(max_retries=2)
"""Retries of one request within a pass; the sender's backoff between passes does the rest."""
BATCH_SIZE = 50
"""Statements per request."""
SWEEP_LIMIT = 500
"""Approved results without a row queued per pass."""
SENDER_FIRST = 1.0
"""Seconds after the sender starts before its first pass (a short command is over by then)."""
SENDER_IDLE = 60.0
"""Seconds between passes while delivery works (for rows other processes queued)."""
SENDER_BACKOFF = (5.0, 600.0)
"""Seconds before the first retry after a failed pass, and the longest wait; doubled per failed pass, with jitter."""
SENDER_STOP_WAIT = 5.0
"""Seconds closing waits for a pass in progress."""


@dataclass
class SendReport:
    """What one pass over the outbox did."""

    sent: int = 0
    """Statements delivered in this pass (including `held`)."""
    held: int = 0
    """Of `sent`, those the LRS already held (409 Conflict): sent earlier, e.g. by a pass that stopped half-way."""
    failed: int = 0
    """Statements the LRS refused on their own in this pass."""
    queued: int = 0
    """Statements still queued after the pass."""
    swept: int = 0
    """Approved results found without a row and queued by this pass."""
    error: str | None = None
    """Why the pass stopped early (the LRS as a whole failed), in one line; None when it went through."""
    stopped: bool = False
    """The pass was cut short by stopping (the sender closing) with statements still queued."""


@dataclass(frozen=True)
class OutboxState:
    """The outbox at a glance, for `roleplay xapi status`."""

    queued: int
    sent: int
    failed: int
    oldest_queued_at: datetime | None
    last_sent_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_error_attempts: int


def approved_result(view: ReviewView) -> ApprovedResult:
    """The approved result of an approved review (its grade with the facilitator's edits)."""
    return ApprovedResult(review_id=view.review_id, session_id=view.session_id, learner=view.learner,
                          scenario_id=view.scenario_id, level=view.level, grade=view.current,
                          approved_by=view.decided_by or "?", approved_at=view.decided_at or utcnow())


class Outbox:
    """The `xapi_outbox` table: queue, deliver, count.

    Args:
        store: The database.
        settings: ROLEPLAY_LRS_* (where to send; read when sending) and ROLEPLAY_XAPI_* (how statements name people).
        review_for: A review by id (for approved results that have no row yet).
        scenario_for: A scenario by id, or None (names and describes the activity).
        policy: Retries of one request; `SEND_POLICY` when None.
        timeout: Seconds per request.
        transport: An httpx transport (for tests or proxies).
    """

    def __init__(self, store: Store, settings: Settings, review_for: Callable[[int], ReviewView],
                 scenario_for: Callable[[str], Scenario | None] = lambda _id: None, *,
                 policy: RetryPolicy | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.store = store
        self.settings = settings
        self.review_for = review_for
        self.scenario_for = scenario_for
        self.xapi = XapiConfig.from_settings(settings)
        self.policy = policy
        self.timeout = timeout
        self.transport = transport
        self.sender: BackgroundSender | None = None
        self._sending = threading.Lock()
        self._starting = threading.Lock()

    # -- queueing ------------------------------------------------------------------------------------------
    def on_approved(self, view: ReviewView) -> None:
        """The review service's listener: queue the approved result's statement and wake the sender (started here
        on the first approval when nothing started it before, so a command that only reads reviews starts none)."""
        self.enqueue(view)
        self.start_sender().wake()

    def enqueue(self, view: ReviewView) -> bool:
        """Queue the statement of an approved review; False when it is already in the outbox (or not approved)."""
        if view.status != ReviewStatus.APPROVED:
            return False
        statement = xapi_statement(approved_result(view), self.scenario_for(view.scenario_id), config=self.xapi,
                                   version=XAPI_2_0)  # the fullest form; fitted to the LRS's version when sent
        values = {"review_id": view.review_id, "statement_id": statement["id"], "statement": statement,
                  "status": OutboxStatus.QUEUED.value, "attempts": 0, "created_at": utcnow()}
        with self.store.session() as db:
            # a sender's pass (or another process) may queue the same review at the same moment: one row wins, quietly
            insert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
            return bool(db.execute(insert(XapiOutboxRow).values(**values).on_conflict_do_nothing()).rowcount)

    def sweep(self, limit: int | None = None) -> int:
        """Queue approved results that have no row yet (oldest first, at most `limit`); how many were queued."""
        with self.store.session() as db:
            ids = db.scalars(select(ReviewRow.id).outerjoin(XapiOutboxRow, XapiOutboxRow.review_id == ReviewRow.id)
                             .where(ReviewRow.status == ReviewStatus.APPROVED, XapiOutboxRow.id.is_(None))
                             .order_by(ReviewRow.id).limit(limit or SWEEP_LIMIT)).all()
        queued = 0
        for review_id in ids:
            try:
                queued += self.enqueue(self.review_for(review_id))
            except RoleplayError as exc:
                log.warning("approved review %s could not be queued for the LRS: %s", review_id, exc)
        return queued

    def retry_failed(self) -> int:
        """Queue the statements the LRS refused again (after fixing what it said); how many."""
        with self.store.session() as db:
            return db.execute(update(XapiOutboxRow).where(XapiOutboxRow.status == OutboxStatus.FAILED.value)
                              .values(status=OutboxStatus.QUEUED.value)).rowcount

    # -- delivery ------------------------------------------------------------------------------------------
    def send(self, *, stop: threading.Event | None = None) -> SendReport:
        """One pass: queue what is missing, then deliver every queued statement, oldest first, in batches.

        A failure of the LRS as a whole ends the pass: the batch's rows keep their place with one more attempt and
        the error, and so does everything after them.

        Args:
            stop: Ends the pass between batches when set (the sender closing); `stopped` then says so when
                statements were left queued.

        Raises:
            LRSError: no LRS is configured (ROLEPLAY_LRS_URL).
        """
        lrs = LRSConfig.from_settings(self.settings)
        with self._sending:
            report = SendReport(swept=self.sweep())
            after = 0
            with LRSClient(lrs, timeout=self.timeout, policy=self.policy or SEND_POLICY,
                           transport=self.transport) as client:
                while batch := self._batch(after):
                    if stop is not None and stop.is_set():
                        report.stopped = True
                        break
                    after = batch[-1][0]
                    try:
                        delivery = client.deliver([statement for _, _, statement in batch])
                    except LRSError as exc:
                        report.error = str(exc)
                        self._attempted([row_id for row_id, _, _ in batch], report.error)
                        break
                    self._record(batch, delivery.stored, delivery.held, delivery.refused)
                    report.sent += len(delivery.stored) + len(delivery.held)
                    report.held += len(delivery.held)
                    report.failed += len(delivery.refused)
            report.queued = self._count(OutboxStatus.QUEUED)
        return report

    def _batch(self, after: int) -> list[tuple[int, str, dict[str, Any]]]:
        """The next queued rows after row `after`: (row id, statement id, statement)."""
        with self.store.session() as db:
            rows = db.execute(select(XapiOutboxRow.id, XapiOutboxRow.statement_id, XapiOutboxRow.statement)
                              .where(XapiOutboxRow.status == OutboxStatus.QUEUED.value, XapiOutboxRow.id > after)
                              .order_by(XapiOutboxRow.id).limit(BATCH_SIZE)).all()
        return [(r.id, r.statement_id, r.statement) for r in rows]

    def _attempted(self, row_ids: list[int], error: str) -> None:
        """One more attempt, and its error, on rows that stay queued."""
        with self.store.session() as db:
            db.execute(update(XapiOutboxRow).where(XapiOutboxRow.id.in_(row_ids))
                       .values(attempts=XapiOutboxRow.attempts + 1, last_error=error, last_attempt_at=utcnow()))

    def _record(self, batch: list[tuple[int, str, dict[str, Any]]], stored: list[str], held: list[str],
                refused: dict[str, str]) -> None:
        """Mark a delivered batch in one transaction: sent, failed (with the LRS's reason), or still queued."""
        now = utcnow()
        delivered = set(stored) | set(held)
        with self.store.session() as db:
            for row_id, sid, _ in batch:
                values: dict[str, Any] = {"attempts": XapiOutboxRow.attempts + 1, "last_attempt_at": now}
                if sid in delivered:
                    values.update(status=OutboxStatus.SENT.value, sent_at=now, last_error=None)
                elif sid in refused:
                    values.update(status=OutboxStatus.FAILED.value, last_error=refused[sid])
                else:
                    values.update(last_error="the LRS's reply did not mention this statement; it is sent again")
                db.execute(update(XapiOutboxRow).where(XapiOutboxRow.id == row_id).values(**values))

    # -- reading -------------------------------------------------------------------------------------------
    def _count(self, status: OutboxStatus) -> int:
        with self.store.session() as db:
            return int(db.scalar(select(func.count()).select_from(XapiOutboxRow)
                                 .where(XapiOutboxRow.status == status.value)) or 0)

    def state(self) -> OutboxState:
        """Counts by status, the oldest queued and last sent times, and the latest error of an undelivered row."""
        with self.store.session() as db:
            counts = dict(db.execute(select(XapiOutboxRow.status, func.count())
                                     .group_by(XapiOutboxRow.status)).all())
            oldest = db.scalar(select(func.min(XapiOutboxRow.created_at))
                               .where(XapiOutboxRow.status == OutboxStatus.QUEUED.value))
            last_sent = db.scalar(select(func.max(XapiOutboxRow.sent_at)))
            error = db.execute(select(XapiOutboxRow.last_error, XapiOutboxRow.last_attempt_at, XapiOutboxRow.attempts)
                               .where(XapiOutboxRow.status != OutboxStatus.SENT.value,
                                      XapiOutboxRow.last_error.is_not(None))
                               .order_by(XapiOutboxRow.last_attempt_at.desc(), XapiOutboxRow.id.desc())
                               .limit(1)).first()
        return OutboxState(queued=counts.get(OutboxStatus.QUEUED.value, 0), sent=counts.get(OutboxStatus.SENT.value, 0),
                           failed=counts.get(OutboxStatus.FAILED.value, 0), oldest_queued_at=oldest,
                           last_sent_at=last_sent, last_error=error[0] if error else None,
                           last_error_at=error[1] if error else None, last_error_attempts=error[2] if error else 0)

    # -- the background sender -----------------------------------------------------------------------------
    def start_sender(self) -> BackgroundSender:
        """Start the background sender (once); its first pass delivers what earlier runs left queued."""
        with self._starting:
            if self.sender is None:
                self.sender = BackgroundSender(self)
                self.sender.start()
            return self.sender

    def close(self) -> None:
        """Stop the background sender, if running (a pass in progress gets `SENDER_STOP_WAIT` seconds)."""
        with self._starting:
            sender, self.sender = self.sender, None
        if sender is not None:
            sender.stop()


class BackgroundSender:
    """A daemon thread that delivers the outbox: soon after an approval, then every `SENDER_IDLE` seconds; after a
    failed pass it waits `SENDER_BACKOFF` (doubling, with jitter), and approvals meanwhile wait for that retry.

    Stopping, it makes one last pass when an approval came after the last pass began, or when stopping cut a pass
    short with statements still queued (a command-line approval is delivered before the command ends), within the
    `SENDER_STOP_WAIT` that closing waits; what it cannot send stays queued.
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.failures = 0
        self._wake = threading.Event()
        self._pending = threading.Event()  # an approval since the last pass began, or a pass cut short by stopping
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roleplay-xapi-sender", daemon=True)

    def start(self) -> None:
        """Start the thread; its first pass delivers what earlier runs left queued."""
        self._thread.start()

    def wake(self) -> None:
        """Deliver now (unless backing off after a failure)."""
        self._pending.set()
        self._wake.set()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread, waiting for a pass in progress; whether it ended in time (else it ends with the process)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(SENDER_STOP_WAIT if timeout is None else timeout)
        if self._thread.is_alive():
            log.warning("the xAPI sender is still in a request; statements it was sending stay queued")
            return False
        return True

    def _run(self) -> None:
        delay = SENDER_FIRST
        while self._sleep(delay):
            delay = self._pass()
        if self._pending.is_set() and not self.failures:
            self._pass(final=True)

    def _sleep(self, delay: float) -> bool:
        """Wait `delay` seconds, or less when woken (not while backing off); False when stopping."""
        due = time.monotonic() + delay
        while not self._stopping.is_set():
            left = due - time.monotonic()
            if left <= 0:
                return True
            if self._wake.wait(left):
                self._wake.clear()
                if not self.failures:
                    return not self._stopping.is_set()
        return False

    def _pass(self, final: bool = False) -> float:
        """One pass (the last one is not cut short by stopping); the seconds until the next."""
        self._pending.clear()
        try:
            report = self.outbox.send(stop=None if final else self._stopping)
        except RoleplayError as exc:
            report = SendReport(error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the sender outlives any one pass
            log.exception("the xAPI sender's pass failed")
            report = SendReport(error=f"{type(exc).__name__} in the sender")
        if report.stopped:
            self._pending.set()  # stopping came before this pass got to what was queued: the last pass sends it
        if report.error is None:
            if self.failures or report.sent:
                log.info("xAPI: %d statement(s) delivered, %d queued, %d refused", report.sent, report.queued,
                         report.failed)
            self.failures = 0
            return SENDER_IDLE
        self.failures += 1
        first, longest = SENDER_BACKOFF
        delay = min(first * 2 ** (self.failures - 1), longest) * random.uniform(0.75, 1.0)
        then = "`roleplay xapi send` or the app sends them later" if final else f"next try in {delay:.0f}s"
        log.warning("xAPI: %d statement(s) stay queued (%s); %s", report.queued, report.error, then)
        return delay
