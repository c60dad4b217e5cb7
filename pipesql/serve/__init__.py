"""``pipesql serve``: an OpenAI-compatible chat server for a model, plus the agent tools over HTTP.

Endpoints (JSON in, JSON out):

- ``POST /v1/chat/completions``: ``messages``, ``tools``, ``tool_choice`` (``auto``/``none``),
  ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` (default 0: greedy), ``top_p``,
  ``stop``, ``seed``. The answer's ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``
  blocks (the Qwen/Hermes format the model was trained on) come back as OpenAI ``tool_calls``.
  No streaming, one choice per request.
- ``GET /v1/models``: the one model served.
- ``GET /tools``: the tool schemas (OpenAI function format), ready to pass as ``tools``.
- ``POST /tools/{name}`` with ``{"db_id": ..., "arguments": {...}}``: runs one of the shared agent
  tools (:mod:`pipesql.agent.tools`) on ``<db-dir>/<db_id>/<db_id>.sqlite``, read-only, with a time
  limit and bounded output.
- ``GET /health``.

Requests that arrive together are generated together: a single worker thread owns the model and
takes, after the first waiting request, every request that arrives within ``batch_wait_ms`` (up
to ``max_batch``), then generates each group of equal sampling parameters in one batch.

Standard library HTTP (``ThreadingHTTPServer``): no web framework to install, and bound to
127.0.0.1 by default because there is no authentication.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from pipesql.corpora.items import find_database
from pipesql.models.backends import Backend, BackendSettings, Chat, Completion, SamplingParams, load_backend
from pipesql.config.settings import option

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
ROLES = ("system", "user", "assistant", "tool")
_DB_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


@dataclass
class Settings(BackendSettings):
    stage: ClassVar[str] = "serve"

    model: str = option("", "Model directory or registry name (tiny, smollm2-135m).")
    host: str = option("127.0.0.1", "Address to bind; anything but loopback exposes an unauthenticated server.")
    port: int = option(8000, "Port to bind (0 picks a free one).")
    db_dir: list[Path] = option([], "Folder holding <db_id>/<db_id>.sqlite for the /tools endpoints (repeatable).")
    max_batch: int = option(16, "Most requests generated in one batch.")
    batch_wait_ms: float = option(10.0, "How long the first waiting request waits for others to join its batch.")
    max_tokens: int = option(512, "Completion tokens when a request does not say.")
    max_tokens_limit: int = option(4096, "Most completion tokens a request may ask for.")
    request_timeout_s: float = option(600.0, "Longest a request waits for its completion.")
    tool_timeout_s: float = option(10.0, "Time limit of one tool query, in seconds.")
    tool_row_cap: int = option(20, "Most rows a tool shows.")
    gpu_memory_utilization: float = option(0.9, "vLLM: share of GPU memory to use.")


class RequestError(Exception):
    """A bad request: answered with ``status`` and the message, never a stack trace."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


# --- batching -------------------------------------------------------------------------------------

@dataclass
class _Pending:
    chat: Chat
    params: SamplingParams
    future: Future = field(default_factory=Future)


class BatchQueue:
    """Collects requests for a few milliseconds and generates them together in one thread."""

    def __init__(self, backend: Backend, *, max_batch: int = 16, wait_s: float = 0.01):
        self.backend = backend
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, wait_s)
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self.batch_sizes: list[int] = []  # one entry per backend call, for tests and logs
        self._thread = threading.Thread(target=self._work, name="pipesql-generate", daemon=True)
        self._thread.start()

    def submit(self, chat: Chat, params: SamplingParams, timeout_s: float | None = None) -> Completion:
        pending = _Pending(chat, params)
        self._queue.put(pending)
        return pending.future.result(timeout=timeout_s)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, deadline = [first], time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                pending = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                return batch, True
            batch.append(pending)
        return batch, False

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, closing = self._collect(first)
            groups: dict[SamplingParams, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.params, []).append(pending)
            for params, group in groups.items():
                self.batch_sizes.append(len(group))
                try:
                    completions = self.backend.complete([p.chat for p in group], params)
                except Exception as error:  # one bad batch fails its requests, not the server
                    log.exception("generation failed for a batch of %d", len(group))
                    for pending in group:
                        pending.future.set_exception(error)
                    continue
                for pending, completion in zip(group, completions):
                    pending.future.set_result(completion)
            if closing:
                return


