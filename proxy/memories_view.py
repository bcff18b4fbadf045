"""``memories list|search|show|stats --user U``: one user's stored memories, read from the CLI.

Each command opens the memory service with :func:`opened` (the writer's way when no proxy is
running, read-only beside a running proxy), prints a ``rich`` table (plain text, no colour, one
row per line when stdout is not a terminal) or, with ``--json``, one JSON value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from memory.record import MemoryRecord
from memory.service import MemoryService
from memory.types import MemoryHit
from proxy.admin import MAX_K, decayed_strengths, hit_json, listed_json
from proxy.app import memory_for
from proxy.commands import Commands
from proxy.config import Config

SHORT_ID = 8
"""Characters of an id shown in tables (``show`` takes the full id or any unique prefix)."""
PIPE_WIDTH = 10_000
"""Console width when stdout is not a terminal: rows are not cut, one memory per line."""


@dataclass(frozen=True)
class Row:
    """One stored memory with its strength after decay (:func:`proxy.admin.decayed_strengths`)."""

    hit: MemoryHit
    strength_now: float

    @property
    def record(self) -> MemoryRecord:
        """The decoded record of :attr:`hit`."""
        return self.hit.record


COLUMNS = ("time", "strength", "symbiosis", "polarity", "tier", "quadrant")
"""Columns of a memory table after the id (and ``sim``, the similarity), before the text."""
SECONDS = "%Y-%m-%d %H:%M:%S"
"""How ``show`` and ``stats`` print a time (local)."""

SORTS: dict[str, Callable[[Row], tuple[float, str]]] = {
    "newest": lambda row: (row.record.event_time or 0.0, row.hit.id),
    "strength": lambda row: (row.strength_now, row.hit.id),
    "symbiosis": lambda row: (row.record.symbiosis, row.hit.id),
}
"""``--sort`` name -> key; every order is descending."""


def add_parsers(memory_commands: Commands[argparse.ArgumentParser]) -> None:
    """Register ``list``, ``search``, ``show`` and ``stats`` on the ``memories`` sub-parser."""
    listing = _command(memory_commands, "list", "a table of a user's stored memories")
    listing.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="rows to skip first")
    listing.add_argument(
        "--sort", choices=tuple(SORTS), default="newest", help="highest first (default newest)"
    )
    search = _command(memory_commands, "search", "a user's memories nearest to a query")
    search.add_argument("query", help="the text to search for")
    search.add_argument("--k", type=int, default=10, help=f"hits, 1..{MAX_K} (default 10)")
    show = _command(memory_commands, "show", "every field of one memory")
    show.add_argument("id", help="the memory's id, or a unique prefix of it")
    _command(memory_commands, "stats", "counts and ranges over a user's memories")


def _command(
    memory_commands: Commands[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    parser = memory_commands.add_parser(name, help=help)
    parser.add_argument("--user", required=True, help="the user whose memories to read")
    parser.add_argument("--config", type=Path, help="YAML config file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def run(config: Config, args: argparse.Namespace) -> int | None:
    """The exit status of a sub-command of this module, or None when ``args`` is not one.

    Bad arguments are a one-line message on stderr and status 2; an unknown id in ``show`` is
    status 1. Store failures raise :class:`memory.errors.MemoryLayerError` (the CLI's message).
    """
    command = COMMANDS.get(getattr(args, "memories_command", ""))
    if command is None:
        return None
    problem = bad_input(args)
    if problem is not None:
        print(f"symbiotic-memory: memories {args.memories_command}: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(command(config, args))


def bad_input(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of a view command, or None."""
    if not args.user.strip():
        return "--user must not be empty"
    if getattr(args, "limit", 1) < 1:
        return "--limit must be at least 1"
    if getattr(args, "offset", 0) < 0:
        return "--offset must not be negative"
    if not 1 <= getattr(args, "k", 1) <= MAX_K:
        return f"--k must be between 1 and {MAX_K}"
    if not getattr(args, "query", "x").strip():
        return "the query must not be empty"
    if not getattr(args, "id", "x").strip():
        return "the id must not be empty"
    return None


@contextlib.asynccontextmanager
async def opened(config: Config) -> AsyncIterator[MemoryService]:
    """The memory service ``config`` describes, open for reading only
    (:meth:`MemoryService.reading`: the store open, the outbox shared, no writer, no scorer),
    whether or not a proxy is running: these commands change nothing, so they neither take
    the outbox from a proxy starting meanwhile nor replay it.

    Raises:
        StoreError: the store or the outbox cannot be opened.
    """
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        async with service.reading():
            yield service


async def rows_of(service: MemoryService, user: str, config: Config) -> list[Row]:
    """Every stored memory of ``user`` with its strength now, in store order."""
    hits = await service.store.all(user)
    now = decayed_strengths([hit.record for hit in hits], config.metabolism)
    return [Row(hit, strength) for hit, strength in zip(hits, now, strict=True)]


def emit(*renderables: Any) -> None:
    """Print ``renderables`` to stdout: as ``rich`` draws them on a terminal; else plain text,
    rows never cut (:data:`PIPE_WIDTH`), trailing blanks and empty lines left out, so the output
    greps and diffs cleanly (rich prints no colour codes when stdout is not a terminal)."""
    out = Console(highlight=False, soft_wrap=False)
    if out.is_terminal:
        for renderable in renderables:
            out.print(renderable)
        return
    out = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH, color_system=None)
    with out.capture() as captured:
        for renderable in renderables:
            out.print(renderable)
    lines = (line.rstrip() for line in captured.get().splitlines())
    sys.stdout.write("".join(f"{line}\n" for line in lines if line))


