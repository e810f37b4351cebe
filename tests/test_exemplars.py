"""The exemplar store keeps graded excerpts per rubric criterion and finds the nearest ones, fully offline."""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from roleplay import exemplars
from roleplay.context import AppContext
from roleplay.embedders import (
    Embedder,
    HashingEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
    make_embedder,
)
from roleplay.errors import ConfigError, RoleplayError
from roleplay.exemplars import (
    Exemplar,
    ExemplarError,
    ExemplarStore,
    collection_name,
)

RUBRIC = "change-communication"
EMPATHY = "acknowledges-feelings"
CLARITY = "explains-why"


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def ex(excerpt: str, *, id: str | None = None, rubric_id: str = RUBRIC, criterion_id: str = EMPATHY,
       level: int = 3, source: str = "approved", scenario_id: str | None = None) -> Exemplar:
    """An exemplar with sensible defaults."""
    fields: dict[str, Any] = {"rubric_id": rubric_id, "criterion_id": criterion_id, "excerpt": excerpt,
                              "level": level, "rationale": f"level {level} because of the wording",
                              "source": source, "scenario_id": scenario_id}
    if id is not None:
        fields["id"] = id
    return Exemplar(**fields)


@pytest.fixture()
def open_store() -> Iterator[Callable[..., ExemplarStore]]:
    """Open stores with `open_store(...)`; all are closed after the test."""
    opened: list[ExemplarStore] = []

    def factory(*args: Any, **kwargs: Any) -> ExemplarStore:
        if not args and "path" not in kwargs and "url" not in kwargs:
            store = AppContext().exemplars() if "embedder" not in kwargs else ExemplarStore(
                path=AppContext().settings.data_dir / "exemplars", **kwargs)
        else:
            store = ExemplarStore(*args, **kwargs)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


# -- embedders ---------------------------------------------------------------------------------------------------


def test_hashing_embedder_is_deterministic_normalised_and_sized() -> None:
    texts = ["I hear that this change worries you.", "I hear that this change worries you.", ""]
    first = HashingEmbedder().embed(texts)
    again = HashingEmbedder().embed(texts)
    assert first == again
    assert first[0] == first[1]
    assert all(len(v) == 512 for v in first)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0) for v in first)
    assert HashingEmbedder().embed([]) == []
    assert len(HashingEmbedder(64).embed(["x"])[0]) == 64
    assert HashingEmbedder(64).name != HashingEmbedder().name


def test_hashing_embedder_does_not_depend_on_the_python_hash_seed() -> None:
    code = ("from roleplay.exemplars import HashingEmbedder; "
            "print(repr(HashingEmbedder(32).embed(['the new rota starts on Monday'])[0]))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_hashing_embedder_puts_paraphrases_closer_than_unrelated_text() -> None:
    original, paraphrase, unrelated = HashingEmbedder().embed([
        "I can see this change is hard for you, and I want to hear your concerns about the new shifts.",
        "I can see the change to the shifts is hard on you; I want to hear all your concerns.",
        "Please send the quarterly budget spreadsheet to finance by Friday afternoon.",
    ])
    assert cosine(original, paraphrase) > cosine(original, unrelated) + 0.3


def test_make_embedder_defaults_to_hashing_and_reads_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_embedder(), HashingEmbedder)
    monkeypatch.setenv("ROLEPLAY_EMBEDDINGS", "hashing")
    embedder = AppContext().exemplars().embedder
    assert isinstance(embedder, HashingEmbedder)
    assert isinstance(embedder, Embedder)


def test_unknown_embeddings_kind_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLEPLAY_EMBEDDINGS", "word2vec")
    with pytest.raises(ConfigError) as info:
        AppContext()
    message = str(info.value)
    assert "ROLEPLAY_EMBEDDINGS='word2vec'" in message
    assert all(kind in message for kind in ("hashing", "openai", "minilm"))
    with pytest.raises(RoleplayError, match="'bert'"):
        make_embedder("bert")


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None,
                    reason="sentence-transformers is installed")
