"""Facilitator-approved graded excerpts, stored in chromadb, retrieved as few-shot anchors for the LLM judge.

Each `Exemplar` is one learner excerpt with the level a facilitator accepted (or set) for one rubric criterion.
`ExemplarStore.similar` returns the exemplars of that criterion nearest to a new text, so the judge sees how
similar wording was graded before.

Vectors always come from an explicit `Embedder` (`roleplay.embedders`); chromadb's default embedding function
(which downloads an ONNX model on first use) is never involved. Each embedder writes to its own collection.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from roleplay.embedders import Embedder, HashingEmbedder, collection_part
from roleplay.errors import ExemplarError, RoleplayError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

DEFAULT_COLLECTION = "roleplay-exemplars"
CHROMA_URL_ENV = "ROLEPLAY_CHROMA_URL"
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a chroma server to connect and answer its heartbeat before giving up."""
EDITED_BONUS = 0.02
"""Cosine distance subtracted for `edited` exemplars when ranking: a near-tie goes to the facilitator's own grade."""
_OVERFETCH = 4
"""Extra candidates fetched so the edited bonus can lift an exemplar just outside the plain top k."""


class Exemplar(BaseModel):
    """One graded learner excerpt a facilitator approved (or corrected), used as a few-shot anchor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1,
                    description="Stable identifier; adding an exemplar with an existing id replaces it.")
    rubric_id: str = Field(min_length=1, description="Id of the rubric the grade belongs to.")
    criterion_id: str = Field(min_length=1, description="Id of the rubric criterion the grade is about.")
    excerpt: str = Field(min_length=1, description="The learner's text the grade was about.")
    level: int = Field(ge=1, le=4, description="The accepted performance level, 1 (lowest) to 4 (highest).")
    rationale: str = Field(description="Why the excerpt earns that level, as the judge should reason.")
    source: Literal["approved", "edited"] = Field(
        description="'approved': the AI grade was accepted as is; 'edited': a facilitator changed it (ranked higher)."
    )
    scenario_id: str | None = Field(None, description="Scenario the excerpt came from, or None when not recorded.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC),
                                 description="When the exemplar was approved (timezone-aware; naive means UTC).")

    @field_validator("excerpt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        """Reject excerpts that are only whitespace."""
        if not value.strip():
            raise ValueError("excerpt must contain some text")
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        """Treat naive datetimes as UTC so stored timestamps compare correctly."""
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def collection_name(base: str, embedder_name: str) -> str:
    """The chroma collection for `base` and one embedder: `<base>-<embedder name>`, made valid for chroma.

    Args:
        base: The store's collection name.
        embedder_name: The embedder's `name`.

    Returns:
        A name of 3-512 characters from `[A-Za-z0-9._-]` that starts and ends with a letter or digit.

    Raises:
        ExemplarError: Nothing usable is left of the name.
    """
    name = collection_part(f"{base}-{embedder_name}")[:512]
    name = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", name)
    if len(name) < 3:
        raise ExemplarError(f"collection name {base!r} with embedder {embedder_name!r} gives no valid chroma "
                            f"collection name; use letters, digits, '.', '_' and '-'")
    return name


def _parse_url(url: str) -> tuple[str, int, bool]:
    """Host, port and TLS flag of a chroma server URL."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise ExemplarError(f"{CHROMA_URL_ENV}={url!r} is not a chroma server URL; use one like "
                            f"http://127.0.0.1:8000 (scheme, host and optional port, no path)")
    ssl = parts.scheme == "https"
    return parts.hostname, port or (443 if ssl else 8000), ssl


