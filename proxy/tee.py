"""The tee: assembles the assistant's reply from the bytes relayed to the client.

The relay writes upstream bytes to the client untouched and feeds the same bytes here. Framing
is NDJSON (Ollama streaming), SSE (OpenAI streaming, one ``data:`` line per event as OpenAI and
Ollama send them) or one JSON document (``stream: false``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy.wire import ApiKind

Framing = Literal["ndjson", "sse", "json"]

OLLAMA_METRICS = (
    "done_reason",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
"""Fields of Ollama's final chunk kept as exchange metrics (durations in nanoseconds)."""


@dataclass
class Reply:
    """The assistant's side of an exchange as assembled so far."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    done: bool = False
    unparsed: int = 0
    """Frames that were not valid JSON (relayed anyway)."""


def framing_for(content_type: str) -> Framing:
    """Framing of an upstream reply from its ``Content-Type``."""
    if "ndjson" in content_type:
        return "ndjson"
    if "event-stream" in content_type:
        return "sse"
    return "json"


def _merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    """Fold an OpenAI streamed tool-call fragment (keyed by ``index``) into ``calls``."""
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


def _error_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("message") or value)
    return str(value)


def absorb(reply: Reply, api: ApiKind, obj: Any) -> None:
    """Fold one decoded frame (a chunk, or the whole non-streamed body) into ``reply``."""
    if not isinstance(obj, dict):
        reply.unparsed += 1
        return
    if "error" in obj and obj["error"] is not None:
        reply.error = _error_text(obj["error"])
        return
    if api == "openai_chat":
        _absorb_openai(reply, obj)
        return
    if api == "ollama_chat":
        message = obj.get("message") or {}
        reply.content += message.get("content") or ""
        reply.thinking += message.get("thinking") or ""
        reply.tool_calls.extend(message.get("tool_calls") or [])
    else:
        reply.content += obj.get("response") or ""
        reply.thinking += obj.get("thinking") or ""
    if obj.get("done"):
        reply.done = True
        reply.metrics.update({k: obj[k] for k in OLLAMA_METRICS if obj.get(k) is not None})


def _absorb_openai(reply: Reply, obj: dict[str, Any]) -> None:
    for choice in obj.get("choices") or []:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        part = choice.get("delta") or choice.get("message") or {}
        reply.content += part.get("content") or ""
        reply.thinking += part.get("reasoning_content") or part.get("reasoning") or ""
        for call in part.get("tool_calls") or []:
            _merge_tool_call(reply.tool_calls, call)
        if choice.get("finish_reason"):
            reply.metrics["done_reason"] = choice["finish_reason"]
            reply.done = True
    usage = obj.get("usage")
    if isinstance(usage, dict):
        if usage.get("prompt_tokens") is not None:
            reply.metrics["prompt_eval_count"] = usage["prompt_tokens"]
        if usage.get("completion_tokens") is not None:
            reply.metrics["eval_count"] = usage["completion_tokens"]


class Tee:
    """Incremental parser of one upstream reply; ``feed`` bytes as relayed, then ``close``."""

    def __init__(self, api: ApiKind, framing: Framing) -> None:
        self.api = api
        self.framing = framing
        self.reply = Reply()
        self.received = 0
        """Bytes fed so far."""
        self.final_seen = False
        """The reply's last frame has been parsed (Ollama ``done``/error, SSE ``[DONE]``)."""
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes; complete frames are parsed at once (JSON waits for ``close``)."""
        self._buffer += chunk
        self.received += len(chunk)
        if self.framing == "json":
            return
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        for line in lines:
            self._frame(bytes(line))

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
        if self._buffer.strip():
            self._frame(bytes(self._buffer))
        self._buffer.clear()
        return self.reply

    def _frame(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return
        if self.framing == "sse":
            if not text.startswith("data:"):
                return  # comments, event:, id:, retry: lines carry no content
            text = text[5:].strip()
            if text == "[DONE]":
                self.reply.done = True
                self.final_seen = True
                return
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            self.reply.unparsed += 1
            return
        absorb(self.reply, self.api, obj)
        if self.framing == "ndjson" and (self.reply.done or self.reply.error is not None):
            self.final_seen = True
