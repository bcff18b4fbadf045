"""Recall: query -> candidates -> ranking -> token budget -> memory block.

Candidates come from two retrievers, dense (Chroma, with a cosine floor) and lexical (BM25),
fused by reciprocal rank, then packed greedily into the token budget. :func:`render_block` is
the one renderer of injected text, shared by the proxy and the benchmarks.
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
LexicalFn = Callable[[str, str, int], Awaitable[list[MemoryHit]]]
"""(user, query text, k) -> the user's k best lexical matches, best first."""
NeighboursFn = Callable[[str], Callable[[str], list[MemoryHit]]]
"""user -> (memory id -> the memories next to it in its session)."""
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


def render_body(hit: MemoryHit) -> str:
    """A memory's text on one line (line breaks folded to `` / ``).

    >>> render_body(MemoryHit(id="a", text="User: hi\\nAssistant: hello", metadata={}))
    'User: hi / Assistant: hello'
    """
    return " / ".join(line.strip() for line in hit.text.splitlines() if line.strip())


def render_memories(hits: Sequence[MemoryHit]) -> str:
    """Memories grouped under their event date, oldest first, one bullet each.

    >>> a = MemoryHit("a", "B said x", {"event_at": 86400.0})
    >>> b = MemoryHit("b", "A said y", {"event_at": 0.0})
    >>> print(render_memories([a, b]))
    [1970-01-01]
    - A said y
    [1970-01-02]
    - B said x
    """
    order = sorted(range(len(hits)), key=lambda i: (stamp(hits[i]), i))
    lines: list[str] = []
    current: str | None = None
    for i in order:
        date = event_date(hits[i])
        if date != current:
            current = date
            if date:
                lines.append(f"[{date}]")
        lines.append(f"- {render_body(hits[i])}")
    return "\n".join(lines)


def stamp(hit: MemoryHit) -> float:
    """Event time (Unix seconds) of a memory; 0 when unknown."""
    value = hit.metadata.get("event_at", hit.metadata.get("created_at"))
    return float(value) if isinstance(value, int | float) else 0.0


def render_block(
    hits: Sequence[MemoryHit], template: str, max_tokens: int, max_items: int | None = None
) -> MemoryBlock:
    """Render ``hits`` (best first) into ``template`` within ``max_tokens`` cl100k tokens.

    Memories are taken in rank order while they fit (at most ``max_items``); one that does not
    fit is skipped and smaller ones after it may still go in. They are shown grouped by event
    date, oldest first, so the model can answer "when" questions; ``ids`` keep the rank order.
    The returned ``text`` never exceeds ``max_tokens`` (the whole block is counted, template
    included) and is ``""`` when no memory fits.

    >>> hits = [MemoryHit(id=str(i), text="x " * 40, metadata={}) for i in range(5)]
    >>> block = render_block(hits, "{memories}", 100)
    >>> block.tokens <= 100, len(block.ids)
    (True, 2)
    """
    used = count_tokens(template.replace("{memories}", ""))
    chosen: list[MemoryHit] = []
    dates: set[str] = set()
    for hit in hits:
        if max_items is not None and len(chosen) >= max_items:
            break
        date = event_date(hit)
        cost = count_tokens(f"- {render_body(hit)}") + 1
        if date and date not in dates:
            cost += count_tokens(f"[{date}]") + 1
        if used + cost <= max_tokens:
            chosen.append(hit)
            dates.add(date)
            used += cost
    while chosen:
        text = template.replace("{memories}", render_memories(chosen))
        tokens = count_tokens(text)
        if tokens <= max_tokens:  # merges across joins can only shrink the count; check anyway
            return MemoryBlock(text=text, ids=tuple(h.id for h in chosen), tokens=tokens)
        chosen.pop()
    return MemoryBlock.empty()


