"""A learner's story in headless chromium: slips are warnings that hide nothing, typed HTML stays text, the briefing
follows the session, feedback arrives at once marked preliminary and a facilitator's decision as a notice, the
pre-assessment explains itself and can be retaken, and a certificate can be read beside the credential."""

from __future__ import annotations

import re

import pytest
from browser import (  # noqa: F401
    SCREENSHOTS,
    App,
    app,
    browser,
    choose,
    content_dirs,
    needs_chromium,
    open_tab,
    settle,
    shot,
    sign_in,
)
from content import catalog

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.usefixtures("fixed_seed")]

TYPED = "<b>bold</b> <img src=x> and ![seen](x.png)"


@pytest.fixture(autouse=True)
def quick_notice_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The open Practice page looks for notices every 2 s instead of 30 (set before the app is built)."""
    from roleplay.ui import practice_page

    monkeypatch.setattr(practice_page, "NOTICE_POLL_SECONDS", 2)


def snap(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """A screenshot with the warning toast showing (`shot` dismisses toasts first), once it has slid in."""
    from playwright.sync_api import expect

    expect(page.locator(".toast-body.warning").last).to_have_attribute("style", re.compile(r"opacity: 1"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled")  # the viewport, with the toast


def no_error_anywhere(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    expect(page.locator(".toast-body.error")).to_have_count(0)
    expect(page.locator('[data-testid="status-tracker"].error')).to_have_count(0)


def certify_in_the_library(learner: str) -> None:
    """Two approved passing sessions and a sign-off, made through the library of the running app."""
    from roleplay.grader import CriterionGrade, finish_grade
    from roleplay.ui.common import ctx

    running = ctx()
    scn = running.catalog.scenario("missed-deadlines")
    rubric = running.catalog.rubric_for(scn)
    for _ in range(2):
        sess = running.store.start_session(running.store.person(learner).id, scn.id, "novice", "offline")
        running.store.add_turn(sess.id, "persona", scn.opening_line)
        running.store.add_turn(sess.id, "learner", "What has been going on for you?")
        running.store.end_session(sess.id, "learner")
        grade = finish_grade(rubric, "offline", [
            CriterionGrade(criterion_id=c.id, level=3, checks=[], evidence=[], rationale="Level 3.",
                           better_alternative="Ask first.") for c in rubric.criteria])
        running.store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
        running.reviews.approve(running.reviews.for_session(sess.id).review_id, "fay", "Fair.")
    running.certification.sign_off("underperformance", learner, "fay", "Consistently listens first.")


def test_learner_story(browser, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    from roleplay.programme import load_programme
    from roleplay.ui.common import ctx

    page = sign_in(browser, app, "ana")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    # 3. the dropdown, the briefing and the chat agree; the pickers lock on the session; no trash icon
    picked = page.locator("#practice-scenario input")
    expect(picked).not_to_have_value("")
    title = picked.input_value().split(" · ", 1)[1]
    scenario = next(s for s in catalog().scenarios.values() if s.title == title)
    expect(page.locator("#practice-briefing")).to_contain_text(title)
    page.locator("#practice-start").click()
    bot = page.locator("#practice-chat .message.bot")
    expect(bot.first).to_have_text(scenario.opening_line)
    expect(page.locator("#practice-briefing")).to_contain_text("Level: intermediate")
    expect(picked).to_be_disabled()
    expect(page.locator("#practice-level input").first).to_be_disabled()
    expect(page.locator("#practice-chat button[aria-label='Clear']")).to_be_hidden()

    # 1. Enter on an empty line: a warning; the conversation stays in view and usable
    box = page.locator("#practice-input textarea")
    expect(box).to_be_editable()
    box.press("Enter")
    expect(page.locator(".toast-body.warning")).to_contain_text("Type what you want to say first")
    snap(page, "learner-empty-line")
    expect(bot.first).to_be_visible()
    no_error_anywhere(page)
    expect(box).to_be_editable()
    settle(page)

    # 2. typed HTML and Markdown are shown as typed, and fetch nothing
    box.fill(TYPED)
    box.press("Enter")
    user = page.locator("#practice-chat .message.user")
    expect(user.last).to_have_text(TYPED)
    expect(page.locator("#practice-chat .message b, #practice-chat .message img")).to_have_count(0)
    expect(bot).to_have_count(2)
    assert not [u for u in requests if re.search(r"/x(\.png)?$", u)]
    shot(page, "learner-typed-text")

    # 4. feedback at once, marked preliminary
    page.locator("#practice-end").click()
    prelim = page.locator("#practice-preliminary")
    expect(prelim).to_contain_text("Preliminary: your facilitator reviews it before it counts.", timeout=30_000)
    expect(prelim.locator(".rp-crit").first).to_be_visible()
    expect(picked).to_be_enabled()
    shot(page, "learner-preliminary")

    # 3. picking another scenario starts afresh; opening the past session brings its briefing back
    choose(page, "practice-scenario", "Missed deadlines")
    expect(page.locator("#practice-briefing")).to_contain_text("Sam Okafor")
    expect(bot).to_have_count(0)
    page.locator("#practice-history").click()
    choose(page, "practice-sessions", title)
    expect(page.locator("#practice-briefing")).to_contain_text(title)
    expect(page.locator("#practice-briefing")).to_contain_text("Level: intermediate")
    expect(picked).to_have_value(re.compile(re.escape(title)))
    expect(bot.first).to_have_text(scenario.opening_line)

    # 4. the facilitator approves: a notice appears on the open Practice page, and the feedback in view follows
    view = ctx().reviews.queue("pending", learner="ana")[0]
    ctx().reviews.approve(view.review_id, "fay", "Well argued.")
    notices = page.locator("#practice-notices")
    expect(notices.locator("#practice-notice-count")).to_have_text("1")
    expect(notices).to_contain_text(f"fay approved the feedback on your “{title}” session (intermediate)")
    expect(page.locator("#practice-approved")).to_contain_text("Feedback approved by fay")  # the session in view
    expect(page.locator("#practice-preliminary")).to_have_count(0)
    shot(page, "learner-notice")

    # 5. the pre-assessment explains itself and can be retaken
    open_tab(page, "progress")
    questions = load_programme().pre_assessment.questions
    for i, q in enumerate(questions):
        best = max(q.options, key=lambda o: o.points)
        page.locator(f"#progress-q-{i}").get_by_text(best.text, exact=True).click()
    page.locator("#progress-assess").click()
    result = page.locator("#progress-assessment")
    expect(result).to_contain_text("Your pre-assessment: 18 of 18 points → expert")
    expect(result.locator("tr.yours")).to_contain_text("15–18")
    expect(result).to_contain_text("needs real trust")
    expect(result).to_contain_text(f"{title} at intermediate")
    expect(result).to_contain_text("only expert or harder counts")
    shot(page, "learner-assessment")
    page.locator("#progress-retake").click()
    for i, q in enumerate(questions):
        weakest = min(q.options, key=lambda o: o.points)
        page.locator(f"#progress-q-{i}").get_by_text(weakest.text, exact=True).click()
    page.locator("#progress-assess").click()
    expect(result).to_contain_text("→ novice")
    settle(page)

    # 1 and 7. three sprints: a warning naming them; the boxes stay ticked and usable
    sprints = page.locator("#progress-sprints")
    for name in ("Setting up a remote team", "Addressing underperformance", "Communicating at a distance"):
        sprints.get_by_text(name).click()
    page.locator("#progress-choose").click()
    expect(page.locator(".toast-body.warning")).to_contain_text(
        "Choose exactly 2 sprints (got 3: Setting up a remote team, Communicating at a distance, Addressing "
        "underperformance); untick 1 of them")
    snap(page, "learner-three-sprints")
    no_error_anywhere(page)
    expect(sprints.locator("input:checked")).to_have_count(3)
    settle(page)
    sprints.get_by_text("Setting up a remote team").click()
    page.locator("#progress-choose").click()
    expect(page.locator("#progress-certification")).to_contain_text("0 of 2 approved passing sessions")

    # 6. a certificate to read, with its verification, beside the credential
    certify_in_the_library("ana")
    open_tab(page, "practice")
    open_tab(page, "progress")
    certificate = page.locator("#progress-certificate")
    expect(certificate).to_contain_text("Addressing underperformance (novice)")
    expect(certificate).to_contain_text("Ana")
    expect(certificate.locator(".rp-verified.ok")).to_contain_text("Verified: signed with Roleplay Practice Academy")
    links = page.locator("#progress-credentials a")
    expect(links).to_have_count(3)
    hrefs = [a.get_attribute("href") for a in links.all()]
    assert [h.rsplit("/", 1)[1] for h in hrefs] == ["ana-underperformance-credential.json",
                                                    "ana-underperformance-certificate.html",
                                                    "ana-underperformance-certificate.pdf"]
    readable = page.request.get(hrefs[1]).text()
    assert "Ana" in readable and "Verified: signed with Roleplay Practice Academy" in readable
    assert page.request.get(hrefs[2]).body().startswith(b"%PDF")
    shot(page, "learner-certificate")
    page.context.close()
