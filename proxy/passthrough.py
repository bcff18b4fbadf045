"""Verbatim pass-through of every request the proxy does not intercept.

Bodies stream both ways without buffering or decoding (the upstream session does not
decompress), status and end-to-end headers are kept, hop-by-hop headers are dropped.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from proxy.errors import UpstreamUnavailable
from proxy.headers import end_to_end, to_upstream
from proxy.state import CONFIG, UPSTREAM

log = logging.getLogger(__name__)


def upstream_timeout(request: web.Request) -> aiohttp.ClientTimeout:
    """No total limit (generations and pulls are long); bounded connect and inter-chunk silence."""
    config = request.app[CONFIG].upstream
    return aiohttp.ClientTimeout(
        total=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
    )


def abort(request: web.Request) -> None:
    """Cut the client's connection so a truncated body cannot look complete."""
    if request.transport is not None:
        request.transport.abort()


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Relay ``request`` to the upstream and its answer back, byte for byte."""
    url = request.app[CONFIG].upstream.url + request.rel_url.raw_path_qs
    data = request.content if request.body_exists else None
    response = web.StreamResponse()
    try:
        async with request.app[UPSTREAM].request(
            request.method,
            url,
            headers=to_upstream(request.headers),
            data=data,
            allow_redirects=False,
            timeout=upstream_timeout(request),
        ) as upstream:
            response.set_status(upstream.status, upstream.reason)
            response.headers.extend(end_to_end(upstream.headers, {"content-length"}))
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        if not response.prepared:
            raise UpstreamUnavailable(f"upstream {url}: {type(exc).__name__}: {exc}") from exc
        log.warning("upstream failed mid-stream on %s %s: %r", request.method, request.path, exc)
        abort(request)
        return response
    await response.write_eof()
    return response
