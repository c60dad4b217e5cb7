"""The decompiler's fixture files, read the way sqlglot reads its optimizer fixtures.

``tests/fixtures/decompile/<family>.sql`` holds one rule family: a SQLite query, then the pipe
SQL it becomes laid out as printed (or the reason it is refused), each ending with ``;``.
Lines starting with ``--`` are comments. ``# key: value`` lines right before a query set that
case's options:

- ``# schema: NAME`` runs it on ``schemas/NAME.sql`` (DDL and rows; default: the schema named
  like the file when there is one, else ``singers``); ``# schema: none`` decompiles without one.
- ``# execute: false`` skips running it: by default the gold and the pipe SQL translated back
  with ``pipe_to_sqlite`` must return the same rows on the schema's database.
- ``# analyze: false`` skips the ZetaSQL check: by default the pipe SQL must analyze as
  GoogleSQL against the schema.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "decompile"
SCHEMAS = FIXTURES / "schemas"
DEFAULT_SCHEMA = "singers"
REASON = re.compile(r"^(unsupported:|parse_error: )")


@dataclass(frozen=True)
class Case:
    family: str  # the fixture file's stem
    line: int  # where the query starts, 1-based
    sql: str
    expected: str  # pipe SQL, or a reason
    options: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.family}.sql:{self.line}"

    @property
    def schema(self) -> str | None:
        default = self.family if (SCHEMAS / f"{self.family}.sql").is_file() else DEFAULT_SCHEMA
        name = self.options.get("schema", default)
        return None if name == "none" else name

    @property
    def refused(self) -> bool:
        return bool(REASON.match(self.expected))

    def _enabled(self, option: str) -> bool:
        return self.options.get(option, "true").lower() != "false" and self.schema is not None and not self.refused

    @property
    def execute(self) -> bool:
        return self._enabled("execute")

    @property
    def analyze(self) -> bool:
        return self._enabled("analyze")


def _statements(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of each ``;``-terminated statement, comment lines blanked (so lines count)."""
    text = "\n".join("" if line.lstrip().startswith("--") else line for line in path.read_text().splitlines())
    statements, start = [], 0
    for end in [m.start() for m in re.finditer(";", text)]:
        chunk = text[start:end]
        stripped = chunk.lstrip()
        if stripped:
            statements.append((text.count("\n", 0, start + len(chunk) - len(stripped)) + 1, stripped.rstrip()))
        start = end + 1
    if text[start:].strip():
        raise ValueError(f"{path}: text after the last ';'")
    return statements


def _options(sql: str) -> tuple[str, dict[str, str]]:
    """The query without its leading ``# key: value`` lines, and those options."""
    lines = sql.splitlines()
    options = {}
    while lines and lines[0].startswith("#"):
        key, _, value = lines.pop(0).lstrip("#").partition(":")
        options[key.strip()] = value.strip()
    return "\n".join(lines).strip(), options


def read_cases(path: Path) -> list[Case]:
    statements = _statements(path)
    if len(statements) % 2:
        raise ValueError(f"{path}:{statements[-1][0]}: a query without its expected output")
    cases = []
    for (line, raw), (_, expected) in zip(statements[::2], statements[1::2]):
        sql, options = _options(raw)
        cases.append(Case(path.stem, line + len(raw.splitlines()) - len(sql.splitlines()), sql, expected, options))
    return cases


def all_cases() -> list[Case]:
    return [case for path in sorted(FIXTURES.glob("*.sql")) for case in read_cases(path)]


def build_database(schema: str, directory: Path) -> Path:
    """``schemas/<schema>.sql`` run into a fresh SQLite file in ``directory``."""
    path = directory / f"{schema}.sqlite"
    conn = sqlite3.connect(path)
    try:
        conn.executescript((SCHEMAS / f"{schema}.sql").read_text())
        conn.commit()
    finally:
        conn.close()
    return path
