"""Resonance: the shared tier, built from what several users say alike."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memory.config import MetabolismConfig
from memory.metabolism.clusters import clusters
from memory.record import NEUTRAL_SYMBIOSIS, SCHEMA_VERSION, MemoryRecord, encoded, split_exchange
from memory.types import MemoryHit
from memory.write.gate import PERSONAL, STOP, WORD

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
    record = hit.record
    if record.tier != "user" or record.dormant or record.repulsor:
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
) -> tuple[list[NewShared], dict[str, dict[str, Any]], Resonance]:
    """One resonance pass over every user's awake memories.

    Args:
        memories: ``(user, memory, unit vector of shape (dim,))`` for every awake memory of
            every user (any tier or polarity: all authenticated ones may contradict; only
            :func:`shareable` ones confirm).
        shared: the shared tier's memories, with ``shared_vectors`` of shape
            ``(len(shared), dim)``.

    Only memories of authenticated users (``MemoryRecord.authenticated``: a token or Open
    WebUI JWT proved who said them) are evidence, for or against: claimed user names cost
    nothing to invent, so four "sybils" are one client.

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
    # a claimed user name costs nothing to invent: only proven users are evidence (issue 15)
    proven = [m for m in memories if m[1].record.authenticated]
    voices = _Voices(proven, shared_vectors, config.shared_similarity)
    report = Resonance(shared=len(shared), candidates=int(voices.can_confirm.sum()))
    updates, covered = _review_shared(voices, shared, shared_vectors, config, now, report)
    new = _new_shared(voices, covered, config, now, report)
    return new, updates, report


NewShared = tuple[str, str, np.ndarray, dict[str, Any]]
"""A new shared memory: ``(id, text, unit vector of shape (dim,), metadata)``."""


class _Voices:
    """Every user's awake memories as evidence for or against a text: their unit vectors,
    shape ``(n, dim)``, user tags, texts, which may confirm (:func:`shareable`) and which are
    repulsors."""

    def __init__(
        self,
        memories: Sequence[tuple[str, MemoryHit, np.ndarray]],
        shared_vectors: np.ndarray,
        similarity: float,
    ) -> None:
        if not memories:
            dim = shared_vectors.shape[1] if shared_vectors.ndim == 2 else 0
            self.vectors = np.zeros((0, dim))
        else:
            self.vectors = np.stack([v for _, _, v in memories]).astype(np.float32)
        self.hits = [h for _, h, _ in memories]
        self.tags = [user_tag(u) for u, _, _ in memories]
        self.texts = [h.text for h in self.hits]
        self.can_confirm = np.array([shareable(h) for h in self.hits], dtype=bool)
        self.repulsor = np.array([h.record.repulsor for h in self.hits], dtype=bool)
        self.similarity = similarity

    def verdict(self, text: str, sims: np.ndarray) -> tuple[set[str], set[str], list[int]]:
        """Users confirming and contradicting ``text`` (``sims``: cosine of each memory to
        it, shape ``(n,)``), and the memories that confirm it."""
        near = np.flatnonzero(sims >= self.similarity).tolist()
        same = {i: says_same(text, self.texts[i]) for i in near}
        confirming = [i for i in near if self.can_confirm[i] and same[i]]
        confirm = {self.tags[i] for i in confirming}
        against = {self.tags[i] for i in near if self.repulsor[i] or not same[i]}
        return confirm, against - confirm, confirming


def _review_shared(
    voices: _Voices,
    shared: Sequence[MemoryHit],
    shared_vectors: np.ndarray,
    config: MetabolismConfig,
    now: float,
    report: Resonance,
) -> tuple[dict[str, dict[str, Any]], np.ndarray]:
    """Confirm or drop each shared memory; returns the metadata updates and which of the
    users' memories an existing shared memory already says (shape ``(n,)`` bool)."""
    updates: dict[str, dict[str, Any]] = {}
    covered = np.zeros(len(voices.hits), dtype=bool)
    for s, hit in enumerate(shared):
        sims = voices.vectors @ shared_vectors[s] if len(voices.hits) else np.zeros(0)
        confirm, against, confirming = voices.verdict(hit.text, sims)
        covered[confirming] = True  # what they say is shared already
        if len(confirm) < config.shared_min_users:
            reason: str | None = "unsupported"
        elif len(against) >= len(confirm):
            reason = "contradicted"
        else:
            reason = None
        update: dict[str, Any] = encoded(
            confirmations=len(confirm),
            contradictions=len(against),
            supporters=tuple(sorted(confirm)),
            dormant=reason is not None,
            dropped=reason or "",
        )
        was = hit.record.dropped
        if reason == "unsupported" and was != reason:
            report.dropped_unsupported += 1
        elif reason == "contradicted" and was != reason:
            report.dropped_contradicted += 1
        elif reason is None:
            report.confirmed += 1
            update["last_reinforced_at"] = now
        updates[hit.id] = update
    return updates, covered


def _new_shared(
    voices: _Voices, covered: np.ndarray, config: MetabolismConfig, now: float, report: Resonance
) -> list[NewShared]:
    """New shared memories: clusters of shareable memories no shared memory says yet,
    confirmed by enough users and not contradicted, best confirmed first, within the
    bandwidth."""
    pool = np.flatnonzero(voices.can_confirm & ~covered)
    if len(pool) < config.shared_min_users:
        return []
    sims = voices.vectors[pool] @ voices.vectors[pool].T
    texts, tags = voices.texts, voices.tags
    groups = clusters(
        sims >= config.shared_similarity, lambda a, b: says_same(texts[pool[a]], texts[pool[b]])
    )
    found = []
    for members in groups:
        if len({tags[pool[a]] for a in members}) < config.shared_min_users:
            continue
        medoid = pool[max(members, key=lambda a: float(sims[a, members].sum()))]
        vector = voices.vectors[medoid]
        confirm, against, confirming = voices.verdict(texts[medoid], voices.vectors @ vector)
        if len(confirm) >= config.shared_min_users and len(against) < len(confirm):
            found.append((len(confirm), int(medoid), confirm, against, confirming))
    bandwidth = max(1, math.ceil(config.shared_bandwidth * report.candidates))
    new = []
    for _, medoid, confirm, against, confirming in sorted(found, key=lambda f: -f[0])[:bandwidth]:
        hit = voices.hits[medoid]
        symbiosis = [voices.hits[i].record.symbiosis for i in confirming]
        meta = _shared_metadata(hit.record, symbiosis, confirm, len(against), now)
        sid = "shared-" + hashlib.sha256(hit.text.encode("utf-8")).hexdigest()[:32]
        new.append((sid, hit.text, voices.vectors[medoid], meta))
        report.promoted += 1
    return new


def _shared_metadata(
    medoid: MemoryRecord, symbiosis: list[float], confirm: set[str], against: int, now: float
) -> dict[str, Any]:
    """What a new shared memory stores: the mean symbiosis of the memories that confirm it,
    the counts and pseudonymous tags of its users, and the medoid's event time."""
    return encoded(
        tier="shared",
        polarity="attractor",
        symbiosis=round(float(np.mean(symbiosis)), 6) if symbiosis else NEUTRAL_SYMBIOSIS,
        confirmations=len(confirm),
        contradictions=against,
        supporters=tuple(sorted(confirm)),
        created_at=now,
        event_at=medoid.event_at if medoid.event_at is not None else now,
        strength=1.0,
        dormant=False,
        dropped="",
        schema_version=SCHEMA_VERSION,
        embedder=medoid.embedder or "",
    )
