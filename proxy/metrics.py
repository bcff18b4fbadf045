"""``GET /metrics``: Prometheus text format, one registry per app.

Events (requests, stage latencies, recall outcomes, injected memories and tokens, written
exchanges' symbiosis scores) are counted as they happen; state (breakers, outbox, spill, writer
lag, index cache) is read at scrape time by :class:`StateCollector`, so nothing is counted
twice. Labels are bounded: a route is the matched route's pattern (``/api/chat``,
``passthrough`` for the relay of any other path), never a raw path or a user name.

Authentication is that of ``/memory/*``: with ``auth`` on, any valid user token or
``admin.token``; with it off, ``admin.token`` when one is set. A Prometheus scrape job sends it
with ``authorization: {type: Bearer, credentials_file: /etc/prometheus/symbiotic.token}``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from memory.errors import StoreError
from memory.score.symbiosis import Score
from proxy.admin import require_admin
from proxy.logs import CONTEXT, RequestContext
from proxy.state import COUNTERS, MEMORY, UPSTREAM_BREAKER

log = logging.getLogger(__name__)

PREFIX = "symbiotic_memory"
PASSTHROUGH = "passthrough"
"""Route label of the catch-all relay (any path the proxy does not intercept)."""
STATES = ("closed", "open", "half_open")
"""``memory.resilience.State`` values: one gauge series each, 1 for the current one."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Seconds; from a recall's few milliseconds to a long generation (upper ones)."""
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""Symbiosis scores are in [0, 1] (``memory.score.symbiosis.Score``): tenths."""


def route_label(request: web.Request) -> str:
    """The request's route, bounded: the matched pattern, ``passthrough`` for the catch-all."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    canonical = resource.canonical
    return PASSTHROUGH if canonical == "/{tail}" else canonical


