"""Open standards: JCS canonical JSON, signed Open Badges 3.0 credentials, xAPI statements and delivery to an LRS."""

from __future__ import annotations

import base64
import copy
import json
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from content import catalog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roleplay.badges import (
    badge_credential,
    canonicalize,
    did_key,
    identity_matches,
    load_or_create_signing_key,
    multibase_b58,
    multibase_b58_decode,
    public_key_from_did_key,
    public_key_pem,
    sign_credential,
    signing_key_path,
    verify_credential,
)
from roleplay.config import load_settings
from roleplay.errors import ConfigError, LRSError, StandardsError
from roleplay.grader import CriterionGrade, finish_grade
from roleplay.retry import RetryPolicy
from roleplay.review import ApprovedResult, CriterionEdit, ReviewService, approved_results
from roleplay.store import Store
from roleplay.xapi import LRSConfig, XapiConfig, export_xapi, send_to_lrs, statement_id, xapi_statement

ISSUED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


# --- canonical JSON and base58 --------------------------------------------------------------------

def test_jcs_matches_the_rfc_8785_example() -> None:
    data = json.loads('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
                      '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", '
                      '"literals": [null, true, false]}')
    assert canonicalize(data).decode() == ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                                  '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')


def test_jcs_sorts_keys_by_utf16_and_formats_numbers_like_ecmascript() -> None:
    assert canonicalize({"\ufb33": 3, "\U0001F600": 2, "\u20ac": 1, "a": [1.0, -0.0, 1e21, 1e-7, 0.000001]}) == (
        '{"a":[1,0,1e+21,1e-7,0.000001],"\u20ac":1,"\U0001F600":2,"\ufb33":3}'.encode())
    with pytest.raises(StandardsError, match="canonicalised"):
        canonicalize({"x": float("nan")})


def test_multibase_base58btc_round_trips_and_refuses_other_characters() -> None:
    assert multibase_b58(b"Hello World!") == "z2NEpo7TZRRrLZSi2U"
    for data in (b"", b"\0", bytes(range(40)), b"\xff" * 33):
        assert multibase_b58_decode(multibase_b58(data)) == data
    with pytest.raises(StandardsError, match="base58btc"):
        multibase_b58_decode("z0OIl")


# --- the published eddsa-jcs-2022 test vectors (W3C vc-di-eddsa) ----------------------------------

VECTORS = json.loads((Path(__file__).parent / "vectors" / "eddsa-jcs-2022.json").read_text())


def _vector_key() -> Ed25519PrivateKey:
    raw = multibase_b58_decode(VECTORS["keyPair"]["privateKeyMultibase"])
    assert raw[:2] == b"\x80\x26"  # multicodec ed25519-priv
    return Ed25519PrivateKey.from_private_bytes(raw[2:])


def test_signing_reproduces_the_w3c_eddsa_jcs_2022_test_vector() -> None:
    key = _vector_key()
    assert did_key(key) == "did:key:" + VECTORS["keyPair"]["publicKeyMultibase"]
    signed = VECTORS["signed"]
    unsigned = {k: v for k, v in signed.items() if k != "proof"}
    ours = sign_credential(unsigned, key, created=datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC),
                           verification_method=signed["proof"]["verificationMethod"])
    assert ours == signed  # Ed25519 is deterministic: the same proofValue, byte for byte


def test_the_w3c_test_vector_verifies_and_any_change_breaks_it() -> None:
    signed = VECTORS["signed"]
    public = _vector_key().public_key()
    assert verify_credential(signed, public)
    tampered = copy.deepcopy(signed)
    tampered["credentialSubject"]["alumniOf"] = "Another School"
    assert not verify_credential(tampered, public)


# --- keys ---------------------------------------------------------------------------------------

def test_signing_key_is_created_once_with_0600_and_reused(tmp_path: Path) -> None:
    first = load_or_create_signing_key(tmp_path)
    path = signing_key_path(tmp_path)
    assert path == tmp_path / "keys" / "badge-ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    second = load_or_create_signing_key(tmp_path)
    assert did_key(first) == did_key(second)
    assert public_key_pem(tmp_path).startswith("-----BEGIN PUBLIC KEY-----")


def test_signing_key_lives_in_the_configured_data_dir(isolated_settings: Path) -> None:
    load_or_create_signing_key(load_settings().data_dir)
    assert (isolated_settings / "keys" / "badge-ed25519.pem").is_file()


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path)
    signing_key_path(tmp_path).chmod(0o644)
    with pytest.raises(StandardsError, match="chmod 600"):
        load_or_create_signing_key(tmp_path)


