"""Structured output (a JSON schema) on OpenAI-compatible servers, which speak two dialects.

OpenAI's API asks for it with ``{"type": "json_schema", "json_schema": {"name", "schema",
"strict"}}``; llama-cpp-python's server accepts only ``text`` and ``json_object`` and takes the
schema beside the type, ``{"type": "json_object", "schema": ...}``, refusing the first form with
HTTP 500 and a validation message (``Input should be 'text' or 'json_object'``; found by
sending it). Callers start with ``json_schema``, switch to ``json_object`` when
:func:`refuses_json_schema` says the server refused it, and keep that dialect for the server.
"""

from __future__ import annotations

from typing import Any, Literal

Dialect = Literal["json_schema", "json_object"]


def response_format(schema: dict[str, Any], name: str, dialect: Dialect) -> dict[str, Any]:
    """The ``response_format`` that constrains a reply to ``schema`` in ``dialect``.

    >>> response_format({"type": "object"}, "x", "json_object")
    {'type': 'json_object', 'schema': {'type': 'object'}}
    >>> response_format({"type": "object"}, "x", "json_schema")["json_schema"]["name"]
    'x'
    """
    if dialect == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def refuses_json_schema(status: int, message: str) -> bool:
    """Whether an error reply (``status``, its message) refuses the ``json_schema`` form
    itself, rather than the request's content: a 4xx or 5xx whose message names
    ``json_schema`` together with ``response_format`` or ``json_object``.

    >>> refuses_json_schema(500, "('body', 'response_format', 'type') ... 'json_schema'")
    True
    >>> refuses_json_schema(400, "This model's maximum context length is 1024 tokens")
    False
    """
    if status < 400 or "json_schema" not in message:
        return False
    return "response_format" in message or "json_object" in message
