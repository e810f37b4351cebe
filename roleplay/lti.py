"""LMS launch (LTI 1.3, with PyLTI1p3): OIDC login, launch, the learner's account, deep linking, the routes.

A platform (Moodle, Canvas, ...) starts an OIDC login at `/lti/login`; the browser comes back with a signed id_token
to `/lti/launch` (checked by `roleplay.lti_launch`). A valid resource-link launch maps the person (platform issuer +
`sub`) to a roleplay learner, created on their first launch without a password, signs them in to the web app with
Gradio's own sign-in (a token in `app.tokens` and its access-token cookie) and opens the Practice page on the
scenario the link names (custom parameters `scenario` and, optionally, `level`). A deep-linking launch shows the
scenarios; the chosen ones go back to the platform as LtiResourceLink items (`/lti/deep-link`). Each launch is
stored with its grade book line item, so that an approved score goes back to the LMS (`roleplay.lti_grades`). The
platforms file and the tool's keys are in `roleplay.lti_config`.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from pylti1p3.deep_link import DeepLink
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import OIDCException
from pylti1p3.lineitem import LineItem
from sqlalchemy import select
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from roleplay.errors import RoleplayError, StoreError
from roleplay.lti_config import LtiError, Platform, ToolKeys, load_or_create_keys, load_platforms
from roleplay.lti_launch import (
    CLAIM,
    Launch,
    Login,
    StarletteCookies,
    StarletteRequest,
    StateStore,
    StoredSessions,
    TimedSession,
    ToolConfig,
)
from roleplay.models import LtiLaunch, LtiLink, Person, Role
from roleplay.scenario import LEVELS
from roleplay.store import find_person

if TYPE_CHECKING:
    from roleplay.context import AppContext
    from roleplay.store import Store

__all__ = ["LtiError", "LtiTool", "Platform", "lti_username", "routes", "sign_in"]

log = logging.getLogger(__name__)

DEFAULT_LEVEL = "intermediate"  # the Practice page's own default; a link may set custom parameter `level`
DEEP_LINK_SECONDS = 3600  # an instructor picks scenarios within this time
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
DL_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"


# --- the tool -------------------------------------------------------------------------------------------------

def lti_username(issuer: str, sub: str) -> str:
    """The stable roleplay username of someone of a platform: `<sub>@<platform host>` (a digest of `sub` when it
    is long or has characters a username should not)."""
    host = (urlparse(issuer).hostname or "lms")[:40]
    part = sub if re.fullmatch(r"[A-Za-z0-9._-]{1,50}", sub) else hashlib.sha256(sub.encode()).hexdigest()[:16]
    return f"{part}@{host}"


def display_name(claims: dict[str, Any], fallback: str) -> str:
    """The person's name as the platform gives it (name, else given + family name), else `fallback`."""
    name = str(claims.get("name") or " ".join(str(claims.get(k) or "") for k in ("given_name", "family_name"))).strip()
    return " ".join(name.split())[:200] or fallback


@dataclass(frozen=True)
class LaunchResult:
    """What a valid launch leads to: a signed-in learner on a scenario, or a scenario choice for an instructor."""

    username: str | None = None
    scenario_id: str | None = None
    level: str = DEFAULT_LEVEL
    deep_link: str | None = None  # the stored deep-linking request's id


