"""Meetings in headless chromium: a learner chairs a scene with a cast, offline and over the stub model; each line
shows under its speaker, the quiet member answers only when named, the latecomer joins, airtime is counted, and a
facilitator reviews the meeting with its speakers and facts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from browser import (  # noqa: F401
    App,
    app,
    browser,
    choose,
    content_dirs,
    needs_chromium,
    settle,
    shot,
    sign_in,
)
from content import catalog
from stub_openai import StubOpenAI

if TYPE_CHECKING:
    from roleplay.scenario import Scenario

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.usefixtures("fixed_seed")]

SILENT = "team-meeting-silent-expert"
CONFLICT = "meeting-conflict"
TO_TOMASZ = "Tomasz, you look after the database day to day. What is your read of the weekend plan?"
TO_EVERYONE = ["What does everyone see as the biggest risk in this move?",
               "What would each of you need from the plan to feel comfortable with it?"]
CONFLICT_LINES = [
    ("Thanks for joining, both of you. We've got 45 minutes and one job: a recommendation for Friday you can both "
     "stand behind. Gareth first, then Priya, a couple of minutes each without interruption, and I'll keep time. "
     "Can you both work with that?"),
    "Priya, what exactly is at stake with the partners if the date moves?",
    "Gareth, what would your team need to have in place to handle launch day well?",
]
STUB_LINES = {
    "Gareth Lewis": ["My team takes the angry refund calls, so I want the first fortnight planned properly.",
                     "Finished help articles and a day of hands-on practice for every agent before launch."],
    "Priya Nair": ["The campaign is booked around the fourth, and I would rather we fix the gaps than move it.",
                   "Two retail partners have told their customers, and another slip would cost us their trust."],
}
"""What the stub model says as each persona of the conflict scene, in turn (it reads the name from the system
message)."""

BOT = '#practice-chat [data-testid="bot"]'
"""One persona message each (consecutive persona messages share one bubble group)."""
USER = '#practice-chat [data-testid="user"]'
BUBBLES = """els => els.map(el => {
    const head = el.querySelector('.rp-speaker');
    const body = el.cloneNode(true);
    body.querySelectorAll('.rp-speaker').forEach(s => s.remove());
    return {
        tag: head ? ([...head.classList].find(c => c.startsWith('rp-who-')) || '').slice(7) || null : null,
        initial: head ? head.querySelector('.rp-avatar').textContent : null,
        name: head ? head.querySelector('b').textContent : null,
        role: head ? head.querySelector('small').textContent : null,
        colour: head ? getComputedStyle(head.querySelector('b')).color : null,
        avatar: head ? getComputedStyle(head.querySelector('.rp-avatar')).backgroundColor : null,
        text: body.textContent.replace(/\\s+/g, ' ').trim(),
    };
})"""


def rgb(hex_colour: str) -> str:
    """'#b45309' as the browser's computed 'rgb(180, 83, 9)'."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def bubbles(page, scenario: Scenario) -> list[dict[str, str | None]]:  # type: ignore[no-untyped-def]
    """Each persona message in the chat: the speaker's cast id (`who`, from the name shown; `tag`, from the speaker
    line's rp-who-<id> class), initial, name, role, colours and the text under the speaker line."""
    ids = {m.persona.name: m.id for m in scenario.members}
    shown = page.locator(BOT).evaluate_all(BUBBLES)
    return [{**b, "who": ids.get(b["name"] or "")} for b in shown]


def speaker_tags_match(shown: list[dict[str, str | None]]) -> None:
    """Every speaker line carries its cast id (as the class rp-who-<id>, which the chat's sanitizer keeps)."""
    assert [b["tag"] for b in shown] == [b["who"] for b in shown]


def words(text: str) -> str:
    """Lower case, whitespace folded."""
    return " ".join(text.split()).lower()


def fact_phrases(scenario_id: str) -> dict[str, list[str]]:
    """Per cast id, phrases of eight words opening each sentence of that person's hidden facts and reveal lines."""
    out: dict[str, list[str]] = {}
    for m in catalog().scenario(scenario_id).members:
        phrases = []
        for fact in m.hidden_facts:
            for text in (fact.fact, fact.reveal_line):
                for sentence in re.split(r"(?<=[.;?])\s+", words(text)):
                    head = sentence.split()[:8]
                    if len(head) >= 5:
                        phrases.append(" ".join(head))
        out[m.id] = phrases
    return out


