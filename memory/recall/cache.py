"""In-memory caches of the store that recall reads: one :class:`~memory.recall.index.UserIndex` per
user (:class:`IndexCache`) and the shared tier's awake memories (:class:`SharedTier`).

Both are caches of the store and say how they stay current. The index cache is told of every
change this process makes (writes, metadata updates, deletes) and, through the change feed
(:mod:`memory.recall.coherence`), of every change other replicas make; it applies them in
order in one background task per user; a user's index is built from the store when first
asked for (:meth:`IndexCache.load`), and dropped again when the indexes together outgrow
their bound (``memory.index_cache_mb``; least recently recalled first). The shared tier is
written only by sleep cycles; its copy is reloaded when older than :data:`SharedTier.REFRESH_S`
(a cycle run by another process shows up within that), in the background, when a reader asks
for it (:meth:`SharedTier.refresh_if_stale`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict

import numpy as np

from memory.errors import MemoryLayerError, StoreError
from memory.recall.index import IndexChange, UserIndex, unit_rows
from memory.recall.updates import apply_changes, build_index
from memory.store.chroma import SHARED, Store
from memory.types import MemoryHit

log = logging.getLogger(__name__)


class IndexCache:
    """The users' in-memory indexes over ``store`` (the raw store: a reload is not a
    latency-critical call), at most ``limit_bytes`` together (``memory.index_cache_mb``, by
    :meth:`UserIndex.nbytes`): past it the least recently recalled users' indexes are dropped
    (not one being built or updated, never the last one held); such a user is rebuilt from the
    store at the next recall, which asks the store meanwhile.

    Coherence: this process's own changes arrive through :meth:`changed` and
    :meth:`removed`; other replicas' through the change feed
    (:class:`memory.recall.coherence.ChangeFeed`), which calls the same methods and
    :meth:`confirm` after each read of the store's change log. With ``stale_s`` set (a feed
    runs), an index only serves recall while the log was read within ``stale_s`` seconds
    (:meth:`coherent`); otherwise recall asks the store, which is the truth."""

    def __init__(
        self, store: Store, stale_s: float | None = None, limit_bytes: float = math.inf
    ) -> None:
        self.store = store
        self.stale_s = stale_s
        """How old the last read of the change log may be for an index to serve recall
        (None: no other replica writes; always coherent)."""
        self.limit_bytes = limit_bytes
        self.evicted = 0
        """Indexes dropped to stay within ``limit_bytes`` since start."""
        self._index: OrderedDict[str, UserIndex] = OrderedDict()  # least recently used first
        self._bytes: dict[str, int] = {}
        self._pending: dict[str, list[IndexChange]] = {}
        self._reload: set[str] = set()
        self._removed: dict[str, set[str]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._confirmed_at = -math.inf

    def loaded(self, user: str) -> UserIndex | None:
        """The user's index as it is now, or None when it is not built (never loads)."""
        return self._index.get(user)

    def get(self, user: str) -> UserIndex | None:
        """The user's index for a recall (now its most recently used), or None when it is not
        built: then it starts being built in the background."""
        index = self._index.get(user)
        if index is None:
            self.load(user)
        else:
            self._index.move_to_end(user)
        return index

    def held(self) -> int:
        """How many users' indexes are held."""
        return len(self._index)

    def nbytes(self) -> int:
        """Bytes the held indexes hold together (as :meth:`UserIndex.nbytes` counts them)."""
        return sum(self._bytes.values())

    def tracks(self, user: str) -> bool:
        """Whether the user's index is built or being built (changes to it matter)."""
        return user in self._index or user in self._tasks

    def busy(self, user: str) -> bool:
        """Whether a build or an update of the user's index is running."""
        return user in self._tasks

    def coherent(self) -> bool:
        """Whether the indexes reflect every replica's changes up to at most ``stale_s`` ago."""
        if self.stale_s is None:
            return True
        return time.monotonic() - self._confirmed_at <= self.stale_s

    def confirm(self, at: float) -> None:
        """The change log was read at ``at`` (``time.monotonic()``) and what it held applied."""
        self._confirmed_at = max(self._confirmed_at, at)

    def load(self, user: str) -> None:
        """Start (re)building the user's index from the store in the background."""
        self.changed(user)

    def changed(self, user: str, change: IndexChange | None = None) -> None:
        """Memories of ``user`` were written (``change``: their records and vectors), had
        metadata updated (``change``: memory id -> keys set, as given to the store), were
        deleted (``change``: their ids; see :meth:`removed`), or changed in a way only a reload
        shows (None): extend or update the index in place, or reload it from the store, in the
        background, in the order the changes happened."""
        if change is not None:
            if not self.tracks(user):
                return  # not loaded: built from the store at the user's first recall
            self._pending.setdefault(user, []).append(change)
        else:
            self._reload.add(user)
        if user not in self._tasks:
            task = asyncio.create_task(self._update(user), name=f"index-{user[:16]}")
            self._tasks[user] = task

    def removed(self, user: str, ids: frozenset[str]) -> None:
        """Memories ``ids`` of ``user`` were deleted: never recalled from now on (masked in the
        index at once, and in every index published until one no longer holds them), and
        dropped from the index in the background."""
        if not self.tracks(user):
            return
        self._removed.setdefault(user, set()).update(ids)
        if (index := self._index.get(user)) is not None:
            self._index[user] = index.masked(ids)
        self.changed(user, ids)

    def forget(self, user: str) -> None:
        """Drop the user's index now and reload it (recall asks the store meanwhile)."""
        self._index.pop(user, None)
        self._bytes.pop(user, None)
        self.changed(user)

    def forget_all(self) -> None:
        """Drop every index (they are rebuilt from the store as users recall)."""
        for user in list(self._index):
            self.forget(user)

    def _publish(self, user: str, index: UserIndex, size: int) -> None:
        gone = self._removed.get(user)
        if gone:
            held = frozenset(gone & index.position.keys())
            if held:
                index = index.masked(held)
            else:
                del self._removed[user]
        self._index[user] = index
        self._index.move_to_end(user)
        self._bytes[user] = size
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used indexes until the rest fit in ``limit_bytes``."""
        total = self.nbytes()
        for user in list(self._index)[:-1]:  # the newest stays, however large
            if total <= self.limit_bytes:
                return
            if user in self._tasks:
                continue  # its build or update would publish it again
            del self._index[user]
            total -= self._bytes.pop(user)
            self.evicted += 1

    async def ready(self, user: str) -> None:
        """Wait until the user's index reflects every memory written so far (building it if
        it is not loaded)."""
        if user not in self._index:
            self.changed(user)
        while (task := self._tasks.get(user)) is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel the running builds and updates."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _update(self, user: str) -> None:
        try:
            while user in self._reload or self._pending.get(user):
                if user in self._reload or user not in self._index:
                    self._reload.discard(user)
                    self._pending.pop(user, None)  # the reload sees them
                    self._publish(user, *await self._build(user))
                    continue
                changes = self._pending.pop(user, [])
                try:
                    index = await asyncio.to_thread(apply_changes, self._index[user], changes)
                except Exception:  # a LargeIndex changes in place: half-changed, it must go
                    log.exception("memory index not updated, rebuilding it from the store")
                    self._index.pop(user, None)
                    self._bytes.pop(user, None)
                    continue
                if index is None:
                    self._reload.add(user)  # the old index serves recall meanwhile
                else:
                    self._publish(user, index, await asyncio.to_thread(index.nbytes))
        except MemoryLayerError as exc:
            log.warning("memory index not rebuilt, recall asks the store for now: %s", exc)
        finally:
            self._tasks.pop(user, None)

    async def _build(self, user: str) -> tuple[UserIndex, int]:
        """The user's index built from the store, and its size in bytes."""
        hits, vectors = await self.store.snapshot(user)
        dense = vectors if vectors.shape[0] == len(hits) and len(hits) else None
        return await asyncio.to_thread(_sized, hits, dense)