class Metrics:
    """The app's registry and its event instruments."""

    def __init__(self, app: web.Application) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered", ["route", "code"], registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_request_stage_seconds",
            "Seconds from a request's arrival to the end of a stage: total (answer sent), "
            "first_byte (response headers out: the upstream answered), recall (and recall_*: "
            "the recall's own stages)",
            ["route", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.recall = Counter(
            f"{PREFIX}_recall",
            "Chat requests by memory outcome (status: injected, none, skipped = fail-open, "
            "bypassed, off; reason: why bypassed)",
            ["route", "status", "reason"],
            registry=r,
        )
        self.memories = Counter(
            f"{PREFIX}_injected_memories", "Memories injected into requests", ["route"], registry=r
        )
        self.tokens = Counter(
            f"{PREFIX}_injected_tokens", "Tokens of injected memory blocks", ["route"], registry=r
        )
        self.symbiosis = Histogram(
            f"{PREFIX}_symbiosis_score",
            "Symbiosis score of each exchange written as a memory",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        r.register(StateCollector(app))

    def scored(self, score: Score) -> None:
        """A written exchange's score (a ``ScoreKeeper`` listener)."""
        self.symbiosis.observe(score.value)

    def finished(self, ctx: RequestContext, code: str) -> None:
        """Count a request that ended with HTTP status ``code`` (``cancelled``: client gone)."""
        route = ctx.route
        self.requests.labels(route, code).inc()
        self.latency.labels(route, "total").observe(time.perf_counter() - ctx.started)
        if ctx.first_byte_s is not None:
            self.latency.labels(route, "first_byte").observe(ctx.first_byte_s)
        plan = ctx.plan
        if plan is None:
            return
        self.recall.labels(route, plan.memory_status, plan.reason or "").inc()
        block = plan.block
        if block.timings_ms:
            self.latency.labels(route, "recall").observe(sum(block.timings_ms.values()) / 1000)
            for stage, ms in block.timings_ms.items():
                self.latency.labels(route, f"recall_{stage}").observe(ms / 1000)
        if plan.memory_status == "injected":
            self.memories.labels(route).inc(len(block.ids))
            self.tokens.labels(route).inc(block.tokens)


METRICS = web.AppKey("metrics", Metrics)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class StateCollector(Collector):
    """Gauges and counters read from the app's state at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        counters = self.app[COUNTERS]
        yield CounterMetricFamily(
            f"{PREFIX}_fail_open", "Recalls or writes skipped by failing open", counters.fail_open
        )
        yield CounterMetricFamily(
            f"{PREFIX}_upstream_errors",
            "Upstream connections lost mid-reply",
            counters.upstream_errors,
        )
        breakers = {"upstream": self.app[UPSTREAM_BREAKER]}
        service = self.app.get(MEMORY)
        if service is not None:
            breakers.update(service.breakers)
        yield from breaker_metrics(breakers)
        if service is not None:
            yield from memory_metrics(service)


def breaker_metrics(breakers: dict[str, Any]) -> Iterator[Metric]:
    """``breaker_state{breaker, state}`` (1 for the current state) and ``breaker_trips``."""
    state = GaugeMetricFamily(
        f"{PREFIX}_breaker_state", "Circuit breaker state (1: current)", labels=["breaker", "state"]
    )
    trips = CounterMetricFamily(
        f"{PREFIX}_breaker_trips", "Times a circuit breaker opened", labels=["breaker"]
    )
    for name, breaker in breakers.items():
        snap = breaker.snapshot()
        for value in STATES:
            state.add_metric([name, value], 1.0 if snap["state"] == value else 0.0)
        trips.add_metric([name], float(snap["trips"]))
    yield state
    yield trips


def oldest_age_s(service: Any) -> float:
    """Seconds the oldest outbox row has waited (0 when empty).

    Raises:
        StoreError, sqlite3.Error: the outbox cannot be read.
    """
    row = service.outbox.db.execute("SELECT MIN(enqueued_at) FROM outbox").fetchone()
    return 0.0 if row is None or row[0] is None else max(0.0, time.time() - float(row[0]))


def memory_metrics(service: Any) -> Iterator[Metric]:
    """Outbox, spill, writer and index cache figures of a ``MemoryService``."""
    try:
        yield _gauge("outbox_rows", "Exchanges waiting in the outbox", service.pending)
        yield _gauge(
            "outbox_oldest_age_seconds", "Age of the oldest outbox row", oldest_age_s(service)
        )
    except (StoreError, sqlite3.Error) as exc:
        log.warning("metrics: outbox not readable: %s", exc)
    spill = service.spill.snapshot()
    yield _gauge(
        "spilled", "Exchanges held in memory: the outbox cannot take them", spill["spilled"]
    )
    yield CounterMetricFamily(f"{PREFIX}_dropped", "Exchanges lost (spill full)", spill["dropped"])
    yield _gauge("writer_lag_seconds", "Writer's estimated lag", service.writer.lag_s())
    stats = CounterMetricFamily(
        f"{PREFIX}_writer_exchanges", "Write-back path events by kind", labels=["kind"]
    )
    for kind, count in vars(service.stats).items():
        stats.add_metric([kind], float(count))
    yield stats
    yield _gauge("index_cache_bytes", "Bytes of the held recall indexes", service.cache.nbytes())
    yield _gauge("index_cache_users", "Users whose recall index is held", service.cache.held())


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: the request's :class:`~proxy.logs.RequestContext`, then its
    count and latency (errors included: the JSON error middleware runs inside)."""
    ctx = RequestContext(route_label(request))
    token = CONTEXT.set(ctx)
    code = "500"
    try:
        response = await handler(request)
        code = str(response.status)
        return response
    except web.HTTPException as exc:
        code = str(exc.status)
        raise
    except asyncio.CancelledError:
        code = "cancelled"
        raise
    finally:
        if METRICS in request.app:
            request.app[METRICS].finished(ctx, code)
        CONTEXT.reset(token)


async def headers_sent(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: note when the headers went out (the upstream's first byte)."""
    ctx = CONTEXT.get()
    if ctx is not None and ctx.first_byte_s is None:
        ctx.first_byte_s = time.perf_counter() - ctx.started


async def attach_scorer(app: web.Application) -> None:
    """``on_startup`` (after the memory service opened): feed written scores to the histogram."""
    if MEMORY in app:
        app[MEMORY].scores.listeners.append(app[METRICS].scored)


def install(app: web.Application) -> None:
    """Give ``app`` its registry, the ``/metrics`` route and the hooks (call after the memory
    service's ``cleanup_ctx`` is added, so :func:`attach_scorer` runs once it is open)."""
    app[METRICS] = Metrics(app)
    app.on_response_prepare.append(headers_sent)
    app.on_startup.append(attach_scorer)
    app.router.add_get("/metrics", scrape)


async def scrape(request: web.Request) -> web.Response:
    """``GET /metrics``: the app's registry in Prometheus text format."""
    require_admin(request)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
