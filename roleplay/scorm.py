"""SCORM 1.2 packages of a scenario, their signed ids and link tokens, and the result a course may read.

A package (`build_package`) is a zip an LMS imports: `imsmanifest.xml` (one organization, one item, one SCO
resource; `adlcp:masteryscore` when the rubric's threshold alone decides a pass), the four SCORM 1.2 schema files it
names, and a launch page with its script (`roleplay/data/scorm12/`). The launch page finds the LMS's `API` object,
opens the practice in a window of its own and reports the learner's *approved* result of the scenario to the LMS.

Who may read a result. The package holds nothing secret: its id is `<scenario>.<nonce>.<mac>`, signed with the
deployment's SCORM key (`<data_dir>/keys/scorm-hmac.key`, 32 random bytes, made on first use), so the app knows its
own packages and their scenario without a table. A learner links the course to their roleplay account on
`/scorm/link`: signed in to the app (its own sign-in), they confirm, and the app issues a token, an HMAC over
(package id, the LMS's student id, their username, the course window's origin, expiry in `TOKEN_TTL`), which the
page hands to the course window with `postMessage` addressed to that origin only. `/scorm/result` answers only
with a valid, unexpired token for that package and student id, sent from that origin (when the browser names one),
and only with that learner's approved result of that scenario: a status and a score, nothing else. Every refusal
is the same 401 body. The routes are `roleplay.scorm_routes`'s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from roleplay.errors import StandardsError

if TYPE_CHECKING:
    from roleplay.context import AppContext
    from roleplay.review import ReviewService
    from roleplay.rubric import Rubric
    from roleplay.scenario import Scenario

SCHEMA_FILES = ("imscp_rootv1p1p2.xsd", "adlcp_rootv1p2.xsd", "imsmd_rootv1p2p1.xsd", "ims_xml.xsd")
LAUNCH_PAGE = "index.html"
SCO_SCRIPT = "roleplay-sco.js"
KEY_FILE = "keys/scorm-hmac.key"
TOKEN_TTL = 30 * 24 * 3600  # seconds a link lasts; the course asks the learner to link again after it
POLL_SECONDS = 20.0  # how often an open course page asks for the result
PRACTICE_LEVEL = "intermediate"  # the level the Practice page opens on after linking (the learner may change it)
MAX_FIELD = 255  # SCORM 1.2 CMIString255: the longest student id or name
MAX_TOKEN = 2048
NS_CP = "http://www.imsproject.org/xsd/imscp_rootv1p1p2"
NS_ADLCP = "http://www.adlnet.org/xsd/adlcp_rootv1p2"
NS_MD = "http://www.imsglobal.org/xsd/imsmd_rootv1p2p1"


# --- numbers ------------------------------------------------------------------------------------------------------

def percent(level: float) -> float:
    """A weighted mean level (1-4) as a SCORM score, 0..100 with two decimals (the same map for score and mastery)."""
    return round((level - 1) / 3 * 100, 2)


def mastery_score(rubric: Rubric) -> float | None:
    """The `adlcp:masteryscore` of a rubric, or None when the score alone does not decide a pass (a must-pass
    criterion, or a threshold every score meets): an LMS that sets the status from the score would then contradict
    the facilitator's approved pass or fail."""
    if rubric.pass_threshold <= 1 or any(c.must_pass for c in rubric.criteria):
        return None
    return percent(rubric.pass_threshold)


def reports_pass_fail(rubric: Rubric) -> bool:
    """Whether an approved result is reported as passed / failed (else "completed": the rubric fails no one)."""
    return rubric.pass_threshold > 1 or any(c.must_pass for c in rubric.criteria)


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- addresses ----------------------------------------------------------------------------------------------------

def app_address(url: str, source: str = "--app-url") -> str:
    """The app's public address, checked and ending in '/'.

    Raises:
        StandardsError: not an http(s) address of a host (with no query, fragment or credentials).
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.query
            or parts.fragment or parts.username or parts.password or any(c.isspace() for c in text)):
        raise StandardsError(f"{source} {url!r} is not the app's web address; give the address learners open it at, "
                             "e.g. https://roleplay.example.com/")
    return text if text.endswith("/") else text + "/"


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


def valid_origin(value: str) -> bool:
    """Whether `value` is a web origin (scheme://host[:port], nothing after)."""
    return bool(value) and len(value) <= MAX_FIELD and bool(_ORIGIN.match(value))


# --- the key, package ids and tokens ------------------------------------------------------------------------------

def key_path(data_dir: str | Path) -> Path:
    """Where the SCORM key lives: `<data_dir>/keys/scorm-hmac.key`."""
    return Path(data_dir) / KEY_FILE


def load_or_create_key(data_dir: str | Path) -> bytes:
    """The deployment's SCORM HMAC key, created (32 random bytes, mode 0600) on first use.

    Raises:
        StandardsError: the key cannot be created or read, is too short, or is readable by other users.
    """
    path = key_path(data_dir)
    try:
        if not path.exists():
            _create_key(path)
        if os.name == "posix" and path.stat().st_mode & 0o077:
            raise StandardsError(f"the SCORM key {path} is readable by other users; run `chmod 600 {path}`")
        key = path.read_bytes()
    except OSError as exc:
        raise StandardsError(f"cannot use the SCORM key at {path}: {exc.strerror or exc}; make sure "
                             "ROLEPLAY_DATA_DIR points to a directory this user may write") from None
    if len(key) < 32:
        raise StandardsError(f"the SCORM key {path} is damaged (shorter than 32 bytes); restore it from backup, or "
                             "move it away and export the packages again")
    return key


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # never overwrites: of two processes, one key wins
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, text: str, size: int = 32) -> str:
    return _b64(hmac.new(key, f"roleplay-scorm-{purpose}\0{text}".encode(), hashlib.sha256).digest()[:size])


def new_package_id(key: bytes, scenario_id: str) -> str:
    """A fresh, signed package id naming its scenario: `<scenario>.<nonce>.<mac>`."""
    body = f"{scenario_id}.{secrets.token_hex(8)}"
    return f"{body}.{_mac(key, 'package', body, 16)}"


def package_scenario(key: bytes, package_id: str) -> str | None:
    """The scenario id of a package this deployment signed, else None."""
    body, _, mac = package_id.rpartition(".")
    # bytes, not str: compare_digest refuses a str with non-ASCII characters, and anyone may send one
    if (not body or len(package_id) > MAX_FIELD
            or not hmac.compare_digest(mac.encode(), _mac(key, "package", body, 16).encode())):
        return None
    return body.partition(".")[0]


@dataclass(frozen=True)
class Link:
    """What a valid token says: this learner linked this package for this LMS student from this origin."""

    package: str
    student: str
    learner: str
    origin: str
    expires: int


