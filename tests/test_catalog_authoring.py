"""Authoring in the library: edited scenario text is checked like a file on disk and saved only when valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from roleplay.catalog import check_scenario_text, save_scenario_text
from roleplay.errors import RoleplayError, ValidationErrors
from content import catalog


def shipped(root: Path) -> str:
    return (root / "scenarios" / "missed-deadlines.yaml").read_text()


def test_valid_text_passes_and_clashing_ids_do_not(root: Path) -> None:
    text = shipped(root)
    scenario, errors = check_scenario_text(text, "missed-deadlines.yaml", catalog())
    assert errors == [] and scenario is not None
    _, errors = check_scenario_text(text, "copy.yaml", catalog())
    assert [e.field for e in errors] == ["id"] and "already used by missed-deadlines.yaml" in errors[0].problem


def test_errors_carry_line_numbers(root: Path) -> None:
    text = shipped(root).replace("rubric: coaching-conversation", "rubric: coaching")
    _, errors = check_scenario_text(text.replace("id: missed-deadlines", "id: new-one"), "new-one.yaml", catalog())
    assert errors[0].line == 5 and errors[0].field == "rubric" and "coaching-conversation" in errors[0].problem
    _, errors = check_scenario_text("id: x\n  bad: [", "x.yaml", catalog())
    assert errors[0].line is not None and "YAML" in errors[0].problem
    _, errors = check_scenario_text(shipped(root).replace("id: missed-deadlines", "id: new-one"), "Bad Name.yaml",
                                    catalog())
    assert [e.field for e in errors] == ["file name"]
    with pytest.raises(RoleplayError, match="file name"):
        save_scenario_text(shipped(root), "../escape.yaml", root / "scenarios", catalog())


def test_save_writes_only_valid_text(tmp_path: Path, root: Path) -> None:
    text = shipped(root).replace("id: missed-deadlines", "id: new-one")
    with pytest.raises(ValidationErrors):
        save_scenario_text(text.replace("sprint: underperformance", "sprint: nope"), "new-one.yaml", tmp_path, catalog())
    assert list(tmp_path.iterdir()) == []
    save_scenario_text(text, "new-one.yaml", tmp_path, catalog())
    assert (tmp_path / "new-one.yaml").read_text() == text
    with pytest.raises(RoleplayError, match="already exists"):
        save_scenario_text(text, "new-one.yaml", tmp_path, catalog())
    save_scenario_text(text, "new-one.yaml", tmp_path, catalog(), replacing="new-one.yaml")
