"""The memory page: ``GET /ui`` and its files, plain HTML, script and CSS from
``proxy/ui/`` (package data; no build step, nothing fetched from elsewhere).

The page reads and changes memories only through the admin API (``/memory/list``,
``/memory/search``, ``/memory/feedback``, ``DELETE /memory/{id}``), so it sees exactly what the
caller's credential allows. A browser authenticates with HTTP Basic (user name and the user's
token, or ``admin.token``): :mod:`proxy.auth` answers ``/ui`` with a Basic challenge, and the
browser then sends the credentials with the page's own ``fetch()`` calls. No cookies, hence no
session to steal; state-changing calls from other sites are refused
(:func:`proxy.auth.refuse_cross_site`).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from proxy.admin import require_admin
from proxy.auth import BASIC_REALM, PRINCIPAL
from proxy.errors import NotFound, Unauthorized
from proxy.state import CONFIG

UI_DIR = Path(__file__).resolve().parent / "ui"
FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}
"""The page's files and their types: nothing else under ``/ui/`` is served."""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""No inline script or style, no other origin: memory text is untrusted (it is only ever
set as ``textContent``; this policy is the second line)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def check_access(request: web.Request) -> None:
    """With ``admin.token`` set and no user proven by :mod:`proxy.auth`, the page needs the
    admin token as the Basic password; a 401 here carries the Basic challenge too.

    Raises:
        web.HTTPUnauthorized: no or a wrong credential.
    """
    if PRINCIPAL in request or request.app[CONFIG].admin.token is None:
        return
    try:
        require_admin(request)
    except Unauthorized as exc:
        raise web.HTTPUnauthorized(
            reason=f"{exc.message}; in a browser: any user name, admin.token as password",
            headers={"WWW-Authenticate": f'Basic realm="{BASIC_REALM}", charset="UTF-8"'},
        ) from exc


def file_response(name: str) -> web.Response:
    """File ``name`` of the page with its type and :data:`SECURITY_HEADERS`; 404 for any
    other name."""
    if name not in FILES:
        raise NotFound(f"/ui/{name} is not part of the memory page")
    body = (UI_DIR / name).read_bytes()
    return web.Response(
        body=body, content_type=FILES[name], charset="utf-8", headers=SECURITY_HEADERS
    )


async def page(request: web.Request) -> web.Response:
    """``GET /ui``: the memory page (``?user=`` preselects a user when none is proven)."""
    check_access(request)
    return file_response("index.html")


async def asset(request: web.Request) -> web.Response:
    """``GET /ui/{name}``: the page's script or style sheet."""
    check_access(request)
    return file_response(request.match_info["name"])


def add_routes(app: web.Application) -> None:
    """Register ``/ui`` and ``/ui/{name}`` on ``app`` (before its catch-all relay)."""
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/{name}", asset)
