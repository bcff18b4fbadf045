"""The application factory: routes, middleware and long-lived resources in one visible place."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from memory.affect import Affect, resolve_ranges
from memory.errors import MemoryLayerError
from memory.resilience import CircuitBreaker
from memory.service import MemoryService, build_memory_service
from proxy import admin, chat, metrics, translated, ui
from proxy.adapters import ADAPTERS, Adapter, OllamaAdapter
from proxy.auth import auth_middleware
from proxy.config import Config
from proxy.errors import NotFound
from proxy.middleware import errors_as_json
from proxy.passthrough import passthrough
from proxy.state import (
    AFFECT,
    CONFIG,
    COUNTERS,
    MEMORY,
    STICKY,
    TRAITS,
    UPSTREAM,
    UPSTREAM_BREAKER,
    Counters,
    UpstreamTraits,
)
from proxy.sticky import StickyBlocks

log = logging.getLogger(__name__)

BYPASS = {chat.STATUS_HEADER: "bypassed", chat.REASON_HEADER: "completion"}
"""Memory headers of a relayed completion request (``/v1/completions``)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """One pooled client session to the upstream; it never decompresses (verbatim relay)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:
        app[UPSTREAM] = session
        yield


def memory_for(config: Config, session: aiohttp.ClientSession) -> MemoryService:
    """The memory service ``config`` describes (nothing opened yet); ``session`` serves the
    HTTP embedders."""
    return build_memory_service(config, session)


async def memory_service(app: web.Application) -> AsyncIterator[None]:
    """Open the store and embedder, run the writer; finish queued writes on shutdown."""
    config = app[CONFIG]
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        await service.start()
        app[MEMORY] = service
        log.info(
            "memory: embedder %s, store %s",
            service.embedder.name,
            config.store.url or config.store.path,
        )
        sleeper = None
        if config.metabolism.enabled and config.metabolism.interval_s > 0:
            sleeper = asyncio.create_task(sleep_cycles(service, config.metabolism.interval_s))
        try:
            yield
        finally:
            if sleeper is not None:
                sleeper.cancel()
                await asyncio.gather(sleeper, return_exceptions=True)
            await service.close()


async def sleep_cycles(service: MemoryService, interval_s: float) -> None:
    """Run the sleep cycle every ``interval_s`` seconds; a failed cycle is logged and retried
    at the next interval."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            reports = await service.metabolize()
        except MemoryLayerError as exc:
            log.warning("sleep cycle failed: %s", exc)
            continue
        log.info(
            "sleep cycle: %d users, %d revised, %d consolidated, %d promoted%s",
            len(reports),
            sum(r.revised for r in reports.values()),
            sum(r.consolidated for r in reports.values()),
            sum(r.promoted for r in reports.values()),
            f"; shared tier: {vars(service.resonance)}" if service.resonance else "",
        )


def chat_handler(adapter: Adapter, upstream_kind: str) -> Handler:
    """The handler of ``adapter``'s endpoint: through ``proxy.translated`` when an Ollama
    format meets an OpenAI-kind upstream, else ``proxy.chat`` (same format both sides)."""
    if upstream_kind == "openai" and isinstance(adapter, OllamaAdapter):
        return functools.partial(translated.chat, adapter=adapter)
    return functools.partial(chat.handle, adapter=adapter)


async def post_only(request: web.Request) -> web.StreamResponse:
    """Any other method on an intercepted chat path: 405 (``Allow: POST``; JSON, by the
    middleware)."""
    raise web.HTTPMethodNotAllowed(request.method, ["POST"])


async def not_relayed(request: web.Request) -> web.StreamResponse:
    """A method or path under the proxy's own ``/memory/``, ``/ui`` or ``/metrics`` that has
    no handler: a JSON 404 here, never relayed (the request may carry ``admin.token``)."""
    raise NotFound(f"{request.method} {request.path} is not an endpoint of the proxy")


def create_app(config: Config) -> web.Application:
    """Build the proxy for ``config``; nothing is opened until the app starts.

    Raises:
        ConfigError: ``auth.tokens_file`` is unreadable or malformed (names the line).
    """
    app = web.Application(
        middlewares=[metrics.observe, errors_as_json, auth_middleware(config)],
        client_max_size=config.limits.max_body_bytes,
        # aiohttp's keep-alive timer also runs while a request's headers are incomplete: it is
        # the server's only header timeout (the connection is closed, no 408 can be sent)
        handler_args={"keepalive_timeout": config.limits.header_timeout_s},
    )
    app[CONFIG] = config
    app[COUNTERS] = Counters()
    app[TRAITS] = UpstreamTraits()
    r = config.resilience
    app[UPSTREAM_BREAKER] = CircuitBreaker(
        "upstream", r.failure_threshold, r.reset_timeout_s, r.min_budget_ms
    )
    app.cleanup_ctx.append(upstream_session)
    if config.memory.enabled:
        app.cleanup_ctx.append(memory_service)
        if config.memory.sticky_blocks and config.memory.placement != "system":
            app[STICKY] = StickyBlocks(config.memory.sticky_blocks)
        if config.affect.enabled:
            app[AFFECT] = Affect(config.affect, resolve_ranges(config.knobs, config.memory))
    metrics.install(app)  # after memory_service: its scores feed a histogram
    for adapter in ADAPTERS.values():
        app.router.add_post(adapter.path, chat_handler(adapter, config.upstream.kind))
        app.router.add_route("*", adapter.path, post_only)  # not relayed: a JSON 405
    # legacy and fill-in-the-middle completions (code autocomplete) are not conversation
    app.router.add_post("/v1/completions", functools.partial(passthrough, extra_headers=BYPASS))
    if config.upstream.kind == "openai":
        app.router.add_get("/api/tags", translated.tags)
        app.router.add_post("/api/embed", translated.embed)
        app.router.add_post("/api/embeddings", translated.embed)
        app.router.add_get("/api/version", translated.version)
        app.router.add_post("/api/show", translated.show)
        app.router.add_get("/api/ps", translated.ps)
        app.router.add_route("*", "/api/{tail:.*}", translated.unsupported)
    app.router.add_get("/memory/search", admin.search)
    app.router.add_get("/memory/affect", admin.affect)
    app.router.add_get("/memory/list", admin.list_memories)  # before /memory/{id}
    app.router.add_post("/memory/feedback", admin.feedback)
    app.router.add_get("/memory/{id}", admin.get_memory)
    app.router.add_delete("/memory/{id}", admin.delete_memory)
    app.router.add_get("/healthz", admin.healthz)
    app.router.add_get("/symbiotic_manifest.json", admin.manifest)
    ui.add_routes(app)
    for own in ("/memory/{tail:.*}", "/ui", "/ui/{tail:.*}", "/metrics"):
        app.router.add_route("*", own, not_relayed)  # never upstream, with its credentials
    app.router.add_route("*", "/{tail:.*}", passthrough)
    return app