def print_json(value: Any) -> None:
    """``value`` as one indented JSON document on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def polarity(record: MemoryRecord, threshold: float) -> str:
    """``attractor``, ``repulsor`` or ``unscored``, as ``/ui`` shows it: the stored polarity,
    else (a score without one) repulsor at or below ``threshold``."""
    if not record.scored:
        return "unscored"
    if record.polarity:
        return record.polarity
    return "repulsor" if record.symbiosis <= threshold else "attractor"


def local_time(stamp: float | None, form: str = "%Y-%m-%d") -> str:
    """A Unix time as a local date (or as ``form`` says); ``-`` when unknown."""
    return datetime.fromtimestamp(stamp).strftime(form) if stamp else "-"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) as one space."""
    return " ".join(text.split())


def memory_table(rows: Iterable[Row], threshold: float, similarity: bool = False) -> Table:
    """A table of ``rows``: short id, (similarity,) local date, strength now, symbiosis, polarity,
    tier, quadrant, and the text on one line, cut to what is left of the terminal's width."""
    names = ["id", "sim", *COLUMNS] if similarity else ["id", *COLUMNS]
    cells = [row_cells(row, threshold, similarity) for row in rows]
    widths = [max([len(name), *(len(c[i]) for c in cells)]) for i, name in enumerate(names)]
    room = terminal_width()
    # All columns are no_wrap, so rich would shrink them all alike; the text gives way instead
    # (3: the padding and divider between two columns).
    text_width = None if room is None else max(10, room - sum(widths) - 3 * len(widths))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in names:
        right = name in ("sim", "strength", "symbiosis")
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    table.add_column("text", no_wrap=True, overflow="ellipsis", max_width=text_width)
    for line in cells:
        table.add_row(*(Text(cell) for cell in line))  # Text: no markup in memory texts
    return table


def row_cells(row: Row, threshold: float, similarity: bool) -> list[str]:
    """The cells of one :func:`memory_table` row, the text last."""
    r = row.record
    cells = [row.hit.id[:SHORT_ID]]
    if similarity:
        cells.append(f"{row.hit.similarity or 0.0:.3f}")
    cells += [local_time(r.event_time), f"{row.strength_now:.3f}", f"{r.symbiosis:.2f}"]
    cells += [polarity(r, threshold), r.tier or "-", r.quadrant or "-", one_line(r.text)]
    return cells


def terminal_width() -> int | None:
    """The width of the terminal on stdout, or None when stdout is not a terminal."""
    out = Console()
    return out.width if out.is_terminal else None


async def list_command(config: Config, args: argparse.Namespace) -> int:
    """``memories list``: a page of the user's memories, sorted descending by ``--sort``."""
    async with opened(config) as service:
        rows = await rows_of(service, args.user, config)
    rows.sort(key=SORTS[args.sort], reverse=True)
    page = rows[args.offset : args.offset + args.limit]
    threshold = config.symbiosis.threshold
    if args.json:
        print_json(
            {"user": args.user, "total": len(rows), "offset": args.offset, "limit": args.limit}
            | {"sort": args.sort, "threshold": threshold}
            | {"memories": [listed_json(row.hit, row.strength_now) for row in page]}
        )
        return 0
    shown = f"{len(page)} of {len(rows)}" if page or rows else "0"
    emit(memory_table(page, threshold), Text(f"{shown} memories"))
    return 0


async def search_command(config: Config, args: argparse.Namespace) -> int:
    """``memories search``: the user's ``--k`` memories nearest to the query, nearest first."""
    async with opened(config) as service:
        # a cold model (a local sentence-transformers load, or Ollama loading its embedding
        # model) takes seconds, far beyond recall's per-request budget: load it unguarded
        # first, as the proxy does at start-up
        await service.embedder.embed([args.query])
        hits = await service.search(args.user, args.query, args.k)
        rows = await rows_of(service, args.user, config) if hits and not args.json else []
    if args.json:
        print_json([hit_json(hit) for hit in hits])  # as GET /memory/search answers
        return 0
    now = {row.hit.id: row.strength_now for row in rows}
    found = [Row(hit, now.get(hit.id, hit.record.strength)) for hit in hits]
    table = memory_table(found, config.symbiosis.threshold, similarity=True)
    emit(table, Text(f"{len(found)} memories"))
    return 0


