"""What the model sees of the tools: their JSON schemas (OpenAI ``tools`` format), their limits,
and the check of a call's arguments against its schema."""

from __future__ import annotations

import json
from typing import Any

ROW_CAP = 20
CHAR_CAP = 2_000
CELL_CHARS = 60
SAMPLE_LIMIT_DEFAULT = 3
SAMPLE_LIMIT_MAX = 10
TIMEOUT_S = 10.0


class ToolError(Exception):
    """A tool could not do what was asked; the message is shown to the model. ``transient``:
    the answer depends on the machine's load (a timeout), so it is not cached."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


TOOL_SPECS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "list_tables",
            "description": "List the tables of the database with their column and row counts.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "describe_table",
            "description": "Show a table's columns with their types, primary and foreign keys, and a few example values.",
            "parameters": {
                "type": "object",
                "properties": {"table": {"type": "string", "description": "Table name."}},
                "required": ["table"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "sample_data",
            "description": f"Show the first rows of a table (at most {SAMPLE_LIMIT_MAX}).",
            "parameters": {
                "type": "object",
                "properties": {
                    "table": {"type": "string", "description": "Table name."},
                    "limit": {"type": "integer", "description": f"Number of rows, 1 to {SAMPLE_LIMIT_MAX}.",
                              "default": SAMPLE_LIMIT_DEFAULT},
                },
                "required": ["table"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "execute_pipe_sql",
            "description": (f"Run a GoogleSQL pipe query (FROM ... |> ...) on the database and show the result "
                            f"(at most {ROW_CAP} rows)."),
            "parameters": {
                "type": "object",
                "properties": {"sql": {"type": "string", "description": "The pipe query."}},
                "required": ["sql"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "validate_pipe_sql",
            "description": "Check that a GoogleSQL pipe query parses and compiles against the database, without running it.",
            "parameters": {
                "type": "object",
                "properties": {"sql": {"type": "string", "description": "The pipe query."}},
                "required": ["sql"],
            },
        },
    },
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
    missing = [key for key in spec["required"] if key not in parsed]
    if missing:
        raise ToolError(f"{name} needs the argument {missing[0]!r}")
    return parsed


