"""Connected components of a similarity graph (union-find)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def clusters(close: np.ndarray, alike: Callable[[int, int], bool]) -> list[list[int]]:
    """Connected components (union-find with path halving) of the graph whose edges are the
    pairs ``a < b`` with ``close[a, b]`` (a boolean ``(n, n)`` matrix) and ``alike(a, b)``;
    each a sorted list of indices, singletons included.

    >>> close = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    >>> clusters(close, lambda a, b: True)
    [[0, 1], [2]]
    """
    parent = list(range(len(close)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    rows, cols = np.nonzero(np.triu(close, 1))
    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        if alike(a, b):
            parent[root(a)] = root(b)
    out: dict[int, list[int]] = {}
    for a in range(len(parent)):
        out.setdefault(root(a), []).append(a)
    return list(out.values())
