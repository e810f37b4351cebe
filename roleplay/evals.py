"""Grader evaluations: a hand-scored gold set, AnnoMI expert ratings, and grading consistency."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from roleplay.catalog import Catalog
from roleplay.gold import EvalError, GoldTranscript
from roleplay.grader import Judge
from roleplay.metrics import agreement, auroc, balanced_accuracy, cohen_kappa, confusion_matrix
from roleplay.moves import classify
from roleplay.transcript import Transcript, Turn

Progress = Callable[[int, int, str], None]
DEFAULT_ANNOMI = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "annomi" / "AnnoMI-simple.csv"


def run_gold(judge: Judge, gold: list[GoldTranscript], catalog: Catalog, progress: Progress | None = None) -> dict[str, Any]:
    """Grade every gold transcript; agreement with the hand scores per criterion and overall."""
    pairs: dict[str, tuple[list[int], list[int]]] = {}
    rows = []
    judged = overridden = needs_facilitator = 0
    for i, g in enumerate(gold, 1):
        scenario = catalog.scenario(g.scenario)
        grade = judge.grade(g.transcript(), catalog.rubric_for(scenario), scenario)
        for cg in grade.criteria:
            judged += 1
            overridden += cg.judge_level is not None and cg.judge_level != cg.level
            needs_facilitator += not cg.supported
            human, ai = pairs.setdefault(f"{grade.rubric_id}/{cg.criterion_id}", ([], []))
            human.append(g.scores[cg.criterion_id])
            ai.append(cg.level)
        rows.append({"id": g.id, "scenario": g.scenario, "quality": g.quality, "split": g.split, "rubric": grade.rubric_id, "overall": grade.overall,
                     "passed": grade.passed,
                     "levels": {c.criterion_id: [g.scores[c.criterion_id], c.level] for c in grade.criteria}})
        if progress:
            progress(i, len(gold), g.id)
    all_h = [x for h, _ in pairs.values() for x in h]
    all_a = [x for _, a in pairs.values() for x in a]
    return {
        "n_transcripts": len(gold),
        "scenarios": sorted({g.scenario for g in gold}),
        "per_criterion": {cid: agreement(h, a).model_dump() for cid, (h, a) in sorted(pairs.items())},
        "all_criteria": agreement(all_h, all_a).model_dump(),
        "consistency_rule_overrides": round(overridden / judged, 4) if judged else None,
        "needs_facilitator_rate": round(needs_facilitator / judged, 4) if judged else None,
        "by_split": {split: _split_agreement([r for r in rows if r["split"] == split]) for split in ("dev", "test")},
        "human_human": human_agreement(gold, catalog),
        "transcripts": rows,
    }


def _split_agreement(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Agreement per criterion and over all criteria, for the rows of one split."""
    if not rows:
        return None
    per: dict[str, tuple[list[int], list[int]]] = {}
    for r in rows:
        for cid, (h, a) in r["levels"].items():
            key = f"{r['rubric']}/{cid}"
            per.setdefault(key, ([], []))[0].append(h)
            per[key][1].append(a)
    return {"n_transcripts": len(rows),
            "per_criterion": {cid: agreement(h, a).model_dump() for cid, (h, a) in sorted(per.items())},
            "all_criteria": agreement([x for h, _ in per.values() for x in h], [x for _, a in per.values() for x in a]).model_dump()}


def human_agreement(gold: list[GoldTranscript], catalog: Catalog) -> dict[str, Any]:
    """Agreement between the two independent hand scores, where a transcript has both (the baseline for a judge)."""
    twice = [g for g in gold if g.second_scores]
    per: dict[str, tuple[list[int], list[int]]] = {}
    for g in twice:
        rubric = catalog.rubric_for(catalog.scenario(g.scenario))
        for cid in rubric.criterion_ids:
            first, second = per.setdefault(f"{rubric.id}/{cid}", ([], []))
            first.append(g.scores[cid])
            second.append((g.second_scores or {})[cid])
    all_1 = [x for a, _ in per.values() for x in a]
    all_2 = [x for _, b in per.values() for x in b]
    return {"n_transcripts": len(twice),
            "per_criterion": {cid: agreement(a, b).model_dump() for cid, (a, b) in sorted(per.items())},
            "all_criteria": agreement(all_1, all_2).model_dump() if all_1 else None}


