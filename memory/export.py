"""Export of one user's memories, as the ``memories export`` command does it."""

from __future__ import annotations

import logging
from typing import Any

from memory.errors import OutboxBusyError
from memory.service import MemoryService

log = logging.getLogger(__name__)


async def export_user(service: MemoryService, user: str, drain_timeout_s: float) -> list[Any]:
    """Every memory of ``user``, stored or still waiting in the outbox.

    When no proxy owns the outbox (it is not running), the outbox is drained into the store
    first, for up to ``drain_timeout_s``; what cannot be written now is exported as ``pending``.
    When a proxy is running, its outbox is read as it is.
    """
    try:
        await service.start()
    except OutboxBusyError:
        log.info("a proxy owns the outbox; exporting without draining it")
        async with service.reading():
            return await service.export(user)
    try:
        if not await service.flush(drain_timeout_s):
            log.warning(
                "%d exchanges could not be written to the store now; exported as pending",
                service.pending,
            )
        return await service.export(user)
    finally:
        await service.close(timeout_s=0)
