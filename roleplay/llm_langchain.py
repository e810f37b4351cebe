"""A `ChatModel` on LangChain chat providers that do not speak the OpenAI API (Anthropic, Gemini, Bedrock, Ollama).

`ROLEPLAY_MODEL=provider:model` with a LangChain provider prefix (`anthropic:claude-sonnet-4-5`) selects it through
`chat_model_from_settings`; `openai:` and bare names keep the OpenAI-compatible client. LangChain and the provider
package are imported when the adapter is built, never on `import roleplay`. Retries, deadlines, `max_tokens`
defaults, the one correction re-ask and the errors follow `roleplay.llm.OpenAIChatModel`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from roleplay import llm
from roleplay.call_limits import CallLimitExceeded, CallLimits, limit_in
from roleplay.errors import ConfigError, ProviderError, RoleplayError
from roleplay.llm import ChatModel, ChatReply, ChatStream, GenerationSettings, Message, StructuredMode, StructuredReply
from roleplay.model_calls import RetryingCalls
from roleplay.retry import Failure, RetryPolicy
from roleplay.retry import retry_after as parse_retry_after

if TYPE_CHECKING:
    from roleplay.config import Settings

__all__ = ["PROVIDERS", "LangChainChatModel", "chat_model_from_settings", "endpoint_label", "langchain_provider"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

PROVIDERS: dict[str, str] = {
    "anthropic": "langchain-anthropic", "bedrock": "langchain-aws", "bedrock_converse": "langchain-aws",
    "cohere": "langchain-cohere", "deepseek": "langchain-deepseek", "fireworks": "langchain-fireworks",
    "google_genai": "langchain-google-genai", "google_vertexai": "langchain-google-vertexai", "groq": "langchain-groq",
    "mistralai": "langchain-mistralai", "nvidia": "langchain-nvidia-ai-endpoints", "ollama": "langchain-ollama",
    "openai": "langchain-openai", "perplexity": "langchain-perplexity", "together": "langchain-together",
    "xai": "langchain-xai",
}
"""LangChain provider prefixes a `ROLEPLAY_MODEL` may start with, and the package each needs."""

_EXTRA = 'pip install -e ".[langchain]"'
_PER_CALL_TIMEOUT = frozenset({"anthropic", "openai"})  # their SDKs take a `timeout` per request
_REPORTS_STOP = frozenset({"anthropic", "openai"})  # their streams always end with a stop reason
_STOP_KEYS = ("finish_reason", "stop_reason", "done_reason", "stopReason")
_MODES: dict[str, StructuredMode] = {"function_calling": "tool_calling", "json_schema": "json_schema",
                                     "json_mode": "json_object"}
_MODELS_KEPT = 16


def langchain_provider(model: str) -> str | None:
    """The LangChain provider a `ROLEPLAY_MODEL` selects (`anthropic` for `anthropic:claude-...`), else None.

    `openai:` is not one: it names the OpenAI-compatible client.
    """
    prefix, colon, _ = model.partition(":")
    return prefix if colon and prefix in PROVIDERS and prefix != "openai" else None


def chat_model_from_settings(settings: Settings) -> ChatModel:
    """The model client the settings ask for: the LangChain adapter for a provider prefix, else the OpenAI client.

    Raises:
        ConfigError: The endpoint is not configured, an option is invalid or the provider package is missing.
    """
    if langchain_provider(settings.model):
        return LangChainChatModel.from_settings(settings)
    if settings.model.startswith("openai:"):
        settings = settings.model_copy(update={"model": settings.model.removeprefix("openai:")})
    return llm.OpenAIChatModel.from_settings(settings)


def endpoint_label(model: str, base_url: str | None) -> str:
    """Which model answers and where, for people: `claude-sonnet-4-5 (anthropic, via LangChain)`."""
    provider = langchain_provider(model)
    if provider is None:
        return f"{model.removeprefix('openai:')} at {base_url or 'the OpenAI API'}"
    return f"{model.partition(':')[2]} ({provider}, via LangChain{f' at {base_url}' if base_url else ''})"


class _Truncated(Exception):
    """A stream ended without a stop reason."""


class _Refused(Exception):
    """The provider refused the structured-output method (no tool calling or schema support)."""


class LangChainChatModel(RetryingCalls, ChatModel):
    """A `ChatModel` on a LangChain chat provider, built with `init_chat_model("provider:model")`.

    Every request is retried on timeouts, connection errors, 408, 429, 529 and 5xx with the shared backoff policy
    (`roleplay.retry`; the provider SDK's own retries are off); 400, 401, 403 and 404 fail at once. Failures raise
    `ProviderError` with the fix in one line.
    """

    name = "llm"

    def __init__(self, *, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, backoff_base: float = 0.5, backoff_max: float = 20.0,
                 retry_after_max: float = 30.0, structured_mode: str = "json_schema", deadline: float | None = None,
                 reply_max_tokens: int | None = None, structured_max_tokens: int | None = None) -> None:
        """Create the adapter and the provider's chat model (no request is made).

        Args:
            model: `provider:model`, e.g. `anthropic:claude-sonnet-4-5` or `ollama:llama3.2`.
            base_url: The provider's API root (a proxy, a local server or a test stub); None for its default.
            api_key: The provider's key; None to let the provider read its own variable (e.g. ANTHROPIC_API_KEY).
            timeout: Seconds before one request counts as timed out; the other limits and the backoff are as for
                `roleplay.llm.OpenAIChatModel`.
            structured_mode: "prompt" puts the schema in the prompt and parses the reply text; any other value
                uses the provider's own structured output (tool calling for Anthropic and Bedrock, a JSON schema
                for OpenAI, Gemini and Ollama). A provider that refuses it is asked in "prompt" from then on.

        Raises:
            ConfigError: The model names no known provider, an option is invalid, or LangChain or the provider's
                package is not installed.
        """
        provider, _, name = model.partition(":")
        if provider not in PROVIDERS or not name:
            raise ConfigError(f"ROLEPLAY_MODEL={model!r} names no LangChain provider; write provider:model with one "
                              f"of {', '.join(sorted(PROVIDERS))}, e.g. anthropic:claude-sonnet-4-5")
        if timeout <= 0:
            raise ConfigError(f"ROLEPLAY_TIMEOUT={timeout!r} must be a positive number of seconds")
        if max_retries < 0:
            raise ConfigError(f"ROLEPLAY_MAX_RETRIES={max_retries!r} must be 0 or more")
        if deadline is not None and deadline <= 0:
            raise ConfigError(f"ROLEPLAY_DEADLINE={deadline!r} must be a positive number of seconds")
        self.provider, self.model = provider, name
        self.base_url, self._api_key = base_url, api_key
        self.timeout, self.deadline = float(timeout), deadline
        self.reply_max_tokens, self.structured_max_tokens = reply_max_tokens, structured_max_tokens
        self.retry = RetryPolicy(max_retries=int(max_retries), backoff_base=float(backoff_base),
                                 backoff_max=float(backoff_max), retry_after_max=float(retry_after_max))
        self._models: dict[tuple[float, int | None], Any] = {}
        default = self._chat_model(llm.DEFAULT_GENERATION)
        method = inspect.signature(type(default).with_structured_output).parameters.get("method")
        native = method.default if method is not None and isinstance(method.default, str) else "function_calling"
        self.structured_mode: StructuredMode = "prompt" if structured_mode == "prompt" else _MODES.get(
            native, "tool_calling")
        self._method = native

    @classmethod
    def from_settings(cls, settings: Settings) -> LangChainChatModel:
        """Build the adapter from roleplay settings (model, endpoint, key, timeout, retries, deadline, token limits).

        Raises:
            ConfigError: As for the constructor.
        """
        return cls(model=settings.model, base_url=settings.base_url, api_key=settings.api_key,
                   timeout=settings.timeout, max_retries=settings.max_retries,
                   structured_mode=settings.structured_mode.value, deadline=settings.deadline,
                   reply_max_tokens=settings.max_reply_tokens, structured_max_tokens=settings.max_grade_tokens)

    def close(self) -> None:
        """Drop the provider models (their HTTP clients are shared by the provider package)."""
        self._models.clear()

    def __repr__(self) -> str:
        return f"LangChainChatModel(model={f'{self.provider}:{self.model}'!r}, base_url={self.base_url!r})"

    # -- public API ------------------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> ChatReply:
        """Return the complete reply to `messages`.

        Raises:
            ProviderError: The provider failed (after retries where they make sense).
        """
        gen = _sized(gen, self.reply_max_tokens)
        limits = CallLimits.start(self.deadline, gen.max_tokens)

        def call() -> ChatReply:
            message = self._chat_model(gen).invoke(_body(messages), stop=gen.stop, **self._per_call(gen, limits))
            meta = message.response_metadata or {}
            return ChatReply(message.text, *_usage(message), str(meta.get("model_name") or self.model),
                             message.model_dump_json())

        return self._with_retries(f"chat request to {self.provider} model {self.model!r}", call, limits=limits)

    def stream(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> ChatStream:
        """Stream the reply to `messages` as text deltas (sent on the first `next()`).

        Failures before the first delta are retried like `chat`; once text has been delivered a failure raises
        `ProviderError` ("stream interrupted ...") so a truncated reply is never taken for a complete one.

        Raises:
            ProviderError: While iterating, when the provider fails or the stream breaks.
        """
        out = ChatStream(self.model)
        out._iterator = self._deltas(_body(messages), _sized(gen, self.reply_max_tokens), out)
        return out

    def structured(self, messages: Sequence[Message], schema: type[M],
                   gen: GenerationSettings | None = None) -> StructuredReply[M]:
        """Ask for a reply matching a pydantic model with `with_structured_output` and return it parsed.

        When the provider's parser finds nothing usable, the reply text is parsed as JSON (`parse_json_model`); a
        reply that is still invalid gets one short correction naming the problem, and a second failure raises.

        Raises:
            ProviderError: The provider failed, or both replies were unusable (`last_reply` holds the second).
        """
        gen = _sized(gen, self.structured_max_tokens)
        limits = CallLimits.start(self.deadline, gen.max_tokens)
        schema_json = llm._schema_of(schema)
        while True:
            mode = self.structured_mode
            try:
                return self._structured_in(mode, messages, schema, schema_json, gen, limits)
            except _Refused as refused:
                log.warning("%s model %r refuses structured output by %s (%s); using the prompt from now on",
                            self.provider, self.model, mode, refused)
                self.structured_mode = "prompt"

    # -- requests ----------------------------------------------------------------------------------------------

    def _chat_model(self, gen: GenerationSettings) -> Any:
        """The provider's chat model for these sampling settings, built once (the provider's retries off)."""
        key = (gen.temperature, gen.max_tokens)
        built = self._models.get(key)
        if built is None:
            built = _init(self.provider, self.model, self._options(gen))
            if len(self._models) >= _MODELS_KEPT:
                self._models.pop(next(iter(self._models)))
            self._models[key] = built
        return built

    def _options(self, gen: GenerationSettings) -> dict[str, Any]:
        """`init_chat_model` options in the names this provider takes."""
        options: dict[str, Any] = {"temperature": gen.temperature}
        if self.provider == "ollama":
            options["client_kwargs"] = {"timeout": self.timeout}
            if gen.max_tokens is not None:
                options["num_predict"] = gen.max_tokens
        else:
            options["max_retries"] = 0
            options["timeout"] = math.ceil(self.timeout) if self.provider.startswith("bedrock") else self.timeout
            if gen.max_tokens is not None:
                options["max_tokens"] = gen.max_tokens
        if self.provider == "openai":
            options["stream_usage"] = True
            if self.base_url and gen.max_tokens is not None:
                # langchain-openai sends the limit as max_completion_tokens, which OpenAI-compatible servers such as
                # llama.cpp's ignore: send max_tokens as well
                options["extra_body"] = {"max_tokens": gen.max_tokens}
        if self.base_url:
            options["base_url"] = self.base_url
        if self._api_key:
            options["api_key"] = self._api_key
        return options

    def _per_call(self, gen: GenerationSettings, limits: CallLimits) -> dict[str, Any]:
        """Request options for one attempt: a timeout shortened to the deadline, and the seed, where supported."""
        limits.check_time()
        options: dict[str, Any] = {}
        if self.provider in _PER_CALL_TIMEOUT:
            remaining = limits.remaining()
            options["timeout"] = self.timeout if remaining is None else max(min(self.timeout, remaining), 0.001)
        if self.provider == "openai" and gen.seed is not None:
            options["seed"] = gen.seed
        return options

    def _structured_in(self, mode: StructuredMode, messages: Sequence[Message], schema: type[M],
                       schema_json: dict[str, Any], gen: GenerationSettings, limits: CallLimits) -> StructuredReply[M]:
        """One structured call in `mode`: a reply, one short correction if it is unusable, then give up."""
        convo: list[Message] = list(messages)
        if mode == "prompt":
            convo = llm._with_system_note(convo, llm._schema_instruction(schema_json))
        what = f"structured request to {self.provider} model {self.model!r}"
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        problem = text = ""
        for attempt in (1, 2):
            ask = functools.partial(self._ask, mode, convo, schema_json, gen, limits)
            message, parsed = self._with_retries(what, ask, limits=limits)
            prompt, completion = _usage(message)
            prompt_tokens, completion_tokens = llm._add(prompt_tokens, prompt), llm._add(completion_tokens, completion)
            called = isinstance(parsed, dict) and bool(getattr(message, "tool_calls", None))
            text = json.dumps(parsed, ensure_ascii=False) if called or not message.text else message.text
            try:
                if isinstance(parsed, dict):
                    value = schema.model_validate(parsed)
                else:
                    value = llm.parse_json_model(text, schema)
            except ValueError as exc:  # json.JSONDecodeError and pydantic.ValidationError are ValueErrors
                problem = llm._describe_invalid(exc)
                log.info("reply is not a valid %s in mode %s (%s); %s", schema.__name__, mode, problem,
                         "asking again" if attempt == 1 else "giving up")
            else:
                return StructuredReply(value, text, prompt_tokens, completion_tokens, attempt, mode)
            convo = llm._with_correction(convo, llm._correction(problem, schema_json))
        raise ProviderError(f"{self.provider} model {self.model!r} did not return a valid {schema.__name__} twice "
                            f"(mode {mode}): {problem}; try a stronger ROLEPLAY_MODEL",
                            attempts=2, status=None, last_reply=text)

    def _ask(self, mode: StructuredMode, convo: list[Message], schema_json: dict[str, Any], gen: GenerationSettings,
             limits: CallLimits) -> tuple[Any, object]:
        """One request: the provider's message and what its structured-output parser made of it (None: nothing)."""
        chat = self._chat_model(gen)
        if mode == "prompt":
            return chat.invoke(_body(convo), stop=gen.stop, **self._per_call(gen, limits)), None
        limits.check_time()
        runnable = chat.with_structured_output(copy.deepcopy(schema_json), include_raw=True, method=self._method)
        try:
            out = runnable.invoke(_body(convo))
        except Exception as exc:
            if _refuses_method(exc):
                raise _Refused(_said(exc)) from exc
            raise
        return out["raw"], out.get("parsed")

    def _deltas(self, body: list[dict[str, str]], gen: GenerationSettings, out: ChatStream) -> Iterator[str]:
        limits = CallLimits.start(self.deadline, gen.max_tokens)

        def interrupted(delivered: int, exc: Exception, failure: Failure) -> str:
            return (f"stream interrupted after {delivered} characters of the reply from {self.provider} model "
                    f"{self.model!r} ({failure.hint}); the reply is incomplete")

        yield from self._streamed(f"streamed chat request to {self.provider} model {self.model!r}",
                                  lambda lim: self._stream_once(body, gen, out, lim), out, limits, interrupted)

    def _stream_once(self, body: list[dict[str, str]], gen: GenerationSettings, out: ChatStream,
                     limits: CallLimits) -> Iterator[str]:
        chunks = self._chat_model(gen).stream(body, stop=gen.stop, **self._per_call(gen, limits))
        out.prompt_tokens = out.completion_tokens = None
        finished, size = False, 0
        try:
            for chunk in chunks:
                limits.check_time()
                text = chunk.text
                if text:
                    size += len(text.encode("utf-8"))
                    if size > limits.max_bytes:
                        raise CallLimitExceeded("size", limits)
                    yield text
                prompt, completion = _usage(chunk)
                out.prompt_tokens, out.completion_tokens = (llm._add(out.prompt_tokens, prompt),
                                                            llm._add(out.completion_tokens, completion))
                meta = chunk.response_metadata or {}
                finished = finished or any(meta.get(key) for key in _STOP_KEYS)
                if meta.get("model_name"):
                    out.model = str(meta["model_name"])
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not finished and self.provider in _REPORTS_STOP:
            raise _Truncated("the stream ended without a stop reason")

    # -- retries and errors ------------------------------------------------------------------------------------

    def _classify(self, exc: BaseException) -> Failure | None:
        """Say whether and how `exc` is retried; None for exceptions that are not the provider's doing."""
        if not isinstance(exc, Exception) or isinstance(exc, (RoleplayError, _Refused)):
            return None
        exceeded = limit_in(exc)
        if exceeded is not None:
            return Failure(False, None, None, exceeded.describe(self.model))
        where = self.base_url or f"the {self.provider} API"
        if isinstance(exc, _Truncated):
            return Failure(True, None, None, f"{exc}; check the provider's status or raise ROLEPLAY_TIMEOUT")
        names = " ".join(cls.__name__ for cls in type(exc).__mro__)
        if "Timeout" in names:
            return Failure(True, None, None, f"no answer within {self.timeout:g}s; raise ROLEPLAY_TIMEOUT or check "
                                             f"whether {where} is overloaded")
        if "ConnectionError" in names or "ConnectError" in names:
            return Failure(True, None, None, f"connection to {where} failed ({_said(exc)}); check ROLEPLAY_BASE_URL "
                                             "and that the server is running and reachable")
        if "ContextOverflow" in names:
            return Failure(False, None, None, f"the conversation is longer than model {self.model!r} takes "
                                              f"({_said(exc)}); use a model with a longer context")
        status = _status_of(exc)
        if status is None:
            return Failure(False, None, None, f"{type(exc).__name__}: {_said(exc)}")
        said = f" (server said: {_said(exc)})"
        key = ("the AWS credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)"
               if self.provider.startswith("bedrock") else "ROLEPLAY_API_KEY")
        hints = {
            401: f"{self.provider} rejected the API key (401){said}; check {key}",
            403: f"the key may not use {self.provider} model {self.model!r} (403){said}; check {key}",
            404: f"not found (404){said}; check the model name ROLEPLAY_MODEL={self.provider}:{self.model}"
                 + (" and ROLEPLAY_BASE_URL" if self.base_url else ""),
            408: f"{where} timed out (408){said}; raise ROLEPLAY_TIMEOUT",
            429: f"rate limited (429){said}; check the account's rate limits and quota, or raise ROLEPLAY_MAX_RETRIES",
            529: f"{self.provider} is overloaded (529){said}; try again later or raise ROLEPLAY_MAX_RETRIES",
        }
        hint = hints.get(status) or (f"{where} failed with HTTP {status}{said}; check the provider's status"
                                     if status >= 500 else f"{where} rejected the request with HTTP {status}{said}")
        retryable = status in (408, 429) or status >= 500
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return Failure(retryable, status, parse_retry_after(headers) if retryable and headers else None, hint)


