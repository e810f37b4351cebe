"""Performance figures for roleplay, measured side by side against a local OpenAI-compatible stub.

    python benchmarks/run.py                  # everything (< 5 minutes on 2 cores); writes benchmarks/results.md
    python benchmarks/run.py --quick          # ~30 s smoke run (fewer repetitions; results.md untouched)
    python benchmarks/run.py --only persona   # one section (repeatable: --only grading --only batch)
    python benchmarks/run.py --only persona --profile   # plus a cProfile of the engine's per-turn path
    python benchmarks/run.py --base-url http://127.0.0.1:8080/v1 --model local   # persona + grading on that endpoint

Sections: persona (1), streaming (2), grading (3), batch (4), sessions (5), offline (6), reader (7), login (8), scene (9),
reads (10), app (11). All traffic stays on 127.0.0.1 unless --base-url names another endpoint (then only the persona
and grading sections go there); all data goes to a temp dir that is removed at the end; only benchmarks/results.md is
written.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import os
import shutil
import time
from datetime import UTC, datetime

from benchlib import BENCH_DIR, Endpoint, SectionResult, StubProcess, isolate, machine

SECTIONS = ("persona", "streaming", "grading", "batch", "sessions", "offline", "reader", "login", "scene", "reads",
            "app", "jobs")
NUMBER = {name: str(i) for i, name in enumerate(SECTIONS, 1)}
ENDPOINT_SECTIONS = ("persona", "grading")
"""The sections that run against --base-url; the others keep measuring against the stub."""
STUB_SECTIONS = ("persona", "streaming", "grading", "batch", "sessions", "scene", "jobs")
MODES = ("json_schema", "json_object", "prompt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="roleplay performance figures (printed, never asserted)")
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run with fewer repetitions")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the engine's per-turn path "
                                                                "(with the persona section)")
    parser.add_argument("--md", type=Path, default=None,
                        help="write the markdown table here (default: benchmarks/results.md on a full run only)")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help="run the persona and grading sections against this OpenAI-compatible endpoint instead "
                             "of the stub (alone, those are the sections run)")
    parser.add_argument("--model", default=None, metavar="NAME", help="the chat model the endpoint serves "
                                                                      "(with --base-url)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="API key for --base-url (default: ROLEPLAY_API_KEY from the environment, else none)")
    parser.add_argument("--structured-mode", choices=MODES, default=None, metavar="MODE",
                        help=f"grade only in this structured-output mode ({', '.join(MODES)}; default: each in turn)")
    parser.add_argument("--max-grade-tokens", type=int, default=None, metavar="N",
                        help="max_tokens of a grading call with --base-url (default 4000, as the app's "
                             "ROLEPLAY_MAX_GRADE_TOKENS)")
    args = parser.parse_args(argv)
    if args.base_url is None and (args.model or args.api_key or args.structured_mode or args.max_grade_tokens):
        parser.error("--model, --api-key, --structured-mode and --max-grade-tokens go with --base-url")
    if args.max_grade_tokens is not None and args.max_grade_tokens < 16:
        parser.error("--max-grade-tokens must be at least 16")
    if args.base_url is not None and not args.model:
        parser.error("--base-url needs --model NAME (the chat model the endpoint serves)")
    endpoint = None
    if args.base_url is not None:
        endpoint = Endpoint(args.base_url.rstrip("/"), args.model,
                            args.api_key or os.environ.get("ROLEPLAY_API_KEY") or None, args.structured_mode,
                            args.max_grade_tokens or 4000)
    default = ENDPOINT_SECTIONS if endpoint else SECTIONS
    chosen = [s for s in SECTIONS if (s in args.only if args.only else s in default)]
    full = not args.quick and not args.only and endpoint is None
    md_path = args.md or (BENCH_DIR / "results.md" if full else None)

    tmp = isolate()
    started = time.perf_counter()
    info = machine()
    if endpoint is not None:
        info.append(endpoint.describe())
    print("roleplay benchmarks" + (" (quick)" if args.quick else ""))
    for line in info:
        print(f"  {line}")
    needs_stub = endpoint is None or any(s in STUB_SECTIONS and s not in ENDPOINT_SECTIONS for s in chosen)
    stub = StubProcess() if needs_stub else None
    results: list[SectionResult] = []
    try:
        if stub is not None:
            skew = stub.clock_check()
            print(f"  stub endpoint: {stub.base_url} (separate process); cross-process clock check "
                  f"{'ok' if skew == 0 else f'off by {skew * 1e6:.0f} us'}")
        if endpoint is not None:
            print(f"  {_reachable(endpoint)}")
        for name in chosen:
            print(f"\n[{NUMBER[name]}] {name} ...", flush=True)
            t0 = time.perf_counter()
            res = _run_section(name, stub, args, endpoint)
            res.seconds = time.perf_counter() - t0
            results.append(res)
            print(f"  ({res.seconds:.1f} s)", flush=True)
    finally:
        if stub is not None:
            stub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started

    table = _table(results)
    print("\n" + table)
    print(f"\ntotal {total:.0f} s" + (" (quick)" if args.quick else ""))
    if md_path is not None:
        md_path.write_text(_markdown(info, results, table, total, _command(args)), encoding="utf-8")
        print(f"wrote {md_path}")
    return 0


def _reachable(endpoint: Endpoint) -> str:
    """What the endpoint says it serves (a failure is reported; the sections report their own errors)."""
    from benchlib import one_line

    from roleplay.errors import RoleplayError

    model = endpoint.chat_model()
    try:
        served = model.list_models()
    except RoleplayError as exc:
        return f"the endpoint's model list is not available ({one_line(exc, 200)})"
    finally:
        model.close()
    listed = ", ".join(served[:5]) + (" ..." if len(served) > 5 else "")
    note = "" if endpoint.model in served else f"; {endpoint.model!r} is not among them"
    return f"the endpoint lists: {listed or 'no models'}{note}"


def _command(args: argparse.Namespace) -> str:
    """The command line of this run, for the markdown header (never the API key)."""
    parts = ["python benchmarks/run.py"]
    if args.quick:
        parts.append("--quick")
    if args.base_url:
        parts.append(f"--base-url {args.base_url} --model {args.model}")
        if args.structured_mode:
            parts.append(f"--structured-mode {args.structured_mode}")
        if args.max_grade_tokens:
            parts.append(f"--max-grade-tokens {args.max_grade_tokens}")
    return " ".join(parts)


def _run_section(name: str, stub: StubProcess | None, args: argparse.Namespace,
                 endpoint: Endpoint | None = None) -> SectionResult:
    if endpoint is not None and name in ENDPOINT_SECTIONS:
        if name == "persona":
            import bench_persona

            return bench_persona.run_endpoint(endpoint, quick=args.quick)
        import bench_grading

        return bench_grading.run_endpoint(endpoint, quick=args.quick)
    if name in STUB_SECTIONS:
        assert stub is not None
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
    if name == "scene":
        import bench_scene

        assert stub is not None
        return bench_scene.run(stub, quick=args.quick)
    if name == "login":
        import bench_login

        return bench_login.run(quick=args.quick)
    if name == "reads":
        import bench_reads

        return bench_reads.run(quick=args.quick)
    if name == "app":
        import bench_app

        return bench_app.run(quick=args.quick)
    if name == "jobs":
        import bench_jobs

        assert stub is not None
        return bench_jobs.run(stub, quick=args.quick)
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


def _markdown(info: list[str], results: list[SectionResult], table: str, total: float, command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        "",
        (f"Produced by `{command}` on {when} in {total:.0f} s "
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
