"""Signing in to the web app: the store's password check, with failed attempts throttled per username and per client.

After `max_failures` failed sign-ins for one username (or four times as many from one client address, whatever the
usernames), that username (or address) is paused for `lockout` seconds; every further failure after a pause doubles
the next one, up to an hour. While paused no password is checked at all, so guessing stops; unknown usernames are
counted and paused exactly like real ones, so a pause says nothing about who has an account. A successful sign-in
clears its username's count. Counts live in this process (bounded), so each app process throttles on its own.

Who is signed in (the token of each browser's sign-in cookie) is kept in the database (`SharedSignIns`), so any app
process serves any signed-in browser.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from roleplay.errors import PermissionDenied
from roleplay.models import Person, SignInToken
from roleplay.store import Store

MAX_PAUSE = 3600.0
FORGET_AFTER = 3600.0
CLIENT_FACTOR = 4
MAX_KEYS = 100_000


class SignInPaused(PermissionDenied):
    """Sign-in is paused for this username or client after too many failures.

    Attributes:
        retry_after: Seconds until the next attempt is checked.
    """

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(f"too many failed sign-ins; sign-in is paused for {minutes} minute{'s' if minutes != 1 else ''}"
                         ", then try again (ask an administrator if you forgot your password)")


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0


class SignInThrottle:
    """Failed sign-ins per key ("user:NAME", "client:ADDRESS"), with pauses that grow.

    Args:
        max_failures: Failures of one username before it is paused (a client gets `CLIENT_FACTOR` times as many).
        lockout: Seconds of the first pause; each further failure after a pause doubles it, up to `MAX_PAUSE`.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(self, max_failures: int = 5, lockout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.lockout = lockout
        self.clock = clock
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def keys(username: str, client: str | None) -> list[tuple[str, int]]:
        """The throttle keys of one attempt, with the failure multiple each one allows.

        Usernames are kept as digests, so made-up long ones cost no more memory than real ones.
        """
        name = hashlib.sha256(username.strip().casefold().encode("utf-8", "replace")).hexdigest()
        keys = [(f"user:{name}", 1)]
        if client:
            keys.append((f"client:{client[:64]}", CLIENT_FACTOR))
        return keys

    def wait(self, username: str, client: str | None = None) -> float:
        """Seconds until an attempt for `username` from `client` is checked again (0 when it may go ahead)."""
        now = self.clock()
        with self._lock:
            waits = [0.0]
            for key, _ in self.keys(username, client):
                count = self._counts.get(key)
                if count is None:
                    continue
                if count.until <= now and now - count.last > max(FORGET_AFTER, self.lockout):
                    del self._counts[key]
                    continue
                waits.append(count.until - now)
            return max(waits)

    def failed(self, username: str, client: str | None = None) -> None:
        """Count a failed sign-in; pause the username or client once it reaches its limit."""
        now = self.clock()
        with self._lock:
            for key, factor in self.keys(username, client):
                count = self._counts.pop(key, None) or _Count()
                count.failures += 1
                count.last = now
                over = count.failures - self.max_failures * factor
                if over >= 0:
                    count.until = now + min(self.lockout * 2 ** min(over, 30), max(MAX_PAUSE, self.lockout))
                self._counts[key] = count  # most recent last, so the oldest is evicted first
            while len(self._counts) > MAX_KEYS:
                self._counts.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """Forget the username's failures."""
        with self._lock:
            self._counts.pop(self.keys(username, None)[0][0], None)


class SignIn:
    """Checks passwords for the web app through a throttle.

    Args:
        store: The database with people and their password hashes.
        throttle: Failed-attempt counts; a fresh one with the defaults when None.
    """

    def __init__(self, store: Store, throttle: SignInThrottle | None = None) -> None:
        self.store = store
        self.throttle = throttle or SignInThrottle()

    def check(self, username: str, password: str, client: str | None = None) -> Person | None:
        """The person when the password is right, else None; unknown and password-less usernames take as long.

        Raises:
            SignInPaused: this username or client failed too often; nothing was checked.
        """
        wait = self.throttle.wait(username, client)
        if wait > 0:
            raise SignInPaused(wait)
        person = self.store.authenticate(username, password)
        if person is None:
            self.throttle.failed(username, client)
        else:
            self.throttle.succeeded(username)
        return person


class SharedSignIns(MutableMapping[str, str]):
    """The browsers signed in to the web app (sign-in cookie token -> username), kept in the database so that every
    app process knows them: a learner signed in through one process is signed in on all of them.

    The web framework looks a token up on every request; a process keeps what it looked up for `cache_seconds`, so a
    sign-out reaches the other processes within that time.
    """

    def __init__(self, store: Store, cache_seconds: float = 30.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._seen: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, token: str) -> str:
        if not isinstance(token, str):
            raise KeyError(token)
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(token)
        if hit is not None and now - hit[1] < self.cache_seconds:
            return hit[0]
        with self.store.session() as db:
            username = db.scalar(select(SignInToken.username).where(SignInToken.token == token))
        if username is None:
            with self._lock:
                self._seen.pop(token, None)
            raise KeyError(token)
        with self._lock:
            if len(self._seen) >= MAX_KEYS:
                self._seen.clear()
            self._seen[token] = (username, now)
        return username

    def __setitem__(self, token: str, username: str) -> None:
        with self.store.session() as db:
            db.add(SignInToken(token=token, username=username))

    def __delitem__(self, token: str) -> None:
        with self._lock:
            self._seen.pop(token, None)
        with self.store.session() as db:
            gone = db.execute(delete(SignInToken).where(SignInToken.token == token)).rowcount
        if not gone:
            raise KeyError(token)

    def __iter__(self) -> Iterator[str]:
        with self.store.session() as db:
            return iter(list(db.scalars(select(SignInToken.token))))

    def __len__(self) -> int:
        with self.store.session() as db:
            return db.scalar(select(func.count()).select_from(SignInToken)) or 0


def cookie_id_for(database_url: str) -> str:
    """The suffix of the sign-in cookie's name: the same in every app process of one deployment (one database), and
    different between deployments on one host."""
    return hashlib.sha256(f"roleplay-sign-in:{database_url}".encode()).hexdigest()[:32]