# -- helpers -----------------------------------------------------------------------------------------------------


def _init(provider: str, model: str, options: dict[str, Any]) -> Any:
    """`init_chat_model` with missing packages and refused options turned into one-line `ConfigError`s."""
    package = PROVIDERS[provider]
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ConfigError(f"ROLEPLAY_MODEL={provider}:{model} needs LangChain, which is not installed; "
                          f"{_EXTRA}" + ("" if provider in ("anthropic", "openai") else f" and pip install {package}")
                          ) from None
    try:
        return init_chat_model(f"{provider}:{model}", **options)
    except ImportError:
        raise ConfigError(f"ROLEPLAY_MODEL={provider}:{model} needs {package}, which is not installed; "
                          f"{_EXTRA} and pip install {package}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the {provider} provider refused its settings ({' '.join(str(exc).split())[:300]}); "
                          "check ROLEPLAY_BASE_URL, ROLEPLAY_API_KEY and the provider's own variables") from None


def _refuses_method(exc: BaseException) -> bool:
    """Whether an error refuses the structured-output method itself (tools, a response format or a schema), with
    whatever status the server picked (llama.cpp answers 500 for a response format it does not take)."""
    status = _status_of(exc)
    if status in (None, 401, 403, 404, 408, 429):
        return False
    said = _said(exc).lower()
    if status == 400:
        return any(w in said for w in ("tool", "format", "schema"))
    return any(w in said for w in ("response_format", "json_schema", "tool_choice", "tools"))


