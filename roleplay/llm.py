"""The one boundary to language models: an OpenAI-compatible chat and embeddings client.

Everything in roleplay that talks to a model goes through `ChatModel` (and `OpenAIChatModel`, its only networked
implementation). This module alone imports `openai`; it adds bounded retries with backoff, streaming that never
returns a silently truncated reply, structured output parsed into pydantic models, and errors that say what to
check.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import logging
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeGuard, TypeVar, runtime_checkable

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roleplay.call_limits import CallLimits, guard_response, limit_in, limited
from roleplay.errors import ConfigError, ContextTooLong, ProviderError
from roleplay.model_calls import RetryingCalls
from roleplay.retry import Failure, RetryPolicy
from roleplay.retry import retry_after as parse_retry_after

if TYPE_CHECKING:
    from roleplay.config import Settings

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_GENERATION",
    "STRUCTURED_MODES",
    "ChatModel",
    "ChatReply",
    "ChatStream",
    "GenerationSettings",
    "Message",
    "OpenAIChatModel",
    "ProviderError",
    "StructuredMode",
    "StructuredReply",
    "parse_json_model",
]

log = logging.getLogger(__name__)

Message = Mapping[str, str]
"""One chat message: `{"role": "system" | "user" | "assistant", "content": "..."}`."""

StructuredMode = Literal["json_schema", "json_object", "prompt", "tool_calling"]  # tool_calling: LangChain providers
STRUCTURED_MODES: tuple[str, ...] = ("json_schema", "json_object", "prompt")


def _is_structured_mode(value: str) -> TypeGuard[StructuredMode]:
    return value in STRUCTURED_MODES


DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
NO_KEY = "not-needed"
EMBED_BATCH = 128
_MISSING_ENDPOINT = (
    "no model endpoint is configured: set ROLEPLAY_API_KEY (and ROLEPLAY_BASE_URL for a non-OpenAI endpoint) "
    "or run offline with ROLEPLAY_ENGINE=offline"
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class GenerationSettings(BaseModel):
    """Sampling parameters for one model call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature; 0 for the most deterministic reply.")
    max_tokens: int | None = Field(None, gt=0, description="Upper bound on reply tokens; None leaves it to the server.")
    seed: int | None = Field(None, description="Seed for servers that support reproducible sampling; None for none.")
    stop: list[str] | None = Field(None, description="Sequences at which the model stops generating; None for none.")


DEFAULT_GENERATION = GenerationSettings()


@dataclass(frozen=True, slots=True)
class ChatReply:
    """One complete chat reply.

    Attributes:
        text: The assistant message content ("" when the server returned none).
        prompt_tokens: Prompt tokens reported by the server's `usage`, or None when it reported none.
        completion_tokens: Completion tokens reported by the server's `usage`, or None.
        model: The model name the server says answered (the requested name when it says nothing).
        raw: The response body exactly as received (JSON text).
    """

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    raw: str


@dataclass(frozen=True, slots=True)
class StructuredReply(Generic[M]):
    """A reply parsed into a pydantic model.

    Attributes:
        parsed: The validated model instance.
        text: The reply text it was parsed from.
        prompt_tokens: Prompt tokens summed over every request made (a re-ask costs a second prompt), or None.
        completion_tokens: Completion tokens summed likewise, or None.
        attempts: 1, or 2 when the first reply was invalid and the model was asked again (a request the endpoint
            refused for its `response_format` is not counted).
        mode: The structured-output mode the endpoint accepted for this reply ("json_schema", "json_object" or
            "prompt"); it differs from the configured mode when the endpoint refused that one.
    """

    parsed: M
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int = 1
    mode: StructuredMode = "json_schema"


class ChatStream(Iterator[str]):
    """The text deltas of one streamed reply, in arrival order.

    Iterate it to receive deltas; once it is exhausted, `text`, `prompt_tokens`, `completion_tokens` and `model`
    describe the whole reply (token counts stay None unless the server reports usage). Closing it early releases
    the connection.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.parts: list[str] = []
        self._iterator: Iterator[str] = iter(())

    def __iter__(self) -> Iterator[str]:
        return self._iterator

    def __next__(self) -> str:
        return next(self._iterator)

    @property
    def text(self) -> str:
        """Everything delivered so far, joined."""
        return "".join(self.parts)

    def close(self) -> None:
        """Stop the stream and release its connection."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


