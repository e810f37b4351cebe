"""A browser tab of the web app without a browser: signs in and runs events through Gradio's queue API
(`/queue/join`, then the `/queue/data` event stream), keeping the values the page holds, as the browser does."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx


class Tab:
    """One tab: a cookie jar, a Gradio session hash and the component values of the page.

    Args:
        root: The app's URL (events go there unless a call names another process's URL).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.cookies = httpx.Cookies()
        self.hash = uuid.uuid4().hex[:12]
        self.values: dict[int, Any] = {}
        self.comps: dict[int, dict[str, Any]] = {}
        self.deps: list[dict[str, Any]] = []
        self.prefix = "/gradio_api"

    def client(self, root: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=root or self.root, cookies=self.cookies, trust_env=False, timeout=120.0)

    def sign_in(self, username: str, password: str) -> None:
        with self.client() as http:
            r = http.post("/login", data={"username": username, "password": password})
            assert r.status_code == 200, r.text
            self.cookies.update(r.cookies)
            cfg = http.get("/config").json()
        self.prefix = cfg.get("api_prefix") or "/gradio_api"
        self.comps = {c["id"]: c for c in cfg["components"]}
        self.values = {cid: (c.get("props") or {}).get("value") for cid, c in self.comps.items()}
        self.deps = cfg["dependencies"]

    def elem(self, elem_id: str) -> int:
        return next(cid for cid, c in self.comps.items() if (c.get("props") or {}).get("elem_id") == elem_id)

    def event(self, elem_id: str, event: str) -> dict[str, Any]:
        target = [self.elem(elem_id), event]
        return next(d for d in self.deps if target in [list(t) for t in d.get("targets", [])])

    def value(self, elem_id: str) -> Any:
        return self.values.get(self.elem(elem_id))

    def call(self, elem_id: str, event: str, root: str | None = None, **overrides: Any) -> list[Any]:
        """Run the event `event` of `#elem_id` (on the app at `root`, this tab's own by default) with the page's values
        (`overrides` by elem_id); returns the final outputs, which the page now holds.

        Raises:
            AssertionError: the event failed.
        """
        from gradio_client.utils import apply_diff

        dep = self.event(elem_id, event)
        data = []
        for cid in dep["inputs"]:
            eid = (self.comps[cid].get("props") or {}).get("elem_id")
            data.append(None if self.comps[cid]["type"] == "state" else overrides.get(eid, self.values.get(cid)))
        with self.client(root) as http:
            r = http.post(f"{self.prefix}/queue/join", json={"data": data, "fn_index": dep["id"],
                                                              "session_hash": self.hash, "event_data": None,
                                                              "trigger_id": dep["targets"][0][0]})
            assert r.status_code == 200, r.text
            event_id = r.json()["event_id"]
            outputs: list[Any] | None = None
            final: dict[str, Any] = {}
            with http.stream("GET", f"{self.prefix}/queue/data", params={"session_hash": self.hash}) as s:
                for line in s.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    msg = json.loads(line[5:])
                    if msg.get("event_id") not in (event_id, None):
                        continue
                    if msg.get("msg") == "process_generating":
                        out = (msg.get("output") or {}).get("data") or []
                        outputs = list(out) if outputs is None else [apply_diff(p, d) for p, d in zip(outputs, out)]
                    elif msg.get("msg") in ("process_completed", "unexpected_error", "close_stream"):
                        final = msg
                        break
        assert final.get("msg") == "process_completed" and final.get("success", True), final
        done = (final.get("output") or {}).get("data")
        outputs = done if done is not None else outputs or []  # a stream ends with its last values, whole
        for cid, value in zip(dep["outputs"], outputs):
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" in value:
                    self.values[cid] = value["value"]
            else:
                self.values[cid] = value
        return outputs