class LtiTool:
    """roleplay as an LTI 1.3 tool of the platforms in ROLEPLAY_LTI_CONFIG, on the app context's store and catalog.

    Args:
        context: The app context.
    """

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.states: StateStore | None = None  # on first use: building the routes opens no database
        self._platforms: tuple[float, list[Platform]] | None = None

    @property
    def store(self) -> Store:
        """The database."""
        return self.context.store

    def _states(self) -> StateStore:
        if self.states is None:
            self.states = StateStore(self.store)
        return self.states

    @cached_property
    def keys(self) -> ToolKeys:
        """The tool's key pair (created on first use)."""
        return load_or_create_keys(self.context.settings.data_dir)

    def platforms(self) -> list[Platform]:
        """The registered platforms, read again when the file changed.

        Raises:
            LtiError: ROLEPLAY_LTI_CONFIG is not set (404); ConfigError: the file is wrong.
        """
        path = self.context.settings.lti_config
        if path is None:
            raise LtiError("LMS launch is not set up here: set ROLEPLAY_LTI_CONFIG to the platforms file "
                           "(see 'LMS launch (LTI 1.3)' in the README)", 404)
        try:
            mtime = Path(path).expanduser().stat().st_mtime
        except OSError:
            mtime = -1.0
        if self._platforms is None or self._platforms[0] != mtime:
            self._platforms = (mtime, load_platforms(path))
        return self._platforms[1]

    def config(self) -> ToolConfig:
        """PyLTI1p3's tool configuration."""
        return ToolConfig(self.platforms(), self.keys)

    def url(self, request: HttpRequest, name: str) -> str:
        """The address of one of the tool's routes: under ROLEPLAY_PUBLIC_URL when it is set (the address the LMS
        knows, e.g. behind a proxy), else as this request reached the app."""
        base = (self.context.settings.public_url or "").strip().rstrip("/")
        return base + request.app.url_path_for(name) if base else str(request.url_for(name))

    # -- login and launch --------------------------------------------------------------------------------------
    def login(self, request: HttpRequest, params: dict[str, str]) -> Response:
        """Answer an OIDC login initiation with the redirect to the platform's authorisation endpoint."""
        if not params.get("iss") or not params.get("login_hint"):
            raise LtiError("login refused: iss and login_hint are required (start from the LMS)")
        config = self.config()
        iss, client_id = params["iss"], params.get("client_id") or None
        if not config.knows_issuer(iss):
            raise LtiError(f"login refused: unknown platform: issuer {iss!r} is not in ROLEPLAY_LTI_CONFIG", 403)
        if config.platform(iss, client_id) is None:
            raise LtiError(f"login refused: client id {client_id!r} is not registered for issuer {iss} in "
                           "ROLEPLAY_LTI_CONFIG" if client_id else f"login refused: issuer {iss} has several client "
                           "ids in ROLEPLAY_LTI_CONFIG and the LMS sent none; make it send client_id", 403)
        req = StarletteRequest(request, params)
        cookies = StarletteCookies(req)
        login = Login(req, config, StoredSessions(req, self._states()), cookies)
        try:
            response = login.redirect(self.url(request, "lti-launch"))
        except OIDCException as exc:
            raise LtiError(f"login refused: {exc}") from None
        return cookies.apply(response)

    def launch(self, request: HttpRequest, params: dict[str, str]) -> LaunchResult:
        """Check a launch; sign a resource-link launch's person in as a learner, or keep a deep-linking request.

        Raises:
            LtiError: the launch is refused (nothing is stored, no account created).
        """
        req = StarletteRequest(request, params)
        launch = Launch(req, self.config(), StoredSessions(req, self._states()), StarletteCookies(req),
                        requests_session=TimedSession())
        launch.validate()
        claims: dict[str, Any] = dict(launch.get_launch_data())
        if launch.is_deep_link_launch():
            return LaunchResult(deep_link=self._keep_deep_link(launch, claims))
        if not launch.is_resource_launch():
            raise LtiError("launch refused: only resource-link and deep-linking launches open roleplay", 400)
        scenario = str((claims.get(CLAIM + "custom") or {}).get("scenario") or "").strip() or None
        if scenario is not None and scenario not in self.context.catalog.scenarios:
            raise LtiError(f"this LMS link names scenario {scenario!r}, which is not in roleplay's library; edit the "
                           "link (or add it again with deep linking) to pick an existing scenario", 404)
        username = self._record(launch.get_iss(), launch.get_client_id(), claims, scenario)
        level = str((claims.get(CLAIM + "custom") or {}).get("level") or "").strip().lower()
        return LaunchResult(username=username, scenario_id=scenario, level=level if level in LEVELS else DEFAULT_LEVEL)

    def _record(self, issuer: str, client_id: str, claims: dict[str, Any], scenario: str | None) -> str:
        """Map the launch's person to their learner account (created on their first launch) and store the launch,
        in one transaction; returns the username."""
        sub = str(claims["sub"])
        ags = claims.get(AGS_CLAIM) or {}
        for attempt in (1, 2):
            try:
                with self.store.session() as db:
                    link = db.scalar(select(LtiLink).where(LtiLink.issuer == issuer, LtiLink.sub == sub))
                    if link is None:
                        username = lti_username(issuer, sub)
                        if find_person(db, username) is not None:  # taken by someone else: the issuer tells apart
                            username = f"{username}~{hashlib.sha256(issuer.encode()).hexdigest()[:6]}"
                        person = Person(username=username, display_name=display_name(claims, username),
                                        role=Role.LEARNER, password_hash=None)
                        db.add(person)
                        db.flush()
                        link = LtiLink(issuer=issuer, sub=sub, person_id=person.id)
                        db.add(link)
                        db.flush()
                        log.info("lti: new learner %s for %s of %s", username, sub, issuer)
                    else:
                        person = db.get(Person, link.person_id)
                    db.add(LtiLaunch(link_id=link.id, person_id=person.id, client_id=client_id,
                                     deployment_id=str(claims.get(CLAIM + "deployment_id")), scenario_id=scenario,
                                     resource_link_id=(claims.get(CLAIM + "resource_link") or {}).get("id"),
                                     lineitem=ags.get("lineitem"), lineitems=ags.get("lineitems"),
                                     scopes=[str(s) for s in ags.get("scope") or []]))
                    return person.username
            except StoreError:
                if attempt == 2:
                    raise  # the first launch of one person in two tabs at once: the second finds the link
        raise AssertionError("unreachable")

    # -- deep linking ----------------------------------------------------------------------------------------
    def _keep_deep_link(self, launch: Launch, claims: dict[str, Any]) -> str:
        request_id = secrets.token_urlsafe(24)
        self._states().put(f"deep-link:{request_id}", {
            "iss": launch.get_iss(), "client_id": launch.get_client_id(),
            "deployment_id": str(claims.get(CLAIM + "deployment_id")), "settings": dict(claims.get(DL_CLAIM) or {})},
            DEEP_LINK_SECONDS)
        return request_id

    def chooser(self, request_id: str, action: str) -> str:
        """The page on which an instructor picks the scenario(s) to add to the course (posted to `action`)."""
        scenarios = sorted(self.context.catalog.scenarios.values(), key=lambda s: s.title)
        items = "".join(
            f'<li><label><input type="checkbox" name="scenario" value="{html.escape(s.id, quote=True)}"> '
            f'<b>{html.escape(s.title)}</b> <small>({html.escape(s.id)})</small></label></li>' for s in scenarios)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>Add a roleplay scenario</title></head><body>"
                f"<h1>Add roleplay scenarios to the course</h1>"
                f"<form method='post' action='{html.escape(action, quote=True)}'>"
                f"<input type='hidden' name='request' value='{html.escape(request_id, quote=True)}'>"
                f"<ul id='scenarios'>{items}</ul><button type='submit'>Add</button></form></body></html>")

    def deep_link_response(self, request: HttpRequest, request_id: str, chosen: list[str]) -> str:
        """The auto-submitting form that returns the chosen scenarios to the platform as a signed JWT.

        Raises:
            LtiError: the request is unknown, used or expired, or no known scenario was chosen.
        """
        scenarios = self.context.catalog.scenarios
        unknown = [c for c in chosen if c not in scenarios]
        if unknown or not chosen:
            raise LtiError("pick at least one scenario of the list" if not unknown
                           else f"scenario {unknown[0]!r} is not in roleplay's library; pick one of the list")
        stored = self._states().take(f"deep-link:{request_id}")
        if stored is None:
            raise LtiError("this scenario choice was already sent or has expired; open the selection again from "
                           "the LMS", 410)
        platform = self.config().platform(stored["iss"], stored["client_id"])
        if platform is None:
            raise LtiError(f"platform {stored['iss']} is no longer in ROLEPLAY_LTI_CONFIG", 403)
        settings = stored["settings"]
        if str(settings.get("accept_multiple", True)).lower() == "false":
            chosen = chosen[:1]
        launch_url = self.url(request, "lti-launch")
        items = [DeepLinkResource().set_url(launch_url).set_title(scenarios[c].title)
                 .set_custom_params({"scenario": c})
                 .set_lineitem(LineItem().set_score_maximum(1).set_label(scenarios[c].title).set_resource_id(c))
                 for c in chosen]
        link = DeepLink(self.config().registration(platform), stored["deployment_id"], settings)
        token = link.get_response_jwt(items)
        action = html.escape(str(settings.get("deep_link_return_url") or ""), quote=True)
        return (f"<!doctype html><html><body><form id='lti-deep-link' action='{action}' method='post'>"
                f"<input type='hidden' name='JWT' value='{html.escape(token, quote=True)}'>"
                f"<noscript><button type='submit'>Return to the LMS</button></noscript></form>"
                f"<script>document.getElementById('lti-deep-link').submit();</script></body></html>")


