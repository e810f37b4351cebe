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


GOOD_LINES = [
    "Hi Sam, thanks for making time. I wanted to talk about the Friday reports.",
    "The last two reports missed the Friday deadline and the client chased me directly. What's been happening for you?",
    "So you're starting later and catching up in the evenings, and Friday gets squeezed.",
    "That sounds exhausting, carrying all of that on your own. What's been taking up your mornings?",
    "Thank you for telling me. The client needs the report by Friday noon; what would make that workable for you?",
    "What would make the biggest difference to your mornings?",
    "Let me check I've understood: your mornings go to home, you catch up at night, and Fridays get squeezed.",
    "Shall we agree you flag risks to me by Wednesday, and we check in next Monday on how the mornings are going?",
]
"""A good manager in the missed-deadlines scenario: facts first, questions, reflections that take up what Sam says,
acknowledgement, the expectation, a summary and next steps agreed with dates (played with a fixed seed)."""

GOOD_EVIDENCE = {"open-questions": GOOD_LINES[5], "reflective-listening": GOOD_LINES[2],
                 "empathy": "That sounds exhausting, carrying all of that on your own.",
                 "candid-feedback": "The last two reports missed the Friday deadline and the client chased me directly.",
                 "next-steps": GOOD_LINES[7]}
"""A quote per criterion of the coaching rubric from GOOD_LINES, each showing that criterion."""