def _sized(hits: list[MemoryHit], vectors: np.ndarray | None) -> tuple[UserIndex, int]:
    index = build_index(hits, vectors)
    return index, index.nbytes()


class SharedTier:
    """The shared tier's awake memories and their unit vectors, read from ``store``."""

    REFRESH_S = 60.0
    """How old the copy may get before :meth:`refresh_if_stale` reloads it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.memories: tuple[list[MemoryHit], np.ndarray] = ([], np.zeros((0, 0), np.float32))
        """``(hits, unit vectors (n, dim))`` as last loaded."""
        self._loaded_at = -math.inf
        self._task: asyncio.Task[None] | None = None

    def refresh_if_stale(self) -> None:
        """Start a background reload when the copy is older than :data:`REFRESH_S` (a reader
        never waits for the store here)."""
        stale = time.monotonic() - self._loaded_at > self.REFRESH_S
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.load(), name="shared-tier")

    async def load(self) -> None:
        """Read the shared tier's awake memories (a failure keeps the old copy)."""
        self._loaded_at = time.monotonic()
        try:
            hits, vectors = await self.store.snapshot(SHARED)
        except StoreError as exc:
            log.warning("shared tier not reloaded: %s", exc)
            return
        keep = [i for i, h in enumerate(hits) if not h.record.dormant]
        unit = unit_rows(vectors[keep]) if keep else np.zeros((0, 0), np.float32)
        self.memories = ([hits[i] for i in keep], unit)

    async def close(self) -> None:
        """Cancel a running reload."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
