"""``memories import PATH``: chat histories and memory exports into a user's memories.

Formats and how each is read: :mod:`memory.importers`. Chat histories and latent-memory
summaries go through the ingest path (outbox, writer, symbiosis scoring), so an imported
memory is made exactly as a live one; the proxy's own export is restored as it was. Importing
a file again adds nothing: exchanges whose content address is already stored or queued are
skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from memory.config import default_outbox_path
from memory.errors import ImportFormatError, MemoryLayerError, OutboxBusyError
from memory.importers import FORMATS, Parsed, read
from memory.importers.canonical import known_exchanges, restore
from memory.ingest import drain, exchanges
from memory.service import MemoryService
from proxy.app import memory_for
from proxy.commands import PROG, Commands, counted, fail
from proxy.config import Config


def add_parsers(memory_commands: Commands[argparse.ArgumentParser]) -> None:
    """Register ``memories import``."""
    command = memory_commands.add_parser(
        "import",
        help="import a ChatGPT, Open WebUI, latent-memory or memories-export file",
        description="Import chat history or stored memories into a user's memories. PATH is a "
        "file, or the folder of a two-file format (embeddings.csv or .npy with metadata.json). "
        "Pickle files are refused: unpickling can run code.",
    )
    command.add_argument("path", type=Path, metavar="PATH", help="file or folder to import")
    command.add_argument("--user", required=True, help="whose memories these become")
    command.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        metavar="FORMAT",
        help=f"one of {', '.join(FORMATS)} (default: auto, detected from the content)",
    )
    command.add_argument("--config", type=Path, help="YAML config file")
    command.add_argument("--dry-run", action="store_true", help="parse and count, write nothing")


def run(config: Config, args: argparse.Namespace) -> int | None:
    """The exit status of ``memories import``, or None for another sub-command."""
    if args.memories_command != "import":
        return None
    if not args.path.exists():
        return fail(f"{args.path}: no such file or folder")
    try:
        parsed = read(args.path, args.format, args.user, time.time())
    except ImportFormatError as exc:
        return fail(str(exc))
    for problem in parsed.problems:
        print(f"{PROG}: {args.path}: {problem} (skipped)", file=sys.stderr)
    if args.dry_run:
        print(f"{args.path}: {parsed.format}, {_size(parsed)}; nothing written", file=sys.stderr)
        return 0
    return asyncio.run(import_parsed(config, parsed, args.user, str(args.path)))


def _size(parsed: Parsed) -> str:
    if parsed.canonical is not None:
        stored = counted(len(parsed.canonical.stored), "memory", "memories")
        return f"{stored}, {len(parsed.canonical.pending)} queued"
    made = counted(len(list(exchanges(parsed.messages, ""))), "exchange", "exchanges")
    return f"{counted(len(parsed.messages), 'message', 'messages')} in {made}"


async def import_parsed(config: Config, parsed: Parsed, user: str, source: str) -> int:
    """Write ``parsed`` into ``user``'s memories and wait for the writer; the exit status."""
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        try:
            await service.start()
        except OutboxBusyError:
            outbox = config.memory.outbox_path or default_outbox_path(config.store)
            return fail(
                f"a running proxy owns the outbox {outbox}; stop it, then "
                "import (the import writes through the outbox)"
            )
        except MemoryLayerError as exc:
            return fail(f"cannot open the memory store: {exc}")
        try:
            return await _write(service, parsed, user, source)
        except MemoryLayerError as exc:
            return fail(f"import stopped: {exc}")
        finally:
            await service.close(timeout_s=0)


async def _write(service: MemoryService, parsed: Parsed, user: str, source: str) -> int:
    stored = 0
    if parsed.canonical is not None:
        stored, queued = await restore(service, user, parsed.canonical)
        offered = len(parsed.canonical.pending)
    else:
        made = list(exchanges(parsed.messages, user))
        known = await known_exchanges(service, user)
        queued = sum(service.observe(e) for e in made if e.id not in known)
        offered = len(made)
    written = await drain(service, queued, progress=sys.stderr.isatty())
    print(
        f"imported {source} ({parsed.format}) for {user!r}: {stored} memories restored, "
        f"{queued} exchanges written, {offered - queued} already there or not kept"
        f"{'' if written else '; some wait in the outbox (the embedder or store failed)'}",
        file=sys.stderr,
    )
    return 0 if written else 1
