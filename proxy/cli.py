"""The ``symbiotic-memory`` command. Library errors become one-line messages here."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from memory.errors import MemoryLayerError
from memory.ingest import drain, queue, read_messages
from proxy import __version__, logs, setup_cli
from proxy.app import create_app, memory_for
from proxy.auth import add_user, read_tokens, remove_user
from proxy.commands import Commands
from proxy.config import Config, load_config
from proxy.demo import DemoError, run_demo
from proxy.errors import ConfigError
from proxy.memories_cli import add_memories, run_memories


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``--help`` is what the README shows)."""
    parser = argparse.ArgumentParser(
        prog="symbiotic-memory",
        description="Long-term memory for any Ollama or OpenAI chat client, as a proxy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the memory proxy in front of the upstream")
    serve.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    show = commands.add_parser("config", help="print the effective configuration as JSON")
    show.add_argument("--config", type=Path, help="YAML config file")
    adders = (_add_ingest, _add_demo, _add_score, _add_metabolize, _add_audit, add_memories)
    for add in (*adders, _add_users, setup_cli.add_parsers):
        add(commands)
    return parser


def _add_ingest(commands: Commands[argparse.ArgumentParser]) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="load conversation history (JSONL of {role, content, timestamp?, session?, name?})",
    )
    ingest.add_argument("file", type=Path, help="JSONL file (or one JSON array) of messages")
    ingest.add_argument("--user", default="default", help="whose memories these become")
    ingest.add_argument("--config", type=Path, help="YAML config file")


