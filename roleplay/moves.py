"""The vocabulary of learner moves shared by scenarios, rubrics, the offline persona and judge."""

from __future__ import annotations

from typing import Literal, get_args

Move = Literal[
    "greeting",
    "open_question",
    "closed_question",
    "reflection",
    "summary",
    "empathy",
    "affirmation",
    "candid_feedback",
    "advice",
    "directive",
    "blame",
    "threat",
    "dismissive",
    "next_step",
    "off_topic",
    "names_hidden_fact",
    "other",
]
"""What a learner turn does in the conversation; one turn may carry several moves."""

MOVES: tuple[str, ...] = get_args(Move)

MOVE_DESCRIPTIONS: dict[str, str] = {
    "greeting": "opens or sets up the conversation (hello, purpose, agenda)",
    "open_question": "asks a question that invites a full answer (what, how, tell me about)",
    "closed_question": "asks a yes/no or single-fact question",
    "reflection": "gives back what the other person said or feels, in the learner's words",
    "summary": "pulls several points together to check understanding",
    "empathy": "names or acknowledges the other person's feelings or situation",
    "affirmation": "recognises the other person's strengths, effort or intentions",
    "candid_feedback": "states a concrete fact, impact or expectation plainly",
    "advice": "proposes a solution or suggests what the other person should do",
    "directive": "imposes a plan or next step without asking",
    "blame": "accuses, judges character, contempt or sarcasm",
    "threat": "threatens consequences to job, pay or standing as pressure",
    "dismissive": "minimises or brushes aside the other person's concern",
    "next_step": "proposes or agrees concrete next steps, owners or follow-up, with the other person",
    "off_topic": "has nothing to do with the conversation (trivia, nonsense, talking to the system)",
    "names_hidden_fact": "names something the persona has not told yet (decided against the scenario, not classified)",
    "other": "on topic but none of the above (opinions, logistics, filler)",
}

# --- the classifier ----------------------------------------------------------------------------
# Hand-written cues from coaching and motivational-interviewing practice (open vs closed
# questions, simple and complex reflections, affirmations, advice without permission).

import re  # noqa: E402
from dataclasses import dataclass  # noqa: E402

_LEAD = r"^(?:[a-z]+,\s+)?(?:(?:so|and|okay|ok|well|right|now|alright|but|hmm|mm|yeah|yes|i see|then)[,.!]?\s+)*"

