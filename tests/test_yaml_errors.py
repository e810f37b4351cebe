"""Broken scenario and rubric YAML yields exact `file:line: field: problem` messages that say how to fix it.

Every file in tests/yaml_corpus/ starts with comment lines:

    # expect: {file}:12: persona.personaliy: unknown field 'personaliy'; did you mean 'personality'?
    # with: other-file.yaml

One `# expect:` line per error, in the order load_catalog reports them. `{file}` stands for the file's path,
`{dir}` for the corpus directory and `{rubrics}` for the ids of the shipped rubrics. `# with:` names corpus
files loaded before this one (for problems that span files); such partner files carry no `# expect:` line and
are valid on their own. tests/yaml_corpus/valid/ holds the minimal valid files the broken ones vary.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from roleplay.catalog import load_catalog
from roleplay.errors import RoleplayError, ScenarioError, ValidationErrors
from roleplay.rubric import load_rubric
from roleplay.scenario import load_scenario
from roleplay.yamlsource import MAX_YAML_BYTES

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "yaml_corpus"
VALID = CORPUS / "valid"
SHIPPED_RUBRICS = ROOT / "rubrics"

CROSS_FILE = {"unknown-rubric.yaml", "model-lines-not-criterion.yaml", "duplicate-scenario-id.yaml"}
"""Problems only a whole catalog can see; the single-file loaders accept these files."""

FIX_HINTS = (
    "did you mean", "use one of", "valid fields here", "add ", "add it", "expected", "use ", "write ", "keep ",
    "give ", "save ", "indent", "line up", "start from", "remove ", "check the path", "only",
)
"""Words by which a message tells the designer what to do."""

MESSAGE_FORMAT = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>\S+): (?P<problem>.+)$")


def _header(path: Path) -> tuple[list[str], list[str]]:
    """The `# expect:` and `# with:` values of a corpus file's leading comment lines."""
    expects: list[str] = []
    partners: list[str] = []
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", errors="replace")
        if not line.startswith("#"):
            break
        if line.startswith("# expect: "):
            expects.append(line.removeprefix("# expect: "))
        elif line.startswith("# with: "):
            partners.append(line.removeprefix("# with: ").strip())
    return expects, partners


CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))
CASES = [p for p in CORPUS_FILES if _header(p)[0]]
PARTNERS = [p for p in CORPUS_FILES if not _header(p)[0]]


@functools.cache
def _shipped_rubric_ids() -> str:
    return ", ".join(sorted(load_catalog([SHIPPED_RUBRICS]).rubrics))


def _expected(path: Path) -> list[str]:
    expects, _ = _header(path)
    return [
        e.replace("{file}", str(path)).replace("{dir}", str(CORPUS)).replace("{rubrics}", _shipped_rubric_ids())
        for e in expects
    ]


def _load(path: Path) -> list[str]:
    partners = [CORPUS / name for name in _header(path)[1]]
    catalog = load_catalog([*partners, path], rubric_dirs=[SHIPPED_RUBRICS])
    return [e.format() for e in catalog.errors]


def _is_rubric(path: Path) -> bool:
    return b"\ncriteria:" in path.read_bytes()


def test_corpus_has_enough_broken_files() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_broken_file_yields_exact_messages(path: Path) -> None:
    assert _load(path) == _expected(path)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_expectations_use_the_file_line_field_format(path: Path) -> None:
    for message in _expected(path):
        found = MESSAGE_FORMAT.match(message)
        assert found, message
        assert found["file"] == str(path)
        assert int(found["line"]) >= 1


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_every_message_says_how_to_fix_it(path: Path) -> None:
    for message in _load(path):
        problem = MESSAGE_FORMAT.match(message)["problem"]  # type: ignore[index]
        assert any(hint in problem for hint in FIX_HINTS), message


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_single_file_loaders_raise_roleplay_errors(path: Path) -> None:
    loader = load_rubric if _is_rubric(path) else load_scenario
    if path.name in CROSS_FILE:
        loader(path)
        return
    with pytest.raises(RoleplayError) as caught:
        loader(path)
    assert type(caught.value) in (ScenarioError, ValidationErrors)
    errors = caught.value.errors if isinstance(caught.value, ValidationErrors) else [caught.value]
    messages = [e.format() for e in errors]
    assert str(caught.value) == "\n".join(messages)
    if path.name != "neither-scenario-nor-rubric.yaml":  # the loader is told what kind it is, so it says more
        assert messages == _expected(path)


