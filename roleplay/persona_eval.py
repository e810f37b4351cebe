"""The persona evaluation: scripted learner styles x shipped scenarios x levels, through the real engine.

The learner scripts (`evals/persona/scripts/*.yaml`) were written by someone who had not read the reader's
code. Each style is played turn by turn against the offline persona; the report gives, per style and level,
the reveal rate, walkouts, endings, the distinct-line ratio and how closely replies relate to the turn they
answer (against a shuffled baseline).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roleplay.errors import RoleplayError
from roleplay.persona import Conversation
from roleplay.reader import TurnReader
from roleplay.scenario import LEVELS, Scenario

if TYPE_CHECKING:
    from roleplay.grader import Judge
    from roleplay.rubric import Rubric

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "evals" / "persona" / "scripts"
STYLES = ("strong", "natural", "poor", "off_topic", "stock", "typos", "other_language")
Progress = Callable[[int, int, str], None]


class LearnerScripts(BaseModel):
    """One scenario's scripted learners: a list of turns per style."""

    model_config = ConfigDict(extra="forbid")
    scenario: str = Field(description="Scenario id.")
    styles: dict[str, list[str]] = Field(description="Learner turns per style, in order.")


class RunResult(BaseModel):
    """One scripted conversation."""

    model_config = ConfigDict(extra="forbid")
    scenario: str
    level: str
    style: str
    turns: int = Field(description="Learner turns played.")
    facts: int = Field(description="Hidden facts in the scenario.")
    earned: int = Field(description="Facts revealed because the condition was met.")
    named: int = Field(description="Facts revealed because the learner named them.")
    end_reason: str | None
    replies: int
    distinct_replies: int
    relevance: float = Field(description="Mean similarity (0-1 scale) of each reply to the turn it answers.")
    shuffled_relevance: float = Field(description="The same, with replies paired to another turn of the run.")
    addressed: int = Field(default=0, description="Scene: learner turns addressed to a present person by name.")
    answered_by_addressee: int = Field(default=0, description="Scene: of those, turns the person addressed answered first.")
    sided_against: int = Field(default=0, description="Scene: (turn, person) pairs where the learner took a side against them.")
    sided_trust_change: float = Field(default=0.0, description="Scene: summed trust change of those people on those turns.")
    balance: float | None = Field(default=None, description="Scene: evenness of the personas' airtime at the end (1 = even).")
    most_airtime: float | None = Field(default=None, description="Scene: the largest share of the personas' words one person had.")
    levels: dict[str, int] = Field(default_factory=dict, description="Scene: the offline judge's levels per criterion.")


