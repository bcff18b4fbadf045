"""Who a request belongs to, from its credential (``proxy.auth``), headers and body."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from multidict import CIMultiDict, CIMultiDictProxy

from memory.types import Scope
from proxy.errors import BadRequest, Forbidden

USER_HEADER = "X-Memory-User"
SESSION_HEADER = "X-Memory-Session"
OPEN_WEBUI_USER = "X-OpenWebUI-User-Id"
"""Sent by Open WebUI with ``ENABLE_FORWARD_USER_INFO_HEADERS=true`` (its account id)."""
OPEN_WEBUI_CHAT = "X-OpenWebUI-Chat-Id"
"""Sent by Open WebUI with the same setting: the chat the request belongs to."""
SWITCH_HEADER = "X-Memory"
DEFAULT_USER = "default"
USER_HEADERS = (USER_HEADER, OPEN_WEBUI_USER)
SESSION_HEADERS = (SESSION_HEADER, OPEN_WEBUI_CHAT)

Headers = CIMultiDictProxy[str] | CIMultiDict[str]


@dataclass(frozen=True)
class Principal:
    """A proven caller: ``user`` and how it was proven (``token`` or Open WebUI's ``jwt``)."""

    user: str
    method: Literal["token", "jwt"]


def clean(value: str, where: str) -> str:
    """``value`` stripped; BadRequest when it is not valid UTF-8 or holds control characters.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``: a byte that is not UTF-8
    arrives as a lone surrogate (U+DC80..U+DCFF), as does a JSON ``"\\ud800"``.

    >>> clean(" alice ", "X-Memory-User")
    'alice'
    >>> clean("al\\udcffice", "X-Memory-User")
    Traceback (most recent call last):
    proxy.errors.BadRequest: X-Memory-User is not valid UTF-8
    """
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise BadRequest(f"{where} is not valid UTF-8")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise BadRequest(f"{where} holds control characters")
    return value.strip()


def single(headers: Headers, name: str) -> str | None:
    """The one value of header ``name`` (None when absent); BadRequest when it is repeated,
    as the first, the last or a join would each be a guess."""
    values = headers.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name} is sent {len(values)} times; send it once")
    return values[0] if values else None


def claimed(headers: Headers, names: tuple[str, ...], *, one_name: bool) -> str:
    """The first non-empty of headers ``names``, checked (:func:`single`, :func:`clean`);
    with ``one_name``, a comma is refused too: a front proxy may have joined two headers."""
    for name in names:
        value = single(headers, name)
        if value is None:
            continue
        value = clean(value, name)
        if one_name and "," in value:
            raise BadRequest(f"{name} names more than one user")
        if value:
            return value
    return ""


def scope_for(
    headers: Headers, body: Mapping[str, Any], principal: Principal | None = None
) -> Scope | None:
    """The request's scope, or None when the client sent ``X-Memory: off``.

    With a ``principal`` (``auth`` configured) the user is the proven one and a body ``user``
    naming someone else is a 403 (``proxy.auth`` checks the headers). Without one, the user is
    claimed: ``X-Memory-User``, else Open WebUI's ``X-OpenWebUI-User-Id``, else the OpenAI body
    field ``user``, else ``default``. Session (always claimed): ``X-Memory-Session``, else
    Open WebUI's ``X-OpenWebUI-Chat-Id``.

    Raises:
        BadRequest: an identity header repeated, not UTF-8, or with control characters.
        Forbidden: the body's ``user`` contradicts ``principal``.

    >>> scope_for(CIMultiDict({"X-Memory-User": "alice"}), {"user": "bob"})
    Scope(user='alice', session=None, auth='claimed')
    >>> scope_for(CIMultiDict(), {"user": "bob"}).user, scope_for(CIMultiDict(), {}).user
    ('bob', 'default')
    >>> h = CIMultiDict({"X-OpenWebUI-User-Id": "u-7", "X-OpenWebUI-Chat-Id": "c-1"})
    >>> scope_for(h, {}, Principal("u-7", "jwt"))
    Scope(user='u-7', session='c-1', auth='jwt')
    >>> scope_for(CIMultiDict({"X-Memory": "off"}), {}) is None
    True
    """
    if headers.get(SWITCH_HEADER, "").strip().lower() in {"off", "0", "false", "no"}:
        return None
    user = claimed(headers, USER_HEADERS, one_name=True)
    body_user = body.get("user")
    body_user = clean(body_user, "the body's 'user'") if isinstance(body_user, str) else ""
    session = claimed(headers, SESSION_HEADERS, one_name=False) or None
    if principal is not None:
        if body_user and body_user != principal.user:
            raise Forbidden(f"the body's 'user' names another user than the {principal.method}")
        return Scope(user=principal.user, session=session, auth=principal.method)
    return Scope(user=user or body_user or DEFAULT_USER, session=session)
