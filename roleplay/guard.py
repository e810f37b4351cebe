"""The in-character guard: what in a persona's reply breaks character, and how much of a streamed reply is safe to show.

A reply breaks character when it talks about being an AI or an assistant, answers with a list or document
formatting, echoes the instructions it was given, speaks as the manager instead of as the persona, claims another
name, or tells a hidden fact the engine has not decided to reveal. `RollingGuard` reads a streamed reply as it
grows and releases only the part that no rule can still turn into a break, so the learner never sees one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import regex

if TYPE_CHECKING:
    from roleplay.persona import Conversation, Directive
    from roleplay.scenario import HiddenFact

_I = regex.IGNORECASE

_BREAKS: list[tuple[regex.Pattern[str], str]] = [
    (regex.compile(r"\b(?:as an? (?:ai|artificial intelligence|language model|assistant|chatbot)|i(?:'m| am) "
                   r"(?:just |only )?an? (?:ai|language model|assistant|chatbot|virtual assistant)|language model|"
                   r"openai|large language)\b", _I),
     "talks about being an AI or a language model"),
    (regex.compile(r"\b(?:how (?:can|may) i (?:help|assist) you|i(?:'d| would) be (?:happy|glad) to help|"
                   r"is there anything else|i hope (?:this|that) helps|feel free to (?:ask|reach out)|great question|"
                   r"certainly!|absolutely!|here are (?:some|a few) (?:tips|steps|ways|suggestions))", _I),
     "talks like a helpful assistant"),
    (regex.compile(r"\b(?:i apologi[sz]e for (?:any|the) confusion|sorry for (?:any|the) confusion|"
                   r"i (?:can(?:no|')t|am unable to|won'?t) (?:role-?play|pretend|continue (?:this|the) "
                   r"(?:role|scenario)))", _I),
     "steps out of the role-play"),
    (regex.compile(r"(?:^|\n)\s*(?:[-*•]|\d+\.)\s+\S.*\n\s*(?:[-*•]|\d+\.)\s+\S", regex.MULTILINE),
     "answers with a list"),
    (regex.compile(r"^\s*(?:#{1,6}\s|\*\*[^*]+\*\*:)", regex.MULTILINE), "uses document formatting"),
]

INSTRUCTION_MARK = "[For your reply (not said by the manager):"
"""Opens the turn instruction folded into the manager's last message; it is closed by "]"."""

INSTRUCTION_PHRASES: tuple[str, ...] = (
    INSTRUCTION_MARK, "not said by the manager",
    # the turn instruction
    "Stay in character as", "Your mood now:", "Reply to the manager's last message", "Something in this spirit",
    "Reply with your spoken words only", "What you have already told the manager", "stay consistent with it",
    "do not bring it up or hint at it", "The manager has earned your trust", "this private fact",
    "The manager has just said something private about you", "React in character",
    "End the conversation now, in your own words", "The manager wrote in another language",
    "Say, in character, along these lines", "puzzled, and steer back", "The manager was not speaking to you",
    "You have just joined the call late",
    # the note added when a reply is regenerated
    "your previous attempt was rejected", "a person in this conversation, not an assistant",
    "Answer again in character",
    # the persona's system prompt
    "This is a role-play for a manager", "never a coach or an assistant", "What you know and may say openly",
    "Lines you use to push back", "Resistance at this level", "as the manager was briefed", "Rules: stay in character",
    "speak only as yourself",
)
"""Wording of the persona's instructions (`roleplay.voices`) that a reply only contains when it echoes them."""

SHOUTED_PHRASES: tuple[str, ...] = ("DO NOT reveal", "DO NOT mention", "IMPORTANT:")
"""Prompt-style commands, matched with their capitals: plain speech does not shout them."""

_STILL_IN_ROLE = {"not", "sorry", "fine", "just", "here", "sure", "okay", "worried"}
"""Words after "i am" / "i'm" that are not a name."""

_WORD = regex.compile(r"[a-z]{6,}", regex.IGNORECASE)


def _settled(text: str) -> str:
    """`text` without its last word when that word may still be growing (nothing after it yet)."""
    end = len(text)
    while end and (text[end - 1].isalnum() or text[end - 1] in "_'’-"):
        end -= 1
    return text[:end]


def _phrase(text: str) -> str:
    words = r"\s+".join(regex.escape(w) for w in text.split())
    return (r"\b" if regex.match(r"\w", text) else "") + words


_ECHO = regex.compile("|".join(_phrase(p) for p in INSTRUCTION_PHRASES), _I)
_SHOUTED = regex.compile("|".join(_phrase(p) for p in SHOUTED_PHRASES))


