"""The recaller: one user's recall pipeline (see :mod:`memory.recall`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from memory.config import MemoryConfig, MetabolismConfig, SymbiosisConfig
from memory.embedders import Embedder, Vectors
from memory.recall.cache import IndexCache, SharedTier
from memory.recall.index import UserIndex
from memory.recall.query import QueryViews, analyse_query
from memory.recall.ranking import (
    Weights,
    already_in_context,
    distinct,
    fused_scores,
    repel,
    shared_hits,
    with_shared,
)
from memory.recall.render import CAUTION, render_block
from memory.store.chroma import Store
from memory.types import MemoryBlock, MemoryHit, Scope

Knobs = Mapping[str, float]

Candidates = tuple[Iterable[MemoryHit], float | None, str | None]
"""Ranked memories (lazily), the best cosine seen (None: no candidate) and the caution line."""


class Recaller:
    """Recall within one user's memories (see the module docstring) through ``embedder`` and
    ``store`` (the service passes them wrapped in the recall path's breakers), reading the
    user's in-memory index from ``cache`` (recall asks the store while it is not built) and
    the shared tier from ``shared`` (None: not recalled)."""

    def __init__(
        self,
        embedder: Embedder,
        store: Store,
        config: MemoryConfig,
        cache: IndexCache | None = None,
        clock: Callable[[], float] = time.time,
        metabolism: MetabolismConfig | None = None,
        symbiosis: SymbiosisConfig | None = None,
        shared: SharedTier | None = None,
    ) -> None:
        self.shared = shared
        """The shared tier (None: not recalled)."""
        self.metabolism = metabolism
        """Decay settings (None: no decay, stored strength as it is)."""
        self.symbiosis = symbiosis
        """Repulsion settings (None: repulsors are still never injected, but do not repel)."""
        self.embedder = embedder
        self.store = store
        self.cache = cache
        self._config = config
        self._clock = clock
        self.weights = Weights.from_config(config)

    async def candidates(self, scope: Scope, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` nearest memories of ``scope.user`` with their cosine similarity."""
        vector = (await self.embedder.embed([query]))[0]
        return await self.store.query(scope.user, vector, k)

    def _index(self, user: str) -> UserIndex | None:
        """The user's loaded index, or None (then this recall asks the store): the first
        recall of a user asks the cache to build it in the background, and an index the
        cache cannot vouch for (:meth:`IndexCache.coherent`) is not used."""
        if self.cache is None:
            return None
        index = self.cache.get(user)
        return index if self.cache.coherent() else None

    async def recall(
        self,
        scope: Scope,
        query: str,
        knobs: Knobs | None = None,
        in_context: frozenset[str] = frozenset(),
        shown: frozenset[str] = frozenset(),
    ) -> MemoryBlock:
        """Recall for one request; ``knobs`` (``k``, ``max_tokens``, ``min_similarity``) override
        the configured values. Memories of user turns listed in ``in_context`` (the request's
        own earlier messages, already in front of the model) are left out
        (:func:`already_in_context`), and so are the memories whose ids are in ``shown``.
        ``timings_ms`` has ``embed``, ``candidates``, ``rank``, ``pack``.

        Raises:
            EmbedderError, StoreError: the caller fails open.
        """
        k, max_tokens, floor = self._settings(knobs or {})
        index = self._index(scope.user)
        views = analyse_query(query, index.names if index is not None else {})
        t0 = time.perf_counter()
        vector = (await self.embedder.embed([views.dense]))[0]
        t1 = time.perf_counter()
        if index is not None and index.dense and len(index):
            ranked, best, caution = self._from_index(index, vector, views, floor)
        else:
            ranked, best, caution = await self._from_store(scope.user, vector, floor, k)
        t2 = time.perf_counter()
        if self.shared is not None and self.metabolism is not None:
            self.shared.refresh_if_stale()
            extra = shared_hits(
                self.shared.memories, vector, floor, self.metabolism.shared_k, scope.user
            )
            ranked = with_shared(ranked, extra) if extra else ranked
        t3 = time.perf_counter()
        if in_context:
            ranked = (h for h in ranked if not already_in_context(h, in_context))
        if shown:
            ranked = (h for h in ranked if h.id not in shown)
        block = render_block(ranked, self._config.template, max_tokens, k, caution)
        t4 = time.perf_counter()
        timings = {
            "embed": (t1 - t0) * 1e3,
            "candidates": (t2 - t1) * 1e3,
            "rank": (t3 - t2) * 1e3,
            "pack": (t4 - t3) * 1e3,
        }
        return MemoryBlock(block.text, block.ids, block.tokens, timings, best, block.caution)

    def _from_index(
        self, index: UserIndex, vector: Vectors, views: QueryViews, floor: float
    ) -> Candidates:
        """Fused dense + lexical ranking on the loaded index, repulsion, near-duplicates out
        (the ranking is a generator: it runs as the block is packed)."""
        caution: str | None = None
        index = index.for_query(vector, views.lexical if self.weights.lexical > 0 else None)
        if not len(index):
            return [], None, None
        scores, eligible, cosine = fused_scores(
            index, vector, views, floor, self._clock(), self.weights, self.metabolism
        )
        if self.symbiosis is not None:
            scores, nearest = repel(index, vector, scores, floor, self.symbiosis.repulsion)
            if nearest >= self.symbiosis.caution_similarity:
                caution = CAUTION
        order = np.argsort(-scores, kind="stable")
        ranked = (
            index.hits[i].with_similarity(float(cosine[i]))
            for i in distinct((int(i) for i in order if eligible[i]), index, self.weights.duplicate)
        )
        return ranked, float(cosine.max()), caution

    async def _from_store(self, user: str, vector: Vectors, floor: float, k: int) -> Candidates:
        """Dense candidates from the store (while the user's index is not built): above the
        floor, no repulsor, nothing dormant."""
        pool = max(4 * k, self._config.candidates)
        dense = await self.store.query(user, vector, pool)
        ranked = [
            h
            for h in dense
            if (h.similarity or 0.0) >= floor and not h.record.repulsor and not h.record.dormant
        ]
        caution: str | None = None
        if self.symbiosis is not None and any(
            h.record.repulsor and (h.similarity or 0.0) >= self.symbiosis.caution_similarity
            for h in dense
        ):
            caution = CAUTION
        best = max((h.similarity for h in dense if h.similarity is not None), default=None)
        return ranked, best, caution

    def _settings(self, knobs: Knobs) -> tuple[int, int, float]:
        c = self._config
        return (
            max(1, round(knobs.get("k", c.k))),
            max(1, round(knobs.get("max_tokens", c.max_tokens))),
            float(knobs.get("min_similarity", c.min_similarity)),
        )