_OPEN_Q = re.compile(
    _LEAD + r"(?:what|how|why|where|when|which|who|tell me|talk me|walk me|describe|help me understand|"
    r"(?:can|could|would|will) you (?:tell|say|talk|walk|describe|share|explain|help me)|"
    r"in what way|i'?m curious|i wonder(?:ed)? (?:what|how|why|whether)|i'?d (?:like|love) to (?:hear|understand|know))",
    re.I,
)
_CLOSED_Q = re.compile(
    _LEAD + r"(?:is|are|am|do|does|did|can|could|would|will|won'?t|have|has|had|should|shall|was|were|"
    r"any|anything|isn'?t|aren'?t|don'?t|doesn'?t|didn'?t|haven'?t|right|ok|okay)\b",
    re.I,
)
_HOW_ARE_YOU = re.compile(
    r"^(?:hi|hello|hey)?[ ,!]*(?:\w+[ ,!]+)?(?:how are (?:you|things)(?: doing)?(?: today)?|how'?s it going|how have you been)[?.!]*$",
    re.I,
)
_REFLECTION = re.compile(
    _LEAD + r"(?:it sounds like|sounds like|it sounds as (?:if|though)|it seems(?: like)?|seems like|"
    r"you(?:'re| are) (?:feeling|saying|worried|concerned|frustrated|telling me|not sure|finding|caught|torn|"
    r"stuck|tired|overwhelmed|angry|upset|hoping|wondering|struggling)|you feel|you felt|"
    r"you(?:'ve| have) (?:been|had|got|felt|found|noticed|seen|heard|ended up|spent|taken)|"
    r"you want|you'?d like|you don'?t want|you(?:'re| are) not|you see|you think|you mean|"
    r"what i'?m hearing|i(?:'m| am) hearing|i hear (?:that|you)|if i(?:'ve| have) got (?:this|that|it) right|"
    r"on (?:the )?one hand|part of you|for you,? |you(?:'re| are) (?:\w+ )?(?:about|that)|it'?s (?:been )?(?:hard|difficult) for you|"
    r"you(?:'re| are) (?:really |quite )?(?:\w+ing)|so (?:it'?s|that'?s|the) )",
    re.I,
)
_SUMMARY = re.compile(
    r"\b(?:let me (?:check|summari[sz]e|recap|make sure)|to (?:summari[sz]e|sum up|recap)|so far (?:you|we)|"
    r"if i(?:'ve| have) (?:got|understood) (?:this|that|it|you) (?:right|correctly)|what i(?:'ve| have) heard|"
    r"(?:let me|can i|could i) (?:pull|bring) (?:this|that|it|a few things) together|so,? on (?:the )?one hand|"
    r"a few things (?:you(?:'ve| have) (?:said|mentioned))|you(?:'ve| have) (?:told me|mentioned|said) (?:a few|several|two|three))",
    re.I,
)
_EMPATHY = re.compile(
    r"\b(?:(?:that|it|this) (?:sounds|must be|must have been|seems) (?:like )?(?:really |so |very |pretty |quite )?"
    r"(?:hard|difficult|tough|stressful|frustrating|exhausting|painful|upsetting|worrying|scary|a lot|lonely|"
    r"overwhelming|unsettling|awkward|rough|heavy|draining|unfair|annoying|disappointing)|"
    r"i can (?:see|imagine|understand|hear) (?:how|why|that|it)|i(?:'m| am) (?:so |really |very )?sorry|"
    r"i understand (?:how|why|that|it)|that(?:'s| is) (?:a lot|hard|tough|understandable|completely understandable)|"
    r"thank you for (?:telling|sharing|being (?:honest|open))|thanks for (?:telling|sharing|being (?:honest|open))|"
    r"i appreciate (?:you (?:telling|sharing|being)|your honesty|that you)|no wonder|of course you|"
    r"it makes sense (?:that|you)|makes (?:total |complete )?sense (?:that|you)|"
    r"(?:you|anyone) would (?:feel|be)|how (?:hard|difficult) (?:this|that|it))",
    re.I,
)
_AFFIRMATION = re.compile(
    r"\b(?:you(?:'ve| have) (?:always )?(?:been|done) (?:a )?(?:great|good|excellent|really|so|such|reliable|brilliant|"
    r"solid|strong)|you(?:'re| are) (?:really |very )?(?:good|great|skilled|strong|reliable|committed|experienced) (?:at|with|in)|"
    r"you(?:'ve| have) always been|one of (?:our|my|the team'?s) (?:most|best|strongest)|i (?:really )?(?:value|respect|admire)|your (?:experience|expertise|commitment|work|effort|judg(?:e)?ment) "
    r"(?:is|has|matters|means)|(?:well|nicely) done|great (?:job|work)|(?:one of )?(?:my|our) (?:best|strongest)|"
    r"i(?:'ve| have) always (?:been able to )?(?:rel(?:y|ied)|count(?:ed)?|trust(?:ed)?)|"
    r"shows? (?:real |a lot of )?(?:care|commitment|courage|strength)|that took courage|you care (?:about|a lot))",
    re.I,
)
_ADVICE = re.compile(
    r"\b(?:you (?:should(?! have)|need to|must(?! have)|have to|ought to(?! have)|'d better|had better)|why don'?t you|why not (?:just )?\w+|"
    r"have you (?:tried|thought about|considered)|(?:just|simply) (?:try|do|make|get|start|stop|send|ask|tell|use)|"
    r"i (?:suggest|recommend|advise)|my advice|what you (?:need|have|ought) to do|the (?:answer|solution|fix) is|"
    r"try (?:to|using|setting|blocking)|i(?:'ll| will) (?:sign you up|put you on|send you (?:a|some) (?:course|training|tips))|"
    r"you could (?:just|always|try)|if i were you|make sure (?:you|that you))",
    re.I,
)
_BLAME = re.compile(
    r"\b(?:your (?:fault|problem|mess)|you always|you never|lazy|unprofessional|not good enough|careless|sloppy|"
    r"excuses?|performance (?:review|improvement plan|warning)|disciplinary|written warning|final warning|fired|sack(?:ed)?|"
    r"there will be consequences|face the consequences|i don'?t care (?:why|what|about)|ridiculous|unacceptable|what'?s wrong with you|sort (?:yourself|it) out|"
    r"get your act together|pull your (?:weight|socks up)|can'?t (?:keep|go on) (?:doing|like) this|incompetent|"
    r"you (?:clearly )?(?:don'?t|do not) care|stop (?:whining|complaining|making)|grow up|childish|drama)\b",
    re.I,
)
_DISMISSIVE = re.compile(
    r"\b(?:don'?t worry(?: about it)?|(?:it'?s|that'?s) (?:nothing|no big deal|not a big deal|not that bad)|"
    r"no big deal|calm down|cheer up|(?:it )?could be worse|everyone (?:has|goes through|feels)|"
    r"(?:just )?get over it|not (?:a|that) big (?:a )?deal|you'?ll be fine|"
    r"(?:i'?m )?sure it'?s nothing|at least you|look on the bright side|don'?t take it (?:so )?personally|"
    r"you'?re overthinking|overreacting|too sensitive)\b",
    re.I,
)
_FEEDBACK = re.compile(
    r"\b(?:i(?:'ve| have)? noticed|i(?:'m| am) (?:concerned|worried) (?:about|that)|my concern|"
    r"i need (?:you|the|it|us|them|this|those|to see)|the expectation|i expect|we expect|expected to|"
    r"(?:missed|late|overdue|slipped|behind)|deadline|the impact|impact(?:ed|s)? (?:on|the)|affect(?:ed|s|ing)? (?:the|our|your)|"
    r"the client (?:noticed|chased|complained|asked|emailed|called)|(?:has|have) (?:been )?(?:late|missed)|"
    r"isn'?t working|is not working|not (?:acceptable|okay|ok) (?:for|that)|i want to be (?:clear|honest|direct|straight)|"
    r"to be (?:clear|honest|direct|straight|candid)|i(?:'ll| will) be (?:honest|direct|straight)|"
    r"(?:this|that|it) (?:needs|has) to (?:change|stop|improve)|non-negotiable|the decision (?:is|was|has)|"
    r"(?:has|have) been decided|what i(?:'ve| have) seen|the facts are|here'?s what i(?:'ve| have) (?:seen|noticed))\b",
    re.I,
)
_NEXT_STEP = re.compile(
    r"\b(?:next steps?|let'?s (?:agree|plan|meet|check in|schedule|catch up|set|book|put|try|review|come back|talk again|"
    r"make a plan|work out|figure out|look at)|(?:can|could|shall|should) we (?:agree|meet|check in|schedule|set up|"
    r"try|plan|book|review|catch up|talk again|put)|follow[- ]up|check[- ]in|going forward|from now on|"
    r"action (?:plan|items?)|i(?:'ll| will) (?:send|set up|book|talk to|speak to|follow|put|share|schedule|check|arrange|"
    r"update|look into|make sure)|who (?:will|does|owns)|what will you|what(?:'s| is) one thing you|"
    r"when (?:should|shall|can) we|how about (?:we|you)|would it help if|what would help you|"
    r"(?:in|for) (?:a|two|one) weeks?'? time|next (?:monday|tuesday|wednesday|thursday|friday|week|meeting|one-to-one|1:1))",
    re.I,
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|good (?:morning|afternoon|evening)|thanks for (?:joining|making time|coming|taking the time)|"
    r"thank you for (?:joining|making time|coming|taking the time)|nice to see you|welcome)\b",
    re.I,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Sentence:
    """One sentence of a learner turn and the moves it carries."""

    text: str
    moves: tuple[str, ...]


def split_sentences(text: str) -> list[str]:
    """Split a turn into sentences (keeps '?' and '.' on each)."""
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s and s.strip()]


