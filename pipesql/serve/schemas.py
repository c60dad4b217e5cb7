"""The OpenAI chat and tool request bodies as pydantic models: what a request may hold is
checked here, once, before anything is templated, batched or run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_MESSAGES = 256
MAX_TOOLS = 64
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 64
FUNCTION_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
DB_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# What torch and the backends take as a seed (a signed 64-bit integer).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


def text_problem(data: Any, where: str = "") -> str | None:
    """``"<field>: ..."`` for the first string in a JSON body that no tokenizer or response can
    hold (a lone surrogate: JSON's ``"\\ud800"`` decodes to one), or None."""
    from pipesql.storage.files import lone_surrogate

    if isinstance(data, str):
        position = lone_surrogate(data)
        return None if position is None else f"{where or 'body'}: a lone surrogate at character {position} is not text"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        name = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and lone_surrogate(key) is not None:
            return f"{where or 'body'}: a key holds a lone surrogate"
        problem = text_problem(value, name)
        if problem is not None:
            return problem
    return None


class _Model(BaseModel):
    # OpenAI clients send fields this server does not use (user, logprobs ...): ignored.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Model):
    type: Literal["text"]
    text: str


class FunctionCall(_Model):
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Model):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Model):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_unless_assistant(self) -> "Message":
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self

    def as_chat_message(self) -> dict[str, Any]:
        """The message as backends and chat templates take it (text parts joined)."""
        content = self.content if not isinstance(self.content, list) else "".join(p.text for p in self.content)
        message: dict[str, Any] = {"role": self.role, "content": content}
        if self.tool_calls:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        for key in ("name", "tool_call_id"):
            if getattr(self, key) is not None:
                message[key] = getattr(self, key)
        return message


class FunctionSpec(_Model):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(_Model):
    type: Literal["function"]
    function: FunctionSpec


class StreamOptions(_Model):
    include_usage: bool = False


class ChatRequest(_Model):
    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    tools: list[ToolSpec] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "required"] = "auto"
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings")
        if any(not 1 <= len(s) <= MAX_STOP_CHARS for s in stops):
            raise ValueError(f"each stop string needs 1 to {MAX_STOP_CHARS} characters")
        return stops

    @field_validator("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens", mode="before")
    @classmethod
    def _numbers_not_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    def chat_messages(self) -> list[dict[str, Any]]:
        return [m.as_chat_message() for m in self.messages]

    def tool_dicts(self) -> list[dict[str, Any]] | None:
        """The tools the chat template should announce, or None (none given, or tool_choice none)."""
        if not self.tools or self.tool_choice == "none":
            return None
        return [tool.model_dump(exclude_none=True) for tool in self.tools]


class ToolRequest(_Model):
    db_id: str = Field(pattern=DB_ID)
    arguments: dict[str, Any] = Field(default_factory=dict)
