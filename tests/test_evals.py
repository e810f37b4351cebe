"""The evals harness: gold agreement, AnnoMI-format loading and AUROC, consistency; one command writes reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from roleplay.cli import main
from roleplay.evals import annomi_label, load_annomi, run_annomi
from roleplay.gold import EvalError, load_gold
from roleplay.grader import OfflineJudge
from content import catalog

CRITERIA = ["open-questions", "reflective-listening", "empathy", "candid-feedback", "next-steps"]
COLUMNS = ["transcript_id", "mi_quality", "video_title", "video_url", "topic", "utterance_id", "interlocutor",
           "timestamp", "utterance_text", "main_therapist_behaviour", "client_talk_type"]


def write_csv(path: Path) -> None:
    """A tiny made-up conversation set in the AnnoMI column layout (not AnnoMI data)."""
    convs = {
        "0": ("high", [("therapist", "What brings you in today?", "question"), ("client", "My sleep.", "n/a"),
                       ("therapist", "It sounds like the nights have been long\nand lonely.", "reflection"),
                       ("client", "Yes.", "n/a"), ("therapist", "That sounds exhausting.", "reflection"),
                       ("therapist", "How would you like things to be?", "question")]),
        "1": ("low", [("therapist", "You need to stop drinking coffee.", "therapist_input"), ("client", "Hm.", "n/a"),
                      ("therapist", "Do you exercise?", "question"), ("client", "No.", "n/a"),
                      ("therapist", "You should exercise.", "therapist_input")]),
    }
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for tid, (quality, rows) in convs.items():
            for i, (who, text, code) in enumerate(rows):
                w.writerow([tid, quality, "t", "u", "sleep", i, who, "00:00:01", text,
                            code if who == "therapist" else "n/a", "neutral" if who == "client" else "n/a"])


def write_gold(d: Path) -> None:
    d.mkdir()
    for name, lines, level in (("g-poor", ["You need to sort this out.", "Is that clear?"], 1),
                               ("g-good", ["What's been going on for you?", "It sounds like mornings are hard.",
                                           "That sounds exhausting.", "Shall we check in next Monday?"], 3)):
        turns = [{"persona": "Hi."}] + [t for line in lines for t in ({"learner": line}, {"persona": "Okay."})]
        (d / f"{name}.yaml").write_text(yaml.safe_dump({"id": name, "scenario": "missed-deadlines", "quality": "fair",
                                                        "turns": turns, "scores": dict.fromkeys(CRITERIA, level)}))


def test_annomi_loader_keeps_multiline_utterances_and_codes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    write_csv(path)
    items = load_annomi(path)
    assert [i.quality for i in items] == ["high", "low"]
    assert "\nand lonely." in items[0].transcript.learner_turns[1].text
    assert items[0].behaviours == ["question", "reflection", "reflection", "question"]
    res = run_annomi(OfflineJudge(), items, catalog())
    assert res["auroc_overall_high_vs_low"] == 1.0
    assert res["behaviour_agreement"]["n_utterances"] == 7


def test_annomi_wrong_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(EvalError, match="not an AnnoMI CSV"):
        load_annomi(bad)
    with pytest.raises(EvalError, match="not found"):
        load_annomi(tmp_path / "missing.csv")


def test_move_labels_map_to_expert_codes() -> None:
    assert annomi_label(("reflection", "closed_question")) == "reflection"
    assert annomi_label(("open_question",)) == "question"
    assert annomi_label(("advice",)) == "therapist_input"
    assert annomi_label(("other",)) == "other"


def test_gold_scores_must_cover_the_rubric(tmp_path: Path) -> None:
    d = tmp_path / "gold"
    write_gold(d)
    doc = yaml.safe_load((d / "g-poor.yaml").read_text())
    del doc["scores"]["empathy"]
    (d / "g-poor.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(EvalError, match="exactly the criteria"):
        load_gold(d, catalog())


@pytest.mark.slow
def test_one_command_writes_all_reports(tmp_path: Path) -> None:
    gold, csv_path, out = tmp_path / "gold", tmp_path / "a.csv", tmp_path / "reports"
    write_gold(gold)
    write_csv(csv_path)
    result = CliRunner().invoke(main, ["eval", "grader", "--offline", "--gold-dir", str(gold), "--annomi", str(csv_path),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {f"{name}.{ext}" for ext in ("json", "md") for name in (
        "gold-offline", "annomi-offline", "consistency-offline", "robustness-offline", "injection")}
    r = json.loads((out / "robustness-offline.json").read_text())
    assert r["stock"]["n"] == 2 and r["paraphrase"]["n"] >= 10
    assert json.loads((out / "injection.json").read_text())["test"]["detection_rate"] > 0.5
    g = json.loads((out / "gold-offline.json").read_text())
    assert set(g["per_criterion"]) == {f"coaching-conversation/{c}" for c in CRITERIA} and g["n_transcripts"] == 2
    assert "| coaching-conversation/empathy |" in (out / "gold-offline.md").read_text()
    c = json.loads((out / "consistency-offline.json").read_text())
    assert c["repeats"] == 5 and c["identical"] is True and c["overall_stdev"] == 0


@pytest.mark.slow
def test_real_annomi_if_present() -> None:
    from roleplay.evals import annomi_path

    path = annomi_path(None)
    if not path.is_file():
        pytest.skip(f"AnnoMI not found at {path}")
    items = load_annomi(path)
    assert len(items) == 133 and sum(i.quality == "high" for i in items) == 110
