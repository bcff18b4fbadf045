"""Counters of the write-back path (reported by ``/healthz`` under ``writer``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WriteStats:
    """Counters of the write-back path since start."""

    queued: int = 0
    written: int = 0
    skipped: int = 0
    failed_attempts: int = 0
    gated: int = 0
    """Exchanges the write gate kept in the raw archive only."""
    reinforced: int = 0
    """Exchanges that strengthened an existing memory instead of adding a copy."""
    repulsors: int = 0
    """Memories written (or reinforced) as repulsors."""
    judged: int = 0
    """Scores revised by the LLM judge."""
    judge_failed: int = 0
    """Judge calls that gave no usable rating (the score stayed as it was)."""
    judge_skipped: int = 0
    """Exchanges not sent to the judge because its queue was full."""
    backlog_waits: int = 0
    """Requests that waited for the writer (``memory.max_lag_s``, ``memory.max_backlog``)."""
