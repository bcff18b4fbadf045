"""One consistent view of a user's memories while the writer runs (for ``memories export``).

The writer moves an exchange from the outbox to the store in two steps: it writes the memory,
then deletes the outbox row. Read one after the other, the outbox and the store can therefore
show an exchange twice (outbox read before the move, store read after it) or not at all (store
read before, outbox read after). :func:`one_view` takes three reads in this order: the outbox
(``before``), the store, the outbox again (``after``), and returns every exchange once:

- an exchange in the store read is exported as stored, and every outbox copy of it (an exchange
  id among a stored memory's ``exchange_id`` or ``provenance``) is left out: the store's
  version wins;
- an exchange queued when the export began and not in the store read was either still queued
  at the second outbox read, or its row was deleted between the two reads, which the writer
  does only after its memory is in the store; in both cases it is in ``before`` or ``after``,
  so it is exported (as pending) and never lost.

Exchanges queued after the export began may or may not appear (each at most once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from memory.store.outbox import OutboxRow
from memory.types import Exchange, MemoryHit


def stored_json(user: str, hit: MemoryHit) -> dict[str, Any]:
    """A stored memory as exported: ``{"state": "stored", "id", "user", "text", "metadata"}``."""
    return {
        "state": "stored",
        "id": hit.id,
        "user": user,
        "text": hit.text,
        "metadata": hit.metadata,
    }


def pending_json(
    user: str, exchange: Exchange, attempts: int, last_error: str | None, spilled: bool = False
) -> dict[str, Any]:
    """A queued exchange as exported (``state`` ``pending``; ``metadata.spilled`` when it is
    held in memory because the outbox could not take it)."""
    metadata: dict[str, Any] = {
        "exchange": asdict(exchange),
        "attempts": attempts,
        "last_error": last_error,
    }
    if spilled:
        metadata["spilled"] = True
    return {
        "state": "pending",
        "id": exchange.id,
        "user": user,
        "text": exchange.text,
        "metadata": metadata,
    }


def exchange_ids(hit: MemoryHit) -> set[str]:
    """The exchanges a stored memory holds: its own and those that reinforced it."""
    ids = set(hit.record.provenance)
    if hit.record.exchange_id:
        ids.add(hit.record.exchange_id)
    return ids


def one_view(
    user: str,
    before: Iterable[OutboxRow],
    stored: list[MemoryHit],
    after: Iterable[OutboxRow],
    spilled: Iterable[Exchange] = (),
) -> list[dict[str, Any]]:
    """Stored memories, then pending exchanges (outbox order, then spilled ones), each exchange
    once (see the module docstring for why the three reads must be taken in this order)."""
    records = [stored_json(user, hit) for hit in stored]
    seen: set[str] = set()
    for hit in stored:
        seen |= exchange_ids(hit)
    rows = {row.seq: row for row in [*before, *after]}  # after's copy is newer
    for seq in sorted(rows):
        row = rows[seq]
        if row.exchange.id not in seen:
            seen.add(row.exchange.id)
            records.append(pending_json(user, row.exchange, row.attempts, row.last_error))
    for exchange in spilled:
        if exchange.id not in seen:
            seen.add(exchange.id)
            records.append(pending_json(user, exchange, 0, None, spilled=True))
    return records
