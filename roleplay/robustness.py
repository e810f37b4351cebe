"""Robustness sets for a judge: what it must not reward (stock phrases, filler, off-topic talk) and what must not
move it (the same meaning in other words).

* stock phrases: every learner line of each gold transcript replaced by a rotation of generic coaching lines that
  take up nothing the persona said; each must fail;
* filler: twelve empty "I hear you. I understand. Thanks." turns added to each poor or fair gold transcript; the
  overall score may gain at most 0.1;
* off topic: every learner line replaced by small talk about something else; each must fail;
* paraphrase: a conversation in coaching vocabulary and the same conversation in plain words
  (`evals/grader-sets/paraphrase/`); the overall score may move at most 0.5.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from roleplay.catalog import Catalog
from roleplay.gold import EvalError, GoldTranscript
from roleplay.grader import Judge
from roleplay.transcript import Transcript, Turn
from roleplay.yamlsource import load_document, validate_document

Progress = Callable[[int, int, str], None]
STOCK_LINES = (
    "How do you feel about that?",
    "What I'm hearing is that it's been a lot.",
    "Tell me more about that.",
    "I hear you, and I understand.",
    "That must be really hard for you.",
    "What do you think would help?",
    "Let's agree a next step and check in by Friday.",
    "Thanks for being so open with me.",
)
FILLER = "I hear you. I understand. Thanks."
OFF_TOPIC_LINES = (
    "Did you catch the football at the weekend?",
    "Why is the sky blue, do you reckon?",
    "I've been trying to get into sourdough baking lately.",
    "What's your favourite film of all time?",
    "The traffic this morning was unbelievable.",
    "Do you think it will rain later?",
)
MAX_PARAPHRASE_MOVE = 0.5
MAX_FILLER_GAIN = 0.1


class ParaphrasePair(BaseModel):
    """One conversation in coaching vocabulary and again in plain words: same persona turns, same meaning."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Unique id of the pair.")
    scenario: str = Field(description="Scenario id.")
    original: list[dict[str, str]] = Field(min_length=2, description="Turns in coaching vocabulary.")
    paraphrase: list[dict[str, str]] = Field(min_length=2, description="The same turns in plain words.")

    def transcripts(self) -> tuple[Transcript, Transcript]:
        """Both versions as transcripts."""
        def of(turns: list[dict[str, str]]) -> Transcript:
            return Transcript(scenario_id=self.scenario, turns=[Turn(speaker=k, text=v) for t in turns  # type: ignore[arg-type]
                                                                 for k, v in t.items()])
        return of(self.original), of(self.paraphrase)


def load_paraphrases(directory: Path, catalog: Catalog) -> list[ParaphrasePair]:
    """Every paraphrase pair under `directory`, checked against the catalog."""
    pairs = []
    for path in sorted(directory.glob("*.yaml")):
        pair = validate_document(load_document(path), ParaphrasePair)
        catalog.scenario(pair.scenario)
        if [t for t in pair.original if "persona" in t] != [t for t in pair.paraphrase if "persona" in t]:
            raise EvalError(f"{path}: the persona turns of `original` and `paraphrase` must be the same")
        pairs.append(pair)
    if not pairs:
        raise EvalError(f"no paraphrase pairs (*.yaml) in {directory}")
    return pairs


def replaced(gold: GoldTranscript, lines: tuple[str, ...]) -> Transcript:
    """The gold transcript with every learner line replaced by `lines` in rotation."""
    turns, n = [], 0
    for turn in gold.transcript().turns:
        if turn.speaker == "learner":
            turns.append(Turn(speaker="learner", text=lines[n % len(lines)]))
            n += 1
        else:
            turns.append(turn)
    return Transcript(scenario_id=gold.scenario, turns=turns)


def with_filler(gold: GoldTranscript, count: int = 12) -> Transcript:
    """The gold transcript with `count` empty learner turns (and short persona replies) before its last turn."""
    turns = list(gold.transcript().turns)
    extra = [t for _ in range(count) for t in (Turn(speaker="learner", text=FILLER), Turn(speaker="persona", text="Okay."))]
    return Transcript(scenario_id=gold.scenario, turns=[*turns[:-1], *extra, turns[-1]])


