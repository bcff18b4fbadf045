"""Ollama's native chat endpoints: ``POST /api/chat`` and ``POST /api/generate``.

Besides reading requests and reply chunks, these adapters know how an Ollama body reads as an
OpenAI one (:meth:`OllamaFormat.openai_prompt`) and how an Ollama reply chunk is written
(:meth:`OllamaFormat.reply_chunk`): ``proxy.openai_upstream`` and ``proxy.reframe`` use both
when the upstream is OpenAI-compatible. Wire format: ``../shared/reference/ollama``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from proxy.adapters.base import SAMPLING, Adapter, Placement, Reply, parse_chunk
from proxy.adapters.messages import MessagesFormat, merge_into
from proxy.wire import (
    ApiKind,
    Framing,
    OllamaChatChunk,
    OllamaChatRequest,
    OllamaFinal,
    OllamaGenerateChunk,
    OllamaGenerateRequest,
    Wire,
)

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
LITELLM_SECTION = re.compile(r"(?:\A|\n\n)### (User|System|Assistant|Response):\n")
"""A section header of a LiteLLM ``ollama/`` prompt (``ollama_pt``)."""
IMAGE_MAGIC = {"/9j/": "image/jpeg", "iVBOR": "image/png", "R0lGOD": "image/gif"}
"""Base64 openings of image formats (Ollama sends bare base64; OpenAI wants a data URL)."""


@dataclass
class OpenAIPrompt:
    """The part of an OpenAI request that carries an Ollama body's conversation: the ``path``
    to send it to, its ``fields`` (``messages`` or ``prompt``, ``tools``), the Ollama fields
    they account for, and those that could not be carried over."""

    path: str
    fields: dict[str, Any]
    handled: frozenset[str]
    unsupported: list[str] = field(default_factory=list)


@runtime_checkable
class OllamaAdapter(Adapter, Protocol):
    """An Ollama format's adapter: also writes its reply chunks and reads its body as OpenAI's,
    for an OpenAI-kind upstream."""

    def reply_chunk(
        self, text: str, thinking: str = "", tool_calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The content part of a reply chunk (``message`` or ``response``) carrying ``text``,
        ``thinking`` and Ollama-shaped ``tool_calls`` where the format has them."""
        ...

    def openai_prompt(self, body: dict[str, Any]) -> OpenAIPrompt:
        """The OpenAI path and fields that carry ``body``'s conversation."""
        ...


class OllamaFormat:
    """What ``/api/chat`` and ``/api/generate`` implement alike: sampling in ``options``,
    NDJSON streaming and the closing chunk's metrics."""

    framing: Framing = "ndjson"

    def with_sampling(self, body: dict[str, Any], knobs: dict[str, float]) -> dict[str, Any]:
        """``body`` with ``options.temperature`` / ``options.top_p`` where the client set none."""
        options = dict(body.get("options") or {})
        for name in SAMPLING:
            options.setdefault(name, round(knobs[name], 3))
        return {**body, "options": options}

    @staticmethod
    def absorb_final(reply: Reply, chunk: OllamaFinal) -> None:
        """Mark ``reply`` done, with :data:`OLLAMA_METRICS`, when ``chunk`` is the closing one."""
        if chunk.done:
            reply.done = True
            for name in OLLAMA_METRICS:
                if (value := getattr(chunk, name)) is not None:
                    reply.metrics[name] = value


def litellm_turns(prompt: str) -> list[str]:
    """The user sections of a prompt LiteLLM's ``ollama/`` provider wrapped a chat into
    (``### User:\\n...\\n\\n### Assistant:\\n...``; ``ollama_pt`` in LiteLLM's
    ``prompt_templates/factory.py``), stripped, in order; ``[]`` when ``prompt`` does not open
    with such a section (it is then taken as it is).

    >>> litellm_turns("### System:\\nBe brief.\\n\\n### User:\\nI live in Porto.\\n\\n")
    ['I live in Porto.']
    >>> litellm_turns("### User:\\na\\n\\n### Assistant:\\nb\\n\\n### User:\\nc\\n\\n")
    ['a', 'c']
    >>> litellm_turns("Tell me about ### User: headers")
    []
    """
    if not LITELLM_SECTION.match(prompt.lstrip()):
        return []
    parts = LITELLM_SECTION.split(prompt.lstrip())
    # split() yields ["", role, text, role, text, ...]
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return [text.strip() for role, text in pairs if role == "User" and text.strip()]


