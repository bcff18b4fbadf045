"""The :class:`Store` protocol: where memories are kept, every method scoped to one user
(:class:`memory.store.chroma.ChromaStore` is the implementation)."""

from __future__ import annotations

from typing import Any, Protocol

from memory.embedders import Vectors
from memory.store.changes import Change
from memory.types import MemoryHit


class Store(Protocol):
    """Where memories are kept; every method is scoped to one user."""

    async def open(self) -> None:
        """Connect (or open the directory); raises StoreError."""
        ...

    async def close(self) -> None:
        """Release the client."""
        ...

    async def check_dimension(self, embedder: str, dim: int) -> None:
        """Raise DimensionMismatchError if any existing collection holds other-sized vectors."""
        ...

    async def upsert(
        self, user: str, memory_id: str, vector: Vectors, text: str, metadata: dict[str, Any]
    ) -> None:
        """Insert or replace one memory of ``user``; ``vector`` has shape ``(dim,)``.

        The stored metadata always carries ``schema_version``.
        """
        ...

    async def upsert_many(
        self,
        user: str,
        ids: list[str],
        vectors: Vectors,
        texts: list[str],
        metadatas: list[dict[str, Any]],
    ) -> None:
        """Insert or replace several memories of ``user`` in one call; ``vectors`` has shape
        ``(len(ids), dim)``; a repeated id keeps its last record."""
        ...

    async def query(self, user: str, vector: Vectors, k: int) -> list[MemoryHit]:
        """The ``k`` memories of ``user`` nearest to ``vector``, most similar first."""
        ...

    async def get(self, user: str, memory_id: str) -> MemoryHit | None:
        """One memory of ``user`` by id, or None (also when it belongs to someone else)."""
        ...

    async def delete(self, user: str, memory_id: str) -> bool:
        """Hard-delete one memory of ``user``; False when ``user`` has no such memory."""
        ...

    async def heartbeat(self) -> None:
        """Raise StoreError when the store is unusable."""
        ...

    async def all(self, user: str, batch: int = 500) -> list[MemoryHit]:
        """Every memory of ``user`` (for export), in store order."""
        ...

    async def snapshot(self, user: str, batch: int = 500) -> tuple[list[MemoryHit], Vectors]:
        """Every memory of ``user`` and its vector: ``(hits, vectors)`` with ``vectors`` of
        shape ``(len(hits), dim)`` (``(0, 0)`` when there are none), in store order."""
        ...

    async def update_metadata(self, user: str, updates: dict[str, dict[str, Any]]) -> None:
        """Merge ``updates`` (memory id -> metadata keys to set) into stored records of
        ``user``; ids that no longer exist are ignored."""
        ...

    async def users(self) -> list[str]:
        """Every user with at least one stored memory (read from the records' ``user``)."""
        ...

    async def fetch(self, user: str, ids: list[str]) -> tuple[list[MemoryHit], Vectors]:
        """The memories ``ids`` of ``user`` that exist, with their vectors: ``(hits, vectors)``
        as :meth:`snapshot` returns them."""
        ...

    @property
    def logs_changes(self) -> bool:
        """Whether writes are noted in a change log other replicas read (a shared server)."""
        ...

    async def changes(self, since: float) -> list[Change]:
        """Change-log entries of other replicas stamped at or after ``since`` (Unix seconds),
        oldest first; empty when the store keeps no log."""
        ...

    async def prune_changes(self, before: float) -> None:
        """Drop change-log entries stamped before ``before``."""
        ...