@runtime_checkable
class ChatModel(Protocol):
    """What the persona and the grader need from a model.

    Attributes:
        name: Which kind of model this is ("llm" for a networked endpoint, "offline" for scripted stand-ins).
    """

    name: str

    def chat(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> ChatReply:
        """Return the complete reply to `messages`."""
        ...

    def stream(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> Iterator[str]:
        """Yield the reply to `messages` as text deltas while it is generated."""
        ...

    def structured(self, messages: Sequence[Message], schema: type[M],
                   gen: GenerationSettings | None = None) -> StructuredReply[M]:
        """Return the reply to `messages` parsed and validated as `schema`."""
        ...


class _Malformed(Exception):
    """The endpoint answered 200 with something that is not a usable OpenAI response."""


class _Truncated(Exception):
    """A stream ended without a finish reason."""


class _Refused(Exception):
    """The endpoint refused the way structured output was asked for (its error names `response_format`)."""

    def __init__(self, status: int, said: str) -> None:
        super().__init__(said)
        self.status = status
        self.said = said


_FALLBACK: dict[str, StructuredMode | None] = {"json_schema": "json_object", "json_object": "prompt", "prompt": None}
"""The next structured-output mode to try when the endpoint refuses one."""


class OpenAIChatModel(RetryingCalls, ChatModel):
    """A `ChatModel` and `Embedder` on any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, ...).

    Every request is retried on timeouts, connection errors, 408, 429 and 5xx with exponential backoff and jitter
    (a Retry-After header, when sent, sets the wait, capped), at most `max_retries` times; 400, 401, 403, 404 and
    other client errors fail at once. Failures raise `ProviderError`; a refusal of the prompt as longer than the
    model's context raises its subclass `ContextTooLong` at once, and the window it states is kept in `context_window`.
    """

    name = "llm"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_max: float = 30.0,
        api_version: str | None = None,
        structured_mode: str = "json_schema",
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
        stream_usage: bool = True,
        deadline: float | None = None,
        reply_max_tokens: int | None = None,
        structured_max_tokens: int | None = None,
        context_window: int | None = None,
    ) -> None:
        """Create a client; no request is made until a method is called.

        Args:
            model: Chat model name (the deployment name on Azure).
            base_url: API root such as `http://127.0.0.1:8000/v1`; None for api.openai.com.
            api_key: API key; may be None with a `base_url` (local servers), then a placeholder is sent.
            timeout: Seconds before a request (or a pause inside a stream) counts as timed out.
            max_retries: Retries after the first attempt (0 for none).
            backoff_base: Wait before the first retry in seconds; doubles per retry, with jitter.
            backoff_max: Upper bound on one backoff wait in seconds.
            retry_after_max: Upper bound in seconds on a wait requested by a Retry-After header.
            api_version: Azure OpenAI API version; when set, `base_url` is the Azure endpoint.
            structured_mode: How `structured` first asks for JSON: "json_schema" (response_format with the
                schema), "json_object" (JSON mode with the schema, as llama.cpp-style servers take it, plus the schema
                in the prompt) or "prompt" (the schema in the prompt only). An endpoint that refuses the mode is asked
                in the next one, and the client remembers what it accepts.
            embedding_model: Model name for `embed`.
            stream_usage: Ask streams for a final usage chunk (`stream_options.include_usage`); switched off
                automatically if the endpoint rejects the option.
            deadline: Seconds one call may take in all (every attempt, the waits between them and the streaming);
                None for no overall deadline. A reply is also dropped once it outgrows what its `max_tokens` allows.
            reply_max_tokens: `max_tokens` of `chat` and `stream` calls whose generation settings set none.
            structured_max_tokens: `max_tokens` of `structured` calls whose generation settings set none.
            context_window: The model's context window in tokens (prompt and reply), for callers that fit their
                prompts to it; None to learn it from the first refusal of a prompt as too long (`ContextTooLong`).

        Raises:
            ConfigError: Neither a key nor a base URL is given, or an option is invalid.
        """
        if not _is_structured_mode(structured_mode):
            raise ConfigError(
                f"ROLEPLAY_STRUCTURED_MODE={structured_mode!r} is not valid; use json_schema, json_object or prompt"
            )
        if not base_url and not api_key:
            raise ConfigError(_MISSING_ENDPOINT)
        if timeout <= 0:
            raise ConfigError(f"ROLEPLAY_TIMEOUT={timeout!r} must be a positive number of seconds")
        if max_retries < 0:
            raise ConfigError(f"ROLEPLAY_MAX_RETRIES={max_retries!r} must be 0 or more")
        if deadline is not None and deadline <= 0:
            raise ConfigError(f"ROLEPLAY_DEADLINE={deadline!r} must be a positive number of seconds")
        if context_window is not None and context_window <= 0:
            raise ConfigError(f"ROLEPLAY_CONTEXT_WINDOW={context_window!r} must be a positive number of tokens")
        self.model = model
        self.deadline = deadline
        self.reply_max_tokens = reply_max_tokens
        self.structured_max_tokens = structured_max_tokens
        self.configured_context_window = context_window
        self.context_window = context_window  # lowered when the endpoint refuses a prompt as too long
        self.base_url = base_url
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.retry = RetryPolicy(max_retries=int(max_retries), backoff_base=float(backoff_base),
                                 backoff_max=float(backoff_max), retry_after_max=float(retry_after_max))
        self.api_version = api_version
        self.configured_structured_mode: StructuredMode = structured_mode
        self.structured_mode: StructuredMode = structured_mode  # what the endpoint accepts, once a refusal taught us
        self._object_schema = True  # send the schema inside a json_object response_format until that is refused
        self.embedding_model = embedding_model
        self.stream_usage = stream_usage
        key = api_key or NO_KEY
        if api_version:
            if not base_url:
                raise ConfigError(
                    "ROLEPLAY_API_VERSION is set (Azure OpenAI), so ROLEPLAY_BASE_URL must be the Azure endpoint, "
                    "e.g. https://NAME.openai.azure.com"
                )
            where = {"base_url": base_url} if "/openai/" in base_url else {"azure_endpoint": base_url}
            self._client: openai.OpenAI = openai.AzureOpenAI(
                api_version=api_version, api_key=key, timeout=self.timeout, max_retries=0, http_client=_http_client(),
                **where
            )
        else:
            self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=self.timeout, max_retries=0,
                                         http_client=_http_client())

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChatModel:
        """Build a client from roleplay settings and the LLM-only environment variables.

        Args:
            settings: The settings (model, endpoint, key, timeout, retries, Azure version, structured mode,
                embeddings model, the deadline per call, the reply and grade token limits and the context window).

        Raises:
            ConfigError: The endpoint is not configured or an option is invalid.
        """
        return cls(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            api_version=settings.api_version,
            structured_mode=settings.structured_mode.value,
            embedding_model=settings.embedding_model,
            deadline=settings.deadline,
            reply_max_tokens=settings.max_reply_tokens,
            structured_max_tokens=settings.max_grade_tokens,
            context_window=settings.context_window,
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAIChatModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model!r}, base_url={self.base_url!r})"

    # -- public API ------------------------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> ChatReply:
        """Return the complete reply to `messages`.

        Args:
            messages: The conversation, oldest first.
            gen: Sampling parameters; defaults when None.

        Returns:
            The reply text with usage, model name and raw response.

        Raises:
            ProviderError: The endpoint failed (after retries where they make sense).
        """
        gen = self._sized(gen, self.reply_max_tokens)
        return self._chat(messages, gen, {}, CallLimits.start(self.deadline, gen.max_tokens))

    def stream(self, messages: Sequence[Message], gen: GenerationSettings | None = None) -> ChatStream:
        """Stream the reply to `messages` as text deltas.

        Failures before the first delta are retried like `chat`; once text has been delivered a failure raises
        `ProviderError` ("stream interrupted ...") instead of ending the iteration, so a truncated reply is never
        mistaken for a complete one. The request is sent on the first `next()`.

        Args:
            messages: The conversation, oldest first.
            gen: Sampling parameters; defaults when None.

        Returns:
            An iterator of deltas that also records the joined text and usage.

        Raises:
            ProviderError: While iterating, when the endpoint fails or the stream breaks.
        """
        out = ChatStream(self.model)
        out._iterator = self._deltas(list(messages), self._sized(gen, self.reply_max_tokens), out)
        return out

    def structured(self, messages: Sequence[Message], schema: type[M],
                   gen: GenerationSettings | None = None) -> StructuredReply[M]:
        """Ask for a reply matching a pydantic model and return it parsed.

        JSON is first asked for in `structured_mode`. An endpoint that refuses that mode (an error of any status
        naming `response_format` or the mode) is asked at once in the next one: json_schema, then json_object with
        the schema (and the schema in the prompt), then the schema in the prompt only; a refusal is never retried as
        if it were transient, and the client remembers what the endpoint accepts, so later calls go straight to it.
        A reply that is not valid JSON or fails validation gets one short correction naming the problem (the bad
        reply is not sent back); a second failure raises.

        Args:
            messages: The conversation, oldest first.
            schema: The pydantic model the reply must validate as.
            gen: Sampling parameters; defaults when None.

        Returns:
            The parsed model, the reply text, token usage and the mode that was used.

        Raises:
            ProviderError: The endpoint failed, or both replies were unusable (`last_reply` holds the second).
        """
        gen = self._sized(gen, self.structured_max_tokens)
        limits = CallLimits.start(self.deadline, gen.max_tokens)  # every attempt and fallback shares one deadline
        schema_json = _schema_of(schema)
        mode = self.structured_mode
        while True:
            try:
                return self._structured_in(mode, messages, schema, schema_json, gen, limits)
            except _Refused as refused:
                mode = self._fall_back(mode, refused)

    def _fall_back(self, mode: StructuredMode, refused: _Refused) -> StructuredMode:
        """The mode to try after `mode` was refused; remembered for the calls that follow."""
        where = self.base_url or "api.openai.com"
        if mode == "json_object" and self._object_schema:
            self._object_schema = False
            log.warning("the endpoint at %s refuses a schema inside response_format json_object (HTTP %s: %s); "
                        "asking for plain json_object from now on", where, refused.status, refused.said[:160])
            return mode
        following = _FALLBACK[mode]
        if following is None:  # prompt mode sends no response_format, so this is not a refusal of the mode
            raise ProviderError(f"the endpoint at {where} rejected a structured request with HTTP {refused.status} "
                                f"(server said: {refused.said[:200]}); check the server's logs", status=refused.status)
        log.warning("the endpoint at %s refuses structured mode %s (HTTP %s: %s); using %s from now on",
                    where, mode, refused.status, refused.said[:160], following)
        self.structured_mode = following
        return following

    def _structured_in(self, mode: StructuredMode, messages: Sequence[Message], schema: type[M],
                       schema_json: dict[str, Any], gen: GenerationSettings, limits: CallLimits) -> StructuredReply[M]:
        """One structured call in `mode`: a reply, one short correction if it is unusable, then give up."""
        extra: dict[str, Any] = {}
        convo: list[Message] = list(messages)
        if mode == "json_schema":
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": _schema_name(schema), "schema": schema_json, "strict": False},
            }
        else:
            if mode == "json_object":
                extra["response_format"] = ({"type": "json_object", "schema": schema_json} if self._object_schema
                                            else {"type": "json_object"})
            convo = _with_system_note(convo, _schema_instruction(schema_json))
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        problem = ""
        text = ""
        for attempt in (1, 2):
            reply = self._chat(convo, gen, extra, limits, refusable=mode != "prompt")
            prompt_tokens = _add(prompt_tokens, reply.prompt_tokens)
            completion_tokens = _add(completion_tokens, reply.completion_tokens)
            text = reply.text
            try:
                parsed = parse_json_model(text, schema)
            except ValueError as exc:  # json.JSONDecodeError and pydantic.ValidationError are ValueErrors
                problem = _describe_invalid(exc)
                log.info("reply is not a valid %s in mode %s (%s); %s", schema.__name__, mode, problem,
                         "asking again" if attempt == 1 else "giving up")
            else:
                if attempt == 2 or mode != self.configured_structured_mode:
                    log.info("structured reply in mode %s after %d attempt(s)", mode, attempt)
                return StructuredReply(parsed, text, prompt_tokens, completion_tokens, attempt, mode)
            convo = _with_correction(convo, _correction(problem, schema_json))
        hint = ("; set ROLEPLAY_STRUCTURED_MODE=json_object or prompt if the endpoint ignores json_schema"
                if mode == "json_schema" else "; try a stronger ROLEPLAY_MODEL")
        raise ProviderError(
            f"model {self.model!r} did not return a valid {schema.__name__} twice (mode {mode}): {problem}{hint}",
            attempts=2, status=None, last_reply=text,
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one embedding vector per text, in order (batched; retried like `chat`).

        Args:
            texts: The texts to embed.

        Returns:
            The vectors, `len(texts)` of them.

        Raises:
            ProviderError: The endpoint failed or answered with the wrong number of vectors.
        """
        vectors: list[list[float]] = []
        limits = CallLimits.start(self.deadline, None)
        for start in range(0, len(texts), EMBED_BATCH):
            batch = list(texts[start:start + EMBED_BATCH])
            vectors.extend(self._with_retries(f"embedding request to model {self.embedding_model!r}",
                                              lambda batch=batch: self._embed_batch(batch, limits), limits=limits,
                                              classify=self._embedding_failure))
        return vectors

    def _embedding_failure(self, exc: BaseException) -> Failure | None:
        """As `_classify`, naming the embeddings model's setting where a model name is at fault."""
        failure = self._classify(exc)
        if failure is not None and f"ROLEPLAY_MODEL={self.model!r}" in failure.hint:
            return dataclasses.replace(failure, hint=failure.hint.replace(
                f"ROLEPLAY_MODEL={self.model!r}", f"ROLEPLAY_EMBEDDING_MODEL={self.embedding_model!r}"))
        return failure

    def list_models(self) -> list[str]:
        """Return the model names the endpoint offers (a cheap reachability and key check).

        Raises:
            ProviderError: The endpoint failed.
        """
        limits = CallLimits.start(self.deadline, None)

        def call() -> list[str]:
            data = _json_body(self._client.models.with_raw_response.list(timeout=self._timeout(limits)).text)
            items = data.get("data")
            if not isinstance(items, list):
                raise _Malformed("the model list has no 'data' array")
            return [str(item.get("id")) for item in items if isinstance(item, dict)]

        return self._with_retries("model list request", call, limits=limits)

    # -- requests ----------------------------------------------------------------------------------------------

    def _params(self, gen: GenerationSettings) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": gen.temperature}
        if gen.max_tokens is not None:
            params["max_tokens"] = gen.max_tokens
        if gen.seed is not None:
            params["seed"] = gen.seed
        if gen.stop:
            params["stop"] = list(gen.stop)
        return params

    def _sized(self, gen: GenerationSettings | None, default_max_tokens: int | None) -> GenerationSettings:
        """`gen` (or the defaults) with `max_tokens` set to the client's default for this kind of call if unset."""
        gen = gen or DEFAULT_GENERATION
        if gen.max_tokens is None and default_max_tokens is not None:
            return gen.model_copy(update={"max_tokens": default_max_tokens})
        return gen

    def _timeout(self, limits: CallLimits) -> float:
        """The timeout of one request: ROLEPLAY_TIMEOUT, or less when the call's deadline is nearer."""
        limits.check_time()
        remaining = limits.remaining()
        return self.timeout if remaining is None else max(min(self.timeout, remaining), 0.001)

    def _chat(self, messages: Sequence[Message], gen: GenerationSettings, extra: dict[str, Any],
              limits: CallLimits, *, refusable: bool = False) -> ChatReply:
        body = [dict(m) for m in messages]
        params = {**self._params(gen), **extra}

        def call() -> ChatReply:
            try:
                with limited(limits):
                    raw = self._client.chat.completions.with_raw_response.create(
                        model=self.model, messages=body, timeout=self._timeout(limits), **params  # type: ignore[arg-type]
                    ).text
            except openai.APIStatusError as exc:
                self._raise_if_too_long(exc, body)
                if refusable and _refuses_format(exc, params.get("response_format")):
                    raise _Refused(exc.status_code, _server_message(exc)) from exc  # not retried: _classify -> None
                raise
            return _chat_reply(raw, self.model)

        note = ""
        if "response_format" in extra and extra["response_format"].get("type") == "json_schema":
            note = "; if the endpoint does not support json_schema, set ROLEPLAY_STRUCTURED_MODE=json_object or prompt"
        return self._with_retries(f"chat request to model {self.model!r}", call, note=note, limits=limits)

    def _embed_batch(self, batch: list[str], limits: CallLimits) -> list[list[float]]:
        with limited(limits):
            raw = self._client.embeddings.with_raw_response.create(
                model=self.embedding_model, input=batch, encoding_format="float", timeout=self._timeout(limits)
            ).text
        data = _json_body(raw).get("data")
        if not isinstance(data, list) or len(data) != len(batch):
            got = len(data) if isinstance(data, list) else "no"
            raise _Malformed(f"asked for {len(batch)} embeddings, got {got}")
        try:
            items = sorted(data, key=lambda item: item.get("index", 0))
            return [_vector(item["embedding"]) for item in items]
        except (AttributeError, KeyError, TypeError, ValueError, struct.error) as exc:
            raise _Malformed(f"unreadable embedding ({exc})") from None

    def _open_stream(self, messages: list[dict[str, str]], gen: GenerationSettings, limits: CallLimits) -> Any:
        params = self._params(gen)
        with limited(limits):  # the response hook binds the limits to the stream, however long it is read
            if self.stream_usage:
                try:
                    return self._client.chat.completions.create(
                        model=self.model, messages=messages, stream=True, timeout=self._timeout(limits),
                        stream_options={"include_usage": True}, **params,
                    )
                except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                    if "stream_options" not in f"{exc.message} {exc.body}":
                        raise
                    log.info("endpoint rejects stream_options; streaming without usage from now on")
                    self.stream_usage = False
            return self._client.chat.completions.create(
                model=self.model, messages=messages, stream=True, timeout=self._timeout(limits),
                **params  # type: ignore[arg-type]
            )

    def _deltas(self, messages: list[Message], gen: GenerationSettings, out: ChatStream) -> Iterator[str]:
        body = [dict(m) for m in messages]
        limits = CallLimits.start(self.deadline, gen.max_tokens)  # from the first next(), when the request is sent

        def interrupted(delivered: int, exc: Exception, failure: Failure) -> str:
            return (f"stream interrupted after {delivered} characters of the reply from model {self.model!r} "
                    f"({_interruption(exc, self.timeout)}); the reply is incomplete, so check the endpoint's "
                    f"logs and load, or raise ROLEPLAY_TIMEOUT if it stalls")

        yield from self._streamed(f"streamed chat request to model {self.model!r}",
                                  lambda lim: self._stream_once(body, gen, out, lim), out, limits, interrupted)

    def _stream_once(self, body: list[dict[str, str]], gen: GenerationSettings, out: ChatStream,
                     limits: CallLimits) -> Iterator[str]:
        try:
            chunks = self._open_stream(body, gen, limits)
        except openai.APIStatusError as exc:
            self._raise_if_too_long(exc, body)
            raise
        finished, seen = False, 0
        try:
            for chunk in chunks:
                seen += 1
                choices = chunk.choices
                if choices:
                    choice = choices[0]
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield delta.content
                    if choice.finish_reason is not None:
                        finished = True
                usage = chunk.usage
                if usage is not None:
                    out.prompt_tokens = usage.prompt_tokens
                    out.completion_tokens = usage.completion_tokens
                if chunk.model and out.model != chunk.model:
                    out.model = chunk.model
        finally:
            chunks.close()
        if not finished and not seen and self.context_window is None:
            # llama.cpp's server answers a prompt longer than its context with an empty stream, not an error
            raise _Truncated("the stream ended before any reply; a server may do this when the prompt is longer than "
                             "its context window: set ROLEPLAY_CONTEXT_WINDOW to the server's context size")
        if not finished:
            raise _Truncated("the stream ended without a finish reason")

    def _classify(self, exc: BaseException) -> Failure | None:
        """Say whether and how `exc` is retried; None for exceptions that are not the endpoint's doing."""
        where = self.base_url or "api.openai.com"
        exceeded = limit_in(exc)
        if exceeded is not None:
            return Failure(False, None, None, exceeded.describe(self.model))
        if isinstance(exc, openai.APITimeoutError):
            return Failure(True, None, None,
                            f"no answer within {self.timeout:g}s; raise ROLEPLAY_TIMEOUT or check whether the "
                            f"endpoint at {where} is overloaded")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({cause})" if cause else ""
            return Failure(True, None, None,
                            f"connection to {where} failed{detail}; check ROLEPLAY_BASE_URL and that the server "
                            f"is running and reachable")
        if isinstance(exc, openai.APIStatusError):
            return self._status_failure(exc)
        if isinstance(exc, _Malformed):
            return Failure(True, 200, None,
                            f"the response is not an OpenAI-compatible reply ({exc}); check that ROLEPLAY_BASE_URL "
                            f"is the API root of an OpenAI-compatible server (usually ending in /v1)")
        if isinstance(exc, _Truncated):
            return Failure(True, None, None, f"{exc}; check the endpoint's logs or raise ROLEPLAY_TIMEOUT")
        if isinstance(exc, openai.OpenAIError):
            return Failure(False, None, None, f"{type(exc).__name__}: {exc}")
        return None

    def _status_failure(self, exc: openai.APIStatusError) -> Failure:
        status = exc.status_code
        said = _server_message(exc)
        said_part = f" (server said: {said})" if said else ""
        if status == 401:
            hint = f"the endpoint rejected the API key (401){said_part}; check ROLEPLAY_API_KEY"
        elif status == 403:
            hint = (f"the API key may not use model {self.model!r} (403){said_part}; check ROLEPLAY_API_KEY and the "
                    f"key's permissions")
        elif status == 404:
            hint = (f"not found (404){said_part}; check the model name ROLEPLAY_MODEL={self.model!r} and that "
                    f"ROLEPLAY_BASE_URL is the API root (usually ending in /v1)")
        elif status == 429:
            hint = (f"rate limited (429){said_part}; check the account's rate limits and quota, or raise "
                    f"ROLEPLAY_MAX_RETRIES")
        elif status == 408:
            hint = f"the endpoint timed out (408){said_part}; check the endpoint's load or raise ROLEPLAY_TIMEOUT"
        elif status >= 500:
            hint = f"the endpoint failed with HTTP {status}{said_part}; check the server's status and logs"
        else:
            hint = f"the endpoint rejected the request with HTTP {status}{said_part}"
        retryable = status in (408, 429) or status >= 500
        retry_after = parse_retry_after(exc.response.headers) if retryable else None
        return Failure(retryable, status, retry_after, hint)

    def _raise_if_too_long(self, exc: openai.APIStatusError, body: list[dict[str, str]]) -> None:
        """Raise `ContextTooLong` (never retried) when `exc` refuses the prompt as longer than the context window.

        The window the server states is remembered, so callers that fit prompts to `context_window` fit the next
        one at once; a server that states no size is taken to have the largest power of two below the prompt.
        """
        refusal = _context_refusal(exc)
        if refusal is None:
            return
        window, prompt_tokens = refusal
        where = self.base_url or "api.openai.com"
        said = _server_message(exc)
        counted = None
        if window is None:
            from roleplay.tokens import counter_for

            counted = prompt_tokens or counter_for(self.model).count_messages(body)
            window = 1 << max((counted - 1).bit_length() - 1, 0) if counted > 1 else None
        if window is not None and (self.context_window is None or window < self.context_window):
            if counted is None:
                log.warning("the endpoint at %s says model %r has a context of %d tokens; prompts are fitted to it "
                            "from now on", where, self.model, window)
            else:
                log.warning("the endpoint at %s refused a prompt of about %d tokens as too long without saying its "
                            "context size; assuming %d tokens from now on (set ROLEPLAY_CONTEXT_WINDOW to the "
                            "server's context size)", where, counted, window)
            self.context_window = window
        size = f"a prompt of {prompt_tokens} tokens" if prompt_tokens else "the prompt"
        limit = f"its context of {window} tokens" if window else "its context"
        raise ContextTooLong(
            f"the endpoint at {where} refused {size} as too long for {limit} (HTTP {exc.status_code}, server said: "
            f"{said}); set ROLEPLAY_CONTEXT_WINDOW to the model's context size so prompts are fitted before they are "
            f"sent, lower ROLEPLAY_MAX_GRADE_TOKENS or ROLEPLAY_MAX_REPLY_TOKENS, or use a model with a larger context",
            window=window, prompt_tokens=prompt_tokens, status=exc.status_code,
        ) from exc


# -- helpers -----------------------------------------------------------------------------------------------------


def _http_client() -> Any:
    """The SDK's default HTTP client, reading every response under the limits of its call (`roleplay.call_limits`)."""
    return openai.DefaultHttpxClient(event_hooks={"request": [], "response": [guard_response]})


def parse_json_model(text: str, schema: type[M]) -> M:
    """Parse a model reply as `schema`, tolerating code fences and prose around one JSON object.

    Args:
        text: The reply text.
        schema: The pydantic model to validate against.

    Returns:
        The validated instance.

    Raises:
        ValueError: The text holds no parseable JSON (json.JSONDecodeError) or it fails validation
            (pydantic.ValidationError).
    """
    candidate = text.strip()
    fenced = re.fullmatch(r"```[a-zA-Z]*\s*(.*?)\s*```", candidate, re.DOTALL)
    if fenced:
        candidate = fenced.group(1)
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError:
        start, end = candidate.find("{"), candidate.rfind("}")
        if not 0 <= start < end:
            raise
        data = json.loads(candidate[start:end + 1])
    return schema.model_validate(data)


def _describe_invalid(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:10]]
        return "it does not match the schema (" + "; ".join(problems) + ")"
    return f"it is not valid JSON ({exc})"


