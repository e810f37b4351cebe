"""A lean OpenAI-compatible stub for benchmarks, run as its own process on 127.0.0.1.

Why not `tests/stub_openai.py`: that stub runs inside the measuring process (its threads compete with the client
for the GIL), serialises every chunk with `json.dumps` while the client waits, keeps every request body, and leaves
Nagle's algorithm on, so small SSE writes can wait for a delayed ACK. `run.py` measures the difference and prints it.
This one pre-encodes the stream, sets TCP_NODELAY like production servers do, keeps only counters, and runs in a
separate process, so the client's timings are the client's.

Protocol (enough for the `openai` SDK):
  POST /v1/chat/completions   streamed SSE (with a usage chunk when asked) or a JSON completion
  GET  /v1/models
Control (for the benchmark driver):
  POST /_bench/config   {"text": str, "token_delay": s, "latency": s, "json_replies": {marker: content}}
  POST /_bench/reset    zero the counters
  GET  /_bench/stats    {"chat_requests": n, "first_chunk": [[seq, t], ...], "now": t}

Timestamps are `time.perf_counter()`, which on Linux is CLOCK_MONOTONIC: the same clock in every process, so the
driver can subtract them from its own readings (`run.py` checks this at start).

Usage: python stub_server.py [--max-seconds N]   (prints "PORT <n>"; exits when stdin closes or after N seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stub-model"


class State:
    """Configuration and counters shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chat_requests = 0
        self.first_chunk: deque[tuple[int, float]] = deque(maxlen=5000)
        self.configure({})

    def configure(self, cfg: dict[str, Any]) -> None:
        text = str(cfg.get("text") or "stub reply")
        deltas = re.findall(r"^\s+|\S+\s*", text)
        with self.lock:
            self.text = text
            self.token_delay = float(cfg.get("token_delay") or 0.0)
            self.latency = float(cfg.get("latency") or 0.0)
            self.json_replies: dict[str, str] = dict(cfg.get("json_replies") or {})
            self.completion_tokens = len(deltas)
            self.role_event = _event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None}])
            self.delta_events = [_event([{"index": 0, "delta": {"content": d}, "finish_reason": None}])
                                 for d in deltas]
            self.finish_event = _event([{"index": 0, "delta": {}, "finish_reason": "stop"}])


def _event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    chunk: dict[str, Any] = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                             "model": MODEL, "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


STATE = State()


class Server(ThreadingHTTPServer):
    """One thread per connection; a deep accept backlog so bursts of 50+ clients are never refused or delayed."""

    request_queue_size = 1024
    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BenchStub/1.0"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def _send_json(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/_bench/stats":
            with STATE.lock:
                payload = {"chat_requests": STATE.chat_requests, "first_chunk": list(STATE.first_chunk)[-1000:]}
            payload["now"] = time.perf_counter()
            self._send_json(200, payload)
        elif path.endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                              "owned_by": "bench"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route GET {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._body()
        if path.endswith("/chat/completions"):
            self._chat(body)
        elif path == "/_bench/config":
            STATE.configure(body)
            self._send_json(200, {"ok": True})
        elif path == "/_bench/reset":
            with STATE.lock:
                STATE.chat_requests = 0
                STATE.first_chunk.clear()
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": {"message": f"no route POST {self.path}", "type": "invalid_request_error"}})

    def _chat(self, body: dict[str, Any]) -> None:
        with STATE.lock:
            STATE.chat_requests += 1
            seq = STATE.chat_requests
            latency, token_delay = STATE.latency, STATE.token_delay
            role, deltas, finish = STATE.role_event, STATE.delta_events, STATE.finish_event
            text, replies, completion = STATE.text, STATE.json_replies, STATE.completion_tokens
        messages = body.get("messages") or []
        prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4
        if latency:
            time.sleep(latency)
        if not body.get("stream"):
            content = text
            first = str(messages[0].get("content") or "") if messages else ""
            for marker, reply in replies.items():
                if marker in first:
                    content = reply
                    break
            done = len(content) // 4
            self._send_json(200, {
                "id": f"chatcmpl-bench-{seq}", "object": "chat.completion", "created": 0, "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done},
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        write = self.wfile.write
        write(b"%x\r\n%s\r\n" % (len(role), role))
        for i, event in enumerate(deltas):
            if token_delay:
                time.sleep(token_delay)
            if i == 0:
                sent = time.perf_counter()
                with STATE.lock:
                    STATE.first_chunk.append((seq, sent))
            write(b"%x\r\n%s\r\n" % (len(event), event))
        tail = finish
        if (body.get("stream_options") or {}).get("include_usage"):
            tail += _event([], {"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion})
        tail += b"data: [DONE]\n\n"
        write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long whatever happens")
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    killer = threading.Timer(args.max_seconds, lambda: os._exit(3))
    killer.daemon = True
    killer.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the driver closes our stdin to stop us
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
