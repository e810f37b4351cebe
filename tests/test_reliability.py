"""Reliability: nothing stored is lost on SIGKILL; bad input gives a clear error and writes nothing; model faults
leave no half-written grade."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from stub_openai import Delay, Malformed, Status, StubOpenAI, Truncated

from roleplay.cli import main
from roleplay.errors import ProviderError
from roleplay.grader import LLMJudge, grade_session
from content import catalog
from roleplay.llm import OpenAIChatModel
from roleplay.practice import start_practice
from roleplay.models import GradeRow, Person, PracticeSession, ReviewRow, TurnRow
from roleplay.store import Store

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "yaml_corpus"
BAD = Path(__file__).parent / "bad_inputs"


def counts(store: Store) -> tuple[int, ...]:
    with store.session() as db:
        return tuple(db.scalar(select(func.count()).select_from(t)) for t in (Person, PracticeSession, TurnRow,
                                                                               GradeRow, ReviewRow))


@pytest.mark.slow
def test_sigkill_mid_session_loses_no_stored_turn(tmp_path: Path) -> None:
    env = {**os.environ, "ROLEPLAY_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "roleplay.cli", "practice", "missed-deadlines", "--offline",
                             "--user", "ana"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=ROOT, text=True, bufsize=1)
    lines = ["Hi Sam.", "What's been going on?", "It sounds like mornings are hard.", "That sounds exhausting."]
    assert proc.stdin and proc.stdout
    buffer = ""
    for line in lines:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        # wait until the persona's reply for this line has been printed (it is stored before that)
        while buffer.count("Sam Okafor: ") < lines.index(line) + 2:
            ch = proc.stdout.read(1)
            assert ch, proc.stderr.read() if proc.stderr else "process ended"
            buffer += ch
        while not buffer.endswith("\n"):
            buffer += proc.stdout.read(1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    store = Store(f"sqlite:///{tmp_path / 'roleplay.db'}")
    with store.session() as db:
        sess = db.scalars(select(PracticeSession)).one()
    turns = store.get_session(sess.id).turns
    assert [t.text for t in turns if t.speaker == "learner"] == lines
    assert len(turns) == 1 + 2 * len(lines)
    assert sess.status == "active"  # killed, not ended: and still resumable
    assert store.get_session(sess.id).state["learner_turns"] == len(lines)
    store.close()


def corpus_files() -> list[Path]:
    files = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.endswith("-other.yaml"))
    return files + sorted(BAD.iterdir())


def test_bad_input_corpus_is_large() -> None:
    assert len(corpus_files()) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_bad_input_gives_a_clear_error_and_writes_nothing(path: Path, isolated_settings: Path) -> None:
    from roleplay.config import load_settings

    store = Store(load_settings().database_url)
    before = counts(store)
    listing = sorted(p.name for p in isolated_settings.rglob("*"))
    if path.suffix == ".yaml":
        partners = [str(CORPUS / line.split(":", 1)[1].strip()) for line in path.read_text(errors="replace").splitlines()
                    if line.startswith("# with:")]
        result = CliRunner().invoke(main, ["validate", *partners, str(path)])
        out = result.stdout
    else:
        result = CliRunner().invoke(main, ["grade", str(path), "--scenario", "missed-deadlines", "--offline"])
        out = result.stderr
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert str(path) in out or path.name in out
    assert counts(store) == before
    assert sorted(p.name for p in isolated_settings.rglob("*")) == listing


def test_huge_transcript_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "huge.txt"
    big.write_text("Learner: " + "blah " * 600_000)
    result = CliRunner().invoke(main, ["grade", str(big), "--scenario", "missed-deadlines", "--offline"])
    assert result.exit_code == 1 and "larger than" in result.stderr


def test_empty_rubric_is_refused(tmp_path: Path) -> None:
    rubric = tmp_path / "empty-rubric.yaml"
    rubric.write_text("id: empty\ntitle: Empty\ndescription: nothing\npass_threshold: 2.5\ncriteria: []\n")
    result = CliRunner().invoke(main, ["validate", str(rubric)])
    assert result.exit_code == 1 and "criteria" in result.stdout


GOOD = ["What's been going on?", "It sounds like mornings are hard.", "Let's check in next Monday."]


@pytest.mark.parametrize("faults, expected", [
    ([Malformed('{"criteria": [')] * 3, "after 3 attempts"),
    (["{not json at all", "still not json"], "structured"),
    ([Truncated('{"criteria": [{"criterion_id": "empathy"', after=3)] * 3, "after 3 attempts"),
    ([Status(429, retry_after=0.01)] * 3, "rate limit"),
    ([Delay(1.0, "late")] * 3, "ROLEPLAY_TIMEOUT"),
    ([Status(500)] * 3, "after 3 attempts"),
])
def test_model_faults_leave_no_half_written_grade(stub_llm: StubOpenAI, tmp_path: Path, faults: list, expected: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice")
    run.open()
    for line in GOOD:
        list(run.respond(line))
    run.end()
    stub_llm.queue(*faults)
    model = OpenAIChatModel(model="stub-model", base_url=stub_llm.base_url, api_key="k", timeout=0.4, max_retries=2,
                            backoff_base=0.01, retry_after_max=0.02)
    before = counts(store)
    with pytest.raises(ProviderError) as info:
        grade_session(store, run.session_id, LLMJudge(model), catalog())
    assert expected.lower() in str(info.value).lower()
    assert info.value.attempts <= 3
    assert counts(store) == before
    store.close()
