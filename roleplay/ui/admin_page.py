"""People page (facilitators): who has an account; add, remove, reset a password, change a role, name a buddy.

Every rule lives in `roleplay.people`; this page only calls it and shows what happened.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from roleplay.models import ROLES as ROLES_OF_PEOPLE
from roleplay.passwords import MIN_PASSWORD_LENGTH
from roleplay.people import Account, PeopleService
from roleplay.ui import render
from roleplay.ui.common import Problem, action, ctx, gate, handler, page_frame, require

PAGE = "People"
ROLES = ("facilitator",)  # who may use this page
PERSON_ROLES = tuple(ROLES_OF_PEOPLE)  # the roles a person can have
HEADERS = ["Username", "Name", "Role", "Can sign in", "Learning buddy"]
NO_BUDDY = "(no buddy)"


def service() -> PeopleService:
    """The account administration of the app's store."""
    return PeopleService(ctx().store, ctx().buddies)


def _label(a: Account) -> str:
    return a.display_name if a.display_name == a.username else f"{a.display_name} ({a.username})"


def _listing() -> tuple[list[list[Any]], Any, list[Account]]:
    """Table rows, the person picker's choices and the accounts."""
    accounts = service().accounts()
    names = {a.username: a.display_name for a in accounts}
    rows = [[a.username, a.display_name, a.role, "yes" if a.can_sign_in else "no",
             names.get(a.buddy, a.buddy) if a.buddy else ""] for a in accounts]
    return rows, [(f"{_label(a)} · {a.role}", a.username) for a in accounts], accounts


def _details(username: str | None, accounts: list[Account]) -> tuple[Any, ...]:
    """The role picker, the buddy picker (other learners) and the removal tick box for the picked person."""
    picked = next((a for a in accounts if a.username == username), None)
    if picked is None:
        return gr.update(value=None), gr.update(choices=[], value=None, interactive=False), gr.update(value=False)
    if picked.role == "learner":
        others = [(_label(a), a.username) for a in accounts if a.role == "learner" and a.username != picked.username]
        buddy = gr.update(choices=[(NO_BUDDY, "")] + others, value=picked.buddy or "", interactive=True)
    else:
        buddy = gr.update(choices=[("only learners have learning buddies", "")], value="", interactive=False)
    return gr.update(value=picked.role), buddy, gr.update(value=False)


def _refreshed(username: str | None, message: str) -> tuple[Any, ...]:
    """After a change: the result line, the table, the person picker (still on `username`) and its details."""
    rows, choices, accounts = _listing()
    keep = username if any(a.username == username for a in accounts) else None
    return (message, rows, gr.update(choices=choices, value=keep), *_details(keep, accounts))


def _ok(text: str) -> str:
    return f'<div class="rp-drift ok" id="admin-done">✓ {render.esc(text)}</div>'


# --- handlers ---------------------------------------------------------------------------------------

@handler
def enter(request: gr.Request) -> tuple[Any, ...]:
    """Show the accounts to facilitators, a refusal to anyone else."""
    message, body = gate(request, PAGE, *ROLES)
    if message:
        return message, body, gr.update(), gr.update()
    require(request, PAGE, *ROLES)
    rows, choices, _ = _listing()
    return "", body, rows, gr.update(choices=choices)