def say(page, scenario: Scenario, line: str, bots: int) -> list[dict[str, str | None]]:  # type: ignore[no-untyped-def]
    """Send a line and wait until the chat holds `bots` persona messages and the box is open again; the new ones."""
    from playwright.sync_api import expect

    before = page.locator(BOT).count()
    box = page.locator("#practice-input textarea")
    expect(box).to_be_editable()
    box.fill(line)
    box.press("Enter")
    expect(page.locator(USER).last).to_have_text(line)
    expect(page.locator(BOT)).to_have_count(bots)
    settle(page)
    expect(box).to_be_editable()
    expect(page.locator(BOT).last).not_to_have_text("…")
    return bubbles(page, scenario)[before:]


def judge_reply(body: dict) -> dict:
    """A JudgeReply for the grading request: every criterion at level 3, each quoting a learner line."""
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    learner = re.findall(r"^L\d+ \(learner\): (.+)$", user, re.MULTILINE)
    criteria: list[dict] = []
    for line in system.splitlines():
        crit = re.match(r"Criterion `([a-z0-9-]+)`", line)
        check = re.match(r"\s+Check `([a-z0-9-]+)`", line)
        if crit:
            criteria.append({"criterion_id": crit.group(1), "checks": [], "level": 3,
                             "evidence": [learner[len(criteria) % len(learner)]],
                             "rationale": "Gave each lead the floor in turn and asked what they need.",
                             "better_alternative": "What would each of you need to see by Friday?"})
        elif check and criteria:
            criteria[-1]["checks"].append({"id": check.group(1), "answer": "yes"})
    return {"criteria": criteria}


def persona_of(body: dict) -> str:
    """The persona a chat request speaks as, from its system message ("You are <Name>, ...")."""
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    found = re.match(r"You are ([^,]+),", system)
    assert found, system[:120]
    return found.group(1)


@pytest.fixture()
def stub_model(stub_llm: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> StubOpenAI:
    """The stub model voices the personas and grades; turns are read offline (set before the app is built)."""
    said: dict[str, int] = {}

    def reply(body: dict) -> object:
        if body.get("response_format"):
            return judge_reply(body)
        name = persona_of(body)
        said[name] = said.get(name, 0) + 1
        return STUB_LINES[name][(said[name] - 1) % len(STUB_LINES[name])]

    stub_llm.default = reply
    monkeypatch.setenv("ROLEPLAY_BASE_URL", stub_llm.base_url)
    monkeypatch.setenv("ROLEPLAY_API_KEY", "x")
    monkeypatch.setenv("ROLEPLAY_MODEL", "stub-model")
    monkeypatch.setenv("ROLEPLAY_ENGINE", "llm")
    monkeypatch.setenv("ROLEPLAY_READER", "offline")
    monkeypatch.setenv("ROLEPLAY_MAX_RETRIES", "0")
    return stub_llm


def scroll_chat_to(page, index: int) -> None:  # type: ignore[no-untyped-def]
    """Scroll the chat so persona message `index` is at its top, for a screenshot showing several speakers.

    The viewport first grows to the whole page, so the full-page screenshot resizes nothing (a resize scrolls the chat
    back to its end)."""
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1440, "height": height})
    page.wait_for_timeout(500)
    page.locator(BOT).nth(index).evaluate("""el => {
        const wrap = el.closest('.bubble-wrap');
        wrap.scrollTop += el.getBoundingClientRect().top - wrap.getBoundingClientRect().top - 44;  // below the chat's floating label
    }""")


