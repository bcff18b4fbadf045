"""Recall: query -> views -> scores over all memories -> ranking -> token budget -> block.

The pipeline (:meth:`Recaller.recall`), on one user's :class:`~memory.index.UserIndex`:

1. Query analysis (:func:`analyse_query`): when the query names one known speaker ("What did
   Caroline research?"), that speaker is the subject; the dense view is rewritten in the
   subject's own voice ("What did I research?", as their memories are worded) and the lexical
   view drops the name (said in half the conversation, it matches everything).
2. Scores for every memory (:func:`fused_scores`): cosine similarity of the memory and of its
   session context, the session centroid, and BM25, each z-normalised over the collection and
   summed with fixed weights (CombSUM of z-scores: Fox and Shaw, TREC-2 1994; Montague and
   Aslam, CIKM 2001); memories of other speakers than the subject are damped; strength and
   recency re-weight; a strong memory lends part of its score to its session neighbours.
3. Near-duplicates of a better-ranked memory are left out (:func:`distinct`).
4. Packing (:func:`render_block`): best first into the cl100k token budget, grouped by event
   date so the model can answer "when" questions. The one renderer of injected text, shared by
   the proxy and the benchmarks.

When the index is not built yet (or holds no vectors) the dense candidates come from Chroma and
are ranked by cosine similarity alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from memory.config import MemoryConfig, MetabolismConfig, SymbiosisConfig
from memory.embedders import Vectors
from memory.index import UserIndex, stamp
from memory.metabolism import effective_strength, user_tag
from memory.tokens import count_tokens
from memory.types import MemoryBlock, MemoryHit, Scope

EmbedFn = Callable[[list[str]], Awaitable[Vectors]]
"""Texts -> unit vectors of shape ``(len(texts), dim)``."""
QueryFn = Callable[[str, Vectors, int], Awaitable[list[MemoryHit]]]
"""(user, vector, k) -> the user's k nearest memories from the store, most similar first."""
IndexFn = Callable[[str], UserIndex | None]
"""user -> their in-memory index, or None while it is not built."""
SharedFn = Callable[[], tuple[list[MemoryHit], np.ndarray]]
"""() -> the shared tier's awake memories and their unit vectors, shape ``(n, dim)``."""
SHARED_MARK = "(shared knowledge) "
"""Before a shared-tier memory's line: it was said by several users, not by this one."""
Knobs = Mapping[str, float]


