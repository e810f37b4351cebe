"""xAPI statements for 2.0 and 1.0.3 LRSs, and the outbox that delivers them across outages and restarts.

Every test talks to a real LRS on 127.0.0.1 (`lrs_server.LRSServer`), which validates statements for the version it
speaks, stores them and can fail, answer garbage, or stop and start again on the same port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from content import catalog
from lrs_server import LRSServer, validate
from sqlalchemy import update

import roleplay.lrs as lrs_module
from roleplay.config import load_settings
from roleplay.context import AppContext
from roleplay.errors import ConfigError
from roleplay.grader import CriterionGrade, finish_grade
from roleplay.lrs import Outbox, approved_result
from roleplay.models import OutboxStatus, XapiOutboxRow
from roleplay.retry import RetryPolicy
from roleplay.review import ReviewService, ReviewView
from roleplay.store import Store
from roleplay.xapi import LRSConfig, XapiConfig, for_version, send_to_lrs, statement_id, xapi_statement


@pytest.fixture(autouse=True)
def quick_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries and the sender's waits in milliseconds instead of seconds."""
    monkeypatch.setattr(lrs_module, "SEND_POLICY", RetryPolicy(max_retries=1, backoff_base=0))
    monkeypatch.setattr(lrs_module, "SENDER_FIRST", 0.02)
    monkeypatch.setattr(lrs_module, "SENDER_IDLE", 0.2)
    monkeypatch.setattr(lrs_module, "SENDER_BACKOFF", (0.05, 0.2))


@pytest.fixture()
def lrs() -> Iterator[LRSServer]:
    with LRSServer("2.0.0") as server:
        yield server


@pytest.fixture()
def store(db_url: str) -> Iterator[Store]:
    """A fresh database, on SQLite and (when a server is reachable) PostgreSQL."""
    s = Store(db_url)
    yield s
    s.close()


def outbox_on(store: Store) -> Outbox:
    """The outbox as the app context builds it, with the settings of the moment."""
    return Outbox(store, load_settings(), ReviewService(store, catalog().rubric).get, catalog().scenarios.get)


def configure(monkeypatch: pytest.MonkeyPatch, server: LRSServer, version: str | None = None,
              secret: str = "secret") -> None:
    monkeypatch.setenv("ROLEPLAY_LRS_URL", server.url)
    monkeypatch.setenv("ROLEPLAY_LRS_KEY", "key")
    monkeypatch.setenv("ROLEPLAY_LRS_SECRET", secret)
    monkeypatch.setenv("ROLEPLAY_LRS_VERSION", version or server.version)


