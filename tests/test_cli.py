"""The command line validates content, prints schemas and never shows a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from roleplay.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_validate_passes_on_shipped_content(root: Path) -> None:
    code, out, _ = run("validate", str(root / "scenarios"), str(root / "rubrics"))
    assert code == 0, out
    assert out.startswith("ok: ")


def test_validate_reports_file_line_field_and_fails(tmp_path: Path, root: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (root / "scenarios" / "missed-deadlines.yaml").read_text().replace("  personality:", "  personalty:")
    bad.write_text(text)
    code, out, _ = run("validate", str(bad))
    assert code == 1
    assert f"{bad}:" in out and "persona.personalty: unknown field 'personalty'; did you mean 'personality'?" in out


def test_validate_missing_path_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    code, _, err = run("validate", str(tmp_path / "nope"))
    assert code == 1
    assert "no such file or directory" in err and "Traceback" not in err


def test_schema_is_json_schema_with_descriptions() -> None:
    code, out, _ = run("schema", "scenario")
    assert code == 0
    schema = json.loads(out)
    assert schema["additionalProperties"] is False
    assert "description" in schema["properties"]["persona"] or "$ref" in schema["properties"]["persona"]
    persona = schema["$defs"]["Persona"]
    assert all("description" in p for p in persona["properties"].values())
    code, out, _ = run("schema", "rubric")
    assert "criteria" in json.loads(out)["properties"]


def test_people_add_and_list_use_the_data_dir(isolated_settings: Path) -> None:
    assert run("people", "add", "ana", "--role", "learner")[0] == 0
    code, _, err = run("people", "add", "ana", "--role", "learner")
    assert code == 1 and "taken" in err
    assert "ana" in run("people", "list")[1]
    assert (isolated_settings / "roleplay.db").exists()


def test_people_remove(isolated_settings: Path) -> None:
    run("people", "add", "learner", "--role", "learner")
    code, out, _ = run("people", "remove", "learner", "--yes")
    assert code == 0 and "removed learner" in out
    assert "learner" not in run("people", "list")[1]
    code, _, err = run("people", "remove", "learner", "--yes")
    assert code == 1 and err.strip() == "error: no person 'learner'; `roleplay people list` shows who exists"
    run("people", "add", "fay", "--role", "facilitator")
    code, _, err = run("people", "remove", "fay", "--yes")
    assert code == 1 and "only facilitator" in err and len(err.strip().splitlines()) == 1


def test_every_bad_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                           isolated_settings: Path) -> None:
    monkeypatch.setenv("ROLEPLAY_CONCURRENCY", "abc")
    monkeypatch.setenv("ROLEPLAY_ENGINE", "gpt")
    monkeypatch.setenv("ROLEPLAY_PORT", "0")
    out = CliRunner().invoke(main, ["people", "list"])
    assert out.exit_code == 1 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ROLEPLAY_") for line in lines)
    assert "ROLEPLAY_CONCURRENCY='abc'" in out.stderr and "use auto, llm or offline" in out.stderr
    assert not isolated_settings.exists()  # nothing was written


def test_help_imports_no_heavy_module() -> None:
    import subprocess
    import sys

    code = ("import sys; from roleplay.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('gradio', 'openai', 'sqlalchemy', 'chromadb', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def graded(isolated_settings: Path) -> tuple[str, int]:
    """A practised, ended and graded session in the configured store: (session id, review id)."""
    from content import catalog

    from roleplay.config import load_settings
    from roleplay.grader import OfflineJudge, grade_session
    from roleplay.practice import start_practice
    from roleplay.store import Store

    store = Store(load_settings().database_url)
    for name in ("fay", "gus"):
        store.add_person(name, "facilitator")
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice")
    run.open()
    for line in ("What has been going on for you lately?", "That sounds exhausting."):
        list(run.respond(line))
    run.end()
    grade_session(store, run.session_id, OfflineJudge(), catalog())
    review_id = store.open_review_id(run.session_id)
    store.close()
    assert review_id is not None
    return run.session_id, review_id


@pytest.mark.slow
def test_grading_a_session_twice_gives_the_same_grade(isolated_settings: Path) -> None:
    session_id, review_id = graded(isolated_settings)
    code, out, err = run("grade", session_id, "--offline")
    assert code == 0, err
    assert f"Already graded: review {review_id} is pending; nothing new was stored" in out
    code, out, _ = run("review", "list")
    assert out.count("pending") == 1


@pytest.mark.slow
def test_review_edits_need_the_version_they_were_made_on(isolated_settings: Path) -> None:
    _, rid = graded(isolated_settings)
    edit = ["review", "edit", str(rid), "--criterion", "empathy", "--level", "2", "--comment", "Warmer, please."]
    assert "--version 0" in run("review", "show", str(rid))[1]
    code, out, err = run(*edit, "--as", "fay")
    assert code == 0, err
    code, _, err = run(*edit[:-1], "Too quick to reassure.", "--as", "gus")  # gus reviewed version 0 too
    assert code == 1 and "at version 1 now, you acted on version 0" in err and len(err.strip().splitlines()) == 1
    assert run("review", "show", str(rid))[1].count("edit by") == 1  # nothing of gus's was saved
    code, out, err = run(*edit[:-1], "Too quick to reassure.", "--as", "gus", "--version", "1")
    assert code == 0, err
    code, _, err = run("review", "approve", str(rid), "--as", "fay", "--version", "1")
    assert code == 1 and "version 2" in err
    assert run("review", "approve", str(rid), "--as", "fay", "--version", "2")[0] == 0