@dataclass(frozen=True)
class _Rule:
    """A pattern and what a complete match of it means: the reason it breaks character, or None when it is fine."""

    pattern: regex.Pattern[str]
    judge: Callable[[regex.Match[str]], str | None]


def _always(reason: str) -> Callable[[regex.Match[str]], str | None]:
    return lambda _m: reason


_FIXED_RULES = [_Rule(p, _always(reason)) for p, reason in _BREAKS] + [
    _Rule(_ECHO, _always("echoes its instructions")), _Rule(_SHOUTED, _always("echoes its instructions"))]


def _speaking_for(others: Sequence[str]) -> list[_Rule]:
    """In a scene: writing another person's lines ("Priya: ...", "[Priya Nair]: ...") or what they do ("[Priya unmutes]")."""
    rules = []
    for name in others:
        parts = [regex.escape(p) for p in name.split()]
        if not parts:
            continue
        who = rf"{parts[0]}(?:\s+{' '.join(parts[1:])})?" if len(parts) > 1 else parts[0]
        rules.append(_Rule(regex.compile(rf"(?:^|(?<=[.!?\n]\s*))\[?{who}\]?\s*:|\[\s*{who}\b[^\]]*\]"),
                           _always(f"speaks for {name}")))
    return rules


def _persona_rules(persona_name: str, others: Sequence[str] = ()) -> list[_Rule]:
    """Rules that depend on who the persona is: speaking as the manager to it, claiming another name, or (in a scene)
    speaking for someone else in the meeting."""
    parts = persona_name.split()
    own = {part.lower() for part in parts}
    first = regex.escape(parts[0]) if parts else r"(?!)"
    not_here = r"(?!(?i:here|speaking)\b)"
    reversal = [
        # greeting or thanking the persona by its own first name ("Hi Sam, I hope you're well"), not "Hi, Sam here"
        (rf"\b(?i:hi|hello|hey|dear|good (?:morning|afternoon|evening)|thanks|thank you|welcome)[,!]?\s+{first}"
         rf"(?:\s*[,.!?]|\s+{not_here}\w)"),
        # addressing it by name at the start of a sentence ("Sam, can we talk about the reports?")
        rf"(?:^[\"“]?|(?<=[.!?]\s*)){first}\s*,\s*{not_here}\S",
        # or at the end of one ("How are you, Sam?"), but not "it's me, Sam."
        rf",(?<!\b(?i:me),)\s*{first}\s*[.!?]",
        r"\b(?i:as your (?:line )?manager|i(?:'m| am) your (?:line )?manager)\b",
    ]
    as_manager = _always(f"speaks as the manager, not as {persona_name}")

    def other_name(m: regex.Match[str]) -> str | None:
        return None if m.group(1).lower() in own else f"speaks as the manager, not as {persona_name}"

    def claimed(m: regex.Match[str]) -> str | None:
        n = m.group(1).lower()
        return None if n in own or n in _STILL_IN_ROLE else f"claims to be {m.group(1)}, not {persona_name}"

    return [*(_Rule(regex.compile(p), as_manager) for p in reversal),
            *_speaking_for(others),
            _Rule(regex.compile(r"\b(?i:my name is|my name's)\s+([A-Z][a-z]+)\b"), other_name),
            _Rule(regex.compile(r"\b(?:i am|i'm)\s+([A-Z][a-z]+)\b"), claimed)]


def _distinctive(text: str) -> set[str]:
    return set(regex.findall(r"[a-z]{6,}", text.lower()))


def _secrets(facts: Iterable[HiddenFact], known: set[str]) -> list[set[str]]:
    """Per fact, its distinctive words the learner does not know yet; two of them said together tell the fact."""
    return [s for s in (_distinctive(f"{f.fact} {f.reveal_line}") - known for f in facts) if len(s) >= 2]


def _unrevealed(conv: Conversation) -> list[HiddenFact]:
    return [f for f in conv.scenario.hidden_facts if f.id not in conv.state.revealed_ids]


