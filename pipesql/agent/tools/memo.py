"""A bounded memo of tool work (translations, results) that remembers failures too, except
those that depend on the machine's load."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

from pipesql.agent.tools.specs import ToolError


class Memo:
    """A bounded LRU of ``compute(key)`` that remembers :class:`ToolError` failures too, so a
    query that failed once is not translated or run again. A failure marked ``transient`` (a
    timeout: the same query may finish on a quieter machine) is raised but not remembered, so
    one caller who loads the CPU cannot make another's query fail from then on."""

    def __init__(self, size: int):
        self._size = size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str, compute: Callable[[str], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            outcome = self._entries[key]
        else:
            try:
                outcome = compute(key)
            except ToolError as error:
                if error.transient:
                    raise
                outcome = error
            self._entries[key] = outcome
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        if isinstance(outcome, ToolError):
            raise outcome
        return outcome
