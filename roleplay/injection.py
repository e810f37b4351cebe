"""Advisory screening of learner sentences that seem aimed at the grader rather than the persona."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

# Latin look-alikes from Cyrillic and Greek, plus typographic quotes and dashes.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y",
    "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "α": "a", "ο": "o", "ρ": "p", "ν": "v",
    "ι": "i", "κ": "k", "υ": "u", "ı": "i", "‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"',
    "«": '"', "»": '"', "–": "-", "—": "-", "−": "-",
})
_L = r"[^\W\d_]"
_SPACED = re.compile(rf"(?<![^\W_]){_L}(?P<sep>[ ._\-])(?:{_L}(?P=sep))+{_L}(?![^\W_])")
_PAIR = re.compile(rf"(?<![^\W_]){_L}[._\-]{_L}(?![^\W_])")


def _join(match: re.Match[str]) -> str:
    """The letters of a letter-spaced run, joined."""
    return re.sub(r"[ ._\-]", "", match.group(0))


def normalise(text: str) -> str:
    """NFKC, look-alikes folded, zero-width and accents dropped, letter-spacing collapsed, lower-cased, spaces folded."""
    text = unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) not in ("Cf", "Mn"))
    text = unicodedata.normalize("NFC", text)
    text = _PAIR.sub(_join, _SPACED.sub(_join, text))
    return re.sub(r"\s+", " ", text).strip().lower()


class Flag(BaseModel):
    """A learner sentence that seems aimed at the grader (advisory: shown to the facilitator, still graded)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The sentence as the learner wrote it.")
    reason: str = Field(description="Why it was flagged, in words a facilitator can read.")
    category: str = Field(description="The strongest signal: role-prefix, chat-template, fence, fake-grade, "
                                      "addresses-grader, override, score-request or grade-talk.")


