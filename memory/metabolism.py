"""The metabolism of memory: write gate, reinforcement, decay, consolidation, tiers, quadrants.

- **Write gate** (:func:`importance`): a sigmoid of lexical features, after Adaptive Neural
  Memory's importance gate (a learned MLP there; fixed, explainable weights here). Greetings
  and acknowledgements stay in the raw archive only; personal facts, preferences, decisions and
  corrections become memories.
- **Decay** (:func:`effective_strength`): ``S = S0 * 2 ** (-a / H)`` where ``a`` counts the
  user's *active days* (days on which the user said anything) since the memory was last used
  or reinforced, and ``H`` is the half-life of its phase: **screened** (often used, slow decay)
  or **free** (rarely used, fast decay), after DynamicLoRA's screened/free phases. Counting
  active days, not calendar days, means a user who is away for a year comes back to the
  memories they left (a months-old fact is not forgotten for being months old); unlike
  Adaptive Neural Memory's ``S *= 0.995`` per write, a memory fades only while its user keeps
  talking about other things. Below ``dormant_below`` a memory is **dormant**: kept, not
  recalled, revived when an exchange reinforces it.
- **Sleep cycle** (:func:`metabolize_user`): hindsight rescoring (the user's next turn in
  the same session is implicit feedback on an exchange; single ingested messages have none),
  phase changes with hysteresis, consolidation of near-duplicate clusters into one
  reinforced memory, promotion ``session -> user`` on recurrence across distinct days
  (bandwidth-limited), quadrant labels, and the migration of older records to schema 3.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory.config import MetabolismConfig
from memory.score.symbiosis import RETENTION, Score, Scorer, Turn, next_turn_kind
from memory.types import MemoryHit

DAY_S = 86400.0
GREETING = re.compile(
    r"^\W*(?:(?:hi|hello|hey|hiya|yo|ok|okay|k|thanks|thank you|thx|ty|cheers|bye|goodbye|"
    r"good (?:morning|night|evening|afternoon)|cool|nice|great|lol|haha|yes|yeah|yep|no|nope|"
    r"sure|alright|got it|sounds good|you too|welcome|np|see you)\W*)+$",
    re.IGNORECASE,
)
"""A turn made only of greetings and acknowledgements."""
PERSONAL = re.compile(
    r"\b(?:I|I'm|I've|I'll|I'd|my|mine|me|we|our|ours|myself)\b"
    r"|\b(?:actually|remember|correction|instead|prefer|favou?rite|allergic|decided)\b",
    re.IGNORECASE,
)
"""First-person facts, preferences, decisions and corrections."""
STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "why",
        "when",
        "where",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "you",
        "your",
        "yours",
        "i",
        "me",
        "my",
        "we",
        "our",
        "they",
        "them",
        "their",
        "he",
        "she",
        "him",
        "her",
        "his",
        "hers",
        "so",
        "very",
        "just",
        "also",
        "too",
        "then",
        "than",
        "ok",
        "okay",
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "please",
        "sure",
        "well",
        "good",
        "great",
        "nice",
        "really",
    ]
)
WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}|\d+")


def importance(user: str, reply: str = "") -> float:
    """Sigmoid importance of an exchange in (0, 1):
    ``sigmoid(-1.5 + 0.5 * min(content words, 8) + 1.5 * personal + 0.4 * min(names and
    numbers, 3) - 5 * greeting)``, content words counted over both turns, ``personal`` and
    ``greeting`` on the user's turn (:data:`PERSONAL`, :data:`GREETING`). Round weights, set
    so that a greeting or "ok thanks" lands near 0, a personal statement above 0.5, and any
    turn with three content words at 0.5 or more.

    >>> importance("hi") < 0.05, importance("ok thanks", "You're welcome!") < 0.05
    (True, True)
    >>> importance("I prefer green tea") > 0.5, importance("Ann: I adopted a greyhound") > 0.5
    (True, True)
    """
    words = WORD.findall(f"{user} {reply}")
    content = sum(1 for w in words if w.lower() not in STOP)
    names = sum(1 for w in WORD.findall(user)[1:] if w[0].isupper() or w.isdigit())
    z = -1.5 + 0.5 * min(content, 8) + 0.4 * min(names, 3)
    if PERSONAL.search(user):
        z += 1.5
    if GREETING.match(user):
        z -= 5.0
    return 1.0 / (1.0 + math.exp(-z))


NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def says_same(a: str, b: str, jaccard: float = 0.6) -> bool:
    """Whether two texts that embed alike also *say* the same: the same numbers, and content
    words (lower-cased, stop words out) overlapping by at least ``jaccard``. Embeddings of a
    small model put "the 823rd pebble is red" and "the 537th pebble is red" above 0.95
    cosine; merging them would lose a fact.

    >>> says_same("the 823rd pebble is red", "the 537th pebble is red")
    False
    >>> says_same("I live in Lisbon now", "i live in lisbon now!")
    True
    """
    if sorted(NUMBER.findall(a)) != sorted(NUMBER.findall(b)):
        return False
    wa = {w.lower() for w in WORD.findall(a) if w.lower() not in STOP}
    wb = {w.lower() for w in WORD.findall(b) if w.lower() not in STOP}
    if not wa and not wb:
        return a.strip().lower() == b.strip().lower()
    return len(wa & wb) / len(wa | wb) >= jaccard


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


def num(meta: dict[str, Any], key: str, default: float = 0.0) -> float:
    """A numeric metadata value, or ``default``."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def last_used(meta: dict[str, Any]) -> float:
    """When a memory was last said, recalled or reinforced (Unix seconds; 0 if unknown)."""
    return max(
        num(meta, "event_at", num(meta, "created_at")),
        num(meta, "last_access_at"),
        num(meta, "last_reinforced_at"),
    )


