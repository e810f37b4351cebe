"""An OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on purpose, for the model-call limit tests.

The fault is chosen by the first part of the path, so one server serves them all side by side:
`FaultServer.base_url("trickle")` is `http://127.0.0.1:PORT/trickle/v1`. Every fault answers
`POST .../chat/completions`, streamed (server-sent events) when the request asks for a stream, else one JSON body:

* `trickle`: send the headers, then one keep-alive every `interval` seconds (an SSE comment line in a stream, a
  space before the JSON otherwise), `keepalives` times, then a complete reply: a per-read timeout never fires;
* `hang`: read the request and never answer;
* `huge`: a reply of `huge_bytes` bytes of text (in 64 KiB deltas when streamed), ignoring `max_tokens`;
* `cut`: stream `cut_after` deltas, then drop the connection without a finish reason or `[DONE]`.

`events` records, per request, the fault, whether the client went away before the reply was complete, and how many
bytes were sent; `wait_for_events(n)` waits until `n` requests have finished.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

FAULTS = ("trickle", "hang", "huge", "cut")
REPLY = "I know the reports were late. It has been a busy few weeks for me, that is all."


@dataclass
class Event:
    """One request the server answered (or tried to)."""

    fault: str
    stream: bool
    disconnected: bool
    bytes_sent: int
    max_tokens: int | None


class FaultServer:
    """The server and its settings; start it with `start()`, stop it with `stop()`."""

    def __init__(self) -> None:
        self.interval = 0.2
        self.keepalives = 50
        self.huge_bytes = 20_000_000
        self.cut_after = 3
        self.reply: Any = REPLY
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    def base_url(self, fault: str) -> str:
        """The API root for one fault, for a client's `base_url`."""
        assert fault in FAULTS, fault
        return f"http://127.0.0.1:{self.port}/{fault}/v1"

    def start(self) -> FaultServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait_for_events(self, count: int, timeout: float = 30.0) -> list[Event]:
        """The events, once at least `count` requests have finished (or `timeout` seconds have passed)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.02)
        with self._lock:
            return list(self.events)

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)


class _Gone(Exception):
    """The client closed the connection."""


class _Handler(BaseHTTPRequestHandler):
    server_owner: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_owner._lock:
            self.server_owner._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.server_owner._lock:
            self.server_owner._connections.discard(self.connection)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        body = json.dumps({"object": "list", "data": [{"id": "fault-model", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        fault = self.path.strip("/").split("/", 1)[0]
        stream = bool(request.get("stream"))
        self.sent = 0
        disconnected = False
        try:
            getattr(self, f"_{fault}")(stream)
        except _Gone:
            disconnected = True
        self.close_connection = True
        self.server_owner._record(Event(fault, stream, disconnected, self.sent, request.get("max_tokens")))

    # -- writing ---------------------------------------------------------------------------------------------------

    def _start(self, stream: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        self.send_header("Connection", "close")  # the body ends when the connection closes
        self.end_headers()

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _Gone from exc
        self.sent += len(data)

    def _sleep(self, seconds: float) -> None:
        if self.server_owner._stopping.wait(seconds):
            raise _Gone

    def _deltas(self, text: str, size: int) -> Iterator[bytes]:
        for i in range(0, len(text), size):
            yield _chunk({"content": text[i:i + size]}, None)

    def _finish(self, stream: bool, text: str) -> None:
        if stream:
            for part in self._deltas(text, 16):
                self._write(part)
            self._write(_chunk({}, "stop") + b"data: [DONE]\n\n")
        else:
            self._write(json.dumps(_completion(text)).encode())

    # -- faults ------------------------------------------------------------------------------------------------------

    def _trickle(self, stream: bool) -> None:
        owner = self.server_owner
        self._start(stream)
        for _ in range(owner.keepalives):
            self._write(b": keep-alive\n\n" if stream else b" ")
            self._sleep(owner.interval)
        text = owner.reply if isinstance(owner.reply, str) else json.dumps(owner.reply)
        self._finish(stream, text)

    def _hang(self, stream: bool) -> None:
        while True:  # until the client gives up (the socket is read to notice) or the server stops
            self._sleep(0.1)
            self.connection.setblocking(False)
            try:
                if self.connection.recv(1) == b"":
                    raise _Gone
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _Gone from exc
            finally:
                self.connection.setblocking(True)

    def _huge(self, stream: bool) -> None:
        size = self.server_owner.huge_bytes
        self._start(stream)
        if stream:
            block = "x" * 65536
            for _ in range(size // len(block)):
                self._write(_chunk({"content": block}, None))
            self._write(_chunk({}, "stop") + b"data: [DONE]\n\n")
        else:
            self._write(json.dumps(_completion("x" * size)).encode())

    def _cut(self, stream: bool) -> None:
        self._start(stream)
        parts = list(self._deltas(REPLY, 16))
        for part in parts[:self.server_owner.cut_after]:
            self._write(part)
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _chunk(delta: dict[str, Any], finish: str | None) -> bytes:
    body = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0, "model": "fault-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def _completion(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": "fault-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.fixture()
def fault_server() -> Iterator[FaultServer]:
    """A running fault server, stopped after the test."""
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
