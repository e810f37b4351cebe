"""Password hashes: argon2id (argon2-cffi) for new hashes; older PBKDF2 hashes still verify and are replaced."""

from __future__ import annotations

import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
_PBKDF2 = "pbkdf2_sha256$"


def hash_password(password: str) -> str:
    """An argon2id hash with a random salt, in the standard `$argon2id$...` form."""
    return _HASHER.hash(password)


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored` (argon2, or a PBKDF2 hash from earlier versions)."""
    if not stored:
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
