"""The sleep cycle over one user's memories (:func:`metabolize_user`), in stages: migration to
schema 3, hindsight rescoring, consolidation, phases and dormancy, promotion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory.config import MetabolismConfig
from memory.metabolism.clusters import clusters
from memory.metabolism.decay import active_days, effective_strength, next_screened
from memory.metabolism.resonance import says_same
from memory.recall.index import session_order, unit_rows
from memory.record import (
    SCHEMA_VERSION,
    MemoryRecord,
    encoded,
    split_exchange,
)
from memory.score.symbiosis import RETENTION, Scorer, Turn, next_turn_kind
from memory.types import MemoryHit
from memory.write.gate import importance


def quadrant(symbiosis: float, threshold: float, used: int, weight: float) -> str:
    """Quadrant label from valence (symbiosis above / at or below ``threshold``) and salience
    (used at least twice, or importance ``weight`` >= 0.5 for novel attractors), after
    Resilient Memory's quadrants.

    >>> quadrant(0.2, 0.4, 3, 0.9), quadrant(0.8, 0.4, 3, 0.9), quadrant(0.8, 0.4, 0, 0.9)
    ('crisis_learning', 'skill_building', 'exploration')
    >>> quadrant(0.5, 0.4, 0, 0.2)
    'routine_forget'
    """
    if symbiosis <= threshold:
        return "crisis_learning" if used >= 2 else "routine_forget"
    if used >= 2:
        return "skill_building"
    return "exploration" if weight >= 0.5 else "routine_forget"


@dataclass
class CycleReport:
    """What one sleep cycle did for one user (counts)."""

    memories: int = 0
    migrated: int = 0
    revised: int = 0
    flipped: int = 0
    consolidated: int = 0
    promoted: int = 0
    screened: int = 0
    dormant: int = 0
    quadrants: dict[str, int] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    """Score-log records of revisions (for :class:`memory.store.score_log.ScoreLog`)."""


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d")


class _Cycle:
    """One user's memories during a sleep cycle: each record with the changes so far applied
    (later stages read what earlier ones decided), and the changes themselves."""

    def __init__(self, hits: Sequence[MemoryHit], vectors: np.ndarray) -> None:
        self.hits = hits
        self.records: list[MemoryRecord] = [h.record for h in hits]
        self.updates: dict[str, dict[str, Any]] = {h.id: {} for h in hits}
        self.unit = unit_rows(vectors) if len(vectors) == len(hits) else None
        """Unit vectors, shape ``(n, dim)``, or None when the store returned none."""
        self.report = CycleReport(memories=len(hits))

    def put(self, i: int, **fields: Any) -> None:
        """Set ``fields`` (record field -> value) on memory ``i``."""
        update = encoded(**fields)
        self.updates[self.hits[i].id].update(update)
        self.records[i] = self.records[i].merged(update)


def metabolize_user(
    user: str,
    hits: Sequence[MemoryHit],
    vectors: np.ndarray,
    scorer: Scorer,
    threshold: float,
    config: MetabolismConfig,
    now: float,
) -> tuple[dict[str, dict[str, Any]], CycleReport]:
    """One sleep cycle over one user's memories (``vectors``: shape ``(len(hits), dim)``, or
    empty). Returns the metadata updates (memory id -> keys to set) and a report; changes
    nothing itself. Consolidated memories become dormant with ``consolidated_into`` set: the
    sleep cycle never deletes."""
    cycle = _Cycle(hits, vectors)
    if not hits:
        return {}, cycle.report
    _migrate(cycle, scorer, threshold)
    _hindsight(cycle, user, scorer, threshold)
    _consolidate(cycle, config.consolidate_similarity, now)
    promotable = _phases(cycle, threshold, config)
    _promote(cycle, promotable, config.promotion_bandwidth)
    return {k: v for k, v in cycle.updates.items() if v}, cycle.report


def _migrate(cycle: _Cycle, scorer: Scorer, threshold: float) -> None:
    """Migration to schema 3: score the memories written before scoring existed."""
    unscored = [i for i, r in enumerate(cycle.records) if not r.scored]
    if not unscored:
        return
    turns = [Turn(*split_exchange(cycle.hits[i].text)) for i in unscored]
    for i, score in zip(unscored, scorer.score(turns), strict=True):
        cycle.put(i, **score.as_metadata(threshold), schema_version=SCHEMA_VERSION)
        cycle.put(i, importance=round(importance(*split_exchange(cycle.hits[i].text)), 4))
        cycle.report.migrated += 1


def _hindsight(cycle: _Cycle, user: str, scorer: Scorer, threshold: float) -> None:
    """Hindsight: the user's next turn in the same session is implicit feedback on an
    exchange (:data:`memory.score.symbiosis.RETENTION`); scores already final are kept."""
    hits, unit, report = cycle.hits, cycle.unit, cycle.report
    _, nxt = session_order(hits)
    for i, record in enumerate(cycle.records):
        j = int(nxt[i])
        if j < 0 or record.symbiosis_provisional is False:
            continue
        if not split_exchange(hits[i].text)[1] or not split_exchange(hits[j].text)[1]:
            continue  # single messages (ingested history): the next one is not a reaction
        signals = dict(record.symbiosis_signals)
        similarity = float(unit[i] @ unit[j]) if unit is not None else None
        kind = next_turn_kind(split_exchange(hits[j].text)[0], similarity)
        signals["user_retention"] = RETENTION[kind]
        revised = scorer.revise(signals)
        cycle.put(i, **revised.as_metadata(threshold))
        report.revised += 1
        if (record.symbiosis <= threshold) != (revised.value <= threshold):
            report.flipped += 1
        report.log.append(
            revised.log_record(record.exchange_id, hits[i].id, user, threshold, "hindsight")
        )


def _consolidate(cycle: _Cycle, similarity: float, now: float) -> None:
    """Merge clusters of awake near-duplicates (cosine >= ``similarity``, same polarity,
    :func:`~memory.metabolism.resonance.says_same`) into their most used member."""
    records, unit = cycle.records, cycle.unit
    awake = [i for i, r in enumerate(records) if not r.dormant]
    if unit is None or len(awake) < 2:
        return
    sims = unit[awake] @ unit[awake].T

    def alike(a: int, b: int) -> bool:
        ia, ib = awake[a], awake[b]
        same_polarity = records[ia].polarity == records[ib].polarity
        return same_polarity and says_same(cycle.hits[ia].text, cycle.hits[ib].text)

    for group in clusters(sims >= similarity, alike):
        if len(group) > 1:
            _merge(cycle, [awake[a] for a in group], now)


def _merge(cycle: _Cycle, members: list[int], now: float) -> None:
    """Keep the most used (then strongest, then latest) of ``members``, reinforced once per
    other member and holding their provenance; the others become dormant."""
    records = cycle.records
    keep = max(
        members, key=lambda i: (records[i].uses, records[i].strength, -(records[i].event_at or 0))
    )
    kept = records[keep]
    sources = list(dict.fromkeys(s for i in members for s in records[i].provenance))
    cycle.put(
        keep,
        provenance=tuple(sources[-50:]),
        reinforcements=kept.reinforcements + len(members) - 1,
        strength=min(1.0, kept.strength + 0.2 * (len(members) - 1)),
        last_reinforced_at=now,
    )
    for i in members:
        if i != keep:
            cycle.put(i, dormant=True, consolidated_into=cycle.hits[keep].id)
            cycle.report.consolidated += 1


def _phases(cycle: _Cycle, threshold: float, config: MetabolismConfig) -> list[int]:
    """Phase (with hysteresis), dormancy and quadrant of every memory; returns the memories
    that may be promoted to the ``user`` tier (see :func:`_promotable`)."""
    report = cycle.report
    days = _active_days(cycle.records)
    promotable = []
    for i, record in enumerate(cycle.records):
        used = record.uses
        screened = next_screened(record, days, config)
        strength = effective_strength(
            np.array([record.strength]),
            np.array([record.last_used]),
            np.array([screened]),
            days,
            config,
            np.array([record.symbiosis]),
        )[0]
        dormant = bool(record.consolidated_into) or bool(strength < config.dormant_below)
        label = quadrant(record.symbiosis, threshold, used, record.importance)
        phase = "screened" if screened else "free"
        cycle.put(i, phase=phase, dormant=dormant, quadrant=label, uses_at_cycle=used)
        report.screened += screened
        report.dormant += dormant
        report.quadrants[label] = report.quadrants.get(label, 0) + 1
        if not dormant and _promotable(record):
            promotable.append(i)
    return promotable


def _active_days(records: Sequence[MemoryRecord]) -> np.ndarray:
    """The user's active days (:func:`~memory.metabolism.decay.active_days`) from the event
    times of their memories."""
    return active_days(np.array([r.event_time or 0.0 for r in records]))


def _promotable(record: MemoryRecord) -> bool:
    """A session memory (not a repulsor) that was used again on another day than it was said."""
    again = max(record.last_access_at, record.last_reinforced_at)
    return (
        record.tier == "session"
        and not record.repulsor
        and again > 0
        and _day(again) != _day(record.event_time or 0.0)
    )


def _promote(cycle: _Cycle, promotable: list[int], bandwidth_share: float) -> None:
    """Promote ``session -> user`` the most used of ``promotable``, at most
    ``max(1, ceil(bandwidth_share * memories))`` per cycle."""
    bandwidth = max(1, math.ceil(bandwidth_share * len(cycle.hits)))
    for i in sorted(promotable, key=lambda i: -cycle.records[i].uses)[:bandwidth]:
        cycle.put(i, tier="user")
        cycle.report.promoted += 1
