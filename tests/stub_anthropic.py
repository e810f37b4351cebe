"""A scriptable stub of the Anthropic Messages API on 127.0.0.1 for tests.

`POST /v1/messages` answers with a message (JSON) or, when the request asks for a stream, server-sent events in the
API's shapes: `message_start`, `content_block_start`, `ping`, `content_block_delta`, `content_block_stop`,
`message_delta` (with the stop reason and output usage) and `message_stop`. Errors carry Anthropic's error body
(`{"type": "error", "error": {"type": ..., "message": ...}}`), e.g. 401 `authentication_error` or 529
`overloaded_error`.

Replies come from a queue; each entry is one of:

* `str`: a text reply (streamed word by word when a stream is asked for);
* `dict`, `list` or a pydantic model: when the request offers tools, a `tool_use` block calling the forced (or
  first) tool with it as input, as a model answering with a tool call does; otherwise its JSON as text;
* `ToolUse(input, name)`: a `tool_use` block with exactly this input;
* `Status(code, retry_after=..., message=...)`, `Delay(seconds, reply)`, `Truncated(text, after)` from
  `stub_openai`: an HTTP error, a late answer, a reply cut off (a stream before `message_stop`);
* a callable `(request_json) -> entry`, evaluated when the entry is served.

When the queue is empty the `default` responder answers, or a fixed text.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel
from stub_openai import Delay, RecordedRequest, Status, Truncated, count_tokens, words

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


@dataclass(frozen=True)
class ToolUse:
    """Answer with one `tool_use` block; `name` defaults to the tool the request forces (or its first tool)."""

    input: Any
    name: str | None = None


class StubAnthropic:
    """The server, its reply queue and its request log.

    Attributes:
        base_url: `http://127.0.0.1:PORT` (the API root; the SDK adds `/v1/messages`).
        requests: Every request received, in arrival order.
        default: Responder used when the queue is empty: `(request_json) -> entry`, or None for a fixed text.
        token_delay: Seconds to wait before each streamed delta.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default: Callable[[dict], Any] | None = None
        self.token_delay = 0.0
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> StubAnthropic:
        """Bind an ephemeral port on 127.0.0.1 and serve in a background thread."""
        stub = self

        class Handler(_Handler):
            owner = stub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._stopping.clear()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
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

    def queue(self, *entries: Any) -> None:
        """Append reply entries; each request consumes one."""
        with self._lock:
            self._queue.extend(entries)

    @property
    def pending(self) -> int:
        """How many queued entries have not been served yet."""
        with self._lock:
            return len(self._queue)

    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded requests to the messages endpoint."""
        return [r for r in self.requests if r.path.split("?", 1)[0].endswith("/messages")]

    def _record(self, path: str, headers: dict[str, str], body: dict) -> None:
        record = RecordedRequest(body)
        record.method = "POST"
        record.path = path
        record.headers = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            self.requests.append(record)

    def _next(self, body: dict) -> Any:
        with self._lock:
            entry = self._queue.popleft() if self._queue else (self.default or "stub reply")
        return entry(body) if callable(entry) and not isinstance(entry, (Status, Delay, Truncated)) else entry

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)


def _forced_tool(body: dict) -> str | None:
    """The tool a request forces with `tool_choice`, else its first tool, else None."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool" and choice.get("name"):
        return str(choice["name"])
    tools = body.get("tools") or []
    return str(tools[0]["name"]) if tools else None


def _blocks(entry: Any, body: dict) -> list[dict[str, Any]]:
    """The content blocks of a reply entry."""
    if isinstance(entry, BaseModel):
        entry = entry.model_dump(mode="json")
    if isinstance(entry, ToolUse):
        return [{"type": "tool_use", "id": "toolu_stub", "name": entry.name or _forced_tool(body) or "tool",
                 "input": entry.input}]
    if isinstance(entry, (dict, list)):
        tool = _forced_tool(body)
        if tool is not None:
            return [{"type": "tool_use", "id": "toolu_stub", "name": tool, "input": entry}]
        return [{"type": "text", "text": json.dumps(entry)}]
    return [{"type": "text", "text": str(entry)}]


