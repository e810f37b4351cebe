"""Read YAML with line numbers and turn pydantic errors into `file:line: field: problem` messages."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from roleplay.errors import ScenarioError, ValidationErrors

MAX_YAML_BYTES = 512 * 1024
"""Largest YAML file roleplay reads; real scenarios are a few kilobytes."""

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
"""The pattern of scenario, rubric, criterion, check and hidden-fact ids."""

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
            f"file is {size} bytes, larger than the {MAX_YAML_BYTES}-byte limit; "
            "remove pasted or generated content (a scenario or rubric is a few kilobytes)",
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
                "the top level is a list or a single value; write the file as `key: value` lines (id:, title:, ...)",
            )
        lines: dict[PathKey, int] = {(): node.start_mark.line + 1}
        _walk(node, (), lines, path, [0])
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        line, problem = _syntax_problem(exc, text)
        raise ScenarioError(path, line, "", f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, None, "", f"YAML error: {exc}") from None
    except RecursionError:
        raise ScenarioError(path, None, "", f"nested more than {MAX_DEPTH} levels deep; a scenario or rubric needs "
                            "a handful of levels, so flatten the structure") from None
    finally:
        loader.dispose()
    return YamlDocument(path=path, data=data, lines=lines)


_FLOW_BRACKETS = {"flow sequence": ("[", "]"), "flow mapping": ("{", "}")}


_QUOTED_VALUE = re.compile(r"""^\s*(?:-\s+)*(?:[^\s#'"\[{][^#]*?:\s+)?(["'])(.*)$""")


def _unclosed_quote_line(text: str, before: int) -> int | None:
    """First line up to `before` whose value opens a quote it does not close (a likely cause of a later error)."""
    for number, content in enumerate(text.splitlines()[:before], start=1):
        found = _QUOTED_VALUE.match(content)
        if not found:
            continue
        quote, rest = found.groups()
        closing = r'(?<!\\)(?:\\\\)*"' if quote == '"' else r"'(?!')"
        if not re.search(closing, rest.replace("''", "") if quote == "'" else rest):
            return number
    return None


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str = "") -> tuple[int | None, str]:
    """The line to point at and a plain explanation with a fix, for the common YAML mistakes."""
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = (exc.context or "").strip()
    at = exc.problem_mark or exc.context_mark
    line = at.line + 1 if at is not None else None
    started = exc.context_mark.line + 1 if exc.context_mark is not None else line
    unclosed = _unclosed_quote_line(text, line or 0)
    if unclosed is not None and unclosed != line:
        return unclosed, (
            f"the quote opened on this line is not closed on this line (the file stops parsing on line {line}); "
            "add the closing quote"
        )
    for kind, (opening, closing) in _FLOW_BRACKETS.items():
        if kind in context:
            return started, (
                f"the '{opening}' opened on this line is not closed ({problem}); "
                f"add the missing '{closing}', and quote items that contain ':' or ','"
            )
    if "scanning a quoted scalar" in context:
        return started, "the quote opened on this line is never closed; add the closing quote"
    if "scanning a simple key" in context:
        return started, (
            "this line has no ':' after its key; write it as `key: value`, "
            "or indent it further to continue the text above"
        )
    if "'\\t'" in problem:
        return line, "a tab is used for indentation; indent with spaces only"
    if problem == "mapping values are not allowed here" and at is not None:
        before = text.splitlines()[at.line][: at.column] if at.line < len(text.splitlines()) else ""
        if re.search(r"\S:\s", before):
            return line, (
                "the value after the key contains ': '; put the whole value in quotes, "
                "or write `key: >` and the text on the next line, indented"
            )
        return line, "unexpected ':' on this line; indent this key exactly like the keys above it"
    if "expected <block end>" in problem:
        return line, (
            "this line is indented differently from the lines above it; line up keys of the same "
            "mapping (and '- ' items of the same list) with the same number of spaces"
        )
    if "single document" in context:
        return line, "the file holds more than one YAML document ('---'); keep one scenario or rubric per file"
    return line, f"{problem}; check indentation, colons and quotes"


MAX_NODES = 20_000
MAX_DEPTH = 40


def _walk(node: yaml.Node, loc: PathKey, lines: dict[PathKey, int], path: str, count: list[int]) -> None:
    """Record the line of every key and item; refuse duplicate keys, and documents that aliases (`*name`)
    expand past MAX_NODES values or that nest past MAX_DEPTH, before anything is built from them."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ScenarioError(path, node.start_mark.line + 1, format_field(loc),
                            f"the file expands to more than {MAX_NODES:,} values (YAML anchors and aliases, &name and "
                            "*name, repeat content); write the values out instead of referring to them")
    if len(loc) > MAX_DEPTH:
        raise ScenarioError(path, node.start_mark.line + 1, format_field(loc),
                            f"nested more than {MAX_DEPTH} levels deep; a scenario or rubric needs a handful of "
                            "levels, so flatten the structure")
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
            _walk(value_node, loc + (key,), lines, path, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), lines, path, count)


def load_document(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file; every failure is a ScenarioError with file and line."""
    return parse_yaml(read_text(path), str(path))


def validate_document(doc: YamlDocument, model: type[M]) -> M:
    """Validate a parsed document into `model`, raising ValidationErrors with file:line messages."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raw = exc.errors()
        # A misspelt key is reported once, as the unknown key with its suggestion, not also as missing.
        typos: set[PathKey] = set()
        for err in raw:
            if err["type"] == "extra_forbidden":
                loc = _data_loc(doc.data, tuple(err["loc"]))
                close = _nearest_field(model, loc)
                if close:
                    typos.add(loc[:-1] + (close,))
        errors = [
            _to_scenario_error(doc, model, err)
            for err in raw
            if not (err["type"] == "missing" and _data_loc(doc.data, tuple(err["loc"])) in typos)
        ]
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
    key_next = False  # the previous field is a mapping, so this part is one of its keys, not a field
    for part in loc[:-1]:
        if isinstance(part, int) or key_next:
            key_next = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
        key_next = _is_mapping(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _is_mapping(tp: Any) -> bool:
    """Whether a field annotation is a dict (through Annotated and Optional)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _is_mapping(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(arg) for arg in typing.get_args(tp) if arg is not type(None))
    return origin is dict


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
        close = _nearest_field(model, loc)
        hint = f"did you mean '{close}'?" if close else f"valid fields here: {', '.join(valid)}"
        return ScenarioError(doc.path, line, name, f"unknown field '{key}'; {hint}")
    if kind == "missing":
        return ScenarioError(doc.path, line, name, "required field is missing; add it")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        size = "small" if kind.startswith("greater") else "large"
        return ScenarioError(doc.path, line, name, f"{given} is too {size}; {_range_hint(model, loc, err)}")
    if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == ID_PATTERN:
        slug = re.sub(r"[^a-z0-9]+", "-", str(given).lower()).strip("-")
        hint = f"did you mean '{slug}'? " if re.match(ID_PATTERN, slug) else ""
        return ScenarioError(
            doc.path, line, name,
            f"'{given}' is not a valid id; {hint}use 2-64 lowercase letters, digits and hyphens, "
            "starting with a letter or digit",
        )
    if kind == "string_too_short":
        return ScenarioError(doc.path, line, name, "is empty; write some text here")
    if kind == "too_short":
        least = err.get("ctx", {}).get("min_length", 1)
        return ScenarioError(
            doc.path, line, name, f"expected at least {least} item{'s' if least != 1 else ''}, got none; add one"
        )
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


def _nearest_field(model: type[BaseModel], loc: PathKey) -> str | None:
    """The valid field name closest to the unknown key at the end of `loc`, if one is close enough."""
    if not loc:
        return None
    owner = model_at(model, loc)
    if owner is None:
        return None
    close = difflib.get_close_matches(str(loc[-1]), sorted(owner.model_fields), n=1, cutoff=0.6)
    return close[0] if close else None


def _range_hint(model: type[BaseModel], loc: PathKey, err: Any) -> str:
    """'use a whole number from 0 to 5', from the field's bounds (or pydantic's, if not found)."""
    bounds: dict[str, Any] = dict(err.get("ctx", {}))
    kind_of = "a number"
    owner = model_at(model, loc) if loc else None
    info = owner.model_fields.get(str(loc[-1])) if owner else None
    if info is not None:
        if info.annotation is int:
            kind_of = "a whole number"
        for meta in info.metadata:
            for attr in ("gt", "ge", "lt", "le"):
                if getattr(meta, attr, None) is not None:
                    bounds[attr] = getattr(meta, attr)
    if "ge" in bounds and "le" in bounds:
        return f"use {kind_of} from {bounds['ge']} to {bounds['le']}"
    parts = []
    for attr, words in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if attr in bounds:
            parts.append(f"{words} {bounds[attr]}")
    return f"use {kind_of} {' and '.join(parts)}"


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


def load_checked(path: str | Path, model: type[M], problems: Callable[[M], list[Problem]]) -> M:
    """Load a YAML file into `model`, then run the cross-field `problems` check; every error has file:line.

    Raises:
        ScenarioError: the file cannot be read or parsed.
        ValidationErrors: one or more fields are invalid.
    """
    doc = load_document(path)
    item = validate_document(doc, model)
    raise_problems(doc, problems(item))
    return item


def json_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a YAML file type, for designers' editors."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema
