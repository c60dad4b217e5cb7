"""The FastAPI application: OpenAI chat completions, the model list and the agent tools.

Every request passes :class:`Guard` first (Host, Origin, API key, content type, body size), is
read within bounds, validated by the pydantic models of :mod:`pipesql.serve.schemas`, and, for
a chat, templated and measured against the model's context before it joins a batch. Anything
malformed gets a 4xx in OpenAI's error shape; a 500 means a bug or a failed generation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pipesql.models.backends import Backend, Chat, Completion, SamplingParams, render_prompt
from pipesql.serve.batching import BatchQueue
from pipesql.serve.schemas import ChatRequest, ToolRequest
from pipesql.serve.tools import ToolService, UnknownDatabase, UnknownTool

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# A prompt longer than this many characters per token of context is refused before it is
# tokenized (tokenizing megabytes would hold a worker for seconds).
_CHARS_PER_TOKEN_BOUND = 32
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


class ApiError(Exception):
    """A request this server will not serve: answered with ``status`` and the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _validation_message(error: ValidationError | RequestValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


# --- the guard --------------------------------------------------------------------------------------

def _host_name(host_header: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware that refuses a request before any of it is read: a Host not served (DNS
    rebinding), an Origin not allowed (a web page calling the tools), a missing or wrong API key,
    a POST that is not JSON (``text/plain`` needs no CORS preflight), a body over the limit."""

    def __init__(self, app: Any, *, allowed_hosts: set[str], allowed_origins: set[str], api_key: str,
                 max_body_bytes: int):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = allowed_origins
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await error_response(*refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        host = _host_name(headers.get("host", ""))
        if "*" not in self.allowed_hosts and host.lower() not in self.allowed_hosts:
            return 400, f"Host {host!r} is not served here (see --allowed-host)"
        origin = headers.get("origin")
        if origin is not None and origin not in self.allowed_origins:
            return 403, f"Origin {origin!r} is not allowed (see --allowed-origin)"
        if self.api_key and scope["path"] != "/health":
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return 401, "a valid API key is required: Authorization: Bearer <key>"
        if scope["method"] == "POST":
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return 415, "the body must be JSON (Content-Type: application/json)"
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                return 413, f"body larger than {self.max_body_bytes} bytes"
        return None


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, read in chunks and refused past ``limit`` bytes (chunked bodies carry
    no Content-Length for the guard to check)."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before sending the whole body") from None
    try:
        return json.loads(b"".join(chunks) or b"null")
    except ValueError as error:
        raise ApiError(400, f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None


# --- chat ---------------------------------------------------------------------------------------------

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


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


# --- the application ----------------------------------------------------------------------------------

def create_app(settings: Any, backend: Backend | None, batches: BatchQueue | None, tools: ToolService) -> FastAPI:
    """The ASGI app for ``settings`` (a :class:`pipesql.serve.Settings`): the chat endpoints
    when there is a ``backend`` (``--tools-only`` serves none), the tools always."""
    app = FastAPI(title="pipesql", docs_url=None, redoc_url=None, openapi_url=None)
    started = time.time()

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, str(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"no endpoint {request.method} {request.url.path}" if error.status_code in (404, 405) else str(error.detail)
        return error_response(error.status_code, message)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": backend.name if backend else None,
                "backend": type(backend).__name__ if backend else None, "uptime_s": round(time.time() - started, 1)}

    if backend is not None and batches is not None:
        _chat_routes(app, settings, backend, batches, started)
    _tool_routes(app, settings, tools)
    return app


async def _body_as(model: type, request: Request, limit: int) -> Any:
    try:
        return model.model_validate(await read_json(request, limit))
    except ValidationError as error:
        raise ApiError(400, _validation_message(error)) from None


def _chat_routes(app: FastAPI, settings: Any, backend: Backend, batches: BatchQueue, started: float) -> None:
    preparer = ChatPreparer(backend, max_tokens=settings.max_tokens, max_tokens_limit=settings.max_tokens_limit,
                            context=context_tokens(backend, settings.max_context_tokens))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "created": int(started),
                                            "owned_by": "pipesql"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body: ChatRequest = await _body_as(ChatRequest, request, settings.max_body_bytes)
        chat, params, _ = await run_in_threadpool(preparer.prepare, body)
        future = batches.submit(chat, params)
        try:
            completion = await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            raise ApiError(503, "generation timed out") from None
        except Exception as error:  # the backend failed on this request alone
            raise ApiError(500, f"generation failed: {type(error).__name__}: {error}") from None
        response = chat_response(backend.name, completion, parse_tools=chat.tools is not None)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(stream_chunks(response, include_usage)), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return response


def _tool_routes(app: FastAPI, settings: Any, tools: ToolService) -> None:
    from pipesql.agent.tools import TOOL_SPECS

    @app.get("/tools")
    async def tool_specs() -> dict[str, Any]:
        return {"tools": TOOL_SPECS}

    @app.post("/tools/{name}")
    async def run_tool(name: str, request: Request) -> dict[str, Any]:
        body: ToolRequest = await _body_as(ToolRequest, request, settings.max_body_bytes)
        try:
            output = await run_in_threadpool(tools.call, name, body.db_id, body.arguments)
        except (UnknownTool, UnknownDatabase) as error:
            raise ApiError(404, str(error)) from None
        return {"tool": name, "db_id": body.db_id, "ok": not output.startswith("Error:"), "output": output}


def guarded(app: FastAPI, settings: Any) -> Any:
    """``app`` behind :class:`Guard`, and behind CORS only for the origins explicitly allowed."""
    from starlette.middleware.cors import CORSMiddleware

    hosts = {h.lower() for h in (*LOOPBACK_HOSTS, *settings.allowed_host)}
    if settings.host not in ("0.0.0.0", "::", ""):
        hosts.add(settings.host.lower())
    origins = set(settings.allowed_origin)
    wrapped: Any = Guard(app, allowed_hosts=hosts, allowed_origins=origins, api_key=settings.api_key,
                         max_body_bytes=settings.max_body_bytes)
    if origins:
        wrapped = CORSMiddleware(wrapped, allow_origins=sorted(origins), allow_methods=["GET", "POST"],
                                 allow_headers=["authorization", "content-type"])
    return wrapped
