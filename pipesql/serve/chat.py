"""A chat request on its way to the model and back: templated and measured against the
model's context before it joins a batch, then answered as an OpenAI chat completion (tool
calls parsed from the Qwen/Hermes ``<tool_call>`` blocks), whole or as SSE chunks."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, AsyncIterator

from pipesql.models.backends import Backend, Chat, Completion, SamplingParams, render_prompt
from pipesql.serve.guard import ApiError
from pipesql.serve.schemas import ChatRequest

# A prompt longer than this many characters per token of context is refused before it is
# tokenized (tokenizing megabytes would hold a worker for seconds).
_CHARS_PER_TOKEN_BOUND = 32
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split a model answer into its text and its ``<tool_call>`` blocks (Qwen/Hermes format).
    A block whose JSON does not parse, or names no function, stays in the text."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    position = 0
    for match in _TOOL_CALL.finditer(text):
        try:
            body = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            continue
        arguments = body.get("arguments", {})
        kept.append(text[position:match.start()])
        position = match.end()
        calls.append({
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": body["name"],
                         "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)},
        })
    kept.append(text[position:])
    content = "".join(kept).strip()
    return (content or None) if calls else text, calls


def context_tokens(backend: Backend, configured: int) -> int | None:
    """The model's context length: ``configured`` if set, else what the model says, else None."""
    if configured > 0:
        return configured
    config = getattr(getattr(backend, "model", None), "config", None)
    if getattr(config, "max_position_embeddings", None):
        return int(config.max_position_embeddings)
    engine_config = getattr(getattr(getattr(backend, "llm", None), "llm_engine", None), "model_config", None)
    if getattr(engine_config, "max_model_len", None):
        return int(engine_config.max_model_len)
    limit = getattr(getattr(backend, "tokenizer", None), "model_max_length", None)
    return int(limit) if isinstance(limit, int) and limit < 10_000_000 else None


class ChatPreparer:
    """Turns a validated request into what the batch queue takes, templating it on the way so
    a chat its template cannot render, or a prompt past the context, is refused alone."""

    def __init__(self, backend: Backend, *, max_tokens: int, max_tokens_limit: int, context: int | None):
        self.backend = backend
        self.max_tokens = max_tokens
        self.max_tokens_limit = max_tokens_limit
        self.context = context

    def prepare(self, request: ChatRequest) -> tuple[Chat, SamplingParams, int]:
        max_tokens = request.max_completion_tokens or request.max_tokens or min(self.max_tokens, self.max_tokens_limit)
        if max_tokens > self.max_tokens_limit:
            raise ApiError(400, f"max_tokens must be at most {self.max_tokens_limit}")
        chat = Chat.of(request.chat_messages(), request.tool_dicts())
        params = SamplingParams(max_new_tokens=max_tokens, temperature=request.temperature, top_p=request.top_p,
                                stop=tuple(request.stop or ()), seed=request.seed)
        return chat, params, self._prompt_tokens(chat, max_tokens)

    def _prompt_tokens(self, chat: Chat, max_tokens: int) -> int:
        tokenizer = getattr(self.backend, "tokenizer", None)
        if tokenizer is None:  # a scripted backend: no template, no context
            return 0
        try:
            prompt = render_prompt(tokenizer, chat)
        except Exception as error:  # jinja errors and whatever a template raises
            raise ApiError(400, f"the chat template cannot render these messages: {type(error).__name__}: {error}") from None
        if self.context is None:
            return 0
        if len(prompt) > _CHARS_PER_TOKEN_BOUND * self.context:
            raise ApiError(400, f"the prompt ({len(prompt)} characters) cannot fit the model's context of "
                                f"{self.context} tokens")
        tokens = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        if tokens + max_tokens > self.context:
            raise ApiError(400, f"the prompt has {tokens} tokens; with max_tokens {max_tokens} that exceeds the "
                                f"model's context of {self.context} tokens")
        return tokens


def chat_response(model: str, completion: Completion, parse_tools: bool) -> dict[str, Any]:
    content, calls = parse_tool_calls(completion.text) if parse_tools else (completion.text, [])
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if calls else completion.finish_reason}],
        "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                  "total_tokens": completion.prompt_tokens + completion.completion_tokens},
    }


def stream_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A finished chat response as OpenAI ``chat.completion.chunk`` events: the role, the
    content, each tool call, the finish reason, and the usage when asked for."""
    base = {"id": response["id"], "object": "chat.completion.chunk", "created": response["created"],
            "model": response["model"]}
    choice, message = response["choices"][0], response["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if message["content"]:
        chunks.append(chunk({"content": message["content"]}))
    for index, call in enumerate(message.get("tool_calls", [])):
        chunks.append(chunk({"tool_calls": [{"index": index, **call}]}))
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": response["usage"]})
    return chunks


async def sse_events(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