@action
def pick(username: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Show the picked person's role and buddy, ready to change."""
    require(request, PAGE, *ROLES)
    _, _, accounts = _listing()
    return _details(username, accounts)


@action
def pick_row(evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
    """A click on a row of the table picks that person."""
    require(request, PAGE, *ROLES)
    row = evt.row_value or []
    username = str(row[0]) if row else None
    _, _, accounts = _listing()
    return (gr.update(value=username), *_details(username, accounts))


@action
def add(username: str, display_name: str, role: str | None, password: str, request: gr.Request) -> tuple[Any, ...]:
    """Add a person who can sign in at once; the fields are cleared only when it worked."""
    person = require(request, PAGE, *ROLES)
    account = service().add(username, role or "", password, display_name, actor=person.username)
    gr.Info(f"{_label(account)} can now sign in as a {account.role}.")
    done = _ok(f"Added {_label(account)} as a {account.role}; they sign in as '{account.username}' with the password "
               "you gave.")
    return (*_refreshed(account.username, done), "", "", "")


@action
def reset_password(username: str | None, password: str, request: gr.Request) -> tuple[Any, ...]:
    """Give the picked person a new password (it takes effect at their next sign-in)."""
    person = require(request, PAGE, *ROLES)
    service().reset_password(username or "", password, actor=person.username)
    gr.Info(f"New password set for {username}.")
    return (*_refreshed(username, _ok(f"New password set for {username}; it takes effect at their next sign-in.")),
            "")


@action
def set_role(username: str | None, role: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Change the picked person's role."""
    person = require(request, PAGE, *ROLES)
    account, dropped = service().set_role(username or "", role or "", actor=person.username)
    ended = f"; {dropped} learning-buddy link{'s' if dropped != 1 else ''} ended with it" if dropped else ""
    gr.Info(f"{_label(account)} is now a {account.role}.")
    return _refreshed(account.username, _ok(f"{_label(account)} is now a {account.role}{ended}."))


@action
def set_buddy(username: str | None, buddy: str | None, request: gr.Request) -> tuple[Any, ...]:
    """Name (or end) the picked learner's learning buddy."""
    person = require(request, PAGE, *ROLES)
    account = service().set_buddy(username or "", buddy or "", actor=person.username)
    if account.buddy:
        text = f"{_label(service().account(account.buddy))} is now the learning buddy of {_label(account)}."
    else:
        text = f"{_label(account)} has no learning buddy now."
    gr.Info(text)
    return _refreshed(account.username, _ok(text))


@action
def remove(username: str | None, confirmed: bool, request: gr.Request) -> tuple[Any, ...]:
    """Remove the picked person with everything that is theirs, once the tick box confirms it."""
    person = require(request, PAGE, *ROLES)
    if username and not confirmed:
        raise Problem(f"Tick the box to confirm that {username} and everything that is theirs should be removed.",
                      title="Not removed")
    sessions = service().remove(username or "", actor=person.username)
    went = f" with {sessions} practice session{'s' if sessions != 1 else ''}" if sessions else ""
    gr.Info(f"{username} was removed.")
    return _refreshed(None, _ok(f"Removed {username}{went}; they can no longer sign in."))


def build() -> dict[str, Any]:
    """Lay out the page; returns the gate, body and the `enter` wiring for the app."""
    gate_md, body = page_frame("admin")
    with body:
        gr.Markdown("Everyone with an account. Click a row to change that person's account.", elem_id="admin-intro")
        table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, elem_id="admin-people", max_height=300)
        result = gr.HTML("", elem_id="admin-result")
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("#### Add a person")
                new_user = gr.Textbox(label="Username (what they sign in with)", elem_id="admin-new-username")
                new_name = gr.Textbox(label="Name shown in the app (optional)", elem_id="admin-new-name")
                new_role = gr.Radio(list(PERSON_ROLES), value="learner", label="Role", elem_id="admin-new-role")
                new_password = gr.Textbox(label=f"Password (at least {MIN_PASSWORD_LENGTH} characters; tell it to them)",
                                          type="password", elem_id="admin-new-password")
                add_btn = gr.Button("Add person", variant="primary", elem_id="admin-add")
            with gr.Column(scale=1):
                gr.Markdown("#### Change an account")
                person = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Person", elem_id="admin-person")
                with gr.Row():
                    password = gr.Textbox(label=f"New password (at least {MIN_PASSWORD_LENGTH} characters)",
                                          type="password", elem_id="admin-password", scale=3)
                    password_btn = gr.Button("Reset password", elem_id="admin-reset", scale=1)
                with gr.Row():
                    role = gr.Radio(list(PERSON_ROLES), value=None, label="Role", elem_id="admin-role", scale=3)
                    role_btn = gr.Button("Change role", elem_id="admin-set-role", scale=1)
                with gr.Row():
                    buddy = gr.Dropdown(allow_custom_value=True, choices=[], value=None, label="Learning buddy (another learner)",
                                        elem_id="admin-buddy", interactive=False, scale=3)
                    buddy_btn = gr.Button("Set buddy", elem_id="admin-set-buddy", scale=1)
                with gr.Row():
                    confirm = gr.Checkbox(label="Remove this person with their sessions, grades and certifications",
                                          value=False, elem_id="admin-confirm", scale=3)
                    remove_btn = gr.Button("Remove", variant="stop", elem_id="admin-remove", scale=1)

    details = [role, buddy, confirm]
    after = [result, table, person, *details]
    person.input(pick, person, details)
    table.select(pick_row, None, [person, *details])
    add_btn.click(add, [new_user, new_name, new_role, new_password], [*after, new_user, new_name, new_password])
    password_btn.click(reset_password, [person, password], [*after, password])
    role_btn.click(set_role, [person, role], after)
    buddy_btn.click(set_buddy, [person, buddy], after)
    remove_btn.click(remove, [person, confirm], after)
    return {"gate": gate_md, "body": body, "enter": (enter, [], [gate_md, body, table, person])}

