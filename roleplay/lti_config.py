"""LMS launch settings (LTI 1.3): the platforms file ROLEPLAY_LTI_CONFIG names, the tool's RSA key pair, and the
error every LTI refusal raises.

The platforms file is JSON, `{"platforms": [{"issuer": ..., "client_id": ..., "deployment_ids": [...],
"auth_login_url": ..., "auth_token_url": ..., "key_set_url": ...}]}`, one entry per LMS registration of the tool;
every wrong field is one line naming it. The key pair lives in `<data_dir>/keys/lti-rsa.pem` (0600), created on
first use; platforms read its public half from `/lti/jwks`.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pylti1p3.registration import Registration

from roleplay.errors import ConfigError, RoleplayError, StandardsError

KEY_FILE = Path("keys") / "lti-rsa.pem"


class LtiError(RoleplayError):
    """A login, launch or deep link refused; the one-line message says why and what to do.

    Attributes:
        status: The HTTP status the route answers with.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- the platforms file --------------------------------------------------------------------------------------

class Platform(BaseModel):
    """One LMS registration: what the platform told you when you added roleplay as an LTI 1.3 tool."""

    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(min_length=1, description="The platform's issuer (`iss`), e.g. https://moodle.example.edu.")
    client_id: str = Field(min_length=1, description="The client id the platform gave the tool (the launch's `aud`).")
    deployment_ids: list[str] = Field(min_length=1, description="Deployment ids of the tool on the platform.")
    auth_login_url: str = Field(description="The platform's OIDC authorisation endpoint.")
    auth_token_url: str = Field(description="The platform's OAuth2 token endpoint (for grade passback).")
    key_set_url: str = Field(description="The platform's public keys (JWKS URL).")
    auth_audience: str | None = Field(default=None, description="The token request's audience when it is not the "
                                      "token URL.")
    name: str | None = Field(default=None, description="A name for people reading logs, e.g. 'Moodle'.")

    @field_validator("auth_login_url", "auth_token_url", "key_set_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class PlatformsFile(BaseModel):
    """The file ROLEPLAY_LTI_CONFIG names: `{"platforms": [...]}`."""

    model_config = ConfigDict(extra="forbid")
    platforms: list[Platform] = Field(description="The LMS registrations that may launch roleplay.")


def load_platforms(path: Path) -> list[Platform]:
    """The platforms of a JSON file.

    Raises:
        ConfigError: the file is missing, not JSON, or a field is wrong (one line each, naming the field).
    """
    where = f"ROLEPLAY_LTI_CONFIG={path}"
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc}); check the path") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc}); see 'LMS launch (LTI 1.3)' in the README") from None
    try:
        platforms = PlatformsFile.model_validate(data).platforms
    except ValidationError as exc:
        lines = [f"{where}: {'.'.join(str(p) for p in e['loc']) or '(document)'}: "
                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    seen: set[tuple[str, str]] = set()
    for p in platforms:
        if (p.issuer, p.client_id) in seen:
            raise ConfigError(f"{where}: issuer {p.issuer} with client id {p.client_id} is listed twice; keep one")
        seen.add((p.issuer, p.client_id))
    return platforms


# --- the tool's key pair ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ToolKeys:
    """The tool's RSA key pair (PEM) and its public JWK."""

    private_pem: str
    public_pem: str

    @cached_property
    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK (kid = its RFC 7638 thumbprint, alg RS256)."""
        return dict(Registration.get_jwk(self.public_pem))


def load_or_create_keys(data_dir: Path) -> ToolKeys:
    """The tool's RSA signing key pair in `<data_dir>/keys/lti-rsa.pem`, created (mode 0600) on first use.

    Raises:
        StandardsError: the key file cannot be created or read, or is readable by other users.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        try:
            _create_key_file(path)
        except OSError as exc:
            raise StandardsError(f"cannot create the LTI key at {path}: {exc.strerror or exc}; make sure "
                                 "ROLEPLAY_DATA_DIR points to a writable directory") from None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise StandardsError(f"the LTI key {path} is readable by other users; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise StandardsError(f"cannot read the LTI key {path}: {exc}; restore it from backup, or move it away to "
                             "create a new one (platforms read the new public key from /lti/jwks)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise StandardsError(f"{path} is not an RSA private key; replace it with one or move it away")
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ToolKeys(private_pem=path.read_text(encoding="ascii"), public_pem=public.decode("ascii"))


def _create_key_file(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path.parent.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(path.parent, 0o700)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic and never overwrites: of two processes, one key wins
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
