"""The sleep cycle's I/O driver: reads each user's memories from the store, runs the pure
stages (:func:`~memory.metabolism.sleep.metabolize_user`, then
:func:`~memory.metabolism.resonance.resonate` over every user's awake memories), and writes
their updates back (metadata updates, new shared memories, score-log revisions)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from memory.config import MetabolismConfig
from memory.index_cache import IndexCache, SharedTier
from memory.metabolism.resonance import Resonance, resonate
from memory.metabolism.sleep import CycleReport, metabolize_user
from memory.recall.index import unit_rows
from memory.score.keeper import ScoreKeeper
from memory.store.chroma import SHARED, Store
from memory.types import MemoryHit

Awake = tuple[str, MemoryHit, np.ndarray]
"""An awake memory for the resonance pass: ``(user, record as updated, unit vector (dim,))``."""


class SleepCycle:
    """Runs sleep cycles over ``store`` (the raw store: a cycle is not latency-critical);
    tells ``cache`` of every update; with ``shared`` (the shared tier is kept), a full cycle
    ends with the resonance pass and reloads the tier."""

    def __init__(
        self,
        store: Store,
        scores: ScoreKeeper,
        metabolism: MetabolismConfig,
        cache: IndexCache,
        shared: SharedTier | None,
    ) -> None:
        self.store = store
        self.scores = scores
        self.metabolism = metabolism
        self.cache = cache
        self.shared = shared
        self.resonance: Resonance | None = None
        """What the last full cycle's resonance pass did (None: not run)."""

    async def run(self, users: list[str] | None, now: float | None) -> dict[str, CycleReport]:
        """One cycle over ``users`` (None: every user in the store, then resonance) at time
        ``now`` (epoch seconds; None: the clock at each stage). Returns a report per user.

        Raises:
            MemoryLayerError: the store failed (users done before stay done).
        """
        await self.scores.load()
        full = users is None
        reports: dict[str, CycleReport] = {}
        awake: list[Awake] = []
        for user in users if users is not None else await self.store.users():
            reports[user] = await self.user(user, now, awake if full else None)
        if self.shared is not None and full:
            await self.resonate(awake, time.time() if now is None else now)
        return reports

    async def user(self, user: str, now: float | None, awake: list[Awake] | None) -> CycleReport:
        """The cycle over one user's memories, written back; their awake memories are added
        to ``awake`` when given (and the shared tier is kept)."""
        hits, vectors = await self.store.snapshot(user)
        updates, report = await asyncio.to_thread(
            metabolize_user,
            user,
            hits,
            vectors,
            await self.scores.load(),
            self.scores.threshold,
            self.metabolism,
            time.time() if now is None else now,
        )
        if updates:
            await self.store.update_metadata(user, updates)
            self.cache.changed(user, updates)
        self.scores.append(report.log)
        if self.shared is not None and awake is not None and len(vectors) == len(hits):
            unit = unit_rows(vectors)
            for i, hit in enumerate(hits):
                meta = {**hit.metadata, **updates.get(hit.id, {})}
                if not meta.get("dormant"):
                    awake.append((user, MemoryHit(hit.id, hit.text, meta), unit[i]))
        return report

    async def resonate(self, awake: list[Awake], now: float) -> None:
        """The resonance pass over every user's ``awake`` memories, written to the shared
        tier; :attr:`resonance` holds its counts."""
        assert self.shared is not None
        hits, vectors = await self.store.snapshot(SHARED)
        unit = unit_rows(vectors) if len(hits) else np.zeros((0, 0), np.float32)
        new, updates, report = await asyncio.to_thread(
            resonate, awake, hits, unit, self.metabolism, now
        )
        if updates:
            await self.store.update_metadata(SHARED, updates)
        if new:
            await self.store.upsert_many(
                SHARED,
                [n[0] for n in new],
                np.stack([n[2] for n in new]),
                [n[1] for n in new],
                [n[3] for n in new],
            )
        self.resonance = report
        await self.shared.load()
