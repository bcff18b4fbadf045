"""Lexical retrieval: BM25 over one user's memories, with bm25s (Lucene's BM25 variant).

BM25 finds what dense embeddings of a small model miss: names, numbers and rare words said
verbatim. The index lives in memory per user; it is built from the store and rebuilt in the
background after writes (bm25s indexes a few thousand short texts in milliseconds).
"""

from __future__ import annotations

from typing import Any

import bm25s
import Stemmer

from memory.types import MemoryHit


def _tokenize(texts: list[str], stemmer: Any) -> Any:
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )


def adjacency(hits: list[MemoryHit]) -> dict[str, list[MemoryHit]]:
    """Memory id -> its previous and next memory in the same session, ordered by event time
    then storage time. Memories without a session have no neighbours.

    >>> hits = [MemoryHit(str(i), "", {"session": "s", "event_at": 0.0, "created_at": float(i)})
    ...         for i in range(3)]
    >>> [h.id for h in adjacency(hits)["1"]]
    ['0', '2']
    """
    sessions: dict[str, list[MemoryHit]] = {}
    for hit in hits:
        session = hit.metadata.get("session")
        if isinstance(session, str):
            sessions.setdefault(session, []).append(hit)
    out: dict[str, list[MemoryHit]] = {}
    for members in sessions.values():
        members.sort(key=lambda h: (_num(h, "event_at"), _num(h, "created_at")))
        for i, hit in enumerate(members):
            out[hit.id] = members[max(0, i - 1) : i] + members[i + 1 : i + 2]
    return out


def _num(hit: MemoryHit, key: str) -> float:
    value = hit.metadata.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


class LexicalIndex:
    """BM25 over a fixed list of memories."""

    def __init__(self, hits: list[MemoryHit]) -> None:
        self.hits = hits
        self._stemmer = Stemmer.Stemmer("english")
        self._adjacent = adjacency(hits)
        self._by_id = {hit.id: hit for hit in hits}
        self._bm25: Any = None
        if hits:
            self._bm25 = bm25s.BM25()
            self._bm25.index(
                bm25s.tokenize(
                    [h.text for h in hits],
                    stopwords="en",
                    stemmer=self._stemmer,
                    show_progress=False,
                ),
                show_progress=False,
            )

    def record(self, memory_id: str) -> MemoryHit | None:
        """The stored record of ``memory_id`` as of the last rebuild, or None."""
        return self._by_id.get(memory_id)

    def neighbours(self, memory_id: str) -> list[MemoryHit]:
        """The memories just before and after ``memory_id`` in its session (by event time)."""
        return self._adjacent.get(memory_id, [])

    def search(self, query: str, k: int) -> list[MemoryHit]:
        """Up to ``k`` memories with a positive BM25 score for ``query``, best first."""
        if self._bm25 is None or k <= 0:
            return []
        tokens = _tokenize([query], self._stemmer)
        if not tokens or not tokens[0]:
            return []
        ids, scores = self._bm25.retrieve(tokens, k=min(k, len(self.hits)), show_progress=False)
        return [self.hits[int(i)] for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
