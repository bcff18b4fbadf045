"""The store's change log: one small Chroma collection (``{prefix}-changes``) where every
write, metadata update and delete of a user's memories is noted, so that replicas sharing one
Chroma server keep their in-memory indexes coherent (:mod:`memory.recall.coherence` reads it).

An entry names the user, the kind of change, the memory ids and the replica that made it,
stamped with the writer's wall clock. Readers ask for entries from a time on, minus a margin
for clock skew and for entries that become visible late (:data:`SKEW_S`); applying an entry
twice is harmless (upserts replace, deletes of missing ids do nothing), so readers only skip
ids they have seen. Entries older than :data:`KEEP_S` are pruned.

These functions are synchronous (Chroma's client is): :class:`memory.store.chroma.ChromaStore`
runs them in a worker thread.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["upsert", "update", "delete", "reload"]

KEEP_S = 600.0
"""How long entries are kept; a reader that could not read the log for longer reloads every
index it holds."""
SKEW_S = 5.0
"""How far before its last read a reader looks again: replicas' clocks must agree within this
(NTP keeps them within milliseconds), and an entry written just before a read may show up
after it."""
MAX_IDS = 500
"""An entry naming more memories than this is logged as ``reload`` (no ids): readers rebuild
that user's index from the store (a sleep cycle over a large user)."""
_VECTOR = [1.0]
"""Chroma wants an embedding per record; the log's records all carry this one."""


@dataclass(frozen=True)
class Change:
    """One entry: ``kind`` of memories ``ids`` of ``user`` by ``replica`` at ``at`` (Unix
    seconds on that replica's clock); ``reload`` has no ids."""

    id: str
    user: str
    kind: Kind
    ids: tuple[str, ...]
    at: float
    replica: str


def open_log(client: Any, name: str) -> Any:
    """The log's collection (created when missing)."""
    return client.get_or_create_collection(
        name, embedding_function=None, metadata={"role": "change-log"}
    )


def note(collection: Any, user: str, kind: Kind, ids: list[str], replica: str) -> None:
    """Append one entry (``reload`` when ``ids`` are more than :data:`MAX_IDS`)."""
    if len(ids) > MAX_IDS:
        kind, ids = "reload", []
    meta = {
        "user": user,
        "kind": kind,
        "ids": json.dumps(ids),
        "at": time.time(),
        "replica": replica,
    }
    collection.add(ids=[uuid.uuid4().hex], embeddings=[_VECTOR], metadatas=[meta])


def read(collection: Any, since: float, replica: str) -> list[Change]:
    """Entries of other replicas stamped at or after ``since``, oldest first."""
    where = {"$and": [{"at": {"$gte": since}}, {"replica": {"$ne": replica}}]}
    page = collection.get(where=where, include=["metadatas"])
    out = []
    for entry_id, meta in zip(page["ids"], page.get("metadatas") or [], strict=True):
        meta = meta or {}
        out.append(
            Change(
                entry_id,
                str(meta.get("user", "")),
                meta.get("kind", "reload"),
                tuple(json.loads(str(meta.get("ids", "[]")))),
                float(meta.get("at", 0.0)),
                str(meta.get("replica", "")),
            )
        )
    return sorted(out, key=lambda c: c.at)


def prune(collection: Any, before: float) -> None:
    """Delete the entries stamped before ``before``."""
    collection.delete(where={"at": {"$lt": before}})
