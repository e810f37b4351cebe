"""How well the turn reader reads: the shipped head's dev-set figures and agreement with AnnoMI's expert codes.

AnnoMI is a measure only: nothing here, nor in the training script, fits anything to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from roleplay.evals import ANNOMI_BEHAVIOUR, annomi_label
from roleplay.metrics import cohen_kappa
from roleplay.reader import ReadContext, TurnReader

if TYPE_CHECKING:
    from roleplay.evals import AnnoMITranscript

Progress = Callable[[int, int, str], None]


def dev_figures(reader: TurnReader) -> dict[str, Any]:
    """The dev-set figures recorded with the shipped head when it was trained (macro-F1 and per move)."""
    head = getattr(reader, "head", None)
    meta = getattr(head, "meta", {}) if head is not None else {}
    return {"dev": meta.get("dev", {}), "calibration": meta.get("calibration", {}),
            "corpus_sentences": meta.get("corpus_sentences"), "dev_sentences": meta.get("dev_sentences")}


def annomi_agreement(reader: TurnReader, items: list[AnnoMITranscript], progress: Progress | None = None,
                     baseline: Callable[[str], tuple[str, ...]] | None = None) -> dict[str, Any]:
    """Each practitioner utterance read in context (the client's previous words as what the persona said),
    mapped to AnnoMI's codes (reflection / question / input / other); Cohen's kappa against the experts.

    Args:
        baseline: Optionally a second labeller (e.g. the keyword cues) scored on the same utterances.
    """
    gold: list[str] = []
    ours: list[str] = []
    base: list[str] = []
    for i, item in enumerate(items, 1):
        said: list[str] = []
        learner: list[str] = []
        behaviours = iter(item.behaviours)
        for turn in item.transcript.turns:
            if turn.speaker != "learner":
                said.append(turn.text)
                continue
            code = next(behaviours, None)
            if code is None:
                break
            text = turn.text.strip()
            if not text:
                continue
            reading = reader.read(text, ReadContext(scenario=None, persona_lines=list(said), learner_lines=learner))
            learner.append(text)
            gold.append(code)
            ours.append(annomi_label(tuple(reading.moves)))
            if baseline is not None:
                base.append(annomi_label(baseline(text)))
        if progress:
            progress(i, len(items), item.id)
    out = {"n_utterances": len(gold), "labels": list(ANNOMI_BEHAVIOUR), "cohen_kappa": cohen_kappa(gold, ours),
           "accuracy": round(sum(g == o for g, o in zip(gold, ours, strict=True)) / len(gold), 4) if gold else None,
           "per_class": _per_class(gold, ours)}
    if baseline is not None:
        out["baseline_cohen_kappa"] = cohen_kappa(gold, base)
        out["baseline_per_class"] = _per_class(gold, base)
    return out


def _per_class(gold: list[str], ours: list[str]) -> dict[str, dict[str, float | int | None]]:
    out: dict[str, dict[str, float | int | None]] = {}
    for lab in ANNOMI_BEHAVIOUR:
        tp = sum(g == lab and o == lab for g, o in zip(gold, ours, strict=True))
        pred = sum(o == lab for o in ours)
        act = sum(g == lab for g in gold)
        out[lab] = {"precision": round(tp / pred, 4) if pred else None,
                    "recall": round(tp / act, 4) if act else None, "support": act}
    return out


def reader_markdown(dev: dict[str, Any], annomi: dict[str, Any] | None) -> str:
    """The reader's figures as markdown."""
    d = dev.get("dev", {})
    lines = ["# Turn reader (offline)", "",
             f"Dev set: {dev.get('dev_sentences')} sentences held out by paraphrase family from "
             f"{dev.get('corpus_sentences')}; macro-F1 {d.get('macro_f1')}, main-move accuracy "
             f"{d.get('primary_accuracy')}.", "", "| move | F1 | precision | recall | n |", "|---|---|---|---|---|"]
    for move, v in d.get("per_move", {}).items():
        lines.append(f"| {move} | {v['f1']:.3f} | {v['precision']:.3f} | {v['recall']:.3f} | {v['support']} |")
    if annomi:
        lines += ["", f"AnnoMI practitioner utterances ({annomi['n_utterances']}): Cohen's kappa "
                  f"{annomi['cohen_kappa']} (keyword cues on the same utterances: {annomi.get('baseline_cohen_kappa')}), "
                  f"accuracy {annomi['accuracy']}.", "", "| code | precision | recall | support | cues recall |",
                  "|---|---|---|---|---|"]
        for lab, v in annomi["per_class"].items():
            b = annomi.get("baseline_per_class", {}).get(lab, {})
            lines.append(f"| {lab} | {v['precision']} | {v['recall']} | {v['support']} | {b.get('recall')} |")
    return "\n".join(lines) + "\n"
