"""Agreement between the corpus labels and a second reader who relabelled a random sample blind.

    python training/reader/agreement.py

Prints Cohen's kappa on the main move, the share of sentences where the readers share any move, the
per-move agreement, and the disagreements (written to review/disagreements.md).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from roleplay.metrics import cohen_kappa  # noqa: E402
from training.reader.train_head import load_corpus  # noqa: E402


def main() -> None:
    corpus = {r["text"]: r for r in load_corpus()}
    files = sorted((HERE / "review").glob("second-reader*.jsonl"))
    second = [json.loads(x) for f in files for x in f.read_text().splitlines() if x.strip()]
    pairs = [(corpus[s["text"]]["moves"], s["moves"], s["text"]) for s in second if s["text"] in corpus]
    first_main = [a[0] for a, _, _ in pairs]
    second_main = [b[0] for _, b, _ in pairs]
    exact = sum(a == b for a, b in zip(first_main, second_main, strict=True)) / len(pairs)
    overlap = sum(bool(set(a) & set(b)) for a, b, _ in pairs) / len(pairs)
    print(f"sample: {len(pairs)} sentences from {len(files)} blind relabelling rounds")
    print(f"main move: agreement {exact:.3f}, Cohen's kappa {cohen_kappa(first_main, second_main):.3f}")
    print(f"any shared move: {overlap:.3f}")
    confusions = Counter((a[0], b[0]) for a, b, _ in pairs if a[0] != b[0])
    print("most common disagreements (corpus -> second reader):")
    for (a, b), n in confusions.most_common(10):
        print(f"  {a:16s} -> {b:16s} {n}")
    lines = ["# Second-reader disagreements on the main move", "",
             "| sentence | corpus | second reader |", "|---|---|---|"]
    lines += [f"| {t.replace('|', '/')} | {', '.join(a)} | {', '.join(b)} |" for a, b, t in pairs if a[0] != b[0]]
    (HERE / "review" / "disagreements.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