def run_robustness(judge: Judge, gold: list[GoldTranscript], pairs: list[ParaphrasePair], catalog: Catalog,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Grade the four sets; figures and each item's scores."""
    def grade(t: Transcript) -> Any:
        scenario = catalog.scenario(t.scenario_id or "")
        return judge.grade(t, catalog.rubric_for(scenario), scenario)

    total = 2 * len(gold) + 2 * len(pairs) + 2 * sum(g.quality in ("poor", "fair") for g in gold)
    done = 0

    def tick(item: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, item)

    stock, off, filler, para = [], [], [], []
    for g in gold:
        s = grade(replaced(g, STOCK_LINES))
        tick(g.id)
        o = grade(replaced(g, OFF_TOPIC_LINES))
        tick(g.id)
        stock.append({"id": g.id, "overall": s.overall, "passed": s.passed})
        off.append({"id": g.id, "overall": o.overall, "passed": o.passed})
        if g.quality in ("poor", "fair"):
            base = grade(g.transcript())
            tick(g.id)
            padded = grade(with_filler(g))
            tick(g.id)
            filler.append({"id": g.id, "base": base.overall, "with_filler": padded.overall,
                           "gain": round(padded.overall - base.overall, 3)})
    for p in pairs:
        a, b = (grade(t) for t in p.transcripts())
        tick(p.id)
        tick(p.id)
        para.append({"id": p.id, "original": a.overall, "paraphrase": b.overall,
                     "move": round(abs(a.overall - b.overall), 3), "passed": [a.passed, b.passed]})
    gains = [f["gain"] for f in filler]
    moves = [p["move"] for p in para]
    return {
        "stock": {"n": len(stock), "passed": sum(s["passed"] for s in stock),
                  "mean_overall": round(statistics.mean(s["overall"] for s in stock), 3), "items": stock},
        "off_topic": {"n": len(off), "passed": sum(s["passed"] for s in off),
                      "mean_overall": round(statistics.mean(s["overall"] for s in off), 3), "items": off},
        "filler": {"n": len(filler), "max_gain": max(gains, default=0.0),
                   "mean_gain": round(statistics.mean(gains), 3) if gains else 0.0,
                   "over_limit": sum(x > MAX_FILLER_GAIN for x in gains), "items": filler},
        "paraphrase": {"n": len(para), "max_move": max(moves, default=0.0),
                       "mean_move": round(statistics.mean(moves), 3) if moves else 0.0,
                       "over_limit": sum(x > MAX_PARAPHRASE_MOVE for x in moves), "items": para},
    }


def robustness_markdown(res: dict[str, Any], judge: str) -> str:
    """The robustness report as markdown."""
    s, o, f, p = res["stock"], res["off_topic"], res["filler"], res["paraphrase"]
    lines = [f"# Robustness: {judge} judge", "",
             "| set | n | goal | result |", "|---|---|---|---|",
             f"| stock phrases | {s['n']} | every one fails | {s['passed']} passed; mean overall {s['mean_overall']:.2f} |",
             f"| off topic | {o['n']} | every one fails | {o['passed']} passed; mean overall {o['mean_overall']:.2f} |",
             f"| filler (12 empty turns) | {f['n']} | gain <= {MAX_FILLER_GAIN} | max gain {f['max_gain']:.2f}, mean "
             f"{f['mean_gain']:.2f}, {f['over_limit']} over |",
             f"| paraphrase (plain words) | {p['n']} | move <= {MAX_PARAPHRASE_MOVE} | max move {p['max_move']:.2f}, mean "
             f"{p['mean_move']:.2f}, {p['over_limit']} over |", "",
             "Paraphrase pairs (overall: coaching vocabulary / plain words):", "",
             "| pair | original | paraphrase | move |", "|---|---|---|---|"]
    lines += [f"| {x['id']} | {x['original']:.2f} | {x['paraphrase']:.2f} | {x['move']:.2f} |" for x in p["items"]]
    worst = sorted(f["items"], key=lambda x: -x["gain"])[:5]
    lines += ["", "Largest filler gains:", "", "| transcript | base | with filler | gain |", "|---|---|---|---|"]
    lines += [f"| {x['id']} | {x['base']:.2f} | {x['with_filler']:.2f} | {x['gain']:.2f} |" for x in worst]
    return "\n".join(lines) + "\n"