def classify_sentence(sentence: str) -> tuple[str, ...]:
    """The moves one sentence carries, most specific first."""
    s = sentence.strip()
    low = s.lower().strip("\"'“”‘’ ")
    is_question = s.rstrip().endswith("?")
    found: list[str] = []
    if _GREETING.search(low) or _HOW_ARE_YOU.search(low):
        found.append("greeting")
    if _BLAME.search(low):
        found.append("blame")
    if _DISMISSIVE.search(low):
        found.append("dismissive")
    if _SUMMARY.search(low):
        found.append("summary")
    if _EMPATHY.search(low):
        found.append("empathy")
    if _AFFIRMATION.search(low):
        found.append("affirmation")
    if _NEXT_STEP.search(low):
        found.append("next_step")
    if _ADVICE.search(low):
        found.append("advice")
    reflective = bool(_REFLECTION.search(low))
    if is_question and not _HOW_ARE_YOU.search(low):
        if reflective and not _OPEN_Q.search(low):
            found.append("reflection")  # "So you feel stuck?" is a reflection with a rising tone
        elif _OPEN_Q.search(low):
            found.append("open_question")
        else:
            found.append("closed_question")
    elif not is_question:
        if reflective and "advice" not in found and "blame" not in found:
            found.append("reflection")
        if _FEEDBACK.search(low) and "reflection" not in found:
            found.append("candid_feedback")
        elif _OPEN_Q.search(low) and re.match(_LEAD + r"(?:tell me|talk me|walk me|help me understand|i'?d (?:like|love) to)", low):
            found.append("open_question")  # "Tell me more about that."
    return tuple(dict.fromkeys(found)) or ("other",)