def _schema_name(schema: type[BaseModel]) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "reply"


def _schema_instruction(schema_json: dict[str, Any]) -> str:
    return ("Reply with only a JSON object (no prose, no code fences) that matches this JSON Schema:\n"
            + json.dumps(schema_json))


def _refuses_format(exc: openai.APIStatusError, response_format: object) -> bool:
    """Whether an error answers the request's `response_format` (the mode is unsupported), not a passing fault."""
    if not isinstance(response_format, dict) or exc.status_code in (401, 403, 404, 408, 429):
        return False
    said = f"{exc.message} {exc.body}".lower()
    kind = str(response_format.get("type", ""))
    return "response_format" in said or "json_schema" in said or (kind == "json_object" and "json_object" in said)


_CONTEXT_REFUSAL = re.compile(
    r"context_length_exceeded|exceed_context_size|maximum context length|exceeds? (?:the )?(?:available )?context "
    r"(?:size|window|length)|context window of \d+|context length of (?:only )?\d+|prompt is too long|"
    r"`inputs` tokens \+ `max_new_tokens` must be", re.IGNORECASE)
_CONTEXT_WINDOW = (r"maximum context length is (\d+)", r"context window of (\d+)",
                   r"available context size \((\d+) tokens?\)", r"context length of (?:only )?(\d+)",
                   r"must be <= (\d+)", r"tokens? > (\d+) maximum")
