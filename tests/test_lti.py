"""LMS launch (LTI 1.3) end to end over real HTTP: a local platform (tests/lti_platform.py) launches the running app,
the learner lands signed in on the scenario, deep linking returns scenarios, refused launches create nobody, and an
approved review's score reaches the platform's grade book (once, after retries when the grade book is down)."""

from __future__ import annotations

import html
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import TIMEOUT, browser, free_port, needs_chromium  # noqa: F401 - browser is a fixture
from click.testing import CliRunner
from lti_platform import LtiPlatform, new_key
from reviewkit import graded_session

from roleplay.context import AppContext
from roleplay.errors import ConfigError
from roleplay.lti import lti_username
from roleplay.lti_config import load_or_create_keys, load_platforms
from roleplay.models import LtiPassback
from roleplay.review import CriterionEdit

SCENARIO = "missed-deadlines"


@pytest.fixture()
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LtiPlatform]:
    """The local platform, registered in the tool's platforms file (ROLEPLAY_LTI_CONFIG)."""
    with LtiPlatform() as lms:
        config = tmp_path / "lti-platforms.json"
        config.write_text(json.dumps({"platforms": [lms.config_entry()]}))
        monkeypatch.setenv("ROLEPLAY_LTI_CONFIG", str(config))
        yield lms


@contextmanager
def serve(lms: LtiPlatform | None, full: bool = False) -> Iterator[tuple[str, AppContext]]:
    """The app launched as in production (`launch_options()`), on a free port: the whole app, or a one-page app
    (quicker) with the same sign-in and routes."""
    import gradio as gr

    from roleplay.ui import build_app
    from roleplay.ui.app import launch_options
    from roleplay.ui.common import use_context

    context = AppContext()
    context.store.add_person("fay", "facilitator")
    if full:
        demo = build_app(context)
    else:
        use_context(context)
        with gr.Blocks() as demo:
            gr.Markdown("signed in")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    url = f"http://127.0.0.1:{port}"
    if lms is not None:
        lms.tool_url = url
    try:
        yield url, context
    finally:
        demo.close()


@dataclass
class Launched:
    """A launch as the browser went through it."""

    response: httpx.Response
    form: dict[str, str] = field(default_factory=dict)  # what the platform's page posted to the tool
    action: str = ""


def launch(client: httpx.Client, lms: LtiPlatform, **login: Any) -> Launched:
    """Login initiation at the tool, the redirect to the platform's auth endpoint, and its form posted back."""
    start = client.get(lms.login_url(**login))
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(f"{lms.url}/auth?")
    page = client.get(start.headers["location"])
    assert page.status_code == 200, page.text
    form = {k: html.unescape(v) for k, v in re.findall(r"name='(\w+)' value='([^']*)'", page.text)}
    action = html.unescape(re.search(r"action='([^']+)'", page.text).group(1))  # type: ignore[union-attr]
    return Launched(client.post(action, data=form), form, action)


def quick_review(context: AppContext, username: str, level: int = 3) -> int:
    """A practice session of `username` on the scenario, graded with every criterion at `level` (no conversation,
    for tests about what happens after the grade); the id of its review."""
    from roleplay.grader import CriterionGrade, finish_grade

    store = context.store
    sess = store.start_session(store.person(username).id, SCENARIO, "novice", "offline")
    store.end_session(sess.id, "learner")
    rubric = context.catalog.rubric(context.catalog.scenario(SCENARIO).rubric)
    grade = finish_grade(rubric, "offline", [CriterionGrade(criterion_id=c.id, level=level, checks=[], rationale="ok",
                                                            better_alternative="-") for c in rubric.criteria])
    store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(mode="json"), grade.overall, grade.passed)
    return store.open_review_id(sess.id) or 0


def people(context: AppContext) -> set[str]:
    return {p.username for p in context.store.people()}


def one_line_refusal(response: httpx.Response, status: int, *words: str) -> None:
    text = response.text
    assert response.status_code == status, (response.status_code, text)
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text and "unexpected" not in text.lower()
    for word in words:
        assert word in text, (word, text)
    assert not any(c.startswith("access-token") for c in response.cookies)


