"""Tool-calling conversations: an agent that looks at the database, builds the query with the
five tools (:mod:`pipesql.agent.tools`, outputs really computed) and ends with the full pipe query.

The pattern grows with the question's difficulty:

- ``direct`` (easy / simple): describe the tables the query reads -> execute the query -> answer.
- ``explore`` (medium / moderate): list tables -> describe -> execute the first half of the
  operators -> execute the whole query -> answer.
- ``incremental`` (hard / extra / challenging): list tables -> describe -> sample the first table
  -> execute up to three evenly spaced prefixes, the last the whole query -> validate -> answer.

OpenAI tools format: assistant turns carry ``tool_calls`` whose ``arguments`` is a JSON *string*
(so dataset loaders never merge argument keys across rows); each result is a ``tool`` message
with the matching ``tool_call_id``. The sample's ``tools`` field holds :data:`TOOL_SPECS` as a
JSON string, which TRL's ``SFTTrainer`` decodes before applying the chat template.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from pipesql.agent import prompts
from pipesql.generate.pairs import GoldenPair
from pipesql.generate.trajectory import TOOLS, sample_record
from pipesql.sql.schema import DatabaseSchema
from pipesql.agent.tools import TOOL_SPECS, Toolbox

TOOLS_JSON = json.dumps(TOOL_SPECS, ensure_ascii=False)
DIRECT, EXPLORE, INCREMENTAL = "direct", "explore", "incremental"
PATTERNS = (DIRECT, EXPLORE, INCREMENTAL)
MAX_DESCRIBED = 4
# Most prefixes each pattern executes (evenly spaced, the last the whole query), and at most one
# every STRIDE operators. Each execution repeats the query so far as its argument and adds a
# result: with SmolLM2's tokenizer some 150-300 tokens, which more checkpoints would spend on
# what the step samples already teach.
_EXECUTIONS = {DIRECT: 1, EXPLORE: 2, INCREMENTAL: 3}
STRIDE = 2

_PATTERN_BY_DIFFICULTY = {
    "easy": DIRECT, "simple": DIRECT,
    "medium": EXPLORE, "moderate": EXPLORE,
    "hard": INCREMENTAL, "extra": INCREMENTAL, "challenging": INCREMENTAL,
}


class ToolChatError(Exception):
    """A tool answered with an error where the conversation needs a real result."""


def pattern_for(difficulty: str | None, operator_count: int) -> str:
    """The conversation pattern of a pair; by operator count when the difficulty is unknown."""
    if difficulty and difficulty.lower() in _PATTERN_BY_DIFFICULTY:
        return _PATTERN_BY_DIFFICULTY[difficulty.lower()]
    return DIRECT if operator_count <= 2 else EXPLORE if operator_count <= 4 else INCREMENTAL


def tables_read(pipe_sql: str, schema: DatabaseSchema) -> list[str]:
    """Schema tables the query names, in order of first mention (schema spelling)."""
    found = []
    for table in schema.tables:
        match = re.search(rf"(?<![\w.`]){re.escape(table.name)}(?![\w`])|`{re.escape(table.name)}`", pipe_sql, re.IGNORECASE)
        if match:
            found.append((match.start(), table.name))
    return [name for _, name in sorted(found)]


def _checkpoints(operator_count: int, pattern: str) -> list[int]:
    """Prefix lengths the agent executes, evenly spaced; the last is always the whole query.

    >>> _checkpoints(7, INCREMENTAL), _checkpoints(3, INCREMENTAL), _checkpoints(4, EXPLORE), _checkpoints(1, EXPLORE)
    ([3, 5, 7], [2, 3], [2, 4], [1])
    """
    executions = min(_EXECUTIONS[pattern], -(-operator_count // STRIDE))
    return sorted({-(-operator_count * k // executions) for k in range(1, executions + 1)})


class _Conversation:
    def __init__(self, toolbox: Toolbox):
        self.toolbox = toolbox
        self.messages: list[dict[str, Any]] = []
        self.calls = 0

    def turn(self, *calls: tuple[str, dict[str, Any]]) -> None:
        """One assistant turn calling ``calls`` (in parallel), then one tool message each."""
        tool_calls, results = [], []
        for name, arguments in calls:
            self.calls += 1
            call_id = f"call_{self.calls}"
            output = self.toolbox.call(name, arguments)
            if output.startswith("Error:"):
                raise ToolChatError(f"{name}({arguments}) -> {output}")
            tool_calls.append({"id": call_id, "type": "function",
                               "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}})
            results.append({"role": "tool", "tool_call_id": call_id, "content": output})
        self.messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
        self.messages.extend(results)


def tool_chat_sample(pair: GoldenPair, operators: Sequence[str], toolbox: Toolbox) -> dict[str, Any]:
    """The tool-calling sample of one pair; raises :class:`ToolChatError` if a tool fails."""
    pattern = pattern_for(pair.difficulty, len(operators))
    full_query = prompts.join_operators(operators)
    chat = _Conversation(toolbox)
    chat.messages += [
        {"role": "system", "content": prompts.AGENT_SYSTEM_PROMPT},
        {"role": "user", "content": prompts.agent_user_message(pair.question, pair.db_id, pair.evidence)},
    ]
    tables = tables_read(full_query, toolbox.schema)[:MAX_DESCRIBED]
    if pattern != DIRECT or not tables:
        chat.turn(("list_tables", {}))
    if tables:
        chat.turn(*[("describe_table", {"table": name}) for name in tables])
    if pattern == INCREMENTAL and tables:
        chat.turn(("sample_data", {"table": tables[0], "limit": 3}))
    for length in _checkpoints(len(operators), pattern):
        chat.turn(("execute_pipe_sql", {"sql": prompts.join_operators(operators[:length])}))
    if pattern == INCREMENTAL:
        chat.turn(("validate_pipe_sql", {"sql": full_query}))
    chat.messages.append({"role": "assistant", "content": full_query})
    return sample_record(pair, TOOLS, chat.messages, pattern=pattern, tools=TOOLS_JSON)
