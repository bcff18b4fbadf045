"""What a batch of exchanges does to the store, as a pure plan: new memories, or
reinforcements of memories that already say the same (no I/O here; the writer carries the plan
out).

An exchange that says again what a memory of the same polarity says (cosine >=
``metabolism.reinforce_similarity``, and :func:`~memory.metabolism.resonance.says_same`: same
numbers, most words shared) strengthens that memory by :data:`REINFORCE_STEP` instead of
adding a copy; the others become new memories (content-addressed by :func:`memory_id`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memory.embedders import Vectors
from memory.metabolism.resonance import says_same
from memory.recall.index import IndexChange
from memory.record import SCHEMA_VERSION, MemoryRecord
from memory.score.symbiosis import Score
from memory.store.chroma import to_chroma_metadata
from memory.types import Exchange, MemoryHit, sha256_json

REINFORCE_STEP = 0.25
"""Strength an exchange adds to the memory it reinforces (capped at 1; a dormant memory wakes).
Adaptive Neural Memory adds ``0.5 * importance``; a fixed step keeps it explainable."""
PROVENANCE_KEEP = 50
"""Source exchange ids a memory keeps (the newest)."""

Target = tuple[MemoryHit, np.ndarray]
"""A memory an exchange reinforces: its record and unit vector ``(dim,)``."""


def memory_id(exchange: Exchange) -> str:
    """Content address of the memory an exchange becomes: the same words said again by the same
    user map to the same id, so a repeated exchange replaces rather than duplicates."""
    return sha256_json([exchange.scope.user, exchange.user_text, exchange.reply])[:32]


def memory_metadata(
    exchange: Exchange,
    embedder: str,
    score: Score | None = None,
    threshold: float = 0.4,
    weight: float | None = None,
) -> dict[str, Any]:
    """What is stored beside a memory's text and vector (schema version ``SCHEMA_VERSION``):
    scope (with how its user was proven, ``auth``), tier, event and storage times, the
    upstream's metrics, strength and access statistics, provenance, and (when scored) the
    symbiosis score, its signals, definition hash and polarity, and the write gate's
    ``importance``."""
    scored = score.as_metadata(threshold) if score is not None else {}
    return {
        **scored,
        **({"importance": round(weight, 4)} if weight is not None else {}),
        "reinforcements": 0,
        "phase": "free",
        "dormant": False,
        "schema_version": SCHEMA_VERSION,
        "user": exchange.scope.user,
        "auth": exchange.scope.auth,
        "session": exchange.scope.session,
        "tier": "session" if exchange.scope.session else "user",
        "model": exchange.model,
        "endpoint": exchange.endpoint,
        "exchange_id": exchange.id,
        "event_at": exchange.started_at,
        "created_at": time.time(),
        "finished_at": exchange.finished_at,
        "embedder": embedder,
        "thinking_chars": len(exchange.thinking),
        "speaker": exchange.speaker,
        "strength": 1.0,
        "access_count": 0,
        "valence": 0.0,
        "provenance": [exchange.id],
        **{k: v for k, v in exchange.metrics.items() if isinstance(v, int | float | str)},
    }


def reinforces(
    hit: MemoryHit, similarity: float, exchange: Exchange, polarity: str | None, floor: float
) -> bool:
    """Whether ``exchange`` (of ``polarity``, None when unscored) says again what memory ``hit``
    (at cosine ``similarity``) says: at least ``floor`` similar, same polarity, same words."""
    same = hit.record.polarity == (polarity or hit.record.polarity)
    return similarity >= floor and same and says_same(hit.text, exchange.text)


def reinforcement(record: MemoryRecord, exchange_id: str, now: float) -> dict[str, Any] | None:
    """Metadata keys to set on memory ``record`` (as it reads now) that exchange
    ``exchange_id`` reinforces, or None when its provenance already holds the exchange (a
    replayed outbox row)."""
    sources = list(record.provenance)
    if exchange_id in sources:
        return None
    return {
        "reinforcements": record.reinforcements + 1,
        "strength": min(1.0, record.strength + REINFORCE_STEP),
        "last_reinforced_at": now,
        "provenance": json.dumps([*sources, exchange_id][-PROVENANCE_KEEP:]),
        "dormant": False,
    }


@dataclass
class WritePlan:
    """What to write for one user's batch of exchanges."""

    ids: list[str] = field(default_factory=list)
    """New memories: their ids, texts, metadata and the batch row of each one's vector."""
    texts: list[str] = field(default_factory=list)
    metas: list[dict[str, Any]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Reinforced memories: memory id -> metadata keys to set."""
    changed: dict[str, Target] = field(default_factory=dict)
    """Reinforced memories as they read after the update (for the in-memory index)."""
    written: list[str] = field(default_factory=list)
    """The memory id each exchange went to, in batch order."""
    reinforced: int = 0
    repulsors: int = 0

    def index_change(self, vectors: Vectors) -> IndexChange | None:
        """The plan's records and unit vectors as an index change (``vectors``: the batch's
        rows), or None when nothing is written."""
        hits = [
            MemoryHit(i, t, {"schema_version": SCHEMA_VERSION, **to_chroma_metadata(m)})
            for i, t, m in zip(self.ids, self.texts, self.metas, strict=True)
        ]
        hits += [hit for hit, _ in self.changed.values()]
        if not hits:
            return None
        stacked = [vectors[self.rows]] + [v.reshape(1, -1) for _, v in self.changed.values()]
        return hits, np.vstack(stacked)


def plan_batch(
    exchanges: list[Exchange],
    scores: list[Score | None],
    weights: list[float | None],
    targets: list[Target | None],
    embedder: str,
    threshold: float,
) -> WritePlan:
    """The plan for one user's ``exchanges`` (with their scores, gate weights and the memory
    each reinforces, or None): reinforcements of ``targets``, new memories for the rest. Two
    exchanges reinforcing one memory in a batch both count (the second sees the first)."""
    plan = WritePlan()
    for i, exchange in enumerate(exchanges):
        score = scores[i]
        if score is not None and score.polarity(threshold) == "repulsor":
            plan.repulsors += 1
        target = targets[i]
        if target is None:
            plan.ids.append(memory_id(exchange))
            plan.texts.append(exchange.text)
            plan.metas.append(memory_metadata(exchange, embedder, score, threshold, weights[i]))
            plan.rows.append(i)
            plan.written.append(plan.ids[-1])
            continue
        hit, vector = target
        meta = {**hit.metadata, **plan.updates.get(hit.id, {})}
        plan.written.append(hit.id)
        update = reinforcement(
            MemoryRecord.from_metadata(hit.id, hit.text, meta), exchange.id, time.time()
        )
        if update is None:
            continue  # a replayed row: already applied
        plan.updates.setdefault(hit.id, {}).update(update)
        plan.changed[hit.id] = (MemoryHit(hit.id, hit.text, {**meta, **update}), vector)
        plan.reinforced += 1
    return plan
