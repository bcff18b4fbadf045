"""Typed wire models of the request bodies and reply chunks the proxy reads.

Only the fields the proxy uses are declared; ``extra="allow"`` keeps every other field, and the
proxy edits the original JSON object rather than re-serialising these models, so unknown fields
(tools, images, format, think, options, keep_alive, future ones) reach the upstream unchanged.
Reply chunks are read from the tee's copy of the relayed bytes; the client gets the bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from proxy.errors import BadRequest

ApiKind = Literal[
    "ollama_chat", "ollama_generate", "openai_chat", "openai_responses", "anthropic_messages"
]
"""The intercepted chat formats, one adapter each (``proxy.adapters``)."""
Framing = Literal["ndjson", "sse", "json"]
"""How a reply's frames are delimited: NDJSON lines (Ollama streaming), SSE events (OpenAI,
Responses and Anthropic streaming) or one JSON document (``stream: false``)."""


class Wire(BaseModel):
    """Base of the wire models: unknown fields allowed and kept."""

    model_config = ConfigDict(extra="allow")


class OllamaMessage(Wire):
    """One message of ``POST /api/chat``."""

    role: str
    """``system``, ``user``, ``assistant`` or ``tool``."""
    content: str | None = None
    """Plain text (Ollama's content is always a string; images travel in ``images``)."""


class OllamaChatRequest(Wire):
    """``POST /api/chat``."""

    model: str
    """Model name, e.g. ``llama3.2``."""
    messages: list[OllamaMessage] | None = None
    """The conversation; empty or absent for model load/unload requests."""
    stream: bool | None = None
    """Streams NDJSON unless ``false``."""


class OllamaGenerateRequest(Wire):
    """``POST /api/generate``."""

    model: str
    prompt: str | None = None
    """The prompt; absent for model load/unload requests."""
    system: str | None = None
    """System message overriding the Modelfile's."""
    raw: bool | None = None
    """Raw mode: the prompt is sent unformatted, so ``system`` is not applied."""
    stream: bool | None = None


class OpenAIMessage(Wire):
    """One message of ``POST /v1/chat/completions``."""

    role: str
    """``system``, ``developer``, ``user``, ``assistant`` or ``tool``."""
    content: str | list[dict[str, Any]] | None = None
    """Text, or a list of content parts (``{"type": "text", "text": ...}``, images, ...)."""


class OpenAIChatRequest(Wire):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[OpenAIMessage]
    stream: bool | None = None
    user: str | None = None
    """End-user identifier; the proxy's fallback for the memory scope."""


Count = int | float
"""A count or a duration as a server sends it (integers from Ollama; tolerated as floats)."""


class OllamaFinal(Wire):
    """Fields of Ollama's closing chunk (``done: true``) kept as exchange metrics."""

    done: bool | None = None
    done_reason: str | None = None
    """``stop``, ``length``, ``load``, ``unload``."""
    total_duration: Count | None = None
    """Nanoseconds, like every ``*_duration``."""
    load_duration: Count | None = None
    prompt_eval_count: Count | None = None
    """Prompt tokens."""
    prompt_eval_duration: Count | None = None
    eval_count: Count | None = None
    """Reply tokens."""
    eval_duration: Count | None = None


class OllamaReplyMessage(Wire):
    """The ``message`` of an ``/api/chat`` reply chunk."""

    content: str | None = None
    thinking: str | None = None
    """Reasoning of thinking models (``think: true``)."""
    tool_calls: list[dict[str, Any]] | None = None
    """Whole calls (Ollama does not stream fragments): ``{"function": {name, arguments}}``."""


class OllamaChatChunk(OllamaFinal):
    """One NDJSON line of a streamed ``/api/chat`` reply, or the whole non-streamed reply."""

    message: OllamaReplyMessage | None = None


class OllamaGenerateChunk(OllamaFinal):
    """One NDJSON line of a streamed ``/api/generate`` reply, or the whole non-streamed reply."""

    response: str | None = None
    thinking: str | None = None


class OpenAIDelta(Wire):
    """A choice's ``delta`` (streamed) or ``message`` (whole completion)."""

    content: str | None = None
    reasoning_content: str | None = None
    """Reasoning as llama.cpp and DeepSeek send it."""
    reasoning: str | None = None
    """Reasoning as vLLM and OpenRouter send it."""
    tool_calls: list[dict[str, Any]] | None = None
    """Streamed: fragments keyed by ``index`` (merged by ``proxy.sse.merge_tool_call``)."""


class OpenAIChoice(Wire):
    """One entry of ``choices``; only ``index`` 0 is read."""

    index: int = 0
    delta: OpenAIDelta | None = None
    message: OpenAIDelta | None = None
    text: str | None = None
    """The text of a legacy ``/v1/completions`` choice (raw generation)."""
    finish_reason: str | None = None


class OpenAIUsage(Wire):
    """Token counts of a completion (the last streamed chunk with ``include_usage``)."""

    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None


class OpenAIChatChunk(Wire):
    """One SSE event of a streamed ``/v1/chat/completions`` reply, or the whole completion."""

    choices: list[OpenAIChoice] | None = None
    usage: OpenAIUsage | None = None

    def first_choice(self) -> OpenAIChoice | None:
        """The choice with ``index`` 0 (the one the proxy remembers), if present."""
        return next((c for c in self.choices or [] if c.index == 0), None)


class ResponsesRequest(Wire):
    """``POST /v1/responses`` (OpenAI Responses API)."""

    model: str
    input: str | list[dict[str, Any]] | None = None
    """A string (one user message) or a list of items: messages (``role`` user, assistant,
    system or developer; ``content`` a string or ``input_text`` / ``output_text`` parts),
    ``function_call``, ``function_call_output`` and ``reasoning`` items."""
    instructions: str | None = None
    """System instructions (the format's system field)."""
    stream: bool | None = None
    user: str | None = None
    """End-user identifier; the proxy's fallback for the memory scope."""


class ResponsesEvent(Wire):
    """One SSE event of a streamed ``/v1/responses`` reply (its ``type`` says which), or the
    whole response object (``object: "response"``, no ``type``)."""

    type: str | None = None
    """``response.output_text.delta``, ``response.completed``, ``error``, ..."""
    delta: str | None = None
    """Text of ``*.delta`` events."""
    item: dict[str, Any] | None = None
    """The item of ``response.output_item.done``."""
    response: dict[str, Any] | None = None
    """The response of ``response.completed`` / ``failed`` / ``incomplete``."""
    message: str | None = None
    """The message of an ``error`` event."""
    output: list[dict[str, Any]] | None = None
    """Output items of a whole response object."""
    status: str | None = None
    """``completed``, ``incomplete``, ``failed`` (a whole response object)."""
    usage: dict[str, Any] | None = None
    """``input_tokens`` / ``output_tokens`` (a whole response object)."""


class AnthropicMessage(Wire):
    """One message of ``POST /v1/messages``."""

    role: str
    """``user`` or ``assistant`` (the system prompt is the top-level ``system``)."""
    content: str | list[dict[str, Any]]
    """Text, or content blocks (``text``, ``image``, ``tool_use``, ``tool_result``,
    ``thinking``, ...)."""


class AnthropicMessagesRequest(Wire):
    """``POST /v1/messages`` (Anthropic Messages API)."""

    model: str
    messages: list[AnthropicMessage]
    system: str | list[dict[str, Any]] | None = None
    """A string or a list of ``text`` blocks (possibly with ``cache_control``)."""
    stream: bool | None = None


class AnthropicEvent(Wire):
    """One SSE event of a streamed ``/v1/messages`` reply, or the whole message
    (``type: "message"``)."""

    type: str | None = None
    """``message_start``, ``content_block_start``, ``content_block_delta``, ``message_delta``,
    ``message_stop``, ``ping``, ``error``; ``message`` for a whole reply."""
    index: int | None = None
    """The content block an event refers to."""
    content_block: dict[str, Any] | None = None
    """The block opened by ``content_block_start``."""
    delta: dict[str, Any] | None = None
    """``text_delta`` / ``thinking_delta`` / ``input_json_delta`` (block events) or
    ``stop_reason`` (``message_delta``)."""
    message: dict[str, Any] | None = None
    """The message of ``message_start`` (its ``usage.input_tokens``)."""
    usage: dict[str, Any] | None = None
    """``output_tokens`` (``message_delta``) or both counts (a whole message)."""
    content: list[dict[str, Any]] | None = None
    """Content blocks of a whole message."""
    stop_reason: str | None = None
    """``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use`` (a whole message)."""


M = TypeVar("M", bound=Wire)


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object (RFC 8259) of valid Unicode text.

    Beyond :func:`json.loads`, this refuses what the proxy could not store or forward:
    ``NaN`` / ``Infinity`` and numbers too large for a double (not JSON; they would reach the
    upstream as invalid JSON), and lone surrogates (``"\\ud800"``: not encodable as UTF-8, so
    not storable). Nesting too deep for the parser and integers over Python's 4300-digit
    conversion limit are refused too, instead of failing later.

    Raises:
        BadRequest: invalid UTF-8, invalid JSON, not an object, or one of the above.
    """
    try:
        body = json.loads(
            raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc.msg} at char {exc.pos}") from exc
    except RecursionError as exc:
        raise BadRequest("invalid JSON in request body: nested too deeply") from exc
    except ValueError as exc:  # the int digit limit, or _no_constant / _finite_float
        reason = str(exc).split(";")[0]  # not Python's advice on sys.set_int_max_str_digits
        raise BadRequest(f"invalid JSON in request body: {reason}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if _MAYBE_SURROGATE.search(raw):
        where = _surrogate_in(body)
        if where is not None:
            raise BadRequest(f"invalid string in request body at '{where}': lone surrogate")
    return body


_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: the only way a surrogate gets into decoded JSON (raw
UTF-8 cannot encode one), so bodies without it are not walked."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]}... out of range")
    return value


def _surrogate_in(body: Any) -> str | None:
    """The dotted path of a string (key or value) holding a lone surrogate, or None.

    Iterative, so a deep document cannot overflow the stack here either.

    >>> _surrogate_in({"messages": [{"content": "ok"}, {"content": "a\\ud800"}]})
    'messages.1.content'
    >>> _surrogate_in({"a": ["fine", 1, None]}) is None
    True
    """
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    return child
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(model: type[M], body: dict[str, Any]) -> M:
    """Check ``body`` against ``model``; raises BadRequest naming the first bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"invalid field '{where}': {first['msg']}") from exc
