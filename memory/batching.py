"""Query embeddings under load: concurrent requests share one model call, and a repeated
query is not embedded again.

On a CPU model, N concurrent single-text calls cost about N times one call while a batch of N
costs little more than one, so the recall path puts :class:`BatchingEmbedder` (micro-batching:
callers that arrive while a model call runs go together into the next one) behind
:class:`CachingEmbedder` (an LRU of query vectors: retried, regenerated and repeated questions).
Both have the :class:`~memory.embedders.Embedder` interface and sit inside the circuit breaker,
so each caller keeps its own time budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import numpy as np

from memory.embedders import Embedder, Vectors
from memory.errors import EmbedderError

Waiting = tuple[list[str], "asyncio.Future[Vectors]"]


class BatchingEmbedder:
    """Coalesces concurrent ``embed`` calls: at most one call to ``inner`` at a time, carrying
    every text that arrived while the previous one ran (up to ``max_batch`` texts; a single
    larger request goes alone).

    A caller that gives up (a timeout cancels its await) is left out of the batch if it has not
    started, and its share of a running batch is dropped; the others are served.
    """

    def __init__(self, inner: Embedder, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.max_batch = max_batch
        self.calls = 0
        """Model calls made (``texts`` counts what they carried)."""
        self.texts = 0
        self._waiting: list[Waiting] = []
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, texts: list[str]) -> Vectors:
        """Vectors of ``texts``, shape ``(len(texts), dim)``, from a shared model call.

        Raises:
            EmbedderError: the model call carrying these texts failed.
        """
        if not texts:
            return await self.inner.embed(texts)
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._waiting.append((texts, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    def _take(self) -> list[Waiting]:
        """The next batch: live callers in arrival order, within ``max_batch`` texts."""
        self._waiting = [(t, f) for t, f in self._waiting if not f.done()]
        batch: list[Waiting] = []
        size = 0
        while self._waiting and (not batch or size + len(self._waiting[0][0]) <= self.max_batch):
            texts, future = self._waiting.pop(0)
            batch.append((texts, future))
            size += len(texts)
        return batch

    async def _drain(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # callers scheduled in the same loop turn join this batch
            batch = self._take()
            if not batch:
                continue
            texts = [text for request, _ in batch for text in request]
            self.calls += 1
            self.texts += len(texts)
            try:
                vectors = await self.inner.embed(texts)
            except asyncio.CancelledError:
                _fail(batch, EmbedderError("embedding batch cancelled"))
                raise
            except Exception as exc:  # every caller of the batch gets the model's error
                _fail(batch, exc)
                continue
            start = 0
            for request, future in batch:
                if not future.done():
                    future.set_result(vectors[start : start + len(request)])
                start += len(request)

    async def aclose(self) -> None:
        """Stop the batch worker and close ``inner``."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        await self.inner.aclose()


def _fail(batch: list[Waiting], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


class CachingEmbedder:
    """An LRU of vectors by exact text, at most ``max_entries`` of them (1.5 KB each for a
    384-dimension model); texts not held go to ``inner`` in one call."""

    def __init__(self, inner: Embedder, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()

    async def embed(self, texts: list[str]) -> Vectors:
        """Vectors of ``texts``, shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: ``inner`` failed (nothing is cached then).
        """
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing or not texts:
            fresh = await self.inner.embed(missing)
            if not texts:
                return fresh
            for text, row in zip(missing, fresh, strict=True):
                self._vectors[text] = row
        rows = []
        for text in texts:
            self._vectors.move_to_end(text)
            rows.append(self._vectors[text])
        while len(self._vectors) > self.max_entries:
            self._vectors.popitem(last=False)
        return np.vstack(rows).astype(np.float32, copy=False)

    async def aclose(self) -> None:
        """Close ``inner``."""
        await self.inner.aclose()
