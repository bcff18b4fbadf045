"""The one place where errors become HTTP responses (Ollama-style ``{"error": "..."}``)."""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from proxy.errors import BadRequest, ProxyError

log = logging.getLogger(__name__)

KEPT_ERROR_HEADERS = frozenset({"allow", "retry-after", "www-authenticate", "location"})
"""Headers of an aiohttp HTTP error that still mean something on its JSON version."""


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map ProxyError and aiohttp's HTTP errors to JSON bodies; anything else to a logged 500.

    Once a response has started (its status line is on the wire), no second response can be
    written: an error escaping then is logged and the connection is cut, so the client sees a
    truncated reply, never an ``HTTP/1.1 500`` inside the body. Streaming handlers tell their
    client in-band before that (``proxy.chat``).
    """
    try:
        check_headers(request)
        return await handler(request)
    except ProxyError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc.message)
        return after_start(request) or web.json_response({"error": exc.message}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return after_start(request) or http_error(request, exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return after_start(request) or web.json_response(
            {"error": "internal error in the memory proxy"}, status=500
        )


def check_headers(request: web.Request) -> None:
    """Refuse header values that are not UTF-8 (aiohttp would hand them on as surrogate
    escapes, which nothing downstream can encode again).

    Raises:
        BadRequest: naming the first such header.
    """
    for name, value in request.raw_headers:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = name.decode("ascii", "replace")
            raise BadRequest(f"header '{shown}' is not valid UTF-8 (byte {exc.start})") from exc


def http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's HTTP error ``exc`` as a JSON body, keeping headers such as ``Allow``."""
    message = exc.reason
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"method {request.method} not allowed on {request.path} (allowed: {allowed})"
    headers = {k: v for k, v in exc.headers.items() if k.lower() in KEPT_ERROR_HEADERS}
    return web.json_response({"error": message}, status=exc.status, headers=headers)


def after_start(request: web.Request) -> web.Response | None:
    """None while no response byte was written; else cut the connection (logged) and return
    a placeholder aiohttp cannot write (the transport is closing)."""
    if request.writer.output_size == 0:  # the measure aiohttp's own error handler uses
        return None
    log.warning(
        "error after the response to %s %s started: connection cut", request.method, request.path
    )
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500, headers={hdrs.CONNECTION: "close"})