MIN_MEMORY_TOKENS = 4
"""The fewest tokens a rendered memory line takes (``- x`` plus the line break)."""
MAX_MISFITS = 50
"""Packing stops after this many memories in a row were too long for the space left."""
CAUTION = (
    "- Caution: an earlier exchange about a request like this one was judged harmful or "
    "unhelpful to the user. Answer with care, within your principles."
)
"""The cautionary line a highly relevant repulsor adds, worded without the repulsor's own
content (putting its text in the context would make the model attend to it: the "white bear"
effect the source project warns of)."""
_TAGS = re.compile(r"</?\s*memories\s*>", re.IGNORECASE)


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

    A ``<memories>`` or ``</memories>`` tag inside the text is defused (``<\u200bmemories>``)
    so a stored text cannot close the data block and pose as instructions.

    >>> render_body(MemoryHit(id="a", text="User: hi\\nAssistant: hello", metadata={}))
    'User: hi / Assistant: hello'
    """
    text = " / ".join(line.strip() for line in hit.text.splitlines() if line.strip())
    text = _TAGS.sub(lambda m: m.group(0).replace("<", "<\u200b", 1), text)
    return SHARED_MARK + text if hit.metadata.get("tier") == "shared" else text


def render_memories(hits: Sequence[MemoryHit], caution: str | None = None) -> str:
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
    lines: list[str] = [caution] if caution else []
    current: str | None = None
    for i in order:
        date = event_date(hits[i])
        if date != current:
            current = date
            if date:
                lines.append(f"[{date}]")
        lines.append(f"- {render_body(hits[i])}")
    return "\n".join(lines)


def render_block(
    hits: Iterable[MemoryHit],
    template: str,
    max_tokens: int,
    max_items: int | None = None,
    caution: str | None = None,
) -> MemoryBlock:
    """Render ``hits`` (best first) into ``template`` within ``max_tokens`` cl100k tokens.

    Memories are taken in rank order while they fit (at most ``max_items``); one that does not
    fit is skipped and smaller ones after it may still go in; ``hits`` is consumed only until
    the budget is nearly full (fewer than :data:`MIN_MEMORY_TOKENS` left) or
    :data:`MAX_MISFITS` memories in a row did not fit, so it may be a lazy ranking of every
    memory. They are shown grouped by event
    date, oldest first, so the model can answer "when" questions; ``ids`` keep the rank order.
    The returned ``text`` never exceeds ``max_tokens`` (the whole block is counted, template
    included) and is ``""`` when no memory fits. A ``caution`` line (:data:`CAUTION`) goes
    first when it fits, and alone when no memory does.

    >>> hits = [MemoryHit(id=str(i), text="x " * 40, metadata={}) for i in range(5)]
    >>> block = render_block(hits, "{memories}", 100)
    >>> block.tokens <= 100, len(block.ids)
    (True, 2)
    """
    used = count_tokens(template.replace("{memories}", ""))
    if caution is not None:
        if used + count_tokens(caution) + 1 > max_tokens:
            caution = None
        else:
            used += count_tokens(caution) + 1
    chosen: list[MemoryHit] = []
    dates: set[str] = set()
    misfits = 0
    for hit in hits:
        if max_items is not None and len(chosen) >= max_items:
            break
        if max_tokens - used < MIN_MEMORY_TOKENS or misfits >= MAX_MISFITS:
            break
        date = event_date(hit)
        cost = count_tokens(f"- {render_body(hit)}") + 1
        if date and date not in dates:
            cost += count_tokens(f"[{date}]") + 1
        if used + cost <= max_tokens:
            chosen.append(hit)
            dates.add(date)
            used += cost
            misfits = 0
        else:
            misfits += 1
    while chosen or caution:
        text = template.replace("{memories}", render_memories(chosen, caution))
        tokens = count_tokens(text)
        if tokens <= max_tokens:  # merges across joins can only shrink the count; check anyway
            ids = tuple(h.id for h in chosen)
            return MemoryBlock(text=text, ids=ids, tokens=tokens, caution=caution is not None)
        if not chosen:
            break
        chosen.pop()
    return MemoryBlock.empty()


@dataclass(frozen=True)
class Weights:
    """Weights of the score fusion in :func:`fused_scores` (z-score units).

    Chosen on LoCoMo's three development conversations with all-MiniLM-L6-v2 and kept round;
    each was checked not to be a sharp optimum (ablations in ``scripts/bench_locomo.py --help``
    and the README): removing the subject damping costs about 7 points of recall, the query
    rewrite 4, the neighbour spreading 2, the context vectors 1.
    """

    context: float = 1.0
    """Cosine of the memory's context vector (itself and its session neighbours), added to the
    memory's own cosine before normalisation."""
    centroid: float = 0.2
    """z-scored cosine of the memory's session centroid."""
    lexical: float = 0.6
    """z-scored BM25."""
    off_subject: float = 0.2
    """Factor on the score of memories spoken by someone other than the query's subject."""
    neighbour: float = 0.5
    """Share of a strong memory's score its session neighbours gain
    (``memory.neighbour_weight``)."""
    spread_from: int = 30
    """How many of the best memories lend score to their neighbours."""
    lexical_floor: float = 0.5
    """A memory below the cosine floor is still eligible when its BM25 score is at least this
    share of the best BM25 score."""
    recency: float = 0.1
    """Largest relative boost for a just-said memory (``memory.recency_boost``)."""
    recency_half_life_s: float = 30 * 86400.0
    """Half-life of the recency boost (``memory.recency_half_life_days``)."""
    duplicate: float = 0.95
    """Cosine similarity at or above which a memory is a near-duplicate of a better-ranked one
    already taken, and is left out (``memory.duplicate_similarity``)."""


