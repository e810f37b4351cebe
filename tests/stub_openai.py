"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1 for tests.

The server speaks enough of the OpenAI API for the `openai` SDK: `POST /v1/chat/completions` (plain JSON with
`usage`, or server-sent events when `stream` is true), `POST /v1/embeddings` and `GET /v1/models`.

Replies come from a queue; each entry is one of:

* `str`: a text reply (streamed word by word when the request asks for a stream);
* `dict`, `list` or a pydantic model: a JSON reply, sent as the message content (what `response_format` asks for);
* `Status(code, retry_after=...)`: an HTTP error with an OpenAI-style error body;
* `Delay(seconds, reply)`: wait (longer than the client timeout, to provoke one) and then answer;
* `Malformed(body)`: a 200 response whose JSON body is broken;
* `Truncated(text, after)`: deliver part of the reply and drop the connection (no `[DONE]`);
* a callable `(request_json) -> entry`, evaluated when the entry is served.

When the queue is empty the `default` responder (a callable `(request_json) -> str`) answers, or a fixed text.
Faults apply to any POST endpoint; text and JSON entries are only consumed by chat completions, so embeddings
requests use the queue only for faults.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

import pytest
from pydantic import BaseModel

MODEL = "stub-model"
EMBEDDING_DIMENSIONS = 8


