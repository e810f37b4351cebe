"""Account administration: add and remove people, reset a password, change a role, name a learner's buddy.

Facilitators do this on the web app's People page; every rule is here, so the page only calls these methods. An
`actor` is the signed-in facilitator acting; None means the command line, which has no sign-in (whoever can run
`roleplay` with the data directory may do everything) and so skips the rules about who acts.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

from roleplay.buddies import BuddyService
from roleplay.errors import BuddyError, PermissionDenied, RoleplayError
from roleplay.models import ROLES, Role
from roleplay.store import Store, person_in

log = logging.getLogger(__name__)
MAX_USERNAME = 100  # the people table's username column
MAX_DISPLAY_NAME = 200
MAX_EMAIL = 320  # the people table's email column


class Account(BaseModel):
    """One person as the People page lists them."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(description="What they sign in with.")
    display_name: str = Field(description="Their name as the app shows it.")
    role: str = Field(description="learner, facilitator or designer.")
    can_sign_in: bool = Field(description="Whether they have a password for the web app.")
    buddy: str | None = Field(description="The learning buddy a learner has named (username), if any.")


def check_username(username: str) -> str:
    """`username` without surrounding spaces if it can be a new username, else a one-line `RoleplayError`."""
    name = (username or "").strip()
    if not name:
        raise RoleplayError("type a username for them to sign in with, e.g. their first name or email address")
    if len(name) > MAX_USERNAME:
        raise RoleplayError(f"a username has at most {MAX_USERNAME} characters (this one has {len(name)})")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise RoleplayError(f"a username cannot contain spaces or control characters; try '{'.'.join(name.split())}'")
    return name


def check_email(email: str | None) -> str | None:
    """`email` trimmed if it can be an address (None for empty: no address), else a one-line `RoleplayError`."""
    address = (email or "").strip()
    if not address:
        return None
    local, _, domain = address.rpartition("@")
    if (not local or "." not in domain.strip(".") or len(address) > MAX_EMAIL
            or any(ch.isspace() or not ch.isprintable() or ch in "<>,;\"" for ch in address)):
        raise RoleplayError(f"'{address}' is not an email address; type one like ana@example.com")
    if not address.isascii():
        raise RoleplayError(f"'{address}' has characters outside plain ASCII, which reminder emails cannot be sent to; "
                            f"type the address in ASCII{_ascii_hint(local, domain)}")
    return address


def _ascii_hint(local: str, domain: str) -> str:
    """The ASCII (IDNA) form of an address whose only non-ASCII part is its domain, as a hint; else ''."""
    if not local.isascii():
        return ""
    try:
        return f" (for this domain: {local}@{domain.encode('idna').decode('ascii')})"
    except UnicodeError:
        return ""


def check_role(role: str | None) -> Role:
    """The `Role` named by `role`, else a one-line `RoleplayError` listing the roles."""
    if not role:
        raise RoleplayError(f"pick a role: {', '.join(ROLES)}")
    try:
        return Role(str(role).strip().lower())
    except ValueError:
        raise RoleplayError(f"role '{role}' is not valid; use one of: {', '.join(ROLES)}") from None


