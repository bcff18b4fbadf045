"""Handlers for Ollama's native API when the upstream is OpenAI-compatible
(``upstream.kind: openai``); the translation itself is in ``proxy.openai_upstream`` (requests)
and ``proxy.reframe`` (replies).

``/api/chat`` and ``/api/generate`` keep the whole memory pipeline (recall, injection, tee,
outbox) of ``proxy.chat``; only the wire format to the upstream changes. ``/api/tags``,
``/api/embed``, ``/api/embeddings``, ``/api/show``, ``/api/ps`` and ``/api/version`` are
answered from the ``/v1`` API; other ``/api/*`` endpoints (pull, create, ...) answer 501 with a
clear error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from memory.structured import refuses_json_schema
from proxy import __version__
from proxy.adapters import OllamaAdapter
from proxy.chat import Finalizer, broken, memory_headers, plan, relay
from proxy.errors import BadRequest, ProxyError
from proxy.headers import to_upstream
from proxy.openai_upstream import (
    Translated,
    embed_request,
    embed_response,
    error_message,
    ps_from_models,
    show_from_models,
    tags_from_models,
    to_openai_request,
)
from proxy.passthrough import upstream_request
from proxy.reframe import OllamaFramer, ollama_frames
from proxy.state import CONFIG, COUNTERS, TRAITS
from proxy.tee import Tee
from proxy.wire import decode_json_object

log = logging.getLogger(__name__)

UNSUPPORTED_HEADER = "X-Memory-Unsupported"
"""Response header naming request fields the OpenAI-compatible upstream could not honour."""
DROPPED = {"content-length", "accept-encoding", "content-type"}


class NotImplementedByUpstream(ProxyError):
    """An Ollama endpoint with no OpenAI-compatible equivalent."""

    status = 501


def _upstream_url(request: web.Request, path: str) -> str:
    return request.app[CONFIG].upstream.url + path


def _json_headers(request: web.Request) -> dict[str, str]:
    return {**to_upstream(request.headers, DROPPED), "Content-Type": "application/json"}


async def chat(request: web.Request, adapter: OllamaAdapter) -> web.StreamResponse:
    """``/api/chat`` or ``/api/generate`` through the memory pipeline to ``/v1``."""
    request.app[COUNTERS].requests += 1
    decided = await plan(request, adapter)
    body: dict[str, Any] = json.loads(decided.body)
    translated = to_openai_request(adapter, body, request.app[TRAITS].schema_dialect)
    if translated.unsupported:
        log.warning(
            "%s: fields without an OpenAI equivalent were not sent upstream: %s",
            request.path,
            ", ".join(translated.unsupported),
        )
    finish = Finalizer(request, decided, adapter)
    response = web.StreamResponse()
    try:
        async with _send(request, adapter, body, translated) as (upstream, translated):
            finish.upstream_ok = upstream.status == 200
            if upstream.status != 200:
                return await _refused(upstream, finish)
            framer = OllamaFramer(adapter, decided.model)
            await _relay(
                request,
                ollama_frames(upstream, framer, translated.stream),
                translated,
                response,
                finish,
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        await broken(request, response, finish.tee, exc)
    finish(False)
    return response


async def _refused(upstream: aiohttp.ClientResponse, finish: Finalizer) -> web.Response:
    """The upstream's error reply as an Ollama one (``{"error": message}``, same status)."""
    message = error_message(upstream.status, await upstream.read())
    finish.tee.reply.error = message
    finish(False)
    answer = web.json_response({"error": message}, status=upstream.status)
    memory_headers(answer, finish.decided)
    return answer


async def _relay(
    request: web.Request,
    frames: AsyncIterator[bytes],
    translated: Translated,
    response: web.StreamResponse,
    finish: Finalizer,
) -> None:
    """Relay the re-framed reply (``proxy.reframe``) to the client through a new tee."""
    adapter = finish.tee.adapter
    finish.tee = Tee(adapter, adapter.framing if translated.stream else "json")
    response.content_type = "application/x-ndjson" if translated.stream else "application/json"
    memory_headers(response, finish.decided)
    if translated.unsupported:
        response.headers[UNSUPPORTED_HEADER] = ", ".join(translated.unsupported)
    await response.prepare(request)
    if await relay(request, frames, None, response, finish.tee, finish):
        await response.write_eof()


