"""Configuration from environment variables, resolved once and lazily, with actionable errors."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from roleplay.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "roleplay"


def _content_dir(name: str) -> Path:
    """`./NAME` when run from a checkout, else the checkout the package was installed from."""
    here = Path.cwd() / name
    return here if here.is_dir() else PROJECT_ROOT / name


class Settings(BaseModel):
    """Every setting roleplay reads; see the configuration table in the README."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(description="Directory for the SQLite database, exemplars and keys (ROLEPLAY_DATA_DIR).")
    database_url: str = Field(description="SQLAlchemy URL; SQLite file in data_dir by default (ROLEPLAY_DATABASE_URL).")
    scenarios_dir: Path = Field(description="Directory of scenario YAML files (ROLEPLAY_SCENARIOS_DIR).")
    rubrics_dir: Path = Field(description="Directory of rubric YAML files (ROLEPLAY_RUBRICS_DIR).")
    engine: str = Field(description="'auto' (LLM when a base URL or key is set, else offline), 'llm' or 'offline' (ROLEPLAY_ENGINE).")
    base_url: str | None = Field(description="OpenAI-compatible endpoint base URL (ROLEPLAY_BASE_URL).")
    api_key: str | None = Field(description="API key for the endpoint (ROLEPLAY_API_KEY).")
    model: str = Field(description="Chat model name (ROLEPLAY_MODEL).")
    timeout: float = Field(gt=0, description="Seconds before a model call times out (ROLEPLAY_TIMEOUT).")
    max_retries: int = Field(ge=0, le=10, description="Retries on timeouts, 429 and 5xx (ROLEPLAY_MAX_RETRIES).")
    host: str = Field(description="Address the web app listens on (ROLEPLAY_HOST).")
    port: int = Field(ge=1, le=65535, description="Port the web app listens on (ROLEPLAY_PORT).")

    @property
    def use_llm(self) -> bool:
        """Whether the persona and grader should use the configured endpoint."""
        if self.engine == "offline":
            return False
        if self.engine == "llm":
            return True
        return bool(self.base_url or self.api_key)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _number(name: str, default: str, kind: type) -> float | int:
    raw = _env(name, default)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}; set it to a number like {default}") from None


def load_settings() -> Settings:
    """Read settings from the environment (no caching; see `settings()`)."""
    data_dir = Path(_env("ROLEPLAY_DATA_DIR") or _default_data_dir()).expanduser()
    engine = (_env("ROLEPLAY_ENGINE", "auto") or "auto").lower()
    if engine not in ("auto", "llm", "offline"):
        raise ConfigError(f"ROLEPLAY_ENGINE={engine!r} is not valid; use auto, llm or offline")
    return Settings(
        data_dir=data_dir,
        database_url=_env("ROLEPLAY_DATABASE_URL") or f"sqlite:///{data_dir / 'roleplay.db'}",
        scenarios_dir=Path(_env("ROLEPLAY_SCENARIOS_DIR") or _content_dir("scenarios")),
        rubrics_dir=Path(_env("ROLEPLAY_RUBRICS_DIR") or _content_dir("rubrics")),
        engine=engine,
        base_url=_env("ROLEPLAY_BASE_URL"),
        api_key=_env("ROLEPLAY_API_KEY"),
        model=_env("ROLEPLAY_MODEL", "gpt-4o-mini") or "gpt-4o-mini",
        timeout=_number("ROLEPLAY_TIMEOUT", "60", float),
        max_retries=_number("ROLEPLAY_MAX_RETRIES", "3", int),
        host=_env("ROLEPLAY_HOST", "127.0.0.1") or "127.0.0.1",
        port=_number("ROLEPLAY_PORT", "7860", int),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return load_settings()