class OllamaChat(MessagesFormat, OllamaFormat):
    """``POST /api/chat``: messages in, ``message`` chunks out."""

    kind: ApiKind = "ollama_chat"
    path = "/api/chat"
    request_model: type[Wire] = OllamaChatRequest

    def absorb(self, reply: Reply, frame: dict[str, Any]) -> None:
        """Append the chunk's content, thinking and (whole) tool calls."""
        chunk = parse_chunk(OllamaChatChunk, frame, reply)
        if chunk is None:
            return
        if (message := chunk.message) is not None:
            reply.content += message.content or ""
            reply.thinking += message.thinking or ""
            reply.tool_calls.extend(message.tool_calls or [])
        self.absorb_final(reply, chunk)

    def reply_chunk(
        self, text: str, thinking: str = "", tool_calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The content part of an ``/api/chat`` reply chunk (``message``)."""
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"message": message}

    def openai_prompt(self, body: dict[str, Any]) -> OpenAIPrompt:
        """``messages`` (tool calls named by id, images as data URLs) and ``tools``."""
        calls: list[str] = []
        fields: dict[str, Any] = {
            "messages": [openai_message(m, calls) for m in body.get("messages") or []]
        }
        if body.get("tools"):
            fields["tools"] = body["tools"]
        return OpenAIPrompt("/v1/chat/completions", fields, frozenset({"tools"}))


class OllamaGenerate(OllamaFormat):
    """``POST /api/generate``: a ``prompt`` (and ``system``) in, ``response`` chunks out."""

    kind: ApiKind = "ollama_generate"
    path = "/api/generate"
    request_model: type[Wire] = OllamaGenerateRequest

    def user_turn(self, body: dict[str, Any]) -> str | None:
        """The prompt (the last user section of a LiteLLM-wrapped one: :func:`litellm_turns`);
        None when absent or blank (model load/unload) and for completions (raw, suffix)."""
        prompt = body.get("prompt")
        if self.is_completion(body) or not isinstance(prompt, str) or not prompt.strip():
            return None
        turns = litellm_turns(prompt)
        return turns[-1] if turns else prompt

    def is_completion(self, body: dict[str, Any]) -> bool:
        """``raw`` (the client applied its own template) or ``suffix`` (fill-in-the-middle, e.g.
        code autocomplete): text to continue, not a conversational turn."""
        return bool(body.get("raw")) or body.get("suffix") is not None

    def recall_query(self, body: dict[str, Any], turn: str) -> str:
        """The prompt itself (a generate request has no earlier turns)."""
        return turn

    def earlier_user_turns(self, body: dict[str, Any]) -> frozenset[str]:
        """The earlier user sections of a LiteLLM-wrapped prompt; else none."""
        prompt = body.get("prompt")
        turns = litellm_turns(prompt) if isinstance(prompt, str) else []
        return frozenset(t for t in turns[:-1] if t)

    def speaker(self, body: dict[str, Any]) -> str | None:
        """None: a prompt carries no name."""
        return None

    def inject(
        self, body: dict[str, Any], block: str, placement: Placement = "system"
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` merged into ``system`` (whatever the placement: a
        generate request has no conversation whose prefix could be kept)."""
        return {**body, "system": merge_into(body.get("system"), block)}

    def absorb(self, reply: Reply, frame: dict[str, Any]) -> None:
        """Append the chunk's ``response`` and ``thinking``."""
        chunk = parse_chunk(OllamaGenerateChunk, frame, reply)
        if chunk is None:
            return
        reply.content += chunk.response or ""
        reply.thinking += chunk.thinking or ""
        self.absorb_final(reply, chunk)

    def reply_chunk(
        self, text: str, thinking: str = "", tool_calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The content part of an ``/api/generate`` reply chunk (tool calls have no place)."""
        out: dict[str, Any] = {"response": text}
        if thinking:
            out["thinking"] = thinking
        return out

    def openai_prompt(self, body: dict[str, Any]) -> OpenAIPrompt:
        """``system`` and ``prompt`` as two messages; raw mode goes to ``/v1/completions``."""
        handled = frozenset({"raw", "images"})
        if body.get("raw"):
            unsupported = ["images"] if body.get("images") else []
            fields = {"prompt": body.get("prompt") or ""}
            return OpenAIPrompt("/v1/completions", fields, handled, unsupported)
        messages: list[dict[str, Any]] = []
        if body.get("system"):
            messages.append({"role": "system", "content": body["system"]})
        user = {"role": "user", "content": body.get("prompt") or "", "images": body.get("images")}
        messages.append(openai_message(user, []))
        return OpenAIPrompt("/v1/chat/completions", {"messages": messages}, handled)


def _image_part(data: str) -> dict[str, Any]:
    mime = next((m for p, m in IMAGE_MAGIC.items() if data.startswith(p)), "image/webp")
    url = data if data.startswith("data:") else f"data:{mime};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _openai_tool_call(call: dict[str, Any], call_id: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": function.get("name", ""), "arguments": arguments},
    }


def openai_message(message: dict[str, Any], calls: list[str]) -> dict[str, Any]:
    """One Ollama chat message as an OpenAI one; ``calls`` collects tool-call ids in order so
    that ``tool`` results can name the call they answer.

    >>> out = openai_message({"role": "user", "content": "hi", "images": ["iVBORw0"]}, [])
    >>> out["content"][1]["image_url"]["url"]
    'data:image/png;base64,iVBORw0'
    >>> openai_message({"role": "tool", "content": "17", "tool_name": "w"}, ["c7"])
    {'role': 'tool', 'content': '17', 'tool_call_id': 'c7', 'name': 'w'}
    """
    role = message.get("role", "user")
    content = message.get("content") or ""
    out: dict[str, Any] = {"role": role, "content": content}
    if images := message.get("images") or []:
        out["content"] = [{"type": "text", "text": content}, *map(_image_part, images)]
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = []
        for call in message["tool_calls"]:
            call_id = call.get("id") or f"call_{len(calls)}"
            calls.append(call_id)
            out["tool_calls"].append(_openai_tool_call(call, call_id))
    if role == "tool":
        out["tool_call_id"] = message.get("tool_call_id") or (calls[-1] if calls else "call_0")
        if message.get("tool_name"):
            out["name"] = message["tool_name"]
    return out
