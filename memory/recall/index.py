"""One user's memories in process memory: records, unit vectors, BM25 and session order.

Chroma stays the durable store; this index is a cache of it that recall scores exhaustively
(a ``(n, dim)`` float32 matrix product: about 1 ms for 20k x 384 here), so every memory gets
a dense, a lexical and a context score, and the fusion can normalise over the whole
collection. It is built from the store at the first recall, extended in place after writes
(:meth:`UserIndex.merged`) and rebuilt after deletions. Memory cost: ``4 * dim`` bytes per
memory for each of the two vector matrices, plus the text.

BM25 finds what dense embeddings of a small model miss: names, numbers and rare words said
verbatim (bm25s, Lucene's BM25 variant, English stop words and Snowball stemming).
"""

from __future__ import annotations

import copy
import itertools
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import bm25s
import numpy as np
import Stemmer

from memory.embedders import Vectors
from memory.metabolism.decay import active_days
from memory.recall.footprint import deep_bytes, sampled_bytes
from memory.record import MemoryRecord
from memory.store.chroma import to_chroma_metadata
from memory.types import MemoryHit

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets DEBUG on itself at import

CONTEXT_WEIGHT = 0.5
"""Weight of each session neighbour's vector in a memory's context vector (see
:func:`context_vectors`); chosen on LoCoMo's development conversations (0.3-1.0 within 0.3
points of recall)."""


_INT_BYTES = sys.getsizeof(10**6)
"""Size of one int object above the small-int cache (a position in :attr:`UserIndex.position`)."""


def _tokenize(texts: list[str], stemmer: Any) -> Any:
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )


def _structure(record: MemoryRecord) -> tuple[object, ...]:
    """What the session order, the context vectors and the speakers are built from."""
    return record.session, record.event_at, record.created_at, record.speaker


def session_order(hits: Sequence[MemoryHit]) -> tuple[np.ndarray, np.ndarray]:
    """Previous and next memory in the same session for every memory, by event time then
    storage time: two int arrays of shape ``(n,)`` holding an index, or -1 (none; memories
    without a session have no neighbours).

    >>> hits = [MemoryHit(str(i), "", {"session": "s", "event_at": 0.0, "created_at": float(i)})
    ...         for i in (2, 0, 1)]
    >>> prev, nxt = session_order(hits)
    >>> prev.tolist(), nxt.tolist()
    ([2, -1, 1], [-1, 2, 0])
    """
    prev = np.full(len(hits), -1, dtype=np.int64)
    nxt = np.full(len(hits), -1, dtype=np.int64)
    sessions: dict[str, list[int]] = {}
    for i, hit in enumerate(hits):
        if hit.record.session:
            sessions.setdefault(hit.record.session, []).append(i)
    for members in sessions.values():
        members.sort(
            key=lambda i: (hits[i].record.event_at or 0.0, hits[i].record.created_at or 0.0)
        )
        for a, b in itertools.pairwise(members):
            nxt[a], prev[b] = b, a
    return prev, nxt


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (zero rows stay zero), as float32."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def context_vectors(
    vectors: np.ndarray, prev: np.ndarray, nxt: np.ndarray, weight: float = CONTEXT_WEIGHT
) -> np.ndarray:
    """Unit vectors of each memory with its session neighbours mixed in:
    ``unit(v_i + weight * (v_prev + v_next))``, shape ``(n, dim)``. A reply such as "Yes, twice
    last month!" then carries what it answers, without a second embedding call.

    >>> v = np.eye(2, dtype=np.float32)
    >>> mixed = context_vectors(v, np.array([-1, 0]), np.array([1, -1]), 1.0)
    >>> mixed.astype(float).round(3).tolist()
    [[0.707, 0.707], [0.707, 0.707]]
    """
    zero = np.zeros((1, vectors.shape[1]), dtype=np.float32)
    padded = np.vstack([vectors, zero])  # index -1 picks the zero row
    return unit_rows(vectors + weight * (padded[prev] + padded[nxt]))


