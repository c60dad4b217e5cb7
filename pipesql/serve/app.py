"""The FastAPI application: OpenAI chat completions, the model list and the agent tools.

Every request passes the guard first (:mod:`pipesql.serve.guard`), is read within bounds,
validated by the pydantic models of :mod:`pipesql.serve.schemas`, and, for a chat, templated and
measured against the model's context (:mod:`pipesql.serve.chat`) before it joins a batch.
Anything malformed gets a 4xx in OpenAI's error shape; a 500 means a bug or a failed generation.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipesql.models.backends import Backend
from pipesql.serve.batching import BatchQueue
from pipesql.serve.chat import ChatPreparer, chat_response, context_tokens, sse_events, stream_chunks
from pipesql.serve.guard import LOOPBACK_HOSTS, ApiError, Guard, error_response, read_json
from pipesql.serve.schemas import ChatRequest, ToolRequest, text_problem
from pipesql.serve.tools import ToolService, UnknownDatabase, UnknownTool


# How often a waiting chat request checks that its client is still connected.
_DISCONNECT_POLL_S = 0.1


def _validation_message(error: ValidationError | RequestValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


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
    body = await read_json(request, limit)
    problem = text_problem(body)
    if problem is not None:
        raise ApiError(400, problem)
    try:
        return model.model_validate(body)
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
        completion = await _completion_or_gone(request, future, batches, settings.request_timeout_s)
        response = chat_response(backend.name, completion, parse_tools=chat.tools is not None)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(sse_events(stream_chunks(response, include_usage)), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return response


async def _client_gone(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(_DISCONNECT_POLL_S)


async def _completion_or_gone(request: Request, future: Any, batches: BatchQueue, timeout_s: float) -> Any:
    """The completion of ``future``; if the client disconnects or the time runs out first, its
    generation is abandoned (skipped, or stopped between tokens) so that it holds nobody up."""
    waiting = asyncio.ensure_future(asyncio.wrap_future(future))
    gone = asyncio.ensure_future(_client_gone(request))
    done, _ = await asyncio.wait({waiting, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if waiting not in done:
        batches.abandon(future)
        waiting.cancel()
        raise ApiError(499, "client disconnected") if gone in done else ApiError(503, "generation timed out")
    try:
        return waiting.result()
    except Exception as error:  # the backend failed on this request alone
        raise ApiError(500, f"generation failed: {type(error).__name__}: {error}") from None


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
