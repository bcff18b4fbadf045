"""Which index a user gets, and changes applied to it in order.

A user's index is exhaustive (:class:`~memory.recall.index.UserIndex`) up to
:data:`EXHAUSTIVE_MAX` memories and a :class:`~memory.recall.large.LargeIndex` (candidates
first) past it; :func:`apply_changes` moves a growing user from one to the other.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from memory.embedders import Vectors
from memory.recall.index import IndexChange, UserIndex
from memory.recall.large import LargeIndex
from memory.types import MemoryHit

EXHAUSTIVE_MAX = 5_000
"""Most memories a user's index scores exhaustively; past it the index becomes a
:class:`~memory.recall.large.LargeIndex`. Measured with ``scripts/bench_index.py --latency``
(one synthetic user, 30-word texts): exhaustive ranking p50 2.4 ms at 2,000 memories, 5.0 ms at
5,000, 13-18 ms at 20,000, against 2.7, 3.6 and about 4 ms for the candidate path; and a merge
into the exhaustive index rebuilds BM25 (0.12 s at 2,000, 0.33 s at 5,000, 1.9 s at 20,000),
while the large index merges in about 15 ms at any size. LoCoMo's users (a few hundred
memories) stay exhaustive, so its figures are unchanged."""


def build_index(hits: list[MemoryHit], vectors: Vectors | None) -> UserIndex:
    """The index of a user's ``hits`` and their ``vectors`` (shape ``(len(hits), dim)``; None
    when the store returned none): exhaustive up to :data:`EXHAUSTIVE_MAX` memories, a
    :class:`~memory.recall.large.LargeIndex` past it."""
    if vectors is not None and len(hits) > EXHAUSTIVE_MAX:
        return LargeIndex(hits, vectors)
    return UserIndex(hits, vectors)


def _kind(change: IndexChange) -> str:
    if isinstance(change, tuple):
        return "added"
    return "deleted" if isinstance(change, frozenset) else "updated"


def _merged(index: UserIndex, hits: list[MemoryHit], vectors: np.ndarray) -> UserIndex:
    """``index`` with ``hits`` added; an exhaustive index that would outgrow
    :data:`EXHAUSTIVE_MAX` becomes a large one first (an O(n) step, once)."""
    grows = len(index) + len(hits) > EXHAUSTIVE_MAX
    if type(index) is UserIndex and index.vectors is not None and len(index) and grows:
        index = LargeIndex(index.hits, index.vectors)
    return index.merged(hits, vectors)


def apply_changes(index: UserIndex, changes: Sequence[IndexChange]) -> UserIndex | None:
    """``index`` with ``changes`` applied in order; a run of additions is merged in one step
    (one BM25 build for an exhaustive index), as is a run of deletions; metadata updates use
    :meth:`UserIndex.updated`. None when an update needs a rebuild from the store."""
    current = index
    for kind, group in itertools.groupby(changes, key=_kind):
        batch = list(group)
        if kind == "added":
            runs = [c for c in batch if isinstance(c, tuple)]
            hits = [h for records, _ in runs for h in records]
            current = _merged(current, hits, np.vstack([np.asarray(v) for _, v in runs]))
        elif kind == "deleted":
            current = current.without(
                frozenset().union(*[c for c in batch if isinstance(c, frozenset)])
            )
        else:
            for update in batch:
                following = current.updated(update)  # type: ignore[arg-type]
                if following is None:
                    return None
                current = following
    return current