# --- HTTP ------------------------------------------------------------------------------------------------------

async def _params(request: HttpRequest) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method == "POST":
        form = await request.form()
        params.update({k: v for k, v in form.multi_items() if isinstance(v, str)})
    return params


def _fail(exc: Exception, what: str) -> Response:
    if isinstance(exc, LtiError):
        log.info("lti %s: %s", what, exc)  # what an operator setting up an LMS looks for
        return PlainTextResponse(str(exc), status_code=exc.status)
    if isinstance(exc, RoleplayError):
        log.warning("lti %s: %s", what, exc)
        return PlainTextResponse(str(exc).splitlines()[0], status_code=503)
    log.error("lti %s failed", what, exc_info=exc)
    return PlainTextResponse(f"the {what} could not be completed because of a server problem; try again from the "
                             "LMS, and tell your administrator if it keeps happening", status_code=500)


def sign_in(request: HttpRequest, username: str, target: str) -> Response:
    """Sign `username` in to the Gradio app as its own /login does (a token in `app.tokens`, the access-token
    cookies) and redirect to `target`."""
    app = request.app
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return PlainTextResponse("sign-in is not available on this server (the web app is not running here)", 503)
    token = secrets.token_urlsafe(16)
    tokens[token] = username
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(f"access-token-{cookie_id}", token, httponly=True, samesite="none", secure=True)
    response.set_cookie(f"access-token-unsecure-{cookie_id}", token, httponly=True)
    return response


