"""The facilitator's, designer's and administrator's pages in headless chromium: only one's own tabs, a review opened
from its queue row, problems shown as warnings that cover nothing, calibration with level descriptions and its
caveat, and accounts managed on the People page."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from browser import (  # noqa: F401
    PASSWORD,
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
from content import GOOD_LINES

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.usefixtures("fixed_seed")]
ERROR_BADGES = '[data-testid="status-tracker"] .error'  # the red "Error" Gradio lays over every output of a failed event
NEW_PASSWORD = "a long enough phrase"


@dataclass
class FakeRequest:
    """What the page handlers read from a gr.Request: the signed-in username."""

    username: str


def practised(learner: str = "ana") -> None:
    """A graded session for the Review queue, played through the Practice handlers of the running app."""
    from roleplay.ui import practice_page

    who = FakeRequest(learner)
    out = practice_page.start("missed-deadlines", "novice", who)
    for line in GOOD_LINES[:4]:
        list(practice_page.send(line, out[1], who))
    practice_page.end(out[1], who, lambda *_a, **_k: None)


def tabs(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The labels of the tabs a person sees."""
    from playwright.sync_api import expect

    expect(page.locator("#tabs [role=tab]").first).to_be_visible()
    return [t.strip() for t in page.locator("#tabs [role=tab]").all_inner_texts()]


