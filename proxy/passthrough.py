"""Verbatim pass-through of every request the proxy does not intercept.

Bodies stream both ways without buffering or decoding (the upstream session does not
decompress), status and end-to-end headers are kept, hop-by-hop headers are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from memory.errors import BreakerOpenError
from proxy.errors import UpstreamCircuitOpen, UpstreamUnavailable
from proxy.headers import end_to_end, to_upstream
from proxy.state import CONFIG, COUNTERS, UPSTREAM, UPSTREAM_BREAKER

log = logging.getLogger(__name__)


def upstream_timeout(request: web.Request) -> aiohttp.ClientTimeout:
    """No total limit (generations and pulls are long); bounded connect and inter-chunk silence."""
    config = request.app[CONFIG].upstream
    return aiohttp.ClientTimeout(
        total=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
    )


@contextlib.asynccontextmanager
async def upstream_request(
    request: web.Request, method: str, url: str, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Open an upstream request through the upstream's circuit breaker.

    A connection failure or timeout before the response headers counts against the breaker and
    becomes UpstreamUnavailable (502); an open breaker answers UpstreamCircuitOpen (503) at once.
    Errors after the headers (mid-stream) propagate unchanged to the caller.
    """
    breaker = request.app[UPSTREAM_BREAKER]
    try:
        probe = breaker.admit()
    except BreakerOpenError as exc:
        raise UpstreamCircuitOpen(f"upstream {request.app[CONFIG].upstream.url}: {exc}") from exc
    started = time.perf_counter()
    connected = False
    try:
        async with request.app[UPSTREAM].request(
            method, url, timeout=upstream_timeout(request), **kwargs
        ) as upstream:
            connected = True
            breaker.success((time.perf_counter() - started) * 1000, probe)
            yield upstream
    except (aiohttp.ClientError, TimeoutError) as exc:
        if connected:
            raise
        breaker.failure(probe)
        request.app[COUNTERS].upstream_errors += 1
        raise UpstreamUnavailable(f"upstream {url}: {type(exc).__name__}: {exc}") from exc
    finally:
        if not connected:
            breaker.release(probe)


def abort(request: web.Request) -> None:
    """Cut the client's connection so a truncated body cannot look complete."""
    if request.transport is not None:
        request.transport.abort()


async def passthrough(
    request: web.Request, extra_headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """Relay ``request`` to the upstream and its answer back, byte for byte, with
    ``extra_headers`` added to the response (e.g. the memory status of a completion)."""
    url = request.app[CONFIG].upstream.url + request.rel_url.raw_path_qs
    data = request.content if request.body_exists else None
    response = web.StreamResponse()
    try:
        async with upstream_request(
            request,
            request.method,
            url,
            headers=to_upstream(request.headers),
            data=data,
            allow_redirects=False,
        ) as upstream:
            response.set_status(upstream.status, upstream.reason)
            response.headers.extend(end_to_end(upstream.headers, {"content-length"}))
            response.headers.update(extra_headers or {})
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("upstream failed mid-stream on %s %s: %r", request.method, request.path, exc)
        abort(request)
        return response
    await response.write_eof()
    return response
