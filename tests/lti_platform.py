"""A small LTI 1.3 platform for the tests, over real HTTP on 127.0.0.1: its own RSA keys and JWKS, an OIDC
authorisation endpoint that answers a tool's login with a signed id_token (auto-posting form, as an LMS does), an
OAuth2 token endpoint that checks the tool's client assertion against the tool's JWKS, an AGS line item with a scores
endpoint, a line items container, and a deep-linking return endpoint that checks the tool's signed response.

Tests steer it: `claims_hook` changes the next id_token's claims, `sign_key` signs with another key, `fail_scores`
makes the next score posts fail with 503.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
SCOPES = ["https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
          "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
          "https://purl.imsglobal.org/spec/lti-ags/scope/score"]
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


def new_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Received:
    """What the platform was sent."""

    scores: list[dict[str, Any]] = field(default_factory=list)  # each score's JSON, with "_path" and "_type"
    token_requests: list[dict[str, Any]] = field(default_factory=list)  # decoded client assertions and scopes
    deep_links: list[dict[str, Any]] = field(default_factory=list)  # decoded deep-linking responses
    lineitems: list[dict[str, Any]] = field(default_factory=list)  # line items the tool created
    errors: list[str] = field(default_factory=list)  # what the platform refused, and why


class LtiPlatform:
    """The platform: start it, point the tool at `config_entry()`, and launch with `login_url(...)`.

    Args:
        client_id: The tool's client id here.
        deployment_id: The tool's deployment here.
    """

    def __init__(self, client_id: str = "roleplay-tool", deployment_id: str = "deploy-1") -> None:
        self.client_id = client_id
        self.deployment_id = deployment_id
        self.key = new_key()
        self.kid = "platform-key-1"
        self.sign_key: rsa.RSAPrivateKey | None = None  # sign the next id_tokens with this instead
        self.claims_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.fail_scores = 0
        self.tool_url = ""  # set once the tool is running: where its /lti/jwks is
        self.got = Received()
        self.tokens: set[str] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.platform = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- life ----------------------------------------------------------------------------------------------------
    def __enter__(self) -> LtiPlatform:
        self.thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def issuer(self) -> str:
        """The platform's issuer."""
        return self.url

    @property
    def lineitem(self) -> str:
        """The line item every resource launch names."""
        return f"{self.url}/lineitems/7/lineitem"

    def config_entry(self, **changes: Any) -> dict[str, Any]:
        """This platform as an entry of the tool's platforms file."""
        entry = {"issuer": self.issuer, "client_id": self.client_id, "deployment_ids": [self.deployment_id],
                 "auth_login_url": f"{self.url}/auth", "auth_token_url": f"{self.url}/token",
                 "key_set_url": f"{self.url}/jwks", "name": "Test LMS"}
        entry.update(changes)
        return entry

    def jwks(self) -> dict[str, Any]:
        """The platform's public keys."""
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def login_url(self, sub: str = "1001", message: str = "resource", scenario: str | None = "missed-deadlines",
                  iss: str | None = None, **extra: str) -> str:
        """The tool's login initiation, as an LMS starts it for `sub` (message: resource or deep-link)."""
        hint = json.dumps({"message": message, "scenario": scenario})
        params = {"iss": iss or self.issuer, "login_hint": sub, "lti_message_hint": hint,
                  "target_link_uri": f"{self.tool_url}/lti/launch", "client_id": self.client_id, **extra}
        return f"{self.tool_url}/lti/login?{urlencode(params)}"

    # -- what the endpoints do ----------------------------------------------------------------------------------
    def id_token(self, query: dict[str, str]) -> str:
        """The signed id_token answering an authorisation request."""
        hint = json.loads(query.get("lti_message_hint") or "{}")
        sub = query["login_hint"]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": query["client_id"], "sub": sub, "iat": now, "exp": now + 300,
            "nonce": query["nonce"], "name": f"Learner {sub}", "given_name": "Learner", "family_name": sub,
            CLAIM + "version": "1.3.0", CLAIM + "deployment_id": self.deployment_id,
            CLAIM + "target_link_uri": query["redirect_uri"],
        }
        if hint.get("message") == "deep-link":
            claims.update({CLAIM + "message_type": "LtiDeepLinkingRequest", CLAIM + "roles": [INSTRUCTOR],
                           DL: {"deep_link_return_url": f"{self.url}/deep-link-return",
                                "accept_types": ["ltiResourceLink"], "data": "opaque-42",
                                "accept_presentation_document_targets": ["iframe", "window"], "accept_multiple": True}})
        else:
            claims.update({CLAIM + "message_type": "LtiResourceLinkRequest", CLAIM + "roles": [LEARNER],
                           CLAIM + "resource_link": {"id": f"link-{hint.get('scenario')}"},
                           AGS: {"scope": SCOPES, "lineitem": self.lineitem, "lineitems": f"{self.url}/lineitems"}})
            if hint.get("scenario"):
                claims[CLAIM + "custom"] = {"scenario": hint["scenario"]}
        if self.claims_hook is not None:
            claims = self.claims_hook(claims)
        return jwt.encode(claims, self.sign_key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def tool_claims(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a JWT the tool signed, checked against the tool's JWKS (fetched over HTTP)."""
        with urllib.request.urlopen(f"{self.tool_url}/lti/jwks", timeout=10) as reply:  # noqa: S310 - localhost
            keys = json.load(reply)["keys"]
        kid = jwt.get_unverified_header(token).get("kid")
        jwk = next(k for k in keys if k.get("kid") == kid)
        return jwt.decode(token, RSAAlgorithm.from_jwk(json.dumps(jwk)), algorithms=["RS256"], audience=audience)


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    @property
    def platform(self) -> LtiPlatform:
        return self.server.platform  # type: ignore[attr-defined]

    def log_message(self, *_args: Any) -> None:
        """Quiet."""

    def _reply(self, status: int, body: str | bytes, kind: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization") or ""
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self.platform.tokens

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        p = self.platform
        if url.path == "/jwks":
            self._reply(200, json.dumps(p.jwks()))
        elif url.path == "/auth":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if query.get("client_id") != p.client_id or not query.get("redirect_uri", "").startswith(p.tool_url):
                p.got.errors.append(f"auth: unexpected client or redirect {query}")
                self._reply(400, "unknown client or redirect_uri", "text/plain")
                return
            token = p.id_token(query)
            page = (f"<form method='post' action='{html.escape(query['redirect_uri'])}'>"
                    f"<input type='hidden' name='id_token' value='{token}'>"
                    f"<input type='hidden' name='state' value='{html.escape(query['state'])}'></form>"
                    "<script>document.forms[0].submit()</script>")
            self._reply(200, page, "text/html")
        elif url.path == "/lineitems":
            if not self._authorised():
                self._reply(401, "no token")
                return
            self._reply(200, json.dumps(p.got.lineitems), "application/vnd.ims.lis.v2.lineitemcontainer+json")
        else:
            self._reply(404, "not here", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        p = self.platform
        body = self._body()
        if url.path == "/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            try:
                claims = p.tool_claims(form["client_assertion"], audience=f"{p.url}/token")
            except Exception as exc:  # noqa: BLE001 - the platform refuses and says why
                p.got.errors.append(f"token: {type(exc).__name__}: {exc}")
                self._reply(401, json.dumps({"error": "invalid_client"}))
                return
            if claims.get("iss") != p.client_id or claims.get("sub") != p.client_id:
                p.got.errors.append(f"token: wrong client {claims}")
                self._reply(401, json.dumps({"error": "invalid_client"}))
                return
            token = secrets.token_urlsafe(16)
            p.tokens.add(token)
            p.got.token_requests.append({"claims": claims, "scope": form.get("scope", ""),
                                         "grant_type": form.get("grant_type")})
            self._reply(200, json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
        elif re.fullmatch(r"/lineitems/[^/]+/lineitem/scores|/lineitems/\d+/scores", url.path):
            if not self._authorised():
                self._reply(401, "no token", "text/plain")
                return
            if p.fail_scores > 0:
                p.fail_scores -= 1
                self._reply(503, "grade book unavailable", "text/plain")
                return
            score = json.loads(body)
            p.got.scores.append({**score, "_path": url.path, "_type": self.headers.get("Content-Type")})
            self._reply(200, "{}")
        elif url.path == "/lineitems":
            if not self._authorised():
                self._reply(401, "no token", "text/plain")
                return
            item = {**json.loads(body), "id": f"{p.url}/lineitems/{len(p.got.lineitems) + 1}"}
            p.got.lineitems.append(item)
            self._reply(201, json.dumps(item), "application/vnd.ims.lis.v2.lineitem+json")
        elif url.path == "/deep-link-return":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            try:
                p.got.deep_links.append(p.tool_claims(form["JWT"], audience=p.issuer))
            except Exception as exc:  # noqa: BLE001
                p.got.errors.append(f"deep link: {type(exc).__name__}: {exc}")
                self._reply(400, "bad deep-linking response", "text/plain")
                return
            self._reply(200, "<p>Added to the course.</p>", "text/html")
        else:
            self._reply(404, "not here", "text/plain")
