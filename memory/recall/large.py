"""A user's memories past the size where exhaustive scoring stops being cheap.

:class:`~memory.recall.index.UserIndex` scores every memory per request and rebuilds itself
(BM25 included) on every write; both grow with the user. :class:`LargeIndex` is what a user's
index becomes beyond :data:`memory.recall.updates.EXHAUSTIVE_MAX` memories:

- **Candidates, then the same ranking.** An approximate nearest-neighbour search over the unit
  vectors (faiss ``IndexIVFScalarQuantizer``: an inverted file of k-means lists, 8-bit codes;
  Jégou et al., "Product quantization for nearest neighbor search", TPAMI 2011) and a BM25
  top-k from an incremental inverted index (tantivy, Lucene's BM25) give a few hundred
  candidates; their session neighbours join them (neighbour spreading and context vectors need
  them). :meth:`LargeIndex.for_query` returns those as a small :class:`CandidateView`, which
  the unchanged ranking of :mod:`memory.recall.ranking` scores (its z-scores then normalise
  over the candidates, not the whole collection).
- **Writes in time proportional to the batch.** Per-memory columns are growable arrays
  (capacity doubles), the session order is kept per session, session centroids as running
  sums, and both search structures take additions and deletions incrementally. So the index
  is changed in place (under a lock that :meth:`for_query` also takes) instead of being
  rebuilt: :meth:`merged`, :meth:`updated`, :meth:`without` and :meth:`masked` return
  ``self``.

Deleted memories stay as tombstones (their rows are skipped) until the index is next built from
the store. The ANN's lists are trained once, from the memories the index is built with; they
stay valid as the user grows (lists only get longer, so a search scans more rows).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import faiss
import numpy as np
import Stemmer
import tantivy
from bm25s.stopwords import STOPWORDS_EN

from memory.embedders import Vectors
from memory.metabolism.decay import DAY_S
from memory.recall.footprint import sampled_bytes
from memory.recall.index import (
    _INT_BYTES,
    CONTEXT_WEIGHT,
    UserIndex,
    _structure,
    first_names,
    metadata_columns,
    unit_rows,
)
from memory.store.chroma import to_chroma_metadata
from memory.types import MemoryHit

DENSE_K = 128
"""Dense candidates per query (before the session neighbours join them)."""
LEXICAL_K = 64
"""BM25 candidates per query; a candidate outside them gets a BM25 score of 0."""
LENDERS = 48
"""Best dense and lexical candidates whose session neighbours join the candidates: the
ranking lends score from its best 30 (:attr:`memory.recall.ranking.Weights.spread_from`)."""
NPROBE = 16
"""ANN lists scanned per query. With about sqrt(n) lists, 16 of them hold ~16 sqrt(n) rows
(16k at 1M); ``scripts/bench_index.py`` prints the planted-target recall it gives."""
COMMON_SHARE = 0.5
"""A query term found in more than this share of a user's memories is left out of the
lexical search (see :meth:`Lexical._selective`)."""
COMMON_MIN = 10_000
"""...unless it is in at most this many: a posting list that short is cheap to scan whatever
the share (and in a small index most terms would otherwise count as common)."""
RETRAIN_GROWTH = 4
"""The ANN is trained again once the index holds this many times the rows it was trained on
(its lists would otherwise grow with the user, and each search scan more rows): an O(n) step
every time the user quadruples, so O(1) per memory amortised."""
WRITER_HEAP = 15_000_000
"""Bytes of tantivy's indexing arena per large user: the least tantivy 0.27 takes for one
thread (documents are committed with every merge, so more would only speed up a first build)."""
TANTIVY_BYTES_PER_TOKEN = 6
"""Resident bytes per indexed token of tantivy's in-memory index, measured with
``scripts/bench_index.py`` (RSS growth over tokens indexed); what :meth:`nbytes` counts for it."""

_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("strength", np.float64),
    ("event_at", np.float64),
    ("repulsor", bool),
    ("dormant", bool),
    ("symbiosis", np.float64),
    ("last_used", np.float64),
    ("screened", bool),
)
"""The per-memory columns :func:`memory.recall.index.metadata_columns` reads."""


_WORD = re.compile(r"(?u)\b\w\w+\b")
_STOP_WORDS = frozenset(STOPWORDS_EN)


def words(text: str, stemmer: Any) -> list[str]:
    """BM25 tokens of ``text`` as :func:`memory.recall.index._tokenize` makes them (bm25s's
    default token pattern, lower case, its English stop words out, Snowball stems), for one
    text at a time: bm25s's batch tokenizer costs about 0.5 ms per call, most of a query's
    lexical search here.

    >>> words("My sister lives in Lisbon!", Stemmer.Stemmer("english"))
    ['my', 'sister', 'live', 'lisbon']
    """
    return list(stemmer.stemWords([w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS]))


class Column:
    """A growable array of rows: ``extend`` appends in amortised O(rows) (the capacity
    doubles), ``view`` is the filled part (shape ``(n,)`` or ``(n, width)``), written in place
    by the owner."""

    def __init__(self, dtype: Any, width: int | None = None, capacity: int = 1024) -> None:
        shape = (capacity,) if width is None else (capacity, width)
        self._data = np.zeros(shape, dtype=dtype)
        self.n = 0

    def extend(self, rows: Any) -> None:
        """Append ``rows`` (shape ``(m,)`` or ``(m, width)``)."""
        rows = np.asarray(rows, dtype=self._data.dtype)
        need = self.n + len(rows)
        if need > len(self._data):
            grown = np.zeros(
                (max(need, 2 * len(self._data)), *self._data.shape[1:]), self._data.dtype
            )
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : need] = rows
        self.n = need

    @property
    def view(self) -> np.ndarray:
        """The filled rows (a view: writes go to the column)."""
        return self._data[: self.n]

    @property
    def nbytes(self) -> int:
        """Bytes allocated (the capacity, not only the filled rows)."""
        return int(self._data.nbytes)


class Ann:
    """Approximate inner-product search over unit vectors (faiss IVF, 8-bit scalar codes),
    trained on ``sample`` (shape ``(m, dim)``, unit rows): about ``sqrt(m)`` lists, trained on at
    most 40 vectors per list (faiss's own warning threshold for k-means)."""

    def __init__(self, sample: np.ndarray) -> None:
        dim = sample.shape[1]
        self.lists = int(np.clip(round(np.sqrt(len(sample))), 1, 4096))
        self._quantizer = faiss.IndexFlatIP(dim)  # held: the IVF index only points at it
        self._index = faiss.IndexIVFScalarQuantizer(
            self._quantizer,
            dim,
            self.lists,
            faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )
        self._index.cp.min_points_per_centroid = 1  # small users: no warning on stderr
        take = min(len(sample), 40 * self.lists)
        rows = np.random.default_rng(0).choice(len(sample), take, replace=False)
        self._index.train(np.ascontiguousarray(sample[np.sort(rows)]))
        self._index.nprobe = min(NPROBE, self.lists)
        self._index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        self.trained_on = len(sample)
        """How many vectors the lists were trained for."""

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (unit, shape ``(m, dim)``) as ``rows`` (shape ``(m,)``)."""
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, rows: Sequence[int]) -> None:
        """Drop ``rows`` (deleted memories never take a search's places)."""
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))

    def search(self, vector: np.ndarray, k: int) -> np.ndarray:
        """Rows of (about) the ``k`` vectors with the largest inner product, shape ``(<=k,)``."""
        _, rows = self._index.search(np.asarray(vector, dtype=np.float32)[None, :], k)
        found: np.ndarray = rows[0][rows[0] >= 0]
        return found

    @property
    def nbytes(self) -> int:
        """Bytes of the codes, their ids and the list centroids."""
        n, dim = self._index.ntotal, self._index.d
        return int(n * (self._index.code_size + 8) + self.lists * dim * 4)