@dataclass(frozen=True)
class Status:
    """Answer with HTTP `code` and an OpenAI-style error body; `retry_after` (seconds) sets Retry-After."""

    code: int
    retry_after: float | None = None
    message: str = "stub error"


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` before sending `reply` (the client should have timed out by then)."""

    seconds: float
    reply: Any = "late reply"


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with `application/json` but a body that is not valid JSON."""

    body: str = '{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


@dataclass(frozen=True)
class Truncated:
    """Deliver the first `after` words of `text`, then close the connection without finishing.

    With `clean=False` (the default) the HTTP body is cut mid-message (chunked encoding never terminated), which
    the client sees as a protocol error; with `clean=True` the server closes a `Connection: close` response
    normally, so only the missing `finish_reason`/`[DONE]` reveals the truncation.
    """

    text: str
    after: int = 2
    clean: bool = False


@dataclass(frozen=True)
class EmptyStream:
    """Answer a streamed request 200 with no events at all (llama.cpp's server does this to a prompt longer than its
    context)."""


Entry = Union[str, dict, list, BaseModel, Status, Delay, Malformed, Truncated, EmptyStream, Callable[[dict], Any]]
FAULTS = (Status, Delay, Malformed, Truncated)


class RecordedRequest(dict):
    """The JSON body of one request (a dict), with `.method`, `.path` and `.headers` (lower-case names) attached."""

    method: str
    path: str
    headers: dict[str, str]


def words(text: str) -> list[str]:
    """Split text into stream deltas: each word keeps the whitespace that follows it."""
    return re.findall(r"^\s+|\S+\s*", text)


def count_tokens(text: str) -> int:
    """The stub's token count: whitespace-separated words."""
    return len(text.split())


def fake_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector derived from a SHA-256 hash of `text`."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:dimensions]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


class StubOpenAI:
    """The server, its reply queue and its request log.

    Attributes:
        base_url: `http://127.0.0.1:PORT/v1`, for `ROLEPLAY_BASE_URL` or a client's `base_url`.
        requests: Every request received, in arrival order (JSON bodies; GETs record an empty body).
        default: Responder used when the queue is empty: `(request_json) -> reply text`, or None for a fixed text.
        token_delay: Seconds to wait before each streamed delta.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default: Callable[[dict], Any] | None = None
        self.token_delay: float = 0.0
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- control -----------------------------------------------------------------------------------------------

    def start(self) -> StubOpenAI:
        """Bind an ephemeral port on 127.0.0.1 and serve in a background thread."""
        stub = self

        class Handler(_Handler):
            owner = stub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._stopping.clear()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed handlers and drop open connections."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def queue(self, *entries: Entry) -> None:
        """Append reply entries; each request to a POST endpoint consumes at most one."""
        with self._lock:
            self._queue.extend(entries)

    def reset(self) -> None:
        """Forget queued replies, recorded requests, the default responder and the token delay."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
        self.default = None
        self.token_delay = 0.0

    @property
    def pending(self) -> int:
        """How many queued entries have not been served yet."""
        with self._lock:
            return len(self._queue)

    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded requests to the chat completions endpoint."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- used by the handler -----------------------------------------------------------------------------------

    def _record(self, method: str, path: str, headers: dict[str, str], body: dict) -> RecordedRequest:
        record = RecordedRequest(body)
        record.method = method
        record.path = path
        record.headers = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            self.requests.append(record)
        return record

    def _next(self, body: dict, *, faults_only: bool) -> Any:
        with self._lock:
            if self._queue:
                head = self._queue[0]
                if callable(head) and not isinstance(head, FAULTS):
                    if faults_only:
                        return None
                    self._queue.popleft()
                    entry = head
                elif faults_only and not isinstance(head, FAULTS):
                    return None
                else:
                    return self._queue.popleft()
            elif faults_only:
                return None
            else:
                entry = self.default if self.default is not None else "stub reply"
        return entry(body) if callable(entry) and not isinstance(entry, FAULTS) else entry

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)


def _content(entry: Any) -> str:
    if isinstance(entry, BaseModel):
        return entry.model_dump_json()
    if isinstance(entry, (dict, list)):
        return json.dumps(entry)
    return str(entry)


class _Handler(BaseHTTPRequestHandler):
    owner: StubOpenAI
    protocol_version = "HTTP/1.1"
    server_version = "StubOpenAI/1.0"

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    # -- routes ------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.owner._record("GET", self.path, dict(self.headers), {})
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                         "owned_by": "stub"}]})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "request body is not JSON")
            return
        self.owner._record("POST", self.path, dict(self.headers), body)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/embeddings"):
            self._embeddings(body)
        else:
            self._error(404, f"no route POST {self.path}")

    # -- endpoints ---------------------------------------------------------------------------------------------

    def _chat(self, body: dict) -> None:
        entry = self.owner._next(body, faults_only=False)
        while isinstance(entry, Delay):
            if self.owner._stopping.wait(entry.seconds):
                self.close_connection = True
                return
            entry = entry.reply
        if callable(entry) and not isinstance(entry, FAULTS):
            entry = entry(body)
        if self._fault(entry):
            return
        stream = bool(body.get("stream"))
        model = body.get("model") or MODEL
        if isinstance(entry, EmptyStream) and stream:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        if isinstance(entry, Truncated):
            if stream:
                self._stream(body, model, words(entry.text)[: entry.after], truncated=True, clean=entry.clean)
            else:
                self._truncated_json(entry)
            return
        text = _content(entry)
        if stream:
            self._stream(body, model, words(text))
            return
        prompt = sum(count_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
        completion = count_tokens(text)
        self._json(200, {
            "id": f"chatcmpl-stub-{len(self.owner.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        })

    def _embeddings(self, body: dict) -> None:
        entry = self.owner._next(body, faults_only=True)
        while isinstance(entry, Delay):
            if self.owner._stopping.wait(entry.seconds):
                self.close_connection = True
                return
            entry = entry.reply if isinstance(entry.reply, FAULTS) else None
        if entry is not None and self._fault(entry):
            return
        if isinstance(entry, Truncated):
            self._truncated_json(entry)
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dims = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        data = []
        for i, text in enumerate(texts):
            vector = fake_embedding(str(text), dims)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(count_tokens(str(t)) for t in texts)
        self._json(200, {"object": "list", "data": data, "model": body.get("model") or "stub-embedding",
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- responses ---------------------------------------------------------------------------------------------

    def _fault(self, entry: Any) -> bool:
        """Send `entry` if it is a status or malformed-body fault; return whether a response was sent."""
        if isinstance(entry, Status):
            headers = {}
            if entry.retry_after is not None:
                headers["Retry-After"] = f"{entry.retry_after:g}"
            self._error(entry.code, entry.message, headers)
            return True
        if isinstance(entry, Malformed):
            self._send(200, entry.body.encode("utf-8"), "application/json")
            return True
        return False

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded"}
        payload = {"error": {"message": message, "type": kind.get(code, "server_error"), "param": None,
                             "code": str(code)}}
        self._send(code, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _json(self, code: int, payload: dict) -> None:
        self._send(code, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _truncated_json(self, entry: Truncated) -> None:
        """Promise a full body, send half of it, then drop the connection."""
        data = json.dumps({"id": "chatcmpl-cut", "object": "chat.completion",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": entry.text}}]})
        payload = data.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        self._drop()

    def _stream(self, body: dict, model: str, deltas: list[str], *, truncated: bool = False,
                clean: bool = False) -> None:
        chunked = not (truncated and clean)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
        self.end_headers()

        ident = f"chatcmpl-stub-{len(self.owner.requests)}"
        created = int(time.time())

        def event(choices: list[dict], usage: dict | None = None) -> bytes:
            chunk: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                                     "model": model, "choices": choices}
            if usage is not None:
                chunk["usage"] = usage
            return b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n"

        def write(data: bytes) -> None:
            if chunked:
                self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
            else:
                self.wfile.write(data)
            self.wfile.flush()

        write(event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        for delta in deltas:
            if self.owner.token_delay and self.owner._stopping.wait(self.owner.token_delay):
                self._drop()
                return
            write(event([{"index": 0, "delta": {"content": delta}, "finish_reason": None}]))
        if truncated:
            self._drop()
            return
        write(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt = sum(count_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
            completion = count_tokens("".join(deltas))
            write(event([], {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}))
        write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture()
def stub_llm() -> Iterator[StubOpenAI]:
    """A running stub OpenAI server for one test; stopped afterwards."""
    stub = StubOpenAI().start()
    try:
        yield stub
    finally:
        stub.stop()