def _sized(gen: GenerationSettings | None, default_max_tokens: int | None) -> GenerationSettings:
    """`gen` (or the defaults) with `max_tokens` set to the default for this kind of call if unset."""
    gen = gen or llm.DEFAULT_GENERATION
    if gen.max_tokens is None and default_max_tokens is not None:
        return gen.model_copy(update={"max_tokens": default_max_tokens})
    return gen


def _body(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [dict(m) for m in messages]


def _usage(message: Any) -> tuple[int | None, int | None]:
    """Input and output tokens a LangChain message reports (None when it reports none)."""
    usage = getattr(message, "usage_metadata", None) or {}
    return llm._int_or_none(usage.get("input_tokens")) or None, llm._int_or_none(usage.get("output_tokens"))


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status an SDK error carries (`status_code`, Google's `code`, botocore's response metadata)."""
    for value in (getattr(exc, "status_code", None), getattr(exc, "code", None)):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if response.get("Error", {}).get("Code") == "ThrottlingException":
            return 429
        return status if isinstance(status, int) else None
    return None


def _said(exc: BaseException) -> str:
    """The provider's own error message, on one line and short."""
    body = getattr(exc, "body", None)
    message: object = None
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
    text = " ".join(str(message or getattr(exc, "message", None) or exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")
