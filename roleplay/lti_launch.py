"""PyLTI1p3 adapted to Starlette (the library ships Django and Flask adapters only): the registrations, the
request, its cookies, nonces kept in the database, the OIDC login and the launch checks, each refusal one line.

`Launch.validate` checks, in order: the browser's state cookie, the registration (issuer, then audience), the
signature and times against the platform's JWKS, the deployment, the message, and last the nonce, which a launch
that passed everything else uses up (so a forged token cannot burn a real one and a replay is refused).
"""

from __future__ import annotations

import html
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jwt
import requests
from pylti1p3.cookie import CookieService
from pylti1p3.deployment import Deployment
from pylti1p3.exception import LtiException
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.oidc_login import OIDCLogin
from pylti1p3.redirect import Redirect
from pylti1p3.registration import Registration
from pylti1p3.request import Request
from pylti1p3.session import SessionService
from pylti1p3.tool_config.abstract import ToolConfAbstract
from sqlalchemy import delete
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, RedirectResponse, Response

from roleplay.lti_config import LtiError, Platform, ToolKeys
from roleplay.models import LtiState, utcnow

if TYPE_CHECKING:
    from roleplay.store import Store

HTTP_TIMEOUT = 10.0  # seconds for each call to a platform (keys, token, scores)
NONCE_SECONDS = 600  # a login must come back as a launch within this time
LEEWAY = 60  # seconds of clock difference allowed on exp / iat
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"


# --- PyLTI1p3 adapted to Starlette ------------------------------------------------------------------------------

class TimedSession(requests.Session):
    """A requests session whose every call has a timeout (PyLTI1p3 passes none)."""

    def __init__(self, timeout: float = HTTP_TIMEOUT) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = "roleplay-lti"

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send with the session's timeout unless one is given."""
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