class PeopleService:
    """Who has an account, in which role, and the changes facilitators make to accounts.

    Args:
        store: The database.
        buddies: The learning-buddy service (naming a learner's buddy).
    """

    def __init__(self, store: Store, buddies: BuddyService | None = None) -> None:
        self.store = store
        self.buddies = buddies or BuddyService(store)

    def accounts(self) -> list[Account]:
        """Everyone, by username, with their role, whether they can sign in and their learning buddy."""
        links = self.store.buddy_links()
        return [Account(username=p.username, display_name=p.display_name, role=p.role,
                        can_sign_in=bool(p.password_hash), buddy=links.get(p.username))
                for p in self.store.people()]

    def account(self, username: str) -> Account:
        """One person's account.

        Raises:
            NotFoundError: nobody has that username.
        """
        person = self.store.person((username or "").strip())
        return Account(username=person.username, display_name=person.display_name, role=person.role,
                       can_sign_in=bool(person.password_hash), buddy=self.store.buddy_links().get(person.username))

    def _actor(self, actor: str | None) -> None:
        if actor is None:
            return
        person = self.store.person(actor)
        if person.role != Role.FACILITATOR:
            raise PermissionDenied(f"only facilitators manage accounts; '{actor}' is a {person.role}")

    def add(self, username: str, role: str, password: str, display_name: str | None = None, *,
            actor: str | None = None) -> Account:
        """Add a person who can sign in at once.

        Raises:
            RoleplayError: the username is empty, too long, has spaces or is taken; the role is not valid; the
                password is too short (at least `MIN_PASSWORD_LENGTH` characters) or too long.
        """
        self._actor(actor)
        name = check_username(username)
        kind = check_role(role)
        shown = (display_name or "").strip() or None
        if shown is not None and len(shown) > MAX_DISPLAY_NAME:
            raise RoleplayError(f"a name has at most {MAX_DISPLAY_NAME} characters (this one has {len(shown)})")
        self.store.add_person(name, kind, shown, password=password or "")
        log.info("accounts: %s added %s (%s)", actor or "the command line", name, kind)
        return self.account(name)

    def remove(self, username: str, *, actor: str | None = None) -> int:
        """Remove a person and everything that is theirs; returns how many practice sessions went with them.

        Raises:
            NotFoundError: nobody has that username.
            RoleplayError: they are the actor, the only facilitator, or someone whose decisions on other people's
                work are part of the kept review history (the same refusals as `roleplay people remove`).
        """
        self._actor(actor)
        name = (username or "").strip()
        if not name:
            raise RoleplayError("pick the person to remove first")
        if actor is not None and name == actor:
            raise RoleplayError("you cannot remove your own account while signed in with it; ask another facilitator")
        sessions = self.store.remove_person(name)
        log.info("accounts: %s removed %s (%d sessions)", actor or "the command line", name, sessions)
        return sessions

    def reset_password(self, username: str, password: str, *, actor: str | None = None) -> None:
        """Give a person a new sign-in password (it takes effect at their next sign-in).

        A facilitator may set the password of learners, designers and their own; another facilitator's password is
        changed by that facilitator, or on the command line, so nobody can quietly sign in as a colleague.

        Raises:
            NotFoundError: nobody has that username.
            PermissionDenied: the person is another facilitator.
            RoleplayError: the password is too short or too long.
        """
        self._actor(actor)
        name = (username or "").strip()
        if not name:
            raise RoleplayError("pick the person whose password to reset first")
        person = self.store.person(name)
        if actor is not None and person.role == Role.FACILITATOR and name != actor:
            raise PermissionDenied(f"'{name}' is a facilitator: they change their own password, or someone with the "
                                   f"command line runs `roleplay people password {name}`")
        self.store.set_password(name, password or "")
        log.info("accounts: %s set a new password for %s", actor or "the command line", name)

    def set_role(self, username: str, role: str, *, actor: str | None = None) -> tuple[Account, int]:
        """Change a person's role; returns their account and how many learning-buddy links ended with it.

        Only learners have learning buddies, so someone who stops being a learner loses the buddy they named and
        stops being anyone's buddy.

        Raises:
            NotFoundError: nobody has that username.
            RoleplayError: the role is not valid or unchanged, the person is the actor, or they are the only
                facilitator.
        """
        self._actor(actor)
        name = (username or "").strip()
        if not name:
            raise RoleplayError("pick the person whose role to change first")
        kind = check_role(role)
        if actor is not None and name == actor:
            raise RoleplayError("you cannot change your own role; ask another facilitator")
        before = self.store.person(name).role
        if before == kind:
            raise RoleplayError(f"'{name}' is already a {kind}; nothing changed")
        self.store.set_role(name, kind)
        dropped = self.store.drop_buddy_links(name) if kind != Role.LEARNER else 0
        log.info("accounts: %s changed %s from %s to %s", actor or "the command line", name, before, kind)
        return self.account(name), dropped

    def set_email(self, username: str, email: str | None, *, actor: str | None = None) -> str | None:
        """Set (or, with an empty `email`, remove) the address a person's drill reminders go to; returns it.

        Raises:
            NotFoundError: nobody has that username.
            RoleplayError: it is not an email address.
        """
        self._actor(actor)
        address = check_email(email)
        with self.store.session() as db:
            person_in(db, (username or "").strip()).email = address
        log.info("accounts: %s %s the email address of %s", actor or "the command line",
                 "set" if address else "removed", username)
        return address

    def set_buddy(self, learner: str, buddy: str | None, *, actor: str | None = None) -> Account:
        """Name a learner's learning buddy (another learner), or end it when `buddy` is empty.

        Raises:
            NotFoundError: either is not a learner here.
            BuddyError: the learner is named as their own buddy.
        """
        self._actor(actor)
        name = (learner or "").strip()
        if not name:
            raise RoleplayError("pick the learner whose buddy to set first")
        self.store.learner(name)
        other = (buddy or "").strip()
        if not other:
            self.store.drop_buddy_links(name, as_buddy=False)
            log.info("accounts: %s ended the learning buddy of %s", actor or "the command line", name)
            return self.account(name)
        if other == name:
            raise BuddyError(f"'{name}' cannot be their own learning buddy; pick another learner")
        self.store.learner(other)
        self.buddies.name_buddy(name, other)
        log.info("accounts: %s named %s as the learning buddy of %s", actor or "the command line", other, name)
        return self.account(name)
