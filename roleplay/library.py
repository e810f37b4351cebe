"""The configured scenario and rubric library, loaded once per process."""

from __future__ import annotations

from functools import lru_cache

from roleplay.catalog import Catalog, load_catalog
from roleplay.config import settings


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """Scenarios and rubrics from the configured directories; raises if any file is invalid."""
    cfg = settings()
    cat = load_catalog([cfg.scenarios_dir, cfg.rubrics_dir])
    cat.raise_errors()
    return cat
