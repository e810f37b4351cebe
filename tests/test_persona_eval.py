"""The persona evaluation's learners, played through the real engine: what must never happen, at any level."""

from __future__ import annotations

import pytest
from content import catalog

from roleplay.errors import RoleplayError
from roleplay.persona_eval import load_scripts, play, run_persona_eval
from roleplay.reader import offline_reader
from roleplay.scenario import LEVELS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("level", LEVELS)
def test_an_off_topic_learner_never_earns_a_secret(level: str) -> None:
    scenarios = catalog().scenarios
    for script in load_scripts():
        run = play(scenarios[script.scenario], level, "off_topic", script.styles["off_topic"], offline_reader())
        assert run.earned == 0 and run.named == 0, (script.scenario, level)
        assert run.end_reason == "walkout", (script.scenario, level, run.end_reason)


def test_a_learner_writing_in_another_language_earns_nothing_and_is_told_so() -> None:
    scenarios = catalog().scenarios
    for script in load_scripts():
        run = play(scenarios[script.scenario], "novice", "other_language", script.styles["other_language"],
                   offline_reader())
        assert run.earned == 0 and run.named == 0, script.scenario
        assert run.end_reason == "timeout" and run.turns <= 4, script.scenario


def test_the_evaluation_reports_every_style_and_level() -> None:
    scripts = [s for s in load_scripts() if s.scenario == "missed-deadlines"]
    res = run_persona_eval(catalog().scenarios, offline_reader(), scripts, levels=("novice",))
    assert set(res["summary"]) == set(scripts[0].styles)
    for levels in res["summary"].values():
        assert 0 <= levels["novice"]["reveal_rate"] <= 1 and levels["novice"]["conversations"] == 1


def test_a_broken_script_file_is_named_in_one_line(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    (tmp_path / "bad.yaml").write_text("scenario: x\nstyles: [1, 2]\n")
    with pytest.raises(RoleplayError, match="bad.yaml: not a learner script file"):
        load_scripts(tmp_path)


def test_the_persona_is_developed_on_its_own_scripts_not_the_evaluation_ones() -> None:
    from pathlib import Path

    dev = load_scripts(Path(__file__).resolve().parent.parent / "training" / "persona-dev")
    assert {s.scenario for s in dev} == set(catalog().scenarios)
    for script in dev:
        assert any(style.startswith("poor") for style in script.styles), script.scenario
        assert any(not style.startswith("poor") for style in script.styles), script.scenario
    norm = lambda text: " ".join(text.lower().split())  # noqa: E731
    measured = {norm(t) for s in load_scripts() for turns in s.styles.values() for t in turns}
    shared = [t for s in dev for turns in s.styles.values() for t in turns if norm(t) in measured]
    assert shared == []
