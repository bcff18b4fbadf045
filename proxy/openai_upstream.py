"""Ollama's native API in front of an OpenAI-compatible server (``upstream.kind: openai``).

llama.cpp's server, vLLM, LM Studio and others speak ``/v1/chat/completions``; Ollama clients
speak ``/api/chat`` and ``/api/generate``. This module translates one into the other and back:
requests (messages, images, tools, options, ``format``), streamed replies (SSE events re-framed
as Ollama NDJSON chunks, the final chunk's counts mapped from ``usage``), whole replies, model
lists (``/api/tags`` from ``/v1/models``), embeddings (``/api/embed`` from ``/v1/embeddings``)
and errors. Request fields with no OpenAI equivalent are named in :class:`Translated`
``.unsupported`` so the caller can report them. Wire formats: ``../shared/reference/ollama``
(Ollama) and the OpenAI chat completions reference.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from memory.structured import Dialect, response_format
from proxy.wire import ApiKind

OPTION_MAP = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "num_predict": "max_tokens",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
}
"""Ollama ``options`` -> OpenAI request fields (``top_k``, ``min_p`` and ``repeat_penalty``
are extensions that llama.cpp and vLLM accept)."""
SILENT = frozenset({"model", "messages", "prompt", "system", "stream", "options", "keep_alive"})
"""Request fields handled explicitly or without meaning for an OpenAI server (``keep_alive``)."""
IMAGE_MAGIC = {"/9j/": "image/jpeg", "iVBOR": "image/png", "R0lGOD": "image/gif"}


@dataclass
class Translated:
    """An Ollama request as an OpenAI one: ``path`` (``/v1/chat/completions`` or, for raw
    generation, ``/v1/completions``), ``body``, whether it streams, and the Ollama fields that
    could not be carried over (``options.num_ctx``, ``think``, ...)."""

    path: str
    body: dict[str, Any]
    stream: bool
    unsupported: list[str] = field(default_factory=list)


def _image_part(data: str) -> dict[str, Any]:
    mime = next((m for p, m in IMAGE_MAGIC.items() if data.startswith(p)), "image/webp")
    url = data if data.startswith("data:") else f"data:{mime};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _message(message: dict[str, Any], calls: list[str]) -> dict[str, Any]:
    """One Ollama chat message as an OpenAI one; ``calls`` collects tool-call ids in order so
    that ``tool`` results can name the call they answer."""
    role = message.get("role", "user")
    content = message.get("content") or ""
    out: dict[str, Any] = {"role": role, "content": content}
    images = message.get("images") or []
    if images:
        out["content"] = [{"type": "text", "text": content}, *map(_image_part, images)]
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = []
        for call in message["tool_calls"]:
            function = call.get("function") or {}
            call_id = call.get("id") or f"call_{len(calls)}"
            calls.append(call_id)
            arguments = function.get("arguments", {})
            out["tool_calls"].append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": function.get("name", ""),
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments, ensure_ascii=False),
                    },
                }
            )
    if role == "tool":
        out["tool_call_id"] = message.get("tool_call_id") or (calls[-1] if calls else "call_0")
        if message.get("tool_name"):
            out["name"] = message["tool_name"]
    return out


def to_openai_request(
    api: ApiKind, body: dict[str, Any], dialect: Dialect = "json_schema"
) -> Translated:
    """Translate a validated ``/api/chat`` or ``/api/generate`` body; a ``format`` schema goes
    out as ``response_format`` in ``dialect`` (:mod:`memory.structured`).

    >>> t = to_openai_request("ollama_chat", {"model": "m", "messages": [
    ...     {"role": "user", "content": "hi"}], "options": {"num_predict": 8, "num_ctx": 4096}})
    >>> t.path, t.body["max_tokens"], t.stream, t.unsupported
    ('/v1/chat/completions', 8, True, ['options.num_ctx'])
    """
    stream = body.get("stream", True) is not False  # Ollama streams unless told otherwise
    unsupported: list[str] = []
    out: dict[str, Any] = {"model": body["model"], "stream": stream}
    if stream:
        out["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions"
    handled = set(SILENT)
    if api == "ollama_chat":
        calls: list[str] = []
        out["messages"] = [_message(m, calls) for m in body.get("messages") or []]
        handled |= {"tools"}
        if body.get("tools"):
            out["tools"] = body["tools"]
    elif body.get("raw"):
        path = "/v1/completions"
        out["prompt"] = body.get("prompt") or ""
        handled |= {"raw", "images"}
        if body.get("images"):
            unsupported.append("images")
    else:
        messages: list[dict[str, Any]] = []
        if body.get("system"):
            messages.append({"role": "system", "content": body["system"]})
        user = {"role": "user", "content": body.get("prompt") or ""}
        messages.append(_message({**user, "images": body.get("images")}, []))
        out["messages"] = messages
        handled |= {"raw", "images"}
    for key, value in (body.get("options") or {}).items():
        if key in OPTION_MAP:
            out[OPTION_MAP[key]] = value
        else:
            unsupported.append(f"options.{key}")
    fmt = body.get("format")
    handled.add("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = response_format(fmt, "format", dialect)
    elif fmt not in (None, ""):
        unsupported.append("format")
    if body.get("think") in (None, False):
        handled.add("think")
    for key, value in body.items():
        if key not in handled and value is not None:
            unsupported.append(key)
    return Translated(path, out, stream, unsupported)


def now_iso() -> str:
    """Ollama's ``created_at``: RFC 3339 UTC with nanosecond-style precision."""
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tool_calls_to_ollama(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}


