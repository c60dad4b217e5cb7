"""The dispatcher: a model's tool call (a name and JSON arguments) to the tool function of that
name, over the :class:`~pipesql.agent.tools.session.Session` the tools share."""

from __future__ import annotations

from typing import Callable

from pipesql.agent.tools import catalog, query
from pipesql.agent.tools.output import error_text
from pipesql.agent.tools.session import Session
from pipesql.agent.tools.specs import TOOL_NAMES, ToolError, parse_arguments

# One function per tool spec, ``tool(session, **arguments) -> str``, found by the spec's name.
TOOLS: dict[str, Callable[..., str]] = {
    name: getattr(catalog, name, None) or getattr(query, name) for name in TOOL_NAMES}


class Toolbox(Session):
    """The tools bound to one SQLite database (see :mod:`pipesql.agent.tools`).

    Every query goes through the sandbox (:mod:`pipesql.sql.execute`): the connection can only
    read, so no call can leave state (a TEMP table, a PRAGMA) that changes the next call's
    answer. Query answers are cached by SQL text, so a generator that checks a prefix and later
    shows it in a tool call pays for one execution.
    """

    def call(self, name: str, arguments: str | dict | None = None) -> str:
        """Run tool ``name`` with ``arguments`` (a JSON object or its text). Never raises."""
        try:
            tool = TOOLS.get(name)
            if tool is None:
                raise ToolError(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
            return tool(self, **parse_arguments(name, arguments))
        except ToolError as error:
            return error_text(error)
        except Exception as error:  # a tool must answer, whatever happened underneath
            return error_text(f"{type(error).__name__}: {error}")
