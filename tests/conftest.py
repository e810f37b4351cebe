"""Shared fixtures: every test gets its own data directory and offline settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from stub_openai import stub_llm  # noqa: F401

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "ROLEPLAY_"


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point all storage at a temp directory and clear any endpoint configuration."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("ROLEPLAY_DATA_DIR", str(data))
    monkeypatch.setenv("ROLEPLAY_SCENARIOS_DIR", str(ROOT / "scenarios"))
    monkeypatch.setenv("ROLEPLAY_RUBRICS_DIR", str(ROOT / "rubrics"))
    yield data
    import sys

    common = sys.modules.get("roleplay.ui.common")
    if common is not None and common._CONTEXT:
        common._CONTEXT.pop().close()


@pytest.fixture()
def root() -> Path:
    """The repository root."""
    return ROOT


from dbs import db_url  # noqa: E402,F401  (fixture on SQLite and PostgreSQL)