def load_scripts(folder: Path = SCRIPTS_DIR) -> list[LearnerScripts]:
    """Every scenario's learner scripts.

    Raises:
        RoleplayError: a file is missing, not YAML or not in the expected shape (file and problem named).
    """
    import yaml

    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RoleplayError(f"{folder}: no learner scripts found (*.yaml)")
    out = []
    for path in files:
        try:
            out.append(LearnerScripts.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))))
        except (yaml.YAMLError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise RoleplayError(f"{path}: not a learner script file ({first})") from None
    return out


def play(scenario: Scenario, level: str, style: str, turns: list[str], reader: TurnReader, seed: int = 0,
         judge: Judge | None = None, rubric: Rubric | None = None) -> RunResult:
    """Play one scripted learner against the offline persona until the script or the conversation ends.

    In a scene, the run also counts whom each turn addressed and who answered, the trust side-taking cost, the
    airtime, and (given a judge and rubric) how the conversation grades.
    """
    conv = Conversation(scenario, level, seed=seed, reader=reader)
    conv.open()
    pairs: list[tuple[str, str]] = []
    stats: dict[str, Any] = {"addressed": 0, "answered_by_addressee": 0, "sided_against": 0, "sided_trust_change": 0.0}
    for turn in turns:
        if conv.state.ended:
            break
        trust = {m.id: conv.mind(m.id).trust for m in scenario.members}
        start = len(conv.transcript.turns)
        pairs.append((turn, conv.say(turn)))
        if scenario.is_scene and conv.last_reading is not None:
            _count_scene(conv, conv.last_reading, start, trust, stats)
    replies = [r for _, r in pairs]
    rel, shuffled = _relevance(reader, pairs)
    facts = conv.state.meeting
    if facts is not None:
        stats["balance"] = facts.balance()
        stats["most_airtime"] = max(facts.persona_airtime().values(), default=None)
        if judge is not None and rubric is not None and conv.transcript.learner_turns:
            grade = judge.grade(conv.transcript.model_copy(update={"meeting": facts}), rubric, scenario)
            stats["levels"] = {c.criterion_id: c.level for c in grade.criteria}
    return RunResult(scenario=scenario.id, level=level, style=style, turns=len(pairs),
                     facts=len(scenario.hidden_facts),
                     earned=sum(r.how == "earned" for r in conv.state.revealed),
                     named=sum(r.how == "named" for r in conv.state.revealed),
                     end_reason=conv.state.end_reason, replies=len(replies), distinct_replies=len(set(replies)),
                     relevance=rel, shuffled_relevance=shuffled, **stats)


def _count_scene(conv: Conversation, reading: Any, start: int, trust: dict[str, float], stats: dict[str, Any]) -> None:
    """Whom the turn addressed and who answered first; trust lost by those the learner sided against."""
    from roleplay import scene

    scn = conv.scenario
    target = scene.addressed(scn, reading, scene.present(scn, conv.state.learner_turns))
    first = next((t.who for t in conv.transcript.turns[start + 1:] if t.speaker == "persona"), None)
    if target is not None:
        stats["addressed"] += 1
        stats["answered_by_addressee"] += first == target.id
    for m in scn.members:
        if m.id in trust and scene.sided_against(m, reading, scn):
            stats["sided_against"] += 1
            stats["sided_trust_change"] += conv.mind(m.id).trust - trust[m.id]


def _relevance(reader: TurnReader, pairs: list[tuple[str, str]]) -> tuple[float, float]:
    encoder = getattr(reader, "encoder", None)
    if encoder is None or len(pairs) < 2:
        return 0.0, 0.0
    import numpy as np

    floor, ceiling = getattr(reader, "sim_floor", 0.78), getattr(reader, "sim_ceiling", 0.9)
    learner = encoder.encode([p[0] for p in pairs])
    persona = encoder.encode([p[1] for p in pairs])
    unit = lambda x: np.clip((x - floor) / (ceiling - floor), 0, 1)  # noqa: E731
    same = unit(np.sum(learner * persona, axis=1))
    other = unit(np.sum(learner * np.roll(persona, 1, axis=0), axis=1))
    return round(float(same.mean()), 4), round(float(other.mean()), 4)


def run_persona_eval(scenarios: dict[str, Scenario], reader: TurnReader, scripts: list[LearnerScripts] | None = None,
                     levels: tuple[str, ...] = LEVELS, progress: Progress | None = None,
                     judge: Judge | None = None, rubrics: dict[str, Rubric] | None = None) -> dict[str, Any]:
    """Play every style of every script at every level; the runs, a summary per style and level, and for scenes
    (scenarios with a cast) how turn-taking, side-taking and airtime behaved (graded by `judge` when given)."""
    scripts = scripts if scripts is not None else load_scripts()
    jobs = [(s, level, style, turns) for s in scripts if s.scenario in scenarios
            for level in levels for style, turns in s.styles.items()]
    runs: list[RunResult] = []
    for i, (s, level, style, turns) in enumerate(jobs, 1):
        scn = scenarios[s.scenario]
        rubric = (rubrics or {}).get(scn.rubric) if scn.is_scene else None
        runs.append(play(scn, level, style, turns, reader, judge=judge if rubric else None, rubric=rubric))
        if progress:
            progress(i, len(jobs), f"{s.scenario} {level} {style}")
    return {"runs": [r.model_dump() for r in runs], "summary": summarise(runs), "scenes": summarise_scenes(runs)}


def summarise_scenes(runs: list[RunResult]) -> dict[str, Any]:
    """Scenes: the share of addressed turns the person addressed answered, the trust a side taken against someone
    cost them, and per style the airtime balance and the graded levels (mean per criterion)."""
    scene_runs = [r for r in runs if r.balance is not None]
    if not scene_runs:
        return {}
    addressed = sum(r.addressed for r in scene_runs)
    sided = sum(r.sided_against for r in scene_runs)
    styles: dict[str, Any] = {}
    for style in sorted({r.style for r in scene_runs}):
        rs = [r for r in scene_runs if r.style == style]
        crits = sorted({c for r in rs for c in r.levels})
        styles[style] = {
            "conversations": len(rs),
            "balance": round(statistics.mean(r.balance or 0.0 for r in rs), 3),
            "most_airtime": round(statistics.mean(r.most_airtime or 0.0 for r in rs), 3),
            "levels": {c: round(statistics.mean(r.levels[c] for r in rs if c in r.levels), 2) for c in crits},
        }
    return {
        "addressed_turns": addressed,
        "answered_by_addressee": round(sum(r.answered_by_addressee for r in scene_runs) / addressed, 3) if addressed else None,
        "sided_against_turns": sided,
        "trust_change_when_sided_against": round(sum(r.sided_trust_change for r in scene_runs) / sided, 3) if sided else None,
        "styles": styles,
    }


def summarise(runs: list[RunResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per style and level: reveal rate, earned-only rate, walkout rate, endings, distinct lines, relevance."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for style in sorted({r.style for r in runs}, key=lambda s: STYLES.index(s) if s in STYLES else 99):
        out[style] = {}
        for level in [lv for lv in LEVELS if any(r.level == lv and r.style == style for r in runs)]:
            rs = [r for r in runs if r.style == style and r.level == level]
            facts = sum(r.facts for r in rs) or 1
            endings: dict[str, int] = {}
            for r in rs:
                endings[r.end_reason or "script ended"] = endings.get(r.end_reason or "script ended", 0) + 1
            long = [r for r in rs if r.replies >= 15] or rs
            out[style][level] = {
                "conversations": len(rs),
                "reveal_rate": round(sum(r.earned + r.named for r in rs) / facts, 3),
                "earned_rate": round(sum(r.earned for r in rs) / facts, 3),
                "walkout_rate": round(sum(r.end_reason == "walkout" for r in rs) / len(rs), 3),
                "endings": endings,
                "distinct_line_ratio": round(sum(r.distinct_replies for r in long) / max(1, sum(r.replies for r in long)), 3),
                "relevance": round(statistics.mean(r.relevance for r in rs), 3),
                "shuffled_relevance": round(statistics.mean(r.shuffled_relevance for r in rs), 3),
            }
    return out


def persona_markdown(res: dict[str, Any]) -> str:
    """The summary as a markdown table."""
    lines = ["# Persona evaluation (offline engine, offline reader)", "",
             "| style | level | reveal rate | earned | walkouts | distinct lines | reply relevance (shuffled) | endings |",
             "|---|---|---|---|---|---|---|---|"]
    for style, levels in res["summary"].items():
        for level, v in levels.items():
            ends = ", ".join(f"{k} {n}" for k, n in sorted(v["endings"].items()))
            lines.append(f"| {style} | {level} | {v['reveal_rate']:.2f} | {v['earned_rate']:.2f} | "
                         f"{v['walkout_rate']:.2f} | {v['distinct_line_ratio']:.2f} | {v['relevance']:.2f} "
                         f"({v['shuffled_relevance']:.2f}) | {ends} |")
    scenes = res.get("scenes") or {}
    if scenes:
        lines += ["", "## Scenes (several personas)", "",
                  f"- Turns addressed to someone by name: {scenes['addressed_turns']}; answered first by the person "
                  f"addressed: {_share(scenes['answered_by_addressee'])}",
                  f"- Turns that took a side against someone: {scenes['sided_against_turns']}; their trust moved by "
                  f"{_signed(scenes['trust_change_when_sided_against'])} on average on such a turn",
                  "", "| style | conversations | airtime balance (1 = even) | largest persona share | levels graded |",
                  "|---|---|---|---|---|"]
        for style, v in scenes["styles"].items():
            levels = ", ".join(f"{c} {lv:.1f}" for c, lv in v["levels"].items()) or "not graded"
            lines.append(f"| {style} | {v['conversations']} | {v['balance']:.2f} | {v['most_airtime']:.0%} | {levels} |")
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
