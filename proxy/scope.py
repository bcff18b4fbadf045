"""Who a request belongs to, from its headers and body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memory.types import Scope

USER_HEADER = "X-Memory-User"
SESSION_HEADER = "X-Memory-Session"
SWITCH_HEADER = "X-Memory"
DEFAULT_USER = "default"


def scope_for(headers: Mapping[str, str], body: Mapping[str, Any]) -> Scope | None:
    """The request's scope, or None when the client sent ``X-Memory: off``.

    User: ``X-Memory-User``, else the OpenAI body field ``user``, else ``default``.

    >>> scope_for({"X-Memory-User": "alice"}, {"user": "bob"})
    Scope(user='alice', session=None)
    >>> scope_for({}, {"user": "bob"}).user, scope_for({}, {}).user
    ('bob', 'default')
    >>> scope_for({"X-Memory": "off"}, {}) is None
    True
    """
    if headers.get(SWITCH_HEADER, "").strip().lower() in {"off", "0", "false", "no"}:
        return None
    user = headers.get(USER_HEADER, "").strip()
    if not user:
        body_user = body.get("user")
        user = body_user.strip() if isinstance(body_user, str) else ""
    session = headers.get(SESSION_HEADER, "").strip() or None
    return Scope(user=user or DEFAULT_USER, session=session)