class RollingGuard:
    """Reads a persona's reply as it streams and tells how much of it is safe to show.

    The safe part is the longest prefix that ends at a complete word, in which no rule has matched, and from which
    no rule can still be completed by text yet to come: a pattern that partly matches at the end of the text (the
    `regex` module's partial matching), an instruction phrase being echoed, or the first distinctive word of an
    unrevealed hidden fact (a second one would tell it) hold back everything from where they start. Once a rule
    matches, the guard records why and shows nothing more. Each call reads only what is new since the last one.

    Args:
        persona_name: The full name of the persona speaking (the one the manager talks to in this reply).
        unrevealed_facts: Hidden facts the reply must not tell.
        known_text: Text the learner already knows (briefing, background, the conversation so far): words in it
            tell nothing.
        others: In a scene, the names of the other people in the meeting: writing their lines is a break.

    Attributes:
        broken: Why the reply breaks character, once a rule has matched; None while it stays in role.
        break_at: Where in the text the break starts (the match, or the first word of the fact it tells).
        shown: The longest safe prefix released so far (without surrounding whitespace).
    """

    def __init__(self, persona_name: str, unrevealed_facts: Sequence[HiddenFact] = (), known_text: str = "",
                 others: Sequence[str] = ()) -> None:
        self.persona_name = persona_name
        self._rules = _FIXED_RULES + _persona_rules(persona_name, others)
        self._secrets = _secrets(unrevealed_facts, _distinctive(known_text))
        self._secret_words = set().union(*self._secrets)
        self.broken: str | None = None
        self.break_at: int | None = None
        self.shown = ""
        self._read = ""
        self._resume = [0] * len(self._rules)
        self._words: list[tuple[int, str]] = []
        self._first_secret: int | None = None

    @classmethod
    def for_conversation(cls, conv: Conversation, directive: Directive | None = None,
                         persona_name: str | None = None) -> RollingGuard:
        """The guard for the next reply in `conv`.

        Args:
            conv: The conversation; its briefing, the speaker's background and its transcript (with the learner's
                latest turn) are what the learner knows.
            directive: What the reply must do and who speaks; a reply told to reveal a fact is not checked for
                hidden facts.
            persona_name: The speaker's name, when it is not the directive's (default: the directive's speaker, or
                the conversation's lead persona).

        Returns:
            A fresh guard.
        """
        who = directive.who if directive is not None else ""
        persona = (conv.scenario.member(who) if who else conv.lead).persona
        known = " ".join([conv.scenario.briefing, persona.background, *(t.text for t in conv.transcript.turns)])
        revealing = directive is not None and directive.kind == "reveal"
        others = [m.persona.name for m in conv.scenario.members if m.persona is not persona] if conv.scenario.is_scene else []
        return cls(persona_name or persona.name, [] if revealing else _unrevealed(conv), known, others)

    def feed(self, text: str) -> str:
        """Read the reply so far and return the part of it that is safe to show.

        Args:
            text: Everything received so far; each call passes the whole text, grown.

        Returns:
            The safe prefix, which only ever grows; after a break, what was shown before it.
        """
        if self.broken is None:
            settled = _settled(text)
            if settled == self._read:
                return self.shown
            hold = self._read_up_to(settled, partial=True)
            safe = settled[:hold].strip()
            if self.broken is None and len(safe) > len(self.shown) and safe.startswith(self.shown):
                self.shown = safe
        return self.shown

    def check(self, text: str) -> str | None:
        """Read the whole reply, its last word included; returns why it breaks character, or None.

        Args:
            text: The complete reply (the text fed so far plus whatever came after it).

        Returns:
            The reason, or None, and then `shown` is the whole reply.
        """
        if self.broken is None:
            self._read_up_to(text, partial=False)
            if self.broken is None:
                self.shown = text.strip()
        return self.broken

    def _read_up_to(self, text: str, partial: bool) -> int:
        """Read `text` on from where earlier calls stopped; returns where it stops being safe (sets `broken`)."""
        if not text.startswith(self._read):
            self._read, self._resume, self._words, self._first_secret = "", [0] * len(self._rules), [], None
        hold = len(text)
        for i, rule in enumerate(self._rules):
            pos = self._resume[i]
            while pos <= len(text):
                m = rule.pattern.search(text, pos, partial=partial)
                if m is None:
                    pos = len(text)
                    break
                if m.partial:
                    pos = m.start()
                    hold = min(hold, pos)
                    break
                reason = rule.judge(m)
                if reason is not None:
                    self.broken, self.break_at = reason, m.start()
                    return m.start()
                pos = max(m.end(), m.start() + 1)
            self._resume[i] = min(pos, len(text))
        if self._secret_words:
            new = [(m.start(), m.group().lower()) for m in _WORD.finditer(text, len(self._read))]
            self._words += new
            if any(w in self._secret_words for _, w in new):
                said = {w for _, w in self._words}
                for secret in self._secrets:
                    if len(secret & said) >= 2:
                        self.broken = "reveals a hidden fact before it was earned"
                        self.break_at = min(i for i, w in self._words if w in secret)
                        return self.break_at
                if self._first_secret is None:
                    self._first_secret = min(i for i, w in new if w in self._secret_words)
            if self._first_secret is not None:
                hold = min(hold, self._first_secret)
        self._read = text
        return hold


def detect_break(conv: Conversation, text: str, directive: Directive) -> str | None:
    """Why `text`, a whole reply of the persona in `conv`, breaks character, or None when it stays in role."""
    return RollingGuard.for_conversation(conv, directive).check(text)
