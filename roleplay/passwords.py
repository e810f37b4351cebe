"""Password hashes: argon2id (argon2-cffi) for new hashes; older PBKDF2 hashes still verify and are replaced.

A check against no hash (an unknown username, a person without a password) verifies against a dummy argon2 hash
all the same, so how long a failed sign-in takes does not tell who has an account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from roleplay.errors import RoleplayError

_HASHER = PasswordHasher()
_PBKDF2 = "pbkdf2_sha256$"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_DUMMY: list[str] = []


def check_new_password(password: str) -> str:
    """`password` if it may be set as a new password, else a one-line `RoleplayError` saying why."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RoleplayError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters; a phrase of three or four "
                            "words is long enough and easy to remember")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise RoleplayError(f"a password can have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_HASHER.hash(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def hash_password(password: str) -> str:
    """An argon2id hash with a random salt, in the standard `$argon2id$...` form."""
    return _HASHER.hash(password)


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored` (argon2, or a PBKDF2 hash from earlier versions).

    With no stored hash the password is verified against a dummy hash (and never matches), taking as long as a
    real check.
    """
    if not stored:
        try:
            _HASHER.verify(_dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    if stored.startswith(_PBKDF2):
        return _check_pbkdf2(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True for PBKDF2 hashes and argon2 hashes made with weaker parameters than today's."""
    if stored.startswith(_PBKDF2):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _check_pbkdf2(password: str, stored: str) -> bool:
    try:
        _, iterations, salt, digest = stored.split("$")
        candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations)).hex()
    except ValueError:
        return False
    return hmac.compare_digest(candidate, digest)
