"""Turns and transcripts: who said what, when, with token counts; read from the store or from files."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roleplay.errors import RoleplayError
from roleplay.meeting import MeetingFacts

Speaker = Literal["learner", "persona"]
MAX_TRANSCRIPT_BYTES = 2 * 1024 * 1024


class TranscriptError(RoleplayError):
    """A transcript file cannot be used."""


class Turn(BaseModel):
    """One utterance in a conversation."""

    model_config = ConfigDict(extra="forbid")

    speaker: Speaker = Field(description="'learner' (the person practising) or 'persona' (the AI character).")
    text: str = Field(description="What was said.")
    who: str | None = Field(default=None, description="In a scene with several personas: the cast id of the persona who "
                            "spoke (None for the learner, or when there is one persona).")
    at: datetime | None = Field(default=None, description="When it was said (UTC).")
    tokens: int | None = Field(default=None, description="Token count of the text, if known.")
    reading: dict[str, Any] | None = Field(default=None, description="How a learner turn was read when it was said "
                                           "(moves, relevance, language; compact), if recorded.")

    @classmethod
    def from_row(cls, row: Any) -> Turn:
        """The turn of a stored row (`roleplay.models.TurnRow`)."""
        meta = row.meta or {}
        return cls(speaker=row.speaker, text=row.text, at=row.created_at, tokens=row.tokens, who=meta.get("who"),
                   reading=meta.get("reading"))

    def meta(self) -> dict[str, Any] | None:
        """What is stored beside the text (`TurnRow.meta`): the speaker in a scene, the reading of a learner turn."""
        out = {k: v for k, v in (("who", self.who), ("reading", self.reading)) if v is not None}
        return out or None


class Transcript(BaseModel):
    """A conversation between a learner and a persona."""

    model_config = ConfigDict(extra="forbid")

    scenario_id: str | None = Field(default=None, description="Scenario the conversation belongs to.")
    level: str | None = Field(default=None, description="Difficulty level practised.")
    session_id: str | None = Field(default=None, description="Stored practice session id, if any.")
    turns: list[Turn] = Field(default_factory=list, description="The turns, in order.")
    meeting: MeetingFacts | None = Field(default=None, description="In a meeting with several personas: what the "
                                         "meeting counted (airtime, who was asked, sides, interruptions, decisions).")

    @property
    def learner_turns(self) -> list[Turn]:
        """Only the learner's turns (what is graded)."""
        return [t for t in self.turns if t.speaker == "learner"]

    def to_text(self, learner: str = "Learner", persona: str = "Persona", names: dict[str, str] | None = None) -> str:
        """Plain text, one `Name: text` line per turn (`names`: cast id -> name, for scenes with several personas)."""
        names = names or {}
        return "\n".join(
            f"{learner if t.speaker == 'learner' else names.get(t.who or '', persona)}: {t.text}" for t in self.turns)


_LINE = re.compile(r"^\s*(learner|manager|you|persona|[A-Z][\w .'-]{0,40}?)\s*:\s*(.*)$", re.I)


def parse_text_transcript(text: str, persona_names: tuple[str, ...] = ()) -> Transcript:
    """Parse `Learner: ...` / `Persona: ...` lines; lines without a speaker continue the previous turn."""
    turns: list[Turn] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        m = _LINE.match(raw)
        if m:
            who = m.group(1).strip().lower()
            speaker: Speaker = "learner" if who in ("learner", "manager", "you") else "persona"
            if who not in ("learner", "manager", "you", "persona") and persona_names and who not in {
                n.lower() for n in persona_names
            }:
                speaker = "persona"
            turns.append(Turn(speaker=speaker, text=m.group(2).strip()))
        elif turns:
            turns[-1] = Turn(speaker=turns[-1].speaker, text=f"{turns[-1].text} {raw.strip()}")
    return Transcript(turns=turns)


def load_transcript(path: str | Path) -> Transcript:
    """Read a transcript from JSON (the Transcript schema) or plain text (`Learner:` / `Persona:` lines).

    Raises:
        TranscriptError: the file is missing, too large, not UTF-8, malformed, or has no learner turns.
    """
    p = Path(path)
    if not p.is_file():
        raise TranscriptError(f"{p}: no such transcript file")
    if p.stat().st_size > MAX_TRANSCRIPT_BYTES:
        raise TranscriptError(f"{p}: larger than {MAX_TRANSCRIPT_BYTES} bytes; a practice transcript is far smaller")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise TranscriptError(f"{p}: not UTF-8 text; save it as UTF-8") from None
    if p.suffix == ".json":
        try:
            transcript = Transcript.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise TranscriptError(f"{p}: {where}: {first['msg']}") from None
    else:
        transcript = parse_text_transcript(text)
    if not any(t.text.strip() for t in transcript.learner_turns):
        raise TranscriptError(f"{p}: no learner turns with text found; start learner lines with 'Learner:'")
    return transcript
