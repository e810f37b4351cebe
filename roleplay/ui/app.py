"""The Gradio application: one Blocks app, a tab per page, sign-in by the store's passwords."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue rebuilds a summary of up to GRADIO_ANALYTICS_MAX_EVENTS past events after every event (by default
# after each one, over 10,000): the app has it rebuilt every 500 events, over the last 1,000.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "500")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")

import gradio as gr  # noqa: E402

from roleplay.context import AppContext  # noqa: E402
from roleplay.reader import MAX_TURN_CHARS  # noqa: E402
from roleplay.ui import (  # noqa: E402
    admin_page,
    analytics_page,
    author_page,
    calibrate_page,
    practice_page,
    progress_page,
    review_page,
)
from roleplay.ui.common import CLIENT, auth_callable, handler, signed_in, use_context  # noqa: E402
from roleplay.ui.render import CSS, esc  # noqa: E402

PAGES = (  # (tab id, label, module, roles that use it)
    ("practice", "Practice", practice_page, practice_page.ROLES),
    ("review", "Review", review_page, review_page.ROLES),
    ("calibrate", "Calibrate", calibrate_page, calibrate_page.ROLES),
    ("people", "People", admin_page, admin_page.ROLES),
    ("author", "Author", author_page, author_page.ROLES),
    ("progress", "Progress", progress_page, progress_page.ROLES),
    ("analytics", "Analytics", analytics_page, analytics_page.ROLES),
)
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber")


def tabs_for(role: str) -> list[str]:
    """The tab ids a role uses, in page order (every other tab is hidden from them)."""
    return [tab for tab, _, _, roles in PAGES if role in roles]


@handler
def who(request: gr.Request) -> tuple[Any, ...]:
    """The signed-in banner, only the tabs this person's role uses, and the first of them selected.

    Hiding a tab only tidies the page: every handler still checks the role on the server.
    """
    person = signed_in(request)
    mine = tabs_for(person.role)
    banner = (f'<div class="rp-banner" id="whoami">Signed in as <b>{esc(person.display_name)}</b> '
              f'(<span id="whoami-user">{esc(person.username)}</span>, {person.role}) · '
              f'<a href="/logout" id="signout">Sign out</a></div>')
    return (banner, gr.update(selected=mine[0] if mine else None),
            *[gr.update(visible=tab in mine) for tab, _, _, _ in PAGES])


def _no_absent_matplotlib() -> None:
    """Gradio tries `import matplotlib` twice around every event; where it is not installed, each failed attempt
    searches the whole import path again. Mark it absent once, so those imports fail at once."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def build_app(context: AppContext | None = None) -> gr.Blocks:
    """Build the app (not launched) on `context` (built from the environment when None); launch it with
    `launch_options()`."""
    app = use_context(context or AppContext())
    _no_absent_matplotlib()
    _private_gradio_cache(app)
    with gr.Blocks(title="roleplay: practise hard conversations", delete_cache=(CACHE_MAX_AGE, CACHE_MAX_AGE)) as demo:
        with gr.Row():
            gr.Markdown("## roleplay\nPractise hard conversations with a persona; a facilitator reviews your "
                        "feedback before it counts.", elem_id="app-title")
            banner = gr.HTML("", elem_id="app-banner")
        with gr.Tabs(elem_id="tabs") as tabs:
            built = []
            for tab_id, label, module, _roles in PAGES:
                with gr.Tab(label, id=tab_id, elem_id=f"tab-{tab_id}", visible=False) as tab:  # shown by role
                    page = module.build()
                built.append((tab, page))
        demo.load(who, None, [banner, tabs, *[tab for tab, _ in built]])
        for tab, page in built:
            fn, inputs, outputs = page["enter"]
            demo.load(fn, inputs, outputs)
            tab.select(fn, inputs, outputs)
    # Gradio runs one event per listener at a time by default: every learner's turn would wait for everyone else's.
    demo.queue(default_concurrency_limit=app.settings.concurrency)
    return demo


MAX_REQUEST_BYTES = 2 * 1024 * 1024  # a request body; the largest real one is a scenario YAML (512 KiB at most)
MAX_UPLOAD = "1mb"  # Gradio's own cap on uploaded files


CROSS_SITE_PATHS = ("/lti/", "/scorm/result")  # called by other sites by design (an LMS); each checks its own proof
CROSS_SITE_REFUSED = ("requests from other web sites are refused; open roleplay at its own address (or set "
                      "ROLEPLAY_PUBLIC_URL to the address people use)")


