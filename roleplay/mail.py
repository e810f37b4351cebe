"""Email delivery: the mail server settings and connection, one line on why an email was not taken, and signed links.

Settings come from `ROLEPLAY_SMTP_*` (`SmtpConfig.from_settings`); links in emails start with ROLEPLAY_PUBLIC_URL
(`public_base`) and carry values signed with HMAC-SHA256 under a key kept in the data directory (`LinkSigner`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import smtplib
import ssl
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from roleplay.config import Settings, SmtpSecurity
from roleplay.errors import ConfigError, RoleplayError

KEY_FILE = Path("keys") / "nudge-links.key"
ERROR_MAX = 500
_PORTS = {SmtpSecurity.STARTTLS: 587, SmtpSecurity.SSL: 465, SmtpSecurity.NONE: 25}


class LinkError(RoleplayError):
    """A link from a reminder email is not valid (changed, cut short, or signed with another key)."""


# --- settings -----------------------------------------------------------------------------------------------

class SmtpConfig(BaseModel):
    """Where reminder emails are handed over."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field(description="Mail server host.")
    port: int = Field(description="Its port.")
    security: SmtpSecurity = Field(description="starttls, ssl or none.")
    user: str | None = Field(default=None, description="User name, if the server asks for one.")
    password: SecretStr | None = Field(default=None, description="Password (hidden in repr and logs).")
    sender: str = Field(description="The From address.")
    timeout: float = Field(default=30.0, description="Seconds to wait for the server.")

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """The configured mail server, or None when ROLEPLAY_SMTP_HOST is unset.

        Raises:
            ConfigError: the sender is missing or not an address, or only one of user and password is set.
        """
        if not settings.smtp_host:
            return None
        if not settings.smtp_from or "@" not in parseaddr(settings.smtp_from)[1]:
            raise ConfigError("set ROLEPLAY_SMTP_FROM to the sender of reminder emails, e.g. "
                              "'Roleplay <roleplay@example.com>'")
        if (settings.smtp_user is None) != (settings.smtp_password is None):
            raise ConfigError("set both ROLEPLAY_SMTP_USER and ROLEPLAY_SMTP_PASSWORD (the mail server's login), "
                              "or neither")
        return cls(host=settings.smtp_host, port=settings.smtp_port or _PORTS[settings.smtp_security],
                   security=settings.smtp_security, user=settings.smtp_user, password=settings.smtp_password,
                   sender=settings.smtp_from, timeout=settings.smtp_timeout)

    def connect(self) -> smtplib.SMTP:
        """An open, signed-in connection to the mail server (raises smtplib or OS errors)."""
        if self.security is SmtpSecurity.SSL:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                  context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security is SmtpSecurity.STARTTLS:
                conn.starttls(context=ssl.create_default_context())
            if self.user is not None:
                conn.login(self.user, self.password.get_secret_value() if self.password else "")
        except BaseException:
            conn.close()
            raise
        return conn


def public_base(settings: Settings) -> str:
    """ROLEPLAY_PUBLIC_URL without a trailing slash.

    Raises:
        ConfigError: it is unset or not an http(s) address.
    """
    url = (settings.public_url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("set ROLEPLAY_PUBLIC_URL to the address learners open the app at (e.g. "
                          "https://roleplay.example.com): reminder emails link back to it")
    return url


# --- signed links -------------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Signs and checks the values in emailed links (HMAC-SHA256; the purpose is signed too, so a link of one kind
    never works as another)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> LinkSigner:
        """The signer of this deployment, its key created (0600) in `data_dir` on first use."""
        path = Path(data_dir) / KEY_FILE
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(32))
                try:
                    os.link(tmp, path)  # never overwrites: of two processes, one key wins
                except FileExistsError:
                    pass
                finally:
                    tmp.unlink(missing_ok=True)
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read or create the link key {path}: {exc.strerror or exc}; check that "
                              "ROLEPLAY_DATA_DIR is writable by this user") from None
        if len(key) < 32:
            raise ConfigError(f"the link key {path} is damaged; move it away (emailed links made with it stop working)")
        return cls(key)

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\n{payload}".encode(), hashlib.sha256).digest()[:18])

    def sign(self, purpose: str, *values: str | int) -> str:
        """A token carrying `values`, valid only for `purpose`."""
        payload = _b64(json.dumps([str(v) for v in values], separators=(",", ":")).encode())
        return f"{payload}.{self._mac(purpose, payload)}"

    def verify(self, purpose: str, token: str) -> list[str]:
        """The values of a token made by `sign(purpose, ...)`.

        Raises:
            LinkError: the token was changed, cut short or made for something else.
        """
        payload, _, mac = (token or "").partition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(purpose, payload).encode()):
            raise LinkError("this link is not valid: it was changed or cut short. Open it again from the email "
                            "(the whole link), or sign in to roleplay and use your Progress page")
        try:
            values = json.loads(_unb64(payload))
        except ValueError:
            raise LinkError("this link is not valid; sign in to roleplay and use your Progress page") from None
        return [str(v) for v in values]


def smtp_problem(exc: BaseException, smtp: SmtpConfig, to: str = "", sending: bool = False) -> str:
    """One line on why an email was not handed over (`sending`: the connection was made; the email itself failed)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, msg = next(iter(exc.recipients.values()), (0, b""))
        text = f"the mail server refused the address {to}: {code} {_text(msg)}"
    elif isinstance(exc, smtplib.SMTPAuthenticationError):
        text = "the mail server refused the login; check ROLEPLAY_SMTP_USER and ROLEPLAY_SMTP_PASSWORD"
    elif isinstance(exc, smtplib.SMTPNotSupportedError) and sending:
        text = f"the mail server cannot take the email to {to}: {exc}"
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        text = (f"the mail server does not offer what was asked ({exc}); set ROLEPLAY_SMTP_SECURITY=ssl (port 465), "
                "or none for a relay on this machine")
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        text = "the mail server closed the connection before accepting the email"
    elif isinstance(exc, smtplib.SMTPResponseException):
        text = f"the mail server answered {exc.smtp_code} {_text(exc.smtp_error)}"
    elif isinstance(exc, smtplib.SMTPException):  # (an OSError too)
        text = f"the mail server could not take the email: {exc}"
    elif isinstance(exc, OSError):
        text = (f"cannot reach the mail server {smtp.host}:{smtp.port} ({exc.strerror or type(exc).__name__}); "
                "check ROLEPLAY_SMTP_HOST, ROLEPLAY_SMTP_PORT and ROLEPLAY_SMTP_SECURITY")
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:ERROR_MAX]


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
