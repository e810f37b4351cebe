"""xAPI 1.0.3 statements of approved results, and the LRS client that delivers them.

Only approved results leave roleplay: statements are built from `ApprovedResult`, whose grade is the one a
facilitator approved (with any edits), never the judge's raw grade. Delivery retries with the same policy as the
model client (`roleplay.retry`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from roleplay.config import Settings
from roleplay.errors import LRSError
from roleplay.retry import Failure, GaveUp, RetryPolicy, call_with_retries, retry_after
from roleplay.review import ApprovedResult
from roleplay.scenario import Scenario

XAPI_VERSION = "1.0.3"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
SIMULATION_ACTIVITY = "http://adlnet.gov/expapi/activities/simulation"
DEFAULT_BASE = "https://roleplay.example"


def _iso_ms(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class XapiConfig(BaseModel):
    """How statements name learners and activities."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str = Field(default=DEFAULT_BASE, description="IRI base of activities and extensions (ROLEPLAY_XAPI_BASE).")
    mbox_domain: str = Field(default="roleplay.example",
                             description="Learners are `mailto:<username>@<domain>` (ROLEPLAY_XAPI_MBOX_DOMAIN).")
    account_home_page: str | None = Field(
        default=None,
        description="If set, learners are accounts on this home page instead of mboxes (ROLEPLAY_XAPI_HOMEPAGE).")
    language: str = Field(default="en-US", description="Language tag of names, descriptions and verb displays.")

    @classmethod
    def from_settings(cls, settings: Settings) -> XapiConfig:
        """From ROLEPLAY_XAPI_BASE, ROLEPLAY_XAPI_MBOX_DOMAIN and ROLEPLAY_XAPI_HOMEPAGE."""
        return cls(base=settings.xapi_base, mbox_domain=settings.xapi_mbox_domain,
                   account_home_page=settings.xapi_homepage)

    def agent(self, username: str, name: str | None = None) -> dict[str, Any]:
        """An xAPI Agent for a roleplay user."""
        agent: dict[str, Any] = {"objectType": "Agent"}
        if name:
            agent["name"] = name
        if self.account_home_page:
            agent["account"] = {"homePage": self.account_home_page, "name": username}
        else:
            agent["mbox"] = f"mailto:{username}@{self.mbox_domain}"
        return agent

    def iri(self, *parts: str) -> str:
        """An IRI under `base`."""
        return "/".join([self.base.rstrip("/"), *parts])


def statement_id(review_id: int, config: XapiConfig | None = None) -> str:
    """The deterministic statement id of an approved review (uuid5), so re-sending never duplicates."""
    cfg = config or XapiConfig()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, cfg.iri("reviews", str(review_id))))


def xapi_statement(result: ApprovedResult, scenario: Scenario | None = None, *, config: XapiConfig | None = None,
                   learner_name: str | None = None) -> dict[str, Any]:
    """An xAPI 1.0.3 statement for one approved result, scored from the approved grade.

    Args:
        result: The approved result (its grade includes any facilitator edits).
        scenario: The scenario, for the activity's name and description (the id is used when None).
        config: Actor and IRI settings; `XapiConfig()` defaults when None.
        learner_name: The learner's display name, if it may be shared.

    Returns:
        The statement as a JSON-ready dict.
    """
    cfg = config or XapiConfig()
    lang = cfg.language
    grade = result.grade
    verb = VERB_PASSED if grade.passed else VERB_FAILED
    definition: dict[str, Any] = {
        "name": {lang: scenario.title if scenario else result.scenario_id},
        "type": SIMULATION_ACTIVITY,
    }
    if scenario is not None:
        definition["description"] = {lang: scenario.summary}
    context: dict[str, Any] = {
        "platform": "roleplay",
        "language": lang,
        "instructor": cfg.agent(result.approved_by),
        "extensions": {
            cfg.iri("xapi", "extensions", "level"): result.level,
            cfg.iri("xapi", "extensions", "rubric"): grade.rubric_id,
            cfg.iri("xapi", "extensions", "session-id"): result.session_id,
            cfg.iri("xapi", "extensions", "review-id"): result.review_id,
        },
    }
    if scenario is not None and scenario.is_scene:
        context["extensions"][cfg.iri("xapi", "extensions", "cast")] = [
            {"id": m.id, "name": m.persona.name, "role": m.persona.role} for m in scenario.members]
    if grade.meeting_facts:
        context["extensions"][cfg.iri("xapi", "extensions", "meeting-facts")] = list(grade.meeting_facts)
    if scenario is not None:
        context["contextActivities"] = {"grouping": [{
            "objectType": "Activity", "id": cfg.iri("sprints", scenario.sprint),
            "definition": {"name": {lang: scenario.sprint}},
        }]}
    return {
        "id": statement_id(result.review_id, cfg),
        "actor": cfg.agent(result.learner, learner_name),
        "verb": {"id": verb, "display": {lang: "passed" if grade.passed else "failed"}},
        "object": {"objectType": "Activity", "id": cfg.iri("scenarios", result.scenario_id), "definition": definition},
        "result": {
            "score": {"scaled": round(grade.scaled, 4), "raw": grade.overall, "min": 1, "max": 4},
            "success": grade.passed,
            "completion": True,
        },
        "context": context,
        "timestamp": _iso_ms(result.approved_at),
    }


def export_xapi(statements: Iterable[dict[str, Any]]) -> str:
    """Statements as a JSON array (UTF-8 text), ready to import into an LRS or keep as a file."""
    return json.dumps(list(statements), indent=2, ensure_ascii=False)


