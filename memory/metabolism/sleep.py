"""The sleep cycle over one user's memories (:func:`metabolize_user`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory.config import MetabolismConfig
from memory.metabolism.clusters import clusters
from memory.metabolism.decay import DAY_S, active_days, effective_strength
from memory.metabolism.resonance import says_same
from memory.recall.index import session_order, unit_rows
from memory.record import (
    SCHEMA_VERSION,
    last_used,
    num,
    provenance,
    signals_of,
    split_exchange,
    uses,
)
from memory.score.symbiosis import RETENTION, Score, Scorer, Turn, next_turn_kind
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
    """Score-log records of revisions (for :class:`memory.audit.ScoreLog`)."""


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d")


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
    report = CycleReport(memories=len(hits))
    if not hits:
        return {}, report
    metas = [dict(h.metadata) for h in hits]
    updates: dict[str, dict[str, Any]] = {h.id: {} for h in hits}

    def put(i: int, **values: Any) -> None:
        updates[hits[i].id].update(values)
        metas[i].update(values)

    # Migration to schema 3: score memories written before scoring existed.
    unscored = [i for i, m in enumerate(metas) if "symbiosis" not in m]
    if unscored:
        turns = [Turn(*split_exchange(hits[i].text)) for i in unscored]
        for i, score in zip(unscored, scorer.score(turns), strict=True):
            put(i, **score.as_metadata(threshold), schema_version=SCHEMA_VERSION)
            put(i, importance=round(importance(*split_exchange(hits[i].text)), 4))
            report.migrated += 1
    # Hindsight: the next turn in the same session is implicit feedback.
    unit = unit_rows(vectors) if len(vectors) == len(hits) else None
    _, nxt = session_order(hits)
    for i, meta in enumerate(metas):
        j = int(nxt[i])
        if j < 0 or meta.get("symbiosis_provisional") is False:
            continue
        if not split_exchange(hits[i].text)[1] or not split_exchange(hits[j].text)[1]:
            continue  # single messages (ingested history): the next one is not a reaction
        signals = signals_of(meta)
        next_user = split_exchange(hits[j].text)[0]
        similarity = float(unit[i] @ unit[j]) if unit is not None else None
        signals["user_retention"] = RETENTION[next_turn_kind(next_user, similarity)]
        revised: Score = scorer.revise(signals)
        before = num(meta, "symbiosis", 0.5)
        put(i, **revised.as_metadata(threshold))
        report.revised += 1
        if (before <= threshold) != (revised.value <= threshold):
            report.flipped += 1
        report.log.append(
            revised.log_record(meta.get("exchange_id"), hits[i].id, user, threshold, "hindsight")
        )
    # Consolidation of near-duplicate clusters (same polarity, both awake).
    awake = [i for i, m in enumerate(metas) if not m.get("dormant")]
    if unit is not None and len(awake) > 1:
        sims = unit[awake] @ unit[awake].T

        def alike(a: int, b: int) -> bool:
            ia, ib = awake[a], awake[b]
            same_polarity = metas[ia].get("polarity") == metas[ib].get("polarity")
            return same_polarity and says_same(hits[ia].text, hits[ib].text)

        for group in clusters(sims >= config.consolidate_similarity, alike):
            members = [awake[a] for a in group]
            if len(members) < 2:
                continue
            keep = max(
                members,
                key=lambda i: (
                    uses(metas[i]),
                    num(metas[i], "strength", 1.0),
                    -num(metas[i], "event_at"),
                ),
            )
            sources = list(dict.fromkeys(s for i in members for s in provenance(metas[i])))
            put(
                keep,
                provenance=json.dumps(sources[-50:]),
                reinforcements=int(num(metas[keep], "reinforcements")) + len(members) - 1,
                strength=min(1.0, num(metas[keep], "strength", 1.0) + 0.2 * (len(members) - 1)),
                last_reinforced_at=now,
            )
            for i in members:
                if i != keep:
                    put(i, dormant=True, consolidated_into=hits[keep].id)
                    report.consolidated += 1
    # Phases (hysteresis), dormancy, promotion, quadrants.
    days = active_days(np.array([num(m, "event_at", num(m, "created_at")) for m in metas]))
    promotable = []
    for i, meta in enumerate(metas):
        used = uses(meta)
        screened = meta.get("phase") == "screened"
        window = used - int(num(meta, "uses_at_cycle"))
        if not screened and used >= config.screen_at:
            screened = True
        elif screened and window < config.free_below:
            idle = len(days) - np.searchsorted(days, math.floor(last_used(meta) / DAY_S), "right")
            if idle >= config.half_life_free_days:
                screened = False
        strength = effective_strength(
            np.array([num(meta, "strength", 1.0)]),
            np.array([last_used(meta)]),
            np.array([screened]),
            days,
            config,
            np.array([num(meta, "symbiosis", 0.5)]),
        )[0]
        dormant = bool(meta.get("consolidated_into")) or bool(strength < config.dormant_below)
        screened = bool(screened)
        label = quadrant(num(meta, "symbiosis", 0.5), threshold, used, num(meta, "importance", 1.0))
        put(
            i,
            phase="screened" if screened else "free",
            dormant=dormant,
            quadrant=label,
            uses_at_cycle=used,
        )
        report.screened += screened
        report.dormant += dormant
        report.quadrants[label] = report.quadrants.get(label, 0) + 1
        event = num(meta, "event_at", num(meta, "created_at"))
        again = max(num(meta, "last_access_at"), num(meta, "last_reinforced_at"))
        if (
            meta.get("tier") == "session"
            and not dormant
            and meta.get("polarity") != "repulsor"
            and again > 0
            and _day(again) != _day(event)
        ):
            promotable.append(i)
    bandwidth = max(1, math.ceil(config.promotion_bandwidth * len(hits)))
    for i in sorted(promotable, key=lambda i: -uses(metas[i]))[:bandwidth]:
        put(i, tier="user")
        report.promoted += 1
    return {k: v for k, v in updates.items() if v}, report
