"""The set of scenarios and rubrics on disk, validated together (cross-file references, duplicate ids)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from roleplay.errors import NotFoundError, RoleplayError, ScenarioError, ValidationErrors
from roleplay.rubric import Rubric, rubric_problems
from roleplay.scenario import Scenario, scenario_problems
from roleplay.yamlsource import (
    MAX_YAML_BYTES,
    YamlDocument,
    load_document,
    parse_yaml,
    problem_errors,
    validate_document,
)

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class Catalog:
    """Scenarios and rubrics by id, with the files they came from."""

    scenarios: dict[str, Scenario] = field(default_factory=dict)
    rubrics: dict[str, Rubric] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: list[ScenarioError] = field(default_factory=list)

    def scenario(self, scenario_id: str) -> Scenario:
        """Return a scenario by id, with a helpful error if it does not exist."""
        if scenario_id not in self.scenarios:
            known = ", ".join(sorted(self.scenarios)) or "(none loaded)"
            raise NotFoundError(f"no scenario '{scenario_id}'; available: {known}")
        return self.scenarios[scenario_id]

    def rubric(self, rubric_id: str) -> Rubric:
        """Return a rubric by id, with a helpful error if it does not exist."""
        if rubric_id not in self.rubrics:
            known = ", ".join(sorted(self.rubrics)) or "(none loaded)"
            raise NotFoundError(f"no rubric '{rubric_id}'; available: {known}")
        return self.rubrics[rubric_id]

    def rubric_for(self, scenario: Scenario) -> Rubric:
        """The rubric that grades `scenario`."""
        return self.rubric(scenario.rubric)

    def raise_errors(self) -> None:
        """Raise ValidationErrors if any file failed."""
        if self.errors:
            raise ValidationErrors(self.errors)


def yaml_files(paths: list[Path]) -> list[Path]:
    """Expand directories to the YAML files in them (sorted); keep files as given."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix in YAML_SUFFIXES and q.is_file()))
        else:
            out.append(p)
    return out


def _kind(doc: YamlDocument, path: Path) -> str | None:
    if "criteria" in doc.data:
        return "rubric"
    if "persona" in doc.data:
        return "scenario"
    parents = {p.name for p in path.resolve().parents}
    if "rubrics" in parents:
        return "rubric"
    if "scenarios" in parents:
        return "scenario"
    return None


def load_catalog(paths: list[Path], rubric_dirs: list[Path] | None = None) -> Catalog:
    """Load every scenario and rubric under `paths`, collecting all errors instead of stopping at the first.

    Args:
        paths: Files or directories holding scenario and rubric YAML.
        rubric_dirs: Extra places to find rubrics that scenarios refer to (not themselves reported on).
    """
    cat = Catalog()
    docs: list[tuple[Path, YamlDocument, Scenario]] = []
    for path in yaml_files(paths):
        try:
            doc = load_document(path)
            kind = _kind(doc, path)
            if kind is None:
                cat.errors.append(ScenarioError(
                    str(path), 1, "",
                    "cannot tell whether this is a scenario or a rubric; "
                    "add `persona:` (scenario) or `criteria:` (rubric), or keep other YAML files out of these folders",
                ))
            elif kind == "rubric":
                rubric = validate_document(doc, Rubric)
                cat.errors.extend(problem_errors(doc, rubric_problems(rubric)))
                _add(cat, "rubric", rubric.id, rubric, path, doc)
            else:
                scenario = validate_document(doc, Scenario)
                cat.errors.extend(problem_errors(doc, scenario_problems(scenario)))
                if _add(cat, "scenario", scenario.id, scenario, path, doc):
                    docs.append((path, doc, scenario))
        except ValidationErrors as exc:
            cat.errors.extend(exc.errors)
        except ScenarioError as exc:
            cat.errors.append(exc)
    for extra in yaml_files(rubric_dirs or []):
        try:
            rubric = validate_document(load_document(extra), Rubric)
        except RoleplayError:
            continue  # reported when that directory is validated itself
        cat.rubrics.setdefault(rubric.id, rubric)
    for path, doc, scenario in docs:
        cat.errors.extend(problem_errors(doc, _reference_problems(cat, scenario)))
    cat.errors.sort(key=lambda e: (e.path, e.line or 0))
    return cat