def rrf_scores(
    rankings: Sequence[Sequence[MemoryHit]], k: int = 60
) -> tuple[dict[str, float], dict[str, MemoryHit]]:
    """Reciprocal rank fusion: ``score(d) = sum_r 1 / (k + rank_r(d))``, and the records.

    Cormack, Clarke and Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
    rank learning methods", SIGIR 2009 (k = 60 there). A memory found by several retrievers keeps
    the first list's record (the dense one, which carries the cosine similarity).

    >>> a, b, c = (MemoryHit(i, i, {}) for i in "abc")
    >>> scores, _ = rrf_scores([[a, b], [b, c]])
    >>> sorted(scores, key=lambda i: -scores[i])
    ['b', 'a', 'c']
    """
    scores: dict[str, float] = {}
    records: dict[str, MemoryHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            records.setdefault(hit.id, hit)
    return scores, records


def spread_to_neighbours(
    scores: dict[str, float],
    records: dict[str, MemoryHit],
    neighbours: Callable[[str], list[MemoryHit]],
    alpha: float = 0.5,
    top: int = 30,
) -> list[MemoryHit]:
    """Rank with context: a memory adjacent (same session, next to it in time) to a strong
    candidate gains ``alpha`` times that candidate's score, so the turn that answers, or the
    question before it, comes along. Returns the records best first.

    >>> a, b, c = (MemoryHit(i, i, {}) for i in "abc")
    >>> near = {"a": [b], "b": [a, c], "c": [b]}
    >>> [h.id for h in spread_to_neighbours({"a": 1.0, "c": 0.4}, {"a": a, "c": c},
    ...                                     lambda i: near[i])]
    ['a', 'b', 'c']
    """
    spread = dict(scores)
    for mid in sorted(scores, key=lambda i: -scores[i])[:top]:
        for hit in neighbours(mid):
            gain = scores.get(hit.id, 0.0) + alpha * scores[mid]
            if gain > spread.get(hit.id, 0.0):
                spread[hit.id] = gain
                records.setdefault(hit.id, hit)
    return [records[i] for i in sorted(spread, key=lambda i: -spread[i])]


class Recaller:
    """Hybrid recall within one user's memories: dense (Chroma) and lexical (BM25) candidates,
    fused by reciprocal rank, packed into the token budget. The embed, query and lexical calls
    are injected (the service passes them through its circuit breakers)."""

    def __init__(
        self,
        embed: EmbedFn,
        query: QueryFn,
        config: MemoryConfig,
        lexical: LexicalFn | None = None,
        neighbours: NeighboursFn | None = None,
    ) -> None:
        self._embed = embed
        self._query = query
        self._lexical = lexical
        self._neighbours = neighbours
        self._config = config

    async def candidates(self, scope: Scope, query: str, k: int) -> list[MemoryHit]:
        """The ``k`` nearest memories of ``scope.user`` with their cosine similarity."""
        vector = (await self._embed([query]))[0]
        return await self._query(scope.user, vector, k)

    async def recall(self, scope: Scope, query: str, knobs: Knobs | None = None) -> MemoryBlock:
        """Recall for one request; ``knobs`` (``k``, ``max_tokens``, ``min_similarity``) override
        the configured values. Raises EmbedderError or StoreError (the caller fails open)."""
        k, max_tokens, floor = self._settings(knobs or {})
        pool = max(4 * k, self._config.candidates)
        t0 = time.perf_counter()
        vector = (await self._embed([query]))[0]
        t1 = time.perf_counter()
        dense = await self._query(scope.user, vector, pool)
        t2 = time.perf_counter()
        lexical = await self._lexical(scope.user, query, pool) if self._lexical else []
        t3 = time.perf_counter()
        kept = [h for h in dense if (h.similarity or 0.0) >= floor]
        scores, records = rrf_scores([kept, lexical])
        if self._neighbours is not None and self._config.neighbour_weight > 0:
            fused = spread_to_neighbours(
                scores, records, self._neighbours(scope.user), self._config.neighbour_weight
            )
        else:
            fused = [records[i] for i in sorted(scores, key=lambda i: -scores[i])]
        t4 = time.perf_counter()
        block = render_block(fused, self._config.template, max_tokens, max_items=k)
        t5 = time.perf_counter()
        timings = {
            "embed": (t1 - t0) * 1e3,
            "query": (t2 - t1) * 1e3,
            "lexical": (t3 - t2) * 1e3,
            "rank": (t4 - t3) * 1e3,
            "pack": (t5 - t4) * 1e3,
        }
        best = max((h.similarity for h in dense if h.similarity is not None), default=None)
        return MemoryBlock(block.text, block.ids, block.tokens, timings, best)

    def _settings(self, knobs: Knobs) -> tuple[int, int, float]:
        c = self._config
        return (
            max(1, round(knobs.get("k", c.k))),
            max(1, round(knobs.get("max_tokens", c.max_tokens))),
            float(knobs.get("min_similarity", c.min_similarity)),
        )
