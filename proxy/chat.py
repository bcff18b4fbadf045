"""The intercepted chat endpoints: recall, inject, relay with a tee, then write back.

``POST /api/chat``, ``POST /api/generate`` (Ollama, NDJSON) and ``POST /v1/chat/completions``
(OpenAI, SSE) share one pipeline: parse -> plan -> upstream -> relay with a tee -> remember; the
request's adapter (``proxy.adapters``) says how to read the body and the reply.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from memory.affect import text_signals
from memory.errors import MemoryLayerError
from memory.types import Exchange, ExchangeStatus, MemoryBlock, Scope
from proxy import logs
from proxy.adapters import Adapter, EventStreamAdapter, Reply
from proxy.adapters.base import Conversational
from proxy.auth import PRINCIPAL
from proxy.errors import BadRequest, PayloadTooLarge, RequestTimeout
from proxy.headers import end_to_end, to_upstream
from proxy.passthrough import abort, upstream_request
from proxy.scope import scope_for
from proxy.state import AFFECT, CONFIG, COUNTERS, MEMORY, PLAN_LISTENERS, STICKY
from proxy.sticky import StickyTurn
from proxy.tee import Tee, framing_for
from proxy.wire import Framing, decode_json_object, validate

log = logging.getLogger(__name__)

STATUS_HEADER = "X-Memory-Status"
"""Response header: ``injected``, ``none`` (nothing relevant), ``skipped`` (memory failed or was
slow: fail-open), ``unsaved`` (answered, but memory cannot save exchanges now: the outbox is
failing, e.g. a full disk; the recall outcome is in :attr:`Plan.memory_status`), ``bypassed``
(not a conversational turn: no recall, never stored; the reason is in :data:`REASON_HEADER`),
or ``off`` (disabled by config or ``X-Memory: off``)."""
REASON_HEADER = "X-Memory-Reason"
"""Response header with ``bypassed``: ``completion`` (raw prompt or fill-in-the-middle) or
``task`` (a client's background task, ``memory.task_patterns``)."""
RECALLED_HEADER = "X-Memory-Recalled"
"""Response header: how many memories were injected."""
EXCHANGE_HEADER = "X-Memory-Exchange-Id"
"""Response header: the id of the exchange this answer becomes (``POST /memory/feedback``
takes it as ``exchange_id``); absent when the request is not one to remember (memory off,
no user turn, a bypassed task). An answer that fails, or that the write gate keeps in the
archive only, becomes no memory: feedback on its id answers 404."""
PROVISIONAL_OUTCOME: dict[str, float] = {"ok": 0.7, "aborted": 0.4, "failed": 0.0}
"""Outcome fed to the affect state per exchange status until a symbiosis score exists."""


@dataclass
class Plan:
    """What the proxy decided for one request before sending it upstream."""

    body: bytes
    model: str
    scope: Scope | None
    query: str | None
    block: MemoryBlock
    memory_status: str
    speaker: str | None = None
    reason: str | None = None
    """Why memory was bypassed (:data:`REASON_HEADER`), if it was."""
    unsaved: bool = False
    """Memory could not save exchanges when the request arrived (``X-Memory-Status: unsaved``;
    the headers go out before the answer ends, so its own save cannot be awaited)."""
    exchange_id: str = field(default_factory=lambda: secrets.token_hex(32))
    """The exchange's id (64 hex digits, the shape of a content address), chosen now because
    the headers that carry it (:data:`EXCHANGE_HEADER`) go out before the reply is known."""


async def read_body(request: web.Request) -> bytes:
    """The whole request body (decompressed, if it came with ``Content-Encoding``), within
    ``limits.max_body_bytes`` and ``limits.body_timeout_s``.

    Raises:
        PayloadTooLarge: over the size limit.
        RequestTimeout: not all there within the time limit (a slow-body client).
        BadRequest: the body's ``Content-Encoding`` could not be decoded.
    """
    limits = request.app[CONFIG].limits
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        message = f"request body of {request.content_length} bytes exceeds {limits.max_body_bytes}"
        raise PayloadTooLarge(message)
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body exceeds {limits.max_body_bytes} bytes") from exc
    except TimeoutError as exc:
        message = f"request body not received within {limits.body_timeout_s:g} s"
        raise RequestTimeout(message) from exc
    except web.RequestPayloadError as exc:
        raise BadRequest(f"unreadable request body: {exc}".strip()) from exc


async def recall_fail_open(
    request: web.Request,
    scope: Scope,
    query: str,
    knobs: dict[str, float] | None,
    in_context: frozenset[str] = frozenset(),
    shown: frozenset[str] = frozenset(),
) -> MemoryBlock | None:
    """Recall within ``memory.timeout_ms``; None (with a warning and a count) if memory fails.
    ``in_context`` and ``shown`` are passed on to ``MemoryService.recall``.

    This is the single place where the proxy fails open on recall.
    """
    memory = request.app[MEMORY]
    timeout_s = request.app[CONFIG].memory.timeout_ms / 1000
    waited = await memory.backlog_room()  # admission control, outside the recall's budget
    if waited:
        log.debug("request waited %.3fs for the writer's backlog", waited)
    recall = memory.recall(scope, query, knobs, in_context, shown)
    try:
        return await asyncio.wait_for(recall, timeout_s)
    except (TimeoutError, MemoryLayerError) as exc:
        request.app[COUNTERS].fail_open += 1
        reason = f"timed out after {timeout_s:.3f}s" if isinstance(exc, TimeoutError) else exc
        log.warning("recall skipped, forwarding without memories: %s", reason)
        return None


@functools.lru_cache(maxsize=8)
def _task_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def is_task(patterns: tuple[str, ...], turn: str) -> bool:
    """Whether the user ``turn`` is a client's background task (one of ``patterns`` is found in
    it: ``memory.task_patterns``, by default Open WebUI's task prompts).

    >>> from memory.config import OPEN_WEBUI_TASKS
    >>> is_task(OPEN_WEBUI_TASKS, "### Task:\\nGenerate a concise title"), is_task((), "x")
    (True, False)
    >>> is_task(OPEN_WEBUI_TASKS, "What is a ### Task: header?")
    False
    """
    regex = _task_regex(patterns)
    return regex is not None and regex.search(turn) is not None


def sticky_turn(
    request: web.Request, adapter: Adapter, scope: Scope, body: dict[str, Any]
) -> StickyTurn | None:
    """The request's :class:`~proxy.sticky.StickyTurn`, or None when blocks are not sticky
    (``memory.sticky_blocks`` 0, ``system`` placement, or a format with no conversation)."""
    blocks = request.app.get(STICKY)
    config = request.app[CONFIG].memory
    if blocks is None or config.placement == "system" or not isinstance(adapter, Conversational):
        return None
    return StickyTurn.of(adapter, blocks, scope, body, config.sticky_max_tokens)


def steer(request: web.Request, scope: Scope, query: str) -> dict[str, float] | None:
    """Feed the user's message to their affect state and return the knobs now (None: off)."""
    if AFFECT not in request.app:
        return None
    affect = request.app[AFFECT]
    if signals := text_signals(query):
        affect.pulse(scope.user, signals)
    return affect.knobs(scope.user)


async def plan(request: web.Request, adapter: Adapter) -> Plan:
    """Validate the body, recall and inject (:func:`decide`), and note the outcome in the
    request's log and metrics context; raises BadRequest / PayloadTooLarge."""
    decided = await decide(request, adapter)
    if (ctx := logs.current()) is not None:
        ctx.plan = decided
        if decided.scope is not None and decided.query is not None:
            ctx.exchange_id = decided.exchange_id
    return decided


async def decide(request: web.Request, adapter: Adapter) -> Plan:
    """Validate the body, recall and inject; raises BadRequest / PayloadTooLarge."""
    raw = await read_body(request)
    body = decode_json_object(raw)
    validate(adapter.request_model, body)
    model = str(body["model"])
    principal = request.get(PRINCIPAL)
    scope = scope_for(request.headers, body, principal) if MEMORY in request.app else None
    query = adapter.user_turn(body) if scope else None
    if scope is None or query is None:
        reason = "completion" if scope and adapter.is_completion(body) else None
        status = "off" if scope is None else ("bypassed" if reason else "none")
        return Plan(raw, model, scope, None, MemoryBlock.empty(), status, reason=reason)
    if is_task(request.app[CONFIG].memory.task_patterns, query):
        return Plan(raw, model, scope, None, MemoryBlock.empty(), "bypassed", reason="task")
    knobs = steer(request, scope, query)
    sticky = sticky_turn(request, adapter, scope, body)
    if sticky is not None and sticky.earlier.current is not None:
        block: MemoryBlock | None = sticky.earlier.current.block()  # a tool step: same turn
    else:
        shown = sticky.earlier.shown_ids if sticky is not None else frozenset()
        in_context = adapter.earlier_user_turns(body)
        recall_query = adapter.recall_query(body, query)
        block = await recall_fail_open(request, scope, recall_query, knobs, in_context, shown)
    if block is not None and AFFECT in request.app:
        request.app[AFFECT].recalled(scope.user, block.best_similarity)
    injected = block is not None and bool(block.text)
    sampled = knobs is not None and request.app[CONFIG].knobs.sampling
    placement = request.app[CONFIG].memory.placement
    if block is not None and injected:
        request.app[COUNTERS].recalled += 1
        stages = {k: round(v, 2) for k, v in block.timings_ms.items()}
        log.debug(
            "recalled %d memories (%d tokens), stage ms %s", len(block.ids), block.tokens, stages
        )
        body = adapter.inject(body, block.text, placement)
    if sticky is not None:
        sticky.remember(block or MemoryBlock.empty())
        body = sticky.reinsert(body, placement)
    if sampled and knobs is not None:
        body = adapter.with_sampling(body, knobs)
    edited = injected or sampled or (sticky is not None and bool(sticky.earlier.blocks))
    sent = json.dumps(body, ensure_ascii=False).encode("utf-8") if edited else raw
    status = "injected" if injected else ("skipped" if block is None else "none")
    speaker = adapter.speaker(body)
    block = block or MemoryBlock.empty()
    unsaved = request.app[MEMORY].unsaved
    decided = Plan(sent, model, scope, query, block, status, speaker, unsaved=unsaved)
    for listener in request.app.get(PLAN_LISTENERS, ()):
        listener(decided)
    return decided


def error_frame(framing: Framing, message: str, adapter: Adapter | None = None) -> bytes:
    """An in-band error in the reply's own framing (Ollama NDJSON line or OpenAI SSE event),
    or the adapter's own error event (Responses, Anthropic)."""
    if framing == "sse" and isinstance(adapter, EventStreamAdapter):
        return adapter.error_event(message)
    if framing == "sse":
        payload = {"error": {"message": message, "type": "upstream_error"}}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"
    return json.dumps({"error": message}).encode() + b"\n"


def exchange_status(reply: Reply, upstream_ok: bool, relayed: bool) -> ExchangeStatus:
    """Classify the finished exchange: only ``ok`` ones become memories."""
    if not upstream_ok or reply.error is not None:
        return "failed"
    if not relayed or not reply.done:
        return "aborted"
    if reply.tool_calls:
        return "tool_call"
    return "ok"


class Finalizer:
    """Hands the exchange to memory exactly once: before the final chunk goes out (called with
    ``relayed=True``), or at the end of the request whatever happened."""

    def __init__(self, request: web.Request, decided: Plan, adapter: Adapter) -> None:
        self.request = request
        self.decided = decided
        self.started = time.time()
        self.tee = Tee(adapter, "json")
        self.upstream_ok = False
        self.done = False

    def __call__(self, relayed: bool) -> None:
        if not self.done:
            self.done = True
            reply = self.tee.close()
            status = exchange_status(reply, self.upstream_ok, relayed)
            remember(self.request, self.decided, reply, status, self.started)


def memory_headers(response: web.StreamResponse, decided: Plan) -> None:
    """Set ``X-Memory-Status``, ``X-Memory-Recalled`` and ``X-Memory-Exchange-Id`` on
    ``response``."""
    response.headers[STATUS_HEADER] = "unsaved" if decided.unsaved else decided.memory_status
    if decided.reason:
        response.headers[REASON_HEADER] = decided.reason
    response.headers[RECALLED_HEADER] = str(len(decided.block.ids))
    if decided.scope is not None and decided.query is not None:  # what remember() keeps
        response.headers[EXCHANGE_HEADER] = decided.exchange_id


async def handle(request: web.Request, adapter: Adapter) -> web.StreamResponse:
    """Serve one intercepted chat request end to end."""
    request.app[COUNTERS].requests += 1
    decided = await plan(request, adapter)
    finish = Finalizer(request, decided, adapter)
    response = web.StreamResponse()
    url = request.app[CONFIG].upstream.url + request.rel_url.raw_path_qs
    headers = to_upstream(request.headers, {"content-length", "accept-encoding"})
    try:
        async with upstream_request(
            request, "POST", url, data=decided.body, headers=headers
        ) as upstream:
            finish.upstream_ok = upstream.status == 200
            finish.tee = Tee(adapter, framing_for(upstream.headers.get("Content-Type", "")))
            response.set_status(upstream.status, upstream.reason)
            response.headers.extend(end_to_end(upstream.headers, {"content-length"}))
            memory_headers(response, decided)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            chunks = upstream.content.iter_any()
            if await relay(request, chunks, upstream.content_length, response, finish.tee, finish):
                await response.write_eof()
    except (aiohttp.ClientError, TimeoutError) as exc:
        await broken(request, response, finish.tee, exc)
    except Exception as exc:
        if not response.prepared:
            raise  # nothing sent yet: the middleware answers with a JSON error
        await failed_after_start(request, response, finish.tee, exc)
    finish(False)
    return response


async def failed_after_start(
    request: web.Request, response: web.StreamResponse, tee: Tee, exc: Exception
) -> None:
    """A bug surfaced after the response started: log it and end the reply in-band (an error
    line or event in its own framing), never with a second status line."""
    log.error("error while relaying %s: %r", request.path, exc, exc_info=exc)
    tee.reply.error = "internal error in the memory proxy"
    await finish_with_error(request, response, tee.framing, tee.reply.error, tee.adapter)


async def broken(
    request: web.Request, response: web.StreamResponse, tee: Tee, exc: BaseException
) -> None:
    """The upstream failed after its headers: record it and tell the client in-band."""
    request.app[COUNTERS].upstream_errors += 1
    tee.reply.error = f"upstream connection lost: {type(exc).__name__}"
    log.warning("upstream failed mid-stream on %s: %r", request.path, exc)
    await finish_with_error(request, response, tee.framing, tee.reply.error, tee.adapter)


async def relay(
    request: web.Request,
    chunks: AsyncIterator[bytes],
    content_length: int | None,
    response: web.StreamResponse,
    tee: Tee,
    finalize: Callable[[bool], None],
) -> bool:
    """Copy ``chunks`` to the client as they arrive, feeding the tee.

    ``finalize`` runs before the final chunk is written (so the exchange is in the outbox before
    the client sees its answer complete); a single JSON body of unknown length is held back one
    chunk for that. Returns False when the client went away (the upstream request is then
    closed, which stops generation); upstream failures propagate as ``aiohttp.ClientError`` /
    ``TimeoutError``.
    """
    hold_back = tee.framing == "json" and content_length is None
    held: bytes | None = None
    async for chunk in chunks:
        tee.feed(chunk)
        if tee.at_end(content_length):
            finalize(True)
        if hold_back:
            chunk, held = (held or b""), chunk
        if chunk and not await write_or_gone(request, response, chunk):
            return False
    finalize(True)
    return held is None or await write_or_gone(request, response, held)


async def write_or_gone(request: web.Request, response: web.StreamResponse, chunk: bytes) -> bool:
    """Write one chunk; False if the client has disconnected."""
    try:
        await response.write(chunk)
    except ConnectionError:
        log.info("client disconnected from %s before the reply ended", request.path)
        return False
    return True


async def finish_with_error(
    request: web.Request,
    response: web.StreamResponse,
    framing: Framing,
    message: str,
    adapter: Adapter | None = None,
) -> None:
    """Tell a streaming client the reply broke (in-band), or cut a fixed-length one."""
    if framing == "json" or response.content_length is not None:
        abort(request)
        return
    try:
        await response.write(error_frame(framing, message, adapter))
        await response.write_eof()
    except ConnectionError:
        pass


def remember(
    request: web.Request, decided: Plan, reply: Reply, status: ExchangeStatus, started: float
) -> None:
    """Queue the finished exchange for write-back (an outbox append); failures fail open."""
    if decided.scope is None or decided.query is None or MEMORY not in request.app:
        return
    exchange = Exchange(
        scope=decided.scope,
        endpoint=request.path,
        model=decided.model,
        user_text=decided.query,
        reply=reply.content,
        thinking=reply.thinking,
        tool_calls=reply.tool_calls,
        status=status,
        error=reply.error,
        started_at=started,
        finished_at=time.time(),
        metrics=reply.metrics,
        speaker=decided.speaker,
        assigned_id=decided.exchange_id,
    )
    try:
        request.app[MEMORY].observe(exchange)
    except MemoryLayerError as exc:
        request.app[COUNTERS].fail_open += 1
        log.warning("exchange not queued for memory: %s", exc)
    if AFFECT in request.app and status in PROVISIONAL_OUTCOME:
        request.app[AFFECT].outcome(decided.scope.user, PROVISIONAL_OUTCOME[status])