def test_did_key_holds_the_public_key() -> None:
    key = Ed25519PrivateKey.generate()
    did = did_key(key)
    assert did.startswith("did:key:z6Mk")
    assert public_key_from_did_key(did + "#" + did[8:]).public_bytes_raw() == key.public_key().public_bytes_raw()
    with pytest.raises(StandardsError, match="did:key"):
        public_key_from_did_key("did:web:example.com")


# --- Open Badges 3.0 --------------------------------------------------------------------------------

@pytest.fixture()
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_badge(key: Ed25519PrivateKey) -> dict[str, Any]:
    return badge_credential(
        key=key, learner_email="ana@roleplay.example",
        achievement_id="https://roleplay.example/achievements/prog/underperformance/intermediate",
        achievement_name="Addressing underperformance (intermediate)",
        achievement_description="Raise a performance problem candidly and kindly.",
        criteria_narrative="Two approved passing sessions and a facilitator's sign-off.",
        issuer_name="Roleplay Practice Academy", issuer_url="https://roleplay.example", valid_from=ISSUED)


def test_badge_is_an_open_badges_3_credential(key: Ed25519PrivateKey) -> None:
    cred = make_badge(key)
    assert cred["@context"] == ["https://www.w3.org/ns/credentials/v2",
                                "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"]
    assert cred["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert cred["id"].startswith("urn:uuid:")
    assert cred["issuer"] == {"id": did_key(key), "type": ["Profile"], "name": "Roleplay Practice Academy",
                              "url": "https://roleplay.example"}
    assert cred["validFrom"] == "2026-03-02T09:30:00Z"
    subject = cred["credentialSubject"]
    assert subject["type"] == ["AchievementSubject"]
    assert subject["achievement"]["type"] == ["Achievement"]
    assert subject["achievement"]["criteria"]["narrative"].startswith("Two approved")
    assert "ana@roleplay.example" not in json.dumps(cred)  # only a salted hash of the email
    assert identity_matches(cred, "ana@roleplay.example") and not identity_matches(cred, "bob@roleplay.example")
    proof = cred["proof"]
    assert proof["type"] == "DataIntegrityProof" and proof["cryptosuite"] == "eddsa-jcs-2022"
    assert proof["proofPurpose"] == "assertionMethod"
    assert proof["verificationMethod"] == f"{did_key(key)}#{did_key(key)[8:]}"
    assert proof["proofValue"].startswith("z") and len(multibase_b58_decode(proof["proofValue"])) == 64


def test_badge_verifies_and_any_tampering_fails(key: Ed25519PrivateKey) -> None:
    cred = make_badge(key)
    assert verify_credential(cred)
    assert verify_credential(cred, key.public_key())
    assert verify_credential(json.loads(json.dumps(cred, indent=3)))  # whitespace and key order do not matter

    renamed = copy.deepcopy(cred)
    renamed["credentialSubject"]["achievement"]["name"] = "Expert in everything"
    assert not verify_credential(renamed)
    retitled = copy.deepcopy(cred)
    retitled["name"] = "Something else"
    assert not verify_credential(retitled)

    forged = copy.deepcopy(cred)
    value = forged["proof"]["proofValue"]
    forged["proof"]["proofValue"] = value[:-2] + ("1" if value[-2] != "1" else "2") + value[-1]
    assert not verify_credential(forged)
    backdated = copy.deepcopy(cred)
    backdated["proof"]["created"] = "2020-01-01T00:00:00Z"
    assert not verify_credential(backdated)
    unproven = {k: v for k, v in cred.items() if k != "proof"}
    assert not verify_credential(unproven)

    other = Ed25519PrivateKey.generate()
    assert not verify_credential(cred, other.public_key())
    # re-signed by someone else but still claiming our issuer: the did:key no longer matches the issuer
    stolen = sign_credential({k: v for k, v in renamed.items() if k != "proof"}, other)
    assert not verify_credential(stolen)


def test_signing_twice_is_refused(key: Ed25519PrivateKey) -> None:
    with pytest.raises(StandardsError, match="already has a proof"):
        sign_credential(make_badge(key), key)


# --- xAPI -----------------------------------------------------------------------------------------

def _criteria(rubric: Any, level: int) -> list[CriterionGrade]:
    return [CriterionGrade(criterion_id=c.id, level=level, checks=[], evidence=[], rationale=f"Level {level}.",
                           better_alternative="Try an open question.") for c in rubric.criteria]


def approved(store: Store, reviews: ReviewService, level: int, edit_to: int | None = None) -> ApprovedResult:
    """A session graded at `level` on every criterion, optionally edited to `edit_to`, then approved."""
    cat = catalog()
    scn = cat.scenario("missed-deadlines")
    rubric = cat.rubric_for(scn)
    learner = store.ensure_person("ana", "learner", "Ana Lima")
    store.ensure_person("fay", "facilitator")
    sess = store.start_session(learner.id, scn.id, "intermediate", "offline")
    store.add_turn(sess.id, "learner", "What has been going on for you?")
    grade = finish_grade(rubric, "offline", _criteria(rubric, level))
    store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
    review = next(v for v in reviews.queue("pending") if v.session_id == sess.id)
    if edit_to is not None:
        reviews.edit(review.review_id, "fay", [CriterionEdit(criterion_id=c.id, level=edit_to) for c in rubric.criteria],
                     "The offline judge missed the acknowledgement.")
    reviews.approve(review.review_id, "fay")
    return next(r for r in approved_results(reviews, "ana") if r.session_id == sess.id)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    yield s
    s.close()


@pytest.fixture()
def reviews(store: Store) -> ReviewService:
    return ReviewService(store, catalog().rubric)


def test_statement_uses_the_approved_edited_score_not_the_ai_one(store: Store, reviews: ReviewService) -> None:
    result = approved(store, reviews, level=2, edit_to=4)
    ai = reviews.get(result.review_id).ai_grade
    assert not ai.passed and ai.overall == 2
    st = xapi_statement(result, catalog().scenario("missed-deadlines"), learner_name="Ana Lima")
    assert st["result"] == {"score": {"scaled": 1.0, "raw": 4.0, "min": 1, "max": 4}, "success": True, "completion": True}
    assert st["verb"] == {"id": "http://adlnet.gov/expapi/verbs/passed", "display": {"en-US": "passed"}}
    assert st["actor"] == {"objectType": "Agent", "name": "Ana Lima", "mbox": "mailto:ana@roleplay.example"}
    assert st["object"]["id"] == "https://roleplay.example/scenarios/missed-deadlines"
    assert st["object"]["definition"]["name"] == {"en-US": "Missed deadlines"}
    assert "analyst" in st["object"]["definition"]["description"]["en-US"]
    ext = st["context"]["extensions"]
    assert ext["https://roleplay.example/xapi/extensions/level"] == "intermediate"
    assert ext["https://roleplay.example/xapi/extensions/rubric"] == "coaching-conversation"
    assert ext["https://roleplay.example/xapi/extensions/session-id"] == result.session_id
    assert st["context"]["instructor"]["mbox"] == "mailto:fay@roleplay.example"
    assert st["timestamp"].endswith("Z") and st["timestamp"].startswith(result.approved_at.strftime("%Y-%m-%dT"))
    assert uuid.UUID(st["id"]).version == 5
    assert st["id"] == xapi_statement(result)["id"] == statement_id(result.review_id)


def test_failed_session_gets_the_failed_verb(store: Store, reviews: ReviewService) -> None:
    st = xapi_statement(approved(store, reviews, level=1))
    assert st["verb"]["id"] == "http://adlnet.gov/expapi/verbs/failed"
    assert st["verb"]["display"] == {"en-US": "failed"}
    assert st["result"]["success"] is False and st["result"]["score"]["scaled"] == 0.0
    assert st["object"]["definition"]["name"] == {"en-US": "missed-deadlines"}  # no scenario given


def test_actor_and_iris_are_configurable(store: Store, reviews: ReviewService, monkeypatch: pytest.MonkeyPatch) -> None:
    result = approved(store, reviews, level=3)
    cfg = XapiConfig(base="https://lms.example.org/roleplay/", account_home_page="https://lms.example.org")
    st = xapi_statement(result, config=cfg)
    assert st["actor"] == {"objectType": "Agent", "account": {"homePage": "https://lms.example.org", "name": "ana"}}
    assert st["object"]["id"] == "https://lms.example.org/roleplay/scenarios/missed-deadlines"
    assert st["id"] != xapi_statement(result)["id"]
    monkeypatch.setenv("ROLEPLAY_XAPI_MBOX_DOMAIN", "acme.test")
    assert xapi_statement(result, config=XapiConfig.from_settings(load_settings()))["actor"]["mbox"] == "mailto:ana@acme.test"
    exported = json.loads(export_xapi([st, xapi_statement(result)]))
    assert [s["id"] for s in exported] == [st["id"], xapi_statement(result)["id"]]


# --- delivery to an LRS ------------------------------------------------------------------------------

class StubLRS:
    """A tiny xAPI statements endpoint on 127.0.0.1 that records requests and replays scripted replies."""

    def __init__(self, replies: list[int | str] | None = None) -> None:
        self.replies = list(replies or [])
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                reply = stub.replies.pop(0) if stub.replies else 200
                if reply == "slow":
                    time.sleep(0.6)
                    reply = 200
                if self.headers.get("X-Experience-API-Version") not in ("2.0.0", "1.0.3"):
                    reply = 400
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"key:secret").decode():
                    reply = 401
                payload = json.dumps([s["id"] for s in json.loads(body)]) if reply == 200 else '{"error": "no"}'
                data = payload.encode()
                try:
                    self.send_response(int(reply))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/xapi/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def statements(n: int = 2) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "actor": {"mbox": f"mailto:l{i}@x.example"},
             "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"}, "object": {"id": f"https://x.example/s/{i}"}}
            for i in range(n)]