_PROMPT_TOKENS = (r"resulted in (\d+) tokens", r"\((\d+) in the messages", r"requested tokens \((\d+)\)",
                  r"request \((\d+) tokens?\)", r"your request has (\d+) input tokens",
                  r"prompt is too long: (\d+) tokens", r"given: (\d+) `inputs` tokens")


def _context_refusal(exc: openai.APIStatusError) -> tuple[int | None, int | None] | None:
    """The (window, prompt tokens) an error states when it refuses a prompt as too long for the context, else None.

    Either number is None when the server does not give it (llama.cpp: "the request exceeds the available context
    size"; OpenAI and vLLM: "This model's maximum context length is 8192 tokens. However, ...").
    """
    if exc.status_code in (401, 403, 404, 408, 429):
        return None
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else body
    fields = error if isinstance(error, dict) else {}
    said = f"{exc.message} {json.dumps(body) if isinstance(body, (dict, list)) else body or ''}"
    if not (_CONTEXT_REFUSAL.search(said) or fields.get("code") == "context_length_exceeded"):
        return None

    def number(key: str, patterns: tuple[str, ...]) -> int | None:
        value = _int_or_none(fields.get(key))
        if value is not None and value > 0:
            return value
        for pattern in patterns:
            found = re.search(pattern, said, re.IGNORECASE)
            if found:
                return int(found.group(1))
        return None

    return number("n_ctx", _CONTEXT_WINDOW), number("n_prompt_tokens", _PROMPT_TOKENS)


