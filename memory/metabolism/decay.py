"""Decay of memory strength over the user's active days (screened and free phases)."""

from __future__ import annotations

import math

import numpy as np

from memory.config import MetabolismConfig
from memory.record import MemoryRecord

DAY_S = 86400.0
"""Seconds in a day."""


def active_days(stamps: np.ndarray) -> np.ndarray:
    """Sorted distinct UTC day numbers (``floor(t / 86400)``) of positive Unix times."""
    valid = stamps[stamps > 0]
    return np.unique(np.floor(valid / DAY_S))


def effective_strength(
    strength: np.ndarray,
    last_used: np.ndarray,
    screened: np.ndarray,
    days: np.ndarray,
    config: MetabolismConfig,
    symbiosis: np.ndarray | None = None,
) -> np.ndarray:
    """Strength after decay, shape ``(n,)``: ``strength * 2 ** (-a / H)`` with ``a`` the
    number of the user's active ``days`` after the day of ``last_used`` (Unix seconds) and
    ``H`` the screened or free half-life in days, times ``0.5 + symbiosis`` when the scores
    (shape ``(n,)``, in [0, 1]) are given: high symbiosis reinforces, so a fully symbiotic
    memory keeps 1.5 times a neutral one's half-life and one scored 0.2 keeps 0.7 times it.

    >>> cfg = MetabolismConfig(half_life_free_days=10, half_life_screened_days=40)
    >>> days = np.arange(30.0)
    >>> s = effective_strength(np.ones(2), np.array([9.5, 9.5]) * DAY_S,
    ...                        np.array([False, True]), days, cfg)
    >>> s.round(3).tolist()
    [0.25, 0.707]
    >>> effective_strength(np.ones(1), np.array([9.5 * DAY_S]), np.array([False]), days, cfg,
    ...                    np.array([1.0])).round(3).tolist()
    [0.397]
    """
    last_day = np.floor(np.asarray(last_used) / DAY_S)
    after = len(days) - np.searchsorted(days, last_day, side="right")
    half_life = np.where(screened, config.half_life_screened_days, config.half_life_free_days)
    if symbiosis is not None:
        half_life = half_life * (0.5 + np.clip(np.asarray(symbiosis, dtype=np.float64), 0, 1))
    out: np.ndarray = np.asarray(strength, dtype=np.float64) * np.exp2(-after / half_life)
    return out


def next_screened(record: MemoryRecord, days: np.ndarray, config: MetabolismConfig) -> bool:
    """Whether a memory is in the screened phase after this sleep cycle, with hysteresis: a
    free memory is screened once used ``screen_at`` times; a screened one goes back to free
    only when it was used fewer than ``free_below`` times since the last cycle and has been
    idle for ``half_life_free_days`` of the user's active ``days``.

    >>> cfg = MetabolismConfig(screen_at=3, free_below=1, half_life_free_days=2)
    >>> used = MemoryRecord.create("m", "", access_count=3, phase="free")
    >>> next_screened(used, np.arange(5.0), cfg)
    True
    >>> idle = MemoryRecord.create("m", "", phase="screened", event_at=0.0)
    >>> next_screened(idle, np.arange(5.0), cfg), next_screened(idle, np.arange(2.0), cfg)
    (False, True)
    """
    screened = record.screened
    if not screened and record.uses >= config.screen_at:
        return True
    if screened and record.uses - record.uses_at_cycle < config.free_below:
        last_day = math.floor(record.last_used / DAY_S)
        idle = len(days) - np.searchsorted(days, last_day, "right")
        if idle >= config.half_life_free_days:
            return False
    return screened
