"""Shared fixtures: every test gets its own data directory and offline settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from stub_openai import stub_llm  # noqa: F401

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "ROLEPLAY_"


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point all storage at a temp directory and clear any endpoint configuration."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("ROLEPLAY_DATA_DIR", str(data))
    monkeypatch.setenv("ROLEPLAY_SCENARIOS_DIR", str(ROOT / "scenarios"))
    monkeypatch.setenv("ROLEPLAY_RUBRICS_DIR", str(ROOT / "rubrics"))
    yield data
    import sys

    common = sys.modules.get("roleplay.ui.common")
    if common is not None and common._CONTEXT:
        common._CONTEXT.pop().close()


@pytest.fixture()
def root() -> Path:
    """The repository root."""
    return ROOT


from dbs import db_url, pg_url  # noqa: E402,F401  (fixtures on SQLite and PostgreSQL)

# --- tiers ----------------------------------------------------------------------------------------------------
# `python -m pytest -m "not slow"` is the fast tier (under a minute on 2 cores with `-n 2`); the full suite runs
# everything. Besides tests marked in their modules, these are slow: every PostgreSQL twin of a store test (its
# SQLite twin stays in the fast tier), whole modules that drive the web app's handlers or subprocesses, and the
# long conversations below.
SLOW_MODULES = {"test_ui_handlers.py", "test_journey.py", "test_scale_out.py", "test_ui_browser.py"}
SLOW_TESTS = {
    "test_same_seed_same_conversation_other_seed_may_differ", "test_twelve_turn_skilled_conversation_earns_reveals",
    "test_levels_change_how_hard_the_facts_are_to_earn", "test_success_closes_the_conversation_with_the_scenario_line",
    "test_timeout_at_max_turns", "test_long_llm_session_is_trimmed_to_the_scenario_budget",
    "test_drift_signal_rises_when_facilitators_keep_correcting_the_grader",
    "test_ten_turn_llm_session_streams_persists_recovers_and_reveals_when_earned",
    "test_two_processes_approving_at_once_exactly_one_wins", "test_cli_review_flow",
    "test_model_faults_leave_no_half_written_grade", "test_a_session_continues_in_another_process_from_the_store",
    "test_blaming_learner_earns_nothing_and_the_persona_walks_out",
    "test_only_facilitators_review_and_never_their_own_session",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        if (item.path.name in SLOW_MODULES or name in SLOW_TESTS or item.get_closest_marker("postgres")
                or item.get_closest_marker("browser")):
            item.add_marker(pytest.mark.slow)


@pytest.fixture()
def fixed_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Web sessions get seed 0 instead of a fresh random one, so a scripted conversation plays the same every run."""
    import roleplay.practice

    monkeypatch.setattr(roleplay.practice.secrets, "randbelow", lambda n: 0)
