"""What facilitators, designers and administrators notice on their pages, called through the page handlers: problems
as one-line warnings that leave the page as it is, tabs by role, a review opened from its queue row, agreement with
its caveat, authoring messages, account administration (`roleplay.people`), and the command line's start."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from browser import content_dirs  # noqa: F401  (fixture)
from click.testing import CliRunner
from content import GOOD_LINES

from roleplay.errors import NotFoundError, PermissionDenied, RoleplayError
from roleplay.metrics import agreement
from roleplay.store import Store

pytestmark = pytest.mark.usefixtures("fixed_seed")
SKIP = {"__type__": "update"}  # gr.skip(): every output keeps what it shows (gradio is imported by the tests that need it)
PASSWORD = "a long enough phrase"


@dataclass
class FakeRequest:
    """What the handlers read from a Gradio request: the signed-in username."""

    username: str | None


def as_(name: str | None) -> FakeRequest:
    return FakeRequest(name)


def warned(call: Any) -> tuple[Any, list[str]]:
    """Call a handler; returns what it returned and the warnings it showed (outside a browser they are Python
    warnings, inside one the toasts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


CAST = (("ana", "learner", "Ana Silva"), ("ben", "learner", "Ben Okoro"), ("fay", "facilitator", "Fay Jones"),
        ("gus", "facilitator", "Gus Lee"), ("dee", "designer", "Dee Patel"))


def cast(store: Store) -> Store:
    """Two learners, two facilitators and a designer with names, in `store` (no passwords: no test signs them in)."""
    for name, role, shown in CAST:
        store.add_person(name, role, display_name=shown)
    return store


@pytest.fixture()
def people(content_dirs: Path) -> Store:  # noqa: F811 - the fixture imported above
    """The cast in the web app's store (the pages' context); private scenario copies and two anchors."""
    from roleplay.ui.common import ctx

    return cast(ctx().store)


@pytest.fixture()
def library() -> Iterator[Any]:
    """Account administration on a store with the cast, without the web app."""
    from roleplay.context import AppContext
    from roleplay.people import PeopleService

    app = AppContext()
    cast(app.store)
    try:
        yield PeopleService(app.store, app.buddies)
    finally:
        app.close()


def practised(learner: str = "ana") -> str:
    """A session played, ended and graded through the Practice handlers; returns its id."""
    from roleplay.ui import practice_page

    out = practice_page.start("missed-deadlines", "novice", as_(learner))
    for line in GOOD_LINES[:4]:
        list(practice_page.send(line, out[1], as_(learner)))
    practice_page.end(out[1], as_(learner), lambda *_a, **_k: None)
    return out[1]


def select_row(row: list[Any]) -> Any:
    """The event Gradio sends when a table row is clicked."""
    import gradio as gr

    return gr.SelectData(None, {"index": [0, 1], "value": row[1], "row_value": row})


# --- 1. problems are warnings that leave the page as it is ---------------------------------------------------

@pytest.mark.slow
def test_submitting_calibration_without_every_score_warns_and_keeps_the_picked_levels(people: Store) -> None:
    from roleplay.ui import calibrate_page

    anchor_id = calibrate_page.enter(as_("fay"))[2]
    out, shown = warned(lambda: calibrate_page.submit(anchor_id, 2, None, 3, None, 2, None, None, None, as_("fay")))
    assert out == SKIP  # every output keeps what it shows: no level is cleared, nothing is covered
    assert len(shown) == 1 and shown[0].startswith("Score every criterion first; still to score: ")
    assert "\n" not in shown[0]
    assert people.person("fay") and calibrate_page.service().rated_by("fay") == set()


@pytest.mark.slow
def test_review_problems_warn_and_keep_what_the_facilitator_typed(people: Store) -> None:
    from roleplay.ui import review_page

    practised()
    version = review_page.open_review(1, as_("fay"))[4]
    level, feedback, better = review_page.pick_criterion(1, "empathy", as_("fay"))
    out, shown = warned(lambda: review_page.save_edit(1, version, "empathy", level["value"], feedback, better, "why",
                                                      "pending", as_("fay")))
    assert out == SKIP and shown == ["Nothing changed: set a different level, feedback or better line first."]
    review_page.save_edit(1, version, "empathy", 1 if level["value"] > 1 else 2, "", "", "Warmer, please.", "pending",
                          as_("fay"))
    out, shown = warned(lambda: review_page.approve(1, version, "Looks right.", "pending", as_("gus")))  # stale version
    assert out == SKIP and len(shown) == 1 and "changed by someone else" in shown[0]


@pytest.mark.slow
def test_a_scenario_with_one_problem_is_not_saved_with_one_warning(people: Store) -> None:
    from roleplay.ui import author_page

    text, name, *_ = author_page.open_file("missed-deadlines.yaml", as_("dee"))
    broken = text.replace("sprint: underperformance", "sprint: under-performance")
    out, shown = warned(lambda: author_page.save(broken, name, name, as_("dee")))
    assert out == SKIP
    assert len(shown) == 1 and shown[0].startswith("Not saved: the scenario has 1 problem (first: line ")
    assert "problem(s)" not in shown[0] and shown[0].endswith("Nothing was written.")
    assert (author_page.ctx().settings.scenarios_dir / name).read_text(encoding="utf-8") == text


# --- 2. each person sees only the tabs of their role -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("who", "tabs"), [("ana", ["practice", "progress"]),
                                           ("fay", ["review", "calibrate", "people", "analytics"]),
                                           ("dee", ["author"])])
