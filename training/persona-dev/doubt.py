"""Where the reader's doubt starts: the `against` probability from which a sentence makes its turn doubtful.

    python training/persona-dev/doubt.py

The offline reader reads a sentence as blame, threat or dismissal only when it is reasonably sure, and otherwise
gives the learner the benefit of the doubt. Those spared sentences are where judgments dressed as listening
hide ("So what you're telling me is you can't manage your own diary" read as a reflection). This script measures,
on the reader corpus's held-out dev split (sentences the head never saw in any wording), for sentences the reader
reads as a question, reflection, summary, empathy or affirmation and not as anything negative:

- how many of those labelled blame, threat or dismissal reach each threshold (judgments caught), and
- how many of those labelled only as good moves reach it (good turns that would earn nothing).

The shipped threshold (`roleplay.offline_reader.DOUBT_AT`) is the lowest that doubts at most one in ten of the
good sentences. Nothing here looks at the persona evaluation scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training" / "reader"))

import numpy as np  # noqa: E402
from train_head import load_corpus  # noqa: E402

from roleplay.offline_reader import DOUBT_AT, NEGATIVE, E5Encoder, MoveHead, moves_from_probabilities, sentence_features  # noqa: E402

GOOD = {"open_question", "reflection", "summary", "empathy", "affirmation"}
MOST_GOOD_DOUBTED = 0.10


def main() -> None:
    head = MoveHead.load()
    rows = [r for r in load_corpus() if r["split"] == "dev"]
    texts = [r["text"] for r in rows]
    encoder = E5Encoder()
    vectors = np.vstack([encoder.encode(texts[i:i + 64]) for i in range(0, len(texts), 64)])
    primary, present = head.probabilities(sentence_features(texts, vectors, head.use_cues), vectors)
    against = primary[:, [head.labels.index(m) for m in NEGATIVE]].sum(axis=1)
    read = [set(moves_from_probabilities(a, b, head.labels)[0]) for a, b in zip(primary, present, strict=True)]
    spared = np.array([bool(m & GOOD) and not m & set(NEGATIVE) for m in read])
    labelled_negative = np.array([bool(set(r["moves"]) & set(NEGATIVE)) for r in rows])
    labelled_good = np.array([bool(set(r["moves"]) & GOOD) and not set(r["moves"]) & set(NEGATIVE) for r in rows])
    hidden, good = spared & labelled_negative, spared & labelled_good
    print(f"dev sentences {len(rows)}; read as a good move {spared.sum()}, of which labelled blame, threat or "
          f"dismissal {hidden.sum()} and labelled only as good moves {good.sum()}")
    print("threshold  judgments caught  good sentences doubted")
    chosen = None
    for threshold in np.arange(0.10, 0.55, 0.05):
        caught = (against[hidden] >= threshold).mean()
        doubted = (against[good] >= threshold).mean()
        if chosen is None and doubted <= MOST_GOOD_DOUBTED:
            chosen = round(float(threshold), 2)
        print(f"  {threshold:.2f}     {caught:.2f}              {doubted:.2f}")
    print(f"lowest threshold doubting at most {MOST_GOOD_DOUBTED:.0%} of good sentences: {chosen} "
          f"(shipped: {DOUBT_AT})")


if __name__ == "__main__":
    main()
