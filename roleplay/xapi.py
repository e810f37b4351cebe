"""xAPI statements of approved results, for an LRS speaking xAPI 2.0 (IEEE 9274.1.1) or 1.0.3, and the LRS client.

Only approved results leave roleplay: statements are built from `ApprovedResult`, whose grade is the one a
facilitator approved (with any edits), never the judge's raw grade. Delivery retries with the same policy as the
model client (`roleplay.retry`); the durable queue in front of it is `roleplay.lrs`.

Where the two versions differ, a statement carries what each accepts (`for_version`):

- the `X-Experience-API-Version` header names the version the LRS speaks (`ROLEPLAY_LRS_VERSION`);
- `context.contextAgents` and `context.contextGroups` exist only in 2.0 (a 1.0.3 LRS rejects them as additional
  properties): under 2.0 the facilitator who approved the result is a context agent of relevant type
  `<base>/xapi/roles/reviewer`; under both versions they are also the context's `instructor`;
- timestamps: 2.0 requires RFC 3339 in UTC, 1.0.3 ISO 8601 with at least milliseconds (RFC 3339 recommended);
  `2026-03-02T09:30:00.000Z` satisfies both;
- the statement's `version` property: a provider should not set it (if it does, 1.0.3 requires `1.0.0` and 2.0
  `2.0.0`), so it is left out and the LRS records the version it accepted the statement under;
- the activity definition holds only a name, a description and a type (language maps keyed by RFC 5646 tags,
  never an empty object), which both versions accept; context activities are always arrays, as 2.0 asks.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from roleplay.config import Settings
from roleplay.errors import LRSError, StandardsError
from roleplay.retry import Failure, GaveUp, RetryPolicy, call_with_retries, retry_after
from roleplay.review import ApprovedResult
from roleplay.scenario import Scenario

XAPI_2_0 = "2.0.0"
XAPI_1_0_3 = "1.0.3"
XAPI_VERSIONS = (XAPI_2_0, XAPI_1_0_3)
DEFAULT_VERSION = XAPI_2_0
ONLY_IN_2_0 = ("contextAgents", "contextGroups")
"""Context properties xAPI 2.0 added; a 1.0.3 LRS rejects them."""
XapiVersion = Literal["2.0.0", "1.0.3"]
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
SIMULATION_ACTIVITY = "http://adlnet.gov/expapi/activities/simulation"
DEFAULT_BASE = "https://roleplay.example"


def _iso_ms(moment: datetime) -> str:
    """UTC RFC 3339 (a profile of ISO 8601) with milliseconds and a Z: what both versions accept."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def check_version(version: str) -> str:
    """`version` if roleplay can speak it to an LRS.

    Raises:
        StandardsError: not 2.0.0 or 1.0.3.
    """
    if version not in XAPI_VERSIONS:
        raise StandardsError(f"xAPI version {version!r} is not supported; use {' or '.join(XAPI_VERSIONS)} "
                             "(ROLEPLAY_LRS_VERSION)")
    return version


