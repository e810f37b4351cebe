"""A small learning record store on 127.0.0.1 for the tests: the statements resource of xAPI 2.0 or 1.0.3.

It speaks one version (`version`) and checks what a conformant LRS checks of a statement provider: basic auth, the
`X-Experience-API-Version` header, and each statement against that version's data model (no property the version
does not define: `contextAgents` / `contextGroups` only under 2.0; RFC 3339 timestamps under 2.0; the `version`
property's value). POST and PUT store statements (the same id with the same statement is a no-op, with a different
one a 409), GET `?statementId=` returns one, GET /about lists the version. It can be told to fail the next requests
with 503, to answer garbage, and to stop and start again on the same port.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

STATEMENT_KEYS = {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version",
                  "attachments"}
CONTEXT_KEYS = {"registration", "instructor", "team", "contextActivities", "revision", "platform", "language",
                "statement", "extensions"}
CONTEXT_KEYS_2_0 = {"contextAgents", "contextGroups"}
AGENT_KEYS = {"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"}
IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
DEFINITION_KEYS = {"name", "description", "type", "moreInfo", "extensions", "interactionType",
                   "correctResponsesPattern", "choices", "scale", "source", "target", "steps"}
RESULT_KEYS = {"score", "success", "completion", "response", "duration", "extensions"}
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
RFC_3339 = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?"
                      r"(Z|(?!-00:00)[+-]([01]\d|2[0-3]):[0-5]\d)$")
ISO_8601 = re.compile(r"^\d{4}-?\d\d-?\d\d(T\d\d(:?\d\d(:?\d\d(\.\d+)?)?)?(Z|[+-]\d\d(:?\d\d)?)?)?$")


def validate(statement: Any, version: str) -> list[str]:
    """What is wrong with a statement for an LRS speaking `version` ("2.0.0" or "1.0.3"); empty when it is valid."""
    two = version.startswith("2.0")
    problems: list[str] = []
    if not isinstance(statement, dict):
        return ["a statement must be a JSON object"]
    problems += [f"'{k}' is not a statement property" for k in sorted(set(statement) - STATEMENT_KEYS)]
    problems += [f"'{k}' is required" for k in ("actor", "verb", "object") if k not in statement]
    if "id" in statement and not _uuid(statement["id"]):
        problems.append("id must be a UUID")
    if "actor" in statement:
        problems += _agent(statement["actor"], "actor")
    verb = statement.get("verb")
    if verb is not None and not (isinstance(verb, dict) and _iri(verb.get("id")) and set(verb) <= {"id", "display"}
                                 and _language_map(verb.get("display", {}))):
        problems.append("verb must have an IRI id and a language-map display only")
    if "object" in statement:
        problems += _activity(statement["object"], "object")
    if "result" in statement:
        problems += _result(statement["result"])
    if "context" in statement:
        problems += _context(statement["context"], two)
    if "timestamp" in statement:
        pattern = RFC_3339 if two else ISO_8601
        if not (isinstance(statement["timestamp"], str) and pattern.match(statement["timestamp"])):
            problems.append(f"timestamp {statement['timestamp']!r} is not {'RFC 3339' if two else 'ISO 8601'}")
    if "version" in statement:
        ok = statement["version"] == "2.0.0" or str(statement["version"]).startswith("1.0.") if two else \
            str(statement["version"]).startswith("1.0.")
        if not ok:
            problems.append(f"version {statement['version']!r} is not accepted by an xAPI {version} LRS")
    return problems


def _uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _iri(value: Any) -> bool:
    return isinstance(value, str) and bool(IRI.match(value))


def _language_map(value: Any) -> bool:
    return isinstance(value, dict) and all(LANGUAGE_TAG.match(k) and isinstance(v, str) for k, v in value.items())


def _agent(agent: Any, where: str) -> list[str]:
    if not isinstance(agent, dict):
        return [f"{where} must be an object"]
    problems = [f"'{k}' is not an agent property ({where})" for k in sorted(set(agent) - AGENT_KEYS)]
    ifis = [k for k in IFIS if k in agent]
    if len(ifis) != 1:
        problems.append(f"{where} needs exactly one identifier, has {ifis or 'none'}")
    if "mbox" in agent and not str(agent["mbox"]).startswith("mailto:"):
        problems.append(f"{where}.mbox must be a mailto IRI")
    account = agent.get("account")
    if account is not None and not (isinstance(account, dict) and set(account) == {"homePage", "name"}
                                    and _iri(account["homePage"]) and account["name"]):
        problems.append(f"{where}.account needs a homePage IRL and a name")
    if agent.get("objectType", "Agent") != "Agent":
        problems.append(f"{where} must be an Agent")
    return problems


def _activity(activity: Any, where: str) -> list[str]:
    if not isinstance(activity, dict):
        return [f"{where} must be an object"]
    extra = sorted(set(activity) - {"objectType", "id", "definition"})
    problems = [f"'{k}' is not an activity property ({where})" for k in extra]
    if activity.get("objectType", "Activity") != "Activity" or not _iri(activity.get("id")):
        problems.append(f"{where} must be an Activity with an IRI id")
    definition = activity.get("definition", {})
    if not isinstance(definition, dict) or set(definition) - DEFINITION_KEYS:
        problems.append(f"{where}.definition has properties an activity definition does not")
    elif not all(_language_map(definition[k]) for k in ("name", "description") if k in definition):
        problems.append(f"{where}.definition name and description must be language maps")
    elif "type" in definition and not _iri(definition["type"]):
        problems.append(f"{where}.definition.type must be an IRI")
    return problems


def _result(result: Any) -> list[str]:
    if not isinstance(result, dict) or set(result) - RESULT_KEYS:
        return ["result has properties a result does not"]
    score = result.get("score", {})
    problems = []
    if not isinstance(score, dict) or set(score) - {"scaled", "raw", "min", "max"}:
        return ["result.score has properties a score does not"]
    if "scaled" in score and not -1 <= score["scaled"] <= 1:
        problems.append("result.score.scaled must be between -1 and 1")
    bounds = [score[k] for k in ("min", "raw", "max") if k in score]
    if bounds != sorted(bounds):
        problems.append("result.score must have min <= raw <= max")
    for key in ("success", "completion"):
        if key in result and not isinstance(result[key], bool):
            problems.append(f"result.{key} must be true or false")
    return problems


def _context(context: Any, two: bool) -> list[str]:
    if not isinstance(context, dict):
        return ["context must be an object"]
    allowed = CONTEXT_KEYS | (CONTEXT_KEYS_2_0 if two else set())
    problems = [f"'{k}' is not a context property in xAPI {'2.0' if two else '1.0.3'}"
                for k in sorted(set(context) - allowed)]
    if "instructor" in context:
        problems += _agent(context["instructor"], "context.instructor")
    if "language" in context and not LANGUAGE_TAG.match(str(context["language"])):
        problems.append("context.language must be an RFC 5646 tag")
    for kind, activities in (context.get("contextActivities") or {}).items():
        if kind not in ("parent", "grouping", "category", "other"):
            problems.append(f"'{kind}' is not a context activity type")
            continue
        for i, activity in enumerate(activities if isinstance(activities, list) else [activities]):
            problems += _activity(activity, f"context.contextActivities.{kind}[{i}]")
    if not all(_iri(k) for k in (context.get("extensions") or {})):
        problems.append("context extension keys must be IRIs")
    if two:
        for i, item in enumerate(context.get("contextAgents", [])):
            where = f"context.contextAgents[{i}]"
            if not (isinstance(item, dict) and item.get("objectType") == "contextAgent"
                    and set(item) <= {"objectType", "agent", "relevantTypes"}):
                problems.append(f"{where} must be a contextAgent with an agent")
                continue
            problems += _agent(item.get("agent"), f"{where}.agent")
            types = item.get("relevantTypes", ["x:y"])
            if not (isinstance(types, list) and types and all(_iri(t) for t in types)):
                problems.append(f"{where}.relevantTypes must be a non-empty list of IRIs")
    return problems


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two statements are the same statement (ignoring what the LRS sets)."""
    drop = ("stored", "authority", "version")
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class LRSServer:
    """The test LRS. Use as a context manager, or `start()` / `stop()`; `restart()` comes back on the same port.

    Args:
        version: The xAPI version it speaks: "2.0.0" or "1.0.3".
        key, secret: The basic-auth credentials it accepts.
        conflict_on_duplicate: Answer 409 to a statement it already holds even when it is the same (some LRSs do).
    """

    def __init__(self, version: str = "2.0.0", key: str = "key", secret: str = "secret",
                 conflict_on_duplicate: bool = False) -> None:
        self.version = version
        self.key, self.secret = key, secret
        self.conflict_on_duplicate = conflict_on_duplicate
        self.statements: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._failures: list[int] = []
        self._garbage: list[str] = []
        self._lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The xAPI endpoint (statements are under `<url>/statements`)."""
        return f"http://127.0.0.1:{self.port}/xapi"

    def fail_next(self, times: int, status: int = 503) -> None:
        """Answer the next `times` statement requests with `status`."""
        with self._lock:
            self._failures += [status] * times

    def garbage_next(self, kind: str = "html", times: int = 1) -> None:
        """Answer the next `times` POSTs with HTTP 200 and garbage: "html" (not JSON) or "ids" (the wrong ids)."""
        with self._lock:
            self._garbage += [kind] * times

    def posts(self) -> list[dict[str, Any]]:
        """The statement requests received (method, path, headers, body)."""
        return [r for r in self.requests if r["path"].startswith("/xapi/statements") and r["method"] in ("POST", "PUT")]

    def start(self) -> Self:
        """Listen on 127.0.0.1 (the same port as before after a stop)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until `start`)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def restart(self) -> Self:
        """Stop, then start on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the resource --------------------------------------------------------------------------------------
    def _store(self, statements: list[Any], authority: dict[str, Any]) -> tuple[int, Any]:
        problems = [f"statement {i}: {p}" for i, s in enumerate(statements) for p in validate(s, self.version)]
        if problems:
            return 400, {"error": "; ".join(problems)}
        with self._lock:
            fresh: dict[str, dict[str, Any]] = {}
            for s in statements:
                sid = s.get("id") or str(uuid.uuid4())
                held = self.statements.get(sid)
                if held is not None and (self.conflict_on_duplicate or not _same(held, s)):
                    return 409, {"error": f"statement {sid} already exists"}
                if held is None:
                    fresh[sid] = {**s, "id": sid, "stored": _now(), "authority": authority,
                                  "version": "2.0.0" if self.version.startswith("2.0") else "1.0.0"}
                fresh.setdefault(sid, held)
            self.statements.update(fresh)
            return 200, list(fresh)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        lrs = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: Any = None, raw: bytes | None = None) -> None:
                data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
                self.send_response(status)
                self.send_header("X-Experience-API-Version", lrs.version)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refusal(self) -> tuple[int, str] | None:
                expected = "Basic " + base64.b64encode(f"{lrs.key}:{lrs.secret}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return 401, "unknown credentials"
                header = self.headers.get("X-Experience-API-Version", "")
                if header.split(".")[:2] != lrs.version.split(".")[:2]:
                    return 400, (f"X-Experience-API-Version {header or '(missing)'} is not supported; this LRS "
                                 f"speaks {lrs.version}")
                with lrs._lock:
                    if lrs._failures:
                        return lrs._failures.pop(0), "temporarily unavailable"
                return None

            def _record(self, body: bytes = b"") -> tuple[str, dict[str, list[str]]]:
                parts = urlsplit(self.path)
                lrs.requests.append({"method": self.command, "path": parts.path, "headers": dict(self.headers),
                                     "body": body})
                return parts.path, parse_qs(parts.query)

            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                path, query = self._record()
                if path == "/xapi/about":
                    self._reply(200, {"version": [lrs.version]})
                    return
                refusal = self._refusal()
                if refusal:
                    self._reply(refusal[0], {"error": refusal[1]})
                    return
                sid = (query.get("statementId") or [""])[0]
                held = lrs.statements.get(sid)
                self._reply(200, held) if held else self._reply(404, {"error": f"no statement {sid}"})

            def _statements_body(self) -> tuple[bytes, Any] | None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._record(body)
                refusal = self._refusal()
                if refusal:
                    self._reply(refusal[0], {"error": refusal[1]})
                    return None
                try:
                    return body, json.loads(body)
                except ValueError:
                    self._reply(400, {"error": "the body is not JSON"})
                    return None

            def do_POST(self) -> None:  # noqa: N802
                got = self._statements_body()
                if got is None:
                    return
                statements = got[1] if isinstance(got[1], list) else [got[1]]
                with lrs._lock:
                    garbage = lrs._garbage.pop(0) if lrs._garbage else None
                status, payload = lrs._store(statements, self._authority())
                if status == 200 and garbage == "html":
                    self._reply(200, raw=b"<html><body>Welcome to our portal</body></html>")
                elif status == 200 and garbage == "ids":
                    self._reply(200, [str(uuid.uuid4()) for _ in statements])
                elif status == 200:
                    self._reply(200, [s.get("id") or payload[i] for i, s in enumerate(statements)])
                else:
                    self._reply(status, payload)

            def do_PUT(self) -> None:  # noqa: N802
                got = self._statements_body()
                if got is None:
                    return
                sid = (parse_qs(urlsplit(self.path).query).get("statementId") or [""])[0]
                statement = got[1]
                if not sid or not isinstance(statement, dict) or statement.get("id", sid) != sid:
                    self._reply(400, {"error": "PUT needs ?statementId= matching the statement's id"})
                    return
                status, payload = lrs._store([{**statement, "id": sid}], self._authority())
                self._reply(204) if status == 200 else self._reply(status, payload)

            def _authority(self) -> dict[str, Any]:
                return {"objectType": "Agent", "account": {"homePage": lrs.url, "name": lrs.key}}

        return Handler
