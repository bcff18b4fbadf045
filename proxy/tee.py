"""The tee: assembles the assistant's reply from the bytes relayed to the client.

The relay writes upstream bytes to the client untouched and feeds the same bytes here. Framing
is NDJSON (Ollama streaming), SSE (OpenAI chat, Responses and Anthropic streaming, parsed by
``proxy.sse``) or one JSON document (``stream: false``); what a decoded frame means is the
adapter's business. The Responses and Anthropic streams name each event on an ``event:`` line
and again in the data's ``type``, so the ``data:`` lines carry everything the tee needs.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.adapters import Adapter, EventStreamAdapter, Reply
from proxy.sse import DONE, SseParser
from proxy.wire import Framing


def framing_for(content_type: str) -> Framing:
    """Framing of an upstream reply from its ``Content-Type``."""
    if "ndjson" in content_type:
        return "ndjson"
    if "event-stream" in content_type:
        return "sse"
    return "json"


def error_text(value: Any) -> str:
    """The message of an in-band error: Ollama's string or OpenAI's ``{"message": ...}``.

    >>> error_text("boom"), error_text({"message": "too long", "type": "x"})
    ('boom', 'too long')
    """
    if isinstance(value, dict):
        return str(value.get("message") or value)
    return str(value)


class Tee:
    """Incremental parser of one upstream reply; ``feed`` bytes as relayed, then ``close``."""

    def __init__(self, adapter: Adapter, framing: Framing) -> None:
        self.adapter = adapter
        self.framing = framing
        self.reply = Reply()
        self.received = 0
        """Bytes fed so far."""
        self.final_seen = False
        """The reply's last frame has been parsed (Ollama ``done``/error, SSE ``[DONE]``, the
        closing event of a named-event stream)."""
        self._closing_event = isinstance(adapter, EventStreamAdapter)
        self._buffer = bytearray()
        self._sse = SseParser()

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes; complete frames are parsed at once (JSON waits for ``close``)."""
        self.received += len(chunk)
        if self.framing == "sse":
            for data in self._sse.feed(chunk):
                self._event(data)
            return
        self._buffer += chunk
        if self.framing == "json":
            return
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            self._frame(line)

    def at_end(self, content_length: int | None) -> bool:
        """True once the reply is complete: its final frame was parsed, or (one JSON document)
        ``content_length`` bytes have arrived, in which case it is parsed now."""
        complete = content_length is not None and self.received >= content_length
        if self.framing == "json" and complete and not self.final_seen:
            self.close()
            self.final_seen = True
        return self.final_seen

    def close(self) -> Reply:
        """Parse what is left and return the assembled reply."""
        for data in self._sse.close():
            self._event(data)
        if self._buffer.strip():
            self._frame(self._buffer)
        self._buffer.clear()
        return self.reply

    def _event(self, data: str) -> None:
        if data == DONE:
            self.reply.done = True
            self.final_seen = True
            return
        self._decoded(data)
        if self._closing_event and self.reply.done:
            self.final_seen = True

    def _frame(self, line: bytes | bytearray) -> None:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return
        self._decoded(text)
        if self.framing == "ndjson" and (self.reply.done or self.reply.error is not None):
            self.final_seen = True

    def _decoded(self, text: str) -> None:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            self.reply.unparsed += 1
            return
        if not isinstance(obj, dict):
            self.reply.unparsed += 1
        elif obj.get("error") is not None:
            self.reply.error = error_text(obj["error"])
        else:
            self.adapter.absorb(self.reply, obj)
