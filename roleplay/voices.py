"""Voices that word the persona's decided reply with a model, and the in-character guard.

A hidden fact's text never enters the model's context before the engine has decided to reveal it: the model
gets the fact's vague `hint` at most, and facts already revealed are recapped so they survive trimming.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from roleplay.persona import CharacterBreak, Conversation, Directive
from roleplay.scenario import Scenario
from roleplay.tokens import trim_to_budget

if TYPE_CHECKING:
    from roleplay.llm import ChatModel, GenerationSettings


def persona_instructions(scenario: Scenario, level: str) -> str:
    """The system prompt that puts a model in the persona's shoes."""
    p, lvl = scenario.persona, scenario.levels.get(level)
    others = "".join(f"\n- {o.name} ({o.role}): {o.stance}" for o in scenario.others)
    return (
        f"You are {p.name}, {p.role}. This is a role-play for a manager practising a hard conversation; "
        f"you are the other person in it, never a coach or an assistant.\n\n"
        f"Personality: {p.personality}\nHow you speak: {p.speaking_style}\n"
        f"What you know and may say openly: {p.background or '(only what the situation implies)'}\n"
        f"What you want: {p.wants}\nWhat you resist: {'; '.join(p.resists)}\n"
        f"Lines you use to push back: {' / '.join(p.pushback)}\n"
        f"Resistance at this level: {lvl.resistance}.\n"
        + (f"Others present:{others}\n" if others else "")
        + f"\nThe situation (as the manager was briefed): {scenario.briefing.strip()}\n\n"
        "Rules: stay in character in every reply; speak only as yourself, in the first person, in one to four "
        "sentences of plain speech (no lists, no headings, no stage directions beyond a short bracket); never "
        "say you are an AI, a model or an assistant; never offer help, tips or apologies for confusion; do not "
        "make the manager's job easy: answer only what you are asked and reveal private matters only when told "
        "to below."
    )


def turn_instruction(conv: Conversation, directive: Directive) -> str:
    """The instruction placed after the history, where models follow it best. It never holds an unrevealed fact."""
    scn, st = conv.scenario, conv.state
    name = scn.persona.name
    told = [scn.fact(fid) for fid in st.revealed_ids if fid != directive.fact_id]
    hints = [f.hint for f in scn.hidden_facts if f.id not in st.revealed_ids and f.id != directive.fact_id]
    mood = {"guarded": "guarded and short", "warming": "cautious but starting to engage",
            "open": "open and cooperative"}[st.mood]
    length = {"guarded": 2, "warming": 3, "open": 4}[st.mood]
    if directive.kind == "reveal":
        fact = scn.fact(directive.fact_id or "")
        act = (f"The manager has earned your trust: now tell them, in your own words, this private fact: "
               f"{fact.fact} For example: \"{directive.line}\"")
    elif directive.kind == "named":
        fact = scn.fact(directive.fact_id or "")
        act = (f"The manager has just said something private about you that you had not told them: {fact.fact} "
               f"React in character, along these lines: \"{directive.line}\"")
    elif directive.kind in ("success", "walkout", "timeout"):
        act = f"End the conversation now, in your own words, along these lines: \"{directive.line}\""
    elif directive.kind == "language":
        act = f"The manager wrote in another language. Say, in character, along these lines: \"{directive.line}\""
    elif directive.move == "off_topic":
        act = (f"The manager said something that has nothing to do with this conversation. React in character, "
               f"puzzled, and steer back; something like: \"{directive.line}\"")
    else:
        act = (f"Reply to the manager's last message (it reads as: {directive.move.replace('_', ' ')}). "
               f"Something in this spirit: \"{directive.line}\"")
    recap = "".join(f"\n- {f.fact}" for f in told)
    return (
        f"Stay in character as {name}. Your mood now: {mood} (trust {st.trust:.1f}/5). {act}\n"
        + (f"What you have already told the manager (stay consistent with it):{recap}\n" if recap else "")
        + (f"You are holding back {'; '.join(hints)}: do not bring it up or hint at it.\n" if hints else "")
        + f"Reply with your spoken words only, at most {length} sentences."
    )


_BREAKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(?:as an? (?:ai|artificial intelligence|language model|assistant|chatbot)|i(?:'m| am) (?:just |only )?an? "
                r"(?:ai|language model|assistant|chatbot|virtual assistant)|language model|openai|large language)\b", re.IGNORECASE),
     "talks about being an AI or a language model"),
    (re.compile(r"\b(?:how (?:can|may) i (?:help|assist) you|i(?:'d| would) be (?:happy|glad) to help|is there anything else|"
                r"i hope (?:this|that) helps|feel free to (?:ask|reach out)|great question|certainly!|absolutely!|"
                r"here are (?:some|a few) (?:tips|steps|ways|suggestions))", re.IGNORECASE),
     "talks like a helpful assistant"),
    (re.compile(r"\b(?:i apologi[sz]e for (?:any|the) confusion|sorry for (?:any|the) confusion|"
                r"i (?:can(?:no|')t|am unable to|won'?t) (?:role-?play|pretend|continue (?:this|the) (?:role|scenario)))", re.IGNORECASE),
     "steps out of the role-play"),
    (re.compile(r"(?:^|\n)\s*(?:[-*•]|\d+\.)\s+\S.*\n\s*(?:[-*•]|\d+\.)\s+\S", re.MULTILINE), "answers with a list"),
    (re.compile(r"^\s*(?:#{1,6}\s|\*\*[^*]+\*\*:)", re.MULTILINE), "uses document formatting"),
]
GUARD_PREFIX_CHARS = 80