def test_only_the_tabs_of_ones_role_are_shown(people: Store, who: str, tabs: list[str]) -> None:
    from roleplay.ui import app

    banner, selected, *visible = app.who(as_(who))
    shown = [tab for (tab, *_), update in zip(app.PAGES, visible, strict=True) if update["visible"]]
    assert shown == tabs and selected["selected"] == tabs[0]
    assert f'id="whoami-user">{who}<' in banner


@pytest.mark.slow
def test_a_hidden_tab_still_refuses_on_the_server(people: Store) -> None:
    import gradio as gr

    from roleplay.ui import admin_page

    with pytest.raises(gr.Error, match="The People page is for facilitators"):
        admin_page.add("eve", "", "learner", PASSWORD, as_("ana"))
    with pytest.raises(NotFoundError):
        people.person("eve")


# --- 3. review: rows open reviews; the header speaks a facilitator's language ---------------------------------------

@pytest.mark.slow
def test_clicking_a_queue_row_opens_the_review_with_names_and_edits_in_words(people: Store) -> None:
    from roleplay.ui import review_page

    practised()
    rows = review_page.load_queue("pending", as_("fay"))
    assert rows[0][:3] == [1, "Ana Silva", "Missed deadlines"]
    view = review_page.open_row(select_row(rows[0]), as_("fay"))
    header = view[0]
    assert "Review #1 · pending" in header and "**Learner:** Ana Silva (ana)" in header
    assert "Missed deadlines (novice)" in header and "Grade** not edited yet" in header
    assert "Version" not in header and "missed-deadlines" not in header
    assert view[-1] == 1  # the open review, for the edit and decision buttons
    review_page.save_edit(1, view[4], "empathy", 1, "", "", "Needs warmth.", "pending", as_("fay"))
    review_page.save_edit(1, view[4] + 1, "empathy", 2, "", "", "Some warmth after all.", "pending", as_("fay"))
    assert "Grade** edited 2 times" in review_page.open_row(select_row(rows[0]), as_("fay"))[0]


# --- 4. calibrate: a caveat below the minimum, level descriptions, a trend by date ----------------------------------

def test_agreement_on_too_few_scores_says_so() -> None:
    from roleplay.calibration import MIN_AGREEMENT_SCORES, too_few_scores

    one = agreement([2], [3])
    assert one.qwk is not None or one.exact == 0.0  # a figure exists, and means nothing yet
    assert too_few_scores(one) == f"too few scores to judge agreement (n = 1; at least {MIN_AGREEMENT_SCORES})"
    assert too_few_scores(agreement([1, 2, 3, 4, 2], [1, 2, 3, 3, 2])) is None


@pytest.mark.slow
def test_calibrate_shows_level_descriptions_and_no_figure_on_one_score(people: Store) -> None:
    from roleplay.ui import calibrate_page

    out = calibrate_page.enter(as_("fay"))
    levels = out[-calibrate_page.SLOTS:]
    anchor = calibrate_page.service().anchor(out[2])
    first = calibrate_page.ctx().catalog.rubric(anchor.rubric_id).criteria[0]
    assert levels[0]["visible"] is True
    assert all(calibrate_page.render.esc(first.levels[lv]) in levels[0]["value"] for lv in (1, 2, 3, 4))
    assert all(u["visible"] is False for u in levels[len(anchor.criteria):])
    after = calibrate_page.submit(out[2], 2, 3, 2, 3, 2, None, None, None, as_("fay"))
    summary, _flag, per_criterion, _heat, _drift, table = after[3 + calibrate_page.SLOTS + 2:][:6]
    assert "**1 facilitator** has scored **1 anchor**" in summary and "(s)" not in summary
    assert table and all(row[1] == 1 and row[2:6] == ["too few"] * 4 for row in table)  # one score per criterion
    assert per_criterion["visible"] is False  # no point drawn from a single score