class Lexical:
    """An incremental BM25 index of token lists (tantivy, in memory): rows are added and
    deleted by number; a search gives the best rows and their BM25 scores. Tokens are
    :func:`memory.recall.index._tokenize`'s (stemmed, no stop words), so the lexical view
    matches the exhaustive index's; tantivy then only splits them on spaces."""

    def __init__(self) -> None:
        schema = tantivy.SchemaBuilder()
        schema.add_text_field("body", stored=False, tokenizer_name="whitespace")
        schema.add_unsigned_field("row", stored=True, indexed=True, fast=True)
        self._schema = schema.build()
        self._index = tantivy.Index(self._schema)
        self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
        self.tokens = 0
        """Tokens indexed so far (what :attr:`nbytes` estimates from)."""

    def add(self, first: int, tokens: Sequence[Sequence[str]]) -> None:
        """Index ``tokens[i]`` as row ``first + i`` (visible to searches on return)."""
        for i, words in enumerate(tokens):
            doc = tantivy.Document()
            doc.add_text("body", " ".join(words))
            doc.add_unsigned("row", first + i)
            self._writer.add_document(doc)
            self.tokens += len(words)
        self._commit()

    def delete(self, rows: Sequence[int]) -> None:
        """Drop ``rows`` from the index."""
        # by query: tantivy 0.27's delete_documents_by_term silently misses u64 fields
        terms = [int(r) for r in rows]
        self._writer.delete_documents_by_query(
            tantivy.Query.term_set_query(self._schema, "row", terms)
        )
        self._commit()

    def _commit(self) -> None:
        self._writer.commit()
        self._index.reload()

    def search(self, tokens: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The (at most ``k``) rows sharing a term with ``tokens``, best first, and their BM25
        scores: two arrays of shape ``(m,)``."""
        searcher = self._index.searcher()
        terms = self._selective(searcher, list(dict.fromkeys(tokens)))
        if not terms or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "body", t))
                for t in terms
            ]
        )
        found = searcher.search(query, k, count=False).hits
        rows = searcher.fast_field_values("row", [a for _, a in found])
        return np.array(rows, dtype=np.int64), np.array([s for s, _ in found], dtype=np.float32)

    @staticmethod
    def _selective(searcher: Any, terms: list[str]) -> list[str]:
        """``terms`` without those in no document or in more than :data:`COMMON_SHARE` of
        them (and more than :data:`COMMON_MIN`): their BM25 idf is below ln 2, so they barely
        move the ranking, but their posting lists are most of what a search scans (Lucene's
        "common terms" query makes the same trade), and with only :data:`LEXICAL_K` results
        kept, many documents tied on them would be cut at random."""
        if not terms:
            return []
        freq = [searcher.doc_freq("body", t) for t in terms]
        common = max(COMMON_SHARE * searcher.num_docs, COMMON_MIN)
        return [t for t, f in zip(terms, freq, strict=True) if 0 < f <= common]

    @property
    def nbytes(self) -> int:
        """Estimated resident bytes (:data:`TANTIVY_BYTES_PER_TOKEN` per token, plus the
        writer's arena)."""
        return self.tokens * TANTIVY_BYTES_PER_TOKEN + WRITER_HEAP


class CandidateView(UserIndex):
    """The candidates of one query as a small :class:`UserIndex` (what the ranking scores):
    built by :meth:`LargeIndex.for_query` from the large index's columns, with context vectors
    and session centroids computed for these rows only, session neighbours renumbered within
    the view (-1 when outside it) and the BM25 scores of the lexical search."""

    def __init__(self, owner: LargeIndex, rows: np.ndarray, bm25: np.ndarray) -> None:
        """``rows``: sorted distinct rows of ``owner``; ``bm25``: their scores, shape like it."""
        self.hits = [owner.hits[r] for r in rows.tolist()]
        self.position = {}  # the ranking never looks a view's memories up by id
        self.vectors = owner._vec.view[rows]
        self.prev = _renumber(owner._prev.view[rows], rows)
        self.next = _renumber(owner._next.view[rows], rows)
        self.context = owner._ctx.view[rows]
        self.centroids = owner.centroids_of(rows, self.vectors)
        self.speaker = owner._speaker.view[rows]
        self.user_voiced = owner._voiced.view[rows]
        for name, _ in _COLUMNS:
            setattr(self, name, owner._cols[name].view[rows])
        self.days = owner.days
        self.names = owner.names
        self._bm25_scores = bm25
        self._bm25 = None
        self._tokens = []

    def lexical_scores(self, query: str) -> np.ndarray:
        """The candidates' BM25 scores (from the search that chose them), shape ``(n,)``."""
        return self._bm25_scores


def _renumber(neighbours: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``neighbours`` (rows of the large index, -1 for none) as positions in the sorted
    ``rows``, -1 where the neighbour is not among them."""
    at = np.searchsorted(rows, neighbours)
    at = np.clip(at, 0, max(len(rows) - 1, 0))
    inside = (neighbours >= 0) & (rows[at] == neighbours) if len(rows) else neighbours < -1
    return np.where(inside, at, -1).astype(np.int64)


def _last_of_each(hits: list[MemoryHit], unit: np.ndarray) -> tuple[list[MemoryHit], np.ndarray]:
    """``hits`` (and their rows of ``unit``) with only the last of each id (a later write of a
    memory replaces an earlier one, as :meth:`UserIndex.merged` does)."""
    last = {h.id: i for i, h in enumerate(hits)}
    if len(last) == len(hits):
        return hits, unit
    keep = sorted(last.values())
    return [hits[i] for i in keep], unit[keep]


class LargeIndex(UserIndex):
    """One user's memories (see the module docstring), built from ``hits`` and their
    ``vectors`` (shape ``(len(hits), dim)``, not necessarily unit), which must be non-empty.

    Raises:
        ValueError: no hits, or vectors of another length.
    """

    def __init__(self, hits: Sequence[MemoryHit], vectors: Vectors) -> None:
        hits, unit = _last_of_each(list(hits), unit_rows(np.asarray(vectors, dtype=np.float32)))
        if not len(hits) or unit.shape[0] != len(hits):
            raise ValueError(f"{len(hits)} hits with {unit.shape[0]} vectors")
        dim = unit.shape[1]
        self._lock = threading.RLock()
        self.hits: list[MemoryHit] = []
        self.position: dict[str, int] = {}
        self._gone = Column(bool)
        self._mask = Column(bool)  # masked (deleted, not yet dropped): dormant whatever the record
        self._vec = Column(np.float32, dim)
        self._ctx = Column(np.float32, dim)
        self._cols = {name: Column(dtype) for name, dtype in _COLUMNS}
        self._speaker = Column(object)
        self._voiced = Column(bool)
        self._session = Column(np.int64)
        self._prev = Column(np.int64)
        self._next = Column(np.int64)
        self._sessions: dict[str, int] = {}
        self._members: list[list[tuple[float, float, int]]] = []
        self._sum = Column(np.float32, dim)  # per session: the sum of its unit vectors
        self._centroid = Column(np.float32, dim)  # per session: that sum, unit
        self._day_count: Counter[float] = Counter()
        self._speakers: Counter[str] = Counter()
        self._stemmer = Stemmer.Stemmer("english")
        self.days = np.zeros(0)
        self.names: dict[str, str] = {}
        self.ann = Ann(unit)
        self.lexical = Lexical()
        self._append(hits, unit, [words(h.text, self._stemmer) for h in hits])

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.position)

    @property
    def dense(self) -> bool:
        return True

    @property
    def vectors(self) -> np.ndarray:  # type: ignore[override]
        """Unit vectors of every row, deleted ones included, shape ``(rows, dim)``."""
        return self._vec.view

    @property
    def prev(self) -> np.ndarray:  # type: ignore[override]
        """Previous memory in the session of every row (-1: none), shape ``(rows,)``."""
        return self._prev.view

    @property
    def next(self) -> np.ndarray:  # type: ignore[override]
        """Next memory in the session of every row (-1: none), shape ``(rows,)``."""
        return self._next.view

    def live(self) -> Iterator[MemoryHit]:
        """The memories held (not deleted)."""
        with self._lock:
            gone = self._gone.view
            return iter([h for i, h in enumerate(self.hits) if not gone[i]])

    def lexical_scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query``, shape ``(rows,)``: the lexical top
        :data:`LEXICAL_K`, 0 elsewhere (a dense array over every row: for tools, not recall)."""
        out = np.zeros(self._vec.n, dtype=np.float32)
        rows, scores = self._lexical_top(query)
        out[rows] = scores
        return out

    def search(self, query: str, k: int) -> list[MemoryHit]:
        rows, scores = self._lexical_top(query, k)
        return [self.hits[int(r)] for r, s in zip(rows, scores, strict=True) if s > 0]

    def _lexical_top(self, query: str, k: int = LEXICAL_K) -> tuple[np.ndarray, np.ndarray]:
        tokens = words(query, self._stemmer)
        with self._lock:
            return self.lexical.search(tokens, k)

    def for_query(self, vector: np.ndarray, lexical: str | None) -> UserIndex:
        """The candidates for one query as a :class:`CandidateView`: the ANN's
        :data:`DENSE_K` nearest to ``vector`` (unit, shape ``(dim,)``), the BM25 top
        :data:`LEXICAL_K` for ``lexical`` (None: no lexical view), and the session neighbours
        of the best :data:`LENDERS` of each (what the ranking's neighbour spreading can lift);
        deleted rows left out."""
        with self._lock:
            dense = self.ann.search(vector, DENSE_K)
            rows_lex, scores_lex = self._lexical_top(lexical) if lexical else (dense[:0], None)
            lenders = np.concatenate([dense[:LENDERS], rows_lex[:LENDERS]])
            near = np.concatenate([self._prev.view[lenders], self._next.view[lenders]])
            rows = np.union1d(np.union1d(dense, rows_lex), near[near >= 0])
            rows = rows[~self._gone.view[rows]]
            bm25 = np.zeros(len(rows), dtype=np.float32)
            if scores_lex is not None and len(rows_lex):
                at = np.searchsorted(rows, rows_lex)
                ok = (at < len(rows)) & (rows[np.minimum(at, len(rows) - 1)] == rows_lex)
                bm25[at[ok]] = scores_lex[ok]
            return CandidateView(self, rows, bm25)

    def nearest(self, unit: np.ndarray) -> tuple[MemoryHit, float, np.ndarray]:
        """The held memory nearest to the unit vector ``unit`` (by the ANN's candidates, exact
        cosine among them; every held memory when those 16 were all deleted): ``(record,
        cosine, its unit vector)``. The index must hold a memory."""
        with self._lock:
            rows = self.ann.search(unit, 16)
            rows = rows[~self._gone.view[rows]]
            if not len(rows):
                rows = np.flatnonzero(~self._gone.view)
            sims = self._vec.view[rows] @ np.asarray(unit, dtype=np.float32)
            j = int(rows[int(np.argmax(sims))])
            return self.hits[j], float(sims.max()), self._vec.view[j]

    def _refresh_context(self, rows: Iterable[int]) -> None:
        """Recompute the context vectors of ``rows`` (after their neighbours changed), as
        :func:`memory.recall.index.context_vectors` computes them."""
        at = np.array(sorted({r for r in rows if r >= 0}), dtype=np.int64)
        if not len(at):
            return
        vec = self._vec.view
        mixed = vec[at]
        for side in (self._prev.view[at], self._next.view[at]):
            has = side >= 0  # a missing neighbour adds nothing (row 0 times weight 0)
            weight = (CONTEXT_WEIGHT * has.astype(np.float32))[:, None]
            mixed += weight * vec[np.where(has, side, 0)]
        self._ctx.view[at] = unit_rows(mixed)

    def _refresh_centroids(self, sessions: np.ndarray) -> None:
        at = np.unique(sessions)
        self._centroid.view[at] = unit_rows(self._sum.view[at])

    def centroids_of(self, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Unit session means of ``rows`` (whose unit ``vectors`` are given: a memory without
        a session is its own), shape ``(len(rows), dim)``: kept per session from a running
        sum, which points where the mean does."""
        sessions = self._session.view[rows]
        has = sessions >= 0
        if not has.any():  # (then there may be no session at all to index)
            return vectors.copy()
        return np.where(has[:, None], self._centroid.view[np.maximum(sessions, 0)], vectors)

    def nbytes(self) -> int:
        """Bytes held: the columns' capacity, the ANN's codes, tantivy's estimate, the session
        lists and the records (sampled, :func:`memory.recall.footprint.sampled_bytes`)."""
        columns = [self._gone, self._vec, self._ctx, self._speaker, self._voiced, self._session]
        columns += [self._prev, self._next, self._sum, self._centroid, *self._cols.values()]
        total = sum(c.nbytes for c in columns) + self.ann.nbytes + self.lexical.nbytes
        total += (_INT_BYTES + 64) * len(self.position)  # the id -> row map, and each session entry
        return total + sampled_bytes(self.hits)

    # -- changes (in place, under the lock) ------------------------------------------------

    def merged(self, hits: Sequence[MemoryHit], vectors: Vectors | None) -> UserIndex:
        """This index with ``hits`` added (a hit whose id is held replaces it), in time
        proportional to ``len(hits)``. Without ``vectors`` (a store that returned none), an
        exhaustive index without vectors of every memory instead."""
        if vectors is None:
            return UserIndex([*self.live(), *hits], None)
        fresh, unit = _last_of_each(list(hits), unit_rows(np.asarray(vectors, dtype=np.float32)))
        tokens = [
            words(h.text, self._stemmer) for h in fresh
        ]  # outside the lock: recall waits less
        with self._lock:
            self._delete({h.id for h in fresh} & self.position.keys())
            self._append(fresh, unit, tokens)
        if len(self.position) > RETRAIN_GROWTH * self.ann.trained_on:
            self._retrain()
        return self

    def _retrain(self) -> None:
        """Replace the ANN by one trained on every row now held: built outside the lock (recall
        keeps the old one meanwhile), then given the rows added since, and swapped in."""
        with self._lock:
            upto = self._vec.n
            held = np.flatnonzero(~self._gone.view)
            snapshot = self._vec.view[held]
        ann = Ann(snapshot)
        ann.add(held, snapshot)
        with self._lock:
            later = np.arange(upto, self._vec.n)
            later = later[~self._gone.view[later]]
            ann.add(later, self._vec.view[later])
            since = held[self._gone.view[held]]  # deleted while the new lists were trained
            if len(since):
                ann.remove(since.tolist())
            self.ann = ann

    def updated(self, updates: Mapping[str, Mapping[str, Any]]) -> UserIndex | None:
        """This index with ``updates`` (as :meth:`UserIndex.updated` takes them) set in the
        rows they name; None (nothing changed) when one changes the session order's inputs."""
        with self._lock:
            fresh: dict[int, MemoryHit] = {}
            for memory_id, update in updates.items():
                i = self.position.get(memory_id)
                if i is None:
                    continue
                old = fresh.get(i, self.hits[i])
                merged = {**old.metadata, **to_chroma_metadata(dict(update))}
                hit = MemoryHit(old.id, old.text, merged, old.similarity)
                if _structure(hit.record) != _structure(old.record):
                    return None
                fresh[i] = hit
            if fresh:
                rows = sorted(fresh)
                for i in rows:
                    self.hits[i] = fresh[i]
                self._set_columns(np.array(rows), [fresh[i] for i in rows])
        return self

    def without(self, ids: frozenset[str]) -> UserIndex:
        """This index without the memories ``ids`` (tombstoned: skipped from now on)."""
        with self._lock:
            self._delete(set(ids) & self.position.keys())
        return self

    def reread(self, ids: Iterable[str]) -> None:
        """Read the metadata columns of memories ``ids`` again from their records (which
        :class:`memory.write.access.AccessStats` updates in place)."""
        with self._lock:
            rows = sorted({self.position[i] for i in ids if i in self.position})
            self._set_columns(np.array(rows, dtype=np.int64), [self.hits[r] for r in rows])

    def masked(self, ids: frozenset[str]) -> UserIndex:
        """This index with the memories ``ids`` marked dormant (never recalled)."""
        with self._lock:
            rows = [self.position[i] for i in ids if i in self.position]
            self._mask.view[rows] = True
            self._cols["dormant"].view[rows] = True
        return self

    def _append(self, hits: list[MemoryHit], unit: np.ndarray, tokens: list[list[str]]) -> None:
        """Add ``hits`` (distinct ids, none held) with their unit vectors and BM25 tokens; the
        id -> row map last, so a reader never finds a row whose columns are not there yet."""
        first = self._vec.n
        rows = np.arange(first, first + len(hits))
        self.hits.extend(hits)
        self._vec.extend(unit)
        self._gone.extend(np.zeros(len(hits), bool))
        self._mask.extend(np.zeros(len(hits), bool))
        for column in (self._prev, self._next):
            column.extend(np.full(len(hits), -1))
        for name, dtype in _COLUMNS:
            self._cols[name].extend(np.zeros(len(hits), dtype))
        self._set_columns(rows, hits)
        self._speaker.extend(np.array([h.record.speaker or "" for h in hits], dtype=object))
        self._voiced.extend([h.user_voiced for h in hits])
        self._speakers.update(h.record.speaker for h in hits if h.record.speaker)
        self.names = first_names(self._speakers)
        self._session.extend([self._session_id(h.record.session) for h in hits])
        for column in (self._sum, self._centroid):
            column.extend(np.zeros((len(self._members) - column.n, unit.shape[1])))
        sessions, summed = self._with_session(rows, unit)
        np.add.at(self._sum.view, sessions, summed)
        self._refresh_centroids(sessions)
        self._ctx.extend(np.zeros((len(hits), unit.shape[1])))
        touched = rows.tolist()
        for r, hit in zip(touched, hits, strict=True):
            self._link(r, hit)
        neighbours = np.concatenate([self._prev.view[rows], self._next.view[rows]]).tolist()
        self._refresh_context([*touched, *neighbours])
        self.ann.add(rows, unit)
        self.lexical.add(first, tokens)
        self.position.update({h.id: int(r) for h, r in zip(hits, rows, strict=True)})

    def _with_session(self, rows: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sessions = self._session.view[rows]
        has = sessions >= 0
        return sessions[has], unit[has]

    def _session_id(self, session: str | None) -> int:
        if not session:
            return -1
        sid = self._sessions.get(session)
        if sid is None:
            sid = self._sessions[session] = len(self._members)
            self._members.append([])
        return sid

    def _key(self, row: int) -> tuple[float, float, int]:
        """A row's place in its session: event time, storage time, then row (insertion)
        order, as :func:`memory.recall.index.session_order` sorts."""
        record = self.hits[row].record
        return record.event_at or 0.0, record.created_at or 0.0, row

    def _link(self, row: int, hit: MemoryHit) -> None:
        """Put ``row`` into its session's order between its neighbours."""
        sid = int(self._session.view[row])
        if sid < 0:
            return
        members = self._members[sid]
        key = self._key(row)
        at = bisect.bisect(members, key)
        members.insert(at, key)
        prev, nxt = self._prev.view, self._next.view
        if at > 0:
            before = members[at - 1][2]
            prev[row], nxt[before] = before, row
        if at + 1 < len(members):
            after = members[at + 1][2]
            nxt[row], prev[after] = after, row

    def _unlink(self, row: int) -> tuple[int, int]:
        """Take ``row`` out of its session's order; returns its neighbours (now linked to each
        other), whose context vectors changed."""
        sid = int(self._session.view[row])
        prev, nxt = self._prev.view, self._next.view
        before, after = int(prev[row]), int(nxt[row])
        if before >= 0:
            nxt[before] = after
        if after >= 0:
            prev[after] = before
        prev[row] = nxt[row] = -1
        if sid >= 0:
            members = self._members[sid]
            members.pop(bisect.bisect_left(members, self._key(row)))
            self._sum.view[sid] -= self._vec.view[row]
            self._refresh_centroids(np.array([sid]))
        return before, after

    def _delete(self, ids: set[str]) -> None:
        rows = sorted(self.position.pop(i) for i in ids)
        near = [n for row in rows for n in self._unlink(row)]
        if rows:
            self._gone.view[rows] = True
            self._count_days(np.array(rows), -1)
            self.ann.remove(rows)
            self.lexical.delete(rows)
            self._speakers.subtract(s for r in rows if (s := self.hits[r].record.speaker))
            self._speakers = +self._speakers  # drop speakers with no memory left
            self.names = first_names(self._speakers)
            self._refresh_context(n for n in near if n >= 0 and not self._gone.view[n])

    def _set_columns(self, rows: np.ndarray, hits: Sequence[MemoryHit]) -> None:
        """Write the metadata columns of ``rows`` from their records (and count their days)."""
        if not len(rows):
            return
        self._count_days(rows, -1)  # what the rows held (nothing for new, zeroed rows)
        for name, values in metadata_columns([h.record for h in hits]).items():
            self._cols[name].view[rows] = values
        self._cols["dormant"].view[rows] |= self._mask.view[rows]  # a mask outlives updates
        self._count_days(rows, +1)

    def _count_days(self, rows: np.ndarray, sign: int) -> None:
        """Add (``sign`` 1) or remove (-1) the active days of ``rows``' event times; refresh
        :attr:`days` (as :func:`memory.metabolism.decay.active_days` gives them) when the set
        of days changed."""
        stamps = self._cols["event_at"].view[rows]
        changed = False
        for day in np.floor(stamps[stamps > 0] / DAY_S).tolist():
            count = self._day_count[day] + sign
            if count <= 0:
                self._day_count.pop(day, None)
                changed = True
            else:
                changed |= count == 1
                self._day_count[day] = count
        if changed:
            self.days = np.array(sorted(self._day_count), dtype=np.float64)
