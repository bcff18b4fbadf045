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
from proxy import forget_cli, import_cli, memories_view
from proxy.app import memory_for
from proxy.config import Config

Commands = argparse._SubParsersAction  # what add_subparsers returns (argparse has no public name)

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
        "export", help="write every memory of a user (stored and queued) as JSONL to stdout"
    )
    export.add_argument("--user", required=True, help="the user whose memories to export")
    export.add_argument("--config", type=Path, help="YAML config file")
    export.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="when no proxy is running, first write queued exchanges for up to this long",
    )


def run_memories(config: Config, args: argparse.Namespace) -> int:
    """Run a ``memories`` sub-command; returns the exit status."""
    for group in GROUPS:
        status = group.run(config, args)
        if status is not None:
            return int(status)
    asyncio.run(export(config, args.user, args.drain_timeout))
    return 0


async def export(config: Config, user: str, drain_timeout_s: float) -> int:
    """Print ``user``'s memories as JSONL; returns how many were printed."""
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        records = await export_user(service, user, drain_timeout_s)
    for record in records:
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)