def warned(page, text: str, name: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """A warning toast says `text`, and no output carries an error badge (optionally a screenshot with the toast)."""
    from playwright.sync_api import expect

    expect(page.locator(".toast-body.warning").filter(has_text=text)).to_be_visible()  # a warning, not an error
    expect(page.locator(ERROR_BADGES)).to_have_count(0)
    if name:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(600)  # the toast slides in; let the picture show it whole
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
    settle(page)


def facilitator_reviews(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    queue = page.locator("#review-queue")
    expect(queue).to_contain_text("Ana")
    expect(queue).to_contain_text("Missed deadlines")
    queue.get_by_role("gridcell").nth(1).click()  # the learner's cell of the first row
    header = page.locator("#review-header")
    expect(header).to_contain_text("Review #1 · pending")
    expect(header).to_contain_text("Learner: Ana (ana)")
    expect(header).to_contain_text("Grade not edited yet")
    expect(header).not_to_contain_text("Version")
    reason = page.locator("#review-reason textarea")
    reason.fill("The empathy was generic.")
    page.locator("#review-save-edit").click()  # no criterion picked
    warned(page, "Pick the criterion to change.")
    expect(reason).to_have_value("The empathy was generic.")  # nothing typed is lost
    choose(page, "review-criterion", "Empathy")
    expect(page.locator("#review-feedback textarea")).not_to_have_value("")
    page.locator("#review-level").get_by_text("1", exact=True).click()
    page.locator("#review-save-edit").click()
    expect(header).to_contain_text("Grade edited once")
    page.locator("#review-approve").click()
    expect(header).to_contain_text("Review #1 · approved")
    shot(page, "admin-review-row")


def facilitator_calibrates(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    open_tab(page, "calibrate")
    expect(page.locator("#calibrate-header")).to_contain_text("Anchor 1 of 2")
    first = page.locator("#calibrate-anchors-0")
    expect(first).to_be_visible()
    expect(first.locator(".calibrate-level")).to_have_count(4)  # the four level descriptions beside the buttons
    page.locator("#calibrate-level-0").get_by_text("2", exact=True).click()
    page.locator("#calibrate-submit").click()
    warned(page, "Score every criterion first; still to score:", name="admin-calibrate-warning")
    expect(page.locator("#calibrate-level-0 input:checked")).to_have_count(1)  # the level picked stays picked
    for i in range(1, 5):
        page.locator(f"#calibrate-level-{i}").get_by_text(str(2 + i % 2), exact=True).click()
    page.locator("#calibrate-submit").click()
    expect(page.locator("#calibrate-reveal")).to_contain_text("The grader scored this anchor")
    expect(page.locator("#calibrate-summary")).to_contain_text("1 facilitator has scored 1 anchor")
    expect(page.locator("#calibrate-table")).to_contain_text("too few")
    expect(page.locator("#calibrate-table-note")).to_contain_text("too few to judge agreement")
    ticks = page.locator("#calibrate-drift-plot svg text")
    expect(ticks.filter(has_text=re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}$"))).to_have_count(1)  # the week's date
    assert not [t for t in ticks.all_text_contents() if re.search(r"\d:\d\d|AM|PM", t)]  # no times of day
    shot(page, "admin-calibrate-caveat")


def facilitator_manages_people(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    open_tab(page, "people")
    table = page.locator("#admin-people")
    expect(table).to_contain_text("fay")
    page.locator("#admin-new-username textarea").fill("eve")
    page.locator("#admin-new-name textarea").fill("Eve Adams")
    page.locator("#admin-new-role").get_by_text("learner", exact=True).click()
    page.locator("#admin-new-password input").fill("short")
    page.locator("#admin-add").click()
    warned(page, "A password needs at least 10 characters")
    expect(page.locator("#admin-new-username textarea")).to_have_value("eve")
    page.locator("#admin-new-password input").fill(NEW_PASSWORD)
    page.locator("#admin-add").click()
    expect(page.locator("#admin-result")).to_contain_text("Added Eve Adams (eve) as a learner")
    expect(table).to_contain_text("Eve Adams")
    expect(page.locator("#admin-new-password input")).to_have_value("")
    choose(page, "admin-buddy", "Ana")
    page.locator("#admin-set-buddy").click()
    expect(page.locator("#admin-result")).to_contain_text("Ana (ana) is now the learning buddy of Eve Adams (eve)")
    expect(table.get_by_role("row").filter(has_text="Eve Adams")).to_contain_text("Ana")
    shot(page, "admin-people")


def facilitator_removes(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    table = page.locator("#admin-people")
    table.get_by_role("row").filter(has_text="Eve Adams").get_by_role("gridcell").first.click()
    expect(page.locator("#admin-person input")).to_have_value(re.compile("Eve Adams"))
    page.locator("#admin-remove").click()
    warned(page, "Tick the box to confirm")
    page.locator("#admin-confirm input").check()
    page.locator("#admin-remove").click()
    expect(page.locator("#admin-result")).to_contain_text("Removed eve")
    expect(table).not_to_contain_text("Eve Adams")


def designer_previews_a_broken_scenario(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    choose(page, "author-file", "Missed deadlines (missed-deadlines.yaml)")
    expect(page.locator("#author-valid")).to_be_visible()
    editor = page.locator("#author-editor .cm-content")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("\nsprint_typo: [unclosed\n")
    expect(page.locator("#author-invalid")).to_contain_text("✗ 1 problem; fix it to save.")
    page.locator("#author-preview-start").click()
    warned(page, "Fix the 1 problem before previewing")
    expect(page.locator("#author-editor")).to_contain_text("sprint_typo")  # the edit is still there


def test_each_role_sees_its_pages_and_problems_cover_nothing(browser, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Learner, facilitator and designer each see only their tabs; the facilitator reviews from the queue, calibrates,
    adds a learner who signs in, names her buddy and removes her; the designer's preview refuses a broken file."""
    from playwright.sync_api import expect

    practised()
    learner = sign_in(browser, app, "ana")
    assert tabs(learner) == ["Practice", "Progress"]
    expect(learner.locator("#tab-review-button")).to_have_count(0)

    facilitator = sign_in(browser, app, "fay")
    assert tabs(facilitator) == ["Review", "Calibrate", "People", "Analytics"]
    expect(facilitator.locator("#tab-review-button")).to_have_attribute("aria-selected", "true")
    facilitator_reviews(facilitator)
    facilitator_calibrates(facilitator)
    facilitator_manages_people(facilitator)

    newcomer = sign_in(browser, app, "eve", NEW_PASSWORD)
    assert tabs(newcomer) == ["Practice", "Progress"]
    newcomer.context.close()
    facilitator_removes(facilitator)

    designer = sign_in(browser, app, "dee", PASSWORD)
    assert tabs(designer) == ["Author"]
    designer_previews_a_broken_scenario(designer)
    for page in (learner, facilitator, designer):
        page.context.close()