class ToolConfig(ToolConfAbstract[Request]):
    """The registrations PyLTI1p3 looks up: the platforms file and the tool's keys (every issuer may have several
    client ids)."""

    def __init__(self, platforms: list[Platform], keys: ToolKeys) -> None:
        super().__init__()
        self.platforms = platforms
        self.keys = keys

    def check_iss_has_one_client(self, iss: str) -> bool:
        """Never: every issuer is looked up with the client id too."""
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        """Always (see `check_iss_has_one_client`)."""
        return True

    def platform(self, iss: str, client_id: str | None) -> Platform | None:
        """The registration of `iss` with `client_id` (the only one of `iss` when no client id is given)."""
        mine = [p for p in self.platforms if p.issuer == iss]
        if client_id:
            return next((p for p in mine if p.client_id == client_id), None)
        return mine[0] if len(mine) == 1 else None

    def knows_issuer(self, iss: str) -> bool:
        """Whether any registration has this issuer."""
        return any(p.issuer == iss for p in self.platforms)

    def registration(self, platform: Platform) -> Registration:
        """PyLTI1p3's view of a platform, with the tool's keys."""
        reg = (Registration().set_issuer(platform.issuer).set_client_id(platform.client_id)
               .set_auth_login_url(platform.auth_login_url).set_auth_token_url(platform.auth_token_url)
               .set_key_set_url(platform.key_set_url).set_tool_private_key(self.keys.private_pem)
               .set_tool_public_key(self.keys.public_pem))
        if platform.auth_audience:
            reg.set_auth_audience(platform.auth_audience)
        return reg

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration | None:
        """The registration of an issuer with one client id, or None."""
        found = self.platform(iss, None)
        return self.registration(found) if found else None

    def find_registration_by_params(self, iss: str, client_id: str, *args: Any, **kwargs: Any) -> Registration | None:
        """The registration of an issuer and client id, or None."""
        found = self.platform(iss, client_id)
        return self.registration(found) if found else None

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        """A deployment of an issuer with one client id, or None."""
        return self.find_deployment_by_params(iss, deployment_id, "")

    def find_deployment_by_params(self, iss: str, deployment_id: str, client_id: str, *args: Any,
                                  **kwargs: Any) -> Deployment | None:
        """A deployment listed for the issuer and client id, or None."""
        found = self.platform(iss, client_id)
        if found is None or deployment_id not in found.deployment_ids:
            return None
        return Deployment().set_deployment_id(deployment_id)

    def get_jwks(self, iss: str | None = None, client_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The tool's public keys (one key for every platform)."""
        return {"keys": [self.keys.jwk]}


class StarletteRequest(Request):
    """A Starlette request as PyLTI1p3 reads it: query and form parameters, cookies, https or not."""

    def __init__(self, request: HttpRequest, params: dict[str, str]) -> None:
        self.request = request
        self.params = params
        self._session: dict[str, Any] = {}

    @property
    def session(self) -> dict[str, Any]:
        return self._session  # unused: StoredSessions keeps nonces in the database

    def is_secure(self) -> bool:
        return self.request.url.scheme == "https"

    def get_param(self, key: str) -> str:
        return self.params.get(key, "")

    def cookie(self, name: str) -> str | None:
        """A cookie the browser sent."""
        return self.request.cookies.get(name)


class StarletteCookies(CookieService):
    """Cookies PyLTI1p3 reads from the request and sets on the response (`apply`)."""

    def __init__(self, request: StarletteRequest) -> None:
        self.request = request
        self.pending: list[tuple[str, str, int | None]] = []

    def _key(self, name: str) -> str:
        return f"{self._cookie_prefix}-{name}"

    def get_cookie(self, name: str) -> str | None:
        return self.request.cookie(self._key(name))

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        self.pending.append((self._key(name), str(value), exp))

    def apply(self, response: Response) -> Response:
        """Set the cookies on `response`: SameSite=None and Secure over https (the launch is a cross-site POST from
        the platform), SameSite=Lax over plain http."""
        secure = self.request.is_secure()
        for key, value, exp in self.pending:
            response.set_cookie(key, value, max_age=exp, path="/", httponly=True, secure=secure,
                                samesite="none" if secure else "lax")
        return response


class StateStore:
    """Short-lived values in the database (`lti_states`), each taken at most once, across processes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, key: str, value: dict[str, Any], seconds: int) -> None:
        """Keep `value` under `key` for `seconds`; expired values are cleared on the way."""
        now = utcnow()
        with self.store.session() as db:
            db.execute(delete(LtiState).where(LtiState.expires_at < now))
            db.add(LtiState(key=key, value=value, expires_at=now + timedelta(seconds=seconds)))

    def take(self, key: str) -> dict[str, Any] | None:
        """The value under `key`, removed; None when it was never put, is used up or has expired."""
        with self.store.session() as db:
            row = db.get(LtiState, key)
            if row is None:
                return None
            value, expires = dict(row.value), row.expires_at
            if db.execute(delete(LtiState).where(LtiState.key == key)).rowcount != 1:
                return None  # another request took it first
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=utcnow().tzinfo)
        return value if expires >= utcnow() else None


class StoredSessions(SessionService):
    """PyLTI1p3's session service on the database: a nonce is issued at login and used up by one launch."""

    def __init__(self, request: StarletteRequest, states: StateStore) -> None:
        super().__init__(request)
        self.states = states

    def save_nonce(self, nonce: str) -> None:
        self.states.put(f"nonce:{nonce}", {}, NONCE_SECONDS)

    def check_nonce(self, nonce: str) -> bool:
        return self.states.take(f"nonce:{nonce}") is not None

    def save_launch_data(self, key: str, jwt_body: Any) -> None:
        """Launches are stored as `LtiLaunch` rows instead."""

    def get_launch_data(self, key: str) -> Any:
        return {}

    def set_state_valid(self, state: str, id_token_hash: str) -> None:
        """Never: a launch is not accepted twice."""

    def check_state_is_valid(self, state: str, id_token_hash: str) -> bool:
        return False

    def save_state_params(self, state: str, params: Any) -> None:
        """Not used."""

    def get_state_params(self, state: str) -> Any:
        return {}


class _Redirect(Redirect[Response]):
    def __init__(self, location: str) -> None:
        self.location = location

    def do_redirect(self) -> Response:
        return RedirectResponse(self.location, status_code=302)

    def do_js_redirect(self) -> Response:
        target = html.escape(self.location, quote=True)
        return HTMLResponse(f'<script>window.location.href = {json.dumps(self.location)};</script>'
                            f'<a href="{target}">Continue</a>')

    def set_redirect_url(self, location: str) -> None:
        self.location = location

    def get_redirect_url(self) -> str:
        return self.location


class Login(OIDCLogin[StarletteRequest, ToolConfig, StoredSessions, StarletteCookies, Response]):
    """OIDC login initiation: the redirect to the platform's authorisation endpoint."""

    def get_redirect(self, url: str) -> Redirect[Response]:
        return _Redirect(url)


def _refused(message: str, status: int = 401) -> LtiError:
    return LtiError(f"launch refused: {message}; start again from the LMS", status)


class Launch(MessageLaunch[StarletteRequest, ToolConfig, StoredSessions, StarletteCookies]):
    """A launch message checked in full, each refusal one line: the browser's state, the registration (issuer and
    audience), the signature and times against the platform's keys, the deployment, the message, then the nonce
    (used up only by a launch that passed everything else, so a forged token cannot burn a real one)."""

    def _get_request_param(self, key: str) -> str:
        return self._request.get_param(key)

    def validate(self) -> Launch:
        if self._restored:
            raise LtiException("Can't validate restored launch")
        self._validated = True
        try:
            self.validate_state().validate_jwt_format().validate_registration().validate_jwt_signature()
            self.validate_deployment().validate_message().validate_nonce()
        except Exception:
            self._validated = False
            raise
        return self

    def validate_state(self) -> Launch:
        state = self._get_request_param("state")
        if not state or not self._get_request_param("id_token"):
            raise _refused("the POST has no state or id_token (open the tool from the LMS, not by its URL)", 400)
        if self._cookie_service.get_cookie(state) != state:
            raise _refused("this browser did not start the sign-in (the state cookie is missing or different; "
                           "serve roleplay over https so the browser keeps it inside the LMS's frame)")
        return self

    def validate_jwt_format(self) -> Launch:
        try:
            return super().validate_jwt_format()
        except LtiException:
            raise _refused("the id_token is not a JWT", 400) from None

    def validate_registration(self) -> Launch:
        body = self._get_jwt_body()
        iss, aud = str(body.get("iss") or ""), body.get("aud")
        client_id = str((aud[0] if aud else "") if isinstance(aud, list) else (aud or ""))
        config = self._tool_config
        if not config.knows_issuer(iss):
            raise _refused(f"unknown platform: issuer {iss!r} is not in ROLEPLAY_LTI_CONFIG", 403)
        platform = config.platform(iss, client_id)
        if platform is None:
            raise _refused(f"wrong audience: the token is for client id {client_id!r}, which is not registered for "
                           f"issuer {iss} in ROLEPLAY_LTI_CONFIG")
        self._registration = config.registration(platform)
        return self

    def validate_jwt_signature(self) -> Launch:
        assert self._registration is not None
        try:
            public_key, alg = self.get_public_key()
        except LtiException as exc:
            raise _refused(f"no key of the platform's JWKS ({self._registration.get_key_set_url()}) matches the "
                           f"token ({exc})") from None
        try:
            jwt.decode(self._get_id_token(), public_key, algorithms=[alg], audience=self._registration.get_client_id(),
                       issuer=self._registration.get_issuer(), leeway=LEEWAY,
                       options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
        except jwt.ExpiredSignatureError:
            raise _refused("the id_token has expired (check that the LMS's and this server's clocks agree)") from None
        except jwt.InvalidSignatureError:
            raise _refused("bad signature: the id_token was not signed by the platform's keys") from None
        except jwt.InvalidAudienceError:
            raise _refused("wrong audience: the id_token is not addressed to this tool's client id") from None
        except jwt.ImmatureSignatureError:
            raise _refused("the id_token was issued in the future (check the clocks)") from None
        except jwt.InvalidTokenError as exc:
            raise _refused(f"the id_token is invalid ({exc})") from None
        return self

    def fetch_public_key(self, key_set_url: str) -> Any:
        """The platform's JWKS, fetched for each launch (so a rotated key is picked up at once)."""
        try:
            reply = self._requests_session.get(key_set_url)
            reply.raise_for_status()
            keys = reply.json()
        except (requests.RequestException, ValueError) as exc:
            raise LtiError(f"launch refused: cannot read the platform's keys at {key_set_url} ({type(exc).__name__}); "
                           "check key_set_url in ROLEPLAY_LTI_CONFIG", 502) from None
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
            raise LtiError(f"launch refused: {key_set_url} is not a JWKS (no list of keys); check key_set_url in "
                           "ROLEPLAY_LTI_CONFIG", 502)
        return keys

    def validate_deployment(self) -> Launch:
        deployment = str(self._get_jwt_body().get(CLAIM + "deployment_id") or "")
        if self._tool_config.find_deployment_by_params(self.get_iss(), deployment, self.get_client_id()) is None:
            raise _refused(f"unknown deployment {deployment!r} of issuer {self.get_iss()}: add it to its "
                           "deployment_ids in ROLEPLAY_LTI_CONFIG", 403)
        return self

    def validate_message(self) -> Launch:
        try:
            return super().validate_message()
        except LtiException as exc:
            raise _refused(f"the launch message is incomplete ({exc})", 400) from None

    def validate_nonce(self) -> Launch:
        nonce = str(self._get_jwt_body().get("nonce") or "")
        if not nonce or not self._session_service.check_nonce(nonce):
            raise _refused("this launch was already used, or its sign-in expired (replayed nonce)")
        return self
