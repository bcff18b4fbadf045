"""``symbiotic-memory memories ...``: the commands on one user's stored memories.

Each group of sub-commands lives in its own module with two functions: ``add_parsers(sub)``
registers its sub-commands on the ``memories`` sub-parser, and ``run(config, args)`` returns the
exit status for a sub-command it owns, or None for one it does not. This module only wires them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from memory.export import export_user
from memory.finetune import (
    DEFAULT_MIN_SIMILARITY,
    EMBEDDING_KEY,
    Selection,
    Turns,
    archived_turns,
    dpo_records,
    sft_records,
    with_embeddings,
)
from memory.store.archive import RawArchive
from memory.types import MemoryHit
from proxy import forget_cli, import_cli, memories_view
from proxy.app import memory_for
from proxy.commands import Commands
from proxy.config import Config

GROUPS: tuple[Any, ...] = (memories_view, forget_cli, import_cli)
"""Modules with ``add_parsers`` and ``run`` (see the module docstring), asked in this order."""


def add_memories(commands: Commands[argparse.ArgumentParser]) -> None:
    """Register ``memories`` and its sub-commands on the top-level sub-parser."""
    memories = commands.add_parser("memories", help="inspect, import and export stored memories")
    memory_commands = memories.add_subparsers(
        dest="memories_command", required=True, metavar="SUBCOMMAND"
    )
    _add_export(memory_commands)
    for group in GROUPS:
        group.add_parsers(memory_commands)


def _add_export(memory_commands: Commands[argparse.ArgumentParser]) -> None:
    export = memory_commands.add_parser(
        "export",
        help="write a user's memories to stdout: JSONL (stored and queued), or fine-tuning "
        "records (sft, dpo)",
        description="jsonl: every memory (stored and queued) as it is kept. sft: the user's "
        "live attractors as TRL conversational SFT records. dpo: each live repulsor's reply as "
        "the rejected side of a TRL preference pair, the nearest attractor's reply as chosen. "
        "sft and dpo read stored memories only (queued exchanges are not scored yet).",
    )
    export.add_argument("--user", required=True, help="the user whose memories to export")
    export.add_argument("--config", type=Path, help="YAML config file")
    export.add_argument(
        "--format",
        choices=("jsonl", "sft", "dpo"),
        default="jsonl",
        help="jsonl (default): the memories as kept; sft, dpo: TRL fine-tuning records",
    )
    export.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="jsonl: when no proxy is running, first write queued exchanges for up to this long",
    )
    export.add_argument(
        "--embeddings",
        action="store_true",
        help=f"jsonl: give each stored memory its vector ({EMBEDDING_KEY!r}: list of floats)",
    )
    _add_finetune_options(export)


def _add_finetune_options(export: argparse.ArgumentParser) -> None:
    export.add_argument(
        "--min-symbiosis",
        type=float,
        metavar="X",
        help="sft, dpo: leave out attractors scored below X (0..1)",
    )
    export.add_argument(
        "--min-similarity",
        type=float,
        default=DEFAULT_MIN_SIMILARITY,
        metavar="X",
        help="dpo: cosine floor between a repulsor and its chosen attractor "
        f"(-1..1, default {DEFAULT_MIN_SIMILARITY})",
    )
    export.add_argument(
        "--consolidated-only",
        action="store_true",
        help="sft, dpo: only attractors others were merged into, reinforced, or screened",
    )
    export.add_argument(
        "--include-dormant",
        action="store_true",
        help="sft, dpo: also use dormant memories (never those merged into another)",
    )


def _export_error(args: argparse.Namespace) -> str | None:
    """Why the export options do not go together, or None."""
    if args.embeddings and args.format != "jsonl":
        return "--embeddings goes with --format jsonl"
    if args.min_symbiosis is not None and not 0 <= args.min_symbiosis <= 1:
        return f"--min-symbiosis must be in [0, 1], got {args.min_symbiosis}"
    if not -1 <= args.min_similarity <= 1:
        return f"--min-similarity must be in [-1, 1], got {args.min_similarity}"
    return None


def run_memories(config: Config, args: argparse.Namespace) -> int:
    """Run a ``memories`` sub-command; returns the exit status."""
    for group in GROUPS:
        status = group.run(config, args)
        if status is not None:
            return int(status)
    error = _export_error(args)
    if error is not None:
        print(f"symbiotic-memory: memories export: {error}", file=sys.stderr)
        return 2
    if args.format == "jsonl":
        asyncio.run(export(config, args.user, args.drain_timeout, args.embeddings))
    else:
        asyncio.run(export_finetune(config, args))
    return 0


async def export(
    config: Config, user: str, drain_timeout_s: float, embeddings: bool = False
) -> int:
    """Print ``user``'s memories as JSONL; returns how many were printed.

    One record a line: ``{"state": "stored", "id", "user", "text", "metadata"}`` for a stored
    memory (``metadata``: its Chroma metadata, as stored), ``{"state": "pending", ...}`` for an
    exchange still queued (:mod:`memory.snapshot`). With ``embeddings``, a stored record also
    has ``"embedding"``: the memory's vector as the store holds it, a list of ``dim`` floats
    whose values are float32 (read back with ``numpy.asarray(v, dtype=numpy.float32)`` they are
    equal bit for bit); a memory removed between the two reads has none.
    """
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        records = await export_user(service, user, drain_timeout_s)
        if embeddings:
            ids = [r["id"] for r in records if r["state"] == "stored"]
            async with service.reading():
                hits, vectors = await service.store.fetch(user, ids)
            records = with_embeddings(records, hits, vectors)
    for record in records:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)


async def export_finetune(config: Config, args: argparse.Namespace) -> int:
    """Print ``args.user``'s stored memories as TRL ``args.format`` (``sft`` or ``dpo``)
    records, one JSON object a line, and the one-line report on stderr; returns how many
    records were printed (:mod:`memory.finetune` says which memories are used)."""
    selection = Selection(
        threshold=config.symbiosis.threshold,
        min_symbiosis=args.min_symbiosis,
        consolidated_only=args.consolidated_only,
        include_dormant=args.include_dormant,
    )
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        async with service.reading():
            hits, vectors = await service.store.snapshot(args.user)
        archived = await asyncio.to_thread(_archived, service.archive, hits)
    if args.format == "sft":
        records, report = sft_records(hits, selection, archived)
    else:
        records, report = dpo_records(hits, vectors, selection, archived, args.min_similarity)
    for record in records:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    print(f"symbiotic-memory: {report.summary(args.format)}", file=sys.stderr)
    return report.written


def _archived(archive: RawArchive | None, hits: list[MemoryHit]) -> dict[str, Turns]:
    """The archived turns of ``hits``' exchanges; empty when there is no archive file (it is
    not created here: an export only reads)."""
    if archive is None or not archive.path.exists():
        return {}
    archive.open()
    try:
        return archived_turns(archive, hits)
    finally:
        archive.close()
