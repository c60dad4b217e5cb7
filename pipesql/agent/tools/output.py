"""How tool answers are written: bounded text the model can read."""

from __future__ import annotations

from pipesql.agent import schema_text
from pipesql.agent.tools.specs import CELL_CHARS
from pipesql.sql.execute import QueryResult


def cut(text: str, char_cap: int) -> str:
    """``text`` cut at a line boundary to at most ``char_cap`` characters, saying so."""
    if len(text) <= char_cap:
        return text
    note = f"\n... (output cut at {char_cap} characters)"
    head = text[: max(0, char_cap - len(note))]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + note


def format_result(result: QueryResult, cell_chars: int = CELL_CHARS) -> str:
    """Columns on the first line, then one line per row, cells separated by `` | ``."""
    lines = [" | ".join(result.columns)]
    lines += [" | ".join(schema_text.format_value(v, cell_chars) for v in row) for row in result.rows]
    count = len(result.rows)
    if result.truncated:
        lines.append(f"(first {count} rows shown; the result has more)")
    else:
        lines.append(f"({count} row{'' if count == 1 else 's'})")
    return "\n".join(lines)


def error_text(error: BaseException | str) -> str:
    return f"Error: {error}"