def detect_break(conv: Conversation, text: str, directive: Directive) -> str | None:
    """Why `text` breaks character, or None when it stays in role."""
    for pattern, reason in _BREAKS:
        if pattern.search(text):
            return reason
    names = re.findall(r"\b(?:my name is|i am|i'm)\s+([A-Z][a-z]+)\b", text)
    own = {part.lower() for part in conv.scenario.persona.name.split()}
    for n in names:
        if n.lower() not in own and n.lower() not in {"not", "sorry", "fine", "just", "here", "sure", "okay", "worried"}:
            return f"claims to be {n}, not {conv.scenario.persona.name}"
    if directive.kind != "reveal" and _leaks(conv, text):
        return "reveals a hidden fact before it was earned"
    return None


def _distinctive(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{6,}", text.lower())}


def _known_words(conv: Conversation) -> set[str]:
    """Distinctive words the learner already knows: the briefing, the persona's background and the conversation."""
    scn = conv.scenario
    words = _distinctive(scn.briefing + " " + scn.persona.background)
    for turn in conv.transcript.turns:
        words |= _distinctive(turn.text)
    return words


def _leaks(conv: Conversation, text: str) -> bool:
    known = _known_words(conv)
    said = _distinctive(text)
    for fact in conv.scenario.hidden_facts:
        if fact.id in conv.state.revealed_ids:
            continue
        secret = _distinctive(fact.fact + " " + fact.reveal_line) - known
        if len(secret & said) >= 2:
            return True
    return False


INSTRUCTION_MARK = "[For your reply (not said by the manager):"
"""Opens the turn instruction folded into the manager's last message; it is closed by "]"."""


def strict_roles(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Messages a strict chat template accepts: one system message, then user and assistant turns alternating.

    Later system messages (a note that turns were trimmed) join the first; assistant turns before the first user
    turn (the persona's opening line) are told in it as what the persona has said; consecutive turns of one role are
    joined into one.
    """
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    said_first = []
    while turns and turns[0]["role"] == "assistant":
        said_first.append(turns.pop(0)["content"])
    if said_first:
        system.append("Earlier in the conversation you said: " + " ".join(f'"{t}"' for t in said_first))
    out: list[dict[str, str]] = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    for m in turns:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": f"{out[-1]['content']}\n\n{m['content']}"}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


class LLMVoice:
    """The persona voiced by a chat model, streamed through the in-character guard.

    Args:
        model: The chat model (`roleplay.llm.ChatModel`); only `stream` is used.
        gen: Generation settings passed to every call.
        max_repairs: Regenerations allowed for a reply that breaks character before the scripted line is used.
    """

    name = "llm"

    def __init__(self, model: ChatModel, gen: GenerationSettings | None = None, max_repairs: int = 2) -> None:
        self.model = model
        self.gen = gen
        self.max_repairs = max_repairs

    def messages(self, conv: Conversation, directive: Directive, repair: str | None = None) -> list[dict[str, str]]:
        """The request: instructions, the (trimmed) history, then the turn instruction after it.

        The shape suits strict chat templates: one system message first, then turns that alternate starting with
        the manager's (the persona's opening line, and anything trimming leaves before the first manager turn, is
        told in the system message), and the turn instruction folded into the last manager turn.
        """
        final = turn_instruction(conv, directive)
        if repair:
            final += (f"\nIMPORTANT: your previous attempt was rejected because it {repair}. You are "
                      f"{conv.scenario.persona.name}, a person in this conversation, not an assistant. Answer again "
                      "in character, plainly, in your own voice.")
        history = conv.history_messages()
        if history and history[-1]["role"] == "user":
            last = history[-1]
            history[-1] = {"role": "user", "content": f"{last['content']}\n\n{INSTRUCTION_MARK} {final}]"}
        else:
            history.append({"role": "user", "content": f"{INSTRUCTION_MARK} {final}]"})
        msgs = [{"role": "system", "content": persona_instructions(conv.scenario, conv.level_name)}, *history]
        trimmed, dropped = trim_to_budget(msgs, conv.scenario.token_budget, conv.counter)
        conv.state.trimmed_turns = max(conv.state.trimmed_turns, dropped)
        return strict_roles(trimmed)

    def speak(self, conv: Conversation, directive: Directive) -> Iterator[str]:
        """Stream the model's reply, holding back the first characters until the guard has seen them."""
        repair: str | None = None
        for _attempt in range(self.max_repairs + 1):
            msgs = self.messages(conv, directive, repair)
            conv.state.prompt_tokens += conv.counter.count_messages(msgs)
            text, shown, broken = "", False, None
            for delta in self.model.stream(msgs, self.gen):
                text += delta
                if shown:
                    yield text
                elif len(text) >= GUARD_PREFIX_CHARS:
                    broken = detect_break(conv, text, directive)
                    if broken:
                        break
                    shown = True
                    yield text
            conv.state.completion_tokens += conv.counter.count(text)
            text = text.strip()
            broken = broken or detect_break(conv, text, directive) or (None if text else "gave an empty reply")
            if broken is None:
                if not shown:
                    yield text
                return
            conv.state.breaks.append(CharacterBreak(turn=conv.state.learner_turns, reason=broken, text=text,
                                                    repair="regenerated"))
            repair = broken
        conv.state.breaks[-1] = conv.state.breaks[-1].model_copy(update={"repair": "scripted"})
        yield directive.line