def _add(cat: Catalog, kind: str, item_id: str, item: Scenario | Rubric, path: Path, doc: YamlDocument) -> bool:
    key = f"{kind}:{item_id}"
    if key in cat.sources:
        cat.errors.append(ScenarioError(
            str(path), doc.line_of(("id",)), "id",
            f"{kind} id '{item_id}' is already used by {cat.sources[key]}; give each {kind} its own id",
        ))
        return False
    cat.sources[key] = path
    if isinstance(item, Rubric):
        cat.rubrics[item_id] = item
    else:
        cat.scenarios[item_id] = item
    return True


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _reference_problems(cat: Catalog, scenario: Scenario) -> list[tuple[tuple[str | int, ...], str]]:
    rubric = cat.rubrics.get(scenario.rubric)
    if rubric is None:
        ids = sorted(cat.rubrics)
        known = ", ".join(ids) or "(no rubrics found)"
        hint = _did_you_mean(scenario.rubric, ids)
        return [(("rubric",), f"rubric '{scenario.rubric}' does not exist; {hint}use one of: {known}")]
    return [
        (
            ("model_lines", key),
            f"'{key}' is not a criterion of rubric '{rubric.id}'; "
            f"{_did_you_mean(key, rubric.criterion_ids)}use one of: {', '.join(rubric.criterion_ids)}",
        )
        for key in scenario.model_lines
        if key not in rubric.criterion_ids
    ]


SCENARIO_FILE = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}\.ya?ml$")


def check_scenario_text(text: str, file_name: str, library: Catalog) -> tuple[Scenario | None, list[ScenarioError]]:
    """Validate edited scenario text exactly as loading would: syntax, fields, rubric reference, id clashes.

    Args:
        text: The YAML text.
        file_name: The file it will be saved as (used in messages and for the id-clash check).
        library: The current catalog (its rubrics resolve the reference; its sources reveal id clashes).

    Returns:
        The scenario when valid (else None) and every problem found, each with its line.
    """
    name = file_name or "scenario.yaml"
    errors: list[ScenarioError] = []
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        return None, [ScenarioError(name, None, "", f"the text is larger than {MAX_YAML_BYTES} bytes; shorten it")]
    try:
        doc = parse_yaml(text or "", name)
        if "persona" not in doc.data and "cast" not in doc.data:
            raise ScenarioError(name, 1, "", "this is not a scenario (it has no `persona:` or `cast:`); start from a "
                                "shipped one")
        scenario = validate_document(doc, Scenario)
    except ValidationErrors as exc:
        return None, exc.errors
    except ScenarioError as exc:
        return None, [exc]
    errors.extend(problem_errors(doc, scenario_problems(scenario) + _reference_problems(library, scenario)))
    other = library.sources.get(f"scenario:{scenario.id}")
    if other is not None and other.name != name:
        errors.append(ScenarioError(name, doc.line_of(("id",)), "id",
                                    f"scenario id '{scenario.id}' is already used by {other.name}; give this scenario its own id"))
    if not SCENARIO_FILE.match(name):
        errors.insert(0, ScenarioError(name, None, "file name",
                                       "use lowercase letters, digits and hyphens ending in .yaml, e.g. my-scenario.yaml"))
    return (None if errors else scenario), errors


def save_scenario_text(text: str, file_name: str, folder: Path, library: Catalog, replacing: str | None = None) -> Scenario:
    """Write a scenario file only if the text is valid; otherwise raise and write nothing.

    Args:
        replacing: The file name that was opened for editing (overwriting any other existing file is refused).

    Raises:
        ValidationErrors: the text has problems (nothing written).
        RoleplayError: the file exists and is not the one being edited.
    """
    if not SCENARIO_FILE.match(file_name or ""):
        raise RoleplayError(f"file name '{file_name}': use lowercase letters, digits and hyphens ending in .yaml, "
                            "e.g. my-scenario.yaml")
    scenario, errors = check_scenario_text(text, file_name, library)
    if errors or scenario is None:
        raise ValidationErrors(errors)
    target = folder / file_name
    if target.exists() and file_name != replacing:
        raise RoleplayError(f"{file_name} already exists; open it first to change it, or pick a new name")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    tmp.replace(target)  # atomic: a reader never sees half a file
    return scenario
