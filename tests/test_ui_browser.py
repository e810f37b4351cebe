"""The web app in headless chromium: learner, facilitator and designer stories, offline and against the stub LLM."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import (  # noqa: F401
    TIMEOUT,
    App,
    app,
    browser,
    choose,
    content_dirs,
    login_page,
    needs_chromium,
    open_tab,
    publish_screenshots,
    shot,
    sign_in,
    submit_login,
)
from content import GOOD_EVIDENCE, GOOD_LINES

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.usefixtures("fixed_seed")]

LINES = GOOD_LINES
IN_CHARACTER = "I know the reports were late. It has been a busy few weeks for me, that is all."
SCREENS = ["practice", "practice-feedback", "review", "review-refused", "calibrate", "author-error", "author-saved",
           "progress"]


def judge_reply(body: dict) -> dict:
    """A JudgeReply for the grading request: every criterion of the rubric, evidence quoting real learner lines."""
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    learner = re.findall(r"^L\d+ \(learner\): (.+)$", user, re.MULTILINE)
    criteria: list[dict] = []
    for line in system.splitlines():
        crit = re.match(r"Criterion `([a-z0-9-]+)`", line)
        check = re.match(r"\s+Check `([a-z0-9-]+)`", line)
        if crit:
            i = len(criteria)
            criteria.append({"criterion_id": crit.group(1), "checks": [], "level": 3,
                             "evidence": [GOOD_EVIDENCE.get(crit.group(1), learner[i % len(learner)] if learner else "")],
                             "rationale": "Asked and listened before proposing anything.",
                             "better_alternative": "What would make next Friday work for you?"})
        elif check and criteria:
            criteria[-1]["checks"].append({"id": check.group(1), "answer": "yes"})
    return {"criteria": criteria}


def stub_reply(body: dict) -> object:
    """The stub's answer: a JSON grade for the judge (it asks for response_format), else an in-character line."""
    if body.get("response_format"):
        return judge_reply(body)
    return IN_CHARACTER