@asynccontextmanager
async def _send(
    request: web.Request, adapter: OllamaAdapter, body: dict[str, Any], translated: Translated
) -> AsyncIterator[tuple[aiohttp.ClientResponse, Translated]]:
    """POST ``translated`` upstream; yields the response and the request that was sent.

    When the upstream refuses the ``json_schema`` response format (llama-cpp-python does:
    :mod:`memory.structured`), the proxy learns it (``TRAITS``), says so in the log once, and
    sends the request again with the schema in the ``json_object`` form; every later request
    uses that form straight away. Any other error reply is yielded as it is.
    """
    traits = request.app[TRAITS]
    schema = (translated.body.get("response_format") or {}).get("type") == "json_schema"
    async with _post(request, translated) as upstream:
        if not schema or upstream.status < 400:
            yield upstream, translated
            return
        raw = await upstream.read()  # cached by aiohttp: the caller can read it again
        if not refuses_json_schema(upstream.status, error_message(upstream.status, raw)):
            yield upstream, translated
            return
    if traits.schema_dialect == "json_schema":
        log.info(
            "the upstream refused response_format json_schema; format schemas now go as "
            "json_object with the schema beside it"
        )
        traits.schema_dialect = "json_object"
    retried = to_openai_request(adapter, body, "json_object")
    async with _post(request, retried) as upstream:
        yield upstream, retried


def _post(
    request: web.Request, translated: Translated
) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
    """The upstream POST of one translated request (through the upstream's breaker)."""
    return upstream_request(
        request,
        "POST",
        _upstream_url(request, translated.path),
        data=json.dumps(translated.body, ensure_ascii=False).encode(),
        headers=_json_headers(request),
    )


async def _json_call(
    request: web.Request, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One small JSON request to the upstream: ``(status, decoded reply)``; an error reply
    becomes ``{"error": message}``."""
    data = None if body is None else json.dumps(body).encode()
    async with upstream_request(
        request, method, _upstream_url(request, path), data=data, headers=_json_headers(request)
    ) as upstream:
        raw = await upstream.read()
    if upstream.status != 200:
        return upstream.status, {"error": error_message(upstream.status, raw)}
    try:
        return 200, json.loads(raw)
    except json.JSONDecodeError:
        return 502, {"error": f"upstream {path} answered with something other than JSON"}


async def tags(request: web.Request) -> web.Response:
    """``GET /api/tags`` from ``GET /v1/models``."""
    status, reply = await _json_call(request, "GET", "/v1/models")
    return web.json_response(tags_from_models(reply) if status == 200 else reply, status=status)


async def show(request: web.Request) -> web.Response:
    """``POST /api/show`` from ``GET /v1/models`` (:func:`show_from_models`); 404 with
    Ollama's message when the server does not list the model."""
    body = decode_json_object(await request.read())
    name = body.get("model", body.get("name"))
    if not isinstance(name, str) or not name:
        raise BadRequest("model is required")
    status, reply = await _json_call(request, "GET", "/v1/models")
    if status != 200:
        return web.json_response(reply, status=status)
    shown = show_from_models(reply if isinstance(reply, dict) else {}, name)
    if shown is None:
        return web.json_response({"error": f"model '{name}' not found"}, status=404)
    return web.json_response(shown)


async def ps(request: web.Request) -> web.Response:
    """``GET /api/ps`` from ``GET /v1/models`` (:func:`ps_from_models`)."""
    status, reply = await _json_call(request, "GET", "/v1/models")
    listed = ps_from_models(reply if isinstance(reply, dict) else {})
    return web.json_response(listed if status == 200 else reply, status=status)


async def embed(request: web.Request) -> web.Response:
    """``POST /api/embed`` (and legacy ``/api/embeddings``) from ``POST /v1/embeddings``."""
    body = decode_json_object(await request.read())
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model is required")
    legacy = request.path == "/api/embeddings"
    status, reply = await _json_call(request, "POST", "/v1/embeddings", embed_request(body))
    if status != 200:
        return web.json_response(reply, status=status)
    return web.json_response(embed_response(reply, body["model"], legacy))


async def version(request: web.Request) -> web.Response:
    """``GET /api/version``: this proxy's version (the upstream has no Ollama version)."""
    return web.json_response({"version": __version__})


async def unsupported(request: web.Request) -> web.Response:
    """Any other ``/api/*`` endpoint: 501 with the reason."""
    raise NotImplementedByUpstream(
        f"{request.method} {request.path} is not available: the upstream is an "
        f"OpenAI-compatible server (upstream.kind: openai), which has no such endpoint"
    )
