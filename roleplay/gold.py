"""The gold set: practice transcripts written and scored by hand, checked against the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from roleplay.catalog import Catalog
from roleplay.errors import RoleplayError
from roleplay.transcript import Transcript, Turn
from roleplay.yamlsource import load_document, validate_document


class EvalError(RoleplayError):
    """An evaluation dataset cannot be used."""


class GoldTranscript(BaseModel):
    """A practice transcript written and scored by hand, per criterion of its scenario's rubric."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Unique id of the gold transcript.")
    scenario: str = Field(description="Scenario id; its rubric is the one scored.")
    quality: Literal["poor", "fair", "good", "excellent"] = Field(description="Overall impression of the writer.")
    split: Literal["dev", "test"] = Field(default="test", description="'dev': looked at while the offline judge was "
                                          "built; 'test': held out, measured only.")
    notes: str = Field(default="", description="Why it was scored this way.")
    turns: list[dict[str, str]] = Field(
        min_length=2, description="Turns in order, each `learner: text` or `persona: text`; in a scene with several "
                                  "personas, `<cast id>: text` (e.g. `priya: ...`) says which persona spoke.")
    scores: dict[str, int] = Field(description="Hand-scored level 1-4 per criterion id, from the level anchors alone.")
    second_scores: dict[str, int] | None = Field(
        default=None, description="A second, independent hand score per criterion id (human-human agreement).")

    @field_validator("scores", "second_scores")
    @classmethod
    def _levels(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for cid, lv in (value or {}).items():
            if lv not in (1, 2, 3, 4):
                raise ValueError(f"score of '{cid}' is {lv}; use a level from 1 to 4")
        return value

    def transcript(self) -> Transcript:
        """As a Transcript."""
        turns = [Turn(speaker="learner", text=v) if k == "learner" else
                 Turn(speaker="persona", text=v, who=None if k == "persona" else k)
                 for t in self.turns for k, v in t.items()]
        return Transcript(scenario_id=self.scenario, turns=turns)


def load_gold(directory: Path, catalog: Catalog) -> list[GoldTranscript]:
    """Every gold transcript under `directory`, checked against the catalog's scenarios and rubrics."""
    items: list[GoldTranscript] = []
    for path in sorted(directory.glob("*.yaml")):
        doc = load_document(path)
        gold = validate_document(doc, GoldTranscript)
        scenario = catalog.scenario(gold.scenario)
        speakers = {"learner", "persona", *(m.id for m in scenario.members if scenario.is_scene)}
        for i, turn in enumerate(gold.turns):
            for key in turn:
                if key not in speakers:
                    raise EvalError(f"{path}:{doc.line_of(('turns', i))}: turns[{i}]: '{key}' is not a speaker; use "
                                    f"one of: {', '.join(sorted(speakers))}")
        expected = set(catalog.rubric_for(scenario).criterion_ids)
        for name, scores in (("scores", gold.scores), ("second_scores", gold.second_scores)):
            if scores is not None and set(scores) != expected:
                raise EvalError(f"{path}: {name} must cover exactly the criteria of rubric '{scenario.rubric}': "
                                f"{', '.join(sorted(expected))}")
        items.append(gold)
    if not items:
        raise EvalError(f"no gold transcripts (*.yaml) in {directory}")
    return items