def matching(rows: list[Row], ident: str) -> list[Row]:
    """The row whose id is ``ident``, else every row whose id starts with it."""
    exact = [row for row in rows if row.hit.id == ident]
    return exact or [row for row in rows if row.hit.id.startswith(ident)]


def record_fields(row: Row, threshold: float) -> dict[str, Any]:
    """Every field of the row's record (``stored`` left out, ``extra`` kept), its strength now
    and its polarity as :func:`polarity` names it."""
    r = row.record
    values = {f.name: getattr(r, f.name) for f in fields(r) if f.name not in ("stored", "extra")}
    values["provenance"] = list(r.provenance)
    values["supporters"] = list(r.supporters)
    values["symbiosis_signals"] = dict(r.symbiosis_signals)
    return values | {
        "event_time": r.event_time,
        "strength_now": round(row.strength_now, 4),
        "polarity": polarity(r, threshold),
        "extra": dict(r.extra),
    }


def shown_value(name: str, value: Any) -> str:
    """A field's value as ``show`` prints it: times local (and as Unix seconds), collections as
    JSON, None as ``-``."""
    if value is None:
        return "-"
    if name.endswith(("_at", "_time")) and isinstance(value, int | float):
        return f"{local_time(value, SECONDS)} ({value})" if value else "-"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


async def show_command(config: Config, args: argparse.Namespace) -> int:
    """``memories show``: every field of one memory; an unknown or ambiguous id is status 1."""
    async with opened(config) as service:
        found = matching(await rows_of(service, args.user, config), args.id.strip())
    if len(found) != 1:
        ids = ", ".join(row.hit.id[: len(args.id) + 4] for row in found[:5])
        why = f"is ambiguous ({ids}...)" if found else "not found"
        print(f"symbiotic-memory: memory {args.id} of {args.user!r} {why}", file=sys.stderr)
        return 1
    (row,) = found
    values = record_fields(row, config.symbiosis.threshold)
    if args.json:
        print_json(values)
        return 0
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    for name, value in values.items():
        table.add_row(Text(name), Text(shown_value(name, value)))
    emit(table)
    return 0


def summary(rows: list[Row], pending: int, threshold: float) -> dict[str, Any]:
    """``stats`` of one user: ``{"total", "attractors", "repulsors", "unscored", "tiers",
    "quadrants", "phases" (value -> count, ``none`` when unset), "dormant", "consolidated",
    "mean_symbiosis" (over scored memories; None: none scored), "oldest", "newest" (Unix s;
    None: unknown), "pending" (the user's exchanges waiting in the outbox)}``."""
    records = [row.record for row in rows]
    polarities = Counter(polarity(r, threshold) for r in records)
    scored = [r.symbiosis for r in records if r.scored]
    times = [t for r in records if (t := r.event_time)]
    return {
        "total": len(records),
        **{f"{name}s": polarities[name] for name in ("attractor", "repulsor")},
        "unscored": polarities["unscored"],
        "tiers": _counts(r.tier for r in records),
        "quadrants": _counts(r.quadrant for r in records),
        "phases": _counts(r.phase for r in records),
        "dormant": sum(r.dormant for r in records),
        "consolidated": sum(r.consolidated_into is not None for r in records),
        "mean_symbiosis": round(sum(scored) / len(scored), 4) if scored else None,
        "oldest": min(times, default=None),
        "newest": max(times, default=None),
        "pending": pending,
    }


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    return dict(sorted(Counter(value or "none" for value in values).items()))


async def stats_command(config: Config, args: argparse.Namespace) -> int:
    """``memories stats``: :func:`summary` as a two-column table, or with ``--json`` a dict."""
    async with opened(config) as service:
        rows = await rows_of(service, args.user, config)
        pending = len(service.outbox.for_user(args.user))
    stats = summary(rows, pending, config.symbiosis.threshold)
    if args.json:
        print_json({"user": args.user} | stats)
        return 0
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_header=False)
    table.add_column("stat", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    for name, value in {"user": args.user, **stats}.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        elif name in ("oldest", "newest"):
            value = local_time(value, SECONDS)
        elif value is None:
            value = "-"
        table.add_row(Text(name), Text(str(value)))
    emit(table)
    return 0


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "list": list_command,
    "search": search_command,
    "show": show_command,
    "stats": stats_command,
}
"""``memories`` sub-command -> its coroutine; each returns the exit status."""
