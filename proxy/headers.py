"""Header handling for relaying (RFC 9110 section 7.6.1: hop-by-hop fields are not forwarded)."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Hop-by-hop fields (RFC 9110 7.6.1, plus the legacy ``proxy-connection`` and ``keep-alive``)."""

DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
"""Request ``Content-Encoding`` values aiohttp's server decodes (``http_parser``), one value
only: ``gzip, br`` and unknown codings are left as they came."""

MEMORY_HEADER_PREFIX = "x-memory"
"""Request headers addressed to the proxy (``X-Memory``, ``X-Memory-User`` ...); not forwarded."""


def _named_by_connection(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    named: set[str] = set()
    for value in headers.getall("Connection", []):
        named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """Copy of ``headers`` without hop-by-hop fields, fields named in ``Connection``, and
    ``drop`` (lower-case names).

    >>> h = CIMultiDict({"Connection": "close, X-Foo", "X-Foo": "1", "Accept": "*/*"})
    >>> dict(end_to_end(h))
    {'Accept': '*/*'}
    """
    skip = HOP_BY_HOP | _named_by_connection(headers) | {name.lower() for name in drop}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


def to_upstream(headers: CIMultiDictProxy[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """Request headers for the upstream: end-to-end only, no ``Host``, no ``X-Memory*``.

    The proxy's server decompresses request bodies in the codings of :data:`DECODED` (aiohttp's
    ``auto_decompress``), so what it sends on is identity-coded: such a ``Content-Encoding`` is
    dropped, and with it the compressed body's ``Content-Length``. Other codings reach the
    upstream as they came.

    >>> h = CIMultiDictProxy(CIMultiDict({"Content-Encoding": "gzip", "Content-Length": "9"}))
    >>> dict(to_upstream(h))
    {}
    """
    coded = headers.get("Content-Encoding", "").strip().lower() in DECODED
    decoded = ["content-encoding", "content-length"] if coded else []
    out = end_to_end(headers, {"host", *decoded, *drop})
    for name in [k for k in out if k.lower().startswith(MEMORY_HEADER_PREFIX)]:
        out.popall(name)
    return out