@pytest.mark.slow
def test_the_drift_trend_is_labelled_by_week_dates(people: Store) -> None:
    from roleplay.ui import calibrate_page, review_page

    practised()
    version = review_page.open_review(1, as_("fay"))[4]
    review_page.save_edit(1, version, "empathy", 1, "", "", "Needs warmth.", "pending", as_("fay"))
    review_page.approve(1, version + 1, "ok", "pending", as_("fay"))
    drift = calibrate_page._report_outputs()[4]
    weeks = list(drift["value"]["week"])
    monday = date.fromisoformat(calibrate_page.service().report().drift[0].week)
    assert weeks == [f"{monday.day} {monday:%b %Y}"]  # e.g. "7 Dec 2026": the week's date, no time of day
    assert drift["visible"] is True and drift["sort"] == weeks


# --- 5. author: plurals and human names -----------------------------------------------------------------------------

@pytest.mark.slow
def test_author_messages_count_properly_and_name_things(people: Store) -> None:
    from roleplay.ui import author_page

    choices = author_page.enter(as_("dee"))[2]["choices"]
    assert ("Missed deadlines (missed-deadlines.yaml)", "missed-deadlines.yaml") in choices
    text, name, *_ = author_page.open_file("missed-deadlines.yaml", as_("dee"))
    broken = text.replace("sprint: underperformance", "sprint: under-performance")
    out, shown = warned(lambda: author_page.preview_start(broken, name, "novice", as_("dee")))
    assert out == SKIP and len(shown) == 1 and shown[0].startswith("Fix the 1 problem before previewing (first: line ")
    assert "✗ 1 problem; fix it to save." in author_page.validate(broken, name, as_("dee"))[0]
    chat, conv, *_ = author_page.preview_start(text, name, "novice", as_("dee"))
    steps = list(author_page.preview_send("What has been going on for you lately?", chat, conv, as_("dee")))
    assert steps[-1][2].startswith("Sam Okafor: trust ") and "**has told you:** nothing hidden yet" in steps[-1][2]


# --- 6. account administration --------------------------------------------------------------------------------------

def test_a_facilitator_adds_a_person_who_can_sign_in(library: Any) -> None:
    svc, people = library, library.store
    added = svc.add(" eve ", "designer", PASSWORD, "Eve Adams", actor="fay")
    assert (added.username, added.display_name, added.role, added.can_sign_in) == ("eve", "Eve Adams", "designer", True)
    assert people.authenticate("eve", PASSWORD) is not None


@pytest.mark.parametrize(("username", "role", "password", "problem"), [
    ("eve", "learner", "short", "a password needs at least 10 characters"),
    ("", "learner", PASSWORD, "type a username"),
    ("eve adams", "learner", PASSWORD, "cannot contain spaces"),
    ("ana", "learner", PASSWORD, "username 'ana' is taken"),
    ("eve", "", PASSWORD, "pick a role"),
    ("eve", "admin", PASSWORD, "role 'admin' is not valid"),
    ("e" * 101, "learner", PASSWORD, "at most 100 characters"),
])
def test_adding_refuses_bad_input_in_one_line_and_writes_nothing(library: Any, username: str, role: str,
                                                                  password: str, problem: str) -> None:
    before = [a.username for a in library.accounts()]
    with pytest.raises(RoleplayError) as exc:
        library.add(username, role, password, actor="fay")
    assert problem in str(exc.value) and "\n" not in str(exc.value)
    assert [a.username for a in library.accounts()] == before


def test_only_facilitators_manage_accounts(library: Any) -> None:
    with pytest.raises(PermissionDenied, match="only facilitators manage accounts; 'dee' is a designer"):
        library.add("eve", "learner", PASSWORD, actor="dee")