def start_meeting(page, title: str, level: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    scenario = next(s for s in catalog().scenarios.values() if s.title == title)
    choose(page, "practice-scenario", title)
    briefing = page.locator("#practice-briefing")
    expect(briefing).to_contain_text("In the meeting")
    for m in scenario.members:
        expect(briefing).to_contain_text(m.persona.name)
    page.locator("#practice-level").get_by_text(level, exact=True).click()
    page.locator("#practice-start").click()
    expect(page.locator("#practice-briefing")).to_contain_text(f"Level: {level}")
    expect(page.locator("#practice-input textarea")).to_be_editable()


def end_and_see_feedback(page, scenario: Scenario) -> None:  # type: ignore[no-untyped-def]
    """End the session; the preliminary feedback shows the transcript under each speaker's name and the meeting facts."""
    from playwright.sync_api import expect

    page.locator("#practice-end").click()
    feedback = page.locator("#practice-preliminary")
    expect(feedback).to_contain_text("Preliminary", timeout=30_000)
    for m in scenario.members:
        turn = feedback.locator(f'.rp-turn.persona[data-who="{m.id}"]')
        expect(turn.first).to_be_visible()
        expect(turn.first.locator(".rp-who")).to_have_text(m.persona.name)
    facts = feedback.locator("#meeting-facts")
    expect(facts).to_contain_text("Meeting facts")
    expect(facts).to_contain_text("You (chair)")
    for m in scenario.members:
        expect(facts).to_contain_text(m.persona.name)
    expect(facts.locator(".rp-bar")).to_have_count(len(scenario.members) + 1)


def test_a_learner_chairs_the_planning_call_offline_and_a_facilitator_reviews_it(browser, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The quiet expert answers only when named, the latecomer joins after the second turn, airtime is counted, and
    the feedback and the review show who said what."""
    from playwright.sync_api import expect

    from roleplay.ui.render import CastView

    scenario = catalog().scenario(SILENT)
    cast = CastView(scenario)
    page = sign_in(browser, app, "ana")
    start_meeting(page, scenario.title, "novice")
    expect(page.locator("#practice-briefing")).to_contain_text("Hannah Price")
    expect(page.locator("#practice-briefing")).to_contain_text("joins after your turn 2")
    expect(page.locator("#practice-engine")).to_contain_text("Offline engine")

    opening = page.locator(BOT)
    expect(opening).to_have_count(1)
    [callum] = bubbles(page, scenario)
    assert callum["who"] == "callum" and callum["initial"] == "C" and callum["name"] == "Callum Reid"
    assert callum["role"] == "Senior backend engineer on the Orders team"
    assert callum["text"] == " ".join((scenario.member("callum").opening_line or "").split())
    expect(page.locator("#practice-chat .rp-speaker")).to_have_count(1)  # the HTML speaker line, not its markup

    first = say(page, scenario, TO_TOMASZ, 2)
    assert [b["who"] for b in first] == ["tomasz"], first
    assert first[0]["initial"] == "T" and first[0]["name"] == "Tomasz Nowak" and first[0]["text"]

    second = say(page, scenario, TO_EVERYONE[0], 4)
    assert [b["who"] for b in second] == ["callum", "hannah"], second
    assert second[1]["text"] == (scenario.member("hannah").join_line or "").strip()
    assert second[1]["initial"] == "H" and second[1]["name"] == "Hannah Price"

    third = say(page, scenario, TO_EVERYONE[1], 6)
    assert [b["who"] for b in third] == ["callum", "hannah"], third

    shown = bubbles(page, scenario)
    for b in shown:
        assert b["colour"] == rgb(cast.colour(b["who"])) == b["avatar"], b
    assert len({b["colour"] for b in shown}) == 3
    status = page.locator("#practice-status")
    expect(status).to_contain_text("Turn 3 of 20")
    expect(status).to_contain_text(re.compile(r"airtime: .*\d+%"))
    for name in ("you", "Callum", "Tomasz", "Hannah"):
        expect(status).to_contain_text(re.compile(rf"\b{name} \d+%"))
    scroll_chat_to(page, 1)
    shot(page, "meeting-practice")

    end_and_see_feedback(page, scenario)
    facts = page.locator("#practice-preliminary #meeting-facts")
    expect(facts).to_contain_text("Asked by name: Tomasz Nowak 1; to everyone: 2")
    shot(page, "meeting-feedback")
    page.context.close()

    facilitator = sign_in(browser, app, "fay")
    expect(facilitator.locator("#tab-review-button")).to_have_attribute("aria-selected", "true")
    expect(facilitator.locator("#review-queue")).to_contain_text(scenario.title)
    facilitator.locator("#review-queue").get_by_role("gridcell").nth(1).click()
    expect(facilitator.locator("#review-header")).to_contain_text("Review #1 · pending")
    transcript = facilitator.locator("#review-transcript")
    for m in scenario.members:
        turn = transcript.locator(f'.rp-turn.persona[data-who="{m.id}"]')
        expect(turn.first.locator(".rp-who")).to_have_text(m.persona.name)
    expect(transcript.locator(".rp-turn.learner").first).to_contain_text(TO_TOMASZ)
    review_facts = transcript.locator("#meeting-facts")
    expect(review_facts).to_contain_text("Meeting facts")
    expect(review_facts).to_contain_text("Asked by name: Tomasz Nowak 1; to everyone: 2")
    expect(review_facts.locator(".rp-bar")).to_have_count(4)
    shot(facilitator, "meeting-review")
    facilitator.context.close()
    speaker_tags_match(shown)


def test_a_learner_chairs_the_launch_date_clash_over_the_model(browser, stub_model: StubOpenAI, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Each persona is voiced by its own model call, shown under its own name, and no one's secrets reach another."""
    from playwright.sync_api import expect

    scenario = catalog().scenario(CONFLICT)
    names = {m.id: m.persona.name for m in scenario.members}
    page = sign_in(browser, app, "ana")
    start_meeting(page, scenario.title, "intermediate")
    expect(page.locator("#practice-engine")).to_contain_text("AI persona")
    expect(page.locator(BOT)).to_have_count(2)
    opening = bubbles(page, scenario)
    assert [(b["who"], b["name"], b["initial"]) for b in opening] == [("gareth", "Gareth Lewis", "G"),
                                                                    ("priya", "Priya Nair", "P")]
    for b in opening:
        assert b["text"] == " ".join((scenario.member(str(b["who"])).opening_line or "").split())
    assert opening[0]["colour"] != opening[1]["colour"]

    replies: dict[str, int] = {}
    count = 2
    for line, speakers in zip(CONFLICT_LINES, [["gareth", "priya"], ["priya"], ["gareth"]]):
        count += len(speakers)
        new = say(page, scenario, line, count)
        lines = []
        for who in speakers:
            lines.append((who, names[who], STUB_LINES[names[who]][replies.get(who, 0)]))
            replies[who] = replies.get(who, 0) + 1
        assert [(b["who"], b["name"], b["text"]) for b in new] == lines, new
    status = page.locator("#practice-status")
    expect(status).to_contain_text(re.compile(r"airtime: .*Gareth \d+%"))
    expect(status).to_contain_text(re.compile(r"\bPriya \d+%"))

    secrets = fact_phrases(CONFLICT)
    shown = bubbles(page, scenario)
    for b in shown:
        others = [p for who, phrases in secrets.items() if who != b["who"] for p in phrases]
        leaked = [p for p in others if p in words(str(b["text"]))]
        assert not leaked, (b["who"], leaked)
    spoken = [r for r in stub_model.chat_requests() if not r.get("response_format")]
    assert {persona_of(r) for r in spoken} == set(STUB_LINES)
    for request in spoken:
        me = next(k for k, v in names.items() if v == persona_of(request))
        sent = words(" ".join(str(m.get("content") or "") for m in request["messages"]))
        leaked = [p for who, phrases in secrets.items() if who != me for p in phrases if p in sent]
        assert not leaked, (me, leaked)
    scroll_chat_to(page, 2)
    shot(page, "meeting-llm")

    end_and_see_feedback(page, scenario)
    feedback = page.locator("#practice-preliminary")
    expect(feedback.locator('.rp-turn.persona[data-who="priya"]').last).to_contain_text(STUB_LINES["Priya Nair"][1])
    assert any(r.get("response_format") for r in stub_model.chat_requests())
    page_text = words(page.locator("body").inner_text())
    assert not [p for phrases in secrets.values() for p in phrases if p in page_text]
    page.context.close()
    speaker_tags_match(shown)