@dataclass(frozen=True)
class QueryViews:
    """What the query is turned into: ``dense`` is embedded, ``lexical`` goes to BM25,
    ``subject`` is the speaker the query is about (None when it names no or several known
    speakers)."""

    dense: str
    lexical: str
    subject: str | None = None


_FIRST_PERSON = (
    (r"\b(her|his)\b", "my"),
    (r"\b(she|he)\b", "I"),
    (r"\bhim\b", "me"),
    (r"\bdoes I\b", "do I"),
    (r"\bhas I\b", "have I"),
    (r"\bis I\b", "am I"),
)


def analyse_query(query: str, names: Mapping[str, str]) -> QueryViews:
    """Split ``query`` into its dense and lexical views (see the module docstring).

    ``names`` maps lower-cased first names of the user's known speakers to the speaker
    (:func:`memory.index.first_names`).

    >>> v = analyse_query("What did Caroline's mum say to her?", {"caroline": "Caroline"})
    >>> v.subject, v.dense, v.lexical
    ('Caroline', 'What did my mum say to my?', 'What did  mum say to her?')
    >>> analyse_query("hello", {}).dense
    'hello'
    """
    named = [
        (first, speaker)
        for first, speaker in names.items()
        if re.search(rf"\b{re.escape(first)}\b", query, flags=re.IGNORECASE)
    ]
    if not named:
        return QueryViews(query, query)
    lexical = query
    for first, _ in named:
        lexical = re.sub(rf"\b{re.escape(first)}('s)?\b", "", lexical, flags=re.IGNORECASE)
    if len(named) > 1:
        return QueryViews(query, lexical)
    first, speaker = named[0]
    dense = re.sub(rf"\b{re.escape(first)}'s\b", "my", query, flags=re.IGNORECASE)
    dense = re.sub(rf"\b{re.escape(first)}\b", "I", dense, flags=re.IGNORECASE)
    for pattern, replacement in _FIRST_PERSON:
        dense = re.sub(pattern, replacement, dense, flags=re.IGNORECASE)
    return QueryViews(dense, lexical, speaker)


def zscore(values: np.ndarray) -> np.ndarray:
    """``(x - mean) / std``; zeros when all values are equal.

    >>> zscore(np.array([1.0, 3.0])).tolist(), zscore(np.array([2.0, 2.0])).tolist()
    ([-1.0, 1.0], [0.0, 0.0])
    """
    std = float(values.std())
    if std == 0.0 or not np.isfinite(std):
        return np.zeros(values.shape, dtype=np.float64)
    out: np.ndarray = (values - values.mean()) / std
    return out


def current_strength(index: UserIndex, metabolism: MetabolismConfig | None) -> np.ndarray:
    """Strength of every memory now, shape ``(n,)``: the stored strength, decayed over the
    user's active days (with the symbiosis-scaled half-life) when ``metabolism`` is given
    (:func:`memory.metabolism.effective_strength`)."""
    if metabolism is None:
        return index.strength
    return effective_strength(
        index.strength,
        index.last_used,
        index.screened,
        index.days,
        metabolism,
        index.symbiosis,
    )


