"""What every page shares: who is asking (checked on the server), and library errors turned into messages."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from roleplay.context import AppContext  # noqa: E402
from roleplay.errors import NotFoundError, RoleplayError  # noqa: E402
from roleplay.models import Person  # noqa: E402
from roleplay.store import Store  # noqa: E402

log = logging.getLogger("roleplay.ui")

ROLE_NAMES = {"learner": "learners", "facilitator": "facilitators", "designer": "learning designers"}


_CONTEXT: list[AppContext] = []


def use_context(context: AppContext) -> AppContext:
    """Make `context` the one the pages call (set by `build_app`)."""
    _CONTEXT[:] = [context]
    return context


def ctx() -> AppContext:
    """The app context of the running app (built from the environment if no app set one)."""
    if not _CONTEXT:
        use_context(AppContext())
    return _CONTEXT[0]


def store() -> Store:
    """The app's store."""
    return ctx().store


def username_of(request: Any) -> str | None:
    """The signed-in username of a Gradio request (None when nobody is signed in)."""
    name = getattr(request, "username", None) if request is not None else None
    return name or None


def signed_in(request: Any) -> Person:
    """The signed-in person, read on the server from the request; refuses anonymous or unknown users."""
    name = username_of(request)
    if not name:
        raise gr.Error("Sign in first: this app needs an account (ask your facilitator for one).",
                       title="Not signed in", print_exception=False)
    try:
        return store().person(name)
    except NotFoundError:
        raise gr.Error(f"'{name}' has no account here; ask an administrator to add you.",
                       title="Unknown user", print_exception=False) from None


def refusal(person: Person, page: str, roles: tuple[str, ...]) -> str:
    """Why `person` may not use `page` (one sentence)."""
    who = " or ".join(ROLE_NAMES.get(r, r) for r in roles)
    return f"The {page} page is for {who}; you are signed in as '{person.username}', a {person.role}."


def require(request: Any, page: str, *roles: str) -> Person:
    """The signed-in person if their role may use `page`, else a `gr.Error` naming the refusal."""
    person = signed_in(request)
    if person.role not in roles:
        raise gr.Error(refusal(person, page, roles), title="Not allowed", print_exception=False)
    return person


def gate(request: Any, page: str, *roles: str) -> tuple[str, Any]:
    """The gate message and body visibility of a page for the signed-in person (no exception)."""
    name = username_of(request)
    if not name:
        return "Sign in to use this page.", gr.update(visible=False)
    try:
        person = store().person(name)
    except NotFoundError:
        return f"'{name}' has no account here.", gr.update(visible=False)
    if person.role not in roles:
        return f"**Not available:** {refusal(person, page, roles)}", gr.update(visible=False)
    return "", gr.update(visible=True)


def page_frame(page_id: str) -> tuple[gr.Markdown, gr.Column]:
    """A page's gate message (`#<page_id>-gate`) and its body (`#<page_id>-body`, hidden until `gate` shows it).

    Lay the page out inside `with body:`.
    """
    return gr.Markdown("", elem_id=f"{page_id}-gate"), gr.Column(visible=False, elem_id=f"{page_id}-body")


def _message(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, RoleplayError):
        title = {"PermissionDenied": "Not allowed", "ReviewError": "Review not saved", "NotFoundError": "Not found",
                 "ProviderError": "Model unavailable", "GradingError": "Grading failed"}.get(type(exc).__name__, "Error")
        return gr.Error(str(exc), title=title, print_exception=False)
    log.error("error in a UI handler", exc_info=exc)
    return gr.Error(f"Something went wrong on the server ({type(exc).__name__}). Nothing stored was lost; try again, "
                    "and tell your administrator if it keeps happening.", title="Server error", print_exception=False)


class Problem(Exception):
    """Something the person entered or picked cannot be used: one line, shown as a warning; the page stays as it is."""

    def __init__(self, message: str, title: str = "Check your input") -> None:
        super().__init__(message)
        self.title = title


_TITLES = {"PermissionDenied": "Not allowed", "ReviewError": "Review not saved", "NotFoundError": "Not found",
           "ProviderError": "Model unavailable", "GradingError": "Grading failed", "ValidationErrors": "Not saved",
           "BuddyError": "Not saved", "StoreError": "Not saved"}


def warn(exc: Problem | RoleplayError) -> Any:
    """Show `exc` as a warning toast (one line) and leave every output as it is (`gr.skip()`): nothing typed is lost."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    title = exc.title if isinstance(exc, Problem) else _TITLES.get(type(exc).__name__, "Not done")
    gr.Warning(text[:1].upper() + text[1:], title=title)
    return gr.skip()


def action(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler whose problems must not cover the page.

    A `Problem` or a library refusal (`RoleplayError`) becomes a warning toast and a `gr.skip()` for every output,
    so nothing on the page is hidden or lost; sign-in and role refusals (`gr.Error`) and unforeseen failures stay
    errors, as with `handler`.
    """
    return _wrap(fn, soft=True)


def display_names() -> dict[str, str]:
    """Every username with the name the app shows for it."""
    return {p.username: p.display_name or p.username for p in store().people()}


def handler(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Gradio handler so library errors become messages (`gr.Error`), never tracebacks."""
    return _wrap(fn, soft=False)


def _wrap(fn: Callable[..., Any], soft: bool) -> Callable[..., Any]:
    """The one error wrapper: with `soft`, slips (`Problem`, `RoleplayError`) become a warning and leave the page."""
    def settle(exc: Exception) -> Any:
        if soft and isinstance(exc, (Problem, RoleplayError)):
            return warn(exc)
        raise _message(exc) from None

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes a message
                yield settle(exc)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a message
            return settle(exc)
    return wrapper


CLIENT: ContextVar[str | None] = ContextVar("roleplay_client", default=None)
"""The address of the client whose HTTP request is being served (set by the app's middleware)."""


def auth_callable() -> Callable[[str, str], Any]:
    """The `launch(auth=...)` check: the store's password check, throttled per username and client, in a thread.

    Gradio awaits an async check; hashing a password takes tens of milliseconds of CPU and would otherwise
    block every other request on the event loop. A paused sign-in answers 429 with Retry-After.
    """
    import asyncio
    import math

    from fastapi import HTTPException

    from roleplay.signin import SignInPaused

    def check_sync(username: str, password: str, client: str | None) -> bool:
        try:
            return ctx().signin.check(username, password, client) is not None
        except SignInPaused:
            raise
        except RoleplayError:
            return False

    async def check(username: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(check_sync, username, password, CLIENT.get())
        except SignInPaused as exc:
            raise HTTPException(status_code=429, detail=str(exc),
                                headers={"Retry-After": str(math.ceil(exc.retry_after))}) from None

    return check