NO_WAIT = RetryPolicy(max_retries=3, backoff_base=0)


def lrs_at(url: str, secret: str = "secret") -> LRSConfig:
    return LRSConfig(endpoint=url, key="key", secret=secret)


def test_statements_reach_the_lrs_with_version_header_and_basic_auth() -> None:
    sts = statements(3)
    with StubLRS() as lrs:
        ids = send_to_lrs(sts, lrs_at(lrs.url), policy=NO_WAIT)
    assert ids == [s["id"] for s in sts]
    (req,) = lrs.requests
    assert req["path"] == "/xapi/statements"
    assert req["headers"]["X-Experience-API-Version"] == "2.0.0"  # the default; ROLEPLAY_LRS_VERSION=1.0.3 for older LRSs
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == sts


def test_lrs_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LRSError, match="ROLEPLAY_LRS_URL"):
        LRSConfig.from_settings(load_settings())
    with StubLRS() as lrs:
        monkeypatch.setenv("ROLEPLAY_LRS_URL", lrs.url)
        monkeypatch.setenv("ROLEPLAY_LRS_KEY", "key")
        with pytest.raises(ConfigError, match="set both"):
            load_settings()
        monkeypatch.setenv("ROLEPLAY_LRS_SECRET", "secret")
        assert len(send_to_lrs(statements(), LRSConfig.from_settings(load_settings()), batch_size=1,
                               policy=NO_WAIT)) == 2
    assert len(lrs.requests) == 2