def memory_weights(index: UserIndex, now: float, weights: Weights) -> np.ndarray:
    """Multiplicative weight per memory, shape ``(n,)``: ``(0.8 + 0.2 * strength)`` times
    ``(1 + recency * 2 ** (-age / half_life))`` times ``(0.9 + 0.2 * symbiosis)``.

    ``strength`` is the stored one (reinforcement raises it, consolidation sets it), not the
    decayed one: decay decides *whether* a memory is recalled (:func:`awake`), relevance and
    recency decide its rank. Weighting rank by decayed strength as well would count time
    twice (recency already does) and made LoCoMo recall fall (0.792 -> 0.788 on dev3). Age
    runs from the memory's event time to ``now`` (Unix seconds); a months-old memory keeps at
    least ``1 / (1 + recency)`` of a fresh one's score: recency orders, it does not forget.
    The symbiosis factor is the source project's "mycelial" recall: among equally relevant
    memories, the healthier one ranks first (0.9 for a score of 0, 1.1 for 1)."""
    age = np.clip(now - index.event_at, 0.0, None)
    recency = 1.0 + weights.recency * np.exp2(-age / weights.recency_half_life_s)
    out: np.ndarray = (0.8 + 0.2 * index.strength) * recency * (0.9 + 0.2 * index.symbiosis)
    return out


def awake(index: UserIndex, strength: np.ndarray, dormant_below: float) -> np.ndarray:
    """Memories that may be injected, shape ``(n,)`` bool: not repulsors, not dormant (marked
    by the sleep cycle, or with a current ``strength`` below ``dormant_below``)."""
    out: np.ndarray = ~index.repulsor & ~index.dormant & (strength >= dormant_below)
    return out


def repel(
    index: UserIndex, vector: np.ndarray, scores: np.ndarray, floor: float, share: float
) -> tuple[np.ndarray, float]:
    """Negative relevance feedback from repulsors (as in Rocchio's algorithm, which moves the
    query away from non-relevant documents; here the candidates near a relevant repulsor lose
    score instead, which keeps the query embedding untouched).

    Repulsors with cosine >= ``floor`` to the query are the relevant ones; each candidate loses
    ``share * clip((c - 0.5) / 0.5, 0, 1)`` of its score, ``c`` its largest cosine to one of
    them. Returns the new scores and the largest query-repulsor cosine (-1 without repulsors).
    """
    if index.vectors is None or not index.repulsor.any():
        return scores, -1.0
    rows = np.flatnonzero(index.repulsor)
    to_query = index.vectors[rows] @ np.asarray(vector, dtype=np.float32)
    relevant = rows[to_query >= floor]
    top = float(to_query.max())
    if not len(relevant) or share <= 0:
        return scores, top
    closeness = (index.vectors @ index.vectors[relevant].T).max(axis=1)
    penalty = share * np.clip((closeness - 0.5) / 0.5, 0.0, 1.0)
    out: np.ndarray = scores * (1.0 - penalty)
    return out, top