def test_minilm_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLEPLAY_EMBEDDINGS", "minilm")
    with pytest.raises(ExemplarError, match=r'pip install -e "\.\[embeddings\]"'):
        AppContext().exemplars()
    with pytest.raises(ExemplarError, match="embeddings"):
        SentenceTransformerEmbedder()


def test_openai_embedder_wraps_any_object_with_embed(open_store: Callable[..., ExemplarStore]) -> None:
    class Fake:
        embedding_model = "tiny/embed:v1"

        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def embed(self, texts: list[str]) -> list[list[float]]:
            self.calls.append(texts)
            return HashingEmbedder(32).embed(texts)

    fake = Fake()
    embedder = OpenAIEmbedder(fake)
    assert embedder.name == "openai-tiny/embed:v1"
    store = open_store(embedder=embedder)
    assert store.collection_name == "roleplay-exemplars-openai-tiny-embed-v1"
    store.add(ex("I understand this is frustrating."))
    assert store.similar(RUBRIC, EMPATHY, "this is frustrating", k=1)[0].excerpt == "I understand this is frustrating."
    assert fake.calls == [["I understand this is frustrating."], ["this is frustrating"]]
    with pytest.raises(ExemplarError, match="embed"):
        OpenAIEmbedder(object())


def test_openai_embeddings_from_the_configured_endpoint(stub_llm: Any, monkeypatch: pytest.MonkeyPatch,
                                                        open_store: Callable[..., ExemplarStore]) -> None:
    monkeypatch.setenv("ROLEPLAY_BASE_URL", stub_llm.base_url)
    monkeypatch.setenv("ROLEPLAY_API_KEY", "test-key")
    monkeypatch.setenv("ROLEPLAY_EMBEDDINGS", "openai")
    store = open_store()
    assert isinstance(store.embedder, OpenAIEmbedder)
    assert store.embedder.name == "openai-text-embedding-3-small"
    store.add(ex("I know this is a lot to take in.", id="a"))
    assert [e.id for e in store.similar(RUBRIC, EMPATHY, "I know this is a lot to take in.")] == ["a"]
    assert any(r.path.endswith("/embeddings") for r in stub_llm.requests)


def test_collection_names_are_made_valid_for_chroma() -> None:
    assert collection_name("roleplay-exemplars", "hashing-512") == "roleplay-exemplars-hashing-512"
    assert collection_name("x", "st-all..MiniLM/") == "x-st-all.MiniLM"
    assert len(collection_name("a" * 600, "hashing-512")) == 512
    with pytest.raises(ExemplarError):
        collection_name("-", "-")


# -- the model ---------------------------------------------------------------------------------------------------


def test_exemplar_validates_its_fields() -> None:
    with pytest.raises(ValidationError):
        ex("fine", level=5)
    with pytest.raises(ValidationError):
        ex("   ")
    with pytest.raises(ValidationError):
        Exemplar(rubric_id=RUBRIC, criterion_id=EMPATHY, excerpt="x", level=2, rationale="r", source="approved",
                 grade="B")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ex("fine", source="guessed")
    naive = Exemplar(rubric_id=RUBRIC, criterion_id=EMPATHY, excerpt="x", level=2, rationale="r",
                     source="edited", created_at=datetime(2025, 3, 1, 9, 30))
    assert naive.created_at.tzinfo is not None
    assert ex("a").id != ex("b").id


# -- the store ---------------------------------------------------------------------------------------------------


def test_empty_store_returns_nothing(open_store: Callable[..., ExemplarStore]) -> None:
    store = open_store()
    assert store.count() == 0
    assert store.similar(RUBRIC, EMPATHY, "anything at all") == []
    store.add(ex("I hear you.", criterion_id=CLARITY))
    assert store.similar(RUBRIC, EMPATHY, "I hear you.") == []
    assert store.similar(RUBRIC, CLARITY, "I hear you.", k=0) == []
    assert store.get("missing") is None