def session_centroids(hits: Sequence[MemoryHit], vectors: np.ndarray) -> np.ndarray:
    """For each memory, the unit mean vector of its session (itself when it has no session),
    shape ``(n, dim)``: what the whole conversation it belongs to was about."""
    out = vectors.copy()
    groups: dict[str, list[int]] = {}
    for i, hit in enumerate(hits):
        if hit.record.session:
            groups.setdefault(hit.record.session, []).append(i)
    for members in groups.values():
        out[members] = vectors[members].mean(axis=0)
    return unit_rows(out)


def first_names(speakers: Iterable[str]) -> dict[str, str]:
    """Lower-cased first word of each speaker name -> the name, for names of two or more
    letters that only one speaker has.

    >>> first_names(["Caroline", "Melanie Smith", "Mel Jones", "Mel B"])
    {'caroline': 'Caroline', 'melanie': 'Melanie Smith'}
    """
    seen: dict[str, list[str]] = {}
    for name in speakers:
        words = re.findall(r"[^\W\d_]+", name)
        if words and len(words[0]) >= 2:
            seen.setdefault(words[0].lower(), []).append(name)
    return {k: v[0] for k, v in seen.items() if len(set(v)) == 1}


def metadata_columns(records: Sequence[MemoryRecord]) -> dict[str, np.ndarray]:
    """The per-memory arrays recall reads from records' metadata, each of shape ``(n,)``:
    ``strength`` (clipped to [0, 1]), ``event_at`` (Unix seconds, 0 when unknown),
    ``repulsor``, ``dormant``, ``symbiosis``, ``last_used`` and ``screened``."""
    return {
        "strength": np.clip([r.strength for r in records], 0.0, 1.0).astype(np.float64),
        "event_at": np.array([r.event_time or 0.0 for r in records], dtype=np.float64),
        "repulsor": np.array([r.repulsor for r in records], dtype=bool),
        "dormant": np.array([r.dormant for r in records], dtype=bool),
        "symbiosis": np.array([r.symbiosis for r in records], dtype=np.float64),
        "last_used": np.array([r.last_used for r in records], dtype=np.float64),
        "screened": np.array([r.screened for r in records], dtype=bool),
    }


