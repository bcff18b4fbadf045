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


class LexicalIndex:
    """BM25 over a fixed list of memories."""

    def __init__(self, hits: list[MemoryHit]) -> None:
        self.hits = hits
        self._stemmer = Stemmer.Stemmer("english")
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

    def search(self, query: str, k: int) -> list[MemoryHit]:
        """Up to ``k`` memories with a positive BM25 score for ``query``, best first."""
        if self._bm25 is None or k <= 0:
            return []
        tokens = _tokenize([query], self._stemmer)
        if not tokens or not tokens[0]:
            return []
        ids, scores = self._bm25.retrieve(tokens, k=min(k, len(self.hits)), show_progress=False)
        return [self.hits[int(i)] for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