@pytest.fixture(params=["offline", "llm"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the story with the offline engine, then with the LLM engine against the stub server (set before the app
    is built: the app reads its settings once)."""
    if request.param == "llm":
        stub = request.getfixturevalue("stub_llm")
        stub.default = stub_reply
        monkeypatch.setenv("ROLEPLAY_BASE_URL", stub.base_url)
        monkeypatch.setenv("ROLEPLAY_API_KEY", "x")
        monkeypatch.setenv("ROLEPLAY_ENGINE", "llm")
        monkeypatch.setenv("ROLEPLAY_MAX_RETRIES", "0")
    return request.param


def learner_enrols(page) -> None:  # type: ignore[no-untyped-def]
    """Pre-assessment (the least confident answers, so the learner starts at novice) and two sprints."""
    from playwright.sync_api import expect

    from roleplay.programme import load_programme

    open_tab(page, "progress")
    expect(page.locator("#progress-certification")).to_contain_text("pre-assessment")
    for i, q in enumerate(load_programme().pre_assessment.questions):
        weakest = min(q.options, key=lambda o: o.points)
        page.locator(f"#progress-q-{i}").get_by_text(weakest.text, exact=True).click()
    page.locator("#progress-assess").click()
    expect(page.locator("#progress-certification")).to_contain_text("Your level: novice")
    page.locator("#progress-sprints").get_by_text("Addressing underperformance").click()
    page.locator("#progress-sprints").get_by_text("Communicating at a distance").click()
    page.locator("#progress-choose").click()
    expect(page.locator("#progress-certification")).to_contain_text("0 of 2 approved passing sessions")
    open_tab(page, "practice")


def learner_practises(page, engine: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    choose(page, "practice-scenario", "Missed deadlines")
    expect(page.locator("#practice-briefing")).to_contain_text("Sam Okafor")
    page.locator("#practice-level").get_by_text("novice").click()
    page.locator("#practice-start").click()
    bot = page.locator("#practice-chat .message.bot")
    expect(bot.first).to_contain_text("You wanted to talk about the reports?")
    notice = "AI persona" if engine == "llm" else "Offline engine"
    expect(page.locator("#practice-engine")).to_contain_text(notice)
    box = page.locator("#practice-input textarea")
    for n, line in enumerate(LINES, 1):
        expect(box).to_be_editable()
        box.fill(line)
        box.press("Enter")
        expect(page.locator("#practice-status")).to_contain_text(re.compile(rf"Turn {n} of|after {n} of your turns"))
        expect(bot).to_have_count(n + 1)
        if engine == "llm":
            expect(bot.nth(n)).to_have_text(IN_CHARACTER)
        elif n == 3:
            expect(bot.nth(n)).to_contain_text("My dad had a stroke in August")
    expect(page.locator("#practice-chat .message.user")).to_have_count(len(LINES))
    shot(page, f"{tag}-practice")
    page.locator("#practice-end").click()
    expect(page.locator("#practice-pending")).to_contain_text("Awaiting facilitator review", timeout=30_000)
    expect(box).to_be_disabled()
    with page.expect_download() as download:
        page.locator("#practice-download").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert LINES[1] in text and "Sam Okafor:" in text


def learner_is_refused_review(page, server: App, tag: str) -> None:  # type: ignore[no-untyped-def]
    """The learner is not shown the Review tab, and the review queue endpoint itself refuses their signed-in session."""
    from playwright.sync_api import expect

    expect(page.locator("#tab-practice-button")).to_be_visible()
    expect(page.locator("#tab-review-button")).to_have_count(0)
    expect(page.locator("#review-approve")).to_be_hidden()
    # the learner's own signed-in session calling the queue endpoint directly: refused by the handler's role check
    call = page.request.post(server.url + "gradio_api/call/first_page", data={"data": ["pending"]})
    result = page.request.get(server.url + f"gradio_api/call/first_page/{call.json()['event_id']}").text()
    assert "event: error" in result and "The Review page is for facilitators" in result
    shot(page, f"{tag}-review-refused")


def facilitator_reviews(page, tag: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect(page.locator("#tab-review-button")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#review-queue")).to_contain_text("Ana")
    page.locator("#review-queue").get_by_role("gridcell").nth(1).click()  # the first row opens its review
    expect(page.locator("#review-header")).to_contain_text("Review #1 · pending")
    expect(page.locator("#review-transcript mark").first).to_be_visible()
    choose(page, "review-criterion", "Empathy")
    expect(page.locator("#review-feedback textarea")).not_to_have_value("")
    page.locator("#review-level").get_by_text("4", exact=True).click()  # the AI gave 2 for this conversation
    page.locator("#review-feedback textarea").fill("You named how hard the mornings were before asking for anything.")
    page.locator("#review-reason textarea").fill("Empathy was clear and specific.")
    page.locator("#review-save-edit").click()
    expect(page.locator("#review-history")).to_contain_text("edit by fay")
    expect(page.locator('#review-grade [data-criterion="empathy"]')).to_contain_text("4/4")
    expect(page.locator('#review-grade [data-criterion="empathy"]')).to_contain_text("(AI level")
    page.locator("#review-comment textarea").fill("Well done: you listened first.")
    page.locator("#review-approve").click()
    expect(page.locator("#review-header")).to_contain_text("approved")
    expect(page.locator("#review-history")).to_contain_text("approve by fay")
    expect(page.locator("#review-approve")).to_be_disabled()
    shot(page, f"{tag}-review")


def facilitator_calibrates(page, tag: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    open_tab(page, "calibrate")
    expect(page.locator("#calibrate-header")).to_contain_text("Anchor 1 of 2")
    expect(page.locator("#calibrate-result")).not_to_contain_text("Grader")  # blind: no AI levels yet
    for i in range(5):
        page.locator(f"#calibrate-level-{i}").get_by_text(str(2 + i % 2), exact=True).click()
    page.locator("#calibrate-submit").click()
    expect(page.locator("#calibrate-reveal")).to_contain_text("The grader scored this anchor")
    expect(page.locator("#calibrate-summary")).to_contain_text("1 facilitator has scored 1 anchor")
    expect(page.locator("#calibrate-header")).to_contain_text("Anchor 2 of 2")
    shot(page, f"{tag}-calibrate")


def learner_sees_result(page, tag: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    open_tab(page, "progress")
    expect(page.locator("#progress-summary")).to_contain_text("1 approved session")
    expect(page.locator("#progress-approved")).to_contain_text("Missed deadlines")
    expect(page.locator("#progress-approved")).to_contain_text("fay")
    expect(page.locator("#progress-certification")).to_contain_text("1 of 2 approved passing sessions")
    shot(page, f"{tag}-progress")
    open_tab(page, "practice")
    page.locator("#practice-refresh").click()
    feedback = page.locator("#practice-approved")
    expect(feedback).to_contain_text("Feedback approved by fay")
    expect(feedback).to_contain_text("You named how hard the mornings were")
    expect(feedback.locator(".rp-transcript mark").first).to_be_visible()
    expect(feedback.locator(".rp-better").first).to_contain_text("Better:")
    shot(page, f"{tag}-practice-feedback")


def designer_authors(page, server: App, tag: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect(page.locator("#tab-author-button")).to_have_attribute("aria-selected", "true")
    choose(page, "author-file", "missed-deadlines.yaml")
    expect(page.locator("#author-valid")).to_be_visible()
    original = (server.scenarios_dir / "missed-deadlines.yaml").read_text(encoding="utf-8")
    lines = original.splitlines()
    sprint_line = next(i for i, line in enumerate(lines, 1) if line.startswith("sprint:"))
    broken = "\n".join("sprint: under-performance" if i == sprint_line else line for i, line in enumerate(lines, 1))
    editor = page.locator("#author-editor .cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(broken)
    errors = page.locator("#author-errors")
    expect(errors).to_contain_text(f"Line {sprint_line}")
    expect(errors).to_contain_text("sprint")
    expect(page.locator("#author-save")).to_be_disabled()
    page.keyboard.press("Control+Home")
    shot(page, f"{tag}-author-error")
    fixed = original.replace("title: Missed deadlines", "title: Missed deadlines (revised)")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(fixed)
    expect(page.locator("#author-valid")).to_be_visible()
    page.locator("#author-save").click()
    expect(page.locator("#author-saved")).to_contain_text("Saved missed-deadlines.yaml")
    assert "title: Missed deadlines (revised)" in (server.scenarios_dir / "missed-deadlines.yaml").read_text()
    page.locator("#author-preview-start").click()
    expect(page.locator("#author-chat .message.bot").first).to_contain_text("You wanted to talk about the reports?")
    shot(page, f"{tag}-author-saved")


def test_whole_story(browser, engine: str, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Learner enrols, practises and ends; facilitator edits and approves; learner sees it; designer edits YAML."""
    from playwright.sync_api import expect

    learner = sign_in(browser, app, "ana")
    expect(learner.locator("#tab-practice-button")).to_have_attribute("aria-selected", "true")
    learner_enrols(learner)
    learner_practises(learner, engine, engine)
    learner_is_refused_review(learner, app, engine)

    facilitator = sign_in(browser, app, "fay")
    facilitator_reviews(facilitator, engine)
    facilitator_calibrates(facilitator, engine)

    learner_sees_result(learner, engine)

    designer = sign_in(browser, app, "dee")
    designer_authors(designer, app, engine)
    for page in (learner, facilitator, designer):
        page.context.close()
    if engine == "offline":  # the scripted persona's varied lines make the better README pictures
        assert len(publish_screenshots("offline")) == len(SCREENS)


def test_sign_in_pauses_after_failures_and_the_practice_box_stops_at_its_limit(browser, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Five wrong passwords pause sign-in for that username, even with the right one; a turn stops at 4,000
    characters in the box itself."""
    from playwright.sync_api import expect

    page = login_page(browser, app)
    statuses = [submit_login(page, "dee", "not the password") for _ in range(5)]
    assert statuses == [400] * 5
    assert submit_login(page, "dee", "practise-2026") == 429  # the right password, but paused
    expect(page.locator("#whoami-user")).to_have_count(0)
    page.context.close()

    learner = sign_in(browser, app, "ana")  # another username from the same browser is not paused
    choose(learner, "practice-scenario", "Missed deadlines")
    learner.locator("#practice-start").click()
    box = learner.locator("#practice-input textarea")
    expect(box).to_be_editable()
    box.fill("a" * 5000)
    assert len(box.input_value()) == 4000
    learner.context.close()


def test_stub_grade_quotes_learner_lines() -> None:
    """The stub's grade is well-formed for the judge (a guard on the fixture itself)."""
    from roleplay.grader import JudgeReply

    body = {"messages": [{"role": "system", "content": "Criterion `empathy` - Empathy: x\n  Check `names-feeling`: q\n"
                                                     "Criterion `frames-the-meeting` - Framing: x"},
                         {"role": "user", "content": "L1 (learner): Hello there\nP (persona): Hi"}],
            "response_format": {"type": "json_schema"}}
    reply = JudgeReply.model_validate(json.loads(json.dumps(stub_reply(body))))
    assert reply.criteria[0].evidence == [GOOD_EVIDENCE["empathy"]] and reply.criteria[0].checks[0].id == "names-feeling"
    assert reply.criteria[1].evidence == ["Hello there"]
    assert TIMEOUT > 0
