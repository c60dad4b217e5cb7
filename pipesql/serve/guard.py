"""What is refused before a request is read: a Host not served, an Origin not allowed, a
missing or wrong API key, a POST that is not JSON, a body over the limit; and the bounded read
of the body itself."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ApiError(Exception):
    """A request this server will not serve: answered with ``status`` and the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error_response(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


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