@pytest.mark.parametrize("path", PARTNERS, ids=lambda p: p.stem)
def test_partner_files_are_used_and_valid_on_their_own(path: Path) -> None:
    assert any(path.name in _header(case)[1] for case in CASES)
    assert _load(path) == []


def test_catalog_raise_errors_joins_all_messages() -> None:
    catalog = load_catalog([CORPUS / "several-errors.yaml"], rubric_dirs=[SHIPPED_RUBRICS])
    with pytest.raises(ValidationErrors) as caught:
        catalog.raise_errors()
    assert str(caught.value).splitlines() == _expected(CORPUS / "several-errors.yaml")


def test_too_large_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    text = (VALID / "minimal-scenario.yaml").read_text(encoding="utf-8")
    path.write_text(text + "# " + "x" * MAX_YAML_BYTES + "\n", encoding="utf-8")
    size = path.stat().st_size
    expected = (
        f"{path}: (document): file is {size} bytes, larger than the {MAX_YAML_BYTES}-byte limit; "
        "remove pasted or generated content (a scenario or rubric is a few kilobytes)"
    )
    errors = load_catalog([path], rubric_dirs=[SHIPPED_RUBRICS]).errors
    assert [e.format() for e in errors] == [expected]
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.format() == expected


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    errors = load_catalog([path], rubric_dirs=[SHIPPED_RUBRICS]).errors
    assert [e.format() for e in errors] == [f"{path}: (document): file not found; check the path"]
    with pytest.raises(ScenarioError):
        load_rubric(path)


def test_minimal_valid_files_load() -> None:
    catalog = load_catalog([VALID], rubric_dirs=[SHIPPED_RUBRICS])
    assert catalog.errors == []
    assert load_scenario(VALID / "minimal-scenario.yaml").id == "minimal-scenario"
    assert load_rubric(VALID / "minimal-rubric.yaml").id == "minimal-rubric"


def test_shipped_scenarios_and_rubrics_load_cleanly() -> None:
    catalog = load_catalog([ROOT / "scenarios", ROOT / "rubrics"])
    assert [e.format() for e in catalog.errors] == []
    assert "missed-deadlines" in catalog.scenarios
    assert "coaching-conversation" in catalog.rubrics
    assert load_scenario(ROOT / "scenarios" / "missed-deadlines.yaml").rubric == "coaching-conversation"
    assert load_rubric(ROOT / "rubrics" / "coaching-conversation.yaml").id == "coaching-conversation"


def _alias_bomb(levels: int = 9) -> str:
    lines = ["id: bomb", "a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(levels):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_with_one_line_instead_of_hanging(tmp_path: Path) -> None:
    from roleplay.errors import ScenarioError
    from roleplay.scenario import load_scenario

    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())  # about 400 bytes that would expand to 9**10 values
    assert path.stat().st_size < 1500
    with pytest.raises(ScenarioError, match=r"bomb\.yaml:\d+: .*expands to more than 20,000 values"):
        load_scenario(path)


@pytest.mark.slow
def test_deep_nesting_is_refused_with_the_file_named(tmp_path: Path) -> None:
    from roleplay.errors import ScenarioError
    from roleplay.scenario import load_scenario

    path = tmp_path / "deep.yaml"
    path.write_text("id: deep\nbriefing: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ScenarioError, match=r"deep\.yaml.*nested more than 40 levels"):
        load_scenario(path)


def test_roleplay_validate_reports_a_bomb_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roleplay.cli import main

    (tmp_path / "bomb.yaml").write_text(_alias_bomb())
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "bomb.yaml")])
    assert result.exit_code != 0
    assert "expands to more than 20,000 values" in result.output and "Traceback" not in result.output
