"""OpenAI streams: the one Server-Sent Events parser and the one tool-call fragment merger.

Both the tee (reading a ``/v1/chat/completions`` stream relayed to a client) and the
translated path (re-framing an OpenAI-kind upstream's stream as Ollama NDJSON) use these.
Events are read one ``data:`` line each, as OpenAI, llama.cpp, vLLM and Ollama send them
(multi-line ``data`` events are not joined). Reference: the WHATWG HTML "Server-sent events"
section and OpenAI's chat completions streaming docs.
"""

from __future__ import annotations

from typing import Any

DONE = "[DONE]"
"""The data of OpenAI's closing event."""


class SseParser:
    """Incremental parser: feed bytes, get the ``data`` of each complete ``data:`` line.

    Blank separators, comments and ``event:`` / ``id:`` / ``retry:`` lines carry no content and
    are skipped; the payload is returned undecoded (``"[DONE]"`` as the string itself), so each
    caller decides what an undecodable event means.

    >>> p = SseParser()
    >>> p.feed(b'data: {"a": 1}\\r\\n\\n: hi\\ndata: [DO'), p.feed(b"NE]"), p.close()
    (['{"a": 1}'], [], ['[DONE]'])
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        """Payloads of the ``data:`` lines completed by ``chunk``."""
        self._buffer += chunk
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        return [data for line in lines if (data := _data(line)) is not None]

    def close(self) -> list[str]:
        """The payload of a last line that had no newline (an empty list when there is none)."""
        line, self._buffer = bytes(self._buffer), bytearray()
        data = _data(line)
        return [] if data is None else [data]


def _data(line: bytes | bytearray) -> str | None:
    text = line.decode("utf-8", errors="replace").strip()
    if not text.startswith("data:"):
        return None
    return text[5:].strip()


def merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    """Fold one OpenAI tool-call fragment into ``calls`` (in place).

    Streamed fragments carry an ``index``: the first of a call brings ``id``, ``type`` and the
    function name, later ones pieces of ``function.arguments`` (a JSON string) to append. A call
    without an integer ``index`` (a whole completion's ``message.tool_calls``) is appended as it
    is. Arguments sent as an object replace the string.

    >>> calls: list[dict[str, Any]] = []
    >>> merge_tool_call(calls, {"index": 0, "id": "c1", "function": {"name": "f"}})
    >>> merge_tool_call(calls, {"index": 0, "function": {"arguments": '{"x": 1}'}})
    >>> calls
    [{'index': 0, 'function': {'name': 'f', 'arguments': '{"x": 1}'}, 'id': 'c1'}]
    """
    index = delta.get("index")
    if not isinstance(index, int):
        calls.append(delta)
        return
    while len(calls) <= index:
        calls.append({"index": len(calls), "function": {"name": "", "arguments": ""}})
    slot = calls[index]
    for key in ("id", "type"):
        if delta.get(key):
            slot[key] = delta[key]
    function = delta.get("function") or {}
    if function.get("name"):
        slot["function"]["name"] += function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        slot["function"]["arguments"] += arguments
    elif arguments is not None:
        slot["function"]["arguments"] = arguments
