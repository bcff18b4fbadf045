"""One lane for model work: recall's query embeddings go before the writer's, in turns.

On a CPU the embedding model and the scorer's encoder share the same cores. Run concurrently
(a recall batch in one thread, a write batch in another, the scorer in a third) each call takes
about as long as all of them together, so a recall waiting a few milliseconds for its own
vectors waits for the whole write batch and blows its budget. :class:`ModelLane` runs one model
call at a time; a waiting recall call is granted the lane before a waiting write call, but a
write is granted after at most ``recall_burst`` recalls in a row, so the writer is slowed under
load, never stopped. Write work is cut into chunks (:class:`LaneEmbedder` ``chunk``), so a
recall waits for at most one chunk.

When the writer has fallen too far behind (``write_first``, ``memory.max_lag_s``) the order
flips and writes go first: the lane is then backpressure. Recall still runs on every request,
but later, so clients that send as fast as they are answered slow down to what the CPU can
also remember, and the backlog stays a few seconds of work instead of minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Literal

import numpy as np

from memory.embedders import Embedder, Vectors

Kind = Literal["recall", "write"]


class ModelLane:
    """A lock over model calls with two classes of waiter; see the module docstring.

    Not thread-safe: one event loop. A cancelled waiter leaves the queue.
    """

    def __init__(self, recall_burst: int = 2) -> None:
        if recall_burst < 1:
            raise ValueError("recall_burst must be at least 1")
        self.recall_burst = recall_burst
        self.busy = False
        self.granted: dict[Kind, int] = {"recall": 0, "write": 0}
        """Turns granted per class."""
        self._waiting: dict[Kind, deque[asyncio.Future[None]]] = {
            "recall": deque(),
            "write": deque(),
        }
        self._recalls_in_a_row = 0
        self.write_first: Callable[[], bool] = lambda: False
        """Whether a waiting write goes before a waiting recall now (the writer's backlog is
        too long: :meth:`memory.write.writer.Writer.behind`); asked at each hand-over."""

    @contextlib.asynccontextmanager
    async def turn(self, kind: Kind) -> AsyncIterator[None]:
        """Hold the lane for one model call of ``kind``."""
        if self.busy:  # a free lane has no live waiter: _release hands it to the next one
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[kind].append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # granted and cancelled in the same turn: pass it on
                raise
        else:
            self.busy = True
            self._count(kind)
        try:
            yield
        finally:
            self._release()

    def _count(self, kind: Kind) -> None:
        self.granted[kind] += 1
        self._recalls_in_a_row = self._recalls_in_a_row + 1 if kind == "recall" else 0

    def _next(self) -> asyncio.Future[None] | None:
        for queue in self._waiting.values():
            while queue and queue[0].done():
                queue.popleft()
        recall, write = self._waiting["recall"], self._waiting["write"]
        write_turn = write and (self._recalls_in_a_row >= self.recall_burst or self._behind())
        if recall and not write_turn:
            self._count("recall")
            return recall.popleft()
        if write:
            self._count("write")
            return write.popleft()
        return None

    def _behind(self) -> bool:
        try:
            return self.write_first()
        except Exception:
            return False

    def _release(self) -> None:
        nxt = self._next()
        if nxt is None:
            self.busy = False
        else:
            nxt.set_result(None)  # the lane passes straight to it: ``busy`` stays True


class LaneEmbedder:
    """``inner`` behind a :class:`ModelLane`: each model call holds the lane as ``kind``, in
    calls of at most ``chunk`` texts (None: the request in one call)."""

    def __init__(self, inner: Embedder, lane: ModelLane, kind: Kind, chunk: int | None = None):
        if chunk is not None and chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.lane = lane
        self.kind: Kind = kind
        self.chunk = chunk

    async def embed(self, texts: list[str]) -> Vectors:
        """Vectors of ``texts``, shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: a call to ``inner`` failed.
        """
        step = self.chunk or max(len(texts), 1)
        parts = []
        for start in range(0, max(len(texts), 1), step):
            async with self.lane.turn(self.kind):
                parts.append(await self.inner.embed(texts[start : start + step]))
        return parts[0] if len(parts) == 1 else np.vstack(parts).astype(np.float32, copy=False)

    async def aclose(self) -> None:
        """Close ``inner``."""
        await self.inner.aclose()