class ExemplarStore:
    """Exemplars in chromadb: a local persistent database by default, or a chroma server.

    Open one store per process and close it when done (or use it as a context manager); a store can be
    reopened on the same path after `close`.

    Attributes:
        embedder: The embedder used for excerpts and queries.
        collection_name: The chroma collection in use (`<collection>-<embedder name>`).
        location: The database directory, or the server URL.
    """

    def __init__(self, path: Path | None = None, url: str | None = None, embedder: Embedder | None = None,
                 collection: str = DEFAULT_COLLECTION, timeout: float = 60.0) -> None:
        """Open (creating if needed) the exemplar collection.

        Args:
            path: Directory of a local persistent chroma database (the app uses `<data_dir>/exemplars`).
            url: Chroma server URL such as `http://127.0.0.1:8000` (ROLEPLAY_CHROMA_URL); give path or url.
            embedder: The embedder; `HashingEmbedder()` when None.
            collection: Base collection name; the embedder name is appended.
            timeout: Seconds per request to a chroma server.

        Raises:
            ExemplarError: Both `path` and `url` are given, the URL is malformed, the server is unreachable,
                or the database cannot be opened.
        """
        if (path is None) == (url is None):
            raise ExemplarError("pass either path (a local database) or url (a chroma server)")
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        self.timeout = timeout
        self.collection_name = collection_name(collection, self.embedder.name)
        self._url = url
        self._client: ClientAPI | None = None
        if url is not None:
            self.location = url
            self._client = self._http_client(url)
        else:
            assert path is not None
            self.location = str(path)
            self._client = self._persistent_client(Path(path))
        with self._chroma("open the exemplar collection"):
            self._collection: Collection = self._client.get_or_create_collection(
                self.collection_name,
                embedding_function=None,  # vectors always come from self.embedder, never chroma's default model
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedder": self.embedder.name},
            )

    @staticmethod
    def _chroma_settings() -> Any:
        """Chroma client settings: no telemetry."""
        from chromadb.config import Settings as ChromaSettings

        return ChromaSettings(anonymized_telemetry=False)

    def _persistent_client(self, path: Path) -> ClientAPI:
        """Open the local chroma database at `path`."""
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExemplarError(f"cannot create the exemplar directory {str(path)!r}: {exc}; "
                                f"check ROLEPLAY_DATA_DIR") from exc
        import chromadb

        with self._chroma("open the exemplar database"):
            return chromadb.PersistentClient(path=str(path), settings=self._chroma_settings())

    def _http_client(self, url: str) -> ClientAPI:
        """Connect to the chroma server at `url`, failing fast when it is down, silent or not chroma 1.x."""
        import httpx

        host, port, ssl = _parse_url(url)
        heartbeat = f"{url.strip().rstrip('/')}/api/v2/heartbeat"
        try:
            response = httpx.get(heartbeat, timeout=CONNECT_TIMEOUT)
        except httpx.HTTPError as exc:
            raise ExemplarError(f"cannot reach the chroma server at {url} ({type(exc).__name__}: {exc}); start it "
                                f"or fix {CHROMA_URL_ENV}, or unset {CHROMA_URL_ENV} to use the local database") from exc
        if response.status_code != 200:
            raise ExemplarError(f"{url} answered GET /api/v2/heartbeat with HTTP {response.status_code}; "
                                f"check that {CHROMA_URL_ENV} points at a chroma 1.x server")
        import chromadb

        with self._chroma("connect to the chroma server"):
            client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=self._chroma_settings())
        _bound_http_timeout(client, self.timeout)
        return client

    @contextmanager
    def _chroma(self, action: str) -> Iterator[None]:
        """Turn any chromadb failure during `action` into an ExemplarError with a hint."""
        try:
            yield
        except RoleplayError:
            raise
        except Exception as exc:
            raise ExemplarError(f"cannot {action} ({self._where()}): {exc}; {self._hint(exc)}") from exc

    def _where(self) -> str:
        """Where the store lives, for messages."""
        if self._url is not None:
            return f"chroma server {self._url}"
        return f"{getattr(self, 'location', '?')}, collection {self.collection_name}"

    def _hint(self, exc: Exception) -> str:
        """What to check after a chromadb failure."""
        text = str(exc)
        if "dimension" in text:
            return (f"the collection holds vectors of another size than embedder {self.embedder.name!r} makes; "
                    f"use a different collection name or delete and re-add the exemplars")
        if "already exists" in text and "different settings" in text:
            return "another chroma client with different settings has this directory open in this process"
        if self._url is not None:
            return f"check that the chroma server is running and {CHROMA_URL_ENV} points at it"
        return ("check that the directory is writable, not used by an incompatible chromadb version, "
                "and ROLEPLAY_DATA_DIR is right")

    def _live(self) -> Collection:
        """The collection, or an error after close."""
        if self._client is None:
            raise ExemplarError("the exemplar store is closed; open a new ExemplarStore")
        return self._collection

    def add(self, exemplar: Exemplar) -> None:
        """Store `exemplar`, replacing any exemplar with the same id.

        Args:
            exemplar: The exemplar to store.

        Raises:
            ExemplarError: chromadb failed or the embedder's vectors do not fit the collection.
        """
        self.add_many([exemplar])

    def add_many(self, exemplars: Iterable[Exemplar]) -> int:
        """Store several exemplars with one embedding call, replacing any with the same ids.

        Args:
            exemplars: The exemplars; when an id repeats, the last one wins.

        Returns:
            How many distinct exemplars were written.

        Raises:
            ExemplarError: chromadb failed or the embedder's vectors do not fit the collection.
        """
        unique = list({e.id: e for e in exemplars}.values())
        if not unique:
            return 0
        collection = self._live()
        vectors = self._embed([e.excerpt for e in unique])
        with self._chroma("store exemplars"):
            collection.upsert(
                ids=[e.id for e in unique],
                documents=[e.excerpt for e in unique],
                embeddings=vectors,  # type: ignore[arg-type]
                metadatas=[_metadata(e) for e in unique],
            )
        return len(unique)

    def get(self, exemplar_id: str) -> Exemplar | None:
        """Return the exemplar with `exemplar_id`, or None when there is none.

        Args:
            exemplar_id: The exemplar's id.

        Returns:
            The stored exemplar, or None.

        Raises:
            ExemplarError: chromadb failed.
        """
        collection = self._live()
        with self._chroma("read an exemplar"):
            found = collection.get(ids=[exemplar_id], include=["documents", "metadatas"])
        if not found["ids"]:
            return None
        return _exemplar(found["ids"][0], (found["documents"] or [""])[0], (found["metadatas"] or [{}])[0])

    def similar(self, rubric_id: str, criterion_id: str, text: str, k: int = 3) -> list[Exemplar]:
        """Return up to `k` exemplars of one rubric criterion nearest to `text`, nearest first.

        Ranking is by cosine distance, with `edited` exemplars (grades a facilitator corrected) given a small
        bonus (`EDITED_BONUS`) so they win near-ties.

        Args:
            rubric_id: Only exemplars of this rubric.
            criterion_id: Only exemplars of this criterion.
            text: The learner text to find anchors for.
            k: At most this many results; 0 gives [].

        Returns:
            The exemplars; [] when the store has none for that criterion.

        Raises:
            ExemplarError: `k` is negative or chromadb failed.
        """
        if k < 0:
            raise ExemplarError(f"k must be 0 or more, got {k}")
        collection = self._live()
        with self._chroma("count exemplars"):
            empty = collection.count() == 0
        if k == 0 or empty:
            return []
        vector = self._embed([text])[0]
        with self._chroma("search exemplars"):
            found = collection.query(
                query_embeddings=[vector],
                n_results=k + _OVERFETCH,
                where={"$and": [{"rubric_id": rubric_id}, {"criterion_id": criterion_id}]},
                include=["documents", "metadatas", "distances"],
            )
        ids = found["ids"][0] if found["ids"] else []
        documents = found["documents"][0] if found["documents"] else [""] * len(ids)
        metadatas = found["metadatas"][0] if found["metadatas"] else [{}] * len(ids)
        distances = found["distances"][0] if found["distances"] else [0.0] * len(ids)
        ranked = sorted(
            zip(ids, documents, metadatas, distances),
            key=lambda row: row[3] - (EDITED_BONUS if row[2].get("source") == "edited" else 0.0),
        )
        return [_exemplar(i, d or "", m or {}) for i, d, m, _ in ranked[:k]]

    def count(self) -> int:
        """Return how many exemplars the collection holds (for this embedder).

        Raises:
            ExemplarError: chromadb failed.
        """
        collection = self._live()
        with self._chroma("count exemplars"):
            return collection.count()

    def delete(self, exemplar_id: str) -> None:
        """Remove the exemplar with `exemplar_id`; a missing id is not an error.

        Args:
            exemplar_id: The exemplar's id.

        Raises:
            ExemplarError: chromadb failed.
        """
        collection = self._live()
        with self._chroma("delete an exemplar"):
            collection.delete(ids=[exemplar_id])

    def close(self) -> None:
        """Release the chroma client (the local database files are closed when no other client uses them)."""
        client, self._client = self._client, None
        if client is not None:
            closer = getattr(client, "close", None)
            if callable(closer):
                with self._chroma("close the exemplar store"):
                    closer()

    def __enter__(self) -> Self:
        """Use the store as a context manager that closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        """Where the store lives and which collection it uses."""
        return f"ExemplarStore({self.location!r}, collection={self.collection_name!r})"

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed `texts`, checking the embedder kept its contract."""
        vectors = self.embedder.embed(list(texts))
        if len(vectors) != len(texts) or any(len(v) == 0 for v in vectors):
            raise ExemplarError(f"embedder {self.embedder.name!r} returned {len(vectors)} vectors "
                                f"(some possibly empty) for {len(texts)} texts")
        return [list(v) for v in vectors]


