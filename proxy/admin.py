"""Admin and status endpoints: ``/memory/*``, ``/healthz``, ``/symbiotic_manifest.json``."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from memory.config import MetabolismConfig
from memory.errors import MemoryLayerError
from memory.metabolism.decay import active_days, effective_strength
from memory.record import MemoryRecord
from memory.types import MemoryHit
from proxy.auth import PRINCIPAL, admin_credential
from proxy.errors import BadRequest, MemoryUnavailable, NotFound, Unauthorized
from proxy.manifest import manifest_path
from proxy.scope import DEFAULT_USER, USER_HEADER
from proxy.state import AFFECT, CONFIG, COUNTERS, MEMORY, UPSTREAM
from proxy.wire import decode_json_object

MAX_K = 100
MAX_LIST = 500
"""Largest ``limit`` of ``GET /memory/list`` (a page, not an export: ``memories export``)."""


def require_admin(request: web.Request) -> None:
    """Check ``Authorization: Bearer <admin.token>`` when a token is configured; a user proven
    by ``proxy.auth`` passes too (for their own memories: :func:`admin_user`)."""
    token = request.app[CONFIG].admin.token
    if token is None or PRINCIPAL in request:
        return
    if not admin_credential(request.headers, token):  # Bearer, or Basic from /ui's browser
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin.token>'")


def admin_user(request: web.Request) -> str:
    """The user an admin call is about: the proven user (``proxy.auth``), else ``?user=``,
    else ``X-Memory-User``, else ``default``."""
    if PRINCIPAL in request:
        return request[PRINCIPAL].user
    user = request.query.get("user") or request.headers.get(USER_HEADER) or DEFAULT_USER
    return user.strip() or DEFAULT_USER


def hit_json(hit: MemoryHit) -> dict[str, Any]:
    """``{"id", "text", "score", "metadata"}``; ``score`` is cosine similarity (None on get)."""
    return {"id": hit.id, "text": hit.text, "score": hit.similarity, "metadata": hit.metadata}


def memory_service(request: web.Request) -> Any:
    """The memory service, or 503 when memory is disabled."""
    if MEMORY not in request.app:
        raise MemoryUnavailable("memory is disabled (memory.enabled: false)")
    return request.app[MEMORY]


async def search(request: web.Request) -> web.Response:
    """``GET /memory/search?q=&user=&k=``: the user's memories nearest to ``q``."""
    require_admin(request)
    query = request.query.get("q", "")
    if not query.strip():
        raise BadRequest("query parameter 'q' is required")
    try:
        k = int(request.query.get("k", "10"))
    except ValueError as exc:
        raise BadRequest("query parameter 'k' must be an integer") from exc
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"query parameter 'k' must be between 1 and {MAX_K}")
    try:
        hits = await memory_service(request).search(admin_user(request), query, k)
    except MemoryLayerError as exc:
        raise MemoryUnavailable(f"memory search failed: {exc}") from exc
    return web.json_response([hit_json(hit) for hit in hits])


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an int in ``[low, high]``; BadRequest otherwise."""
    try:
        value = int(request.query.get(name, str(default)))
    except ValueError as exc:
        raise BadRequest(f"query parameter '{name}' must be an integer") from exc
    if not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' must be between {low} and {high}")
    return value


def listed_json(hit: MemoryHit, strength_now: float) -> dict[str, Any]:
    """One row of ``GET /memory/list``: ``{"id", "text", "time" (Unix s, when said, else
    stored; None: unknown), "strength" (stored, before decay), "strength_now" (after decay),
    "symbiosis", "scored", "polarity", "tier", "quadrant", "phase", "dormant",
    "consolidated_into"}`` (field meanings: :class:`memory.record.MemoryRecord`)."""
    r = hit.record
    return {
        "id": hit.id,
        "text": hit.text,
        "time": r.event_time,
        "strength_now": round(strength_now, 4),
        **{k: getattr(r, k) for k in ("strength", "symbiosis", "scored", "polarity", "tier")},
        **{k: getattr(r, k) for k in ("quadrant", "phase", "dormant", "consolidated_into")},
    }


def strengths_now(hits: list[MemoryHit], request: web.Request) -> list[float]:
    """Each memory's strength after decay (:func:`decayed_strengths` with the app's config)."""
    return decayed_strengths([hit.record for hit in hits], request.app[CONFIG].metabolism)


def decayed_strengths(records: list[MemoryRecord], config: MetabolismConfig) -> list[float]:
    """Each record's strength after decay over the active days of ``records`` (one user's
    memories), as recall and the sleep cycle compute it
    (:func:`memory.metabolism.decay.effective_strength`); one float per record, in order."""
    days = active_days(np.array([r.event_time or 0.0 for r in records]))
    now: list[float] = effective_strength(
        np.array([r.strength for r in records]),
        np.array([r.last_used for r in records]),
        np.array([r.screened for r in records], dtype=bool),
        days,
        config,
        np.array([r.symbiosis for r in records]),
    ).tolist()
    return now


async def list_memories(request: web.Request) -> web.Response:
    """``GET /memory/list?user=&limit=&offset=``: a page of the user's stored memories, newest
    first: ``{"user", "proven", "total", "offset", "limit", "threshold", "memories":
    [listed_json...]}`` (``proven``: the user comes from a credential, not a claim;
    ``threshold``: ``symbiosis.threshold``, at or below which a memory is a repulsor). 400 on
    a ``limit`` outside 1..500 or a negative ``offset``; 503 when the store cannot be read."""
    require_admin(request)
    limit = int_param(request, "limit", 50, 1, MAX_LIST)
    offset = int_param(request, "offset", 0, 0, 2**31)
    user = admin_user(request)
    try:
        hits = await memory_service(request).store.all(user)
    except MemoryLayerError as exc:
        raise MemoryUnavailable(f"memory list failed: {exc}") from exc
    hits.sort(key=lambda hit: (hit.record.event_time or 0.0, hit.id), reverse=True)
    now = strengths_now(hits, request)[offset : offset + limit]
    page = [listed_json(h, s) for h, s in zip(hits[offset : offset + limit], now, strict=True)]
    return web.json_response(
        {"user": user, "proven": PRINCIPAL in request, "total": len(hits), "offset": offset}
        | {"limit": limit, "threshold": request.app[CONFIG].symbiosis.threshold, "memories": page}
    )


async def affect(request: web.Request) -> web.Response:
    """``GET /memory/affect?user=``: that user's affect levels and current knobs."""
    require_admin(request)
    if AFFECT not in request.app:
        raise NotFound("affect is disabled (affect.enabled: false)")
    user = admin_user(request)
    state = request.app[AFFECT].state(user)
    return web.json_response(
        {
            "levels": {k: round(v, 4) for k, v in state.levels.items()},
            "knobs": {k: round(v, 4) for k, v in request.app[AFFECT].knobs(user).items()},
            "weights": state.weights,
            "outcome_mean": round(state.outcome_mean, 4),
        }
    )