ANNOMI_BEHAVIOUR = ("reflection", "question", "therapist_input", "other")


def annomi_label(moves: tuple[str, ...]) -> str:
    """Map our moves onto AnnoMI's practitioner codes (reflection > question > input > other)."""
    if {"reflection", "summary"} & set(moves):
        return "reflection"
    if {"open_question", "closed_question"} & set(moves):
        return "question"
    if {"advice", "candid_feedback", "next_step", "affirmation", "empathy", "blame", "dismissive"} & set(moves):
        return "therapist_input"
    return "other"


class AnnoMITranscript(BaseModel):
    """One AnnoMI conversation: the practitioner is graded as the learner."""

    id: str
    quality: Literal["high", "low"]
    topic: str
    transcript: Transcript
    behaviours: list[str]


def load_annomi(path: Path) -> list[AnnoMITranscript]:
    """Read AnnoMI-simple.csv (utterances may contain line breaks: parsed with a CSV reader)."""
    if not path.is_file():
        raise EvalError(f"{path}: AnnoMI CSV not found; pass --annomi PATH (see shared/datasets/annomi/README.md)")
    by_id: dict[str, dict[str, Any]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"transcript_id", "mi_quality", "utterance_id", "interlocutor", "utterance_text", "main_therapist_behaviour"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise EvalError(f"{path}: not an AnnoMI CSV; expected columns {', '.join(sorted(need))}")
        for row in reader:
            item = by_id.setdefault(row["transcript_id"], {"quality": row["mi_quality"], "topic": row.get("topic", ""),
                                                           "rows": []})
            item["rows"].append(row)
    out = []
    for tid, item in by_id.items():
        rows = sorted(item["rows"], key=lambda r: int(r["utterance_id"]))
        turns = [Turn(speaker="learner" if r["interlocutor"] == "therapist" else "persona", text=r["utterance_text"])
                 for r in rows]
        behaviours = [r["main_therapist_behaviour"] for r in rows if r["interlocutor"] == "therapist"]
        out.append(AnnoMITranscript(id=tid, quality=item["quality"], topic=item["topic"],
                                    transcript=Transcript(turns=turns), behaviours=behaviours))
    return sorted(out, key=lambda t: int(t.id) if t.id.isdigit() else 0)


def run_annomi(judge: Judge, items: list[AnnoMITranscript], catalog: Catalog, rubric_id: str = "coaching-conversation",
               progress: Progress | None = None) -> dict[str, Any]:
    """Grade every AnnoMI transcript with a rubric; AUROC for expert high vs low; move agreement with the codes."""
    rubric = catalog.rubric(rubric_id)
    reader = getattr(judge, "reader", None)  # the moves the judge decided on, when it reads turns

    def moves_of(text: str) -> tuple[str, ...]:
        if reader is None:
            return classify(text)
        from roleplay.reader import ReadContext

        return tuple(reader.read(text, ReadContext(scenario=None)).moves)

    scores, high, passed = [], [], []
    gold_codes: list[str] = []
    our_codes: list[str] = []
    for i, item in enumerate(items, 1):
        grade = judge.grade(item.transcript, rubric)
        scores.append(grade.overall)
        high.append(item.quality == "high")
        passed.append(grade.overall >= rubric.pass_threshold)
        for turn, code in zip(item.transcript.learner_turns, item.behaviours):
            gold_codes.append(code)
            our_codes.append(annomi_label(moves_of(turn.text)))
        if progress:
            progress(i, len(items), item.id)
    labels = list(ANNOMI_BEHAVIOUR)
    per_class = {}
    for lab in labels:
        tp = sum(g == lab and o == lab for g, o in zip(gold_codes, our_codes))
        pred = sum(o == lab for o in our_codes)
        act = sum(g == lab for g in gold_codes)
        per_class[lab] = {"precision": round(tp / pred, 4) if pred else None,
                          "recall": round(tp / act, 4) if act else None, "support": act}
    index = {lab: i for i, lab in enumerate(labels)}
    return {
        "n_transcripts": len(items),
        "n_high": sum(high),
        "n_low": len(high) - sum(high),
        "rubric": rubric_id,
        "auroc_overall_high_vs_low": auroc(scores, high),
        "balanced_accuracy_at_pass_threshold": balanced_accuracy(passed, high),
        "pass_threshold": rubric.pass_threshold,
        "mean_overall_high": round(statistics.mean(s for s, h in zip(scores, high) if h), 3) if any(high) else None,
        "mean_overall_low": round(statistics.mean(s for s, h in zip(scores, high) if not h), 3) if not all(high) else None,
        "behaviour_agreement": {
            "n_utterances": len(gold_codes),
            "accuracy": round(sum(g == o for g, o in zip(gold_codes, our_codes)) / len(gold_codes), 4) if gold_codes else None,
            "cohen_kappa": cohen_kappa(gold_codes, our_codes),
            "per_class": per_class,
            "labels": labels,
            "confusion_rows_expert_cols_ours": confusion_matrix(
                [index[g] + 1 for g in gold_codes if g in index], [index[o] + 1 for g, o in zip(gold_codes, our_codes) if g in index],
                levels=tuple(range(1, len(labels) + 1))),
        },
    }


def run_consistency(judge: Judge, transcript: Transcript, catalog: Catalog, scenario_id: str, repeats: int = 5) -> dict[str, Any]:
    """Grade one transcript `repeats` times; report whether every grade was identical and the spread."""
    scenario = catalog.scenario(scenario_id)
    rubric = catalog.rubric_for(scenario)
    grades = [judge.grade(transcript, rubric, scenario) for _ in range(repeats)]
    levels = [[c.level for c in g.criteria] for g in grades]
    overall = [g.overall for g in grades]
    return {
        "repeats": repeats,
        "identical": all(g.model_dump(exclude={"prompt", "raw_reply"}) == grades[0].model_dump(exclude={"prompt", "raw_reply"})
                         for g in grades[1:]) if judge.name == "offline" else len({tuple(lv) for lv in levels}) == 1,
        "overall": overall,
        "overall_stdev": round(statistics.pstdev(overall), 4),
        "levels_per_run": levels,
    }


def write_report(name: str, data: dict[str, Any], out_dir: Path, markdown: str) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **data}
    jpath, mpath = out_dir / f"{name}.json", out_dir / f"{name}.md"
    jpath.write_text(json.dumps(stamp, indent=2) + "\n")
    mpath.write_text(markdown)
    return jpath, mpath


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def gold_markdown(res: dict[str, Any], judge: str) -> str:
    """The gold-set report as markdown."""
    lines = [f"# Gold set: {judge} judge vs hand scores", "",
             f"{res['n_transcripts']} transcripts over {len(res['scenarios'])} scenarios.", "",
             "| criterion | n | QWK | exact | adjacent | mean diff (AI - human) |", "|---|---|---|---|---|---|"]
    for cid, a in res["per_criterion"].items():
        lines.append(f"| {cid} | {a['n']} | {_f(a['qwk'])} | {_f(a['exact'])} | {_f(a['adjacent'])} | {_f(a['mean_difference'])} |")
    a = res["all_criteria"]
    lines += [f"| **all** | {a['n']} | {_f(a['qwk'])} | {_f(a['exact'])} | {_f(a['adjacent'])} | {_f(a['mean_difference'])} |",
              "", "Confusion matrix, all criteria (rows: human level 1-4, columns: AI level 1-4):", "",
              "| human \\ AI | 1 | 2 | 3 | 4 |", "|---|---|---|---|---|"]
    for i, row in enumerate(a["confusion"], 1):
        lines.append(f"| {i} | " + " | ".join(str(x) for x in row) + " |")
    for split, part in (res.get("by_split") or {}).items():
        if part:
            b = part["all_criteria"]
            what = ("looked at while the offline judge was built" if split == "dev" else "held out, measured only")
            lines += ["", f"## {split} split ({part['n_transcripts']} transcripts, {what})", "",
                      "| criterion | n | QWK | exact | adjacent |", "|---|---|---|---|---|"]
            lines += [f"| {cid} | {x['n']} | {_f(x['qwk'])} | {_f(x['exact'])} | {_f(x['adjacent'])} |"
                      for cid, x in part["per_criterion"].items()]
            lines.append(f"| **all** | {b['n']} | {_f(b['qwk'])} | {_f(b['exact'])} | {_f(b['adjacent'])} |")
    lines += ["", f"Criteria whose level the code's consistency rule lowered: {_f(res.get('consistency_rule_overrides'))}"
              f" (LLM judge only); criteria left to a facilitator (evidence not verified): "
              f"{_f(res.get('needs_facilitator_rate'))}."]
    hh = res.get("human_human") or {}
    if hh.get("all_criteria"):
        b = hh["all_criteria"]
        lines += ["", f"## Human-human baseline ({hh['n_transcripts']} transcripts scored twice, independently)", "",
                  "| criterion | n | QWK | exact | adjacent |", "|---|---|---|---|---|"]
        for cid, x in hh["per_criterion"].items():
            lines.append(f"| {cid} | {x['n']} | {_f(x['qwk'])} | {_f(x['exact'])} | {_f(x['adjacent'])} |")
        lines.append(f"| **all** | {b['n']} | {_f(b['qwk'])} | {_f(b['exact'])} | {_f(b['adjacent'])} |")
    return "\n".join(lines) + "\n"


