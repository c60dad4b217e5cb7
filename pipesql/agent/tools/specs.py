"""What the model sees of the tools: their JSON schemas (OpenAI ``tools`` format), their limits,
and the check of a call's arguments against its schema."""

from __future__ import annotations

import json
from typing import Any

# Bounds of a tool's answer. Query answers (execute_pipe_sql, sample_data, validate_pipe_sql) are
# short: a tool chat holds several, and the chats train within the main job's sequence limit
# (docs/training_data.md). What the database holds (list_tables, describe_table) may be longer:
# a wide table loses example values, never columns, before CATALOG_CHAR_CAP.
ROW_CAP = 5
CHAR_CAP = 600
CATALOG_CHAR_CAP = 2_000
CELL_CHARS = 40
SAMPLE_LIMIT_DEFAULT = 3
SAMPLE_LIMIT_MAX = 10
TIMEOUT_S = 10.0


class ToolError(Exception):
    """A tool could not do what was asked; the message is shown to the model. ``transient``:
    the answer depends on the machine's load (a timeout), so it is not cached."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def _function(name: str, description: str, required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI tool spec. Every tool chat carries all five in its system turn (about 60 tokens
    each as Qwen's template renders them), so a spec says what the tool gives back and the one
    limit that matters, and a parameter has a description only where its name leaves a doubt."""
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = list(required)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


_TEXT = {"type": "string"}

TOOL_SPECS: list[dict[str, Any]] = [
    _function("list_tables", "The tables, with column and row counts."),
    _function("describe_table", "A table's CREATE TABLE text: columns, types, keys, example values.", ("table",),
              table=_TEXT),
    _function("sample_data", "The first rows of a table.", ("table",), table=_TEXT,
              limit={"type": "integer", "description": f"1 to {SAMPLE_LIMIT_MAX}"}),
    _function("execute_pipe_sql", f"Run a GoogleSQL pipe query (FROM ... |> ...); shows its first {ROW_CAP} rows.",
              ("sql",), sql=_TEXT),
    _function("validate_pipe_sql", "Check that a pipe query parses and compiles, without running it.", ("sql",),
              sql=_TEXT),
]

TOOL_NAMES: tuple[str, ...] = tuple(spec["function"]["name"] for spec in TOOL_SPECS)

SPECS_BY_NAME: dict[str, dict[str, Any]] = {spec["function"]["name"]: spec["function"] for spec in TOOL_SPECS}


def require_sql(sql: Any) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise ToolError("sql must be a non-empty string")
    return sql


def parse_arguments(name: str, arguments: str | dict | None) -> dict[str, Any]:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        parsed: Any = {}
    elif isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError as error:
            raise ToolError(f"arguments are not valid JSON: {error}") from None
    else:
        parsed = arguments
    if not isinstance(parsed, dict):
        raise ToolError(f"arguments must be a JSON object, got {type(parsed).__name__}")
    spec = SPECS_BY_NAME[name]["parameters"]
    unexpected = sorted(set(parsed) - set(spec["properties"]))
    if unexpected:
        raise ToolError(f"{name} takes no argument {unexpected[0]!r}; it takes: {', '.join(spec['properties']) or 'nothing'}")
    missing = [key for key in spec.get("required", ()) if key not in parsed]
    if missing:
        raise ToolError(f"{name} needs the argument {missing[0]!r}")
    return parsed