def issue_token(key: bytes, package: str, student: str, learner: str, origin: str, now: float | None = None,
                ttl: int = TOKEN_TTL) -> str:
    """A token that lets the course at `origin` read `learner`'s approved result for `package` as `student`."""
    expires = int((time.time() if now is None else now) + ttl)
    payload = _b64(json.dumps({"p": package, "s": student, "u": learner, "o": origin, "e": expires},
                              separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(key, 'token', payload)}"


def read_token(key: bytes, token: str, package: str, student: str, now: float | None = None) -> Link | None:
    """The link a token proves for this package and student, or None (forged, altered, expired or another's)."""
    payload, _, mac = token.partition(".")
    if (not payload or len(token) > MAX_TOKEN
            or not hmac.compare_digest(mac.encode(), _mac(key, "token", payload).encode())):
        return None
    try:
        data = json.loads(_unb64(payload))
        link = Link(package=str(data["p"]), student=str(data["s"]), learner=str(data["u"]), origin=str(data["o"]),
                    expires=int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    fresh = link.expires > (time.time() if now is None else now)
    return link if fresh and link.package == package and link.student == student else None


# --- the package --------------------------------------------------------------------------------------------------

@dataclass
class Package:
    """A built SCORM 1.2 package: its id, scenario and files (name -> bytes), manifest first."""

    package_id: str
    scenario_id: str
    title: str
    mastery: float | None
    files: dict[str, bytes] = field(default_factory=dict)


def data_file(name: str) -> bytes:
    """A file of `roleplay/data/scorm12/` (schemas, pages, scripts)."""
    return resources.files("roleplay").joinpath("data", "scorm12", name).read_bytes()


def fill_page(file: str, /, **values: str) -> str:
    """A page from `roleplay/data/scorm12/`, its `$names` filled with HTML-escaped values (`body`, `script`, `data`,
    `nonce` and `config` as they are)."""
    raw = {"body", "script", "data", "nonce", "config"}
    return Template(data_file(file).decode("utf-8")).substitute(
        {k: v if k in raw else html.escape(v) for k, v in values.items()})


def manifest_xml(package_id: str, scenario: Scenario, mastery: float | None, files: list[str]) -> str:
    """The `imsmanifest.xml` of a package: SCORM 1.2 (ADL SCORM 1.2 metadata, one item, one SCO)."""
    ident = "roleplay-" + re.sub(r"[^A-Za-z0-9_.-]", "-", package_id.rsplit(".", 1)[0])
    title = escape(scenario.title)
    description = escape(" ".join(scenario.briefing.split())[:2000])
    mastery_line = f"\n        <adlcp:masteryscore>{_number(mastery)}</adlcp:masteryscore>" if mastery is not None else ""
    file_lines = "\n".join(f"      <file href={quoteattr(name)}/>" for name in files)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<manifest identifier={quoteattr(ident)} version="1"
          xmlns="{NS_CP}"
          xmlns:adlcp="{NS_ADLCP}"
          xmlns:imsmd="{NS_MD}"
          xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
          xsi:schemaLocation="{NS_CP} imscp_rootv1p1p2.xsd {NS_MD} imsmd_rootv1p2p1.xsd {NS_ADLCP} adlcp_rootv1p2.xsd">
  <metadata>
    <schema>ADL SCORM</schema>
    <schemaversion>1.2</schemaversion>
    <imsmd:lom>
      <imsmd:general>
        <imsmd:title><imsmd:langstring>{title}</imsmd:langstring></imsmd:title>
        <imsmd:description><imsmd:langstring>{description}</imsmd:langstring></imsmd:description>
      </imsmd:general>
    </imsmd:lom>
  </metadata>
  <organizations default="roleplay-org">
    <organization identifier="roleplay-org">
      <title>{title}</title>
      <item identifier="roleplay-item" identifierref="roleplay-sco" isvisible="true">
        <title>{title}</title>{mastery_line}
      </item>
    </organization>
  </organizations>
  <resources>
    <resource identifier="roleplay-sco" type="webcontent" adlcp:scormtype="sco" href="{LAUNCH_PAGE}">
{file_lines}
    </resource>
  </resources>
</manifest>
"""


def launch_page(package_id: str, scenario: Scenario, app_url: str, poll_seconds: float) -> str:
    """The SCO's launch page: the scenario's briefing, the practice button, and what the script needs."""
    config = json.dumps({"app": app_url, "package": package_id, "poll": poll_seconds}).replace("<", "\\u003c")
    return fill_page("sco.html", title=scenario.title, briefing=scenario.briefing.strip(), config=config)


def build_package(scenario: Scenario, rubric: Rubric, app_url: str, key: bytes,
                  poll_seconds: float = POLL_SECONDS) -> Package:
    """A SCORM 1.2 package of `scenario` whose SCO reports to the app at `app_url` (raises as `app_address`)."""
    app_url = app_address(app_url)
    package_id = new_package_id(key, scenario.id)
    mastery = mastery_score(rubric)
    sco = {LAUNCH_PAGE: launch_page(package_id, scenario, app_url, poll_seconds).encode("utf-8"),
           SCO_SCRIPT: data_file(SCO_SCRIPT)}
    files = {"imsmanifest.xml": manifest_xml(package_id, scenario, mastery, list(sco)).encode("utf-8")}
    files.update(sco)
    files.update({name: data_file(name) for name in SCHEMA_FILES})
    return Package(package_id=package_id, scenario_id=scenario.id, title=scenario.title, mastery=mastery, files=files)


def check_target(out: Path) -> Path:
    """The directory a package at `out` goes in.

    Raises:
        StandardsError: `out` is a directory, or its directory does not exist or cannot be written.
    """
    if out.is_dir():
        raise StandardsError(f"-o {out} is a directory; give a file name, e.g. {out / 'package.zip'}")
    parent = out.parent
    if not parent.is_dir():
        problem = "is not a directory" if parent.exists() else "does not exist"
        raise StandardsError(f"-o {out}: {parent} {problem}; create the directory or write somewhere else")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StandardsError(f"-o {out}: the directory {parent} is not writable; choose a writable place")
    return parent


def write_package(package: Package, out: Path) -> Path:
    """Write the zip at `out` whole or not at all (a temporary file beside it, renamed into place).

    Raises:
        StandardsError: `out` is a directory, its directory does not exist, or it cannot be written.
    """
    parent = check_target(out)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise StandardsError(f"-o {out}: cannot write in {parent} ({exc.strerror or exc}); choose a writable "
                             "place") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in package.files.items():
                zf.writestr(name, data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        raise StandardsError(f"-o {out}: cannot write it ({exc.strerror or exc}); choose a writable place") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_scorm(context: AppContext, scenario_id: str, out: Path | None = None,
                 app_url: str | None = None) -> tuple[Path, Package]:
    """Build and write the package of a scenario (`roleplay export scorm`); every input is checked first.

    Raises:
        NotFoundError: no such scenario.
        StandardsError: no or a bad app address, or an output path that cannot be written.
    """
    if app_url is None and not context.settings.public_url:
        raise StandardsError("the package needs the app's address: pass --app-url https://... or set "
                             "ROLEPLAY_PUBLIC_URL")
    url = app_address(app_url) if app_url is not None else app_address(context.settings.public_url or "",
                                                                       "ROLEPLAY_PUBLIC_URL")
    target = out if out is not None else Path(f"{scenario_id}-scorm12.zip")
    check_target(target)
    scenario = context.catalog.scenario(scenario_id)
    rubric = context.catalog.rubric_for(scenario)
    package = build_package(scenario, rubric, url, load_or_create_key(context.settings.data_dir))
    return write_package(package, target), package


# --- results ------------------------------------------------------------------------------------------------------

def scorm_result(reviews: ReviewService, learner: str, scenario_id: str, rubric: Rubric) -> dict[str, Any]:
    """What the course may know of `learner`'s practice of a scenario: only approved results count.

    Returns:
        {"approved": False, "status": "incomplete", "score": None} until a facilitator approved one; then the best
        approved result (a pass before a fail, then the higher score): its status (passed / failed, or completed
        for a rubric that fails no one) and score 0..100.
    """
    from roleplay.review import approved_results

    mine = [r for r in approved_results(reviews, learner) if r.scenario_id == scenario_id]
    if not mine:
        return {"approved": False, "status": "incomplete", "score": None}
    best = max(mine, key=lambda r: (r.grade.passed, r.grade.overall, r.approved_at))
    status = ("passed" if best.grade.passed else "failed") if reports_pass_fail(rubric) else "completed"
    return {"approved": True, "status": status, "score": percent(best.grade.overall)}
