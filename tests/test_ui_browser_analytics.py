"""The Analytics page in headless chromium: a facilitator opens it on a small cohort (learners practising over eight
weeks, reviews approved, edited, rejected and pending), sees the plots, the heat map and the lists of people, filters
by scenario, and downloads a table as CSV and every table as a zip; a learner is not shown the tab."""

from __future__ import annotations

import csv
import io
import random
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser import (  # noqa: F401
    App,
    app,
    browser,
    choose,
    content_dirs,
    needs_chromium,
    open_tab,
    publish_screenshots,
    settle,
    shot,
    sign_in,
)
from test_analytics import add_people, record

from roleplay.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

LEARNERS = {"ana": 1.6, "ben": 2.0, "cat": 2.4, "dan": 1.8, "eve": 2.2, "fin": 1.0}  # starting skill, levels 1-4
NAMES = {"ben": "Ben Okoro", "cat": "Cat Wu", "dan": "Dan Roe", "eve": "Eve Adams", "fin": "Fin Walsh",
         "gus": "Gus Lee", "hal": "Hal Moss"}
SCENARIOS = ("missed-deadlines", "quiet-new-starter", "sceptical-senior", "left-out-of-change")
WEEKS = 8


def seed_cohort(store: Store, now: datetime) -> None:
    """Six learners practising over `WEEKS` weeks and getting better, two facilitators reviewing (some approvals
    edited first), the latest sessions still pending; Dan stops after three weeks, Fin keeps failing one scenario and
    Hal has an account but never practised."""
    rnd = random.Random(11)
    joined = now - timedelta(weeks=WEEKS + 1)
    add_people(store, [(u, "learner", NAMES[u]) for u in ("ben", "cat", "dan", "eve", "fin", "hal")], joined=joined)
    add_people(store, [("gus", "facilitator", NAMES["gus"])], joined=joined)
    for week in range(WEEKS):
        for learner, skill in LEARNERS.items():
            if learner == "dan" and week >= 3:
                continue
            for _ in range(rnd.randint(1, 2)):
                started = now - timedelta(weeks=WEEKS - week) + timedelta(hours=rnd.randint(3, 7 * 24 - 3))
                if rnd.random() < 0.12:  # left before the end: never graded
                    record(store, learner, rnd.choice(SCENARIOS), "novice", started, ended=False)
                    continue
                scenario = "sceptical-senior" if learner == "fin" else rnd.choice(SCENARIOS)
                base = skill + (0.1 if learner == "fin" else 0.22) * week
                levels = [max(1, min(4, round(base + rnd.uniform(-0.9, 0.9)))) for _ in range(5)]
                _review(store, rnd, learner, scenario, started, levels, now)


def _review(store: Store, rnd: random.Random, learner: str, scenario: str, started: datetime, levels: list[int],
            now: datetime) -> None:
    """Store one session with a review like the ones facilitators leave: recent ones pending, most approved."""
    level = rnd.choice(("novice", "novice", "intermediate"))
    by = rnd.choice(("fay", "gus"))
    waited = (now - started).total_seconds() / 3600 - 1  # a decision is never in the future
    hours = min(rnd.uniform(2, 60), waited)
    if now - started < timedelta(days=3) or rnd.random() < 0.08:
        record(store, learner, scenario, level, started, levels)
    elif rnd.random() < 0.06:
        record(store, learner, scenario, level, started, levels, review="rejected", by=by, hours=min(hours, 30))
    else:
        edits = None
        if rnd.random() < 0.3:  # the grader was a level too generous on one criterion
            i = rnd.randrange(len(levels))
            edits = {_criteria(scenario)[i]: levels[i] - 1 if levels[i] > 1 else 2}
        record(store, learner, scenario, level, started, levels, review="approved", by=by, hours=hours, edits=edits)


def _criteria(scenario: str) -> list[str]:
    from content import catalog

    return catalog().rubric_for(catalog().scenario(scenario)).criterion_ids


def test_a_facilitator_reads_the_cohort_and_downloads_csv(browser, app: App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Fay opens Analytics: the summary, the practice and trend plots, the heat map, the stuck and inactive learners;
    she filters by one scenario and downloads the heat map as CSV and every table as a zip. Ana has no such tab."""
    from playwright.sync_api import expect

    from roleplay.ui.common import ctx

    seed_cohort(ctx().store, datetime.now(UTC))
    learner = sign_in(browser, app, "ana")
    expect(learner.locator("#tab-progress-button")).to_be_visible()
    expect(learner.locator("#tab-analytics-button")).to_have_count(0)
    learner.context.close()

    page = sign_in(browser, app, "fay")
    open_tab(page, "analytics")
    summary = page.locator("#analytics-summary")
    expect(summary).to_contain_text("6 learners")
    expect(summary).to_contain_text("Only approved results count")
    for plot in ("weekly", "trend", "pass-rates", "queue", "agreement"):
        expect(page.locator(f"#analytics-{plot}")).to_be_visible()
        expect(page.locator(f"#analytics-{plot} canvas, #analytics-{plot} svg").first).to_be_visible()
    heat = page.locator("#analytics-heatmap-table")
    expect(heat).to_contain_text("Reflective listening")
    expect(heat).to_contain_text("The sceptical senior")
    expect(page.locator("#analytics-stuck")).to_contain_text("Fin Walsh (fin)")
    expect(page.locator("#analytics-inactive")).to_contain_text("Hal Moss (hal)")
    expect(page.locator("#analytics-inactive")).to_contain_text("Dan Roe (dan)")
    expect(page.locator("#analytics-turnaround")).to_contain_text("Gus Lee (gus)")
    shot(page, "cohort-analytics")
    assert [p.name for p in publish_screenshots("cohort")] == ["analytics.png"]

    with page.expect_download() as download:
        page.locator("#analytics-csv tr").filter(has_text="criterion-heatmap").locator("td.download a").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert {r["scenario"] for r in rows} >= {"Missed deadlines", "The sceptical senior"}
    assert all(1 <= float(r["mean_level"]) <= 4 for r in rows)

    choose(page, "analytics-scenario", "Missed deadlines")
    page.locator("#analytics-apply").click()
    expect(page.locator("#analytics-scope")).to_contain_text("scenario missed-deadlines")
    expect(heat).not_to_contain_text("The sceptical senior")
    expect(page.locator("#analytics-stuck")).not_to_contain_text("Fin Walsh")
    with page.expect_download() as download:
        page.locator("#analytics-zip").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert "criterion-heatmap.csv" in archive.namelist() and len(archive.namelist()) == 9
        heat_rows = list(csv.DictReader(io.StringIO(archive.read("criterion-heatmap.csv").decode())))
    assert {r["scenario_id"] for r in heat_rows} == {"missed-deadlines"}

    page.locator("#analytics-from input, #analytics-from textarea").first.fill("31/12/2025")
    page.locator("#analytics-apply").click()
    expect(page.locator(".toast-body.warning").filter(has_text="is not a date")).to_be_visible()
    expect(heat).to_contain_text("Missed deadlines")  # the page stays as it was
    settle(page)
    page.context.close()
