"""The shared agent tools over HTTP: one :class:`pipesql.agent.tools.Toolbox` per database.

Every query goes through the sandbox (:mod:`pipesql.sql.execute`), whose connection can only
read: one caller can leave nothing (a TEMP table, a PRAGMA) that changes another's answers.
A toolbox serves one request at a time (it holds one SQLite connection)."""

from __future__ import annotations

import threading
from pathlib import Path

from pipesql.agent.tools import ROW_CAP, TOOL_NAMES, Toolbox
from pipesql.corpora.items import find_database


class UnknownTool(LookupError):
    pass


class UnknownDatabase(LookupError):
    pass


class ToolService:
    def __init__(self, db_dirs: list[Path], *, timeout_s: float = 10.0, row_cap: int = ROW_CAP):
        self.db_dirs = [Path(d) for d in db_dirs]
        self.timeout_s = timeout_s
        self.row_cap = row_cap
        self._toolboxes: dict[str, tuple[Toolbox, threading.Lock]] = {}
        self._lock = threading.Lock()

    def _toolbox(self, db_id: str) -> tuple[Toolbox, threading.Lock]:
        with self._lock:
            if db_id not in self._toolboxes:
                path = find_database(self.db_dirs, db_id)
                if path is None:
                    where = ", ".join(map(str, self.db_dirs)) or "no --db-dir given"
                    raise UnknownDatabase(f"unknown database {db_id!r} (looked in: {where})")
                self._toolboxes[db_id] = (Toolbox(path, timeout_s=self.timeout_s, row_cap=self.row_cap),
                                          threading.Lock())
            return self._toolboxes[db_id]

    def call(self, name: str, db_id: str, arguments: dict) -> str:
        """The tool's text answer (``Error: ...`` for a failing call); raises
        :class:`UnknownTool` / :class:`UnknownDatabase`. ``db_id`` is already a checked name."""
        if name not in TOOL_NAMES:
            raise UnknownTool(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
        toolbox, lock = self._toolbox(db_id)
        with lock:
            return toolbox.call(name, arguments)

    def close(self) -> None:
        with self._lock:
            for toolbox, _ in self._toolboxes.values():
                toolbox.close()
            self._toolboxes.clear()
