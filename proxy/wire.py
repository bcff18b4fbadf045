"""Typed wire models of the request bodies the proxy reads.

Only the fields the proxy uses are declared; ``extra="allow"`` keeps every other field, and the
proxy edits the original JSON object rather than re-serialising these models, so unknown fields
(tools, images, format, think, options, keep_alive, future ones) reach the upstream unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from proxy.errors import BadRequest

ApiKind = Literal["ollama_chat", "ollama_generate", "openai_chat"]


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


M = TypeVar("M", bound=Wire)

REQUEST_MODELS: dict[ApiKind, type[Wire]] = {
    "ollama_chat": OllamaChatRequest,
    "ollama_generate": OllamaGenerateRequest,
    "openai_chat": OpenAIChatRequest,
}


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object.

    Raises:
        BadRequest: invalid UTF-8, invalid JSON, or not an object.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def validate(model: type[M], body: dict[str, Any]) -> M:
    """Check ``body`` against ``model``; raises BadRequest naming the first bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"invalid field '{where}': {first['msg']}") from exc