def test_default_store_lives_in_the_data_dir(open_store: Callable[..., ExemplarStore],
                                             isolated_settings: Path) -> None:
    store = open_store()
    assert Path(store.location) == isolated_settings / "exemplars"
    assert (isolated_settings / "exemplars").is_dir()
    assert store.collection_name == "roleplay-exemplars-hashing-512"


def test_similar_returns_the_closest_exemplar_of_the_right_criterion(
        open_store: Callable[..., ExemplarStore]) -> None:
    store = open_store()
    store.add(ex("I can see this news is upsetting, and it is fine to feel angry about it.", id="upset", level=4,
                 scenario_id="restructure"))
    store.add(ex("The decision is final, so let's move on to the rota.", id="dismissive", level=1))
    store.add(ex("We are changing the shifts because weekend demand doubled.", id="why", criterion_id=CLARITY))
    store.add(ex("I can see this news is upsetting for you and your team.", id="other-rubric",
                 rubric_id="feedback-basics"))
    found = store.similar(RUBRIC, EMPATHY, "I can see this is upsetting news for you", k=3)
    assert [e.id for e in found] == ["upset", "dismissive"]
    top = found[0]
    assert (top.rubric_id, top.criterion_id, top.level, top.source, top.scenario_id) == (
        RUBRIC, EMPATHY, 4, "approved", "restructure")
    assert top.rationale == "level 4 because of the wording"
    assert top.created_at.tzinfo is not None
    assert found[1].scenario_id is None
    assert [e.id for e in store.similar(RUBRIC, CLARITY, "why are the shifts changing", k=5)] == ["why"]
    assert [e.id for e in store.similar(RUBRIC, EMPATHY, "let's move on to the rota", k=1)] == ["dismissive"]


def test_edited_exemplars_win_near_ties(open_store: Callable[..., ExemplarStore]) -> None:
    store = open_store()
    store.add(ex("I hear how hard this is.", id="approved", source="approved", level=3))
    store.add(ex("I hear how hard this is.", id="edited", source="edited", level=2))
    assert [e.id for e in store.similar(RUBRIC, EMPATHY, "I hear how hard this is.", k=2)] == ["edited", "approved"]


def test_adding_the_same_id_replaces_instead_of_duplicating(open_store: Callable[..., ExemplarStore]) -> None:
    store = open_store()
    store.add(ex("You should just get over it.", id="g1", level=1))
    store.add(ex("You should just get over it.", id="g1", level=1))
    assert store.count() == 1
    store.add(ex("I understand why this feels unfair.", id="g1", level=4, source="edited"))
    assert store.count() == 1
    got = store.get("g1")
    assert got is not None and (got.excerpt, got.level, got.source) == ("I understand why this feels unfair.", 4,
                                                                         "edited")
    assert [e.excerpt for e in store.similar(RUBRIC, EMPATHY, "get over it")] == ["I understand why this feels unfair."]
    assert store.add_many([ex("one", id="g2"), ex("two", id="g2"), ex("three", id="g3")]) == 2
    assert store.count() == 3
    assert store.get("g2") is not None and store.get("g2").excerpt == "two"  # type: ignore[union-attr]


def test_delete_removes_and_ignores_missing_ids(open_store: Callable[..., ExemplarStore]) -> None:
    store = open_store()
    store.add(ex("I hear you.", id="d1"))
    store.delete("d1")
    store.delete("never-existed")
    assert store.count() == 0
    assert store.similar(RUBRIC, EMPATHY, "I hear you.") == []


def test_store_persists_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    with ExemplarStore(path) as first:
        first.add(Exemplar(id="keep", rubric_id=RUBRIC, criterion_id=EMPATHY, excerpt="That sounds stressful.",
                           level=3, rationale="names the feeling", source="edited", scenario_id="s1",
                           created_at=created))
    with pytest.raises(ExemplarError, match="closed"):
        first.count()
    with ExemplarStore(path) as second:
        assert second.count() == 1
        [found] = second.similar(RUBRIC, EMPATHY, "that sounds really stressful")
        assert found == Exemplar(id="keep", rubric_id=RUBRIC, criterion_id=EMPATHY,
                                 excerpt="That sounds stressful.", level=3, rationale="names the feeling",
                                 source="edited", scenario_id="s1", created_at=created)


