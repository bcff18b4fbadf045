"""``memories import PATH``: chat histories and memory exports into a user's memories."""

from __future__ import annotations

import argparse

from proxy.config import Config

Commands = argparse._SubParsersAction  # what add_subparsers returns (argparse has no public name)


def add_parsers(memory_commands: Commands[argparse.ArgumentParser]) -> None:
    """Register this module's ``memories`` sub-commands (none yet)."""


def run(config: Config, args: argparse.Namespace) -> int | None:
    """The exit status of a sub-command of this module, or None when ``args`` is not one."""
    return None
