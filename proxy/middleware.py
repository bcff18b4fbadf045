"""The one place where errors become HTTP responses (Ollama-style ``{"error": "..."}``)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.errors import ProxyError

log = logging.getLogger(__name__)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map ProxyError and aiohttp's HTTP errors to JSON bodies; anything else to a logged 500."""
    try:
        return await handler(request)
    except ProxyError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc.message)
        return web.json_response({"error": exc.message}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error in the memory proxy"}, status=500)
