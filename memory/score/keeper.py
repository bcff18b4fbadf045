"""Scoring on the write path and the score log: one object the writer, the judge worker,
feedback and the sleep cycle share, so a score is computed and logged the same way by all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from memory.config import SymbiosisConfig
from memory.errors import StoreError
from memory.lane import ModelLane
from memory.score.symbiosis import Score, Scorer, Turn, make_scorer
from memory.store.score_log import ScoreLog
from memory.types import Exchange

log = logging.getLogger(__name__)


class ScoreKeeper:
    """The symbiosis scorer (built lazily: loading its encoder takes seconds) and the
    tamper-evident score log (optional)."""

    def __init__(
        self,
        symbiosis: SymbiosisConfig,
        score_log: ScoreLog | None,
        scorer: Scorer | None,
        lane: ModelLane | None = None,
        chunk: int = 4,
    ) -> None:
        self.symbiosis = symbiosis
        self.score_log = score_log
        self.scorer = scorer
        """Built by :meth:`load` when none was given."""
        self.lane = lane
        """The model lane the scorer's encoder shares with a local embedder; scoring then holds
        it as write work, ``chunk`` exchanges at a time (None: one thread call for all)."""
        self.chunk = chunk
        self.listeners: list[Callable[[Score], None]] = []
        """Called with the score of each exchange written as a memory (``proxy.metrics``'s
        histogram); must not block or raise."""

    @property
    def threshold(self) -> float:
        """Symbiosis below which a memory is a repulsor (``symbiosis.threshold``)."""
        return self.symbiosis.threshold

    async def load(self) -> Scorer:
        """The scorer, built from ``symbiosis`` in a worker thread on first use."""
        if self.scorer is None:
            self.scorer = await asyncio.to_thread(make_scorer, self.symbiosis)
        return self.scorer

    def reviser(self) -> Scorer:
        """A scorer for revisions of stored signals (the loaded one, else one without
        encoder: revising needs none)."""
        return self.scorer or Scorer(self.symbiosis, None, None)

    async def score(self, exchanges: list[Exchange]) -> list[Score | None]:
        """Symbiosis scores of ``exchanges`` (provisional: the next turn is not known yet), or
        Nones when scoring is off."""
        if self.scorer is None or not self.symbiosis.enabled:
            return [None] * len(exchanges)
        turns = [Turn(e.user_text, e.reply, None, e.metrics) for e in exchanges]
        if self.lane is None:
            return list(await asyncio.to_thread(self.scorer.score, turns))
        scores: list[Score | None] = []
        for start in range(0, len(turns), self.chunk):
            async with self.lane.turn("write"):
                part = turns[start : start + self.chunk]
                scores.extend(await asyncio.to_thread(self.scorer.score, part))
        return scores

    def log_scores(self, entries: list[tuple[Exchange, str | None, Score | None]]) -> None:
        """Append scores to the tamper-evident log (``(exchange, memory id or None when gated,
        score)``); a failure is logged (the score is also in the memory's metadata) and never
        loses the write."""
        for _exchange, mid, score in entries:
            if mid is not None and score is not None:
                for listener in self.listeners:
                    listener(score)
        self.append(
            [
                score.log_record(
                    exchange.id,
                    mid,
                    exchange.scope.user,
                    self.threshold,
                    "scored" if mid is not None else "scored, gated (archive only)",
                )
                for exchange, mid, score in entries
                if score is not None
            ]
        )

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ready log records (see :meth:`ScoreLog.append`); failures are only logged."""
        if self.score_log is None or not records:
            return
        try:
            self.score_log.append(records)
        except StoreError as exc:
            log.warning("score log not written: %s", exc)