def uses(meta: dict[str, Any]) -> int:
    """Recalls plus reinforcements of a memory."""
    return int(num(meta, "access_count") + num(meta, "reinforcements"))


def signals_of(meta: dict[str, Any]) -> dict[str, float]:
    """The stored symbiosis signals of a memory (``{}`` when unscored or malformed)."""
    raw = meta.get("symbiosis_signals")
    if not isinstance(raw, str):
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def provenance(meta: dict[str, Any]) -> list[str]:
    """Source exchange ids of a memory (stored as a JSON list)."""
    raw = meta.get("provenance")
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return [raw]
        return [str(x) for x in data] if isinstance(data, list) else [str(data)]
    return []


def split_exchange(text: str) -> tuple[str, str]:
    """``(user, assistant)`` of a stored memory text (``User: ...\\nAssistant: ...``), or the
    whole text as the user's turn.

    >>> split_exchange("User: hi\\nAssistant: hello")
    ('hi', 'hello')
    """
    if text.startswith("User: ") and "\nAssistant: " in text:
        user, reply = text[6:].split("\nAssistant: ", 1)
        return user, reply
    return text, ""


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
    from memory import SCHEMA_VERSION
    from memory.index import session_order, unit_rows

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


def user_tag(user: str) -> str:
    """The pseudonymous tag a shared memory keeps of a user who confirmed or contradicted it:
    16 hex characters of ``sha256(user)`` (counts distinct users without naming them).

    >>> user_tag("alice")
    '2bd806c97f0e00af'
    """
    return hashlib.sha256(user.encode("utf-8")).hexdigest()[:16]


def shareable(hit: MemoryHit) -> bool:
    """Whether a user's memory may confirm a shared one: long-term (tier ``user``), awake, an
    attractor, and not personal (no first person, preference or correction in the user's turn:
    :data:`PERSONAL`), so "I live in Lisbon" said by three users is never shared."""
    meta = hit.metadata
    if meta.get("tier") != "user" or meta.get("dormant") or meta.get("polarity") == "repulsor":
        return False
    return not PERSONAL.search(split_exchange(hit.text)[0])


@dataclass
class Resonance:
    """What one resonance pass did to the shared tier (counts)."""

    candidates: int = 0
    shared: int = 0
    promoted: int = 0
    confirmed: int = 0
    dropped_contradicted: int = 0
    dropped_unsupported: int = 0


