"""Ranking: fused scores over all memories, decay, repulsion, near-duplicates, shared tier."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from memory.config import MemoryConfig, MetabolismConfig
from memory.metabolism.decay import effective_strength
from memory.metabolism.resonance import user_tag
from memory.recall.index import UserIndex
from memory.recall.query import QueryViews
from memory.types import MemoryHit


def _default(name: str) -> float:
    """The default of ``memory.<name>``: the one source of the weights the config sets."""
    return float(MemoryConfig.model_fields[name].default)


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
    assistant_voiced: float = 0.5
    """Factor on the score of a memory that only holds an assistant's answer to a question
    (``memory.voice``): an answer counts half, so the user's own statement ranks first when
    both match, and an answer alone is still recalled. Not tuned on LoCoMo, whose memories are
    all the speakers' own messages (factor 1, so its figures are unchanged)."""
    neighbour: float = _default("neighbour_weight")
    """Share of a strong memory's score its session neighbours gain
    (``memory.neighbour_weight``)."""
    spread_from: int = 30
    """How many of the best memories lend score to their neighbours."""
    lexical_floor: float = 0.5
    """A memory below the cosine floor is still eligible when its BM25 score is at least this
    share of the best BM25 score."""
    recency: float = _default("recency_boost")
    """Largest relative boost for a just-said memory (``memory.recency_boost``)."""
    recency_half_life_s: float = _default("recency_half_life_days") * 86400.0
    """Half-life of the recency boost (``memory.recency_half_life_days``)."""
    duplicate: float = _default("duplicate_similarity")
    """Cosine similarity at or above which a memory is a near-duplicate of a better-ranked one
    already taken, and is left out (``memory.duplicate_similarity``)."""

    @classmethod
    def from_config(cls, config: MemoryConfig) -> Weights:
        """The weights ``config`` sets (the others keep their defaults)."""
        return cls(
            lexical=cls.lexical if config.lexical else 0.0,
            neighbour=config.neighbour_weight,
            recency=config.recency_boost,
            recency_half_life_s=config.recency_half_life_days * 86400.0,
            duplicate=config.duplicate_similarity,
        )


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
    (:func:`memory.metabolism.decay.effective_strength`)."""
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
    assert index.vectors is not None
    q = np.asarray(vector, dtype=np.float32)
    cosine = index.vectors @ q
    bm25 = index.lexical_scores(views.lexical) if weights.lexical > 0 else np.zeros(len(index))
    scores = _combsum(index, q, cosine, bm25, weights)
    if views.subject is not None:
        scores = np.where(index.speaker == views.subject, scores, scores * weights.off_subject)
    scores = np.where(index.user_voiced, scores, scores * weights.assistant_voiced)
    strength = current_strength(index, metabolism)
    scores *= memory_weights(index, now, weights)
    top_bm25 = float(bm25.max()) if len(bm25) else 0.0
    eligible = cosine >= floor
    if top_bm25 > 0:
        eligible |= bm25 >= weights.lexical_floor * top_bm25
    allowed = awake(index, strength, metabolism.dormant_below if metabolism else 0.0)
    eligible &= allowed
    if weights.neighbour > 0:
        scores = spread_to_neighbours(index, scores, eligible, allowed, weights)
    return scores, eligible, cosine


def _combsum(
    index: UserIndex, q: np.ndarray, cosine: np.ndarray, bm25: np.ndarray, weights: Weights
) -> np.ndarray:
    """CombSUM of the z-scored dense views (the memory with its context, the session
    centroid) and BM25, shifted to be positive, shape ``(n,)``."""
    assert index.context is not None and index.centroids is not None
    dense = zscore((cosine + weights.context * (index.context @ q)).astype(np.float64))
    dense += weights.centroid * zscore((index.centroids @ q).astype(np.float64))
    scores = dense + weights.lexical * zscore(bm25.astype(np.float64))
    out: np.ndarray = scores - scores.min() + 1e-6
    return out


def spread_to_neighbours(
    index: UserIndex,
    scores: np.ndarray,
    eligible: np.ndarray,
    allowed: np.ndarray,
    weights: Weights,
) -> np.ndarray:
    """Scores after the ``weights.spread_from`` best ``eligible`` memories lend
    ``weights.neighbour`` of their score to their session neighbours (each keeps the larger of
    its own score and what it is lent); an ``allowed`` neighbour that gains becomes eligible
    (``eligible`` is updated in place). Shapes ``(n,)``."""
    spread = scores.copy()
    strong = [i for i in np.argsort(-scores, kind="stable") if eligible[i]]
    for i in strong[: weights.spread_from]:
        for j in (index.prev[i], index.next[i]):
            if j >= 0 and allowed[j]:
                spread[j] = max(spread[j], scores[j] + weights.neighbour * scores[i])
                eligible[j] = True
    return spread


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
        if tag not in hits[i].record.supporters:
            out.append(hits[i].with_similarity(float(cosine[i])))
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