def test_server_errors_and_timeouts_are_retried() -> None:
    with StubLRS([500, 200]) as lrs:
        assert len(send_to_lrs(statements(), lrs_at(lrs.url), policy=NO_WAIT)) == 2
    assert len(lrs.requests) == 2
    with StubLRS(["slow", 200]) as lrs:
        assert len(send_to_lrs(statements(), lrs_at(lrs.url), timeout=0.2, policy=NO_WAIT)) == 2
    assert len(lrs.requests) == 2


def test_retries_are_bounded() -> None:
    with StubLRS([503] * 10) as lrs, pytest.raises(LRSError, match="after 3 attempt") as err:
        send_to_lrs(statements(), lrs_at(lrs.url), policy=RetryPolicy(max_retries=2, backoff_base=0))
    assert err.value.attempts == 3 and err.value.status == 503 and len(lrs.requests) == 3


def test_wrong_credentials_are_not_retried() -> None:
    with StubLRS() as lrs, pytest.raises(LRSError, match="ROLEPLAY_LRS_KEY") as err:
        send_to_lrs(statements(), lrs_at(lrs.url, secret="wrong"), policy=NO_WAIT)
    assert err.value.status == 401 and len(lrs.requests) == 1


def test_unreachable_lrs_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LRSError, match="could not deliver 2 statement.*cannot connect.*ROLEPLAY_LRS_URL") as err:
        send_to_lrs(statements(), lrs_at(f"http://127.0.0.1:{port}"),
                    policy=RetryPolicy(max_retries=1, backoff_base=0))
    assert err.value.attempts == 2 and err.value.status is None
