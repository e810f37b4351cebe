"""Read YAML with line numbers and turn pydantic errors into `file:line: field: problem` messages."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from roleplay.errors import ScenarioError, ValidationErrors

MAX_YAML_BYTES = 512 * 1024
"""Largest YAML file roleplay reads; real scenarios are a few kilobytes."""

PathKey = tuple[str | int, ...]
Problem = tuple[PathKey, str]
"""A location in a document and what is wrong there."""
M = TypeVar("M", bound=BaseModel)


@dataclass
class YamlDocument:
    """A parsed YAML mapping plus the line each key and list item starts on."""

    path: str
    data: dict[str, Any]
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, loc: PathKey) -> int:
        """Line of the deepest part of `loc` that exists in the file (the parent for a missing key)."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1


def format_field(loc: PathKey) -> str:
    """Render ('hidden_facts', 0, 'id') as 'hidden_facts[0].id'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def read_text(path: str | Path) -> str:
    """Read a YAML file as UTF-8 with size and encoding checks that name the fix."""
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise ScenarioError(name, None, "", "file not found; check the path")
    if p.is_dir():
        raise ScenarioError(name, None, "", "is a directory; give a .yaml file")
    size = p.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ScenarioError(
            name, None, "",
            f"file is {size} bytes, larger than the {MAX_YAML_BYTES}-byte limit; split it or remove pasted content",
        )
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(
            name, line, "",
            f"invalid UTF-8 byte 0x{raw[exc.start]:02x}; save the file as UTF-8",
        ) from None


def parse_yaml(text: str, path: str = "<text>") -> YamlDocument:
    """Parse one YAML mapping document, recording lines and rejecting duplicate keys."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError(path, 1, "", "the file is empty; start from `roleplay schema` or a shipped example")
        if not isinstance(node, yaml.MappingNode):
            raise ScenarioError(
                path, node.start_mark.line + 1, "",
                "the top level must be a mapping of `key: value` lines, not a list or a single value",
            )
        lines: dict[PathKey, int] = {(): node.start_mark.line + 1}
        _walk(node, (), lines, path)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = (exc.problem or exc.context or "YAML syntax error").strip()
        raise ScenarioError(
            path, line, "", f"YAML syntax error: {problem}; check indentation, colons and quotes"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, None, "", f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    return YamlDocument(path=path, data=data, lines=lines)


def _walk(node: yaml.Node, loc: PathKey, lines: dict[PathKey, int], path: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ScenarioError(
                    path, line, format_field(loc + (key,)),
                    f"duplicate key (first set on line {seen[key]}); keep only one",
                )
            seen[key] = line
            lines[loc + (key,)] = line
            _walk(value_node, loc + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), lines, path)


def load_document(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file; every failure is a ScenarioError with file and line."""
    return parse_yaml(read_text(path), str(path))


def validate_document(doc: YamlDocument, model: type[M]) -> M:
    """Validate a parsed document into `model`, raising ValidationErrors with file:line messages."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        errors = [_to_scenario_error(doc, model, err) for err in exc.errors()]
        errors.sort(key=lambda e: (e.line or 0, e.field))
        raise ValidationErrors(errors) from None


def _data_loc(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """Keep only the parts of a pydantic loc that address real data (drop union tags, '[key]')."""
    out: list[str | int] = []
    cur: Any = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(str(part))
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and not part.startswith(("[", "function")) and "[" not in part:
            out.append(part)  # a missing key: keep it so the message names it
            cur = None
        # anything else is a pydantic-internal tag
    return tuple(out)


def _unwrap(tp: Any) -> Any:
    """Strip Optional/list/dict/Annotated wrappers down to a model class, if any."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (list, tuple, set, frozenset):
        return _unwrap(typing.get_args(tp)[0])
    if origin is dict:
        return _unwrap(typing.get_args(tp)[1])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            found = _unwrap(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    return tp


def model_at(model: type[BaseModel], loc: PathKey) -> type[BaseModel] | None:
    """The pydantic model class that holds the last key of `loc`, if one can be found."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _to_scenario_error(doc: YamlDocument, model: type[BaseModel], err: Any) -> ScenarioError:
    loc = _data_loc(doc.data, tuple(err["loc"]))
    line = doc.line_of(loc)
    name = format_field(loc)
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        owner = model_at(model, loc)
        valid = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid fields here: {', '.join(valid)}"
        return ScenarioError(doc.path, line, name, f"unknown field '{key}'; {hint}")
    if kind == "missing":
        return ScenarioError(doc.path, line, name, "required field is missing; add it")
    if kind in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        close = difflib.get_close_matches(str(given), options, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return ScenarioError(doc.path, line, name, f"'{given}' is not allowed; {hint}use one of: {', '.join(options)}")
    if kind in ("string_type", "int_type", "int_parsing", "float_type", "float_parsing", "bool_type",
                "bool_parsing", "list_type", "dict_type", "model_type", "model_attributes_type", "int_from_float"):
        wanted = {
            "string_type": "text", "int_type": "a whole number", "int_parsing": "a whole number",
            "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
            "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list (lines starting with '- ')",
            "dict_type": "a mapping of `key: value` lines", "model_type": "a mapping of `key: value` lines",
            "model_attributes_type": "a mapping of `key: value` lines",
        }[kind]
        return ScenarioError(doc.path, line, name, f"expected {wanted}, got {_describe(given)}")
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return ScenarioError(doc.path, line, name, msg[:1].lower() + msg[1:])


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (empty value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def problem_errors(doc: YamlDocument, problems: list[Problem]) -> list[ScenarioError]:
    """Turn located problems into ScenarioErrors with the file's line numbers."""
    return [ScenarioError(doc.path, doc.line_of(loc), format_field(loc), msg) for loc, msg in problems]


def raise_problems(doc: YamlDocument, problems: list[Problem]) -> None:
    """Raise ValidationErrors if there are any problems."""
    if problems:
        raise ValidationErrors(problem_errors(doc, problems))
