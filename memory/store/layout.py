"""Where a user's memories live in Chroma: a fixed number of shard collections, each holding
many users' memories, told apart by the ``user`` metadata field and an owner tag in the id.

Chroma keeps an HNSW index per collection, and each index costs a fixed ~2.6 MB of memory
whatever it holds (hnswlib's table of 65,536 label locks, 40 bytes each, allocated by every
index; measured: 2,632 KB per one-memory collection on ``chroma run``, the same with
``max_neighbors`` 4 and ``batch_size``/``sync_threshold`` 2). One collection per user (layout 1)
therefore cost ~2.6 MB per user; ``store.shards`` collections (layout 2) cost that once per
shard, and ~17 KB per user.

Isolation: a record's Chroma id is ``{owner_tag(user)}:{memory id}``, so two users' memories
with the same id cannot replace each other, and every read is also filtered with
``where={"user": user}``. The shared tier (:data:`SHARED`) keeps a collection of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

SHARED = "\x00shared"
"""The owner of the shared tier's collection: no client can be this user (an HTTP header
value cannot hold a NUL byte), so no user-scoped call can read, change or delete it."""

LAYOUT_VERSION = 2
"""1: one collection per user (``{prefix}-u-{sha256(user)[:40]}``); 2: ``store.shards`` shard
collections (``{prefix}-shard-{i}-of-{n}``). Shard collections record it in their metadata."""


def _digest(user: str) -> str:
    return hashlib.sha256(user.encode("utf-8")).hexdigest()


def collection_name(prefix: str, user: str) -> str:
    """Layout-1 collection of ``user`` (read only by the migration); ``{prefix}-shared`` for
    :data:`SHARED`.

    >>> collection_name("slm", "alice")
    'slm-u-2bd806c97f0e00af1a1fc3328fa763a9269723c8'
    """
    if user == SHARED:
        return f"{prefix}-shared"
    return f"{prefix}-u-{_digest(user)[:40]}"


def shard_name(prefix: str, index: int, shards: int) -> str:
    """Name of shard ``index`` of ``shards`` (3-512 chars of ``[a-zA-Z0-9._-]``, as Chroma wants).

    >>> shard_name("slm", 3, 16)
    'slm-shard-003-of-016'
    """
    return f"{prefix}-shard-{index:03d}-of-{shards:03d}"


def shard_of(user: str, shards: int) -> int:
    """The shard holding ``user``'s memories: the user's SHA-256 modulo ``shards``.

    >>> shard_of("alice", 16)
    15
    """
    return int(_digest(user)[:16], 16) % shards


def owner_tag(user: str) -> str:
    """The 32 hex digits (128 bits of SHA-256) that start ``user``'s record ids."""
    return _digest(user)[:32]


@dataclass(frozen=True)
class Placement:
    """Where one user's memories are: ``collection``, ids prefixed with ``id_prefix``, reads
    filtered with ``where`` (None for the shared tier, which has its collection to itself)."""

    collection: str
    id_prefix: str
    where: dict[str, Any] | None

    def record_id(self, memory_id: str) -> str:
        """The Chroma id of ``memory_id``."""
        return self.id_prefix + memory_id

    def memory_id(self, record_id: str) -> str:
        """The memory id of the Chroma id ``record_id``."""
        return record_id[len(self.id_prefix) :]


def placement(prefix: str, shards: int, user: str) -> Placement:
    """Where ``user``'s memories live in layout 2.

    >>> placement("slm", 16, "alice").collection
    'slm-shard-015-of-016'
    >>> placement("slm", 16, SHARED)
    Placement(collection='slm-shared', id_prefix='', where=None)
    """
    if user == SHARED:
        return Placement(collection_name(prefix, SHARED), "", None)
    name = shard_name(prefix, shard_of(user, shards), shards)
    return Placement(name, owner_tag(user) + ":", {"user": user})


def is_ours(prefix: str, name: str) -> bool:
    """Whether collection ``name`` holds memories of this prefix (any layout, or shared)."""
    return name.startswith((f"{prefix}-u-", f"{prefix}-shard-")) or name == f"{prefix}-shared"


def is_legacy(prefix: str, shards: int, name: str) -> bool:
    """Whether ``name`` holds memories in another layout than ``shards`` shards: a layout-1
    collection, or a shard of another shard count (to be migrated)."""
    if name.startswith(f"{prefix}-u-"):
        return True
    return name.startswith(f"{prefix}-shard-") and not name.endswith(f"-of-{shards:03d}")
