"""Evidence rules shared by both judges: a quote counts only if it is the learner's own words, of substance.

A quote is matched against single learner turns, ignoring case, white space and curly quotes; a quote with an
ellipsis ("I can see … that's hard") is matched segment by segment, in order, within one turn. A quote of
substance has at least `MIN_QUOTE_WORDS` words (or `MIN_QUOTE_CHARS` characters): "you" or "okay" proves
nothing about any criterion.
"""

from __future__ import annotations

import re

from roleplay.transcript import Transcript

MIN_QUOTE_WORDS = 4
MIN_QUOTE_CHARS = 16
_ELLIPSIS = re.compile(r"\s*(?:\.\s*){3,}\s*|\s*…\s*|\s*\[\.\.\.\]\s*")


def normalise(text: str) -> str:
    """Lower case, straight quotes, folded white space, without surrounding quotes."""
    text = (text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
            .replace("\u00a0", " "))
    return re.sub(r"\s+", " ", text).strip().strip('"').strip().lower()


def segments(quote: str) -> list[str]:
    """The parts of a quote between ellipses, normalised, without trailing sentence punctuation."""
    parts = [normalise(p).strip(" ,;").rstrip(".!?") for p in _ELLIPSIS.split(quote)]
    return [p for p in parts if p]


def substantive(quote: str) -> bool:
    """Whether a quote is long enough to be evidence of anything."""
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)?", quote)
    return len(words) >= MIN_QUOTE_WORDS or len(" ".join(words)) >= MIN_QUOTE_CHARS


def turn_of_quote(quote: str, transcript: Transcript) -> int | None:
    """Index (0-based, among learner turns) of the learner turn that holds the quote in order, or None."""
    parts = segments(quote)
    if not parts:
        return None
    for i, turn in enumerate(transcript.learner_turns):
        text, at = normalise(turn.text), 0
        for part in parts:
            found = text.find(part, at)
            if found < 0:
                break
            at = found + len(part)
        else:
            return i
    return None


def quote_is_verbatim(quote: str, transcript: Transcript) -> bool:
    """True when `quote` occurs in one learner turn (segments in order when it has an ellipsis)."""
    return turn_of_quote(quote, transcript) is not None