def _add_demo(commands: Commands[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="a scripted conversation through the proxy against the configured upstream, "
        "showing what is recalled, injected and stored (temporary store)",
    )
    demo.add_argument("--config", type=Path, help="YAML config file")
    demo.add_argument("--model", help="upstream model (default: the first one it lists)")
    demo.add_argument(
        "--max-tokens", type=int, default=64, help="longest reply per turn (default 64)"
    )


def _add_score(commands: Commands[argparse.ArgumentParser]) -> None:
    score = commands.add_parser(
        "score",
        help="score exchanges for symbiosis (JSONL of {id?, user, assistant, next_user?}); "
        "needs no upstream",
    )
    score.add_argument("--input", type=Path, required=True, help="JSONL of exchanges")
    score.add_argument("--output", type=Path, required=True, help="JSONL written in input order")
    score.add_argument("--config", type=Path, help="YAML config file (its symbiosis section)")


def _add_metabolize(commands: Commands[argparse.ArgumentParser]) -> None:
    metabolize = commands.add_parser(
        "metabolize",
        help="run one sleep cycle: hindsight rescoring, decay, consolidation, promotion, "
        "quadrant labels (and migration of older records)",
    )
    metabolize.add_argument("--config", type=Path, help="YAML config file")
    metabolize.add_argument("--user", action="append", help="only this user (repeatable)")


def _add_audit(commands: Commands[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit", help="verify the tamper-evident score log (optionally find one exchange's scores)"
    )
    audit.add_argument("--config", type=Path, help="YAML config file")
    audit.add_argument("--log", type=Path, help="score log (default: beside the store)")
    audit.add_argument("--id", help="an exchange or memory id whose entries to show")


def _add_users(commands: Commands[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="manage the users of auth.tokens_file")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    add = user_commands.add_parser("add", help="add a user and print their new token once")
    add.add_argument("name", help="the user (one word): whose memories the token opens")
    remove = user_commands.add_parser("remove", help="remove a user (their token stops working)")
    remove.add_argument("name", help="the user to remove")
    listing = user_commands.add_parser("list", help="print the users, one a line")
    for command in (add, remove, listing):
        command.add_argument("--file", type=Path, help="token file (default: auth.tokens_file)")
        command.add_argument("--config", type=Path, help="YAML config file")


def run_users(config: Config, args: argparse.Namespace) -> int:
    """``users add|remove|list``; raises ConfigError (no file, a duplicate or unknown user)."""
    path = args.file or config.auth.tokens_file
    if path is None:
        raise ConfigError("no token file: pass --file or set auth.tokens_file")
    if args.users_command == "add":
        token = add_user(path, args.name)
        print(f"user {args.name} added to {path}; their token (shown only now):", file=sys.stderr)
        print(token)
    elif args.users_command == "remove":
        remove_user(path, args.name)
        print(f"user {args.name} removed from {path}", file=sys.stderr)
    else:
        for name in read_tokens(path):
            print(name)
    return 0


def serve(config: Config) -> None:
    """Run the proxy until interrupted."""
    logs.configure(config.log_level, config.log_format)
    print(
        f"symbiotic-memory {__version__}: listening on http://{config.listen.host}:"
        f"{config.listen.port}, upstream {config.upstream.url}",
        flush=True,
    )
    web.run_app(create_app(config), host=config.listen.host, port=config.listen.port, print=None)


async def ingest_file(config: Config, path: Path, user: str) -> int:
    """Ingest ``path`` for ``user``; returns the exit status."""
    try:
        with path.open(encoding="utf-8") as handle:
            messages, problems = read_messages(handle, time.time())
    except (OSError, UnicodeDecodeError) as exc:
        print(f"symbiotic-memory: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"symbiotic-memory: {path}: {problem} (skipped)", file=sys.stderr)
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        await service.start()
        try:
            queued = queue(service, messages, user)
            stored = await drain(service, queued, progress=sys.stderr.isatty())
        finally:
            await service.close(timeout_s=0)
    print(
        f"ingested {len(messages)} messages as {queued} memories for {user!r}"
        f"{'' if stored else ' (some wait in the outbox: the embedder or store failed)'}; "
        f"{len(problems)} bad records skipped",
        file=sys.stderr,
    )
    return 0 if stored else 1


def score_file(config: Config, source: Path, target: Path) -> int:
    """Score every line of ``source`` into ``target``; returns the exit status (1 when a line
    was bad: it is reported with its number and skipped, the others are still scored)."""
    from memory.score.symbiosis import Turn, make_scorer

    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"symbiotic-memory: cannot read {source}: {exc}", file=sys.stderr)
        return 1
    rows, bad = read_exchanges(source, lines)
    scorer = make_scorer(config.symbiosis)
    if scorer.degraded:
        print(f"symbiotic-memory: lexical signals only: {scorer.degraded}", file=sys.stderr)
    turns = [Turn(r["user"], r["assistant"], r.get("next_user")) for r in rows]
    threshold = config.symbiosis.threshold
    scored = [
        {
            **row,
            "symbiosis": result.value,
            "signals": result.signals,
            "polarity": result.polarity(threshold),
            "definition": result.definition,
        }
        for row, result in zip(rows, scorer.score(turns), strict=True)
    ]
    try:
        with target.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in scored)
    except OSError as exc:
        print(f"symbiotic-memory: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(
        f"scored {len(rows)} exchanges into {target} (definition {scorer.definition.hash})"
        f"{f'; {bad} bad lines skipped' if bad else ''}",
        file=sys.stderr,
    )
    return 1 if bad else 0


def read_exchanges(source: Path, lines: list[str]) -> tuple[list[dict[str, Any]], int]:
    """The valid exchange rows of ``lines`` and how many were bad (each reported on stderr)."""
    rows: list[dict[str, Any]] = []
    bad = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(exchange_row(line))
        except ValueError as exc:
            print(f"symbiotic-memory: {source}:{number}: {exc} (skipped)", file=sys.stderr)
            bad += 1
    return rows, bad


def exchange_row(line: str) -> dict[str, Any]:
    """One JSONL line of ``score``'s input; raises ValueError saying what is wrong with it.

    >>> exchange_row('{"user": "hi", "assistant": 3}')
    Traceback (most recent call last):
    ...
    ValueError: 'assistant' must be a string
    """
    row = json.loads(line)  # JSONDecodeError is a ValueError
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    for key in ("user", "assistant"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"'{key}' must be a string")
    if row.get("next_user") is not None and not isinstance(row["next_user"], str):
        raise ValueError("'next_user' must be a string")
    return row


async def run_metabolize(config: Config, users: list[str] | None) -> int:
    """One sleep cycle over the store; prints a summary per user and in total."""
    async with aiohttp.ClientSession() as session:
        service = memory_for(config, session)
        await service.start()
        try:
            reports = await service.metabolize(users)
        finally:
            await service.close(timeout_s=10)
    resonance = service.resonance
    total: dict[str, int] = {}
    quadrants: dict[str, int] = {}
    for user, report in reports.items():
        counts = {k: v for k, v in vars(report).items() if isinstance(v, int)}
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        for key, value in report.quadrants.items():
            quadrants[key] = quadrants.get(key, 0) + value
        print(f"{user}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(
        f"sleep cycle: {len(reports)} users; "
        + ", ".join(f"{k} {v}" for k, v in total.items())
        + "; quadrants: "
        + (", ".join(f"{k} {v}" for k, v in sorted(quadrants.items())) or "none")
    )
    if resonance is not None:
        print("shared tier: " + ", ".join(f"{k} {v}" for k, v in vars(resonance).items()))
    return 0


def run_audit(config: Config, log_path: Path | None, ident: str | None) -> int:
    """Verify the score log's hash chain; exit status 1 when it is broken."""
    from memory.store.score_log import verify

    store = config.store.path
    path = log_path or config.symbiosis.log_path or store.parent / f"{store.name}-scores.jsonl"
    result = verify(path, ident)
    if not result.ok:
        print(
            f"symbiotic-memory: score log {path} is BROKEN at line {result.bad_line}: "
            f"{result.reason} ({result.entries} entries verified before it)",
            file=sys.stderr,
        )
        return 1
    print(f"score log {path}: {result.entries} entries, hash chain intact")
    if ident is not None:
        for entry in result.matches:
            print(json.dumps(entry, sort_keys=True))
        if not result.matches:
            print(f"no entry for {ident}")
            return 1
    return 0


QUIET_COMMANDS = frozenset({"ingest", "demo", "score", "metabolize", "memories", "doctor"})
"""Commands that log only warnings, as one-line ``symbiotic-memory: ...`` messages."""


def run_command(args: argparse.Namespace, config: Config) -> int:
    """Run the parsed command; returns the exit status."""
    if args.command in QUIET_COMMANDS:
        logging.basicConfig(level="WARNING", format="symbiotic-memory: %(message)s")
    if args.command == "config":
        print(config.model_dump_json(indent=2))
    elif args.command == "ingest":
        return asyncio.run(ingest_file(config, args.file, args.user))
    elif args.command == "demo":
        asyncio.run(run_demo(config, args.model, args.max_tokens))
    elif args.command == "score":
        return score_file(config, args.input, args.output)
    elif args.command == "metabolize":
        return asyncio.run(run_metabolize(config, args.user))
    elif args.command == "audit":
        return run_audit(config, args.log, args.id)
    elif args.command == "users":
        return run_users(config, args)
    elif args.command == "doctor":
        return setup_cli.run_doctor(config)
    elif args.command == "memories":
        return run_memories(config, args)
    else:
        serve(config)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":  # writes the config: there is none to read yet
            return setup_cli.run_init(args)
        return run_command(args, load_config(args.config))
    except ConfigError as exc:
        print(f"symbiotic-memory: config error: {exc}", file=sys.stderr)
        return 2
    except DemoError as exc:
        print(f"symbiotic-memory: demo: {exc}", file=sys.stderr)
        return 1
    except MemoryLayerError as exc:
        print(f"symbiotic-memory: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as other Unix tools do. Python's
        # recipe: point stdout at devnull so the flush at exit cannot raise again
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"symbiotic-memory: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