def fused_scores(
    index: UserIndex,
    vector: np.ndarray,
    views: QueryViews,
    floor: float,
    now: float,
    weights: Weights,
    metabolism: MetabolismConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score every memory of ``index`` (which must hold vectors) for one query.

    Args:
        vector: unit query vector of ``views.dense``, shape ``(dim,)``.
        floor: cosine similarity below which a memory is not eligible on its own.
        now: Unix seconds, for recency.
        metabolism: decay settings (None: stored strength as it is).

    Returns:
        ``(scores, eligible, cosine)``, each of shape ``(n,)``: fused scores (higher is
        better, all positive), which memories may be injected (above the floor, a strong
        lexical match, or the neighbour of an eligible one that lent it score), and the raw
        cosine similarity of each memory.
    """
    assert index.vectors is not None and index.context is not None
    assert index.centroids is not None
    q = np.asarray(vector, dtype=np.float32)
    cosine = index.vectors @ q
    dense = zscore((cosine + weights.context * (index.context @ q)).astype(np.float64))
    dense += weights.centroid * zscore((index.centroids @ q).astype(np.float64))
    bm25 = index.lexical_scores(views.lexical) if weights.lexical > 0 else np.zeros(len(index))
    scores = dense + weights.lexical * zscore(bm25.astype(np.float64))
    scores = scores - scores.min() + 1e-6
    if views.subject is not None:
        scores = np.where(index.speaker == views.subject, scores, scores * weights.off_subject)
    strength = current_strength(index, metabolism)
    scores *= memory_weights(index, now, weights)
    top_bm25 = float(bm25.max()) if len(bm25) else 0.0
    eligible = cosine >= floor
    if top_bm25 > 0:
        eligible |= bm25 >= weights.lexical_floor * top_bm25
    allowed = awake(index, strength, metabolism.dormant_below if metabolism else 0.0)
    eligible &= allowed
    if weights.neighbour > 0:
        spread = scores.copy()
        strong = [i for i in np.argsort(-scores, kind="stable") if eligible[i]]
        for i in strong[: weights.spread_from]:
            for j in (index.prev[i], index.next[i]):
                if j >= 0 and allowed[j]:
                    spread[j] = max(spread[j], scores[j] + weights.neighbour * scores[i])
                    eligible[j] = True
        scores = spread
    return scores, eligible, cosine


def distinct(order: Iterable[int], index: UserIndex, threshold: float) -> Iterator[int]:
    """``order`` (indices into ``index``, best first) without near-duplicates: an index whose
    vector has cosine >= ``threshold`` with one already yielded, or the same text, is skipped.
    Lazy, so only the memories the token budget reaches are compared (O(m^2) for m taken).

    >>> from memory.types import MemoryHit
    >>> hits = [MemoryHit(str(i), t, {}) for i, t in enumerate(["a", "a!", "b"])]
    >>> v = np.array([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    >>> list(distinct([0, 1, 2], UserIndex(hits, v), 0.95))
    [0, 2]
    """
    assert index.vectors is not None
    taken: list[int] = []
    texts: set[str] = set()
    for i in order:
        text = index.hits[i].text
        if text in texts:
            continue
        if taken and float((index.vectors[taken] @ index.vectors[i]).max()) >= threshold:
            continue
        taken.append(i)
        texts.add(text)
        yield i


def shared_hits(
    tier: tuple[list[MemoryHit], np.ndarray], vector: np.ndarray, floor: float, k: int, user: str
) -> list[MemoryHit]:
    """The ``k`` shared memories nearest to ``vector`` (unit, shape ``(dim,)``) with cosine >=
    ``floor``, most similar first, leaving out those ``user`` confirmed (they have their own
    memory of it)."""
    hits, vectors = tier
    if not hits or k <= 0 or vectors.shape[1] != len(vector):
        return []
    cosine = vectors @ np.asarray(vector, dtype=np.float32)
    tag = user_tag(user)
    out: list[MemoryHit] = []
    for i in np.argsort(-cosine, kind="stable").tolist():
        if cosine[i] < floor or len(out) >= k:
            break
        if tag not in str(hits[i].metadata.get("supporters", "")):
            out.append(MemoryHit(hits[i].id, hits[i].text, hits[i].metadata, float(cosine[i])))
    return out


def with_shared(ranked: Iterable[MemoryHit], shared: list[MemoryHit]) -> Iterator[MemoryHit]:
    """``ranked`` (the user's own memories, best first) with each of ``shared`` (most similar
    first) placed before the first own memory that is less similar to the query.

    >>> own = [MemoryHit("a", "", {}, 0.9), MemoryHit("b", "", {}, 0.5)]
    >>> [h.id for h in with_shared(own, [MemoryHit("s", "", {}, 0.7)])]
    ['a', 's', 'b']
    """
    pending = list(shared)
    for hit in ranked:
        while pending and (pending[0].similarity or 0.0) > (hit.similarity or 0.0):
            yield pending.pop(0)
        yield hit
    yield from pending


def already_in_context(hit: MemoryHit, turns: frozenset[str]) -> bool:
    """Whether ``hit`` is the memory of one of ``turns`` (user messages the request already
    carries): its text is the turn, or ``User: <turn>`` followed by the reply.

    >>> already_in_context(MemoryHit("a", "User: hi there\\nAssistant: hello", {}),
    ...                    frozenset({"hi there"}))
    True
    """
    text = hit.text
    if text.startswith("User: "):
        text = text[6:].split("\nAssistant: ", 1)[0]
    return text.strip() in turns


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