def resonate(
    memories: Sequence[tuple[str, MemoryHit, np.ndarray]],
    shared: Sequence[MemoryHit],
    shared_vectors: np.ndarray,
    config: MetabolismConfig,
    now: float,
) -> tuple[list[tuple[str, str, np.ndarray, dict[str, Any]]], dict[str, dict[str, Any]], Resonance]:
    """One resonance pass over every user's awake memories.

    Args:
        memories: ``(user, memory, unit vector of shape (dim,))`` for every awake memory of
            every user (any tier or polarity: all may contradict; only :func:`shareable` ones
            confirm).
        shared: the shared tier's memories, with ``shared_vectors`` of shape
            ``(len(shared), dim)``.

    A user **confirms** a shared memory (or a candidate cluster) with a shareable memory of
    cosine >= ``shared_similarity`` that :func:`says_same`; a user **contradicts** it with a
    memory as close that says something else, or that is a repulsor, and does not also
    confirm it. A shared memory confirmed by fewer than ``shared_min_users`` users, or
    contradicted by at least as many users as confirm it, is dropped (made dormant with
    ``dropped`` set to the reason; recall skips it; a later cycle can bring it back). New
    shared memories are clusters of shareable memories of at least ``shared_min_users``
    distinct users, not contradicted as above and not already shared; at most
    ``max(1, ceil(shared_bandwidth * candidates))`` per pass, best confirmed first. A shared
    memory's text is the cluster's medoid (the member closest to the others); it keeps only
    pseudonymous user tags (:func:`user_tag`), never user ids or memory ids.

    Returns:
        ``(new, updates, report)``: new shared memories as ``(id, text, vector, metadata)``,
        metadata updates of existing ones (id -> keys), and counts.
    """
    from memory import SCHEMA_VERSION

    report = Resonance(shared=len(shared))
    if not memories:
        vectors = np.zeros((0, shared_vectors.shape[1] if shared_vectors.ndim == 2 else 0))
    else:
        vectors = np.stack([v for _, _, v in memories]).astype(np.float32)
    tags = [user_tag(u) for u, _, _ in memories]
    texts = [h.text for _, h, _ in memories]
    can_confirm = np.array([shareable(h) for _, h, _ in memories], dtype=bool)
    repulsor = np.array([h.metadata.get("polarity") == "repulsor" for _, h, _ in memories])
    report.candidates = int(can_confirm.sum())

    def verdict(text: str, sims: np.ndarray) -> tuple[set[str], set[str], list[int]]:
        """Users confirming and contradicting ``text``, and the memories that confirm it."""
        near = np.flatnonzero(sims >= config.shared_similarity).tolist()
        same = {i: says_same(text, texts[i]) for i in near}
        confirming = [i for i in near if can_confirm[i] and same[i]]
        confirm = {tags[i] for i in confirming}
        against = {tags[i] for i in near if repulsor[i] or not same[i]}
        return confirm, against - confirm, confirming

    updates: dict[str, dict[str, Any]] = {}
    covered = np.zeros(len(memories), dtype=bool)
    for s, hit in enumerate(shared):
        sims = vectors @ shared_vectors[s] if len(memories) else np.zeros(0)
        confirm, against, confirming = verdict(hit.text, sims)
        covered[confirming] = True  # what they say is shared already
        if len(confirm) < config.shared_min_users:
            reason: str | None = "unsupported"
        elif len(against) >= len(confirm):
            reason = "contradicted"
        else:
            reason = None
        was = hit.metadata.get("dropped")
        update: dict[str, Any] = {
            "confirmations": len(confirm),
            "contradictions": len(against),
            "supporters": json.dumps(sorted(confirm)),
            "dormant": reason is not None,
            "dropped": reason or "",
        }
        if reason == "unsupported" and was != reason:
            report.dropped_unsupported += 1
        elif reason == "contradicted" and was != reason:
            report.dropped_contradicted += 1
        elif reason is None:
            report.confirmed += 1
            update["last_reinforced_at"] = now
        updates[hit.id] = update
    # New clusters among shareable memories that no shared memory already says.
    pool = np.flatnonzero(can_confirm & ~covered)
    new: list[tuple[str, str, np.ndarray, dict[str, Any]]] = []
    if len(pool) >= config.shared_min_users:
        sims = vectors[pool] @ vectors[pool].T
        groups = clusters(
            sims >= config.shared_similarity,
            lambda a, b: says_same(texts[pool[a]], texts[pool[b]]),
        )
        found = []
        for members in groups:
            if len({tags[pool[a]] for a in members}) < config.shared_min_users:
                continue
            medoid = pool[max(members, key=lambda a: float(sims[a, members].sum()))]
            confirm, against, confirming = verdict(texts[medoid], vectors @ vectors[medoid])
            if len(confirm) >= config.shared_min_users and len(against) < len(confirm):
                found.append((len(confirm), int(medoid), confirm, against, confirming))
        bandwidth = max(1, math.ceil(config.shared_bandwidth * report.candidates))
        best = sorted(found, key=lambda f: -f[0])[:bandwidth]
        for support, medoid, confirm, against, confirming in best:
            _, hit, _ = memories[medoid]
            symbiosis = [num(memories[i][1].metadata, "symbiosis", 0.5) for i in confirming]
            text = hit.text
            meta = {
                "tier": "shared",
                "polarity": "attractor",
                "symbiosis": round(float(np.mean(symbiosis)), 6) if symbiosis else 0.5,
                "confirmations": support,
                "contradictions": len(against),
                "supporters": json.dumps(sorted(confirm)),
                "created_at": now,
                "event_at": num(hit.metadata, "event_at", now),
                "strength": 1.0,
                "dormant": False,
                "dropped": "",
                "schema_version": SCHEMA_VERSION,
                "embedder": hit.metadata.get("embedder", ""),
            }
            sid = "shared-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
            new.append((sid, text, vectors[medoid], meta))
            report.promoted += 1
    return new, updates, report