class RequestGuard:
    """ASGI middleware in front of the app: refuses oversize request bodies with 413 before anything reads them,
    refuses requests that another web site's page makes (with 403: Gradio answers any site's page with the visitor's
    sign-in cookie on a deployed host, which would let that page act as the visitor), and remembers each request's
    client address for the sign-in throttle.

    A request is another site's when it carries an `Origin` whose host is neither the host it was sent to nor that of
    `public_url`; the paths an LMS calls (`CROSS_SITE_PATHS`) are exempt. Links followed from elsewhere (an email,
    an LMS page) are navigations without an `Origin`, and pass.

    Behind a reverse proxy on the same machine uvicorn already puts the proxy's X-Forwarded-For address in the
    request; for a proxy elsewhere, list its address in FORWARDED_ALLOW_IPS.
    """

    def __init__(self, app: Any, max_body: int = MAX_REQUEST_BYTES, public_url: str | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.trusted = {h for h in (_hostname(public_url or ""),) if h}

    def _from_another_site(self, scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
        origin = headers.get(b"origin")
        if origin is None or str(scope.get("path", "")).startswith(CROSS_SITE_PATHS):
            return False
        host = _hostname("//" + headers.get(b"host", b"").decode("latin-1"))
        seen = _hostname(origin.decode("latin-1"))
        return seen is None or seen not in {host, *self.trusted}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self._from_another_site(scope, headers):
            await _answer(send, 403, CROSS_SITE_REFUSED)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(send)
            return
        if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            receive = await self._buffered(receive)  # a chunked body: read (up to the cap) before the app sees it
            if receive is None:
                await self._refuse(send)
                return
        client = scope.get("client")
        token = CLIENT.set(str(client[0]) if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT.reset(token)

    async def _buffered(self, receive: Any) -> Any:
        """`receive` replaying a body read up to the cap, or None when the body is larger."""
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        return replay

    async def _refuse(self, send: Any) -> None:
        await _answer(send, 413, f"request larger than {self.max_body:,} bytes, so nothing was done; a turn has at "
                                 f"most {MAX_TURN_CHARS:,} characters and an upload at most {MAX_UPLOAD}")


def _hostname(url: str) -> str | None:
    """The host name of a URL (or of "//host:port"), lower case; None when it has none."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


async def _answer(send: Any, status: int, error: str) -> None:
    """A JSON error reply that closes the connection."""
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


AUTH_MESSAGE = ("Sign in with your roleplay account. After a few failed attempts sign-in pauses for some minutes; "
                "ask an administrator if you forgot your password.")


CACHE_MAX_AGE = 3600  # seconds Gradio keeps the copies of files it served
_GRADIO_TEMP: list[str] = []  # the GRADIO_TEMP_DIR this module set, so a later app may move it


def _private_gradio_cache(app: AppContext) -> None:
    """Keep Gradio's copies of served files in the app's private folder, unless the operator chose a place."""
    current = os.environ.get("GRADIO_TEMP_DIR")
    if current and current not in _GRADIO_TEMP:
        return
    folder = str(app.downloads.gradio)
    os.environ["GRADIO_TEMP_DIR"] = folder
    _GRADIO_TEMP.append(folder)


def launch_options(context: AppContext | None = None) -> dict[str, Any]:
    """Keyword arguments for `demo.launch()`: sign-in (throttled), theme, styles, the request guard and upload cap, and
    the HTTP routes served beside the pages (`roleplay.ui.routes`) for the app of `context` (the app's own when None)."""
    from starlette.middleware import Middleware

    from roleplay.ui.common import ctx
    from roleplay.ui.routes import extra_routes

    context = context or ctx()
    return {"auth": auth_callable(), "auth_message": AUTH_MESSAGE, "theme": THEME, "css": CSS,
            "footer_links": [], "max_file_size": MAX_UPLOAD,
            "app_kwargs": {"middleware": [Middleware(RequestGuard, public_url=context.settings.public_url)],
                           "routes": extra_routes(context),
                           "lifespan": shared_sign_ins(context)}}


def shared_sign_ins(context: AppContext) -> Callable[[Any], Any]:
    """The app's start-up step that keeps who is signed in in the database (`roleplay.signin.SharedSignIns`) under
    one cookie name per deployment: any app process serves any signed-in browser."""
    from roleplay.signin import SharedSignIns, cookie_id_for

    @contextlib.asynccontextmanager
    async def lifespan(server: Any) -> AsyncIterator[None]:
        server.tokens = SharedSignIns(context.store)
        server.cookie_id = cookie_id_for(context.settings.database_url)
        yield

    return lifespan