def graded(store: Store, level: int = 3) -> int:
    """A stored grade at `level` on every criterion, waiting for review; its review id."""
    scenario = catalog().scenario("missed-deadlines")
    rubric = catalog().rubric_for(scenario)
    learner = store.ensure_person("ana", "learner", "Ana Lima")
    store.ensure_person("fay", "facilitator")
    session = store.start_session(learner.id, scenario.id, "intermediate", "offline")
    store.add_turn(session.id, "learner", "What has been going on for you?")
    grade = finish_grade(rubric, "offline", [
        CriterionGrade(criterion_id=c.id, level=level, checks=[], evidence=[], rationale=f"Level {level}.",
                       better_alternative="Try an open question.") for c in rubric.criteria])
    store.add_grade(session.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
    view = ReviewService(store, catalog().rubric).for_session(session.id)
    assert view is not None
    return view.review_id


def approve_quietly(store: Store, level: int = 3) -> ReviewView:
    """Approve a review with no listener (as if the process stopped right after the commit)."""
    return ReviewService(store, catalog().rubric).approve(graded(store, level), "fay")


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
    return result


def fetched(server: LRSServer, sid: str) -> dict[str, Any]:
    """The statement as the LRS returns it to a consumer (GET ?statementId=)."""
    reply = httpx.get(f"{server.url}/statements", params={"statementId": sid}, auth=("key", "secret"),
                      headers={"X-Experience-API-Version": server.version})
    assert reply.status_code == 200, reply.text
    return reply.json()


# --- statements for each version -----------------------------------------------------------------------------

def test_statements_carry_what_each_version_accepts(store: Store) -> None:
    view = approve_quietly(store)
    result, scenario = approved_result(view), catalog().scenario("missed-deadlines")
    two = xapi_statement(result, scenario)
    old = xapi_statement(result, scenario, version="1.0.3")
    assert validate(two, "2.0.0") == [] and validate(old, "1.0.3") == []
    reviewer = {"objectType": "contextAgent", "agent": {"objectType": "Agent", "mbox": "mailto:fay@roleplay.example"},
                "relevantTypes": ["https://roleplay.example/xapi/roles/reviewer"]}
    assert two["context"]["contextAgents"] == [reviewer]
    assert "contextAgents" not in old["context"] and old["context"]["instructor"] == reviewer["agent"]
    assert two["timestamp"].endswith("Z") and two["timestamp"] == old["timestamp"]  # RFC 3339 UTC: valid in both
    assert "version" not in two and "version" not in old  # left to the LRS
    assert two["id"] == old["id"] == statement_id(view.review_id)
    assert for_version(two, "1.0.3") == old and for_version({**two, "version": "2.0.0"}, "2.0.0") == two
    # the test LRS holds each version to its own rules, both ways
    assert "'contextAgents' is not a context property in xAPI 1.0.3" in validate(two, "1.0.3")
    assert any("RFC 3339" in p for p in validate({**old, "timestamp": "2026-03-02T09:30:00"}, "2.0.0"))
    assert validate({**old, "timestamp": "2026-03-02T09:30:00"}, "1.0.3") == []
    assert any("version '2.0.0'" in p for p in validate({**old, "version": "2.0.0"}, "1.0.3"))
    # learners keyed by account when a home page is set
    account = xapi_statement(result, config=XapiConfig(account_home_page="https://lms.example.org"))
    assert account["actor"] == {"objectType": "Agent",
                                "account": {"homePage": "https://lms.example.org", "name": "ana"}}
    assert validate(account, "2.0.0") == [] and validate(for_version(account, "1.0.3"), "1.0.3") == []


def test_the_lrs_version_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().lrs_version == "2.0.0"
    monkeypatch.setenv("ROLEPLAY_LRS_VERSION", "1.0")
    with pytest.raises(ConfigError, match="ROLEPLAY_LRS_VERSION='1.0'") as err:
        load_settings()
    assert len(str(err.value).splitlines()) == 1


# --- approval to LRS -------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("version", ["2.0.0", "1.0.3"])
def test_an_approval_reaches_the_lrs_in_the_version_it_speaks(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with LRSServer(version) as server:
        configure(monkeypatch, server)
        ctx = AppContext()
        view = ctx.reviews.approve(graded(ctx.store), "fay")
        sid = statement_id(view.review_id, ctx.xapi)
        wait_for(lambda: sid in server.statements)
        (post,) = server.posts()
        assert post["headers"]["X-Experience-API-Version"] == version
        stored = fetched(server, sid)
        assert stored["version"] == ("2.0.0" if version == "2.0.0" else "1.0.0")
        assert ("contextAgents" in stored["context"]) == (version == "2.0.0")
        assert stored["result"]["score"]["raw"] == view.current.overall
        state = wait_for(lambda: (s := ctx.outbox.state()).sent == 1 and s)
        assert (state.queued, state.failed, state.last_error) == (0, 0, None)
        sender = ctx.outbox.sender
        assert sender is not None and sender.alive
        ctx.close()
        assert not sender.alive  # stopped cleanly, within the wait closing gives it


@pytest.mark.slow
def test_nothing_is_lost_while_the_lrs_is_down_even_across_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    server = LRSServer("2.0.0").start()
    server.stop()  # its port is known and refuses connections
    configure(monkeypatch, server)
    first = AppContext()
    ids = [first.reviews.approve(graded(first.store, level), "fay").review_id for level in (2, 3)]
    state = wait_for(lambda: (s := first.outbox.state()).last_error and s.queued == 2 and s)
    assert "cannot connect" in state.last_error and "ROLEPLAY_LRS_URL" in state.last_error
    assert state.sent == 0 and state.last_error_attempts >= 1
    first.close()  # the app stops while the LRS is still down

    server.start()
    try:
        second = AppContext()
        second.reviews  # noqa: B018 - the app's services start
        assert second.start_lrs_sender() is not None  # as the web app does at start: no approval needed
        wait_for(lambda: all(statement_id(i) in server.statements for i in ids))
        state = wait_for(lambda: (s := second.outbox.state()).sent == 2 and s)
        assert state.queued == 0 and state.failed == 0
        second.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_reading_reviews_starts_no_sender_and_the_first_approval_does(lrs: LRSServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, lrs)
    ctx = AppContext()
    try:
        review_id = graded(ctx.store)
        assert ctx.reviews.page(None).total == 1 and ctx.reviews.count() == 1  # reading: no thread, nothing to wait for
        assert ctx.outbox.sender is None and not sender_threads()
        view = ctx.reviews.approve(review_id, "fay")
        sender = ctx.outbox.sender
        assert sender is not None and sender.alive
        wait_for(lambda: statement_id(view.review_id) in lrs.statements)
    finally:
        ctx.close()
    assert not sender.alive


def sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "roleplay-xapi-sender" and t.is_alive()]


@pytest.fixture()
def hanging_lrs() -> Iterator[str]:
    """The address of an LRS that takes connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/xapi"


@pytest.mark.slow
@pytest.mark.parametrize("command", [["review", "list", "--status", "all"], ["export", "xapi", "--learner", "ana"]])
def test_a_command_that_only_reads_reviews_never_waits_for_the_lrs(command: list[str], hanging_lrs: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.cli import main

    monkeypatch.setattr(lrs_module, "SENDER_FIRST", 0.0)  # a sender, if one started, would be in a request at once
    monkeypatch.setenv("ROLEPLAY_LRS_URL", hanging_lrs)
    store = Store(load_settings().database_url)
    approve_quietly(store)  # approved, not yet in the outbox: a pass would try to send it
    store.close()
    started = time.monotonic()
    out = CliRunner().invoke(main, command)
    assert out.exit_code == 0, out.output
    assert time.monotonic() - started < lrs_module.SENDER_STOP_WAIT  # closing waited for no request
    assert not sender_threads()


def test_closing_while_a_pass_is_still_sweeping_still_delivers_the_approval(
        lrs: LRSServer, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping lands between the pass's start and its first batch: the pass sends nothing, so the last pass must."""
    configure(monkeypatch, lrs)
    outbox = outbox_on(store)
    view = approve_quietly(store)
    sweeping, go_on = threading.Event(), threading.Event()
    real_sweep = outbox.sweep

    def slow_sweep(limit: int | None = None) -> int:
        if not sweeping.is_set():  # the first pass only
            sweeping.set()
            go_on.wait(10)
        return real_sweep(limit)

    monkeypatch.setattr(outbox, "sweep", slow_sweep)
    outbox.on_approved(view)  # queued; the sender starts and its pass begins
    sender = outbox.sender
    assert sender is not None and sweeping.wait(10)
    closing = threading.Thread(target=outbox.close)
    closing.start()  # as a command ends: the sender is told to stop while its pass is still sweeping
    wait_for(lambda: sender._stopping.is_set())
    go_on.set()
    closing.join(10)
    assert not sender.alive
    assert list(lrs.statements) == [statement_id(view.review_id)]  # delivered before closing returned
    state = outbox.state()
    assert (state.queued, state.sent) == (0, 1)


# --- delivery, one pass at a time --------------------------------------------------------------------------

def test_server_errors_are_retried_and_what_is_not_delivered_stays_queued(
        lrs: LRSServer, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, lrs)
    outbox = outbox_on(store)
    view = approve_quietly(store)  # its listener never ran: the pass finds it anyway
    lrs.fail_next(2, 503)
    report = outbox.send()
    assert report.swept == 1 and report.sent == 0 and report.queued == 1
    assert "HTTP 503" in report.error and "after 2 attempt(s)" in report.error
    state = outbox.state()
    assert state.queued == 1 and state.last_error_attempts == 1 and "HTTP 503" in state.last_error
    report = outbox.send()
    assert (report.sent, report.queued, report.error) == (1, 0, None)
    assert statement_id(view.review_id) in lrs.statements and len(lrs.posts()) == 3
    assert outbox.state().last_error is None


def test_sending_again_is_harmless(lrs: LRSServer, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, lrs)
    outbox = outbox_on(store)
    view = approve_quietly(store)
    assert outbox.send().sent == 1
    with store.session() as db:  # as if the process died after the LRS stored it, before the row was marked
        db.execute(update(XapiOutboxRow).values(status=OutboxStatus.QUEUED.value))
    report = outbox.send()
    assert (report.sent, report.held, report.error) == (1, 0, None)  # the same id and statement: a no-op
    lrs.conflict_on_duplicate = True  # an LRS that answers 409 even to the same statement
    with store.session() as db:
        db.execute(update(XapiOutboxRow).values(status=OutboxStatus.QUEUED.value))
    report = outbox.send()
    assert (report.sent, report.held, report.error) == (1, 1, None)
    assert list(lrs.statements) == [statement_id(view.review_id)] and outbox.state().sent == 1
    # the export path counts a statement the LRS already holds as delivered too
    statement = xapi_statement(approved_result(view))
    assert send_to_lrs([statement], LRSConfig.from_settings(load_settings())) == [statement["id"]]


@pytest.mark.parametrize(("kind", "says"), [("html", "(not JSON: <html><body>Welcome"),
                                            ("ids", "for 1 statement(s) sent")])
def test_a_garbage_reply_is_a_clear_error_kept_on_the_row(kind: str, says: str, lrs: LRSServer, store: Store,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, lrs)
    outbox = outbox_on(store)
    approve_quietly(store)
    lrs.garbage_next(kind)
    report = outbox.send()
    assert report.queued == 1 and report.sent == 0
    assert "answered HTTP 200 without the statement ids xAPI requires" in report.error and says in report.error
    assert "\n" not in report.error
    state = outbox.state()
    assert state.queued == 1 and state.last_error == report.error and state.last_error_attempts == 1
    assert outbox.send().sent == 1 and outbox.state().last_error is None


def test_a_statement_the_lrs_refuses_fails_alone_and_can_be_retried(
        lrs: LRSServer, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, lrs)
    outbox = outbox_on(store)
    good, bad = approve_quietly(store), approve_quietly(store, level=2)
    outbox.sweep()
    with store.session() as db:
        row = db.query(XapiOutboxRow).filter_by(review_id=bad.review_id).one()
        original = row.statement
        row.statement = {**original, "result": {**original["result"], "score": {"scaled": 5}}}
    report = outbox.send()
    assert (report.sent, report.failed, report.queued, report.error) == (1, 1, 0, None)
    state = outbox.state()
    assert state.failed == 1 and "scaled must be between -1 and 1" in state.last_error
    assert statement_id(good.review_id) in lrs.statements and statement_id(bad.review_id) not in lrs.statements
    with store.session() as db:
        db.execute(update(XapiOutboxRow).where(XapiOutboxRow.review_id == bad.review_id).values(statement=original))
    assert outbox.retry_failed() == 1 and outbox.send().sent == 1


def test_an_lrs_of_another_version_is_a_setting_to_fix_not_a_refusal(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with LRSServer("1.0.3") as server:
        configure(monkeypatch, server, version="2.0.0")
        outbox = outbox_on(store)
        approve_quietly(store)
        report = outbox.send()
        assert "speaks xAPI 1.0.3, not 2.0.0; set ROLEPLAY_LRS_VERSION=1.0.3" in report.error
        assert outbox.state().queued == 1 and outbox.state().failed == 0  # kept for after the fix


# --- the command line ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_wrong_credentials_then_send_and_status(lrs: LRSServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.cli import main

    configure(monkeypatch, lrs, secret="wrong")
    store = Store(load_settings().database_url)
    view = approve_quietly(store)
    store.close()
    run = CliRunner().invoke
    out = run(main, ["xapi", "send"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: the LRS at") and "refused the credentials (HTTP 401)" in line
    assert "ROLEPLAY_LRS_KEY and ROLEPLAY_LRS_SECRET" in line and "1 statement(s) stay queued" in line
    out = run(main, ["xapi", "status"])
    assert out.exit_code == 0 and "queued 1" in out.stdout and "HTTP 401" in out.stdout, out.output

    monkeypatch.setenv("ROLEPLAY_LRS_SECRET", "secret")
    out = run(main, ["xapi", "send"])
    assert out.exit_code == 0 and "sent 1 statement(s)" in out.stdout and "(xAPI 2.0.0)" in out.stdout, out.output
    assert statement_id(view.review_id) in lrs.statements
    out = run(main, ["xapi", "status"])
    assert "queued 0, sent 1" in out.stdout and "last error" not in out.stdout, out.output


@pytest.mark.slow
def test_cli_approval_is_delivered_before_the_command_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.cli import main

    monkeypatch.setattr(lrs_module, "SENDER_FIRST", 30.0)  # only the approval itself sets the sender going
    with LRSServer("1.0.3") as server:
        configure(monkeypatch, server)
        store = Store(load_settings().database_url)
        review_id = graded(store)
        store.close()
        out = CliRunner().invoke(main, ["review", "approve", str(review_id), "--as", "fay"])
        assert out.exit_code == 0, out.output
        assert list(server.statements) == [statement_id(review_id)]  # no cron needed
        assert server.posts()[0]["headers"]["X-Experience-API-Version"] == "1.0.3"


@pytest.mark.slow
def test_cli_without_an_lrs_says_which_setting_to_set() -> None:
    from roleplay.cli import main

    out = CliRunner().invoke(main, ["xapi", "send"])
    assert out.exit_code == 1 and "ROLEPLAY_LRS_URL" in out.stderr and "Traceback" not in out.output
    out = CliRunner().invoke(main, ["xapi", "status"])
    assert out.exit_code == 0 and "none configured" in out.stdout and "queued 0, sent 0" in out.stdout