# --- launch, sign-in and grade passback ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_launch_signs_the_learner_in_on_the_scenario_and_the_approved_score_reaches_the_grade_book(
        platform: LtiPlatform) -> None:
    from roleplay.ui import practice_page

    with serve(platform, full=True) as (url, context), httpx.Client(timeout=30) as browser:
        assert browser.get(f"{url}/config").status_code == 401  # not signed in yet
        done = launch(browser, platform, sub="1001", scenario=SCENARIO)
        assert done.response.status_code == 303, done.response.text
        assert done.response.headers["location"] == f"/?scenario={SCENARIO}&level=intermediate"

        username = lti_username(platform.issuer, "1001")
        assert username == "1001@127.0.0.1"
        assert browser.get(f"{url}/gradio_api/user").json() == username  # Gradio's own sign-in, by the cookie
        assert browser.get(f"{url}/config").status_code == 200
        assert browser.get(f"{url}/?scenario={SCENARIO}&level=intermediate").status_code == 200
        person = context.store.person(username)
        assert (person.role, person.password_hash, person.display_name) == ("learner", None, "Learner 1001")

        @dataclass
        class PageRequest:  # what the Practice page's handler reads of the opened page
            username: str
            query_params: dict[str, str]

        shown = practice_page.enter(None, PageRequest(username, {"scenario": SCENARIO, "level": "intermediate"}))
        assert shown[0] == "" and shown[2]["value"] == SCENARIO and "Missed deadlines" in shown[3]

        with httpx.Client(timeout=30) as later:  # another day, same person
            assert launch(later, platform, sub="1001", scenario=SCENARIO).response.status_code == 303
        assert people(context) == {"fay", username}

        review_id = graded_session(context.store, learner=username, scenario_id=SCENARIO)
        assert platform.got.scores == []  # graded but not approved: nothing counts yet
        view = context.reviews.approve(review_id, "fay")

    [score] = platform.got.scores
    assert score["userId"] == "1001"
    assert score["scoreGiven"] == round(view.current.scaled, 4) and score["scoreMaximum"] == 1
    assert (score["activityProgress"], score["gradingProgress"]) == ("Completed", "FullyGraded")
    assert score["_path"] == "/lineitems/7/lineitem/scores"
    assert score["_type"] == "application/vnd.ims.lis.v1.score+json"
    [token] = platform.got.token_requests
    assert token["grant_type"] == "client_credentials" and token["claims"]["iss"] == platform.client_id
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in token["scope"]
    assert platform.got.errors == []


