"""Access statistics of recalled memories (``access_count``, ``last_access_at``): noted on the
response path in memory, written to the store later by the writer (never on the response
path)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from memory.errors import MemoryLayerError
from memory.recall.index import UserIndex
from memory.record import MemoryRecord
from memory.store.chroma import Store

log = logging.getLogger(__name__)


def access_update(at: float, record: MemoryRecord | None) -> dict[str, Any]:
    """Keys to set on a memory recalled at ``at`` (epoch seconds): ``last_access_at``, and
    ``access_count`` one up when its current ``record`` is known.

    >>> access_update(5.0, MemoryRecord.create("m", "text", access_count=2))
    {'last_access_at': 5.0, 'access_count': 3}
    >>> access_update(5.0, None)
    {'last_access_at': 5.0}
    """
    update: dict[str, Any] = {"last_access_at": at}
    if record is not None:
        update["access_count"] = record.access_count + 1
    return update


class AccessStats:
    """Recalls noted since the last flush, per user (memory id -> last access time).

    ``store`` takes the updates (the writer's guarded store); ``loaded`` looks up a user's
    in-memory index without loading it (its records hold the current counts and are updated
    in place)."""

    def __init__(self, store: Store, loaded: Callable[[str], UserIndex | None]) -> None:
        self.store = store
        self.loaded = loaded
        self._accessed: dict[str, dict[str, float]] = {}

    def touch(self, user: str, ids: Iterable[str], at: float) -> None:
        """Note that memories ``ids`` of ``user`` were recalled at ``at``."""
        touched = self._accessed.setdefault(user, {})
        for mid in ids:
            touched[mid] = at

    async def flush(self) -> None:
        """Write the noted statistics (one update per user). A memory not in the index only
        gets its ``last_access_at``.

        Raises:
            MemoryLayerError: the store failed (that user's statistics are kept for the next
            try).
        """
        while self._accessed:
            user, touched = self._accessed.popitem()
            index = self.loaded(user)
            updates: dict[str, dict[str, Any]] = {}
            for mid, at in touched.items():
                hit = index.record(mid) if index is not None else None
                current = MemoryRecord.from_metadata(mid, hit.text, hit.metadata) if hit else None
                update = access_update(at, current)
                if hit is not None:
                    # The index's record is updated in place (no reload for a count); its
                    # cached decoded record is dropped so the next read sees the new count.
                    hit.metadata.update(update)
                    hit.__dict__.pop("record", None)
                updates[mid] = update
            if index is not None:
                index.reread(touched)  # decay reads last_used from the index's arrays
            try:
                await self.store.update_metadata(user, updates)
            except MemoryLayerError:
                pending = self._accessed.setdefault(user, {})
                for mid, at in touched.items():
                    pending.setdefault(mid, at)
                raise

    async def flush_quietly(self) -> None:
        """:meth:`flush`, a failure only logged (the statistics stay noted)."""
        try:
            await self.flush()
        except MemoryLayerError as exc:
            log.warning("access statistics not saved yet: %s", exc)
