"""Resonance: the shared tier, built from what several users say alike."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memory.config import MetabolismConfig
from memory.metabolism.clusters import clusters
from memory.record import SCHEMA_VERSION, num, split_exchange
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