class UserIndex:
    """One user's memories: ``hits`` (records), ``vectors`` and ``context`` (unit, shape
    ``(n, dim)``), ``centroids`` (session means), BM25, session neighbours and speakers.

    ``vectors`` may be None (a store that returned no embeddings): then only the lexical
    scores and the records are served and recall takes its dense candidates from the store.
    """

    def __init__(
        self,
        hits: list[MemoryHit],
        vectors: Vectors | None,
        tokens: list[list[str]] | None = None,
    ) -> None:
        """``tokens``: each hit's BM25 tokens when already known (:meth:`merged` passes the
        kept ones, so only new texts are tokenized; about a third of a rebuild)."""
        self.hits = hits
        self.position = {hit.id: i for i, hit in enumerate(hits)}
        self.prev, self.next = session_order(hits)
        self.vectors: np.ndarray | None = None
        self.context: np.ndarray | None = None
        self.centroids: np.ndarray | None = None
        if vectors is not None and len(hits) and np.asarray(vectors).shape[0] == len(hits):
            self.vectors = unit_rows(np.asarray(vectors, dtype=np.float32))
            self.context = context_vectors(self.vectors, self.prev, self.next)
            self.centroids = session_centroids(hits, self.vectors)
        self.speaker = np.array([h.record.speaker or "" for h in hits], dtype=object)
        self.user_voiced = np.array([h.user_voiced for h in hits], dtype=bool)
        """Memories holding the user's own words (``memory.voice``), shape ``(n,)``."""
        self._read_metadata()
        self.names = first_names({s for s in self.speaker if s})
        self._stemmer = Stemmer.Stemmer("english")
        self._bm25: Any = None
        if tokens is None or len(tokens) != len(hits):
            tokens = _tokenize([h.text for h in hits], self._stemmer) if hits else []
        self._tokens: list[list[str]] = tokens
        if any(tokens):  # bm25s divides by the mean length: not for stop words only
            self._bm25 = bm25s.BM25()
            self._bm25.index(tokens, show_progress=False)

    def _read_metadata(self) -> None:
        """The per-memory arrays that metadata updates change (everything but the text, the
        vectors, the session order and the speakers)."""
        columns = metadata_columns([h.record for h in self.hits])
        self.strength = columns["strength"]
        """``strength`` of each memory in [0, 1] (1 when not set), shape ``(n,)``."""
        self.event_at = columns["event_at"]
        """Event time of each memory (Unix seconds; 0 when unknown), shape ``(n,)``."""
        self.repulsor = columns["repulsor"]
        """Memories scored at or below the symbiosis threshold, shape ``(n,)``."""
        self.dormant = columns["dormant"]
        """Memories the sleep cycle found dormant (decayed or consolidated), shape ``(n,)``."""
        self.symbiosis = columns["symbiosis"]
        """Symbiosis score of each memory (0.5 when unscored), shape ``(n,)``."""
        self.last_used = columns["last_used"]
        """When each memory was last said, recalled or reinforced (Unix seconds)."""
        self.screened = columns["screened"]
        """Memories in the screened (slow decay) phase, shape ``(n,)``."""
        self.days = active_days(self.event_at)
        """The user's active days (sorted distinct UTC day numbers of event times)."""

    def __len__(self) -> int:
        return len(self.hits)

    def nbytes(self) -> int:
        """Bytes this index holds (estimated: arrays and BM25 counted exactly, the records and
        their tokens from a sample; :mod:`memory.recall.footprint`), what the index cache's
        bound (``memory.index_cache_mb``) counts."""
        seen: set[int] = set()
        arrays = [v for v in vars(self).values() if isinstance(v, np.ndarray)]
        total = sum(deep_bytes(a, seen) for a in arrays)
        total += deep_bytes([self._bm25, self.names], seen)
        total += sys.getsizeof(self.position) + _INT_BYTES * len(self.position)  # ids: in hits
        return total + sampled_bytes(self.hits, seen=seen) + sampled_bytes(self._tokens, seen=seen)

    @property
    def dense(self) -> bool:
        """Whether the vectors are held (exhaustive dense scoring is possible)."""
        return self.vectors is not None

    def merged(self, hits: Sequence[MemoryHit], vectors: Vectors | None) -> UserIndex:
        """A new index with ``hits`` (and their ``vectors``, shape ``(len(hits), dim)``) added;
        a hit whose id is already indexed replaces the old record."""
        replaced = {h.id for h in hits}
        keep = [i for i, h in enumerate(self.hits) if h.id not in replaced]
        all_hits = [self.hits[i] for i in keep] + list(hits)
        all_vectors: np.ndarray | None = None
        if self.vectors is not None and vectors is not None:
            all_vectors = np.vstack([self.vectors[keep], np.asarray(vectors, dtype=np.float32)])
        elif not self.hits and vectors is not None:
            all_vectors = np.asarray(vectors, dtype=np.float32)
        fresh = _tokenize([h.text for h in hits], self._stemmer) if hits else []
        tokens = [self._tokens[i] for i in keep] + list(fresh)
        return UserIndex(all_hits, all_vectors, tokens)

    def updated(self, updates: Mapping[str, Mapping[str, Any]]) -> UserIndex | None:
        """A new index with ``updates`` (memory id -> metadata keys to set, as
        :meth:`memory.store.chroma.Store.update_metadata` takes them) merged into the records,
        sharing this index's vectors, BM25 and session order: O(n) instead of a reload from the
        store and a rebuild. Values are normalised as the store normalises them (None is not set,
        lists become JSON). Ids not indexed are ignored.

        Returns None when an update changes what the shared parts were built from (``session``,
        ``event_at``, ``created_at`` or ``speaker``): the caller then rebuilds.
        """
        hits = list(self.hits)
        for memory_id, update in updates.items():
            i = self.position.get(memory_id)
            if i is None:
                continue
            merged = {**hits[i].metadata, **to_chroma_metadata(dict(update))}
            hit = MemoryHit(hits[i].id, hits[i].text, merged, hits[i].similarity)
            if _structure(hit.record) != _structure(hits[i].record):
                return None
            hits[i] = hit
        out = copy.copy(self)
        out.hits = hits
        out._read_metadata()
        return out

    def without(self, ids: frozenset[str]) -> UserIndex:
        """A new index without the memories ``ids`` (ids not indexed are ignored); the kept
        memories' vectors and BM25 tokens are reused."""
        keep = [i for i, h in enumerate(self.hits) if h.id not in ids]
        if len(keep) == len(self.hits):
            return self
        vectors = self.vectors[keep] if self.vectors is not None else None
        return UserIndex([self.hits[i] for i in keep], vectors, [self._tokens[i] for i in keep])

    def masked(self, ids: frozenset[str]) -> UserIndex:
        """This index with the memories ``ids`` marked dormant (never recalled), sharing every
        other part: O(n), what a deletion does at once while :meth:`without` runs in the
        background."""
        rows = [self.position[i] for i in ids if i in self.position]
        if not rows:
            return self
        out = copy.copy(self)
        out.dormant = self.dormant.copy()
        out.dormant[rows] = True
        return out

    def for_query(self, vector: np.ndarray, lexical: str | None) -> UserIndex:
        """What the ranking scores for one query (unit ``vector``, shape ``(dim,)``; the
        lexical view's text, None when lexical scoring is off): this whole index. A
        :class:`memory.recall.large.LargeIndex` gives its candidates instead."""
        return self

    def live(self) -> Iterator[MemoryHit]:
        """The memories held."""
        return iter(self.hits)

    def reread(self, ids: Iterable[str]) -> None:
        """Records of memories ``ids`` were updated in place (access statistics): nothing to do
        here, as every change re-reads all of this index's metadata arrays (a
        :class:`memory.recall.large.LargeIndex` reads those rows again at once)."""

    def nearest(self, unit: np.ndarray) -> tuple[MemoryHit, float, np.ndarray]:
        """The memory (of a non-empty dense index) nearest to the unit vector ``unit``:
        ``(record, cosine, its unit vector)``."""
        assert self.vectors is not None
        sims = self.vectors @ unit
        j = int(np.argmax(sims))
        return self.hits[j], float(sims[j]), self.vectors[j]

    def record(self, memory_id: str) -> MemoryHit | None:
        """The indexed record of ``memory_id``, or None."""
        i = self.position.get(memory_id)
        return None if i is None else self.hits[i]

    def neighbours(self, memory_id: str) -> list[MemoryHit]:
        """The memories just before and after ``memory_id`` in its session (by event time)."""
        i = self.position.get(memory_id)
        if i is None:
            return []
        return [self.hits[j] for j in (self.prev[i], self.next[i]) if j >= 0]

    def lexical_scores(self, query: str) -> np.ndarray:
        """BM25 score of every memory for ``query``, shape ``(n,)`` (0 = no term in common)."""
        if self._bm25 is None:
            return np.zeros(len(self.hits), dtype=np.float32)
        tokens = _tokenize([query], self._stemmer)
        if not tokens or not tokens[0]:
            return np.zeros(len(self.hits), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens[0]), dtype=np.float32)

    def search(self, query: str, k: int) -> list[MemoryHit]:
        """Up to ``k`` memories with a positive BM25 score for ``query``, best first."""
        scores = self.lexical_scores(query)
        order = np.argsort(-scores, kind="stable")[: max(0, k)]
        return [self.hits[int(i)] for i in order if scores[i] > 0]


IndexChange = tuple[list[MemoryHit], Vectors] | Mapping[str, Mapping[str, Any]] | frozenset[str]
"""A change to a user's memories since the index was built: records added (or replaced) with
their vectors, shape ``(len(records), dim)``; metadata updates (memory id -> keys set); or the
ids of deleted memories."""
