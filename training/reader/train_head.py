"""Rebuild the offline reader's classifier head from the labelled corpus, and report how well it reads.

    python training/reader/train_head.py            # train, write roleplay/data/reader_head.npz, print figures
    python training/reader/train_head.py --compare  # also compare the head with and without keyword cues

The corpus (training/reader/corpus/*.jsonl, guide in GUIDE.md) is split by paraphrase family: a family is
entirely in train or entirely in dev, so dev figures measure sentences the head has not seen in other words.
The shipped head is trained on the train split only, so the dev figures describe the shipped head.
AnnoMI is never used here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from roleplay.offline_reader import (
    HEAD_PATH,
    E5Encoder,
    MoveHead,
    moves_from_probabilities,
    sentence_features,
)
from roleplay.reader import CLASSIFIED

DEV_SHARE = 5  # one family in five goes to dev


def load_corpus(folder: Path = HERE / "corpus") -> list[dict]:
    """Every labelled sentence, with a clear error for a bad line."""
    rows: list[dict] = []
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not JSON ({exc.msg})") from None
            bad = [m for m in row.get("moves", []) if m not in CLASSIFIED]
            if not row.get("text") or not row.get("moves") or bad:
                raise SystemExit(f"{path}:{n}: moves: needs 1-3 labels from {', '.join(CLASSIFIED)} (got {bad or row.get('moves')})")
            row["split"] = "dev" if int(hashlib.sha1(row["group"].encode()).hexdigest(), 16) % DEV_SHARE == 0 else "train"
            rows.append(row)
    return rows


CACHE = HERE / ".cache" / "vectors.npz"


def encode_cached(encoder: E5Encoder, texts: list[str]) -> np.ndarray:
    """Encode, reusing vectors of texts encoded before (a local cache, not shipped)."""
    key = lambda t: hashlib.sha1(f"{encoder.name}|{t}".encode()).hexdigest()  # noqa: E731
    cache: dict[str, np.ndarray] = dict(np.load(CACHE)) if CACHE.is_file() else {}
    missing = [t for t in dict.fromkeys(texts) if key(t) not in cache]
    if missing:
        for t, v in zip(missing, encoder.encode(missing), strict=True):
            cache[key(t)] = v
        CACHE.parent.mkdir(exist_ok=True)
        np.savez(CACHE, **cache)
    return np.stack([cache[key(t)] for t in texts])


def targets(rows: list[dict], labels: tuple[str, ...]) -> np.ndarray:
    y = np.zeros((len(rows), len(labels)), dtype=np.float32)
    for i, r in enumerate(rows):
        for m in r["moves"]:
            y[i, labels.index(m)] = 1.0
    return y


def _adam(params: dict[str, np.ndarray], grad_fn, epochs: int, lr: float) -> None:
    state = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    for t in range(1, epochs + 1):
        grads = grad_fn(params)
        for k, g in grads.items():
            m, v = state[k]
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            params[k] -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)


def train_head(x: np.ndarray, rows: list[dict], labels: tuple[str, ...], l2: float, epochs: int = 300,
               lr: float = 0.02) -> dict[str, np.ndarray]:
    """Standardise, then fit a softmax over the main move and one-vs-rest logistic layers over every move."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    n, d = z.shape
    k = len(labels)
    primary = np.array([labels.index(r["moves"][0]) for r in rows])
    onehot = np.eye(k, dtype=np.float32)[primary]
    counts = onehot.sum(axis=0).clip(1, None)
    sample_w = (1 / np.sqrt(counts))[primary]
    sample_w = (sample_w / sample_w.mean()).astype(np.float32)[:, None]
    y = targets(rows, labels)
    rng = np.random.default_rng(0)
    p = {"primary_w": rng.normal(0, 0.01, (d, k)).astype(np.float32), "primary_b": np.zeros(k, np.float32),
         "any_w": rng.normal(0, 0.01, (d, k)).astype(np.float32), "any_b": np.zeros(k, np.float32)}

    def grads(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits = z @ p["primary_w"] + p["primary_b"]
        logits -= logits.max(axis=1, keepdims=True)
        soft = np.exp(logits)
        soft /= soft.sum(axis=1, keepdims=True)
        g1 = (soft - onehot) * sample_w / n
        sig = 1 / (1 + np.exp(-(z @ p["any_w"] + p["any_b"])))
        g2 = (sig - y) / n
        return {"primary_w": z.T @ g1 + l2 * p["primary_w"], "primary_b": g1.sum(axis=0),
                "any_w": z.T @ g2 + l2 * p["any_w"], "any_b": g2.sum(axis=0)}

    _adam(p, grads, epochs, lr)
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32), **p}


