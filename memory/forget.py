"""Erasure of one memory and of everything made from it (``memories forget``,
``DELETE /memory/{id}``).

Forgetting memory M of user U removes, in this order:

1. the memories consolidated into M by a sleep cycle (``consolidated_into`` pointing at M,
   followed transitively): they are dormant copies of what M says;
2. M's exchanges from memories M was itself consolidated into (their ``provenance``), so no
   surviving memory names an erased exchange;
3. U's contribution to the shared tier: a shared memory that says what an erased memory
   says (:func:`~memory.metabolism.resonance.says_same`) and counts U among its supporters
   loses U (``supporters``, ``confirmations``); it is deleted when its text is U's own words
   (the medoid was U's memory) or fewer than ``metabolism.shared_min_users`` supporters
   remain. The next sleep cycle re-shares what other users still say alike, without U;
4. the raw archive's copies and the outbox's queued rows of every erased exchange;
5. the memories themselves (the store logs the deletion first, so other replicas forget too),
   masked in this process's index at once.

The score log is kept: it holds content hashes and scores, no text, and is hash-chained
(removing entries would break verification of every later one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from memory.metabolism.resonance import says_same, user_tag
from memory.record import encoded
from memory.snapshot import exchange_ids
from memory.store.layout import SHARED
from memory.types import MemoryHit


@dataclass
class Erasure:
    """What one :func:`erase` removed: memory ids, exchange ids, archive and outbox rows,
    and shared memories deleted or with the user taken out of their supporters."""

    memories: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)
    archived: int = 0
    queued: int = 0
    shared_deleted: list[str] = field(default_factory=list)
    shared_updated: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The report as ``DELETE /memory/{id}`` returns it."""
        return {"deleted": self.memories[0], **vars(self)}


def consolidated_from(target: str, hits: list[MemoryHit]) -> list[MemoryHit]:
    """Memories consolidated into ``target``, directly or through others (each once)."""
    into: dict[str, list[MemoryHit]] = {}
    for hit in hits:
        if hit.record.consolidated_into:
            into.setdefault(hit.record.consolidated_into, []).append(hit)
    found: dict[str, MemoryHit] = {}
    todo = [target]
    while todo:
        for hit in into.get(todo.pop(), []):
            if hit.id not in found and hit.id != target:
                found[hit.id] = hit
                todo.append(hit.id)
    return list(found.values())


async def erase(service: Any, user: str, mid: str) -> Erasure | None:
    """Forget memory ``mid`` of ``user`` and what was made from it (module docstring);
    None when the user has no such memory. ``service`` is a started
    :class:`~memory.service.MemoryService`.

    Raises:
        StoreError: the store, archive or outbox failed (what was removed stays removed; run
        it again to finish).
    """
    hit = await service.store.get(user, mid)
    if hit is None:
        return None
    hits = await service.store.all(user)
    erased = [hit, *consolidated_from(mid, hits)]
    report = Erasure(memories=[h.id for h in erased])
    report.exchanges = sorted({i for h in erased for i in exchange_ids(h)})
    await _unlink_provenance(service, user, hits, set(report.memories), set(report.exchanges))
    if service.metabolism.shared:
        await _leave_shared(service, user, [h.text for h in erased], report)
    if service.archive is not None:
        report.archived = await asyncio.to_thread(service.archive.delete, user, report.exchanges)
    report.queued = service.outbox.drop(user, set(report.exchanges))
    for memory in report.memories:
        await service.store.delete(user, memory)
    service.cache.removed(user, frozenset(report.memories))
    return report


async def _unlink_provenance(
    service: Any, user: str, hits: list[MemoryHit], erased: set[str], gone: set[str]
) -> None:
    """Take erased exchanges out of the provenance of the memories that survive."""
    updates = {
        h.id: encoded(provenance=tuple(p for p in h.record.provenance if p not in gone))
        for h in hits
        if h.id not in erased and gone.intersection(h.record.provenance)
    }
    if updates:
        await service.store.update_metadata(user, updates)


async def _leave_shared(service: Any, user: str, texts: list[str], report: Erasure) -> None:
    """Take ``user`` out of the shared memories their erased ``texts`` support."""
    tag = user_tag(user)
    minimum = service.metabolism.shared_min_users
    updates: dict[str, dict[str, Any]] = {}
    for shared in await service.store.all(SHARED):
        record = shared.record
        if tag not in record.supporters or not any(says_same(shared.text, t) for t in texts):
            continue
        supporters = tuple(s for s in record.supporters if s != tag)
        if shared.text in texts or len(supporters) < minimum:
            await service.store.delete(SHARED, shared.id)
            report.shared_deleted.append(shared.id)
        else:
            updates[shared.id] = encoded(supporters=supporters, confirmations=len(supporters))
            report.shared_updated.append(shared.id)
    if updates:
        await service.store.update_metadata(SHARED, updates)
    if service.shared is not None and (report.shared_deleted or report.shared_updated):
        await service.shared.load()
