"""``memories forget ID --user U``: erasure from the command line.

With no proxy running, the store is opened here and :func:`memory.forget.erase` runs in this
process. When a proxy owns the outbox (it is running on this config), the erasure is asked of
it over its admin API (``DELETE /memory/ID`` on ``listen.host:port``, with ``admin.token``),
so that its in-memory index forgets at once too; an erasure done behind its back would stay
recallable from that index until it restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from memory.errors import MemoryLayerError, OutboxBusyError
from memory.service import MemoryService
from proxy.app import memory_for
from proxy.commands import Commands, counted, fail
from proxy.config import Config


def add_parsers(memory_commands: Commands[argparse.ArgumentParser]) -> None:
    """Register ``memories forget``."""
    command = memory_commands.add_parser(
        "forget",
        help="erase one memory, what was consolidated from it and its shared-tier share",
        description="Erase a memory: the memory, the memories a sleep cycle consolidated into "
        "it, its archived and queued exchanges, and the user's support of shared memories "
        "that say the same. Cannot be undone.",
    )
    command.add_argument("id", help="the memory's id, or a prefix of it unique for the user")
    command.add_argument("--user", required=True, help="whose memory it is")
    command.add_argument("--config", type=Path, help="YAML config file")
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(config: Config, args: argparse.Namespace) -> int | None:
    """The exit status of ``memories forget``, or None for another sub-command."""
    if args.memories_command != "forget":
        return None
    return asyncio.run(forget(config, args.user, args.id, args.yes))


async def forget(config: Config, user: str, ident: str, yes: bool) -> int:
    """Erase memory ``ident`` of ``user`` here, or through the running proxy; exit status."""
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        try:
            await service.start()
        except OutboxBusyError:
            return await _through_proxy(config, session, user, ident, yes)
        except MemoryLayerError as exc:
            return fail(f"cannot open the memory store: {exc}")
        try:
            return await _here(service, user, ident, yes)
        except MemoryLayerError as exc:
            return fail(f"erasure stopped (run it again to finish): {exc}")
        finally:
            await service.close(timeout_s=0)


async def _here(service: MemoryService, user: str, ident: str, yes: bool) -> int:
    hits = await service.store.all(user)
    found = [h for h in hits if h.id == ident] or [h for h in hits if h.id.startswith(ident)]
    if len(found) != 1:
        what = "no memory" if not found else f"{len(found)} memories"
        return fail(f"{what} of {user!r} with id {ident!r} (see: memories list --user {user})")
    if not yes and not confirm(found[0].id, found[0].text):
        return 1
    erased = await service.forget(user, found[0].id)
    if erased is None:  # removed meanwhile
        return fail(f"memory {found[0].id} of {user!r} is already gone")
    report(erased.as_json())
    return 0


def confirm(mid: str, text: str) -> bool:
    """Ask on the terminal; False (not confirmed, said in one line) otherwise."""
    if not sys.stdin.isatty():
        fail(f"stdin is not a terminal: pass --yes to forget {mid}")
        return False
    shown = text if len(text) <= 200 else text[:199] + "…"
    answer = input(f"Forget {mid}?\n  {shown}\nThis cannot be undone. [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    fail("not forgotten")
    return False


def report(erased: dict[str, Any]) -> None:
    """One summary line of an erasure on stderr."""
    shared = len(erased["shared_deleted"]) + len(erased["shared_updated"])
    print(
        f"forgot {erased['deleted']}: {counted(len(erased['memories']), 'memory', 'memories')}, "
        f"{counted(len(erased['exchanges']), 'exchange', 'exchanges')} "
        f"({erased['archived']} archived, {erased['queued']} queued), "
        f"{counted(shared, 'shared memory', 'shared memories')}",
        file=sys.stderr,
    )


async def _through_proxy(
    config: Config, session: aiohttp.ClientSession, user: str, ident: str, yes: bool
) -> int:
    host = "127.0.0.1" if config.listen.host in ("0.0.0.0", "::", "") else config.listen.host
    url = f"http://{host}:{config.listen.port}/memory/{ident}"
    token = config.admin.token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if not yes:
        return fail(f"a proxy is running on {host}:{config.listen.port}: pass --yes to forget")
    try:
        async with session.delete(url, params={"user": user}, headers=headers) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as exc:
        return fail(f"a proxy owns the outbox but {url} did not answer: {exc}")
    if response.status != 200:
        error = body.get("error", body) if isinstance(body, dict) else body
        hint = " (a running proxy takes the full id only)" if response.status == 404 else ""
        return fail(f"the running proxy said {response.status}: {error}{hint}")
    report(body)
    return 0