def prototypes(vectors: np.ndarray, rows: list[dict], labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The labelled train sentences the head votes with (vectors as float16, main move, all moves)."""
    return {"proto_vectors": vectors.astype(np.float16),
            "proto_primary": np.array([labels.index(r["moves"][0]) for r in rows], dtype=np.int16),
            "proto_present": targets(rows, labels).astype(np.uint8)}


def evaluate(head: MoveHead, x: np.ndarray, rows: list[dict], vectors: np.ndarray | None = None) -> dict:
    """Per-move precision, recall and F1 (a move counts when it is among the predicted moves), macro-F1, and
    main-move accuracy."""
    primary, present = head.probabilities(x, vectors)
    predicted = [moves_from_probabilities(a, b, head.labels)[0] for a, b in zip(primary, present, strict=True)]
    per: dict[str, dict[str, float]] = {}
    for label in head.labels:
        tp = sum(label in p and label in r["moves"] for p, r in zip(predicted, rows, strict=True))
        fp = sum(label in p and label not in r["moves"] for p, r in zip(predicted, rows, strict=True))
        fn = sum(label not in p and label in r["moves"] for p, r in zip(predicted, rows, strict=True))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[label] = {"precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3),
                      "support": tp + fn}
    supported = [v["f1"] for v in per.values() if v["support"]]
    main = sum(p[0] == r["moves"][0] for p, r in zip(predicted, rows, strict=True)) / len(rows)
    return {"macro_f1": round(float(np.mean(supported)), 3), "primary_accuracy": round(main, 3), "per_move": per}


def choose_l2(x: np.ndarray, rows: list[dict], labels: tuple[str, ...],
              grid: tuple[float, ...] = (0.03, 0.1, 0.3)) -> float:
    """The L2 penalty with the best mean macro-F1 over 3 folds of the train split (folds by family)."""
    fold = np.array([int(hashlib.md5(r["group"].encode()).hexdigest(), 16) % 3 for r in rows])
    best = (grid[0], -1.0)
    for l2 in grid:
        scores = []
        for f in range(3):
            tr, te = fold != f, fold == f
            arrays = train_head(x[tr], [r for r, t in zip(rows, tr, strict=True) if t], labels, l2=l2)
            head = MoveHead(arrays, labels, False, "cv")
            scores.append(evaluate(head, x[te], [r for r, t in zip(rows, te, strict=True) if t])["macro_f1"])
        mean = float(np.mean(scores))
        if mean > best[1]:
            best = (l2, mean)
    return best[0]


def calibrate(encoder: E5Encoder, rows: list[dict], vectors: np.ndarray) -> dict:
    """Similarity scale and thresholds from data: random pairs set the floor, paraphrase families the ceiling;
    responsiveness and naming thresholds from the calibration sets."""
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(rows), (4000, 2))
    random_sims = np.sum(vectors[idx[:, 0]] * vectors[idx[:, 1]], axis=1)
    fam: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        fam.setdefault(r["group"], []).append(i)
    same = [float(vectors[a] @ vectors[b]) for members in fam.values() for a in members for b in members if a < b]
    floor, ceiling = float(np.median(random_sims)), float(np.percentile(same, 75)) if same else 0.92
    unit = lambda s: np.clip((np.asarray(s) - floor) / (ceiling - floor), 0, 1)
    cal: dict[str, float] = {"sim_floor": round(floor, 4), "sim_ceiling": round(ceiling, 4)}

    pairs_path = HERE / "engagement.jsonl"
    if pairs_path.is_file():
        pairs = [json.loads(x) for x in pairs_path.read_text().splitlines() if x.strip()]
        persona = encoder.encode([p["persona"] for p in pairs])
        yes = unit(np.sum(persona * encoder.encode([p["responsive"] for p in pairs]), axis=1))
        no = unit(np.sum(persona * encoder.encode([p["unresponsive"] for p in pairs]), axis=1))
        cal["engage_at"], cal["engage_balanced_accuracy"] = _best_threshold(yes, no)
    names_path = HERE / "naming.jsonl"
    import yaml

    if names_path.is_file():
        items = [json.loads(x) for x in names_path.read_text().splitlines() if x.strip()]
        facts: dict[tuple[str, str], str] = {}
        for f in sorted((ROOT / "scenarios").glob("*.yaml")):
            doc = yaml.safe_load(f.read_text())
            for h in doc.get("hidden_facts", []):
                facts[(doc["id"], h["id"])] = h["fact"]
        items = [i for i in items if (i["scenario"], i["fact_id"]) in facts]
        from roleplay.offline_reader import fact_clauses

        tv = encoder.encode([i["text"] for i in items])
        sims = np.array([float((encoder.encode(fact_clauses(facts[(i["scenario"], i["fact_id"])])) @ tv[k]).max())
                         for k, i in enumerate(items)])
        yes = sims[[i["names"] for i in items]]
        no = sims[[not i["names"] for i in items]]
        cal["named_at"], cal["named_balanced_accuracy"] = _best_threshold(yes, no)
    # relevance: on-topic sentences written for a shipped scenario against that scenario, vs off-topic ones
    from roleplay.offline_reader import topic_texts
    from roleplay.scenario import Scenario

    scenarios = {}
    for f in sorted((ROOT / "scenarios").glob("*.yaml")):
        s = Scenario.model_validate(yaml.safe_load(f.read_text()))
        scenarios[s.id] = encoder.encode(topic_texts(s))
    on, off = [], []
    for i, r in enumerate(rows):
        if r["split"] != "train":
            continue
        if r["situation"] in scenarios and r["moves"][0] != "off_topic":
            on.append(float((scenarios[r["situation"]] @ vectors[i]).max()))
        elif r["moves"][0] == "off_topic":
            off.extend(float((t @ vectors[i]).max()) for t in scenarios.values())
    cal["topic_floor"] = round(float(np.percentile(on, 2)), 4)  # keeps 98% of on-topic sentences
    cal["topic_low"] = round(float(np.median(off)), 4)
    cal["topic_high"] = round(float(np.median(on)), 4)
    cal["off_topic_below_floor"] = round(float(np.mean(np.asarray(off) < cal["topic_floor"])), 3)
    return cal


def _best_threshold(yes: np.ndarray, no: np.ndarray) -> tuple[float, float]:
    best = (0.5, 0.0)
    for t in np.unique(np.concatenate([yes, no])):
        acc = 0.5 * (float(np.mean(yes >= t)) + float(np.mean(no < t)))
        if acc > best[1]:
            best = (float(t), acc)
    return round(best[0], 4), round(best[1], 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true", help="also train without keyword cues and compare on dev")
    ap.add_argument("--out", type=Path, default=HEAD_PATH, help="where to write the head")
    ap.add_argument("--cues", choices=["yes", "no"], default="no", help="use the keyword cues as features")
    ap.add_argument("--l2", type=float, default=None, help="L2 penalty (default: chosen by 3-fold CV on train)")
    args = ap.parse_args()

    rows = load_corpus()
    train = [r for r in rows if r["split"] == "train"]
    dev = [r for r in rows if r["split"] == "dev"]
    print(f"corpus: {len(rows)} sentences ({len(train)} train, {len(dev)} dev) in "
          f"{len({r['group'] for r in rows})} paraphrase families")
    encoder = E5Encoder(threads=2)
    t0 = time.perf_counter()
    vectors = encode_cached(encoder, [r["text"] for r in rows])
    print(f"encoded in {time.perf_counter() - t0:.1f} s")
    is_train = np.array([r["split"] == "train" for r in rows])
    labels = CLASSIFIED
    results = {}
    for use_cues in ((False, True) if args.compare else (args.cues == "yes",)):
        x = sentence_features([r["text"] for r in rows], vectors, use_cues)
        l2 = args.l2 if args.l2 is not None else choose_l2(x[is_train], train, labels)
        arrays = train_head(x[is_train], train, labels, l2=l2)
        arrays.update(prototypes(vectors[is_train], train, labels))
        head = MoveHead(arrays, labels, use_cues, encoder.name, {"knn_k": 10, "knn_temp": 0.02, "knn_alpha": 0.7})
        results[use_cues] = (head, evaluate(head, x[~is_train], dev, vectors[~is_train]),
                             evaluate(head, x[is_train], train, vectors[is_train]))
        print(f"cues={use_cues} l2={l2}: dev macro-F1 {results[use_cues][1]['macro_f1']}, primary accuracy "
              f"{results[use_cues][1]['primary_accuracy']} (train macro-F1 {results[use_cues][2]['macro_f1']})")
    use_cues = args.cues == "yes"
    head, dev_eval, _ = results[use_cues]
    cal = calibrate(encoder, rows, vectors)
    head.meta = {**head.meta, "calibration": cal, "dev": dev_eval, "corpus_sentences": len(rows), "train": len(train),
                 "dev_sentences": len(dev), "trained": time.strftime("%Y-%m-%d")}
    if args.compare:
        head.meta["compare"] = {("with_cues" if k else "without_cues"): v[1]["macro_f1"] for k, v in results.items()}
    head.save(args.out)
    print(f"calibration: {json.dumps(cal)}")
    print("dev per move (F1, support):")
    for label, v in dev_eval["per_move"].items():
        print(f"  {label:18s} {v['f1']:.3f}  P {v['precision']:.3f}  R {v['recall']:.3f}  n={v['support']}")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
