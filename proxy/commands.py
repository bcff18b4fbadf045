"""What every ``symbiotic-memory`` sub-command module shares: the argparse type sub-commands
are registered on, the program name errors start with, and the one-line error."""

from __future__ import annotations

import argparse
import sys

Commands = argparse._SubParsersAction  # what add_subparsers returns (argparse has no public name)
PROG = "symbiotic-memory"


def fail(message: str) -> int:
    """Print ``symbiotic-memory: MESSAGE`` as one line on stderr; returns the exit status 1."""
    print(f"{PROG}: {message}", file=sys.stderr)
    return 1


def counted(n: int, one: str, many: str) -> str:
    """``1 memory``, ``2 memories``."""
    return f"{n} {one if n == 1 else many}"