class OllamaFramer:
    """Re-frames one OpenAI reply as Ollama chunks for ``api`` (``ollama_chat`` or
    ``ollama_generate``). Feed decoded SSE events with :meth:`chunk`; :meth:`final` gives the
    closing ``done: true`` chunk with counts from ``usage`` (``prompt_eval_count``,
    ``eval_count``) and ``total_duration`` in nanoseconds measured since construction."""

    def __init__(self, api: ApiKind, model: str) -> None:
        self.api = api
        self.model = model
        self.started = time.perf_counter_ns()
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self._calls: list[dict[str, Any]] = []

    def _base(self) -> dict[str, Any]:
        return {"model": self.model, "created_at": now_iso()}

    def _content(self, text: str, thinking: str = "") -> dict[str, Any]:
        if self.api == "ollama_chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            return {"message": message}
        out: dict[str, Any] = {"response": text}
        if thinking:
            out["thinking"] = thinking
        return out

    def chunk(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The Ollama chunk for one streamed OpenAI event, or None when it carries no text."""
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        text, thinking = "", ""
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text += delta.get("content") or choice.get("text") or ""
            thinking += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or []:
                self._merge_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if not text and not thinking:
            return None
        return {**self._base(), **self._content(text, thinking), "done": False}

    def _merge_call(self, delta: dict[str, Any]) -> None:
        index = delta.get("index", len(self._calls))
        while len(self._calls) <= index:
            self._calls.append({"function": {"name": "", "arguments": ""}})
        function = delta.get("function") or {}
        slot = self._calls[index]["function"]
        slot["name"] += function.get("name") or ""
        slot["arguments"] += function.get("arguments") or ""

    def final(self, text: str = "", thinking: str = "") -> dict[str, Any]:
        """The closing chunk (``done: true``); a whole reply passes its ``text``."""
        out = {**self._base(), **self._content(text, thinking)}
        if self._calls and self.api == "ollama_chat":
            out["message"]["tool_calls"] = _tool_calls_to_ollama(self._calls)
        out["done"] = True
        out["done_reason"] = DONE_REASONS.get(self.finish_reason or "stop", "stop")
        out["total_duration"] = time.perf_counter_ns() - self.started
        out["load_duration"] = 0
        if self.usage.get("prompt_tokens") is not None:
            out["prompt_eval_count"] = self.usage["prompt_tokens"]
        if self.usage.get("completion_tokens") is not None:
            out["eval_count"] = self.usage["completion_tokens"]
        return out

    def whole(self, completion: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed OpenAI completion as one Ollama reply (``done: true``)."""
        if isinstance(completion.get("usage"), dict):
            self.usage = completion["usage"]
        text, thinking = "", ""
        for choice in completion.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            message = choice.get("message") or {}
            text = message.get("content") or choice.get("text") or ""
            thinking = message.get("reasoning_content") or message.get("reasoning") or ""
            self._calls = list(message.get("tool_calls") or [])
            self.finish_reason = choice.get("finish_reason")
        return self.final(text, thinking)


class SseEvents:
    """Incremental Server-Sent Events parser for OpenAI streams: feed bytes, get the decoded
    JSON of each complete ``data:`` event (``"[DONE]"`` as the string itself).

    >>> p = SseEvents()
    >>> p.feed(b'data: {"a": 1}\\n\\ndata: [DO'), p.feed(b'NE]\\n\\n')
    ([{'a': 1}], ['[DONE]'])
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Any]:
        """Decoded events completed by ``chunk``; undecodable events become ``{"error": ...}``."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        out: list[Any] = []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue  # blank separators, comments, event:, id:, retry:
            data = line[5:].strip()
            if data == "[DONE]":
                out.append("[DONE]")
                continue
            try:
                out.append(json.loads(data))
            except json.JSONDecodeError:
                out.append({"error": f"undecodable event from upstream: {data[:200]}"})
        return out


def error_message(status: int, raw: bytes) -> str:
    """The error text of an OpenAI-style error body (``{"error": {"message"}}``,
    ``{"error": "..."}``, FastAPI's ``{"detail": ...}``), else the body itself.

    >>> error_message(400, b'{"error": {"message": "context too long", "type": "x"}}')
    'context too long'
    """
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text[:2000] or f"upstream answered HTTP {status}"
    if isinstance(obj, dict):
        error = obj.get("error", obj.get("detail"))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error is not None:
            return error if isinstance(error, str) else json.dumps(error)
    return text[:2000]


def tags_from_models(models: dict[str, Any]) -> dict[str, Any]:
    """``/v1/models`` -> ``/api/tags``: one entry per model id (sizes and digests unknown).

    >>> tags_from_models({"data": [{"id": "smollm2", "created": 0}]})["models"][0]["name"]
    'smollm2'
    """
    out = []
    for model in models.get("data") or []:
        if not isinstance(model, dict) or not model.get("id"):
            continue
        created = model.get("created")
        stamp = datetime.fromtimestamp(created if isinstance(created, int) else 0, tz=UTC)
        out.append(
            {
                "name": model["id"],
                "model": model["id"],
                "modified_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "size": 0,
                "digest": "",
                "details": {"format": "", "family": "", "parameter_size": ""},
            }
        )
    return {"models": out}


def embed_request(body: dict[str, Any]) -> dict[str, Any]:
    """``/api/embed`` (or legacy ``/api/embeddings`` with ``prompt``) -> ``/v1/embeddings``."""
    text = body.get("input", body.get("prompt", ""))
    return {"model": body.get("model", ""), "input": text}


def embed_response(reply: dict[str, Any], model: str, legacy: bool) -> dict[str, Any]:
    """``/v1/embeddings`` reply -> ``/api/embed`` (``embeddings``) or legacy
    ``/api/embeddings`` (``embedding``)."""
    rows = sorted(reply.get("data") or [], key=lambda d: d.get("index", 0))
    vectors = [row.get("embedding") for row in rows]
    if legacy:
        return {"embedding": vectors[0] if vectors else []}
    usage = reply.get("usage") or {}
    out: dict[str, Any] = {"model": model, "embeddings": vectors}
    if usage.get("prompt_tokens") is not None:
        out["prompt_eval_count"] = usage["prompt_tokens"]
    return out
