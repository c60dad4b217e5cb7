"""``pipesql serve``: an OpenAI-compatible chat server for a model, plus the agent tools over HTTP.

FastAPI + uvicorn, with pydantic models for the request bodies (:mod:`pipesql.serve.schemas`).

- ``POST /v1/chat/completions``: ``messages``, ``tools``, ``tool_choice`` (``auto``/``none``/
  ``required``), ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` (default 0:
  greedy), ``top_p``, ``stop`` (at most 4 strings of at most 64 characters), ``seed``,
  ``stream`` (Server-Sent Events; ``stream_options.include_usage``). The answer's
  ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks (the Qwen/Hermes format the
  model was trained on) come back as OpenAI ``tool_calls``. One choice per request.
- ``GET /v1/models``: the one model served.
- ``GET /tools``: the tool schemas (OpenAI function format), ready to pass as ``tools``.
- ``POST /tools/{name}`` with ``{"db_id": ..., "arguments": {...}}``: one of the shared agent
  tools (:mod:`pipesql.agent.tools`) on ``<db-dir>/<db_id>/<db_id>.sqlite``, through the SQL
  sandbox (:mod:`pipesql.sql.execute`).
- ``GET /health``.

``--tools-only`` serves ``/tools`` and ``/health`` without a model: beside vLLM's own OpenAI
server when vLLM is installed (docs/evaluation.md says how).

Modules: :mod:`~pipesql.serve.schemas` (what a request may hold), :mod:`~pipesql.serve.guard`
(Host, Origin, API key, content type and body size, before anything is read),
:mod:`~pipesql.serve.chat` (templating, the context cap, OpenAI responses and SSE chunks),
:mod:`~pipesql.serve.app` (the routes), :mod:`~pipesql.serve.batching` (requests arriving
together generate together), :mod:`~pipesql.serve.tools` (one toolbox per database),
:mod:`~pipesql.serve.server` (uvicorn, with a per-request read deadline). The threat model and
what stops each attack: docs/security.md.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipesql.agent.tools.specs import ROW_CAP
from pipesql.config.settings import option
from pipesql.models.backends import Backend, BackendSettings, load_backend
from pipesql.serve.chat import chat_response, parse_tool_calls
from pipesql.serve.server import Server, start_in_thread

__all__ = ["Server", "Settings", "chat_response", "make_server", "parse_tool_calls", "run", "start_in_thread"]

log = logging.getLogger(__name__)


@dataclass
class Settings(BackendSettings):
    stage: ClassVar[str] = "serve"

    model: str = option("", "Model directory or registry name: smollm2-135m (SmolLM2-135M-Instruct, not "
                        "fine-tuned), or tiny (random weights, untrained: tests only, it answers noise).")
    # Concurrent requests share forward passes when batched; a prefix cache would serve them one
    # at a time, so a server turns it on only when asked (an agent's single session on a CPU).
    prefix_cache: int = option(0, "transformers: keep the key/value caches of this many recent prompts and "
                               "reuse them for prompts that start the same way; requests then go one at a "
                               "time. 0: off (concurrent requests are batched).")
    host: str = option("127.0.0.1", "Address to bind. Anything but loopback needs --allow-remote and --api-key.")
    port: int = option(8000, "Port to bind (0 picks a free one).")
    allow_remote: bool = option(False, "Allow binding a non-loopback address (with --api-key).")
    api_key: str = option("", "Require 'Authorization: Bearer <key>' on every endpoint but /health "
                              "(set it through PIPESQL_SERVE_API_KEY rather than the command line).")
    allowed_host: list[str] = option([], "Host header values served besides loopback names and --host "
                                         "(repeatable; '*' serves any).")
    allowed_origin: list[str] = option([], "Browser origins allowed to call the server (CORS); none by default.")
    db_dir: list[Path] = option([], "Folder holding <db_id>/<db_id>.sqlite for the /tools endpoints (repeatable).")
    tools_only: bool = option(False, "Serve only /tools and /health, no model (beside vLLM's OpenAI server).")
    max_batch: int = option(16, "Most requests generated in one batch.")
    batch_wait_ms: float = option(10.0, "How long the first waiting request waits for others to join its batch.")
    max_tokens: int = option(512, "Completion tokens when a request does not say.")
    max_tokens_limit: int = option(4096, "Most completion tokens a request may ask for.")
    max_context_tokens: int = option(0, "Most prompt + completion tokens (0: the model's context length).")
    max_body_bytes: int = option(4 << 20, "Largest request body, in bytes.")
    read_timeout_s: float = option(10.0, "A request must arrive whole within this many seconds.")
    max_connections: int = option(512, "Most open connections; more get 503.")
    request_timeout_s: float = option(600.0, "Longest a request waits for its completion.")
    tool_timeout_s: float = option(10.0, "Time limit of one tool query, in seconds.")
    tool_row_cap: int = option(ROW_CAP, "Most rows a tool shows (the tool chats of `pipesql generate` show as many).")


def make_server(settings: Settings, *, backend: Backend | None = None) -> Server:
    """A bound, not yet serving server (``serve_forever`` it, or :func:`start_in_thread`)."""
    from pipesql.serve.server import check_binding

    check_binding(settings)  # before loading a model for nothing
    if settings.tools_only:
        return Server(settings, None)
    if backend is None:
        if not settings.model:
            raise SystemExit("pipesql serve: --model is required (a directory or a registry name)")
        backend = load_backend(settings.model, settings.backend, device=settings.device, dtype=settings.dtype,
                               batch_size=settings.max_batch, gpu_memory_utilization=settings.gpu_memory_utilization,
                               prefix_cache=settings.prefix_cache)
    return Server(settings, backend)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(settings: Settings, *, backend: Backend | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    server = make_server(settings, backend=backend)
    log.info("serving %s at %s (databases from: %s)%s", server.backend.name if server.backend else "the tools only",
             server.url,
             ", ".join(map(str, settings.db_dir)) or "none", "; API key required" if settings.api_key else "")
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
