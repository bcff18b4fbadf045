"""The spill queue: exchanges the outbox could not take (a full disk, an I/O error, a read-only
file), kept in memory, in arrival order, until the outbox takes them again.

While anything is spilled, new exchanges queue behind it (never past it), so the outbox
receives every exchange in the order it was answered. The queue is bounded
(``memory.spill_max``); an exchange arriving when it is full is not kept, counted in
:attr:`Spill.dropped` and logged as an error, each time: what is already spilled (the oldest,
longest unsaved exchanges) is never pushed out by newer ones. Spilled exchanges live only in
this process: a restart or crash while spilling loses them (they are counted in the log).
"""

from __future__ import annotations

import logging
from collections import deque

from memory.errors import StoreError
from memory.store.outbox import Outbox
from memory.types import Exchange

log = logging.getLogger(__name__)


class Spill:
    """A bounded in-memory queue in front of ``outbox``: :meth:`put` instead of
    ``outbox.append``, :meth:`retry` periodically. Synchronous, like the outbox."""

    def __init__(self, outbox: Outbox, max_items: int) -> None:
        self.outbox = outbox
        self.max_items = max_items
        self.queue: deque[Exchange] = deque()
        self.failing = False
        """Whether the last attempt to append to the outbox failed."""
        self.last_error: str | None = None
        self.spilled = 0
        """Exchanges that went to the spill queue since start."""
        self.dropped = 0
        """Exchanges lost since start: the spill queue was full (or the proxy stopped)."""

    @property
    def unsaved(self) -> bool:
        """Whether the outbox cannot take exchanges now (something is spilled, or the last
        append failed): a response answered now may not be remembered."""
        return self.failing or bool(self.queue)

    def put(self, exchange: Exchange) -> bool:
        """Queue ``exchange``: into the outbox once everything spilled before it is there,
        else at the end of the spill queue. Returns True when it is in the outbox now.
        Never raises for a failing outbox; a full spill queue drops ``exchange`` (logged)."""
        if self.retry():
            try:
                self.outbox.append(exchange)
            except StoreError as exc:
                self._failed(exc)
            else:
                self._recovered(0)
                return True
        if len(self.queue) >= self.max_items:
            self.dropped += 1
            log.error(
                "memory LOST: exchange %s of user %r not saved: the outbox cannot take it (%s) "
                "and the spill queue is full (memory.spill_max=%d); %d lost since start",
                exchange.id,
                exchange.scope.user,
                self.last_error,
                self.max_items,
                self.dropped,
            )
            return False
        self.queue.append(exchange)
        self.spilled += 1
        return False

    def retry(self) -> bool:
        """Move spilled exchanges into the outbox, oldest first, until one fails; returns
        whether the spill queue is empty now."""
        moved = 0
        while self.queue:
            try:
                self.outbox.append(self.queue[0])
            except StoreError as exc:
                self._failed(exc)
                return False
            self.queue.popleft()
            moved += 1
        if moved:
            self._recovered(moved)
        return True

    def _recovered(self, moved: int) -> None:
        if self.failing:
            self.failing = False
            log.error(
                "outbox recovered: it takes exchanges again; %d spilled exchanges moved into it",
                moved,
            )

    def _failed(self, exc: StoreError) -> None:
        self.last_error = str(exc)
        if not self.failing:
            self.failing = True
            log.error(
                "outbox cannot take exchanges (%s): keeping them in memory (at most %d, "
                "memory.spill_max) and retrying; answers are not saved until it recovers",
                exc,
                self.max_items,
            )

    def abandon(self) -> None:
        """At shutdown: count and log what is still spilled (it is lost with the process)."""
        if self.queue:
            self.dropped += len(self.queue)
            log.error(
                "memory LOST: %d spilled exchanges could not be written to the outbox before "
                "shutdown (%s)",
                len(self.queue),
                self.last_error,
            )
            self.queue.clear()

    def snapshot(self) -> dict[str, object]:
        """``{"ok", "spilled", "spilled_total", "dropped", "error"}`` for ``/healthz``:
        ``spilled`` is held now, ``spilled_total`` since start."""
        return {
            "ok": not self.unsaved,
            "spilled": len(self.queue),
            "spilled_total": self.spilled,
            "dropped": self.dropped,
            "error": self.last_error if self.unsaved else None,
        }
