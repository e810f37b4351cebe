"""Shared pieces of the benchmarks: isolation, statistics, the stub process, conversation fixtures, result rows."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CHILD_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
             "ANONYMIZED_TELEMETRY": "False", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def isolate() -> Path:
    """Point every writable location at a fresh temp dir (call before importing roleplay or gradio)."""
    sys.dont_write_bytecode = True
    tmp = Path(tempfile.mkdtemp(prefix="roleplay-bench-"))
    for name in list(os.environ):
        if name.startswith("ROLEPLAY_"):
            del os.environ[name]
    if not (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")):
        # keep reading tiktoken encodings from where they are cached now, before the temp dir moves
        os.environ["TIKTOKEN_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "data-gym-cache")
    (tmp / "tmp").mkdir()
    os.environ["TMPDIR"] = str(tmp / "tmp")  # anything that asks tempfile for a place writes inside the run's dir
    tempfile.tempdir = str(tmp / "tmp")
    os.environ.update(CHILD_ENV)
    os.environ.update({
        "ROLEPLAY_DATA_DIR": str(tmp / "data"),
        "ROLEPLAY_ENGINE": "offline",  # sections build their models explicitly; nothing reaches for a real endpoint
        "ROLEPLAY_SCENARIOS_DIR": str(ROOT / "scenarios"),
        "ROLEPLAY_RUBRICS_DIR": str(ROOT / "rubrics"),
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "HF_HOME": str(tmp / "hf"),
        "MPLCONFIGDIR": str(tmp / "mpl"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
    })
    return tmp


# --- statistics ------------------------------------------------------------------------------------------------

def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return pct(values, 50)


def ms(seconds: float, digits: int = 2) -> str:
    return f"{seconds * 1000:.{digits}f} ms"


# --- results -----------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the results table."""

    section: str
    figure: str
    value: str
    goal: str = ""
    verdict: str = ""


@dataclass
class SectionResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, figure: str, value: str, goal: str = "", verdict: str = "") -> None:
        self.rows.append(Row(self.name, figure, value, goal, verdict))

    def line(self, text: str) -> None:
        self.lines.append(text)
        print(f"  {text}", flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- machine -----------------------------------------------------------------------------------------------------

def machine() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"cores: {usable} usable ({cores} online), {cpu}",
        (f"python {platform.python_version()} ({platform.python_implementation()}) on {platform.system()} "
         f"{platform.release()}"),
        (f"openai {v('openai')}, gradio {v('gradio')}, gradio_client {v('gradio_client')}, httpx {v('httpx')}, "
         f"pydantic {v('pydantic')}, SQLAlchemy {v('SQLAlchemy')}, tiktoken {v('tiktoken')}"),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the stub endpoint ---------------------------------------------------------------------------------------

class StubProcess:
    """`stub_server.py` in its own process, with its control API."""

    def __init__(self, max_seconds: float = 900.0) -> None:
        env = {**os.environ, **CHILD_ENV}
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "stub_server.py"), "--max-seconds", str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=tempfile.gettempdir(), text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the stub server did not start (said {line!r})")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root}/v1"
        import httpx

        self._http = httpx.Client(base_url=self.root, timeout=10, trust_env=False)

    def configure(self, text: str = "stub reply", token_delay: float = 0.0, latency: float = 0.0,
                  json_replies: dict[str, str] | None = None) -> None:
        self._http.post("/_bench/config", json={"text": text, "token_delay": token_delay, "latency": latency,
                                                "json_replies": json_replies or {}}).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_bench/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        r = self._http.get("/_bench/stats")
        r.raise_for_status()
        return r.json()

    def clock_check(self) -> float:
        """Check that the stub's perf_counter is this process's clock; returns the worst disagreement in s."""
        worst = 0.0
        for _ in range(5):
            before = time.perf_counter()
            now = self.stats()["now"]
            after = time.perf_counter()
            if not before <= now <= after:
                worst = max(worst, before - now if now < before else now - after)
        return worst

    def stop(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        if hasattr(self, "_http"):
            self._http.close()


def chat_model(base_url: str, **kw: Any) -> Any:
    from roleplay.llm import OpenAIChatModel

    return OpenAIChatModel(model="stub-model", base_url=base_url, api_key="bench", timeout=30,
                           max_retries=kw.pop("max_retries", 0), **kw)


def raw_client(base_url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key="bench", timeout=30, max_retries=0)


# --- a real endpoint (--base-url) ------------------------------------------------------------------------------

ENDPOINT_TIMEOUT = 300.0
"""Seconds per request to a real endpoint: a small CPU model can take minutes to write a grade."""


@dataclass(frozen=True)
class Endpoint:
    """A real OpenAI-compatible endpoint that the persona and grading sections run against instead of the stub.

    Attributes:
        base_url: The API root, such as `http://127.0.0.1:8080/v1`.
        model: The chat model name the endpoint serves.
        api_key: The key sent as a bearer token; None sends a placeholder (local servers).
        structured_mode: The only structured-output mode to grade in; None grades in every mode.
        max_grade_tokens: `max_tokens` of a grading call (the app's ROLEPLAY_MAX_GRADE_TOKENS, 4000 by default).
    """

    base_url: str
    model: str
    api_key: str | None = None
    structured_mode: str | None = None
    max_grade_tokens: int = 4000

    def chat_model(self, **kw: Any) -> Any:
        """An `OpenAIChatModel` on this endpoint, with no retries (a failure is reported, not hidden)."""
        from roleplay.llm import OpenAIChatModel

        return OpenAIChatModel(model=self.model, base_url=self.base_url, api_key=self.api_key or "bench",
                               timeout=ENDPOINT_TIMEOUT, max_retries=kw.pop("max_retries", 0), **kw)

    def raw_client(self) -> Any:
        """The raw `openai` SDK client on this endpoint (the anchor of the persona section)."""
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "bench", timeout=ENDPOINT_TIMEOUT,
                             max_retries=0)

    def describe(self) -> str:
        """Where the figures come from, for the run's header (never the key)."""
        return f"endpoint: {self.base_url}, model {self.model!r}" + (" (API key given)" if self.api_key else "")