@pytest.mark.slow
def test_a_grade_book_that_is_down_gets_the_score_later_and_only_once(platform: LtiPlatform) -> None:
    from roleplay.cli import main
    from roleplay.review import ReviewService

    with serve(platform) as (url, context), httpx.Client(timeout=30) as browser:
        assert launch(browser, platform, sub="2002", scenario=SCENARIO).response.status_code == 303
        username = lti_username(platform.issuer, "2002")
        context.store.add_person("ben", "learner")  # practises without the LMS: nothing to pass back
        other = quick_review(context, "ben")
        context.reviews.approve(other, "fay")
        platform.fail_scores = 1
        review_id = quick_review(context, username)
        context.reviews.approve(review_id, "fay")  # the approval stands although the grade book said 503
        assert context.reviews.get(review_id).status == "approved"
        assert platform.got.scores == []
        with context.store.session() as db:
            [row] = db.query(LtiPassback).all()
            assert (row.review_id, row.status, row.attempts) == (review_id, "pending", 1)
            assert "503" in (row.last_error or "")
        missed = quick_review(context, username, level=4)  # approved by a process without the LMS set up
        ReviewService(context.store, context.rubric).approve(missed, "fay")

        result = CliRunner().invoke(main, ["lti", "retry"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "sent 2, still pending 0 (1 newly queued)" in result.output
        again = CliRunner().invoke(main, ["lti", "retry"], catch_exceptions=False)
        assert again.exit_code == 0 and "sent 0, still pending 0" in again.output

    assert [(s["userId"], s["scoreGiven"]) for s in platform.got.scores] == [("2002", round(2 / 3, 4)), ("2002", 1.0)]
    with context.store.session() as db:
        rows = [(r.review_id, r.status, r.attempts, r.last_error)
                for r in db.query(LtiPassback).order_by(LtiPassback.id)]
    assert rows == [(review_id, "sent", 2, None), (missed, "sent", 1, None)]


@pytest.mark.slow
def test_a_link_without_a_line_item_gets_one_made_and_the_edited_approved_score_sent(platform: LtiPlatform) -> None:
    def only_container(claims: dict[str, Any]) -> dict[str, Any]:
        ags = claims["https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"]
        del ags["lineitem"]
        return claims

    platform.claims_hook = only_container
    with serve(platform) as (url, context), httpx.Client(timeout=30) as browser:
        assert launch(browser, platform, sub="3003", scenario=SCENARIO).response.status_code == 303
        review_id = quick_review(context, lti_username(platform.issuer, "3003"), level=2)
        first = context.reviews.get(review_id).current.criteria[0].criterion_id
        context.reviews.edit(review_id, "fay", [CriterionEdit(criterion_id=first, level=4)], "clearer than the AI saw")
        view = context.reviews.approve(review_id, "fay")
        assert view.current.scaled > view.ai_grade.scaled
    [item] = platform.got.lineitems
    assert (item["resourceLinkId"], item["resourceId"], item["scoreMaximum"]) == (f"link-{SCENARIO}", SCENARIO, 1)
    assert item["label"] == "Missed deadlines"
    [score] = platform.got.scores
    assert score["_path"] == "/lineitems/1/scores" and score["userId"] == "3003"
    assert score["scoreGiven"] == round(view.current.scaled, 4)  # the facilitator's edited grade, not the AI's


@pytest.mark.browser
@needs_chromium
def test_in_a_browser_the_launch_opens_the_practice_page_on_the_linked_scenario(
        browser: Any, platform: LtiPlatform) -> None:  # noqa: F811 - the fixture imported above
    from playwright.sync_api import expect

    from roleplay.ui import practice_page

    with serve(platform, full=True) as (_url, context):
        first = practice_page.scenario_choices()[0][1]
        linked = next(s for s in context.catalog.scenarios.values() if s.id != first)
        page = browser.new_context().new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(platform.login_url(sub="4004", scenario=linked.id))  # the LMS's link, through its sign-in form
        expect(page.locator("#whoami-user")).to_have_text(lti_username(platform.issuer, "4004"), timeout=TIMEOUT)
        expect(page.locator("#tab-practice-button")).to_have_attribute("aria-selected", "true", timeout=TIMEOUT)
        expect(page.locator("#practice-scenario input")).to_have_value(re.compile(re.escape(linked.title)),
                                                                          timeout=TIMEOUT)
        expect(page.locator("#practice-briefing")).to_contain_text(linked.title, timeout=TIMEOUT)
        page.context.close()


# --- deep linking -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_deep_linking_returns_the_chosen_scenarios_as_resource_links(platform: LtiPlatform) -> None:
    with serve(platform) as (url, context), httpx.Client(timeout=30) as browser:
        chooser = launch(browser, platform, sub="teacher-9", message="deep-link").response
        assert chooser.status_code == 200 and "Add roleplay scenarios to the course" in chooser.text
        assert f'value="{SCENARIO}"' in chooser.text and 'value="meeting-conflict"' in chooser.text
        request_id = re.search(r"name='request' value='([^']+)'", chooser.text).group(1)  # type: ignore[union-attr]
        picked = browser.post(f"{url}/lti/deep-link",
                              data={"request": request_id, "scenario": [SCENARIO, "meeting-conflict"]})
        assert picked.status_code == 200
        action = html.unescape(re.search(r"action='([^']+)'", picked.text).group(1))  # type: ignore[union-attr]
        token = re.search(r"name='JWT' value='([^']+)'", picked.text).group(1)  # type: ignore[union-attr]
        assert action == f"{platform.url}/deep-link-return"
        assert browser.post(action, data={"JWT": token}).status_code == 200  # the platform checked the signature

        used = browser.post(f"{url}/lti/deep-link", data={"request": request_id, "scenario": SCENARIO})
        one_line_refusal(used, 410, "already sent or has expired")
        assert people(context) == {"fay"}  # an instructor choosing scenarios gets no account

    [response] = platform.got.deep_links
    assert response["https://purl.imsglobal.org/spec/lti/claim/message_type"] == "LtiDeepLinkingResponse"
    assert response["iss"] == platform.client_id
    assert response["https://purl.imsglobal.org/spec/lti/claim/deployment_id"] == platform.deployment_id
    assert response["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == "opaque-42"
    items = response["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
    assert [(i["type"], i["custom"], i["url"]) for i in items] == [
        ("ltiResourceLink", {"scenario": SCENARIO}, f"{url}/lti/launch"),
        ("ltiResourceLink", {"scenario": "meeting-conflict"}, f"{url}/lti/launch")]
    assert items[0]["title"] == "Missed deadlines" and items[0]["lineItem"]["scoreMaximum"] == 1


# --- refusals ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_refused_launches_say_why_in_one_line_and_create_no_account(platform: LtiPlatform) -> None:
    import time

    def hook(**changes: Any) -> Any:
        return lambda claims: {**claims, **changes}

    with serve(platform) as (url, context):
        cases: list[tuple[str, Any, int, tuple[str, ...]]] = [
            ("bad signature", lambda: setattr(platform, "sign_key", new_key()), 401, ("bad signature",)),
            ("wrong audience", lambda: setattr(platform, "claims_hook", hook(aud="someone-else")), 401,
             ("wrong audience", "someone-else")),
            ("expired", lambda: setattr(platform, "claims_hook", hook(exp=int(time.time()) - 600,
                                                                     iat=int(time.time()) - 900)), 401, ("expired",)),
            ("unknown platform", lambda: setattr(platform, "claims_hook", hook(iss="https://other-lms.example")), 403,
             ("unknown platform", "https://other-lms.example")),
            ("unknown deployment", lambda: setattr(platform, "claims_hook", hook(**{
                "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "deploy-9"})), 403,
             ("unknown deployment", "deploy-9")),
        ]
        for sub, (name, tamper, status, words) in enumerate(cases):
            tamper()
            with httpx.Client(timeout=30) as browser:
                one_line_refusal(launch(browser, platform, sub=f"x{sub}").response, status, "launch refused", *words)
            platform.sign_key, platform.claims_hook = None, None
            assert people(context) == {"fay"}, name

        with httpx.Client(timeout=30) as browser:
            unknown = browser.get(platform.login_url(iss="https://other-lms.example"))
            one_line_refusal(unknown, 403, "unknown platform", "https://other-lms.example")

            done = launch(browser, platform, sub="7007")
            assert done.response.status_code == 303
            one_line_refusal(browser.post(done.action, data=done.form), 401, "replayed nonce")
        with httpx.Client(timeout=30) as elsewhere:  # the token without the browser that started the sign-in
            one_line_refusal(elsewhere.post(done.action, data=done.form), 401, "did not start the sign-in")
        assert people(context) == {"fay", lti_username(platform.issuer, "7007")}

        with httpx.Client(timeout=30) as browser:
            missing = launch(browser, platform, sub="8008", scenario="no-such-scenario").response
            one_line_refusal(missing, 404, "no-such-scenario", "not in roleplay's library")
        assert lti_username(platform.issuer, "8008") not in people(context)

        config = Path(os.environ["ROLEPLAY_LTI_CONFIG"])  # the file is read again when it changes
        config.write_text(json.dumps({"platforms": [platform.config_entry(key_set_url=f"{platform.url}/gone")]}))
        with httpx.Client(timeout=30) as browser:
            keys_gone = launch(browser, platform, sub="9009").response
            one_line_refusal(keys_gone, 502, "cannot read the platform's keys", f"{platform.url}/gone")
        assert lti_username(platform.issuer, "9009") not in people(context)


@pytest.mark.slow
def test_without_a_platforms_file_the_routes_say_how_to_set_it_up() -> None:
    with serve(None) as (url, _context), httpx.Client(timeout=30) as client:
        refused = client.get(f"{url}/lti/login", params={"iss": "https://lms.example", "login_hint": "1"})
        one_line_refusal(refused, 404, "ROLEPLAY_LTI_CONFIG")
        keys = client.get(f"{url}/lti/jwks").json()["keys"]  # a platform can be registered before the file exists
        assert [(k["kty"], k["alg"], k["use"]) for k in keys] == [("RSA", "RS256", "sig")] and "d" not in keys[0]


# --- the platforms file, keys and usernames ----------------------------------------------------------------------

def test_platforms_file_problems_are_one_line_each_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "lti.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_platforms(path)
    path.write_text(json.dumps({"platforms": [{"issuer": "https://lms.example", "client_id": "c",
                                               "deployment_ids": [], "auth_login_url": "ftp://x",
                                               "auth_token_url": "https://lms.example/token"}]}))
    with pytest.raises(ConfigError) as err:
        load_platforms(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"ROLEPLAY_LTI_CONFIG={path}: platforms.0.") for line in lines)
    assert any("deployment_ids" in line for line in lines) and any("auth_login_url: must be an http(s) URL" in line
                                                                    for line in lines)
    assert any("key_set_url: Field required" in line for line in lines)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_platforms(tmp_path / "missing.json")


@pytest.mark.slow  # making an RSA key takes a random time, at times over half a second
def test_the_tool_key_is_made_once_private_and_kept(isolated_settings: Path) -> None:
    first = load_or_create_keys(isolated_settings)
    again = load_or_create_keys(isolated_settings)
    assert first == again and first.jwk["kid"] and "d" not in first.jwk
    key_file = isolated_settings / "keys" / "lti-rsa.pem"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_usernames_are_stable_and_safe() -> None:
    assert lti_username("https://moodle.example.edu", "42") == "42@moodle.example.edu"
    odd = lti_username("https://canvas.example.com", "a user/with spaces")
    assert odd == lti_username("https://canvas.example.com", "a user/with spaces") and " " not in odd
    assert odd != lti_username("https://canvas.example.com", "a user/with spaces!")
    assert len(lti_username("https://lms.example", "x" * 255)) < 100


def test_retry_without_a_platforms_file_says_how_to_set_it_up() -> None:
    from roleplay.cli import main

    result = CliRunner().invoke(main, ["lti", "retry"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: LMS launch is not set up here: set ROLEPLAY_LTI_CONFIG to the platforms "
                                     "file")