# --- tools ----------------------------------------------------------------------------------------

class ToolService:
    """The shared agent tools, one :class:`pipesql.agent.tools.Toolbox` per database, each used by one
    request at a time (a toolbox holds one SQLite connection)."""

    def __init__(self, db_dirs: list[Path], *, timeout_s: float = 10.0, row_cap: int = 20):
        self.db_dirs = [Path(d) for d in db_dirs]
        self.timeout_s = timeout_s
        self.row_cap = row_cap
        self._toolboxes: dict[str, tuple[Any, threading.Lock]] = {}
        self._lock = threading.Lock()

    def _toolbox(self, db_id: str):
        from pipesql.agent.tools import Toolbox

        with self._lock:
            if db_id not in self._toolboxes:
                path = find_database(self.db_dirs, db_id)
                if path is None:
                    where = ", ".join(map(str, self.db_dirs)) or "no --db-dir given"
                    raise RequestError(f"unknown database {db_id!r} (looked in: {where})", HTTPStatus.NOT_FOUND)
                self._toolboxes[db_id] = (Toolbox(path, timeout_s=self.timeout_s, row_cap=self.row_cap), threading.Lock())
            return self._toolboxes[db_id]

    def call(self, name: str, db_id: Any, arguments: Any) -> str:
        from pipesql.agent.tools import TOOL_NAMES

        if name not in TOOL_NAMES:
            raise RequestError(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}", HTTPStatus.NOT_FOUND)
        if not isinstance(db_id, str) or not _DB_ID.match(db_id):
            raise RequestError("db_id must be a database name (letters, digits, '_', '-', '.')")
        if arguments is not None and not isinstance(arguments, (dict, str)):
            raise RequestError("arguments must be a JSON object")
        toolbox, lock = self._toolbox(db_id)
        with lock:
            return toolbox.call(name, arguments)

    def close(self) -> None:
        with self._lock:
            for toolbox, _ in self._toolboxes.values():
                toolbox.close()
            self._toolboxes.clear()


# --- OpenAI request / response ----------------------------------------------------------------------

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


def _content_text(content: Any, index: int) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: only text is understood here
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"messages[{index}].content: only text parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(f"messages[{index}].content must be a string or a list of text parts")


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(f"messages[{index}] needs a role among {', '.join(ROLES)}")
        cleaned = {"role": message["role"], "content": _content_text(message.get("content"), index)}
        if message.get("tool_calls"):
            if not isinstance(message["tool_calls"], list):
                raise RequestError(f"messages[{index}].tool_calls must be a list")
            cleaned["tool_calls"] = message["tool_calls"]
        for key in ("name", "tool_call_id"):
            if isinstance(message.get(key), str):
                cleaned[key] = message[key]
        if cleaned["content"] is None and message["role"] != "assistant":
            raise RequestError(f"messages[{index}] ({message['role']}) needs content")
        messages.append(cleaned)
    return messages


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"{key} must be a number in [{low:g}, {high:g}]")
    return float(value)


