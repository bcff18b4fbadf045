"""Recall: query -> candidates -> ranking -> token budget -> memory block.

This is the simplest honest form (dense top-k within the user's collection, a similarity floor,
then greedy packing into the budget); the retrieval-quality issue replaces the candidate and
ranking stages. :func:`render_block` is the one renderer of injected text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from memory.config import MemoryConfig
from memory.embedders import Vectors
from memory.tokens import count_tokens
from memory.types import MemoryBlock, MemoryHit, Scope

EmbedFn = Callable[[list[str]], Awaitable[Vectors]]
"""Texts -> unit vectors of shape ``(len(texts), dim)``."""
QueryFn = Callable[[str, Vectors, int], Awaitable[list[MemoryHit]]]
Knobs = Mapping[str, float]
"""(user, vector, k) -> the user's k nearest memories, most similar first."""


def event_date(hit: MemoryHit) -> str:
    """``YYYY-MM-DD`` (UTC) of when the memory's exchange happened, or ``""`` if unknown.

    >>> event_date(MemoryHit(id="a", text="", metadata={"event_at": 0.0}))
    '1970-01-01'
    """
    stamp = hit.metadata.get("event_at", hit.metadata.get("created_at"))
    if not isinstance(stamp, int | float):
        return ""
    return datetime.fromtimestamp(float(stamp), tz=UTC).strftime("%Y-%m-%d")


def render_line(hit: MemoryHit) -> str:
    """One memory as one bullet: its date, then its text with line breaks folded.

    >>> render_line(MemoryHit(id="a", text="User: hi\\nAssistant: hello", metadata={}))
    '- User: hi / Assistant: hello'
    """
    date = event_date(hit)
    body = " / ".join(line.strip() for line in hit.text.splitlines() if line.strip())
    return f"- [{date}] {body}" if date else f"- {body}"


def render_block(hits: Sequence[MemoryHit], template: str, max_tokens: int) -> MemoryBlock:
    """Render ``hits`` (best first) into ``template`` within ``max_tokens`` cl100k tokens.

    Memories are taken in order while they fit; one that does not fit is skipped and smaller
    ones after it may still go in. The returned ``text`` never exceeds ``max_tokens`` (the whole
    block is counted, template included) and is ``""`` when no memory fits.

    >>> hits = [MemoryHit(id=str(i), text="x " * 40, metadata={}) for i in range(5)]
    >>> block = render_block(hits, "{memories}", 100)
    >>> block.tokens <= 100, len(block.ids)
    (True, 2)
    """
    frame_tokens = count_tokens(template.replace("{memories}", ""))
    chosen: list[MemoryHit] = []
    used = frame_tokens
    for hit in hits:
        cost = count_tokens(render_line(hit)) + 1  # + the newline joining it
        if used + cost <= max_tokens:
            chosen.append(hit)
            used += cost
    while chosen:
        text = template.replace("{memories}", "\n".join(render_line(h) for h in chosen))
        tokens = count_tokens(text)
        if tokens <= max_tokens:  # merges across joins can only shrink the count; check anyway
            return MemoryBlock(text=text, ids=tuple(h.id for h in chosen), tokens=tokens)
        chosen.pop()
    return MemoryBlock.empty()


class Recaller:
    """Dense top-k recall within one user's collection, over injected embed and query calls
    (the service passes them through its circuit breakers)."""

    def __init__(self, embed: EmbedFn, query: QueryFn, config: MemoryConfig) -> None:
        self._embed = embed
        self._query = query
        self._config = config

    async def candidates(self, scope: Scope, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` nearest memories of ``scope.user`` with their cosine similarity."""
        vector = (await self._embed([query]))[0]
        return await self._query(scope.user, vector, k)

    async def recall(self, scope: Scope, query: str, knobs: Knobs | None = None) -> MemoryBlock:
        """Recall for one request; ``knobs`` (``k``, ``max_tokens``, ``min_similarity``) override
        the configured values. Raises EmbedderError or StoreError (the caller fails open)."""
        k, max_tokens, floor = self._settings(knobs or {})
        t0 = time.perf_counter()
        vector = (await self._embed([query]))[0]
        t1 = time.perf_counter()
        hits = await self._query(scope.user, vector, k)
        t2 = time.perf_counter()
        kept = [h for h in hits if (h.similarity or 0.0) >= floor]
        block = render_block(kept, self._config.template, max_tokens)
        t3 = time.perf_counter()
        timings = {"embed": (t1 - t0) * 1e3, "query": (t2 - t1) * 1e3, "pack": (t3 - t2) * 1e3}
        best = max((h.similarity for h in hits if h.similarity is not None), default=None)
        return MemoryBlock(block.text, block.ids, block.tokens, timings, best)

    def _settings(self, knobs: Knobs) -> tuple[int, int, float]:
        c = self._config
        return (
            max(1, round(knobs.get("k", c.k))),
            max(1, round(knobs.get("max_tokens", c.max_tokens))),
            float(knobs.get("min_similarity", c.min_similarity)),
        )