async def feedback(request: web.Request) -> web.Response:
    """``POST /memory/feedback?user=`` with ``{"id": memory or exchange id, "score": 0..1}``
    (``memory_id`` / ``exchange_id`` also accepted for ``id``): explicit feedback on one memory
    of that user. Answers the revised ``{"memory_id", "symbiosis", "polarity", "signals"}``;
    400 on a malformed body, 404 when the user has no such memory."""
    require_admin(request)
    body = decode_json_object(await request.read())  # the chat routes' checks, same errors
    ident = body.get("id") or body.get("memory_id") or body.get("exchange_id")
    value = body.get("score")
    if not isinstance(ident, str) or not ident:
        raise BadRequest("'id' (a memory or exchange id) is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadRequest("'score' must be a number in [0, 1]")
    try:
        result = await memory_service(request).feedback(admin_user(request), ident, float(value))
    except MemoryLayerError as exc:
        raise MemoryUnavailable(f"feedback not recorded: {exc}") from exc
    if result is None:
        raise NotFound(f"memory or exchange {ident} not found")
    return web.json_response(result)


async def get_memory(request: web.Request) -> web.Response:
    """``GET /memory/{id}?user=``: one memory of that user, 404 otherwise."""
    require_admin(request)
    mid = request.match_info["id"]
    try:
        hit = await memory_service(request).get(admin_user(request), mid)
    except MemoryLayerError as exc:
        raise MemoryUnavailable(f"memory lookup failed: {exc}") from exc
    if hit is None:
        raise NotFound(f"memory {mid} not found")
    return web.json_response(hit_json(hit))


async def delete_memory(request: web.Request) -> web.Response:
    """``DELETE /memory/{id}?user=``: erase one memory of that user and what was made from
    it (:func:`memory.forget.erase`); 200 with the :class:`~memory.forget.Erasure` report
    (``deleted``: the id, ``memories``, ``exchanges``, ``archived``, ``queued``,
    ``shared_deleted``, ``shared_updated``), 404 when the user has no such memory."""
    require_admin(request)
    mid = request.match_info["id"]
    try:
        erased = await memory_service(request).forget(admin_user(request), mid)
    except MemoryLayerError as exc:
        raise MemoryUnavailable(f"memory delete failed: {exc}") from exc
    if erased is None:
        raise NotFound(f"memory {mid} not found")
    return web.json_response(erased.as_json())


async def upstream_health(request: web.Request) -> dict[str, Any]:
    """``GET /`` on the upstream: reachable means any answer below 500."""
    url = request.app[CONFIG].upstream.url + "/"
    try:
        async with request.app[UPSTREAM].get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return {"ok": resp.status < 500, "url": url, "status": resp.status}
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"ok": False, "url": url, "error": f"{type(exc).__name__}: {exc}"}


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: upstream, store and embedder status; 503 only if the upstream is down.

    ``status`` is ``ok``, ``degraded`` (chat works, memory does not: the store or embedder is
    unreachable, or the outbox cannot take exchanges, with ``outbox.spilled`` of them held in
    memory and ``outbox.dropped`` lost) or ``down``.
    """
    report: dict[str, Any] = {"upstream": await upstream_health(request)}
    if MEMORY in request.app:
        try:
            report.update(await asyncio.wait_for(request.app[MEMORY].health(), 10))
        except TimeoutError:
            report["store"] = report["embedder"] = {"ok": False, "error": "health check timed out"}
    report["counters"] = asdict(request.app[COUNTERS])
    parts = [report["upstream"]] + [
        report[k] for k in ("store", "embedder", "outbox") if k in report
    ]
    if not report["upstream"]["ok"]:
        report["status"] = "down"
    else:
        report["status"] = "ok" if all(part["ok"] for part in parts) else "degraded"
    return web.json_response(report, status=503 if report["status"] == "down" else 200)


async def manifest(request: web.Request) -> web.StreamResponse:
    """``GET /symbiotic_manifest.json``: the file as shipped."""
    path = manifest_path()
    if path is None:
        raise NotFound("symbiotic_manifest.json is not installed")
    return web.FileResponse(path, headers={"Content-Type": "application/json"})
