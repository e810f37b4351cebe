"""The HTTP routes a SCORM package's pages call: `/scorm/link` and `/scorm/result` (see `roleplay.scorm`).

`/scorm/link` is roleplay's own page: a learner signed in to the app confirms the link between the course and their
account, and the page's script (same origin only) asks for the token. `/scorm/result` is called from the course's
page, another origin, with that token as a bearer credential: it answers only with the learner's approved result of
the package's scenario, and every refusal is the same 401.

Cross-origin requests. In the app these routes sit behind Gradio's CORS middleware, which answers every preflight
request itself (any method, the requested headers, `Access-Control-Allow-Credentials: true`) and adds the request's
origin as `Access-Control-Allow-Origin`, with `Access-Control-Allow-Credentials: true`, to every response (except
that, when the app is served at a localhost address, only localhost origins are named). `/scorm/result` does not
rely on those headers: it reads no cookie, answers only a bearer token made for this package and LMS student, and
refuses a request whose `Origin` is not the one the token was made for.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from roleplay.errors import RoleplayError
from roleplay.scorm import (
    MAX_FIELD,
    PRACTICE_LEVEL,
    TOKEN_TTL,
    data_file,
    fill_page,
    issue_token,
    load_or_create_key,
    package_scenario,
    read_token,
    scorm_result,
    valid_origin,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from roleplay.context import AppContext
    from roleplay.rubric import Rubric
    from roleplay.scenario import Scenario

log = logging.getLogger(__name__)
_PROBLEMS = {
    400: ("Open this from your course", ("The course did not say who you are; close this window and open the "
                                         "practice from your course again.")),
    404: ("Unknown course package", ("This course package was not made by this roleplay app, or its scenario was "
                                     "removed; ask your course administrator to export it again.")),
    503: ("Not available", "roleplay cannot check course links just now; tell your administrator."),
}
REFUSED = {"error": "this link to roleplay is not valid or has expired; open the practice from the course again"}


def routes(context: AppContext) -> list[BaseRoute]:
    """`/scorm/link` (a learner, signed in to the app, links a course) and `/scorm/result` (the course asks for the
    learner's approved result)."""
    from starlette.routing import Route

    endpoints = _Endpoints(context)
    return [Route("/scorm/link", endpoints.link_page, methods=["GET"]),
            Route("/scorm/link", endpoints.link, methods=["POST"]),
            Route("/scorm/result", endpoints.result, methods=["GET"])]


async def signed_in_user(request: Request) -> str | None:
    """The username signed in to the Gradio app that serves `request` (its sign-in cookie), or None."""
    import inspect
    from collections.abc import Mapping

    from starlette.concurrency import run_in_threadpool

    app = request.scope.get("app")
    dependency = getattr(app, "auth_dependency", None)
    if dependency is not None:
        user = dependency(request)
        return (await user if inspect.isawaitable(user) else user) or None
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not isinstance(tokens, Mapping) or not cookie_id:
        return None
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(f"access-token-unsecure-{cookie_id}")
    return await run_in_threadpool(tokens.get, token) if token else None  # the sign-ins may be in the database


def origin_of(url: str | None) -> str | None:
    """The web origin (scheme://host[:port], lower case) of an http(s) address, or None."""
    try:
        parts = urlsplit((url or "").strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, public_url: str | None = None) -> bool:
    """Whether a request comes from the app's own pages: its `Origin` is the address it was sent to (`Host`), or the
    origin of `public_url` (ROLEPLAY_PUBLIC_URL: behind a proxy that rewrites `Host`); with no `Origin`, what the
    browser says of the request's site (`Sec-Fetch-Site`)."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    if urlsplit(origin).netloc == request.headers.get("host", ""):
        return True
    public = origin_of(public_url)
    return public is not None and origin.strip().lower() == public


class _Endpoints:
    """The `/scorm/*` endpoints of one app context; the key is read on first use."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_or_create_key(self.context.settings.data_dir)
        return self._key

    def _target(self, package: str) -> tuple[Scenario, Rubric] | None:
        """The scenario and rubric of a package this deployment signed (None when unknown or removed)."""
        from roleplay.errors import NotFoundError

        scenario_id = package_scenario(self.key, package)
        scenario = self.context.catalog.scenarios.get(scenario_id or "")
        try:
            return (scenario, self.context.catalog.rubric_for(scenario)) if scenario is not None else None
        except NotFoundError:
            return None

    def _person(self, username: str) -> Any:
        from roleplay.errors import NotFoundError

        try:
            return self.context.store.person(username)
        except NotFoundError:
            return None

    def _page(self, status: int, body: str, data: dict[str, str] | None = None) -> Response:
        from starlette.responses import HTMLResponse

        nonce = secrets.token_urlsafe(16)
        page = fill_page("link.html", nonce=nonce, body=body, script=data_file("link.js").decode("utf-8"),
                         data=json.dumps(data or {}).replace("<", "\\u003c"))
        policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
                  "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
        return HTMLResponse(page, status_code=status, headers={
            "Content-Security-Policy": policy, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    def _problem(self, status: int) -> Response:
        heading, text = _PROBLEMS[status]
        return self._page(status, f"<h1>{heading}</h1><p>{text}</p>")

    async def link_page(self, request: Request) -> Response:
        """The page a course opens: sign in, then confirm the link (the confirmation is a click, never a GET)."""
        from starlette.concurrency import run_in_threadpool

        query = request.query_params
        package, student, name, origin = (query.get(k, "") for k in ("package", "student", "name", "origin"))
        try:
            target = await run_in_threadpool(self._target, package)
        except RoleplayError:
            log.exception("SCORM links cannot be checked")
            return self._problem(503)
        if target is None:
            return self._problem(404)
        if not student or len(student) > MAX_FIELD or len(name) > MAX_FIELD or not valid_origin(origin):
            return self._problem(400)
        scenario = target[0]
        user = await signed_in_user(request)
        person = await run_in_threadpool(self._person, user) if user else None
        data = {"package": package, "student": student, "origin": origin,
                "practice": "../?" + urlencode({"scenario": scenario.id, "level": PRACTICE_LEVEL})}
        if person is None:
            return self._page(200, fill_page("link-signin.html", title=scenario.title), data)
        if person.role != "learner":
            return self._page(200, fill_page("link-role.html", user=person.username, role=person.role), data)
        return self._page(200, fill_page("link-confirm.html", title=scenario.title, display=person.display_name,
                                         user=person.username, origin=origin, name=name or student, student=student,
                                         days=str(TOKEN_TTL // 86400)), data)

    async def link(self, request: Request) -> Response:
        """Issue the token for the signed-in learner (JSON, same origin only: a cross-site page cannot ask)."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        headers = {"Cache-Control": "no-store"}
        if (not same_origin(request, self.context.settings.public_url)
                or request.headers.get("content-type", "").split(";")[0] != "application/json"):
            return JSONResponse({"error": "links are made on roleplay's own page"}, 403, headers)
        try:
            body = await request.json()
        except ValueError:
            body = None
        fields = [body.get(k) if isinstance(body, dict) else None for k in ("package", "student", "origin")]
        if not all(isinstance(v, str) and v for v in fields):
            return JSONResponse({"error": "send package, student and origin"}, 400, headers)
        package, student, origin = (str(v) for v in fields)
        user = await signed_in_user(request)
        person = await run_in_threadpool(self._person, user) if user else None
        if person is None:
            return JSONResponse({"error": "sign in to roleplay first"}, 401, headers)
        if person.role != "learner":
            return JSONResponse({"error": f"'{person.username}' is a {person.role}; sign in as a learner"}, 403,
                                headers)
        try:
            target = await run_in_threadpool(self._target, package)
        except RoleplayError:
            log.exception("SCORM links cannot be made")
            return JSONResponse({"error": "roleplay cannot make course links just now"}, 503, headers)
        if target is None or len(student) > MAX_FIELD or not valid_origin(origin):
            return JSONResponse({"error": "this course package is not one of this app's"}, 400, headers)
        return JSONResponse({"token": issue_token(self.key, package, student, person.username, origin)}, 200, headers)

    async def result(self, request: Request) -> Response:
        """The learner's approved result for a token's package and student; any doubt is the same 401."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        headers = {"Cache-Control": "no-store", "Vary": "Origin"}
        origin = request.headers.get("origin")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        package, student = request.query_params.get("package", ""), request.query_params.get("student", "")
        try:
            link = read_token(self.key, token.strip(), package, student) if scheme.lower() == "bearer" else None
            target = await run_in_threadpool(self._target, package) if link is not None else None
            if link is None or target is None or (origin is not None and origin != link.origin):
                return JSONResponse(REFUSED, 401, headers)
            answer = await run_in_threadpool(self._result, link.learner, *target)
        except RoleplayError:
            log.exception("SCORM results cannot be read")
            return JSONResponse({"error": "roleplay cannot answer just now; try again later"}, 503, headers)
        return JSONResponse(answer, 200, headers) if answer is not None else JSONResponse(REFUSED, 401, headers)

    def _result(self, learner: str, scenario: Scenario, rubric: Rubric) -> dict[str, Any] | None:
        if self._person(learner) is None:  # removed since the link was made
            return None
        return scorm_result(self.context.reviews, learner, scenario.id, rubric)
