"""Ollama's native API in front of an OpenAI-compatible server (``upstream.kind: openai``): the
request side and the small endpoints.

llama.cpp's server, vLLM, LM Studio and others speak ``/v1/chat/completions``; Ollama clients
speak ``/api/chat`` and ``/api/generate``. This module translates requests (the conversation
through the adapter's :meth:`~proxy.adapters.OllamaAdapter.openai_prompt`, options, ``format``),
model lists (``/api/tags`` from ``/v1/models``), embeddings (``/api/embed`` from
``/v1/embeddings``) and errors; replies are re-framed by ``proxy.reframe``. Request fields with
no OpenAI equivalent are named in :class:`Translated` ``.unsupported`` so the caller can report
them. Wire formats: ``../shared/reference/ollama`` (Ollama) and the OpenAI chat completions
reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from memory.structured import Dialect, response_format
from proxy.adapters import OllamaAdapter

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


@dataclass
class Translated:
    """An Ollama request as an OpenAI one: ``path`` (``/v1/chat/completions`` or, for raw
    generation, ``/v1/completions``), ``body``, whether it streams, and the Ollama fields that
    could not be carried over (``options.num_ctx``, ``think``, ...)."""

    path: str
    body: dict[str, Any]
    stream: bool
    unsupported: list[str] = field(default_factory=list)


def to_openai_request(
    adapter: OllamaAdapter, body: dict[str, Any], dialect: Dialect = "json_schema"
) -> Translated:
    """Translate a validated ``/api/chat`` or ``/api/generate`` body; a ``format`` schema goes
    out as ``response_format`` in ``dialect`` (:mod:`memory.structured`).

    >>> from proxy.adapters import OLLAMA_CHAT
    >>> t = to_openai_request(OLLAMA_CHAT, {"model": "m", "messages": [
    ...     {"role": "user", "content": "hi"}], "options": {"num_predict": 8, "num_ctx": 4096}})
    >>> t.path, t.body["max_tokens"], t.stream, t.unsupported
    ('/v1/chat/completions', 8, True, ['options.num_ctx'])
    """
    stream = body.get("stream", True) is not False  # Ollama streams unless told otherwise
    out: dict[str, Any] = {"model": body["model"], "stream": stream}
    if stream:
        out["stream_options"] = {"include_usage": True}
    prompt = adapter.openai_prompt(body)
    out.update(prompt.fields)
    unsupported = [*prompt.unsupported, *_options(body, out), *_format(body, out, dialect)]
    handled = SILENT | prompt.handled | {"format"}
    if body.get("think") in (None, False):
        handled |= {"think"}
    unsupported += [k for k, v in body.items() if k not in handled and v is not None]
    return Translated(prompt.path, out, stream, unsupported)


def _options(body: dict[str, Any], out: dict[str, Any]) -> list[str]:
    """Copy ``options`` with an OpenAI name into ``out``; returns the others (``options.x``)."""
    unsupported = []
    for key, value in (body.get("options") or {}).items():
        if key in OPTION_MAP:
            out[OPTION_MAP[key]] = value
        else:
            unsupported.append(f"options.{key}")
    return unsupported


def _format(body: dict[str, Any], out: dict[str, Any], dialect: Dialect) -> list[str]:
    """Set ``response_format`` in ``out`` from ``format``; ``["format"]`` if it cannot be."""
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = response_format(fmt, "format", dialect)
    elif fmt not in (None, ""):
        return ["format"]
    return []


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


def _listed(models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``/v1/models`` entries by id, each with llama.cpp's extra ``models[]`` entry (its
    ``capabilities``) folded in under ``"ollama"``."""
    extra = {
        m.get("model") or m.get("name"): m
        for m in models.get("models") or []
        if isinstance(m, dict) and (m.get("model") or m.get("name"))
    }
    out: dict[str, dict[str, Any]] = {}
    for model in models.get("data") or []:
        if isinstance(model, dict) and isinstance(model.get("id"), str) and model["id"]:
            out[model["id"]] = {**model, "ollama": extra.get(model["id"], {})}
    return out


def _parameter_size(n_params: Any) -> str:
    """``135000000`` -> ``"135M"`` (Ollama's ``details.parameter_size`` style)."""
    if not isinstance(n_params, int | float) or n_params <= 0:
        return ""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n_params >= scale:
            return f"{n_params / scale:.3g}{unit}"
    return str(int(n_params))


def show_from_models(models: dict[str, Any], name: str) -> dict[str, Any] | None:
    """``/v1/models`` -> ``/api/show`` for model ``name`` (a ``:latest`` tag is ignored), or
    None when the server does not list it.

    What can be known: the name, ``capabilities`` (``completion``, plus what llama.cpp's
    ``models[].capabilities`` lists, e.g. ``tools`` or ``vision``), and from llama.cpp's
    ``meta`` the parameter count and training context length. Template, parameters and
    licence stay empty: an OpenAI-compatible server does not expose them.

    >>> out = show_from_models({"data": [{"id": "smollm2", "meta": {"n_params": 134515008}}]},
    ...                        "smollm2:latest")
    >>> out["capabilities"], out["details"]["parameter_size"]
    (['completion'], '135M')
    >>> show_from_models({"data": []}, "x") is None
    True
    """
    listed = _listed(models)
    model = listed.get(name) or listed.get(name.removesuffix(":latest"))
    if model is None:
        return None
    meta: dict[str, Any] = model["meta"] if isinstance(model.get("meta"), dict) else {}
    capabilities = ["completion"]
    for capability in model["ollama"].get("capabilities") or []:
        if isinstance(capability, str) and capability not in capabilities:
            capabilities.append(capability)
    info: dict[str, Any] = {}
    if isinstance(meta.get("n_params"), int):
        info["general.parameter_count"] = meta["n_params"]
    if isinstance(meta.get("n_ctx_train"), int):
        info["general.context_length"] = meta["n_ctx_train"]
    details = {"format": "", "family": "", "families": None, "parameter_size": ""}
    details["parameter_size"] = _parameter_size(meta.get("n_params"))
    return {
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": details,
        "model_info": info,
        "capabilities": capabilities,
    }


def ps_from_models(models: dict[str, Any]) -> dict[str, Any]:
    """``/v1/models`` -> ``/api/ps``: every listed model (:func:`tags_from_models`) as loaded
    (an OpenAI-compatible server serves what it lists; sizes unknown, no expiry).

    >>> ps_from_models({"data": [{"id": "smollm2"}]})["models"][0]["name"]
    'smollm2'
    """
    loaded = {"expires_at": "0001-01-01T00:00:00Z", "size_vram": 0}
    return {"models": [{**m, **loaded} for m in tags_from_models(models)["models"]]}


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