class LRSConfig(BaseModel):
    """Where and how to send statements."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = Field(description="LRS endpoint; statements go to `<endpoint>/statements` (ROLEPLAY_LRS_URL).")
    key: str | None = Field(default=None, description="Basic-auth user / key (ROLEPLAY_LRS_KEY).")
    secret: str | None = Field(default=None, description="Basic-auth password / secret (ROLEPLAY_LRS_SECRET).")

    @classmethod
    def from_settings(cls, settings: Settings) -> LRSConfig:
        """From ROLEPLAY_LRS_URL, ROLEPLAY_LRS_KEY and ROLEPLAY_LRS_SECRET.

        Raises:
            LRSError: ROLEPLAY_LRS_URL is not set.
        """
        if not settings.lrs_url:
            raise LRSError("no LRS configured; set ROLEPLAY_LRS_URL (e.g. https://lrs.example/xapi) and "
                           "ROLEPLAY_LRS_KEY / ROLEPLAY_LRS_SECRET, or export the statements to a file instead")
        return cls(endpoint=settings.lrs_url, key=settings.lrs_key, secret=settings.lrs_secret)

    @property
    def auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials, if any."""
        return (self.key, self.secret) if self.key is not None and self.secret is not None else None


def send_to_lrs(statements: list[dict[str, Any]], lrs: LRSConfig, *, timeout: float = 10.0,
                policy: RetryPolicy | None = None, batch_size: int = 50,
                transport: httpx.BaseTransport | None = None) -> list[str]:
    """POST statements to `<endpoint>/statements` with the xAPI version header and basic auth.

    Timeouts, connection failures, 429 and 5xx are retried by `policy` (backoff, or the LRS's Retry-After);
    statement ids are deterministic, so a retried batch the LRS had already stored is not duplicated.

    Args:
        statements: Statements from `xapi_statement`.
        lrs: Where to send them, and the credentials.
        timeout: Seconds per request.
        policy: Retries per batch; `RetryPolicy()` (3 retries) when None.
        batch_size: Statements per request.
        transport: An httpx transport (for tests or proxies).

    Returns:
        The statement ids the LRS stored, in order.

    Raises:
        LRSError: the LRS refused the statements or could not be reached after the retries.
    """
    policy = policy or RetryPolicy()
    url = lrs.endpoint.rstrip("/") + "/statements"
    headers = {"X-Experience-API-Version": XAPI_VERSION, "Content-Type": "application/json"}
    stored: list[str] = []
    step = max(1, batch_size)
    with httpx.Client(timeout=timeout, auth=lrs.auth, headers=headers, transport=transport) as client:
        for start in range(0, len(statements), step):
            stored.extend(_post_batch(client, url, statements[start:start + step], policy))
    return stored


class _Refused(Exception):
    def __init__(self, reply: httpx.Response) -> None:
        super().__init__(f"HTTP {reply.status_code}")
        self.reply = reply


def _classify(client: httpx.Client, url: str) -> Callable[[BaseException], Failure | None]:
    def classify(exc: BaseException) -> Failure | None:
        if isinstance(exc, httpx.TimeoutException):
            return Failure(True, None, None, f"timed out after {client.timeout.read}s")
        if isinstance(exc, httpx.TransportError):
            return Failure(True, None, None, f"cannot connect ({type(exc).__name__}: {exc})")
        if isinstance(exc, _Refused):
            status, text = exc.reply.status_code, exc.reply.text
            if status >= 500 or status == 429:
                return Failure(True, status, retry_after(exc.reply.headers), f"HTTP {status}: {text[:300]}")
            return Failure(False, status, None, _refusal(url, status, text))
        return None
    return classify


def _post_batch(client: httpx.Client, url: str, batch: list[dict[str, Any]], policy: RetryPolicy) -> list[str]:
    body = json.dumps(batch, ensure_ascii=False).encode("utf-8")

    def post() -> list[str]:
        reply = client.post(url, content=body)
        if reply.status_code >= 300:
            raise _Refused(reply)
        try:
            ids = reply.json()
        except ValueError:
            ids = None
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            return ids
        return [s.get("id", "") for s in batch]

    try:
        return call_with_retries(f"sending {len(batch)} statement(s) to {url}", post, _classify(client, url), policy)
    except GaveUp as gave_up:
        failure = gave_up.failure
        if not failure.retryable:
            raise LRSError(failure.hint, attempts=gave_up.attempts, status=failure.status) from None
        raise LRSError(f"could not deliver {len(batch)} statement(s) to {url} after {gave_up.attempts} attempt(s): "
                       f"{failure.hint}; check ROLEPLAY_LRS_URL and that the LRS is up, then send again "
                       "(statement ids are stable, so nothing is duplicated)",
                       attempts=gave_up.attempts, status=failure.status) from None


def _refusal(url: str, status: int, text: str) -> str:
    detail = text.strip()[:300]
    if status in (401, 403):
        return (f"the LRS at {url} refused the credentials (HTTP {status}); check ROLEPLAY_LRS_KEY and "
                f"ROLEPLAY_LRS_SECRET{': ' + detail if detail else ''}")
    if status == 404:
        return f"no xAPI statements resource at {url} (HTTP 404); ROLEPLAY_LRS_URL should be the endpoint that /statements is under"
    if status == 409:
        return (f"the LRS at {url} already holds a different statement with one of these ids (HTTP 409); "
                f"the result changed after it was sent: {detail}")
    return f"the LRS at {url} rejected the statements (HTTP {status}): {detail or 'no details given'}; fix the statements or the LRS configuration"