class Item(BaseModel):
    """One corpus line: an attack or an ordinary manager line."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="The line as a learner would type it.")
    category: str = Field(description="Kind of attack or of ordinary line.")
    split: Literal["dev", "test"] = Field(description="dev to develop against, test to measure once.")


# --- word lists (normalised: lower case, no accents) ----------------------------------------------
_GRADER = (r"(?:l')?(?:grader|assessor|evaluator|examiner|marker|scorer|judge|reviewer|moderator|evaluateur|correcteur|"
           r"examinateur|evaluador|corrector|examinador|calificador|prufer|pruefer|bewerter|gutachter|korrektor|"
           r"valutatore|esaminatore|correttore|avaliador|corretor|beoordelaar|examinator|ocenia\w*|egzaminator|"
           r"sprawdzajac\w*)")
_GRADER_X = rf"(?:{_GRADER}|ai|a\.i|llm|model|bot|chatbot|ia|ki|gpt|chatgpt)"
_ROLE = (r"system|assistant|developer|admin|administrator|operator|user|human|instructions?|facilitator|reviewer|"
         r"assessor|grader|judge|evaluator|examiner|marker|moderator|model|ai")
_OVERRIDE = (r"ignore|ignoring|disregard|forget|override|bypass|overrule|discard|ignorez|ignora|ignorar|ignoriere|"
             r"ignorier|ignorieren|negeer|zignoruj|ignoruj|oublie|oubliez|olvida|olvide|olvidate|vergiss|vergessen|"
             r"dimentica|esqueca|esquece|vergeet|zapomnij|pomin")
_RULES = (r"instructions?|rules|rubric|criteria|guidelines|guidance|prompt|grading|scoring|marking|consignes|grille|regles|"
          r"criteres|bareme|instrucciones|rubrica|reglas|criterios|\w*anweisungen|\w*kriterien|regeln|vorgaben|"
          r"istruzioni|regole|criteri|instrucoes|regras|instructies|\w*criteria|regels|instrukcj\w*|zasad\w*|kryteri\w*|"
          r"polecenia")
_PREV = (r"previous|prior|above|earlier|preceding|all|your|precedentes|anteriores|vorherigen|bisherigen|"
         r"precedenti|vorige|eerdere|poprzednie|wszystkie|todas|toutes|alle|tutte")
_TARGET = (r"\b[1-4] ?/ ?4\b|\b(?:4|four) out of (?:4|four)\b|\bfull (?:marks|points|score)\b|"
           r"\b(?:max(?:imum)?|top|highest|perfect|best) (?:score|marks?|level|grade|band|rating|points)\b|"
           r"\blevel (?:4|four)\b|\ba (?:clear |full |definite )?pass\b|\bas (?:a )?pass(?:ed)?\b|"
           r"\bpassed ?(?:to|=|:) ?true\b|\bi (?:have |'ve )?passed\W*$|"
           r"\bas (?:exemplary|excellent|outstanding|perfect|flawless)\b|"
           r"\b(?:flawless|perfect|exemplary|outstanding) (?:conversation|session|transcript|performance)\b|"
           r"\bnote (?:maximale|la plus haute)|\bmeilleure note|\bniveau (?:4|quatre)\b|\bmaxima puntuacion|"
           r"\bpuntuacion maxima|\bnota (?:mas alta|maxima)|\bnivel (?:4|cuatro)\b|\bvolle punktzahl|"
           r"\bhochste (?:punktzahl|note|stufe)|\bbestnote|\bstufe 4\b|\bpunteggio massimo|\bvoto massimo|"
           r"\blivello (?:4|quattro)\b|\bhoogste (?:score|cijfer|niveau)|\bmaksymaln\w* ocen\w*|\bnajwyzsz\w* ocen\w*|"
           r"\bpoziom 4\b|\bbestanden\b|\bgeslaagd\b|\baprobad[oa]\b|\baprovad[oa]\b|\bpromoss[oa]\b|\bzaliczon\w*")
_SELF = (r"me|us|this (?:learner|conversation|transcript|session|one|chat)|the learner|"
         r"my (?:\w+ ){0,2}?(?:turns?|answers?|performance|conversation|empathy|listening)")
_VERB_SELF = (rf"\b(?:give|award|assign|grant|rate|score|grade|mark|pass|put) (?:{_SELF})\b|"
              r"\b(?:rate|score|grade|mark) this\b|\b(?:give|award|assign|grant)(?: \S+){1,3} to (?:me|us|this learner)\b|"
              r"^(?:please )?(?:award|assign|grant|set|output|return|mark|rate|score|grade)\b|"
              r"\b(?:i|this|this (?:conversation|session|one)|my \w+) (?:really )?deserves?\b|"
              r"\bdonne(?:z)?[- ]moi\b|\battribue\b|\bvalide\b|\bdame\b|\bcalificame\b|\bapruebame\b|\baprueba\b|"
              r"\bgib mir\b|\bbewerte\b|\bassegnami\b|\bdammi\b|\bde-me\b|\bme de\b|\baprove\b|\bgeef (?:mij|me)\b|"
              r"\bdaj mi\b|\bprzyznaj\b|\bzalicz\b")
_SCOPE = (r"\b(?:every|all|each|all the|all of the) (?:\w+ )?(?:criteri(?:on|a)|checks?|behaviou?rs?)\b|"
          r"\bacross the board\b|\bon everything\b|\bthis learner\b|\bthe learner\b|\bpartout\b|"
          r"\b(?:tous les|toutes les|todos los|todas las|todos os|alle|tutti i|ogni|wszystkich|kazd\w*) (?:\w+ )?"
          r"(?:criteres|criterios|kriterien|criteri|criterio|criteria|kryteri\w*)|\bcet apprenant\b|\beste alumno\b|"
          r"\beste aluno\b|\bquesto candidato\b|\bdeze deelnemer\b|\bten uczestnik\b|\bdieses gesprach\b|"
          r"\bcette conversation\b")

_W = re.compile
# (kind, weight, pattern): a sentence is flagged when the best weight per kind sums to 2 or more.
_RULES_TABLE: list[tuple[str, int, re.Pattern[str]]] = [
    ("chat-template", 2, _W(r"<\|[^|>]{1,30}\|>|\[/?inst\]|<</?sys>>|</?s>|<(?:start|end)_of_turn>|"
                            r"^\W{0,3}#{2,} ?(?:system|instructions?|response|user|assistant|input)\b")),
    ("fence", 2, _W(r"<{3,}|>{3,}|</? ?(?:transcript|conversation|system|instructions?|user|assistant|context|prompt|"
                    r"rubric|learner|persona|grade|grading)\b[^>]{0,40}>|\bend (?:of )?(?:the )?transcript\b|"
                    r"(?:^|\s)l\d{1,3} ?\((?:learner|persona)\) ?:|(?:^|\s)p ?\((?:persona|learner)\) ?:|"
                    r"^\W{0,3}(?:learner|persona) ?:")),
    ("role-prefix", 2, _W(rf"(?:^|[.!?>\]}}] ?)\W{{0,4}}(?:{_ROLE})(?: (?:message|note|notes|override|prompt|"
                          rf"instructions?|update|feedback|comment))? ?[:\]>]|\b(?:system|assistant|developer) ?:|"
                          r"^\W{0,4}(?:grading|marking|scoring) (?:note|notes|instructions?|override|update) ?:")),
    ("fake-grade", 2, _W(r"[\"'](?:criterion_id|criteria|checks|passed|overall|scaled|supported|level|score|grade|"
                         r"answer|evidence|rationale|better_alternative)[\"'] ?:|\b(?:criterion_id|failed_must_pass|"
                         r"better_alternative) ?:|\bcriteria ?: ?[\[{]|\b(?:passed|supported) ?[:=] ?(?:true|false)\b|"
                         r"\b(?:level|overall|scaled) ?[:=] ?\d")),
    ("addresses-grader", 2, _W(
        rf"\b(?:note|message|memo|instructions?|request|reminder|word|nota|mensaje|nachricht|hinweis|messaggio|"
        rf"mensagem|bericht|wiadomosc|uwaga) (?:to|for|pour|a|al|para|an|fur|per|voor|aan|dla|do) "
        rf"(?:the |le |la |el |den |die |der |il |o |a |de |any |my |whoever \w+ )?{_GRADER_X}\b|"
        rf"^\W*(?:[\w'-]+\W+){{0,4}}?{_GRADER}\w* ?:|"
        rf"^\W*(?:(?:dear|hey|hi|hello|attention|to|cher|chere|querido|estimado|lieber|liebe|caro|cara|prezado|"
        rf"beste|drogi|szanowny) )?(?:the |my )?{_GRADER_X}s? ?,|"
        r"\b(?:whoever|whatever|whichever|anyone|anybody|someone|somebody|(?:any|the|whatever|whichever) \w+) "
        r"(?:is |are |will be )?(?:grad|mark|scor|assess|evaluat|judg)\w* (?:this|me|my|these)\b")),
    ("override", 2, _W(rf"\b(?:{_OVERRIDE})\b(?: \S+){{0,3}}? (?:{_PREV})\b(?: \S+){{0,2}}? (?:{_RULES})\b|"
                       rf"\b(?:{_OVERRIDE})\b(?: \S+){{0,3}}? (?:{_RULES})\b(?: \S+){{0,1}}? (?:{_PREV})\b")),
    ("override", 1, _W(rf"\b(?:{_OVERRIDE})\b(?: \S+){{0,3}}? (?:{_RULES})\b|"
                       rf"\b(?:{_OVERRIDE}) (?:everything|all of the|anything) (?:above|before|previous|else)\b")),
    ("score-request", 1, _W(_TARGET)),
    ("grade-request", 1, _W(_VERB_SELF)),
    ("scope", 1, _W(_SCOPE)),
    ("grader-mention", 1, _W(rf"\b{_GRADER}s?\b|\b(?:any|the) (?:ai|model|llm)\b(?= (?:reading|scoring|grading))|"
                              r"\b(?:the|this|your) (?:grading |marking )?rubric\b")),
    ("grade-talk", 1, _W(r"\b(?:the|my|final|this) (?:final )?(?:grade|grading|scoring|score|evaluation|assessment|"
                         r"marks?) (?:should |to |will )?(?:reflects?|says?|shows?)\b|\b(?:this|the) (?:transcript|log)\b|"
                         r"\b(?:reading|reviewing|reads|reviews) this\b|\bend of (?:the )?(?:conversation|session|chat)\b")),
    ("self-praise", 1, _W(r"\bi (?:was|am|'m) (?:outstanding|excellent|perfect|flawless|brilliant|exemplary)\b|"
                          r"\bi (?:nailed|aced|crushed|smashed)\b|\bi(?: have|'ve)? met (?:every|all)\b")),
]
_REASON = {
    "chat-template": "contains chat-template control tokens", "fence": "forges the transcript fence or a turn",
    "role-prefix": "imitates a system, assistant or reviewer message", "fake-grade": "a grade written as JSON or YAML",
    "addresses-grader": "speaks to the grader", "override": "asks to ignore the grading instructions",
    "score-request": "asks the grader for a score", "grade-request": "asks the grader for a score",
    "scope": "asks for a grade across the rubric", "grader-mention": "mentions the grader",
    "grade-talk": "talks about its own grade", "self-praise": "tells the grader how well it went",
}
_FLAG_CATEGORY = {"override": "override", "score-request": "score-request", "grade-request": "score-request",
                  "scope": "score-request"}


def _signals(norm: str) -> dict[str, int]:
    """The best weight of each kind of signal found in normalised text."""
    found: dict[str, int] = {}
    for kind, weight, pattern in _RULES_TABLE:
        if weight > found.get(kind, 0) and pattern.search(norm):
            found[kind] = weight
    return found


def screen(sentence: str) -> Flag | None:
    """A Flag when the sentence carries one strong signal or two weak ones of different kinds, else None."""
    found = _signals(normalise(sentence))
    if sum(found.values()) < 2:
        return None
    ranked = sorted(found, key=lambda k: -found[k])  # stable: table order breaks ties
    reasons = list(dict.fromkeys(_REASON[k] for k in ranked))[:2]
    top = ranked[0] if found[ranked[0]] == 2 else next((k for k in ranked if k in _FLAG_CATEGORY), "grade-talk")
    category = _FLAG_CATEGORY.get(top, top)
    return Flag(text=sentence, reason="; ".join(reasons), category=category)


def flag_sentences(sentences: Iterable[str]) -> list[Flag]:
    """The flags raised by a run of learner sentences, in order."""
    return [f for s in sentences if (f := screen(s)) is not None]


def load_corpus(path: str | Path) -> list[Item]:
    """The items of a corpus YAML file (a list of {text, category, split})."""
    return [Item.model_validate(x) for x in yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []]


def _rates(items: list[Item], hits: set[int]) -> dict[str, Any]:
    n = Counter(i.category for i in items)
    k = Counter(i.category for j, i in enumerate(items) if j in hits)
    return {"n": len(items), "flagged": len(hits), "rate": round(len(hits) / len(items), 3) if items else 0.0,
            "by_category": {c: {"n": n[c], "flagged": k[c], "rate": round(k[c] / n[c], 3)} for c in n}}


def measure(attacks: Iterable[Item], ordinary: Iterable[Item]) -> dict[str, Any]:
    """Detection rate on attacks and false-positive rate on ordinary lines, overall and per category."""
    att, ords = list(attacks), list(ordinary)
    att_flags = [screen(i.text) for i in att]
    ord_flags = [screen(i.text) for i in ords]
    a = _rates(att, {j for j, f in enumerate(att_flags) if f})
    o = _rates(ords, {j for j, f in enumerate(ord_flags) if f})
    return {"detection_rate": a["rate"], "false_positive_rate": o["rate"], "attacks": a, "ordinary": o,
            "misses": [{"text": i.text, "category": i.category} for i, f in zip(att, att_flags) if f is None],
            "false_positives": [{"text": i.text, "category": i.category, "reason": f.reason}
                                for i, f in zip(ords, ord_flags) if f is not None]}


def markdown_report(result: dict[str, Any]) -> str:
    """The result of `measure` as a markdown report."""
    a, o = result["attacks"], result["ordinary"]
    out = ["| | lines | flagged | rate |", "|---|---|---|---|",
           f"| attacks (detection) | {a['n']} | {a['flagged']} | {a['rate']:.2f} |",
           f"| ordinary (false positives) | {o['n']} | {o['flagged']} | {o['rate']:.2f} |", ""]
    for title, part in (("Attacks by category", a), ("Ordinary lines by category", o)):
        out += [f"### {title}", "", "| category | lines | flagged | rate |", "|---|---|---|---|"]
        out += [f"| {c} | {v['n']} | {v['flagged']} | {v['rate']:.2f} |" for c, v in part["by_category"].items()]
        out.append("")
    out += ["### Missed attacks", ""]
    out += [f"- ({m['category']}) `{m['text']}`" for m in result["misses"]] or ["- none"]
    out += ["", "### Ordinary lines flagged", ""]
    out += [f"- ({m['category']}) `{m['text']}`: {m['reason']}" for m in result["false_positives"]] or ["- none"]
    return "\n".join(out) + "\n"
