"""Migration of memories stored in another layout (one collection per user, or shards of another
count) into the configured shards: :meth:`memory.store.chroma.ChromaStore.migrate` copies each
such collection's records (ids, documents, metadata and embeddings as stored), reads the copies
back, and deletes the old collection only when they match. Running it again copies again
(upserts replace) and finds nothing left once every old collection is gone.

These helpers are synchronous (Chroma's client is) and know nothing of the target layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memory.embedders import Vectors
from memory.store.layout import collection_name, owner_tag
from memory.types import MemoryHit


class UnmigratableError(Exception):
    """An old collection whose records' owner cannot be told; it is left where it is."""


@dataclass
class Rows:
    """Every record of one collection, as stored: Chroma ids, documents, metadata, vectors
    (shape ``(len(ids), dim)``)."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    vectors: Vectors


@dataclass
class Owned:
    """One user's records of an old collection: memory ids and the rows of :class:`Rows`."""

    memory_ids: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


@dataclass
class MigrationReport:
    """What one migration did: old ``collections`` copied and removed, ``memories`` and ``users``
    copied, and collections ``left`` in place (with the reason)."""

    collections: int = 0
    memories: int = 0
    users: int = 0
    left: dict[str, str] = field(default_factory=dict)


def read_rows(collection: Any, batch: int = 500) -> Rows:
    """Every record of ``collection``, ``batch`` at a time."""
    out = Rows([], [], [], np.zeros((0, 0), dtype=np.float32))
    chunks = []
    while True:
        page = collection.get(
            limit=batch,
            offset=len(out.ids),
            include=["documents", "metadatas", "embeddings"],
        )
        out.ids.extend(page["ids"])
        count = len(page["ids"])
        out.texts.extend(d or "" for d in page.get("documents") or [""] * count)
        out.metadatas.extend(dict(m or {}) for m in page.get("metadatas") or [{}] * count)
        if page["ids"]:
            chunks.append(np.asarray(page["embeddings"], dtype=np.float32))
        if len(page["ids"]) < batch:
            break
    if chunks:
        out.vectors = np.vstack(chunks)
    return out


def owners(prefix: str, name: str, rows: Rows) -> dict[str, Owned]:
    """The records of old collection ``name`` by owner. A one-per-user collection belongs to
    the user its name was made from (the ``user`` of a record that hashes to it); a shard's
    records each name theirs in ``user`` and carry its tag in their ids. Raises
    UnmigratableError when an owner cannot be told."""
    if name.startswith(f"{prefix}-u-"):
        users = {m.get("user") for m in rows.metadatas}
        named = [u for u in users if isinstance(u, str) and collection_name(prefix, u) == name]
        if not rows.ids:
            return {}
        if not named:
            raise UnmigratableError("no record names the user this collection belongs to")
        return {named[0]: Owned(list(rows.ids), list(range(len(rows.ids))))}
    out: dict[str, Owned] = {}
    for row, (record_id, meta) in enumerate(zip(rows.ids, rows.metadatas, strict=True)):
        user = meta.get("user")
        tag = f"{owner_tag(user)}:" if isinstance(user, str) else None
        if tag is None or not record_id.startswith(tag):
            raise UnmigratableError(f"record {record_id!r} does not carry its owner's tag")
        owned = out.setdefault(user, Owned())  # type: ignore[arg-type]
        owned.memory_ids.append(record_id[len(tag) :])
        owned.rows.append(row)
    return out


def mismatch(
    rows: Rows, owned: Owned, user: str, hits: list[MemoryHit], vectors: Vectors
) -> str | None:
    """Why the copies ``hits``/``vectors`` (read back) differ from ``owned``'s rows, or None."""
    copies = {h.id: (h, vectors[i]) for i, h in enumerate(hits)}
    for memory_id, row in zip(owned.memory_ids, owned.rows, strict=True):
        copy = copies.get(memory_id)
        if copy is None:
            return f"memory {memory_id!r} of {user!r} was not copied"
        hit, vector = copy
        if hit.text != rows.texts[row] or hit.metadata != {**rows.metadatas[row], "user": user}:
            return f"memory {memory_id!r} of {user!r} reads back different"
        if not np.allclose(vector, rows.vectors[row], atol=1e-6):
            return f"memory {memory_id!r} of {user!r} has a different vector"
    return None
