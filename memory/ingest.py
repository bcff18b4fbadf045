"""Loading existing conversation history into memory through the proxy's own write path.

Input: JSONL (one message per line) or one JSON array of messages
``{"role": "user"|"assistant"|..., "content": str, "timestamp"?: ISO 8601 or Unix seconds,
"session"?: str, "name"?: str}``; ``name`` (as in OpenAI chat messages) is who spoke, shown
before the text and used by recall to find what a named person said. A user message followed
by an assistant message becomes one exchange; a
message without its partner becomes a single-message memory. Bad lines are reported with their
line number and skipped; the rest is still ingested.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from memory.service import INGEST_ENDPOINT, MemoryService
from memory.types import Exchange, Scope


@dataclass(frozen=True)
class Message:
    """One validated input message."""

    line: int
    role: str
    content: str
    timestamp: float
    session: str | None
    name: str | None = None


def parse_timestamp(value: Any) -> float:
    """Unix seconds from an ISO 8601 string (naive = UTC) or a number.

    >>> parse_timestamp("2023-05-08T13:56:00"), parse_timestamp(1.5)
    (1683554160.0, 1.5)

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO 8601 or Unix seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise ValueError("timestamp must be ISO 8601 or Unix seconds")


def to_message(line: int, data: Any, now: float) -> Message:
    """Validate one decoded record; raises ValueError with the reason."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    role, content = data.get("role"), data.get("content")
    if not isinstance(role, str) or not role:
        raise ValueError("'role' must be a non-empty string")
    if not isinstance(content, str) or not content.strip():
        raise ValueError("'content' must be a non-empty string")
    session = data.get("session")
    if session is not None and not isinstance(session, str | int):
        raise ValueError("'session' must be a string")
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError("'name' must be a non-empty string")
    stamp = parse_timestamp(data["timestamp"]) if data.get("timestamp") is not None else now
    return Message(
        line,
        role,
        content,
        stamp,
        None if session is None else str(session),
        None if name is None else name.strip(),
    )


def read_messages(lines: Iterable[str], now: float) -> tuple[list[Message], list[str]]:
    """Messages of a JSONL text (or one JSON array) and one problem line per bad record."""
    text_lines = list(lines)
    whole = "".join(text_lines).strip()
    if whole.startswith("["):
        try:
            records = list(enumerate(json.loads(whole), start=1))
        except json.JSONDecodeError as exc:
            return [], [f"line {exc.lineno}: invalid JSON array: {exc.msg}"]
        return _validate(((n, r) for n, r in records), now, "item")
    decoded: list[tuple[int, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(text_lines, start=1):
        if not raw.strip():
            continue
        try:
            decoded.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON: {exc.msg}")
    messages, more = _validate(iter(decoded), now, "line")
    return messages, problems + more


def _validate(
    records: Iterator[tuple[int, Any]], now: float, unit: str
) -> tuple[list[Message], list[str]]:
    messages: list[Message] = []
    problems: list[str] = []
    for number, data in records:
        try:
            messages.append(to_message(number, data, now))
        except ValueError as exc:
            problems.append(f"{unit} {number}: {exc}")
    return messages, problems


def exchanges(messages: list[Message], user: str) -> Iterator[Exchange]:
    """Pair each user message with the assistant message right after it (same session)."""
    i = 0
    while i < len(messages):
        m = messages[i]
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        paired = (
            m.role == "user"
            and nxt is not None
            and nxt.role == "assistant"
            and nxt.session == m.session
        )
        reply = nxt.content if paired and nxt is not None else ""
        label = m.name or (None if m.role == "user" else m.role.capitalize())
        text = f"{label}: {m.content}" if label and not paired else m.content
        yield Exchange(
            scope=Scope(user, m.session),
            endpoint=INGEST_ENDPOINT,
            model="",
            user_text=text,
            reply=reply,
            started_at=m.timestamp,
            finished_at=nxt.timestamp if paired and nxt is not None else m.timestamp,
            speaker=m.name,
        )
        i += 2 if paired else 1


def queue(service: MemoryService, messages: list[Message], user: str) -> int:
    """Queue every exchange of ``messages`` in the outbox; returns how many were queued."""
    return sum(service.observe(exchange) for exchange in exchanges(messages, user))


async def drain(service: MemoryService, total: int, progress: bool = True) -> bool:
    """Wait for the writer to store what was queued, with a progress bar on stderr.

    Returns False when the embedder or store keeps failing (the rest stays in the outbox).
    """
    with tqdm(total=total, unit="memory", disable=not progress, desc="ingest") as bar:
        start = service.stats.written
        task = asyncio.create_task(service.flush())
        while not task.done():
            bar.n = min(total, service.stats.written - start)
            bar.refresh()
            await asyncio.wait({task}, timeout=0.2)
            if service.embedder_down and service.stats.written == start:
                task.cancel()
                return False
        bar.n = min(total, service.stats.written - start)
        bar.refresh()
    return task.result()
