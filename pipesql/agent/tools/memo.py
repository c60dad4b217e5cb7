"""A bounded memo of tool work (translations, results) that remembers failures too, except
those that depend on the machine's load."""

from __future__ import annotations

from typing import Any, Callable

from pipesql.agent.tools.specs import ToolError
from pipesql.lru import LRU

_MISSING = object()


class Memo:
    """A bounded LRU of ``compute(key)`` that remembers :class:`ToolError` failures too, so a
    query that failed once is not translated or run again. A failure marked ``transient`` (a
    timeout: the same query may finish on a quieter machine) is raised but not remembered, so
    one caller who loads the CPU cannot make another's query fail from then on."""

    def __init__(self, size: int):
        self._entries: LRU[str, Any] = LRU(size)

    def get(self, key: str, compute: Callable[[str], Any]) -> Any:
        outcome = self._entries.get(key, _MISSING)
        if outcome is _MISSING:
            try:
                outcome = compute(key)
            except ToolError as error:
                if error.transient:
                    raise
                outcome = error
            self._entries.put(key, outcome)
        if isinstance(outcome, ToolError):
            raise outcome
        return outcome
