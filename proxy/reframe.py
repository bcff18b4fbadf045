"""An OpenAI-kind upstream's reply re-framed for an Ollama client (``upstream.kind: openai``).

The OpenAI reply is read as any OpenAI reply is: SSE by ``proxy.sse``, each event folded into a
:class:`~proxy.adapters.Reply` by the OpenAI chat adapter. What changes is written as Ollama
chunks by the client's own adapter (``/api/chat`` or ``/api/generate``); the closing chunk's
counts come from ``usage``. Wire formats: ``../shared/reference/ollama`` and the OpenAI chat
completions reference.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp

from proxy.adapters import OPENAI_CHAT, OllamaAdapter, Reply
from proxy.openai_upstream import error_message
from proxy.sse import DONE, SseParser

DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}
"""OpenAI ``finish_reason`` -> Ollama ``done_reason``."""
INCOMPLETE = "upstream stream ended before the reply was complete"


def now_iso() -> str:
    """Ollama's ``created_at``: RFC 3339 UTC with nanosecond-style precision."""
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tool_calls_to_ollama(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merged OpenAI tool calls as Ollama's: arguments decoded from their JSON string (kept as
    ``{"_raw": text}`` when they are not JSON).

    >>> tool_calls_to_ollama([{"id": "c", "function": {"name": "f", "arguments": "{x"}}])
    [{'function': {'name': 'f', 'arguments': {'_raw': '{x'}}}]
    """
    out = []
    for call in calls:
        function = call.get("function") or {}
        arguments: Any = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                arguments = {"_raw": arguments}
        out.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
    return out


class OllamaFramer:
    """Re-frames one OpenAI reply as Ollama chunks written by ``adapter``. Feed decoded SSE
    events with :meth:`chunk`; :meth:`final` gives the closing ``done: true`` chunk with counts
    from ``usage`` (``prompt_eval_count``, ``eval_count``) and ``total_duration`` in nanoseconds
    measured since construction."""

    def __init__(self, adapter: OllamaAdapter, model: str) -> None:
        self.adapter = adapter
        self.model = model
        self.started = time.perf_counter_ns()
        self.reply = Reply()
        """The OpenAI reply as read so far (``done`` once a choice has a ``finish_reason``)."""

    def _base(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": now_iso()}

    def chunk(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The Ollama chunk for one streamed OpenAI event, or None when it carries no text."""
        text_at, thinking_at = len(self.reply.content), len(self.reply.thinking)
        OPENAI_CHAT.absorb(self.reply, event)
        text, thinking = self.reply.content[text_at:], self.reply.thinking[thinking_at:]
        if not text and not thinking:
            return None
        return {**self._base(), **self.adapter.reply_chunk(text, thinking), "done": False}

    def final(self, text: str = "", thinking: str = "") -> dict[str, Any]:
        """The closing chunk (``done: true``); a whole reply passes its ``text``."""
        calls = tool_calls_to_ollama(self.reply.tool_calls)
        out = {**self._base(), **self.adapter.reply_chunk(text, thinking, calls), "done": True}
        finish = self.reply.metrics.get("done_reason") or "stop"
        out["done_reason"] = DONE_REASONS.get(finish, "stop")
        out["total_duration"] = time.perf_counter_ns() - self.started
        out["load_duration"] = 0
        for name in ("prompt_eval_count", "eval_count"):
            if name in self.reply.metrics:
                out[name] = self.reply.metrics[name]
        return out

    def whole(self, completion: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed OpenAI completion as one Ollama reply (``done: true``)."""
        OPENAI_CHAT.absorb(self.reply, completion)
        return self.final(self.reply.content, self.reply.thinking)


async def ollama_frames(
    upstream: aiohttp.ClientResponse, framer: OllamaFramer, stream: bool
) -> AsyncIterator[bytes]:
    """The upstream's OpenAI reply as Ollama bytes: NDJSON lines (the closing ``done`` line
    on its own) or one JSON document. A stream that ends before ``[DONE]`` and without a finish
    reason ends with an ``{"error"}`` line instead of a ``done`` one."""
    if not stream:
        yield await _whole(upstream, framer)
        return
    events = SseParser()
    finished = False
    async for chunk in upstream.content.iter_any():
        out = bytearray()
        for data in events.feed(chunk):
            line, over = _event_line(framer, data)
            out += line
            finished = finished or over
        if out:
            yield bytes(out)
        if finished:
            break
    if finished or framer.reply.done:
        yield _line(framer.final())
    else:
        yield json.dumps({"error": INCOMPLETE}).encode()


async def _whole(upstream: aiohttp.ClientResponse, framer: OllamaFramer) -> bytes:
    raw = await upstream.read()
    try:
        completion = json.loads(raw)
    except json.JSONDecodeError:
        return json.dumps({"error": error_message(200, raw)}).encode()
    return json.dumps(framer.whole(completion), ensure_ascii=False).encode()


def _event_line(framer: OllamaFramer, data: str) -> tuple[bytes, bool]:
    """The NDJSON bytes for one SSE event's ``data`` and whether the stream is over."""
    if data == DONE:
        return b"", True
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        event = {"error": f"undecodable event from upstream: {data[:200]}"}
    if not isinstance(event, dict):
        return b"", False
    if (error := event.get("error")) is not None:
        text = error.get("message") if isinstance(error, dict) else str(error)
        return json.dumps({"error": text}).encode() + b"\n", True
    line = framer.chunk(event)
    return (b"" if line is None else _line(line)), False


def _line(chunk: dict[str, Any]) -> bytes:
    return json.dumps(chunk, ensure_ascii=False).encode() + b"\n"
