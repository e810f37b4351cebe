"""Performance figures for roleplay, measured side by side against a local OpenAI-compatible stub.

    python benchmarks/run.py                  # everything (< 5 minutes on 2 cores); writes benchmarks/results.md
    python benchmarks/run.py --quick          # ~30 s smoke run (fewer repetitions; results.md untouched)
    python benchmarks/run.py --only persona   # one section (repeatable: --only grading --only batch)
    python benchmarks/run.py --only persona --profile   # plus a cProfile of the engine's per-turn path

Sections: persona (1), streaming (2), grading (3), batch (4), sessions (5), offline (6), reader (7), login (8). All traffic stays on
127.0.0.1; all data goes to a temp dir that is removed at the end; only benchmarks/results.md is written.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import shutil
import time
from datetime import UTC, datetime

from benchlib import BENCH_DIR, SectionResult, StubProcess, isolate, machine

SECTIONS = ("persona", "streaming", "grading", "batch", "sessions", "offline", "reader", "login")
NUMBER = {name: str(i) for i, name in enumerate(SECTIONS, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="roleplay performance figures (printed, never asserted)")
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run with fewer repetitions")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the engine's per-turn path "
                                                                "(with the persona section)")
    parser.add_argument("--md", type=Path, default=None,
                        help="write the markdown table here (default: benchmarks/results.md on a full run only)")
    args = parser.parse_args(argv)
    chosen = [s for s in SECTIONS if not args.only or s in args.only]
    full = not args.quick and not args.only
    md_path = args.md or (BENCH_DIR / "results.md" if full else None)

    tmp = isolate()
    started = time.perf_counter()
    info = machine()
    print("roleplay benchmarks" + (" (quick)" if args.quick else ""))
    for line in info:
        print(f"  {line}")
    stub = StubProcess()
    results: list[SectionResult] = []
    try:
        skew = stub.clock_check()
        print(f"  stub endpoint: {stub.base_url} (separate process); cross-process clock check "
              f"{'ok' if skew == 0 else f'off by {skew * 1e6:.0f} us'}")
        for name in chosen:
            print(f"\n[{NUMBER[name]}] {name} ...", flush=True)
            t0 = time.perf_counter()
            res = _run_section(name, stub, args)
            res.seconds = time.perf_counter() - t0
            results.append(res)
            print(f"  ({res.seconds:.1f} s)", flush=True)
    finally:
        stub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started

    table = _table(results)
    print("\n" + table)
    print(f"\ntotal {total:.0f} s" + (" (quick)" if args.quick else ""))
    if md_path is not None:
        md_path.write_text(_markdown(info, results, table, total, args.quick), encoding="utf-8")
        print(f"wrote {md_path}")
    return 0


def _run_section(name: str, stub: StubProcess, args: argparse.Namespace) -> SectionResult:
    if name == "persona":
        import bench_persona

        return bench_persona.run(stub, quick=args.quick, profile=args.profile)
    if name == "streaming":
        import bench_streaming

        return bench_streaming.run(stub, quick=args.quick)
    if name == "grading":
        import bench_grading

        return bench_grading.run_single(stub, quick=args.quick)
    if name == "batch":
        import bench_grading

        return bench_grading.run_batch(stub, quick=args.quick)
    if name == "sessions":
        import bench_sessions

        return bench_sessions.run(stub, quick=args.quick)
    if name == "reader":
        import reader

        return reader.run(quick=args.quick)
    if name == "login":
        import bench_login

        return bench_login.run(quick=args.quick)
    import bench_offline

    return bench_offline.run(quick=args.quick)


def _table(results: list[SectionResult]) -> str:
    rows = [("#", "figure", "value", "goal", "status")]
    for res in results:
        for r in res.rows:
            rows.append((r.section, r.figure, r.value, r.goal, r.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = []
    for i, row in enumerate(rows):
        out.append("| " + " | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _markdown(info: list[str], results: list[SectionResult], table: str, total: float, quick: bool) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        "",
        (f"Produced by `python benchmarks/run.py{' --quick' if quick else ''}` on {when} in {total:.0f} s "
         "(see `benchmarks/README.md` for what each figure means and how it is measured)."),
        "",
        *[f"- {line}" for line in info],
        "",
        table,
        "",
    ]
    for res in results:
        parts.append(f"### {res.name}. {res.title} ({res.seconds:.1f} s)")
        parts.append("")
        parts.extend(f"- {line}" for line in res.lines)
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
