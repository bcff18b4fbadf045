"""The change feed: keeps this replica's in-memory indexes coherent with the writes, metadata
updates and deletes other replicas make on the shared store.

Every ``interval_s`` (``memory.coherence_ms``) one read of the store's change log
(:mod:`memory.store.changes`) fetches the entries other replicas wrote since the last read;
for each user whose index this replica holds, deleted memories are masked at once and dropped
in the background, written or updated ones are fetched from the store (with their vectors)
and merged. Then the cache is told the log was read (:meth:`IndexCache.confirm`): an index only
serves recall while the last read is at most ``memory.coherence_stale_ms`` old, so a feed that
cannot read the log sends recall to the store (the truth) instead of a stale index.

Bound: a deletion on any replica stops being recalled everywhere within the stale bound
(1 s by default); a write is recalled everywhere within the same bound plus the time to merge
it into the index (:mod:`memory.recall.index`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

from memory.errors import MemoryLayerError
from memory.recall.cache import IndexCache
from memory.store.changes import KEEP_S, SKEW_S, Change
from memory.store.chroma import Store

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
"""How often a replica deletes log entries older than :data:`KEEP_S` (any replica may)."""


class ChangeFeed:
    """Reads ``store``'s change log every ``interval_s`` and applies it to ``cache``."""

    def __init__(
        self,
        store: Store,
        cache: IndexCache,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.cache = cache
        self.interval_s = interval_s
        self.applied = 0
        """Entries applied since start (for tests and ``/healthz``)."""
        self._clock = clock
        self._since = clock()
        self._seen: dict[str, float] = {}
        self._pruned_at = 0.0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading the log in the background."""
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def close(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        """One read of the log and what it holds applied (a failure is logged once and the
        cache stops being confirmed: recall then asks the store)."""
        started, monotonic = self._clock(), time.monotonic()
        try:
            entries = await self.store.changes(self._since - SKEW_S)
            if started - self._since > KEEP_S - SKEW_S:  # entries may be pruned: start over
                self.cache.forget_all()
            else:
                await self._apply([e for e in entries if e.id not in self._seen])
            await self._prune(started)
        except MemoryLayerError as exc:
            if not self._failing:
                log.warning("change log not read (recall asks the store meanwhile): %s", exc)
            self._failing = True
            return
        self._failing = False
        self._seen.update((e.id, e.at) for e in entries)
        self._seen = {k: at for k, at in self._seen.items() if at >= started - 2 * SKEW_S}
        self._since = started
        self.cache.confirm(monotonic)

    async def _apply(self, entries: list[Change]) -> None:
        """Apply ``entries`` (oldest first) user by user, to the users this replica holds."""
        ordered = sorted(entries, key=lambda e: e.user)  # stable: each user's stay in order
        for user, group in itertools.groupby(ordered, key=lambda e: e.user):
            mine = list(group)
            self.applied += len(mine)
            if not self.cache.tracks(user):
                continue
            if any(e.kind == "reload" for e in mine):
                self.cache.forget(user)
                continue
            deleted = frozenset(i for e in mine if e.kind == "delete" for i in e.ids)
            if deleted:
                self.cache.removed(user, deleted)
            wanted = list(dict.fromkeys(i for e in mine if e.kind != "delete" for i in e.ids))
            await self._refetch(user, [i for i in wanted if i not in deleted])

    async def _refetch(self, user: str, ids: list[str]) -> None:
        """Read memories ``ids`` of ``user`` from the store and merge them; ids the store no
        longer holds were deleted since."""
        if not ids:
            return
        hits, vectors = await self.store.fetch(user, ids)
        missing = frozenset(ids) - {h.id for h in hits}
        if missing:
            self.cache.removed(user, missing)
        if hits and vectors.shape[0] == len(hits):
            self.cache.changed(user, (hits, vectors))
        elif hits:
            self.cache.forget(user)  # no vectors: rebuild from the store

    async def _prune(self, now: float) -> None:
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            await self.store.prune_changes(now - KEEP_S)