@pytest.mark.slow
def test_removing_refuses_as_the_command_line_does(people: Store) -> None:
    from roleplay.people import PeopleService
    from roleplay.ui import review_page
    from roleplay.ui.common import ctx

    svc = PeopleService(people, ctx().buddies)
    with pytest.raises(RoleplayError, match="cannot remove your own account"):
        svc.remove("fay", actor="fay")
    practised()
    review_page.approve(1, None, "Good.", "pending", as_("gus"))
    with pytest.raises(RoleplayError, match="reviewed or signed off other people's work"):
        svc.remove("gus", actor="fay")
    assert svc.remove("ana", actor="fay") == 1
    with pytest.raises(NotFoundError):
        people.person("ana")
    svc.set_role("gus", "learner", actor="fay")  # his decisions stay in the history, under his name
    with pytest.raises(RoleplayError, match="'fay' is the only facilitator"):
        svc.remove("fay")  # the command line (no actor) is refused the last facilitator too


def test_passwords_roles_and_buddies(library: Any) -> None:
    svc, people = library, library.store
    svc.reset_password("ana", "a fresh long phrase", actor="fay")
    assert people.authenticate("ana", "a fresh long phrase") is not None
    with pytest.raises(RoleplayError, match="at least 10 characters"):
        svc.reset_password("ana", "short", actor="fay")
    with pytest.raises(PermissionDenied, match="'gus' is a facilitator: they change their own password"):
        svc.reset_password("gus", "a fresh long phrase", actor="fay")
    svc.reset_password("fay", "my own new phrase", actor="fay")  # one's own password, yes

    assert svc.set_buddy("ana", "ben", actor="fay").buddy == "ben"
    with pytest.raises(NotFoundError, match="no learner 'dee'"):
        svc.set_buddy("ana", "dee", actor="fay")
    with pytest.raises(RoleplayError, match="own learning buddy"):
        svc.set_buddy("ana", "ana", actor="fay")
    account, ended = svc.set_role("ben", "designer", actor="fay")
    assert account.role == "designer" and ended == 1 and svc.account("ana").buddy is None
    with pytest.raises(RoleplayError, match="cannot change your own role"):
        svc.set_role("fay", "learner", actor="fay")
    with pytest.raises(RoleplayError, match="already a designer; nothing changed"):
        svc.set_role("ben", "designer", actor="fay")
    svc.set_role("gus", "learner", actor="fay")
    with pytest.raises(RoleplayError, match="'fay' is the only facilitator"):
        svc.set_role("fay", "learner")  # the command line has no actor, and the last facilitator stays
    svc.set_buddy("ana", "gus", actor="fay")
    assert svc.set_buddy("ana", "", actor="fay").buddy is None


@pytest.mark.slow
def test_the_people_page_only_calls_the_library_and_warns_on_bad_input(people: Store) -> None:
    from roleplay.ui import admin_page

    out, shown = warned(lambda: admin_page.add("eve", "Eve Adams", "learner", "short", as_("fay")))
    assert out == SKIP and len(shown) == 1 and shown[0].startswith("A password needs at least 10 characters")
    result, rows, picker, *_rest, user, name, password = admin_page.add("eve", "Eve Adams", "learner", PASSWORD,
                                                                         as_("fay"))
    assert "Added Eve Adams (eve) as a learner" in result and (user, name, password) == ("", "", "")
    assert ["eve", "Eve Adams", "learner", "yes", ""] in rows and picker["value"] == "eve"
    out, shown = warned(lambda: admin_page.remove("eve", False, as_("fay")))
    assert out == SKIP and shown == ["Tick the box to confirm that eve and everything that is theirs should be removed."]
    result, rows, *_ = admin_page.remove("eve", True, as_("fay"))
    assert "Removed eve" in result and all(row[0] != "eve" for row in rows)


# --- 7. the command line --------------------------------------------------------------------------------------------

def test_version() -> None:
    from roleplay.cli import main

    out = CliRunner().invoke(main, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"roleplay {__import__('roleplay').__version__}"


@pytest.mark.slow
def test_commands_import_only_what_they_use(tmp_path: Path) -> None:
    code = ("import sys\nfrom roleplay.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('roleplay.cli_eval', 'roleplay.cli_certify', 'gradio', 'sqlalchemy') "
            "if m in sys.modules))")
    for args, expected in ((["--help"], "['roleplay.cli_certify']"), (["validate"], "[]"),
                           (["eval", "--help"], "['roleplay.cli_eval']")):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == expected, (args, out.stdout, out.stderr)