def for_version(statement: dict[str, Any], version: str) -> dict[str, Any]:
    """A copy of `statement` that an LRS speaking `version` accepts.

    Under 1.0.3 the 2.0-only context properties (`contextAgents`, `contextGroups`) are dropped; under both the
    `version` property is left for the LRS to set. The input is not changed.
    """
    check_version(version)
    out = copy.deepcopy(statement)
    out.pop("version", None)
    context = out.get("context")
    if version == XAPI_1_0_3 and isinstance(context, dict):
        for key in ONLY_IN_2_0:
            context.pop(key, None)
        if not context:
            del out["context"]
    return out


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
        """An xAPI Agent for a roleplay user: an account (home page + username) when one is set, else an mbox."""
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
                   learner_name: str | None = None, version: XapiVersion = DEFAULT_VERSION) -> dict[str, Any]:
    """An xAPI statement for one approved result, scored from the approved grade.

    Args:
        result: The approved result (its grade includes any facilitator edits).
        scenario: The scenario, for the activity's name and description (the id is used when None).
        config: Actor and IRI settings; `XapiConfig()` defaults when None.
        learner_name: The learner's display name, if it may be shared.
        version: The xAPI version the statement is for: 2.0.0 (the approving facilitator is also a context agent)
            or 1.0.3.

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
    if scenario is not None and scenario.summary:
        definition["description"] = {lang: scenario.summary}
    context: dict[str, Any] = {
        "platform": "roleplay",
        "language": lang,
        "instructor": cfg.agent(result.approved_by),
        "contextAgents": [{"objectType": "contextAgent", "agent": cfg.agent(result.approved_by),
                           "relevantTypes": [cfg.iri("xapi", "roles", "reviewer")]}],
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
    statement = {
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
    return for_version(statement, version)


def export_xapi(statements: Iterable[dict[str, Any]]) -> str:
    """Statements as a JSON array (UTF-8 text), ready to import into an LRS or keep as a file."""
    return json.dumps(list(statements), indent=2, ensure_ascii=False)


class LRSConfig(BaseModel):
    """Where and how to send statements."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = Field(description="LRS endpoint; statements go to `<endpoint>/statements` (ROLEPLAY_LRS_URL).")
    key: str | None = Field(default=None, description="Basic-auth user / key (ROLEPLAY_LRS_KEY).")
    secret: str | None = Field(default=None, description="Basic-auth password / secret (ROLEPLAY_LRS_SECRET).")
    version: XapiVersion = Field(default=DEFAULT_VERSION,
                                 description="The xAPI version the LRS speaks, sent as X-Experience-API-Version "
                                             "(ROLEPLAY_LRS_VERSION).")

    @classmethod
    def from_settings(cls, settings: Settings) -> LRSConfig:
        """From ROLEPLAY_LRS_URL, ROLEPLAY_LRS_KEY, ROLEPLAY_LRS_SECRET and ROLEPLAY_LRS_VERSION.

        Raises:
            LRSError: ROLEPLAY_LRS_URL is not set.
        """
        if not settings.lrs_url:
            raise LRSError("no LRS configured; set ROLEPLAY_LRS_URL (e.g. https://lrs.example/xapi) and "
                           "ROLEPLAY_LRS_KEY / ROLEPLAY_LRS_SECRET, or export the statements to a file instead")
        return cls(endpoint=settings.lrs_url, key=settings.lrs_key, secret=settings.lrs_secret,
                   version=settings.lrs_version)

    @property
    def auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials, if any."""
        return (self.key, self.secret) if self.key is not None and self.secret is not None else None


@dataclass
class Delivery:
    """What the LRS made of a batch of statements, by statement id."""

    stored: list[str] = field(default_factory=list)
    """Ids the LRS accepted now."""
    held: list[str] = field(default_factory=list)
    """Ids the LRS already held (409 Conflict for that statement alone): delivered earlier."""
    refused: dict[str, str] = field(default_factory=dict)
    """Ids the LRS refused on their own (e.g. HTTP 400), with its reason in one line."""

    @property
    def delivered(self) -> list[str]:
        """Ids the LRS holds now."""
        return [*self.stored, *self.held]

    def add(self, other: Delivery) -> None:
        """Fold another delivery into this one."""
        self.stored.extend(other.stored)
        self.held.extend(other.held)
        self.refused.update(other.refused)


_ONE_BY_ONE = (400, 409, 413)
"""Refusals of a batch that may concern one statement only: the batch is sent again one statement at a time."""


class LRSClient:
    """The statements resource of one LRS: POSTs batches with basic auth and the version header, checks the reply.

    Timeouts, connection failures, 429 and 5xx are retried by `policy` (backoff, or the LRS's Retry-After). Use it as a
    context manager (it holds one HTTP connection pool).

    Args:
        lrs: Where to send, the credentials and the xAPI version.
        timeout: Seconds per request.
        policy: Retries per request; `RetryPolicy()` (3 retries) when None.
        transport: An httpx transport (for tests or proxies).
    """

    def __init__(self, lrs: LRSConfig, *, timeout: float = 10.0, policy: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.lrs = lrs
        self.url = lrs.endpoint.rstrip("/") + "/statements"
        self.policy = policy or RetryPolicy()
        headers = {"X-Experience-API-Version": lrs.version, "Content-Type": "application/json"}
        self._http = httpx.Client(timeout=timeout, auth=lrs.auth, headers=headers, transport=transport)
        self._announced: list[str] | None = None
        self._asked_about = False

    def __enter__(self) -> LRSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self._http.close()

    def deliver(self, statements: list[dict[str, Any]]) -> Delivery:
        """Send statements (fitted to the LRS's version) in one request; a refusal that may concern single
        statements (400, 409, 413) is sorted out by sending them one at a time.

        Returns:
            Which statements the LRS stored, already held (409 for that statement alone) or refused.

        Raises:
            LRSError: a failure of the LRS as a whole (unreachable after the retries, 5xx, refused credentials, no
                statements resource, a reply without the statement ids, another xAPI version): nothing is known to be
                stored; send again later.
        """
        return self._deliver([for_version(s, self.lrs.version) for s in statements])

    def _deliver(self, batch: list[dict[str, Any]]) -> Delivery:
        try:
            return Delivery(stored=self.post(batch))
        except LRSError as exc:
            if exc.status not in _ONE_BY_ONE:
                raise
            if exc.status == 400:
                self._check_version()
            if len(batch) > 1:
                out = Delivery()
                for statement in batch:
                    out.add(self._deliver([statement]))
                return out
            sid = str(batch[0].get("id", ""))
            if exc.status == 409:
                return Delivery(held=[sid])
            return Delivery(refused={sid: str(exc)})

    def post(self, batch: list[dict[str, Any]]) -> list[str]:
        """POST `batch` as it is; the ids the LRS returned, checked against the statements sent.

        Raises:
            LRSError: refused (with the HTTP status), unreachable after the retries, or a reply that is not the
                statement ids (status 200 or what the LRS answered).
        """
        body = json.dumps(batch, ensure_ascii=False).encode("utf-8")

        def post() -> list[str]:
            reply = self._http.post(self.url, content=body)
            if reply.status_code >= 300:
                raise _Refused(reply)
            return _ids_in(reply, batch, self.url)

        try:
            return call_with_retries(f"sending {len(batch)} statement(s) to {self.url}", post,
                                     _classify(self._http, self.url), self.policy)
        except GaveUp as gave_up:
            failure = gave_up.failure
            if not failure.retryable:
                raise LRSError(failure.hint, attempts=gave_up.attempts, status=failure.status) from None
            raise LRSError(f"could not deliver {len(batch)} statement(s) to {self.url} after {gave_up.attempts} "
                           f"attempt(s): {failure.hint}; check ROLEPLAY_LRS_URL and that the LRS is up, then send "
                           "again (statement ids are stable, so nothing is duplicated)",
                           attempts=gave_up.attempts, status=failure.status) from None

    def announced_versions(self) -> list[str] | None:
        """The xAPI versions the LRS's About resource lists (asked once), or None when it does not say."""
        if not self._asked_about:
            self._asked_about = True
            try:
                reply = self._http.get(self.lrs.endpoint.rstrip("/") + "/about")
                versions = reply.json().get("version") if reply.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                versions = None
            if isinstance(versions, list) and versions and all(isinstance(v, str) for v in versions):
                self._announced = versions
        return self._announced

    def _check_version(self) -> None:
        """Raise when the LRS says it does not speak our version (a 400 then concerns every statement, not one)."""
        versions = self.announced_versions()
        if versions is None or any(_same_line(v, self.lrs.version) for v in versions):
            return
        other = next((v for v in XAPI_VERSIONS if any(_same_line(a, v) for a in versions)), None)
        raise LRSError(f"the LRS at {self.lrs.endpoint} speaks xAPI {', '.join(versions)}, not {self.lrs.version}; "
                       + (f"set ROLEPLAY_LRS_VERSION={other}" if other else "roleplay speaks 2.0.0 and 1.0.3 only"),
                       status=400)


def _same_line(announced: str, version: str) -> bool:
    """Whether two xAPI versions share major and minor (1.0.x statements are all 1.0.0 statements)."""
    return announced.split(".")[:2] == version.split(".")[:2]


def _one_line(text: str, limit: int = 300) -> str:
    line = re.sub(r"\s+", " ", text).strip()
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _ids_in(reply: httpx.Response, batch: list[dict[str, Any]], url: str) -> list[str]:
    """The statement ids of a successful POST; an LRSError when the reply is not them."""
    problem = None
    try:
        ids = reply.json()
    except ValueError:
        ids, problem = None, f"not JSON: {_one_line(reply.text, 80) or 'an empty body'}"
    if problem is None:
        expected = [s.get("id") for s in batch]
        if not (isinstance(ids, list) and len(ids) == len(batch) and all(isinstance(i, str) for i in ids)
                and all(e is None or e == i for e, i in zip(expected, ids, strict=True))):
            problem = f"{_one_line(json.dumps(ids), 80)} for {len(batch)} statement(s) sent"
    if problem is None:
        return ids
    raise LRSError(f"the LRS at {url} answered HTTP {reply.status_code} without the statement ids xAPI requires "
                   f"({problem}); check that ROLEPLAY_LRS_URL is the LRS's xAPI endpoint, then send again",
                   status=reply.status_code)


def send_to_lrs(statements: list[dict[str, Any]], lrs: LRSConfig, *, timeout: float = 10.0,
                policy: RetryPolicy | None = None, batch_size: int = 50,
                transport: httpx.BaseTransport | None = None) -> list[str]:
    """POST statements to `<endpoint>/statements` with the xAPI version header and basic auth.

    Each statement is fitted to the LRS's version (`for_version`). Timeouts, connection failures, 429 and 5xx are
    retried by `policy`; statement ids are deterministic, so a retried batch the LRS had already stored is not
    duplicated, and a statement the LRS already holds (409 Conflict for it alone) counts as delivered.

    Args:
        statements: Statements from `xapi_statement`.
        lrs: Where to send them, the credentials and the version.
        timeout: Seconds per request.
        policy: Retries per batch; `RetryPolicy()` (3 retries) when None.
        batch_size: Statements per request.
        transport: An httpx transport (for tests or proxies).

    Returns:
        The ids of the statements the LRS holds, in order.

    Raises:
        LRSError: the LRS refused statements or could not be reached after the retries.
    """
    delivered: list[str] = []
    step = max(1, batch_size)
    with LRSClient(lrs, timeout=timeout, policy=policy, transport=transport) as client:
        for start in range(0, len(statements), step):
            delivery = client.deliver(statements[start:start + step])
            if delivery.refused:
                sid, reason = next(iter(delivery.refused.items()))
                raise LRSError(f"{len(delivery.refused)} statement(s) refused (the first, {sid}: {reason})",
                               status=400)
            delivered.extend(delivery.delivered)
    return delivered


class _Refused(Exception):
    def __init__(self, reply: httpx.Response) -> None:
        super().__init__(f"HTTP {reply.status_code}")
        self.reply = reply


def _classify(client: httpx.Client, url: str) -> Callable[[BaseException], Failure | None]:
    def classify(exc: BaseException) -> Failure | None:
        if isinstance(exc, httpx.TimeoutException):
            return Failure(True, None, None, f"timed out after {client.timeout.read}s")
        if isinstance(exc, httpx.TransportError):
            return Failure(True, None, None, f"cannot connect ({type(exc).__name__}: {_one_line(str(exc), 120)})")
        if isinstance(exc, _Refused):
            status, text = exc.reply.status_code, exc.reply.text
            if status >= 500 or status == 429:
                return Failure(True, status, retry_after(exc.reply.headers), f"HTTP {status}: {_one_line(text)}")
            return Failure(False, status, None, _refusal(url, status, text))
        return None
    return classify


def _refusal(url: str, status: int, text: str) -> str:
    detail = _one_line(text)
    if status in (401, 403):
        return (f"the LRS at {url} refused the credentials (HTTP {status}); check ROLEPLAY_LRS_KEY and "
                f"ROLEPLAY_LRS_SECRET{': ' + detail if detail else ''}")
    if status == 404:
        return (f"no xAPI statements resource at {url} (HTTP 404); ROLEPLAY_LRS_URL should be the endpoint that "
                "/statements is under")
    if status == 409:
        return f"the LRS at {url} already holds a statement with this id (HTTP 409): {detail or 'no details given'}"
    return (f"the LRS at {url} rejected the statements (HTTP {status}): {detail or 'no details given'}; fix the "
            "statements or the LRS configuration")
