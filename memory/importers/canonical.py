"""The proxy's own JSONL export (``memories export``) read back: a lossless restore.

Each line is ``{"state": "stored", "id", "user", "text", "metadata", "embedding"?}`` (a stored
memory; ``embedding`` a list of floats when exported with ``--embeddings``) or ``{"state":
"pending", "id", "user", "text", "metadata": {"exchange": {...}, ...}}`` (an exchange that was
still queued). A stored memory is written back under its id with its metadata unchanged (the
owner set to the importing user), so export, import, export gives the same records; its vector
is the exported one when the configured embedder made it (same ``embedder`` name and size),
otherwise the text is embedded again. A pending exchange is queued for the writer as it was.
Importing the same file twice changes nothing: ids are kept, and queued exchanges already
stored are skipped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from memory.record import READABLE_VERSIONS
from memory.service import MemoryService
from memory.snapshot import exchange_ids
from memory.types import Exchange, Scope

EMBED_BATCH = 64
"""Memories embedded per call when vectors must be made again."""


@dataclass
class Canonical:
    """Records of one canonical JSONL file: stored memories and queued exchanges."""

    stored: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Exchange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def is_canonical(first: Any) -> bool:
    """Whether a decoded first JSONL record is one of ``memories export`` (not a message)."""
    return isinstance(first, dict) and first.get("state") in ("stored", "pending")


def read_canonical(lines: Iterable[str], user: str) -> Canonical:
    """Parse an export for ``user``; bad lines become problems (line number, reason)."""
    out = Canonical()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if record.get("state") == "pending":
                out.pending.append(_exchange(record["metadata"]["exchange"], user))
            else:
                out.stored.append(_stored(record, user))
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            out.problems.append(f"line {number}: not an exported memory: {exc}")
    return out


def _stored(record: dict[str, Any], user: str) -> dict[str, Any]:
    if record.get("state") != "stored":
        raise ValueError(f"unknown state {record.get('state')!r}")
    metadata = dict(record["metadata"])
    if metadata.get("schema_version", 1) not in READABLE_VERSIONS:
        raise ValueError(f"schema_version {metadata.get('schema_version')} is newer than this")
    if not isinstance(record["id"], str) or not isinstance(record["text"], str):
        raise ValueError("'id' and 'text' must be strings")
    if "user" in metadata:
        metadata["user"] = user
    embedding = record.get("embedding")
    if embedding is not None and not (
        isinstance(embedding, list) and all(isinstance(x, int | float) for x in embedding)
    ):
        raise ValueError("'embedding' must be a list of numbers")
    return {"id": record["id"], "text": record["text"], "metadata": metadata, "vector": embedding}


def _exchange(data: dict[str, Any], user: str) -> Exchange:
    scope = Scope(**{**data["scope"], "user": user})
    return Exchange(**{**data, "scope": scope})


async def vectors_for(service: MemoryService, stored: list[dict[str, Any]]) -> np.ndarray:
    """One vector per stored record, shape ``(n, dim)``: the exported one when the configured
    embedder made it and it has that embedder's size, else the text embedded again.

    Raises:
        EmbedderError: the embedder failed.
    """
    name = service.embedder.name
    dim = int((await service.embedder.embed(["dimension probe"])).shape[1])
    out = np.zeros((len(stored), dim), dtype=np.float32)
    again: list[int] = []
    for i, record in enumerate(stored):
        vector = record["vector"]
        if vector is not None and len(vector) == dim and record["metadata"].get("embedder") == name:
            out[i] = vector
        else:
            again.append(i)
    bar = not again or not sys.stderr.isatty()  # a bar for a person, not for a log file
    for start in tqdm(range(0, len(again), EMBED_BATCH), desc="embed", disable=bar):
        rows = again[start : start + EMBED_BATCH]
        out[rows] = await service.embedder.embed([stored[i]["text"] for i in rows])
    for i in again:
        stored[i]["metadata"]["embedder"] = name
    return out


async def restore(service: MemoryService, user: str, data: Canonical) -> tuple[int, int]:
    """Write ``data`` into ``user``'s memories (the service started); returns (memories
    stored, exchanges queued). Already-stored exchanges are not queued again.

    Raises:
        EmbedderError, StoreError: the embedder or the store failed; records already upserted
        stay, and importing the same file again completes it (upserts by id).
    """
    if data.stored:
        vectors = await vectors_for(service, data.stored)
        await service.store.upsert_many(
            user,
            [r["id"] for r in data.stored],
            vectors,
            [r["text"] for r in data.stored],
            [r["metadata"] for r in data.stored],
        )
    known = await known_exchanges(service, user)
    queued = sum(service.observe(e) for e in data.pending if e.id not in known)
    return len(data.stored), queued


async def known_exchanges(service: MemoryService, user: str) -> set[str]:
    """Ids of the exchanges of ``user`` already stored (as a memory or reinforcing one) or
    waiting in the outbox: what an import must not queue again.

    Raises:
        StoreError: the store or the outbox cannot be read.
    """
    known = {i for hit in await service.store.all(user) for i in exchange_ids(hit)}
    known.update(row.exchange.id for row in service.outbox.for_user(user))
    return known