def _correction(problem: str, schema_json: dict[str, Any]) -> str:
    """The short note that asks again after an unusable structured reply (the reply itself is not repeated)."""
    problem = problem if len(problem) <= 400 else problem[:400] + "..."
    fields = ", ".join(str(name) for name in schema_json.get("properties", {}))
    return (f"Your previous reply could not be used: {problem}. Reply again with only one JSON object"
            + (f" with the fields {fields}" if fields else "") + " (no prose, no code fences).")


def _with_correction(messages: list[Message], note: str) -> list[Message]:
    """Add `note` to the last user message (or add one), so roles still alternate for strict chat templates."""
    if messages and messages[-1].get("role") == "user":
        last = dict(messages[-1])
        last["content"] = f"{last.get('content', '')}\n\n{note}"
        return [*messages[:-1], last]
    return [*messages, {"role": "user", "content": note}]


def _with_system_note(messages: list[Message], note: str) -> list[Message]:
    """Add `note` to the leading system message (or add one), keeping roles alternating for strict templates."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content', '')}\n\n{note}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def _add(total: int | None, value: int | None) -> int | None:
    if value is None:
        return total
    return value if total is None else total + value


def _json_body(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        snippet = raw[:80].replace("\n", " ")
        raise _Malformed(f"body is not JSON: {snippet!r}") from None
    if not isinstance(data, dict):
        raise _Malformed("body is not a JSON object")
    return data


def _chat_reply(raw: str, requested_model: str) -> ChatReply:
    data = _json_body(raw)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Malformed("no choices in the response")
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None and isinstance(message, dict):
        content = message.get("refusal")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ChatReply(
        text=str(content or ""),
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        model=str(data.get("model") or requested_model),
        raw=raw,
    )


def _interruption(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return f"no data for {timeout:g}s"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection lost: {cause}" if cause else "connection lost"
    if isinstance(exc, _Truncated):
        return "it ended without a finish reason"
    return f"{type(exc).__name__}: {exc}"


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _vector(value: object) -> list[float]:
    if isinstance(value, str):  # base64 little-endian float32, for servers that ignore encoding_format
        packed = base64.b64decode(value)
        return list(struct.unpack(f"<{len(packed) // 4}f", packed))
    if not isinstance(value, list):
        raise TypeError("embedding is neither a list nor base64")
    return [float(x) for x in value]


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    message: object = None
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
    if not message:
        message = body if isinstance(body, str) else None
    text = str(message or "").strip().replace("\n", " ")
    return text[:200] + ("..." if len(text) > 200 else "")


@functools.lru_cache(maxsize=64)
def _schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """JSON Schema of a response model, built once per class (building it costs about a millisecond)."""
    return schema.model_json_schema()
