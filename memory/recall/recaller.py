"""The recaller: one user's recall pipeline (see :mod:`memory.recall`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

import numpy as np

from memory.config import MemoryConfig, MetabolismConfig, SymbiosisConfig
from memory.embedders import Vectors
from memory.recall.index import UserIndex
from memory.recall.query import analyse_query
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
from memory.types import MemoryBlock, MemoryHit, Scope

EmbedFn = Callable[[list[str]], Awaitable[Vectors]]
"""Texts -> unit vectors of shape ``(len(texts), dim)``."""
QueryFn = Callable[[str, Vectors, int], Awaitable[list[MemoryHit]]]
"""(user, vector, k) -> the user's k nearest memories from the store, most similar first."""
IndexFn = Callable[[str], UserIndex | None]
"""user -> their in-memory index, or None while it is not built."""
SharedFn = Callable[[], tuple[list[MemoryHit], np.ndarray]]
"""() -> the shared tier's awake memories and their unit vectors, shape ``(n, dim)``."""


Knobs = Mapping[str, float]


class Recaller:
    """Recall within one user's memories (see the module docstring). The embed and store calls
    are injected (the service passes them through its circuit breakers), and so is the lookup
    of the user's in-memory index."""

    def __init__(
        self,
        embed: EmbedFn,
        query: QueryFn,
        config: MemoryConfig,
        index: IndexFn | None = None,
        clock: Callable[[], float] = time.time,
        metabolism: MetabolismConfig | None = None,
        symbiosis: SymbiosisConfig | None = None,
        shared: SharedFn | None = None,
    ) -> None:
        self.shared = shared
        """The shared tier (None: not recalled)."""
        self.metabolism = metabolism
        """Decay settings (None: no decay, stored strength as it is)."""
        self.symbiosis = symbiosis
        """Repulsion settings (None: repulsors are still never injected, but do not repel)."""
        self._embed = embed
        self._query = query
        self._index = index or (lambda _user: None)
        self._config = config
        self._clock = clock
        self.weights = Weights(
            lexical=Weights.lexical if config.lexical else 0.0,
            neighbour=config.neighbour_weight,
            recency=config.recency_boost,
            recency_half_life_s=config.recency_half_life_days * 86400.0,
            duplicate=config.duplicate_similarity,
        )

    async def candidates(self, scope: Scope, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` nearest memories of ``scope.user`` with their cosine similarity."""
        vector = (await self._embed([query]))[0]
        return await self._query(scope.user, vector, k)

    async def recall(
        self,
        scope: Scope,
        query: str,
        knobs: Knobs | None = None,
        in_context: frozenset[str] = frozenset(),
    ) -> MemoryBlock:
        """Recall for one request; ``knobs`` (``k``, ``max_tokens``, ``min_similarity``) override
        the configured values. Memories of user turns listed in ``in_context`` (the request's
        own earlier messages, already in front of the model) are left out
        (:func:`already_in_context`). ``timings_ms`` has ``embed``, ``candidates``, ``rank``,
        ``pack``.

        Raises:
            EmbedderError, StoreError: the caller fails open.
        """
        k, max_tokens, floor = self._settings(knobs or {})
        caution: str | None = None
        index = self._index(scope.user)
        views = analyse_query(query, index.names if index is not None else {})
        t0 = time.perf_counter()
        vector = (await self._embed([views.dense]))[0]
        t1 = time.perf_counter()
        if index is not None and index.dense and len(index):
            scores, eligible, cosine = fused_scores(
                index, vector, views, floor, self._clock(), self.weights, self.metabolism
            )
            if self.symbiosis is not None:
                scores, nearest = repel(index, vector, scores, floor, self.symbiosis.repulsion)
                if nearest >= self.symbiosis.caution_similarity:
                    caution = CAUTION
            t2 = time.perf_counter()
            order = np.argsort(-scores, kind="stable")
            ranked: Iterable[MemoryHit] = (
                MemoryHit(
                    index.hits[i].id, index.hits[i].text, index.hits[i].metadata, float(cosine[i])
                )
                for i in distinct(
                    (int(i) for i in order if eligible[i]), index, self.weights.duplicate
                )
            )
            best: float | None = float(cosine.max())
        else:
            pool = max(4 * k, self._config.candidates)
            dense = await self._query(scope.user, vector, pool)
            t2 = time.perf_counter()
            ranked = [
                h
                for h in dense
                if (h.similarity or 0.0) >= floor
                and h.metadata.get("polarity") != "repulsor"
                and h.metadata.get("dormant") is not True
            ]
            if self.symbiosis is not None and any(
                h.metadata.get("polarity") == "repulsor"
                and (h.similarity or 0.0) >= self.symbiosis.caution_similarity
                for h in dense
            ):
                caution = CAUTION
            best = max((h.similarity for h in dense if h.similarity is not None), default=None)
        if self.shared is not None and self.metabolism is not None:
            extra = shared_hits(self.shared(), vector, floor, self.metabolism.shared_k, scope.user)
            ranked = with_shared(ranked, extra) if extra else ranked
        t3 = time.perf_counter()
        if in_context:
            ranked = (h for h in ranked if not already_in_context(h, in_context))
        block = render_block(ranked, self._config.template, max_tokens, k, caution)
        t4 = time.perf_counter()
        timings = {
            "embed": (t1 - t0) * 1e3,
            "candidates": (t2 - t1) * 1e3,
            "rank": (t3 - t2) * 1e3,
            "pack": (t4 - t3) * 1e3,
        }
        return MemoryBlock(block.text, block.ids, block.tokens, timings, best, block.caution)

    def _settings(self, knobs: Knobs) -> tuple[int, int, float]:
        c = self._config
        return (
            max(1, round(knobs.get("k", c.k))),
            max(1, round(knobs.get("max_tokens", c.max_tokens))),
            float(knobs.get("min_similarity", c.min_similarity)),
        )
