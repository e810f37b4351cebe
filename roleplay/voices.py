"""Voices that word the persona's decided reply with a model, streamed through the in-character guard.

The guard's rules live in `roleplay.guard`; `detect_break` and `INSTRUCTION_MARK` are also importable from here.

A hidden fact's text never enters the model's context before the engine has decided to reveal it: the model
gets the fact's vague `hint` at most, and facts already revealed are recapped so they survive trimming.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from roleplay.guard import INSTRUCTION_MARK, RollingGuard, detect_break
from roleplay.persona import CharacterBreak, Conversation, Directive
from roleplay.scenario import Scenario
from roleplay.tokens import persona_budget, trim_to_budget

if TYPE_CHECKING:
    from roleplay.llm import ChatModel, GenerationSettings

__all__ = ["INSTRUCTION_MARK", "LLMVoice", "detect_break", "persona_instructions", "strict_roles", "turn_instruction"]


def persona_instructions(scenario: Scenario, level: str, who: str | None = None) -> str:
    """The system prompt that puts a model in one persona's shoes (`who`: a cast id; the first persona by default).

    It holds this persona's own card only: of the others in a scene, their names and roles, never their background
    or what they keep to themselves.
    """
    member = scenario.member(who) if who else scenario.members[0]
    p, lvl = member.persona, scenario.levels.get(level)
    cast = [m for m in scenario.members if m.id != member.id]
    others = "".join(f"\n- {m.persona.name} ({m.persona.role}), in the meeting" for m in cast) + "".join(
        f"\n- {o.name} ({o.role}): {o.stance}" for o in scenario.others)
    scene_rule = (f"This is a meeting with several people; you are {p.name} only. Never speak for anyone else, never "
                  "write their lines or what they do, and do not repeat what they said. " if cast else "")
    return (
        f"You are {p.name}, {p.role}. This is a role-play for a manager practising a hard conversation; "
        f"you are {'one of the people' if cast else 'the other person'} in it, never a coach or an assistant.\n\n"
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
        "to below. " + scene_rule
    ).rstrip()


def turn_instruction(conv: Conversation, directive: Directive) -> str:
    """The instruction placed after the history, where models follow it best. It never holds an unrevealed fact.

    Only the speaker's own facts appear: those already told are recapped, those still held back as their hint.
    """
    scn, st = conv.scenario, conv.state
    member = scn.member(directive.who) if directive.who else conv.lead
    mind = conv.mind(member.id)
    name = member.persona.name
    own = {f.id for f in member.hidden_facts}
    told = [scn.fact(fid) for fid in st.revealed_ids if fid != directive.fact_id and fid in own]
    hints = [f.hint for f in member.hidden_facts if f.id not in st.revealed_ids and f.id != directive.fact_id]
    mood = {"guarded": "guarded and short", "warming": "cautious but starting to engage",
            "open": "open and cooperative"}[mind.mood]
    length = {"guarded": 2, "warming": 3, "open": 4}[mind.mood]
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
    elif directive.kind == "interject":
        act = (f"The manager was not speaking to you, but you speak up now, briefly, in character, something like: "
               f"\"{directive.line}\"")
        length = min(length, 2)
    elif directive.kind == "join":
        act = f"You have just joined the call late. Say so briefly, along these lines: \"{directive.line}\""
        length = 2
    elif directive.move == "off_topic":
        act = (f"The manager said something that has nothing to do with this conversation. React in character, "
               f"puzzled, and steer back; something like: \"{directive.line}\"")
    else:
        act = (f"Reply to the manager's last message (it reads as: {directive.move.replace('_', ' ')}). "
               f"Something in this spirit: \"{directive.line}\"")
    recap = "".join(f"\n- {f.fact}" for f in told)
    return (
        f"Stay in character as {name}. Your mood now: {mood} (trust {mind.trust:.1f}/5). {act}\n"
        + (f"What you have already told the manager (stay consistent with it):{recap}\n" if recap else "")
        + (f"You are holding back {'; '.join(hints)}: do not bring it up or hint at it.\n" if hints else "")
        + f"Reply with your spoken words only, at most {length} sentences."
    )


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
            name = conv.scenario.member(directive.who or conv.lead.id).persona.name
            final += (f"\nIMPORTANT: your previous attempt was rejected because it {repair}. You are {name}, a person in "
                      "this conversation, not an assistant. Answer again in character, plainly, in your own voice.")
        history = conv.history_messages(directive.who or None)
        if history and history[-1]["role"] == "user":
            last = history[-1]
            history[-1] = {"role": "user", "content": f"{last['content']}\n\n{INSTRUCTION_MARK} {final}]"}
        else:
            history.append({"role": "user", "content": f"{INSTRUCTION_MARK} {final}]"})
        msgs = [{"role": "system", "content": persona_instructions(conv.scenario, conv.level_name, directive.who or None)},
                *history]
        trimmed, dropped = trim_to_budget(msgs, persona_budget(
            conv.scenario.token_budget, getattr(self.model, "context_window", None),
            getattr(self.gen, "max_tokens", None) or getattr(self.model, "reply_max_tokens", None),
            conv.counter.estimated), conv.counter)
        conv.state.trimmed_turns = max(conv.state.trimmed_turns, dropped)
        return strict_roles(trimmed)

    def speak(self, conv: Conversation, directive: Directive) -> Iterator[str]:
        """Stream the model's reply through the rolling guard: only text that cannot turn into a break is shown.

        A break seen mid-stream stops the model's stream and the reply is generated again (the learner never saw
        the break); the complete reply is checked whole before it stands.
        """
        repair: str | None = None
        for _attempt in range(self.max_repairs + 1):
            msgs = self.messages(conv, directive, repair)
            conv.state.prompt_tokens += conv.counter.count_messages(msgs)
            guard = RollingGuard.for_conversation(conv, directive)
            text, shown = "", ""
            stream = self.model.stream(msgs, self.gen)
            try:
                for delta in stream:
                    text += delta
                    safe = guard.feed(text)
                    if guard.broken:
                        break
                    if len(safe) > len(shown):
                        shown = safe
                        yield shown
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            conv.state.completion_tokens += conv.counter.count(text)
            broken = guard.check(text) or (None if text.strip() else "gave an empty reply")
            text = text.strip()
            if broken is None:
                if text != shown:
                    yield text
                return
            conv.state.breaks.append(CharacterBreak(turn=conv.state.learner_turns, reason=broken, text=text,
                                                    repair="regenerated"))
            repair = broken
        conv.state.breaks[-1] = conv.state.breaks[-1].model_copy(update={"repair": "scripted"})
        yield directive.line
