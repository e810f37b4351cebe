"""Open Badges 3.0 certificates: `OpenBadgeCredential`s signed with the deployment's Ed25519 key.

A credential is a W3C Verifiable Credential v2 secured with a `DataIntegrityProof` using the `eddsa-jcs-2022`
cryptosuite: the document and the proof configuration are canonicalised with the JSON Canonicalization Scheme
(RFC 8785, the `rfc8785` package), hashed with SHA-256 and signed with Ed25519; the verification method is the
key's `did:key` (multibase base58btc, the `base58` package).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import base58
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from roleplay.errors import StandardsError

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CRYPTOSUITE = "eddsa-jcs-2022"
KEY_FILE = Path("keys") / "badge-ed25519.pem"
ED25519_MULTICODEC = b"\xed\x01"


# --- encodings ---------------------------------------------------------------------------------

def multibase_b58(data: bytes) -> str:
    """Multibase base58btc: 'z' followed by the base58btc (Bitcoin alphabet) encoding."""
    return "z" + base58.b58encode(data).decode("ascii")


def multibase_b58_decode(text: str) -> bytes:
    """Decode a multibase base58btc value ('z...').

    Raises:
        StandardsError: the value does not start with 'z' or is not base58btc.
    """
    if not isinstance(text, str) or not text.startswith("z"):
        raise StandardsError("expected a multibase base58btc value starting with 'z'")
    try:
        return base58.b58decode(text[1:])
    except ValueError:
        raise StandardsError("the value holds a character outside base58btc; it is corrupted or not base58btc") from None


def canonicalize(value: Any) -> bytes:
    """JSON data serialised per RFC 8785 (JCS), as UTF-8 bytes ready to hash.

    Raises:
        StandardsError: the value holds something JSON cannot represent exactly (NaN, infinities, huge integers).
    """
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise StandardsError(f"the credential cannot be canonicalised (RFC 8785): {exc}") from None


# --- keys and did:key --------------------------------------------------------------------------

def signing_key_path(data_dir: str | Path) -> Path:
    """Where the badge signing key lives: `<data_dir>/keys/badge-ed25519.pem`."""
    return Path(data_dir) / KEY_FILE


def load_or_create_signing_key(data_dir: str | Path) -> Ed25519PrivateKey:
    """The deployment's Ed25519 badge signing key, created (PEM, mode 0600) on first use.

    Args:
        data_dir: The data directory (ROLEPLAY_DATA_DIR).

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


def public_key_pem(data_dir: str | Path) -> str:
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


def did_key_method(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
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

def _iso(moment: datetime) -> str:
    """UTC ISO 8601 in whole seconds with a Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash_data(document: dict[str, Any], proof_config: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonicalize(proof_config)).digest() + hashlib.sha256(canonicalize(document)).digest()


def sign_credential(credential: dict[str, Any], key: Ed25519PrivateKey, created: datetime | None = None,
                    verification_method: str | None = None) -> dict[str, Any]:
    """A copy of `credential` with an `eddsa-jcs-2022` DataIntegrityProof added.

    Args:
        credential: The unsecured credential (must not already have a proof).
        key: The issuer's Ed25519 private key.
        created: Proof creation time; now when None.
        verification_method: Where verifiers find the public key; the key's did:key when None.

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
        "verificationMethod": verification_method or did_key_method(key),
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
