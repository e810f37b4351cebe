"""Pure presentation: transcripts with highlighted evidence, grade cards, history and heat maps as HTML."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

CSS = """
.rp-transcript {display: flex; flex-direction: column; gap: 6px; max-height: 900px; overflow-y: auto; padding: 4px;}
.rp-turn {padding: 6px 10px; border-radius: 8px; line-height: 1.45;}
.rp-turn .rp-who {font-weight: 600; font-size: 0.85em; opacity: 0.75; display: block;}
.rp-turn.learner {background: var(--color-accent-soft, #eef2ff); margin-left: 12%;}
.rp-turn.persona {background: var(--block-background-fill, #f4f4f5); margin-right: 12%;
                  border: 1px solid var(--border-color-primary, #e4e4e7);}
.rp-transcript mark {background: #fde68a; color: #111; padding: 0 2px; border-radius: 3px;}
.rp-grade {display: flex; flex-direction: column; gap: 8px;}
.rp-summary {font-weight: 600; padding: 8px 10px; border-radius: 8px;}
.rp-summary.pass {background: #dcfce7; color: #14532d;}
.rp-summary.fail {background: #fef3c7; color: #713f12;}
.rp-crit {border: 1px solid var(--border-color-primary, #e4e4e7); border-radius: 8px; padding: 8px 10px;}
.rp-crit h4 {margin: 0 0 4px 0; font-size: 1em;}
.rp-level {display: inline-block; min-width: 2.6em; text-align: center; border-radius: 999px; padding: 0 8px;
           font-weight: 700; margin-left: 6px; color: #fff;}
.rp-l1 {background: #dc2626;} .rp-l2 {background: #ea580c;} .rp-l3 {background: #16a34a;} .rp-l4 {background: #15803d;}
.rp-changed {font-size: 0.85em; color: #7c3aed; margin-left: 6px;}
.rp-quote {font-style: italic; margin: 2px 0 2px 8px;}
.rp-quote mark {background: #fde68a; color: #111;}
.rp-better {margin-top: 4px; padding: 4px 8px; border-left: 3px solid #16a34a; background: rgba(22,163,74,0.07);}
.rp-unsupported {color: #b91c1c; font-weight: 600;}
.rp-heat {border-collapse: collapse; margin: 4px 0;}
.rp-heat td, .rp-heat th {width: 3.2em; height: 2.4em; text-align: center; border: 1px solid #d4d4d8;}
.rp-heat th {background: transparent; font-weight: 600;}
.rp-pending {padding: 10px 12px; border-radius: 8px; background: #e0f2fe; color: #0c4a6e; font-weight: 600;}
.rp-rejected {padding: 10px 12px; border-radius: 8px; background: #fee2e2; color: #7f1d1d;}
.rp-banner {padding: 6px 10px; border-radius: 8px; background: #f1f5f9; color: #0f172a;}
.rp-drift {padding: 6px 10px; border-radius: 8px; font-weight: 600;}
.rp-drift.bad {background: #fee2e2; color: #7f1d1d;} .rp-drift.ok {background: #dcfce7; color: #14532d;}
.rp-preliminary {padding: 10px 12px; border-radius: 8px; background: #fef9c3; color: #713f12; font-weight: 600;
                 border: 1px dashed #ca8a04;}
.rp-notices {display: flex; flex-direction: column; gap: 4px;}
.rp-notices .rp-notice {padding: 4px 8px; border-radius: 6px; background: #f1f5f9; color: #0f172a;}
.rp-notices .rp-notice.new {background: #e0e7ff; font-weight: 600;}
.rp-kind {display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 0.8em; font-weight: 700; color: #fff;}
.rp-kind.approved {background: #16a34a;} .rp-kind.edited {background: #7c3aed;} .rp-kind.rejected {background: #dc2626;}
.rp-badge {display: inline-block; min-width: 1.4em; padding: 0 6px; border-radius: 999px; background: #4f46e5;
           color: #fff; font-weight: 700; text-align: center; margin-right: 6px;}
.rp-bands {border-collapse: collapse; margin: 6px 0;} .rp-bands td, .rp-bands th {padding: 4px 8px;
           border: 1px solid #e4e4e7; text-align: left; vertical-align: top;}
.rp-bands tr.yours {background: #e0e7ff; font-weight: 600;}
/* the chat's own clear (trash) button empties the view while the stored session goes on: sessions end with End */
#practice-chat button[aria-label="Clear"], #practice-chat button[title="Clear"] {display: none !important;}
""" + """
.rp-certificate {border: 6px double #4338ca; border-radius: 12px; padding: 24px 32px; max-width: 760px;
                 background: #fffdf7; color: #1e1b4b; font-family: Georgia, 'Times New Roman', serif;}
.rp-certificate h2 {margin: 0 0 4px 0; font-size: 1.6em; color: #312e81;} .rp-certificate .rp-holder {font-size: 1.5em;
                 font-weight: 700; margin: 10px 0;} .rp-certificate .rp-small {font-size: 0.85em; color: #475569;}
.rp-verified {padding: 6px 10px; border-radius: 8px; font-weight: 600; font-family: sans-serif;}
.rp-verified.ok {background: #dcfce7; color: #14532d;} .rp-verified.bad {background: #fee2e2; color: #7f1d1d;}
.rp-speaker {display: flex; align-items: center; gap: 6px; font-size: 0.85em; margin-bottom: 2px;}
.rp-speaker b {color: var(--rp-colour);} .rp-speaker small {opacity: 0.75;}
.rp-avatar {display: inline-flex; width: 1.7em; height: 1.7em; border-radius: 999px; align-items: center;
            justify-content: center; color: #fff; font-weight: 700; background: var(--rp-colour);}
.rp-turn.persona[data-who] {border-left: 4px solid var(--rp-colour);} .rp-turn.persona[data-who] .rp-who {color: var(--rp-colour); opacity: 1;}
.rp-airtime {border-collapse: collapse; margin: 4px 0;} .rp-airtime td {padding: 2px 6px;}
.rp-airtime .rp-bar {display: inline-block; height: 0.8em; border-radius: 3px; background: var(--rp-colour, #64748b);}
"""

PALETTE = ("#b45309", "#7c3aed", "#0f766e", "#be123c")
"""Name colours of a scene's cast members, in cast order, when the scenario gives none (readable on white)."""


class CastView:
    """How a scenario's personas are shown: name, role, colour and initial per cast id."""

    def __init__(self, scenario: Any = None) -> None:
        members = list(scenario.members) if scenario is not None else []
        self.scene = bool(scenario is not None and scenario.is_scene)
        self.lead = members[0].id if members else ""
        self.people: dict[str, tuple[str, str, str]] = {
            m.id: (m.persona.name, m.persona.role.split(";")[0].split(",")[0], m.colour or PALETTE[i % len(PALETTE)])
            for i, m in enumerate(members)}

    def name(self, who: str | None) -> str:
        """The display name of a persona turn's speaker."""
        return self.people.get(who or self.lead, ("Persona", "", ""))[0]

    def names(self) -> dict[str, str]:
        """Cast id -> name."""
        return {k: v[0] for k, v in self.people.items()}

    def header(self, who: str | None) -> str:
        """The speaker line above a persona's message in a scene: avatar initial, name in colour, role."""
        if not self.scene:
            return ""
        name, role, colour = self.people.get(who or self.lead, ("Persona", "", "#64748b"))
        # the chat's sanitizer keeps classes and styles, not data-* attributes: the cast id travels as a class
        return (f'<span class="rp-speaker rp-who-{esc(who or self.lead)}" style="--rp-colour:{esc(colour)}">'
                f'<span class="rp-avatar">{esc(name[:1])}</span><b>{esc(name)}</b><small>{esc(role)}</small></span>')

    def colour(self, who: str | None) -> str:
        """The colour of a cast member."""
        return self.people.get(who or self.lead, ("", "", "#64748b"))[2]


def chat_bubble(speaker: str, text: str, who: str | None, cast: CastView) -> dict[str, str]:
    """A chat message for a turn: the learner's as typed, a persona's under its speaker line in a scene."""
    if speaker == "learner":
        return {"role": "user", "content": chat_text(text)}
    return {"role": "assistant", "content": chat_text(text, cast.header(who))}


def airtime_html(facts: Any, cast: CastView) -> str:
    """A meeting's airtime as bars (learner and each persona) with the other facts counted, for facilitators."""
    if facts is None:
        return ""
    rows = []
    for who, share in sorted(facts.airtime().items(), key=lambda kv: -kv[1]):
        name = "You (chair)" if who == "learner" else cast.name(who)
        colour = "#4f46e5" if who == "learner" else cast.colour(who)
        rows.append(f'<tr><td>{esc(name)}</td><td><span class="rp-bar" style="--rp-colour:{esc(colour)};'
                    f'width:{max(2, int(share * 240))}px"></span> {share:.0%}</td></tr>')
    # the bars show the shares; the other counted facts (balance, who was asked, sides, ...) as a list
    notes = "".join(f"<li>{esc(line)}</li>" for line in facts.summary_lines(cast.names())
                    if not line.startswith("Airtime (share of words)"))
    return (f'<div class="rp-meeting" id="meeting-facts"><h4>Meeting facts</h4>'
            f'<table class="rp-airtime">{"".join(rows)}</table><ul>{notes}</ul></div>')


def esc(text: Any) -> str:
    """HTML-escape any value."""
    return html.escape(str(text), quote=True)


def md_cell(text: Any) -> str:
    """Text for a cell of a Markdown table: escaped, on one line, its pipes kept as text."""
    return " ".join(esc(text).split()).replace("|", "\\|")


def _spans(text: str, quotes: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of each quote in `text` (case and whitespace insensitive), merged."""
    found: list[tuple[int, int]] = []
    for q in quotes:
        words = re.findall(r"\S+", q.strip().strip("\"'“”‘’").rstrip(".!?…"))
        if not words:
            continue
        pattern = r"\s+".join("".join("['’]" if ch in "'’" else re.escape(ch) for ch in w) for w in words)
        for m in re.finditer(pattern, text, re.IGNORECASE):
            found.append(m.span())
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str, quotes: Iterable[str]) -> str:
    """`text` as HTML with every quote wrapped in `<mark>`."""
    out, pos = [], 0
    for start, end in _spans(text, list(quotes)):
        out.append(esc(text[pos:start]))
        out.append(f"<mark>{esc(text[start:end])}</mark>")
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def transcript_html(turns: Sequence[Any], quotes: Iterable[str] = (), learner: str = "You",
                    persona: str = "Persona", cast: CastView | None = None) -> str:
    """A transcript (turns with `.speaker`, `.text` and `.who`) with evidence quotes marked in the learner's turns.

    With a scene's `cast`, each persona turn shows its speaker's name and colour.
    """
    quotes = list(quotes)
    rows = []
    for t in turns:
        speaker_id = getattr(t, "who", None)
        if t.speaker == "learner":
            who, attrs = learner, ""
        elif cast is not None and cast.scene:
            who = cast.name(speaker_id)
            attrs = f' data-who="{esc(speaker_id or cast.lead)}" style="--rp-colour:{esc(cast.colour(speaker_id))}"'
        else:
            who, attrs = persona, ""
        body = highlight(t.text, quotes) if t.speaker == "learner" else esc(t.text)
        rows.append(f'<div class="rp-turn {esc(t.speaker)}"{attrs}><span class="rp-who">{esc(who)}</span>{body}</div>')
    if not rows:
        rows.append("<em>No turns yet.</em>")
    return f'<div class="rp-transcript">{"".join(rows)}</div>'


def evidence_of(grade: Any) -> list[str]:
    """Every evidence quote of a grade."""
    return [q for c in grade.criteria for q in c.evidence]


def _level(level: int) -> str:
    return f'<span class="rp-level rp-l{int(level)}">{int(level)}/4</span>'


def grade_html(grade: Any, rubric: Any, ai_grade: Any = None, show_checks: bool = False) -> str:
    """A grade as cards per criterion: level, evidence, rationale and the better alternative.

    Args:
        grade: The grade to show (the approved one for learners, the current one for facilitators).
        rubric: Its rubric (for criterion names).
        ai_grade: The judge's original grade; when given, levels a facilitator changed are marked.
        show_checks: Show the check answers (facilitators).
    """
    names = {c.id: c.name for c in rubric.criteria}
    ai = {c.criterion_id: c.level for c in ai_grade.criteria} if ai_grade is not None else {}
    cls = "pass" if grade.passed else "fail"
    out = [f'<div class="rp-grade"><div class="rp-summary {cls}">{esc(grade.summary)}</div>']
    for c in grade.criteria:
        changed = ""
        if c.criterion_id in ai and ai[c.criterion_id] != c.level:
            changed = f'<span class="rp-changed">(AI level {ai[c.criterion_id]})</span>'
        unsupported = "" if c.supported else ' <span class="rp-unsupported">needs facilitator: evidence not verified</span>'
        if c.judge_level is not None and c.judge_level != c.level:
            changed += f'<span class="rp-changed">(judge proposed {c.judge_level})</span>'
        if c.sample_levels:
            changed += f'<span class="rp-changed">(samples {", ".join(map(str, c.sample_levels))})</span>'
        quotes = "".join(f'<div class="rp-quote">“<mark>{esc(q)}</mark>”</div>' for q in c.evidence)
        if not quotes:
            quotes = '<div class="rp-quote">(no quote)</div>'
        checks = ""
        if show_checks and c.checks:
            answers = ", ".join(f"{esc(k.id)}: {esc(k.answer)}" for k in c.checks)
            checks = f"<div><small>Checks: {answers}</small></div>"
        out.append(
            f'<div class="rp-crit" data-criterion="{esc(c.criterion_id)}">'
            f"<h4>{esc(names.get(c.criterion_id, c.criterion_id))}"
            f'{_level(c.level)}{changed}{unsupported}</h4>{quotes}<div>{esc(c.rationale)}</div>{checks}'
            f'<div class="rp-better"><b>Better:</b> {esc(c.better_alternative)}</div></div>'
        )
    if getattr(grade, "flagged", None):
        out.append('<div class="rp-crit"><b>Seems to address the grader (graded as usual; check it):</b> '
                   + "; ".join(esc(f) for f in grade.flagged) + "</div>")
    if getattr(grade, "fitted", None):
        out.append('<div class="rp-crit rp-fitted"><b>Graded on a shortened prompt to fit the model\'s context:</b> '
                   + esc(grade.fitted) + "</div>")
    out.append("</div>")
    return "".join(out)


def when(dt: datetime | None) -> str:
    """A short UTC time."""
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else "—"


def history_md(history: Sequence[Any], names: dict[str, str] | None = None) -> str:
    """A review's history as a Markdown list, oldest first."""
    names = names or {}
    lines = []
    for h in history:
        changes = "; ".join(
            f"{names.get(c.criterion_id, c.criterion_id)}"
            + (f" → level {c.level}" if c.level is not None else "")
            + (" (feedback)" if c.feedback is not None else "")
            + (" (better line)" if c.better_alternative is not None else "")
            for c in h.changes)
        lines.append(f"- **{h.action}** by {h.actor}, {when(h.at)}"
                     + (f": {changes}" if changes else "")
                     + (f" — “{h.comment}”" if h.comment else ""))
    return "\n".join(lines) or "_No history._"


def heatmap_html(matrix: Sequence[Sequence[int]], rows: str, cols: str, title: str = "",
                 labels: Sequence[Any] = (1, 2, 3, 4)) -> str:
    """A confusion matrix as a colour-scaled HTML table (rows = one rater's level, columns = the other's)."""
    peak = max((v for r in matrix for v in r), default=0) or 1
    head = "".join(f"<th>{esc(lv)}</th>" for lv in labels)
    body = []
    for lv, row in zip(labels, matrix):
        cells = []
        for j, v in enumerate(row):
            alpha = 0.08 + 0.85 * v / peak if v else 0.0
            diag = " outline: 2px solid #16a34a; outline-offset: -2px;" if labels[j] == lv else ""
            color = "#fff" if alpha > 0.55 else "#111"
            cells.append(f'<td style="background: rgba(37,99,235,{alpha:.2f}); color: {color};{diag}">{v}</td>')
        body.append(f"<tr><th>{esc(lv)}</th>{''.join(cells)}</tr>")
    caption = f"<caption style='caption-side: top; text-align: left;'><b>{esc(title)}</b></caption>" if title else ""
    return (f'<table class="rp-heat">{caption}<tr><th style="font-size:0.75em">{esc(rows)} ↓ / {esc(cols)} →</th>'
            f"{head}</tr>{''.join(body)}</table>")


def frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> Any:
    """A pandas DataFrame for a Gradio plot with fixed column types; None when there is nothing to plot.

    None rather than an empty frame: a Gradio 6 plot that first receives an empty frame keeps an empty colour
    domain and draws no points when data arrives later.
    """
    import pandas as pd

    if not rows:
        return None
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def chat_text(text: str, header: str = "") -> str:
    """A learner's or persona's line for the chat, shown as typed: `<b>` stays the four characters, never bold.

    The chat renders its messages as HTML, so the text is escaped here (and the chat's Markdown is off); `header` is
    the speaker line of a scene (already HTML).
    """
    return header + html.escape(str(text), quote=False)


def notices_html(notices: Sequence[Any], titles: dict[str, str] | None = None) -> str:
    """A learner's notices (newest first), the unread ones marked new, with a count badge; '' when there are none."""
    if not notices:
        return ""
    new = sum(1 for n in notices if not n.read)
    head = (f'<span class="rp-badge" id="practice-notice-count">{new}</span><b>new from your facilitator</b>'
            if new else "<b>From your facilitator</b>")
    label = {"approved": "Approved", "edited": "Changed", "rejected": "Not accepted"}
    rows = "".join(f'<div class="rp-notice{"" if n.read else " new"}" data-kind="{esc(n.kind)}">'
                   f'<span class="rp-kind {esc(n.kind)}">{label.get(str(n.kind), "Review")}</span> '
                   f"{esc(n.text(titles))} <small>({when(n.created_at)})</small></div>"
                   for n in notices)
    return f'<div class="rp-notices"><div>{head}</div>{rows}</div>'


def assessment_html(result: Any, titles: dict[str, str], sprint_titles: dict[str, str], rule: str,
                    retake_rule: str) -> str:
    """A pre-assessment result that explains itself: score, bands and their meaning, what it means for sessions."""
    bands = "".join(
        f'<tr class="{"yours" if b.level == result.level else ""}"><td>{esc(b.level)}'
        f'{" (you)" if b.level == result.level else ""}</td><td>{b.min_score}–{b.max_score}</td>'
        f"<td>{esc(b.meaning)}</td></tr>" for b in result.bands)
    out = [(f'<div id="progress-assessment-result"><h4>Your pre-assessment: {result.score} of {result.max_score} '
            f"points → {esc(result.level)}</h4>"),
           f'<table class="rp-bands"><tr><th>Level</th><th>Score</th><th>What it means</th></tr>{bands}</table>',
           f"<p>You practise and are certified at <b>{esc(result.level)}</b>. {esc(rule)}</p>"]
    if result.sessions:
        items = "".join(
            f"<li>{esc(titles.get(p.scenario_id, p.scenario_id))} at {esc(p.level)} "
            f"({esc(sprint_titles.get(p.sprint, p.sprint))}): "
            + ("<b>counts</b>" if p.counts else f"does not count ({esc(p.reason)})") + "</li>"
            for p in result.sessions)
        out.append(f"<p>Your approved sessions so far:</p><ul>{items}</ul>")
    out.append(f"<p><i>{esc(retake_rule if result.can_retake else 'Your level is fixed now that you have chosen your sprints.')}"
               "</i></p></div>")
    return "".join(out)


def certificate_card(view: Any) -> str:
    """A readable certificate (HTML) from a `CertificateView`, with its verification result."""
    ok = "ok" if view.verified else "bad"
    issuer = (f'<a href="{esc(view.issuer_url)}">{esc(view.issuer)}</a>' if view.issuer_url else esc(view.issuer))
    comment = f"<p><i>“{esc(view.comment)}”</i> — {esc(view.signed_off_by)}</p>" if view.comment else ""
    return (f'<div class="rp-certificate" data-sprint="{esc(view.sprint)}"><div class="rp-small">Certificate</div>'
            f"<h2>{esc(view.achievement)}</h2><div>awarded to</div><div class=\"rp-holder\">{esc(view.holder)}</div>"
            f"<p>{esc(view.description)}</p><p class=\"rp-small\">{esc(view.criteria)}</p>"
            f"<p class=\"rp-small\">Evidence: {esc(view.evidence)}</p>{comment}"
            f"<p>Issued by {issuer} on {esc(view.issued_at[:10])}.</p>"
            f'<div class="rp-verified {ok}">{esc(view.verification)}</div>'
            f'<p class="rp-small">Credential {esc(view.credential_id)} · Open Badges 3.0; the JSON file beside this one '
            "is the verifiable original.</p></div>")


def certificate_page(view: Any) -> str:
    """A whole HTML page holding the certificate, for download and printing."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(view.achievement)} — '
            f"{esc(view.holder)}</title><style>body {{margin: 40px; background: #f8fafc;}}{CSS}</style></head>"
            f"<body>{certificate_card(view)}</body></html>\n")


_PDF_FOLD = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "—": "-", "–": "-", "…": "...", "→": "->",
                           "\u00a0": " "})


def _latin1(text: str) -> str:
    """Text the PDF's built-in fonts can draw: typographic marks folded, anything else outside Latin-1 as '?'."""
    return str(text).translate(_PDF_FOLD).encode("latin-1", "replace").decode("latin-1")


def certificate_pdf(view: Any) -> bytes:
    """The certificate as a one-page A4 landscape PDF (fpdf2, built-in fonts; the HTML keeps every character)."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_compression(False)  # one small page; plain text streams stay searchable by any tool
    pdf.set_title(_latin1(view.achievement))
    pdf.set_author(_latin1(view.issuer))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_draw_color(67, 56, 202)
    pdf.set_line_width(1.2)
    pdf.rect(10, 10, 277, 190)
    width = 247

    def line(text: str, size: float, style: str = "", gap: float = 3, color: tuple[int, int, int] = (30, 27, 75)) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.set_text_color(*color)
        pdf.set_x(25)
        pdf.multi_cell(width, size * 0.5, _latin1(text), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(gap)

    pdf.set_y(34)
    line("Certificate", 12, color=(71, 85, 105))
    line(view.achievement, 22, "B", 6)
    line("awarded to", 12)
    line(view.holder, 26, "B", 6)
    line(view.description, 11, gap=4)
    line(view.criteria, 9, gap=2, color=(71, 85, 105))
    line(f"Evidence: {view.evidence}", 9, gap=4, color=(71, 85, 105))
    if view.comment:
        line(f'"{view.comment}" - {view.signed_off_by}', 11, "I", 4)
    line(f"Issued by {view.issuer} on {view.issued_at[:10]}.", 11, gap=3)
    line(view.verification, 10, "B", 2, (20, 83, 45) if view.verified else (127, 29, 29))
    line(f"Credential {view.credential_id} (Open Badges 3.0; the JSON file is the verifiable original)", 8,
         color=(100, 116, 139))
    return bytes(pdf.output())