def _prompt_tokens(body: dict) -> int:
    system = body.get("system") or ""
    texts = [system] if isinstance(system, str) else [b.get("text", "") for b in system]
    for message in body.get("messages", []):
        content = message.get("content")
        texts.extend([content] if isinstance(content, str) else [b.get("text", "") for b in content or []])
    return sum(count_tokens(t) for t in texts)


class _Handler(BaseHTTPRequestHandler):
    owner: StubAnthropic
    protocol_version = "HTTP/1.1"
    server_version = "StubAnthropic/1.0"

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) if length else b"{}")
        except ValueError:
            self._error(400, "request body is not JSON")
            return
        self.owner._record(self.path, dict(self.headers), body)
        if not self.path.split("?", 1)[0].rstrip("/").endswith("/v1/messages"):
            self._error(404, f"no route POST {self.path}")
            return
        entry = self.owner._next(body)
        while isinstance(entry, Delay):
            if self.owner._stopping.wait(entry.seconds):
                self.close_connection = True
                return
            entry = entry.reply
        if isinstance(entry, Status):
            headers = {"retry-after": f"{entry.retry_after:g}"} if entry.retry_after is not None else {}
            self._error(entry.code, entry.message, headers)
            return
        model = body.get("model") or "claude-stub"
        if isinstance(entry, Truncated):
            if body.get("stream"):
                self._stream(model, [{"type": "text", "text": ""}], words(entry.text)[: entry.after], body,
                             truncated=True)
            else:
                self._cut(json.dumps({"type": "message", "content": [{"type": "text", "text": entry.text}]}))
            return
        blocks = _blocks(entry, body)
        if body.get("stream"):
            deltas = words(blocks[0]["text"]) if blocks[0]["type"] == "text" else [json.dumps(blocks[0]["input"])]
            self._stream(model, blocks, deltas, body)
            return
        output = sum(count_tokens(b["text"]) if b["type"] == "text" else count_tokens(json.dumps(b["input"]))
                     for b in blocks)
        self._send(200, json.dumps({
            "id": f"msg_stub_{len(self.owner.requests)}", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": "tool_use" if blocks[0]["type"] == "tool_use" else "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": _prompt_tokens(body), "output_tokens": output},
        }).encode("utf-8"), "application/json")

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        payload = {"type": "error", "error": {"type": ERROR_TYPES.get(code, "api_error"), "message": message}}
        self._send(code, json.dumps(payload).encode("utf-8"), "application/json",
                   {"request-id": "req_stub", **(headers or {})})

    def _send(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, model: str, blocks: list[dict[str, Any]], deltas: list[str], body: dict, *,
                truncated: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(kind: str, data: dict[str, Any]) -> None:
            payload = f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()
            self.wfile.write(f"{len(payload):x}\r\n".encode("ascii") + payload + b"\r\n")
            self.wfile.flush()

        block = blocks[0]
        tool = block["type"] == "tool_use"
        event("message_start", {"message": {
            "id": f"msg_stub_{len(self.owner.requests)}", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": _prompt_tokens(body), "output_tokens": 1}}})
        event("content_block_start", {"index": 0, "content_block": {**block, "input": {}} if tool
                                      else {"type": "text", "text": ""}})
        event("ping", {})
        for delta in deltas:
            if self.owner.token_delay and self.owner._stopping.wait(self.owner.token_delay):
                self._drop()
                return
            event("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta", "partial_json": delta}
                                          if tool else {"type": "text_delta", "text": delta}})
        if truncated:
            self._drop()
            return
        event("content_block_stop", {"index": 0})
        event("message_delta", {"delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                                "usage": {"input_tokens": _prompt_tokens(body),
                                          "output_tokens": count_tokens("".join(deltas))}})
        event("message_stop", {})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self, payload: str) -> None:
        """Promise a full JSON body, send half of it, then drop the connection."""
        data = payload.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture()
def stub_anthropic() -> Iterator[StubAnthropic]:
    """A running stub of the Anthropic Messages API for one test; stopped afterwards."""
    stub = StubAnthropic().start()
    try:
        yield stub
    finally:
        stub.stop()