def _bound_http_timeout(client: Any, timeout: float) -> None:
    """Give chroma's HTTP session a request timeout (chromadb creates it with none)."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)


def _metadata(exemplar: Exemplar) -> dict[str, str | int]:
    """Chroma metadata for one exemplar (the excerpt is the document)."""
    meta: dict[str, str | int] = {
        "rubric_id": exemplar.rubric_id,
        "criterion_id": exemplar.criterion_id,
        "level": exemplar.level,
        "rationale": exemplar.rationale,
        "source": exemplar.source,
        "created_at": exemplar.created_at.isoformat(),
    }
    if exemplar.scenario_id is not None:  # chroma drops None values; absence means None
        meta["scenario_id"] = exemplar.scenario_id
    return meta


def _exemplar(exemplar_id: str, document: str, meta: Any) -> Exemplar:
    """Rebuild an Exemplar from what chroma returned."""
    try:
        return Exemplar(
            id=exemplar_id,
            rubric_id=meta["rubric_id"],
            criterion_id=meta["criterion_id"],
            excerpt=document,
            level=meta["level"],
            rationale=meta.get("rationale", ""),
            source=meta.get("source", "approved"),
            scenario_id=meta.get("scenario_id"),
            created_at=meta.get("created_at") or datetime.now(UTC),
        )
    except (KeyError, ValueError) as exc:
        raise ExemplarError(f"stored exemplar {exemplar_id!r} is malformed ({exc}); delete and re-add it") from exc