def test_each_embedder_gets_its_own_collection(tmp_path: Path, open_store: Callable[..., ExemplarStore]) -> None:
    wide = open_store(tmp_path / "db")
    narrow = open_store(tmp_path / "db", embedder=HashingEmbedder(64))
    wide.add(ex("I hear you.", id="w"))
    assert (wide.count(), narrow.count()) == (1, 0)
    assert narrow.similar(RUBRIC, EMPATHY, "I hear you.") == []
    assert wide.collection_name != narrow.collection_name


def test_vectors_of_the_wrong_size_are_an_actionable_error(tmp_path: Path,
                                                           open_store: Callable[..., ExemplarStore]) -> None:
    class Sized:
        def __init__(self, size: int) -> None:
            self.name = "custom"
            self.size = size

        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0] * self.size for _ in texts]

    open_store(tmp_path / "db", embedder=Sized(8)).add(ex("first", id="a"))
    other = open_store(tmp_path / "db", embedder=Sized(4))
    with pytest.raises(ExemplarError, match="dimension") as info:
        other.add(ex("second", id="b"))
    assert "collection" in str(info.value)
    with pytest.raises(ExemplarError, match="dimension"):
        other.similar(RUBRIC, EMPATHY, "second")


def test_chroma_default_embedding_function_is_never_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from chromadb.utils import embedding_functions

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("chroma's default embedding function was called (it downloads a model)")

    monkeypatch.setattr(embedding_functions.DefaultEmbeddingFunction, "__call__", refuse)
    monkeypatch.setattr(embedding_functions.ONNXMiniLM_L6_V2, "__call__", refuse)
    with ExemplarStore(tmp_path / "db") as store:
        store.add(ex("I can tell you're disappointed.", id="n1"))
        store.add_many([ex("Thanks for telling me.", id="n2")])
        assert [e.id for e in store.similar(RUBRIC, EMPATHY, "you're disappointed", k=1)] == ["n1"]
        store.delete("n2")
        assert store.count() == 1
    with ExemplarStore(tmp_path / "db") as reopened:
        assert reopened.similar(RUBRIC, EMPATHY, "disappointed", k=1)[0].id == "n1"


# -- chroma servers ----------------------------------------------------------------------------------------------


def test_unreachable_chroma_server_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    start = time.monotonic()
    with pytest.raises(ExemplarError, match="ROLEPLAY_CHROMA_URL") as info:
        ExemplarStore(url="http://127.0.0.1:9")
    assert "http://127.0.0.1:9" in str(info.value)
    monkeypatch.setenv("ROLEPLAY_CHROMA_URL", "http://127.0.0.1:9")
    with pytest.raises(ExemplarError, match="cannot reach"):
        AppContext().exemplars()
    assert time.monotonic() - start < 5


def test_silent_chroma_server_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exemplars, "CONNECT_TIMEOUT", 0.3)
    with socket.socket() as listener:  # accepts connections (in the kernel) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        start = time.monotonic()
        with pytest.raises(ExemplarError, match="cannot reach the chroma server"):
            ExemplarStore(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        assert time.monotonic() - start < 3


def test_http_server_that_is_not_chroma_is_named(stub_llm: Any) -> None:
    url = stub_llm.base_url.removesuffix("/v1")
    with pytest.raises(ExemplarError, match=r"HTTP 404.*ROLEPLAY_CHROMA_URL"):
        ExemplarStore(url=url)


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000", "http://127.0.0.1:99999",
                                 "http://127.0.0.1:8000/api/v2", "http://"])
def test_malformed_chroma_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(ExemplarError, match="http://127.0.0.1:8000"):
        ExemplarStore(url=url)


def test_path_and_url_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExemplarError, match="either path"):
        ExemplarStore(tmp_path / "db", url="http://127.0.0.1:8000")