def parse_chat_request(body: Any, settings: Settings) -> tuple[Chat, SamplingParams, bool]:
    """The chat, sampling parameters and whether tool calls should be parsed, from a request."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    if body.get("stream"):
        raise RequestError("streaming is not supported; send stream: false")
    if body.get("n", 1) != 1:
        raise RequestError("only n = 1 is supported")
    messages = _messages(body.get("messages"))
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise RequestError("tools must be a list of objects")
    if body.get("tool_choice", "auto") not in ("auto", "none", "required"):
        raise RequestError("tool_choice must be auto, none or required (naming one function is not supported)")
    use_tools = bool(tools) and body.get("tool_choice", "auto") != "none"
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = min(settings.max_tokens, settings.max_tokens_limit)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= settings.max_tokens_limit:
        raise RequestError(f"max_tokens must be an integer in [1, {settings.max_tokens_limit}]")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4):
        raise RequestError("stop must be a string or a list of at most 4 strings")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer")
    params = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-6, 1.0),
        stop=tuple(stop or ()),
        seed=seed,
    )
    return Chat.of(messages, tools if use_tools else None), params, use_tools


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


# --- HTTP -----------------------------------------------------------------------------------------

class PipesqlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Settings, backend: Backend):
        self.settings = settings
        self.backend = backend
        self.batches = BatchQueue(backend, max_batch=settings.max_batch, wait_s=settings.batch_wait_ms / 1000)
        self.tools = ToolService(settings.db_dir, timeout_s=settings.tool_timeout_s, row_cap=settings.tool_row_cap)
        self.started = time.time()
        super().__init__((settings.host, settings.port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.batches.close()
        self.tools.close()


class Handler(BaseHTTPRequestHandler):
    server: PipesqlServer
    protocol_version = "HTTP/1.1"
    server_version = "pipesql"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": int(status)}})

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True  # the body's end is unknown: the connection cannot be reused
            raise RequestError("a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED) from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(f"body larger than {MAX_BODY_BYTES} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        data = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(data or b"null")
        except ValueError as error:
            raise RequestError(f"body is not valid JSON: {error}") from None

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            # Read a POST body before anything can fail, so a kept-alive connection stays in step.
            body = self._body() if method == "POST" else None
            if method == "GET" and path == "/health":
                self._send(HTTPStatus.OK, {"status": "ok", "model": self.server.backend.name,
                                           "backend": type(self.server.backend).__name__,
                                           "uptime_s": round(time.time() - self.server.started, 1)})
            elif method == "GET" and path == "/v1/models":
                self._send(HTTPStatus.OK, {"object": "list", "data": [{
                    "id": self.server.backend.name, "object": "model", "created": int(self.server.started),
                    "owned_by": "pipesql"}]})
            elif method == "GET" and path == "/tools":
                from pipesql.agent.tools import TOOL_SPECS

                self._send(HTTPStatus.OK, {"tools": TOOL_SPECS})
            elif method == "POST" and path == "/v1/chat/completions":
                self._chat(body)
            elif method == "POST" and path.startswith("/tools/"):
                self._tool(path[len("/tools/"):], body)
            else:
                raise RequestError(f"no endpoint {method} {path}", HTTPStatus.NOT_FOUND)
        except RequestError as error:
            self._error(error.status, str(error))
        except Exception as error:  # answer, log, keep serving
            log.exception("%s %s failed", method, path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _chat(self, body: Any) -> None:
        chat, params, parse_tools = parse_chat_request(body, self.server.settings)
        try:
            completion = self.server.batches.submit(chat, params, timeout_s=self.server.settings.request_timeout_s)
        except TimeoutError:
            raise RequestError("generation timed out", HTTPStatus.SERVICE_UNAVAILABLE) from None
        self._send(HTTPStatus.OK, chat_response(self.server.backend.name, completion, parse_tools))

    def _tool(self, name: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise RequestError('the body must be a JSON object: {"db_id": ..., "arguments": {...}}')
        output = self.server.tools.call(name, body.get("db_id"), body.get("arguments") or {})
        self._send(HTTPStatus.OK, {"tool": name, "db_id": body["db_id"], "ok": not output.startswith("Error:"),
                                   "output": output})


def make_server(settings: Settings, *, backend: Backend | None = None) -> PipesqlServer:
    """A bound, not yet serving server (``serve_forever`` it, or :func:`start_in_thread`)."""
    if backend is None:
        if not settings.model:
            raise SystemExit("pipesql serve: --model is required (a directory or a registry name)")
        backend = load_backend(settings.model, settings.backend, device=settings.device, dtype=settings.dtype,
                               batch_size=settings.max_batch, gpu_memory_utilization=settings.gpu_memory_utilization)
    return PipesqlServer(settings, backend)


def start_in_thread(server: PipesqlServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="pipesql-serve", daemon=True)
    thread.start()
    return thread


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(settings: Settings, *, backend: Backend | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    server = make_server(settings, backend=backend)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: this server has no authentication", settings.host)
    log.info("serving %s at %s (databases from: %s)", server.backend.name, server.url,
             ", ".join(map(str, settings.db_dir)) or "none")
    if threading.current_thread() is threading.main_thread():
        # `docker compose stop` sends SIGTERM: stop as on Ctrl-C, closing the databases.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()
    return 0
