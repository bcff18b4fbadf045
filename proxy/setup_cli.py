"""``symbiotic-memory init`` (an annotated config to start from) and ``doctor`` (its checks)."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.markup import escape

from proxy.commands import Commands
from proxy.config import Config, load_config
from proxy.doctor import Check, Probe, detect_kind, diagnose
from proxy.errors import ConfigError

TEMPLATE = "default.yaml"
DEFAULT_TARGET = Path("symbiotic-memory.yaml")
MARKS = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def add_parsers(commands: Commands[argparse.ArgumentParser]) -> None:
    """Register ``init`` and ``doctor``."""
    init = commands.add_parser("init", help="write an annotated config file to start from")
    init.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_TARGET, help=f"default {DEFAULT_TARGET}"
    )
    init.add_argument("--upstream", metavar="URL", help="the model server (default Ollama's)")
    init.add_argument(
        "--upstream-kind",
        choices=("ollama", "openai"),
        help="its API (default: asked of the server, else ollama)",
    )
    init.add_argument(
        "--embedder", choices=("ollama", "openai", "sentence-transformers"), help="embedder kind"
    )
    init.add_argument("--store", type=Path, metavar="DIR", help="embedded Chroma directory")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    doctor = commands.add_parser(
        "doctor", help="check the set-up (upstream, embedder, store, files, manifest, auth)"
    )
    doctor.add_argument("--config", type=Path, help="YAML config file")


def template_path() -> Path:
    """The annotated default config: the source tree's ``configs/default.yaml``, else the
    installed data file. Raises ConfigError when neither exists."""
    candidates = (
        Path(__file__).resolve().parent.parent / "configs" / TEMPLATE,
        Path(sys.prefix) / "share" / "symbiotic-memory" / TEMPLATE,
    )
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise ConfigError("the annotated default config is not installed (reinstall)")
    return found


def set_key(text: str, section: str, key: str, value: str) -> str:
    """``text`` (the annotated YAML) with ``section.key`` set to ``value``, its comment kept; a
    commented-out key (``# key: ...``) is uncommented.

    >>> set_key("a:\\n  url: x   # where\\nb:\\n  url: y\\n", "b", "url", "z")
    'a:\\n  url: x   # where\\nb:\\n  url: z\\n'
    >>> set_key("s:\\n  # path: ~/d   # dir\\n", "s", "path", "/m")
    's:\\n  path: /m   # dir\\n'

    Raises:
        ConfigError: the template has no such key (it and this code disagree).
    """
    body = re.search(rf"^{section}:.*\n((?:[ #].*\n|\n)*)", text, re.M)
    line = re.compile(rf"^  (?:# )?{key}:[ ]*(?:[^#\n]*?)([ ]*#[^\n]*)?$", re.M)
    found = line.search(text, body.start(1), body.end(1)) if body else None
    if found is None:
        raise ConfigError(f"the config template has no {section}.{key}")
    return f"{text[: found.start()]}  {key}: {value}{found.group(1) or ''}{text[found.end() :]}"


async def asked_kind(url: str) -> str | None:
    """The API the server at ``url`` speaks, or None when it cannot be reached or told."""
    async with aiohttp.ClientSession() as session:
        try:
            kind, _ = await detect_kind(Probe(Config(), session), url.rstrip("/"), None)
        except (aiohttp.ClientError, TimeoutError):
            return None
    return kind


def run_init(args: argparse.Namespace) -> int:
    """Write the annotated config with the given choices; refuses to overwrite without
    ``--force``. Raises ConfigError when the result does not load (a bad value)."""
    target: Path = args.path
    if target.exists() and not args.force:
        print(f"symbiotic-memory: {target} exists (--force overwrites it)", file=sys.stderr)
        return 1
    text = template_path().read_text(encoding="utf-8")
    kind = args.upstream_kind
    if args.upstream is not None:
        text = set_key(text, "upstream", "url", args.upstream)
        if kind is None and (kind := asyncio.run(asked_kind(args.upstream))) is None:
            print(f"symbiotic-memory: {args.upstream} did not answer; kind left as ollama")
    for section, key, value in (
        ("upstream", "kind", kind),
        ("embedder", "kind", args.embedder),
        ("store", "path", args.store),
    ):
        if value is not None:
            text = set_key(text, section, key, str(value))
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    try:
        load_config(partial, env={})  # what the proxy will read: a bad choice fails here
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {target}; next: symbiotic-memory doctor --config {target}")
    return 0


def print_checks(checks: list[Check], console: Console) -> None:
    """One line per check (and an indented ``fix:`` line under each one not ok)."""
    width = max(len(check.name) for check in checks)
    for check in checks:
        mark = MARKS[check.status]
        console.print(f"{mark}  {check.name:<{width}}  {escape(check.detail)}")
        if check.fix and check.status != "ok":
            console.print(f"      {'':<{width}}  fix: {escape(check.fix)}")


def run_doctor(config: Config) -> int:
    """Run every check; exit status 1 when any failed."""
    checks = asyncio.run(diagnose(config))
    print_checks(checks, Console(highlight=False, soft_wrap=True))
    failed = [check.name for check in checks if check.status == "fail"]
    if failed:
        print(f"symbiotic-memory: doctor: {', '.join(failed)} failed", file=sys.stderr)
        return 1
    return 0
