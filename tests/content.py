"""The shipped scenarios and rubrics, loaded once for the tests that only read them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from roleplay.catalog import Catalog, load_catalog

ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The catalog of the checkout's scenarios/ and rubrics/ (raises if any file is invalid)."""
    cat = load_catalog([ROOT / "scenarios", ROOT / "rubrics"])
    cat.raise_errors()
    return cat
