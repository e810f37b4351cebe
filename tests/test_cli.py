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