def classify(text: str) -> tuple[str, ...]:
    """All moves a learner turn carries, in order of first appearance; ('other',) if none."""
    moves: list[str] = []
    for sentence in split_sentences(text):
        moves.extend(m for m in classify_sentence(sentence) if m != "other")
    return tuple(dict.fromkeys(moves)) or ("other",)


def classify_sentences(text: str) -> list[Sentence]:
    """Each sentence of a turn with its moves (used for evidence quotes)."""
    return [Sentence(s, classify_sentence(s)) for s in split_sentences(text)]


_DOMINANT = ("threat", "blame", "dismissive")
_PRIORITY = ("summary", "reflection", "empathy", "open_question", "next_step", "directive", "candid_feedback",
             "advice", "affirmation", "closed_question", "greeting", "names_hidden_fact")


_CHECK_BACK = re.compile(r"^(?:is that (?:fair|right|correct|it|ok(?:ay)?)|does that (?:sound right|make sense|fit)|"
                         r"have i got (?:that|it|this) right|did i get (?:that|it) right|right|yes|no)\W*$", re.I)


def main_move_of(sentences: list[tuple[str, tuple[str, ...]]]) -> str:
    """The move a reply should answer, from (sentence, moves) pairs.

    Threats, blame or dismissal dominate; otherwise the last sentence's strongest move. A short check-back
    ("Is that fair?") after a summary or reflection is answered as that summary; a turn that is off topic
    in every sentence is answered as off topic.
    """
    every = {m for _, moves in sentences for m in moves}
    for move in _DOMINANT:
        if move in every:
            return move
    if len(sentences) > 1 and _CHECK_BACK.match(sentences[-1][0].strip()):
        sentences = sentences[:-1]
    for _, moves in reversed(sentences):
        for move in _PRIORITY:
            if move in moves:
                return move
    if sentences and all("off_topic" in moves for _, moves in sentences):
        return "off_topic"
    return "other"


def main_move(text: str) -> str:
    """The move a reply should answer, by the keyword cues alone (see `main_move_of`)."""
    return main_move_of([(x.text, x.moves) for x in classify_sentences(text)])