def one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception as one short line for the results."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:limit] + ("..." if len(text) > limit else "")


# --- conversation fixtures -------------------------------------------------------------------------------------

PERSONA_REPLY = ("I know the Friday reports slipped, and I'm not happy about it either. It's been a heavy few "
                 "weeks, that's all. I'd rather just get them back on track than go over it again.")
"""A realistic in-character reply (3 sentences, ~35 tokens) that passes the in-character guard."""

LEARNER_LINES = [
    "Hi Sam, thanks for making time to talk today.",
    "I wanted to talk about the Friday client reports.",
    "What's been going on for you over the last few weeks?",
    "It sounds like things have been pretty full on lately.",
    "I've noticed the last two reports came in after the deadline.",
    "That sounds exhausting, honestly.",
    "Tell me more about what a typical week looks like for you at the moment.",
    "So you've been catching up in the evenings.",
    "I really value the work you've done on this account over four years.",
    "How are the mornings going for you?",
    "It seems like you've been carrying a lot on your own.",
    "What would you want me to understand about the last month?",
    "Thank you for telling me that, I appreciate you being honest.",
    "You're worried this will change how people see your work.",
    "How do you feel about the reports right now?",
    "What's the hardest part of the week for you?",
    "I can see why that would make Fridays difficult.",
    "You've always been someone the team relies on.",
    "Is the finance data still arriving late on Thursdays?",
    "How has the client been with you directly?",
    "It sounds like you haven't wanted to make a fuss about it.",
    "What else is taking up your time that I might not see?",
    "So part of you wants to sort this out alone.",
    "I'm curious how the evenings are affecting you.",
    "That must have been a hard few months.",
    "How would you describe your workload compared with last year?",
    "You've been doing this quietly without telling anyone.",
    "What matters most to you about this account?",
    "I hear that you don't want special treatment.",
    "What do you think the client needs to hear from us?",
]
"""30 learner turns: no blame (no walk-out), no next steps (no early success), varied moves."""


def long_scenario(scenario: Any, max_turns: int = 60, budget: int | None = None) -> Any:
    """A copy of `scenario` that lets a conversation run `max_turns` turns (success disabled, same everything else)."""
    levels = scenario.levels.model_copy(update={
        name: getattr(scenario.levels, name).model_copy(update={"max_turns": max_turns})
        for name in ("novice", "intermediate", "expert")})
    end = scenario.end.model_copy(update={"success": scenario.end.success.model_copy(update={"moves_any": []})})
    update: dict[str, Any] = {"levels": levels, "end": end}
    if budget is not None:
        update["token_budget"] = budget
    return scenario.model_copy(update=update)


class TimedModel:
    """Wraps a ChatModel: times every step of its streams (network + SDK + llm.py) and notes the first delta."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "llm")
        self.model = getattr(inner, "model", "model")
        self.reset()

    def reset(self) -> None:
        self.inside = 0.0
        self.calls = 0
        self.first_delta_at: float | None = None
        self.last_messages: list[dict[str, str]] | None = None

    def stream(self, messages: Any, gen: Any = None) -> Iterator[str]:
        self.calls += 1
        self.last_messages = [dict(m) for m in messages]
        t = time.perf_counter()
        inner = self.inner.stream(messages, gen)
        self.inside += time.perf_counter() - t
        return self._iterate(inner)

    def _iterate(self, inner: Any) -> Iterator[str]:
        it = iter(inner)
        while True:
            t = time.perf_counter()
            try:
                delta = next(it)
            except StopIteration:
                self.inside += time.perf_counter() - t
                return
            now = time.perf_counter()
            self.inside += now - t
            if self.first_delta_at is None:
                self.first_delta_at = now
            yield delta

    def chat(self, messages: Any, gen: Any = None) -> Any:
        return self.inner.chat(messages, gen)

    def structured(self, messages: Any, schema: Any, gen: Any = None) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.structured(messages, schema, gen)
        finally:
            self.inside += time.perf_counter() - t
            self.calls += 1


class Snapshot:
    """The state of a Conversation at one turn, restorable any number of times (outside timed regions)."""

    def __init__(self, conv: Any) -> None:
        self.state = conv.state.model_copy(deep=True)
        self.turns = list(conv.transcript.turns)
        self.rng = conv._rng.getstate()

    def restore(self, conv: Any) -> None:
        conv.state = self.state.model_copy(deep=True)
        conv.transcript.turns = list(self.turns)
        conv._rng.setstate(self.rng)



_CONTEXT: list = []


def app_context():  # type: ignore[no-untyped-def]
    """The benchmarks' app context (settings read once from the environment, like the app's)."""
    from roleplay.context import AppContext

    if not _CONTEXT:
        _CONTEXT.append(AppContext())
    return _CONTEXT[0]


def catalog():  # type: ignore[no-untyped-def]
    """The configured scenarios and rubrics."""
    return app_context().catalog
