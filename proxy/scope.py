"""Who a request belongs to, from its headers and body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memory.types import Scope

USER_HEADER = "X-Memory-User"
SESSION_HEADER = "X-Memory-Session"
OPEN_WEBUI_USER = "X-OpenWebUI-User-Id"
"""Sent by Open WebUI with ``ENABLE_FORWARD_USER_INFO_HEADERS=true`` (its account id)."""
OPEN_WEBUI_CHAT = "X-OpenWebUI-Chat-Id"
"""Sent by Open WebUI with the same setting: the chat the request belongs to."""
SWITCH_HEADER = "X-Memory"
DEFAULT_USER = "default"


def scope_for(headers: Mapping[str, str], body: Mapping[str, Any]) -> Scope | None:
    """The request's scope, or None when the client sent ``X-Memory: off``.

    User: ``X-Memory-User``, else Open WebUI's ``X-OpenWebUI-User-Id``, else the OpenAI body
    field ``user``, else ``default``. Session: ``X-Memory-Session``, else Open WebUI's
    ``X-OpenWebUI-Chat-Id``. These are claims the client makes, not proof.

    >>> scope_for({"X-Memory-User": "alice"}, {"user": "bob"})
    Scope(user='alice', session=None)
    >>> scope_for({}, {"user": "bob"}).user, scope_for({}, {}).user
    ('bob', 'default')
    >>> scope_for({"X-OpenWebUI-User-Id": "u-7", "X-OpenWebUI-Chat-Id": "c-1"}, {"user": "b"})
    Scope(user='u-7', session='c-1')
    >>> scope_for({"X-Memory": "off"}, {}) is None
    True
    """
    if headers.get(SWITCH_HEADER, "").strip().lower() in {"off", "0", "false", "no"}:
        return None
    user = headers.get(USER_HEADER, "").strip() or headers.get(OPEN_WEBUI_USER, "").strip()
    if not user:
        body_user = body.get("user")
        user = body_user.strip() if isinstance(body_user, str) else ""
    session = (
        headers.get(SESSION_HEADER, "").strip() or headers.get(OPEN_WEBUI_CHAT, "").strip() or None
    )
    return Scope(user=user or DEFAULT_USER, session=session)
