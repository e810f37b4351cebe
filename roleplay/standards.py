"""Open standards for results and certificates: xAPI 1.0.3 statements (and an LRS client) and Open Badges 3.0.

Only approved results leave roleplay: statements are built from `ApprovedResult`, whose grade is the one a
facilitator approved (with any edits), never the judge's raw grade.

Certificates are Open Badges 3.0 `OpenBadgeCredential`s (W3C Verifiable Credentials v2) secured with a
`DataIntegrityProof` using the `eddsa-jcs-2022` cryptosuite: the document and the proof configuration are
canonicalised with the JSON Canonicalization Scheme (RFC 8785), hashed with SHA-256 and signed with an Ed25519
key the deployment owns; the verification method is the key's `did:key`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from roleplay.errors import RoleplayError
from roleplay.review import ApprovedResult
from roleplay.scenario import Scenario

XAPI_VERSION = "1.0.3"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
SIMULATION_ACTIVITY = "http://adlnet.gov/expapi/activities/simulation"
DEFAULT_BASE = "https://roleplay.example"

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CRYPTOSUITE = "eddsa-jcs-2022"
KEY_FILE = Path("keys") / "badge-ed25519.pem"
ED25519_MULTICODEC = b"\xed\x01"


class StandardsError(RoleplayError):
    """A statement, credential or key cannot be produced or read; the message says what to fix."""


class LRSError(RoleplayError):
    """Statements could not be delivered to the Learning Record Store.

    Attributes:
        attempts: Requests made before giving up.
        status: The last HTTP status, or None (timeout or connection failure).
    """

    def __init__(self, message: str, *, attempts: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status


# --- base58btc and multibase -------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def b58encode(data: bytes) -> str:
    """Encode bytes in base58 with the Bitcoin alphabet (leading zero bytes become '1')."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Decode base58 (Bitcoin alphabet).

    Raises:
        StandardsError: `text` holds a character outside the alphabet.
    """
    n = 0
    for ch in text:
        if ch not in _B58_INDEX:
            raise StandardsError(f"'{ch}' is not a base58btc character; the value is corrupted or not base58btc")
        n = n * 58 + _B58_INDEX[ch]
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def multibase_b58(data: bytes) -> str:
    """Multibase base58btc: 'z' followed by the base58btc encoding."""
    return "z" + b58encode(data)


def multibase_b58_decode(text: str) -> bytes:
    """Decode a multibase base58btc value ('z...').

    Raises:
        StandardsError: the value does not start with 'z' or is not base58btc.
    """
    if not isinstance(text, str) or not text.startswith("z"):
        raise StandardsError("expected a multibase base58btc value starting with 'z'")
    return b58decode(text[1:])


# --- JSON Canonicalization Scheme (RFC 8785) ---------------------------------------------------

def _es_number(value: float) -> str:
    """Format a finite double like ECMAScript's Number.prototype.toString (RFC 8785 section 3.2.2.3)."""
    if value == 0:
        return "0"  # also -0
    sign = "-" if value < 0 else ""
    dec = Decimal(repr(abs(value)))  # repr is the shortest round-tripping form, like ECMAScript
    digits_t, exp = dec.as_tuple().digits, dec.as_tuple().exponent
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    k = len(digits)
    n = len(digits_t) + int(exp)  # value = 0.digits * 10^n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _jcs(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > 2**53:
            raise StandardsError(f"integer {value} is too large for JSON canonicalisation; store it as a string")
        out.append(str(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise StandardsError("NaN and infinity cannot be canonicalised; replace them with numbers or null")
        out.append(_es_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise StandardsError(f"object key {key!r} is not a string; JSON objects only have string keys")
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _jcs(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    else:
        raise StandardsError(f"{type(value).__name__} is not JSON; convert it to a string, number, list or object first")


def canonicalize(value: Any) -> str:
    """Serialise JSON data per RFC 8785 (JCS): keys sorted by UTF-16 code units, no whitespace, ES number format.

    Args:
        value: JSON data (dict, list, str, int, float, bool, None).

    Returns:
        The canonical form; encode it as UTF-8 before hashing.

    Raises:
        StandardsError: the value holds something JSON cannot represent exactly.
    """
    out: list[str] = []
    _jcs(value, out)
    return "".join(out)


# --- keys and did:key --------------------------------------------------------------------------

def _data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from roleplay.config import settings

    return settings().data_dir


def signing_key_path(data_dir: str | Path | None = None) -> Path:
    """Where the badge signing key lives: `<data_dir>/keys/badge-ed25519.pem`."""
    return _data_dir(data_dir) / KEY_FILE


def load_or_create_signing_key(data_dir: str | Path | None = None) -> Ed25519PrivateKey:
    """The deployment's Ed25519 badge signing key, created (PEM, mode 0600) on first use.

    Args:
        data_dir: Data directory; `settings().data_dir` when None.

    Raises:
        StandardsError: the key file is unreadable, not an Ed25519 key, or readable by other users.
    """
    path = signing_key_path(data_dir)
    if not path.exists():
        try:
            _create_key_file(path)
        except OSError as exc:
            raise StandardsError(f"cannot create the badge signing key at {path}: {exc.strerror or exc}; "
                                 "make sure ROLEPLAY_DATA_DIR points to a writable directory") from None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise StandardsError(f"the badge signing key {path} is readable by other users; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise StandardsError(f"cannot read the badge signing key {path}: {exc}; restore it from backup "
                             "(or move it away to create a new key, which invalidates no issued badges "
                             "but makes new ones verify against a new did:key)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StandardsError(f"{path} is not an Ed25519 private key; replace it with one or move it away")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(path.parent, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
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


def public_key_pem(data_dir: str | Path | None = None) -> str:
    """The PEM public key of the badge signing key, for publishing (creates the key on first use)."""
    key = load_or_create_signing_key(data_dir)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _raw_public(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def did_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The `did:key` of an Ed25519 key: multicodec 0xed01 + the 32-byte key, multibase base58btc."""
    return "did:key:" + multibase_b58(ED25519_MULTICODEC + _raw_public(key))


def verification_method(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The did:key verification method URL (`did:key:z6Mk...#z6Mk...`)."""
    did = did_key(key)
    return f"{did}#{did.removeprefix('did:key:')}"


def public_key_from_did_key(did: str) -> Ed25519PublicKey:
    """The Ed25519 public key in a `did:key` (with or without a `#fragment`).

    Raises:
        StandardsError: not a did:key of an Ed25519 key.
    """
    if not isinstance(did, str) or not did.startswith("did:key:z"):
        raise StandardsError(f"{did!r} is not a did:key; expected did:key:z6Mk...")
    raw = multibase_b58_decode(did.removeprefix("did:key:").split("#", 1)[0])
    if not raw.startswith(ED25519_MULTICODEC) or len(raw) != 34:
        raise StandardsError(f"{did} is not an Ed25519 did:key (expected multicodec 0xed01 and 32 key bytes)")
    return Ed25519PublicKey.from_public_bytes(raw[2:])


# --- Data Integrity proofs (eddsa-jcs-2022) ------------------------------------------------------

def _iso(moment: datetime, precise: bool = False) -> str:
    """UTC ISO 8601 with a Z; whole seconds unless `precise` (then milliseconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if precise:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash_data(document: dict[str, Any], proof_config: dict[str, Any]) -> bytes:
    return (hashlib.sha256(canonicalize(proof_config).encode("utf-8")).digest()
            + hashlib.sha256(canonicalize(document).encode("utf-8")).digest())


def sign_credential(credential: dict[str, Any], key: Ed25519PrivateKey, created: datetime | None = None) -> dict[str, Any]:
    """A copy of `credential` with an `eddsa-jcs-2022` DataIntegrityProof added.

    Args:
        credential: The unsecured credential (must not already have a proof).
        key: The issuer's Ed25519 private key.
        created: Proof creation time; now when None.

    Raises:
        StandardsError: the credential already has a proof or is not canonicalisable JSON.
    """
    if "proof" in credential:
        raise StandardsError("the credential already has a proof; sign the unsecured credential")
    document = json.loads(json.dumps(credential))
    proof: dict[str, Any] = {
        "type": "DataIntegrityProof",
        "cryptosuite": CRYPTOSUITE,
        "created": _iso(created or datetime.now(UTC)),
        "verificationMethod": verification_method(key),
        "proofPurpose": "assertionMethod",
    }
    if "@context" in document:
        proof["@context"] = document["@context"]
    proof["proofValue"] = multibase_b58(key.sign(_hash_data(document, proof)))
    return {**document, "proof": proof}


def _issuer_id(credential: dict[str, Any]) -> str | None:
    issuer = credential.get("issuer")
    if isinstance(issuer, str):
        return issuer
    if isinstance(issuer, dict) and isinstance(issuer.get("id"), str):
        return issuer["id"]
    return None


def verify_credential(credential: dict[str, Any], public_key: Ed25519PublicKey | None = None) -> bool:
    """Check an `eddsa-jcs-2022` DataIntegrityProof; any change to the credential or its proof gives False.

    Args:
        credential: The secured credential.
        public_key: Key to check against; derived from the proof's did:key verification method when None.

    Returns:
        True only when the proof is well-formed, made for assertion, by the issuer's did:key (when the issuer
        is a did:key), and the signature matches the canonical document and proof configuration.
    """
    try:
        if not isinstance(credential, dict) or not isinstance(credential.get("proof"), dict):
            return False
        proof = dict(credential["proof"])
        if (proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != CRYPTOSUITE
                or proof.get("proofPurpose") != "assertionMethod"):
            return False
        method = proof.get("verificationMethod")
        if not isinstance(method, str):
            return False
        did = method.split("#", 1)[0]
        issuer = _issuer_id(credential)
        if issuer is not None and issuer.startswith("did:key:") and issuer != did:
            return False
        key = public_key or public_key_from_did_key(method)
        signature = multibase_b58_decode(proof.pop("proofValue"))
        document = {k: v for k, v in credential.items() if k != "proof"}
        if "@context" in proof:
            context = document.get("@context")
            expected = proof["@context"] if isinstance(proof["@context"], list) else [proof["@context"]]
            given = context if isinstance(context, list) else [context]
            if given[: len(expected)] != expected:
                return False
            document["@context"] = proof["@context"]
        key.verify(signature, _hash_data(document, proof))
        return True
    except (InvalidSignature, StandardsError, ValueError, TypeError, KeyError, AttributeError):
        return False


# --- Open Badges 3.0 ---------------------------------------------------------------------------

def badge_credential(*, key: Ed25519PrivateKey, learner_email: str, achievement_id: str, achievement_name: str,
                     achievement_description: str, criteria_narrative: str, issuer_name: str,
                     issuer_url: str | None = None, issuer_id: str | None = None, name: str | None = None,
                     narrative: str | None = None, valid_from: datetime | None = None,
                     credential_id: str | None = None, salt: str | None = None) -> dict[str, Any]:
    """A signed Open Badges 3.0 `OpenBadgeCredential` (a W3C Verifiable Credential v2).

    The learner is identified by a salted SHA-256 hash of their email (an OB 3.0 `IdentityObject`), so the
    credential can be checked against an address without publishing it.

    Args:
        key: The deployment's Ed25519 signing key (see `load_or_create_signing_key`).
        learner_email: The learner's email address (hashed into the credential).
        achievement_id: URI of the achievement, e.g. `https://roleplay.example/achievements/<programme>/<sprint>`.
        achievement_name: Name of the achievement.
        achievement_description: What the achievement means.
        criteria_narrative: What a learner had to do to earn it.
        issuer_name: The issuing organisation's name.
        issuer_url: The issuer's home page, if any.
        issuer_id: The issuer Profile id; the key's did:key when None (recommended: it ties issuer and key).
        name: Name of the credential; the achievement name when None.
        narrative: Learner-specific narrative for the credential subject.
        valid_from: Issue time; now when None.
        credential_id: Credential id; a fresh `urn:uuid:` when None.
        salt: Salt for the identity hash; random when None.

    Returns:
        The credential with its `proof`.
    """
    issued = valid_from or datetime.now(UTC)
    salt = salt or uuid.uuid4().hex
    issuer: dict[str, Any] = {"id": issuer_id or did_key(key), "type": ["Profile"], "name": issuer_name}
    if issuer_url:
        issuer["url"] = issuer_url
    subject: dict[str, Any] = {
        "type": ["AchievementSubject"],
        "identifier": [{
            "type": "IdentityObject",
            "identityType": "emailAddress",
            "hashed": True,
            "identityHash": "sha256$" + hashlib.sha256((learner_email.strip().lower() + salt).encode("utf-8")).hexdigest(),
            "salt": salt,
        }],
        "achievement": {
            "id": achievement_id,
            "type": ["Achievement"],
            "name": achievement_name,
            "description": achievement_description,
            "criteria": {"narrative": criteria_narrative},
        },
    }
    if narrative:
        subject["narrative"] = narrative
    credential: dict[str, Any] = {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": credential_id or f"urn:uuid:{uuid.uuid4()}",
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": name or achievement_name,
        "issuer": issuer,
        "validFrom": _iso(issued),
        "credentialSubject": subject,
    }
    return sign_credential(credential, key, created=issued)


def identity_matches(credential: dict[str, Any], email: str) -> bool:
    """Whether the credential's hashed email identifier is `email`."""
    for ident in credential.get("credentialSubject", {}).get("identifier", []):
        digest = hashlib.sha256((email.strip().lower() + str(ident.get("salt", ""))).encode("utf-8")).hexdigest()
        if ident.get("identityHash") == "sha256$" + digest:
            return True
    return False


# --- xAPI ----------------------------------------------------------------------------------------

class XapiConfig(BaseModel):
    """How statements name learners and activities."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str = Field(default=DEFAULT_BASE, description="IRI base of activities and extensions (ROLEPLAY_XAPI_BASE).")
    mbox_domain: str = Field(default="roleplay.example",
                             description="Learners are `mailto:<username>@<domain>` (ROLEPLAY_XAPI_MBOX_DOMAIN).")
    account_home_page: str | None = Field(
        default=None,
        description="If set, learners are accounts on this home page instead of mboxes (ROLEPLAY_XAPI_HOMEPAGE).")
    language: str = Field(default="en-US", description="Language tag of names, descriptions and verb displays.")

    @classmethod
    def from_env(cls) -> XapiConfig:
        """Read ROLEPLAY_XAPI_BASE, ROLEPLAY_XAPI_MBOX_DOMAIN and ROLEPLAY_XAPI_HOMEPAGE (defaults otherwise)."""
        values = {field: os.environ.get(env) for field, env in (
            ("base", "ROLEPLAY_XAPI_BASE"), ("mbox_domain", "ROLEPLAY_XAPI_MBOX_DOMAIN"),
            ("account_home_page", "ROLEPLAY_XAPI_HOMEPAGE"))}
        return cls(**{k: v for k, v in values.items() if v})

    def agent(self, username: str, name: str | None = None) -> dict[str, Any]:
        """An xAPI Agent for a roleplay user."""
        agent: dict[str, Any] = {"objectType": "Agent"}
        if name:
            agent["name"] = name
        if self.account_home_page:
            agent["account"] = {"homePage": self.account_home_page, "name": username}
        else:
            agent["mbox"] = f"mailto:{username}@{self.mbox_domain}"
        return agent

    def iri(self, *parts: str) -> str:
        """An IRI under `base`."""
        return "/".join([self.base.rstrip("/"), *parts])


def statement_id(review_id: int, config: XapiConfig | None = None) -> str:
    """The deterministic statement id of an approved review (uuid5), so re-sending never duplicates."""
    cfg = config or XapiConfig()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, cfg.iri("reviews", str(review_id))))


def xapi_statement(result: ApprovedResult, scenario: Scenario | None = None, *, config: XapiConfig | None = None,
                   learner_name: str | None = None) -> dict[str, Any]:
    """An xAPI 1.0.3 statement for one approved result, scored from the approved grade.

    Args:
        result: The approved result (its grade includes any facilitator edits).
        scenario: The scenario, for the activity's name and description (the id is used when None).
        config: Actor and IRI settings; `XapiConfig()` defaults when None.
        learner_name: The learner's display name, if it may be shared.

    Returns:
        The statement as a JSON-ready dict.
    """
    cfg = config or XapiConfig()
    lang = cfg.language
    grade = result.grade
    verb = VERB_PASSED if grade.passed else VERB_FAILED
    definition: dict[str, Any] = {
        "name": {lang: scenario.title if scenario else result.scenario_id},
        "type": SIMULATION_ACTIVITY,
    }
    if scenario is not None:
        definition["description"] = {lang: scenario.summary}
    context: dict[str, Any] = {
        "platform": "roleplay",
        "language": lang,
        "instructor": cfg.agent(result.approved_by),
        "extensions": {
            cfg.iri("xapi", "extensions", "level"): result.level,
            cfg.iri("xapi", "extensions", "rubric"): grade.rubric_id,
            cfg.iri("xapi", "extensions", "session-id"): result.session_id,
            cfg.iri("xapi", "extensions", "review-id"): result.review_id,
        },
    }
    if scenario is not None:
        context["contextActivities"] = {"grouping": [{
            "objectType": "Activity", "id": cfg.iri("sprints", scenario.sprint),
            "definition": {"name": {lang: scenario.sprint}},
        }]}
    return {
        "id": statement_id(result.review_id, cfg),
        "actor": cfg.agent(result.learner, learner_name),
        "verb": {"id": verb, "display": {lang: "passed" if grade.passed else "failed"}},
        "object": {"objectType": "Activity", "id": cfg.iri("scenarios", result.scenario_id), "definition": definition},
        "result": {
            "score": {"scaled": round(grade.scaled, 4), "raw": grade.overall, "min": 1, "max": 4},
            "success": grade.passed,
            "completion": True,
        },
        "context": context,
        "timestamp": _iso(result.approved_at, precise=True),
    }


def export_xapi(statements: Iterable[dict[str, Any]]) -> str:
    """Statements as a JSON array (UTF-8 text), ready to import into an LRS or keep as a file."""
    return json.dumps(list(statements), indent=2, ensure_ascii=False)


class LRSConfig(BaseModel):
    """Where and how to send statements."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = Field(description="LRS endpoint; statements go to `<endpoint>/statements` (ROLEPLAY_LRS_URL).")
    key: str | None = Field(default=None, description="Basic-auth user / key (ROLEPLAY_LRS_KEY).")
    secret: str | None = Field(default=None, description="Basic-auth password / secret (ROLEPLAY_LRS_SECRET).")

    @classmethod
    def from_env(cls) -> LRSConfig:
        """Read ROLEPLAY_LRS_URL, ROLEPLAY_LRS_KEY and ROLEPLAY_LRS_SECRET.

        Raises:
            LRSError: ROLEPLAY_LRS_URL is not set, or only one of key and secret is.
        """
        url = os.environ.get("ROLEPLAY_LRS_URL")
        if not url:
            raise LRSError("no LRS configured; set ROLEPLAY_LRS_URL (e.g. https://lrs.example/xapi) and "
                           "ROLEPLAY_LRS_KEY / ROLEPLAY_LRS_SECRET, or export the statements to a file instead")
        key, secret = os.environ.get("ROLEPLAY_LRS_KEY") or None, os.environ.get("ROLEPLAY_LRS_SECRET") or None
        if (key is None) != (secret is None):
            raise LRSError("set both ROLEPLAY_LRS_KEY and ROLEPLAY_LRS_SECRET (the LRS's basic-auth credentials), or neither")
        return cls(endpoint=url, key=key, secret=secret)


def _retryable(status: int) -> bool:
    return status >= 500 or status == 429


def send_to_lrs(statements: list[dict[str, Any]], endpoint: str | None = None, auth: tuple[str, str] | None = None, *,
                timeout: float = 10.0, max_retries: int = 3, backoff: float = 0.5, batch_size: int = 50,
                transport: httpx.BaseTransport | None = None) -> list[str]:
    """POST statements to `<endpoint>/statements` with the xAPI version header and basic auth.

    Timeouts, connection failures, 429 and 5xx are retried up to `max_retries` times with exponential backoff;
    statement ids are deterministic, so a retried batch the LRS had already stored is not duplicated.

    Args:
        statements: Statements from `xapi_statement`.
        endpoint: The LRS endpoint; `ROLEPLAY_LRS_URL` when None.
        auth: (key, secret) for basic auth; `ROLEPLAY_LRS_KEY` / `ROLEPLAY_LRS_SECRET` when None and no endpoint given.
        timeout: Seconds per request.
        max_retries: Retries per batch after the first attempt.
        backoff: First delay between attempts in seconds (doubles each time).
        batch_size: Statements per request.
        transport: An httpx transport (for tests or proxies).

    Returns:
        The statement ids the LRS stored, in order.

    Raises:
        LRSError: the LRS refused the statements or could not be reached after the retries.
    """
    if endpoint is None:
        cfg = LRSConfig.from_env()
        endpoint = cfg.endpoint
        if auth is None and cfg.key is not None and cfg.secret is not None:
            auth = (cfg.key, cfg.secret)
    url = endpoint.rstrip("/") + "/statements"
    headers = {"X-Experience-API-Version": XAPI_VERSION, "Content-Type": "application/json"}
    stored: list[str] = []
    with httpx.Client(timeout=timeout, auth=auth, headers=headers, transport=transport) as client:
        for start in range(0, len(statements), max(1, batch_size)):
            batch = statements[start:start + max(1, batch_size)]
            stored.extend(_post_batch(client, url, batch, max_retries, backoff))
    return stored


def _post_batch(client: httpx.Client, url: str, batch: list[dict[str, Any]], max_retries: int,
                backoff: float) -> list[str]:
    body = json.dumps(batch, ensure_ascii=False).encode("utf-8")
    attempts = 0
    last_status: int | None = None
    last_problem = ""
    while True:
        attempts += 1
        try:
            reply = client.post(url, content=body)
        except httpx.TimeoutException:
            last_status, last_problem = None, f"timed out after {client.timeout.read}s"
        except httpx.TransportError as exc:
            last_status, last_problem = None, f"cannot connect ({type(exc).__name__}: {exc})"
        else:
            if reply.status_code < 300:
                try:
                    ids = reply.json()
                except ValueError:
                    ids = None
                if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
                    return ids
                return [s.get("id", "") for s in batch]
            last_status, last_problem = reply.status_code, f"HTTP {reply.status_code}: {reply.text[:300]}"
            if not _retryable(reply.status_code):
                raise LRSError(_refusal(url, reply.status_code, reply.text), attempts=attempts, status=reply.status_code)
        if attempts > max_retries:
            raise LRSError(f"could not deliver {len(batch)} statement(s) to {url} after {attempts} attempt(s): "
                           f"{last_problem}; check ROLEPLAY_LRS_URL and that the LRS is up, then send again "
                           "(statement ids are stable, so nothing is duplicated)", attempts=attempts, status=last_status)
        time.sleep(backoff * (2 ** (attempts - 1)))


def _refusal(url: str, status: int, text: str) -> str:
    detail = text.strip()[:300]
    if status in (401, 403):
        return (f"the LRS at {url} refused the credentials (HTTP {status}); check ROLEPLAY_LRS_KEY and "
                f"ROLEPLAY_LRS_SECRET{': ' + detail if detail else ''}")
    if status == 404:
        return f"no xAPI statements resource at {url} (HTTP 404); ROLEPLAY_LRS_URL should be the endpoint that /statements is under"
    if status == 409:
        return (f"the LRS at {url} already holds a different statement with one of these ids (HTTP 409); "
                f"the result changed after it was sent: {detail}")
    return f"the LRS at {url} rejected the statements (HTTP {status}): {detail or 'no details given'}; fix the statements or the LRS configuration"