def routes(context: AppContext) -> list[BaseRoute]:
    """The LTI routes: `/lti/login`, `/lti/launch`, `/lti/jwks` and `/lti/deep-link`."""
    tool = LtiTool(context)

    async def login(request: HttpRequest) -> Response:
        try:
            params = await _params(request)
            return await asyncio.to_thread(tool.login, request, params)
        except Exception as exc:  # noqa: BLE001 - every failure is one line to the browser
            return _fail(exc, "LMS sign-in")

    async def launch(request: HttpRequest) -> Response:
        try:
            params = await _params(request)
            result = await asyncio.to_thread(tool.launch, request, params)
        except Exception as exc:  # noqa: BLE001
            return _fail(exc, "LMS launch")
        if result.deep_link is not None:
            chooser = await asyncio.to_thread(tool.chooser, result.deep_link, tool.url(request, "lti-deep-link"))
            return HTMLResponse(chooser)
        root = request.scope.get("root_path", "").rstrip("/")
        target = f"{root}/" + (f"?{urlencode({'scenario': result.scenario_id, 'level': result.level})}"
                               if result.scenario_id else "")
        return sign_in(request, str(result.username), target)

    async def jwks(request: HttpRequest) -> Response:
        try:
            key = await asyncio.to_thread(lambda: tool.keys.jwk)
        except Exception as exc:  # noqa: BLE001
            return _fail(exc, "key set")
        return JSONResponse({"keys": [key]})

    async def deep_link(request: HttpRequest) -> Response:
        try:
            form = await request.form()
            chosen = [str(v) for v in form.getlist("scenario") if isinstance(v, str)]
            page = await asyncio.to_thread(tool.deep_link_response, request, str(form.get("request") or ""), chosen)
        except Exception as exc:  # noqa: BLE001
            return _fail(exc, "scenario choice")
        return HTMLResponse(page)

    return [Route("/lti/login", login, methods=["GET", "POST"], name="lti-login"),
            Route("/lti/launch", launch, methods=["POST"], name="lti-launch"),
            Route("/lti/jwks", jwks, methods=["GET"], name="lti-jwks"),
            Route("/lti/deep-link", deep_link, methods=["POST"], name="lti-deep-link")]
