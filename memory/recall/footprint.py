"""How many bytes an in-memory structure holds: what the index cache bounds itself by
(``memory.index_cache_mb``, :class:`memory.recall.cache.IndexCache`).

:func:`deep_bytes` walks containers, dataclasses and plain objects with :func:`sys.getsizeof`
and counts numpy arrays by the data they own (a view counts only its header); an object
reached twice counts once. It is an estimate of what the interpreter holds (allocator overhead
and interned strings are not seen), within a few percent of the resident-set growth measured
by ``scripts/bench_users.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

_ATOMS = (str, bytes, int, float, bool, complex, type(None))


def deep_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by ``obj`` and everything it references (not counting what ``seen`` holds:
    ids already counted, updated in place).

    >>> deep_bytes(np.zeros(1000, dtype=np.float32)) >= 4000
    True
    >>> shared = "x" * 1000
    >>> deep_bytes([shared, shared]) < 2 * sys.getsizeof(shared)
    True
    """
    seen = set() if seen is None else seen
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            total += sys.getsizeof(item) if item.flags.owndata else item.__sizeof__()
            if item.dtype == object:
                stack.extend(item.ravel().tolist())
            continue
        total += sys.getsizeof(item)
        if isinstance(item, _ATOMS):
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        else:
            if hasattr(item, "__dict__"):
                stack.append(vars(item))
            slots = getattr(type(item), "__slots__", ())
            slots = (slots,) if isinstance(slots, str) else slots
            stack.extend(getattr(item, name, None) for name in slots)
    return total


def sampled_bytes(items: Sequence[Any], sample: int = 64, seen: set[int] | None = None) -> int:
    """Estimated :func:`deep_bytes` of the list ``items``: its own size plus the mean deep size
    of up to ``sample`` evenly spaced items times their number (O(sample), for lists of
    similar records such as a user's memories).

    >>> texts = [f"memory {i}" for i in range(10)]
    >>> sampled_bytes(texts) == deep_bytes(texts)
    True
    """
    seen = set() if seen is None else seen
    own = sys.getsizeof(items)
    if not items:
        return own
    step = max(1, len(items) // sample)
    picked = [items[i] for i in range(0, len(items), step)]
    return own + round(sum(deep_bytes(p, seen) for p in picked) * len(items) / len(picked))
