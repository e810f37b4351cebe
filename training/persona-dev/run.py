"""Play the development learner scripts of this folder through the real persona engine.

    python training/persona-dev/run.py                 # summary per style and level
    python training/persona-dev/run.py --why poor      # plus every reveal a style matching 'poor' earned, with the reading
    python training/persona-dev/run.py --level novice  # one level

The persona is developed against these scripts, never against `evals/persona/scripts/` (the measurement).
Styles whose name starts with `poor` should earn nothing; the others should earn the secrets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from roleplay.catalog import load_catalog  # noqa: E402
from roleplay.persona import Conversation  # noqa: E402
from roleplay.persona_eval import load_scripts  # noqa: E402
from roleplay.reader import offline_reader  # noqa: E402
from roleplay.scenario import LEVELS, Scenario  # noqa: E402


def play(scn: Scenario, level: str, turns: list[str]) -> Conversation:
    conv = Conversation(scn, level, reader=offline_reader())
    conv.open()
    for turn in turns:
        if conv.state.ended:
            break
        conv.say(turn)
    return conv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", action="append", choices=LEVELS)
    ap.add_argument("--why", default=None, help="show the reveals of styles whose name contains this")
    ap.add_argument("--style", default=None, help="only styles whose name contains this")
    args = ap.parse_args()
    levels = tuple(args.level or LEVELS)
    root = HERE.parent.parent
    scenarios = load_catalog([root / "scenarios", root / "rubrics"]).scenarios
    scripts = load_scripts(HERE)
    table: dict[tuple[str, str], list[int]] = {}
    for script in scripts:
        scn = scenarios[script.scenario]
        for style, turns in script.styles.items():
            if args.style and args.style not in style:
                continue
            for level in levels:
                conv = play(scn, level, turns)
                row = table.setdefault((style, level), [0, 0, 0, 0])
                row[0] += len(conv.state.revealed)
                row[1] += len(scn.hidden_facts)
                row[2] += conv.state.end_reason == "walkout"
                row[3] += 1
                if args.why and args.why in style and conv.state.revealed:
                    for r in conv.state.revealed:
                        reading = conv.state.readings[r.turn - 1]
                        print(f"  {script.scenario} {level} {style} turn {r.turn} {r.fact_id} ({r.how}, trust "
                              f"{r.trust}): {turns[r.turn - 1]!r}\n      {reading}")
    print(f"{'style':22s} {'level':13s} reveal  walkouts")
    for (style, level), (got, facts, walk, n) in sorted(table.items()):
        print(f"{style:22s} {level:13s} {got / facts:5.2f}   {walk}/{n}")
    poor = [v for (s, _), v in table.items() if s.startswith("poor")]
    good = [v for (s, _), v in table.items() if not s.startswith("poor")]
    for name, rows in (("poor", poor), ("good", good)):
        if rows:
            print(f"{name}: reveal rate {sum(r[0] for r in rows) / sum(r[1] for r in rows):.2f}")


if __name__ == "__main__":
    main()