def annomi_markdown(res: dict[str, Any], judge: str) -> str:
    """The AnnoMI report as markdown."""
    b = res["behaviour_agreement"]
    lines = [f"# AnnoMI: {judge} judge, rubric `{res['rubric']}`", "",
             f"{res['n_transcripts']} transcripts ({res['n_high']} high-quality, {res['n_low']} low-quality MI).", "",
             "| figure | value |", "|---|---|",
             f"| AUROC of the overall score, high vs low | {_f(res['auroc_overall_high_vs_low'])} |",
             f"| balanced accuracy, pass threshold {res['pass_threshold']} as 'high' | {_f(res['balanced_accuracy_at_pass_threshold'])} |",
             f"| mean overall, high / low | {_f(res['mean_overall_high'])} / {_f(res['mean_overall_low'])} |",
             f"| move classifier vs expert codes: accuracy ({b['n_utterances']} practitioner utterances) | {_f(b['accuracy'])} |",
             f"| move classifier vs expert codes: Cohen's kappa | {_f(b['cohen_kappa'])} |", "",
             "| expert code | precision | recall | support |", "|---|---|---|---|"]
    for lab, v in b["per_class"].items():
        lines.append(f"| {lab} | {_f(v['precision'])} | {_f(v['recall'])} | {v['support']} |")
    return "\n".join(lines) + "\n"


def consistency_markdown(res: dict[str, Any], judge: str) -> str:
    """The consistency report as markdown."""
    return (f"# Consistency: {judge} judge\n\nThe same transcript graded {res['repeats']} times: "
            f"{'identical every time' if res['identical'] else 'NOT identical'}; overall scores {res['overall']} "
            f"(stdev {res['overall_stdev']}).\n")


def annomi_path(given: str | Path | None, configured: Path | None = None) -> Path:
    """The AnnoMI CSV: the given path, the configured one (ROLEPLAY_ANNOMI_CSV), or shared/datasets by the checkout."""
    return Path(given or configured or DEFAULT_ANNOMI)
