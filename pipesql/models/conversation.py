"""A conversation row as the chat template renders it: the one reading of generate's rows that
train tokenizes and generate measures, so the lengths generate reports are the lengths train cuts.

Rows are what ``pipesql generate`` writes: ``messages`` (system / user / assistant / tool, OpenAI
style: assistant ``tool_calls`` whose ``function.arguments`` is a JSON string) and, for
tool-calling rows, ``tools`` (a list, or that list as a JSON string).
"""

from __future__ import annotations

import json
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class ConversationError(ValueError):
    """A row that is not a usable training conversation."""


def _decode_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            raise ConversationError(f"tool call arguments are not JSON: {error}") from None
    return arguments


def normalize_conversation(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """``(messages, tools)`` ready for ``apply_chat_template``; raises ConversationError."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConversationError("no 'messages' list")
    normalized = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConversationError(f"message {index}: role must be one of {ROLES}")
        out = {"role": message["role"], "content": message.get("content") or ""}
        if not isinstance(out["content"], str):
            raise ConversationError(f"message {index}: content must be text")
        calls = message.get("tool_calls") or []
        if calls:
            if message["role"] != "assistant":
                raise ConversationError(f"message {index}: only assistant messages carry tool_calls")
            out["tool_calls"] = []
            for call in calls:
                function = call.get("function", call) if isinstance(call, dict) else None
                if not isinstance(function, dict) or not function.get("name"):
                    raise ConversationError(f"message {index}: a tool call without a function name")
                out["tool_calls"].append({"type": "function", "function": {
                    "name": function["name"], "arguments": _decode_arguments(function.get("arguments", {}))}})
        normalized.append(out)
    if not any(m["role"] == "assistant" for m in normalized):
        raise ConversationError("no assistant message to learn from")
    tools = row.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError as error:
            raise ConversationError(f"'tools' is not JSON: {error}") from None
    if tools is not None and not isinstance(tools, list):
        raise ConversationError("'tools' must be a list of function specs")
    return normalized, tools or None
