"""Who is calling, proven: per-user bearer tokens (``auth.tokens_file``) and Open WebUI's signed
user JWT (``auth.openwebui_jwt_secret``), checked by one middleware before any handler runs.

With neither configured the middleware only swaps in ``upstream.api_key`` (when set) and the
user is whatever the client claims (:func:`proxy.scope.scope_for`). See the README, "Security".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path

import jwt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config import AuthConfig, Config
from proxy.errors import BadRequest, ConfigError, Forbidden, Unauthorized
from proxy.scope import OPEN_WEBUI_USER, USER_HEADER, Principal, clean, single

log = logging.getLogger(__name__)

JWT_HEADER = "X-OpenWebUI-User-Jwt"
"""Open WebUI >= 0.12 with ``FORWARD_USER_INFO_HEADER_JWT_SECRET`` set (its default name)."""
JWT_ISSUER = "open-webui"
"""The ``iss`` Open WebUI puts in its forwarded-user JWT."""
CREDENTIAL_HEADERS = ("authorization", "x-api-key", JWT_HEADER.lower())
"""The proxy's credentials: never forwarded to the upstream."""
PUBLIC_PATHS = frozenset({"/healthz", "/symbiotic_manifest.json"})
"""Paths open without a credential (status and a static file; neither reveals memories)."""
ADMIN_PREFIX = "/memory/"
UI_PREFIX = "/ui"
"""The memory page (``proxy.ui``): its 401 asks the browser for HTTP Basic credentials."""
BASIC_REALM = "symbiotic-memory"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_PATHS = frozenset({"/metrics"})
"""Paths outside :data:`ADMIN_PREFIX` that take ``admin.token`` too (aggregate figures)."""
TOKEN_LINE = re.compile(r"(\S+)\s+([0-9a-f]{64})")
PRINCIPAL = web.RequestKey("principal", Principal)
"""The authenticated caller of a request (absent: auth is off, or the admin token was used)."""


def is_ui_path(path: str) -> bool:
    """Whether ``path`` is the memory page or one of its files (``/ui``, ``/ui/...``)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def token_hash(token: str) -> str:
    """SHA-256 hex digest of a token: what ``auth.tokens_file`` stores.

    >>> token_hash("s3cret")[:16]
    '1ec1c26b50d5d3c5'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """``USER SHA256HEX`` lines (``#`` comments and blank lines allowed) as user -> hex digest.

    Raises:
        ConfigError: a malformed line or a user listed twice, naming ``source`` and the line.
    """
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = TOKEN_LINE.fullmatch(stripped)
        if match is None:
            raise ConfigError(
                f"{source} line {number}: expected 'USER SHA256HEX' (a user name and the "
                f"64 lower-case hex digits of the SHA-256 of the user's token)"
            )
        user, digest = match.groups()
        if user in users:
            raise ConfigError(f"{source} line {number}: user '{user}' is listed twice")
        users[user] = digest
    return users


def read_tokens(path: Path) -> dict[str, str]:
    """The users of token file ``path``; raises ConfigError (unreadable or malformed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read auth.tokens_file {path}: {exc}") from exc
    return parse_tokens(text, f"auth.tokens_file {path}")


def add_user(path: Path, user: str) -> str:
    """Append ``user`` with a fresh token to token file ``path`` (created with mode 0600) and
    return the token (the file keeps only its hash).

    Raises:
        ConfigError: the user exists, the name is not one word, or the file is malformed.
    """
    if not re.fullmatch(r"\S+", user) or user.startswith("#"):
        raise ConfigError(f"user name {user!r} must be one word, not starting with '#'")
    existing = read_tokens(path) if path.exists() else {}
    if user in existing:
        raise ConfigError(f"user '{user}' already has a token in {path}")
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(f"{user} {token_hash(token)}\n")
    return token


def remove_user(path: Path, user: str) -> None:
    """Drop ``user``'s line from token file ``path``; raises ConfigError when absent."""
    if user not in read_tokens(path):
        raise ConfigError(f"user '{user}' has no token in {path}")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.split(maxsplit=1)[:1] != [user]]
    path.write_text("".join(kept), encoding="utf-8")


class TokenTable:
    """The users of a token file, re-read when the file changes (``users add`` needs no
    restart); a file that turns malformed while running keeps the last good table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._users = read_tokens(path)

    def _stat(self) -> tuple[int, int]:
        try:
            stat = self.path.stat()
        except OSError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._users = read_tokens(self.path)
        except ConfigError as exc:
            log.error("%s; keeping the %d users read before", exc, len(self._users))

    def user_for(self, token: str) -> str | None:
        """The user whose token this is, or None. Every entry is compared (constant time per
        entry, no early exit), so timing does not tell which prefix matched."""
        self._refresh()
        digest = token_hash(token).encode()
        found = None
        for user, stored in self._users.items():
            if hmac.compare_digest(digest, stored.encode()):
                found = user
        return found


def verify_openwebui_jwt(token: str, secret: str) -> str:
    """The user id (``sub``) of an Open WebUI forwarded-user JWT: HS256 with ``secret``,
    ``exp`` required and not passed, ``iss`` (when present) ``open-webui``.

    Raises:
        Unauthorized: a bad signature, an expired or malformed token, or no usable ``sub``.
    """
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized(f"{JWT_HEADER} has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"{JWT_HEADER} is not valid: {exc}") from exc
    if claims.get("iss", JWT_ISSUER) != JWT_ISSUER:
        raise Unauthorized(f"{JWT_HEADER} was not issued by {JWT_ISSUER}")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthorized(f"{JWT_HEADER} has no user id ('sub')")
    return sub.strip()


def basic_credentials(value: str) -> tuple[str, str]:
    """``(user, password)`` of an ``Authorization: Basic base64(user:password)`` value (the
    part after the scheme; RFC 7617, UTF-8). Raises Unauthorized when it does not decode."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("the Basic credentials are not base64 of 'user:token'") from exc
    user, colon, password = decoded.partition(":")
    if not colon or not password:
        raise Unauthorized("the Basic credentials must be 'user:token'")
    return user, password


def presented_token(headers: CIMultiDictProxy[str]) -> tuple[str | None, str | None]:
    """``(token, basic_user)``: the token of ``Authorization: Bearer T``, of ``x-api-key: T``
    (Anthropic clients) or the password of ``Authorization: Basic`` (a browser on ``/ui``),
    and the user name sent with Basic (else None); ``(None, None)`` when none is sent.
    Raises BadRequest when they disagree or repeat, Unauthorized on another scheme."""
    bearer = single(headers, "Authorization")
    api_key = single(headers, "x-api-key")
    basic_user = None
    if bearer is not None:
        scheme, _, value = bearer.strip().partition(" ")
        if scheme.lower() == "basic":
            basic_user, value = basic_credentials(value)
        elif scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        bearer = value.strip()
    api_key = api_key.strip() if api_key is not None else None
    if bearer and api_key and bearer != api_key:
        raise BadRequest("Authorization and x-api-key carry different credentials")
    return bearer or api_key or None, basic_user


def admin_credential(headers: CIMultiDictProxy[str], admin_token: str) -> bool:
    """Whether ``headers`` carry ``admin_token``: ``Authorization: Bearer <admin.token>``, or
    Basic with it as the password (any user name: a browser on ``/ui``)."""
    sent = headers.get("Authorization", "")
    scheme, _, value = sent.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            sent = f"Bearer {basic_credentials(value)[1]}"
        except Unauthorized:
            return False
    return hmac.compare_digest(sent.encode(), f"Bearer {admin_token}".encode())


def refuse_cross_site(request: web.Request) -> None:
    """Forbidden for a state-changing ``/memory/*`` request a browser sent from another site:
    a browser attaches cached Basic credentials to it (CSRF). Browsers say where a request
    comes from in ``Sec-Fetch-Site``, older ones in ``Origin``; clients sending neither are
    not browsers and pass. The same rule as Go's ``net/http.CrossOriginProtection``."""
    if request.method in SAFE_METHODS or not request.path.startswith(ADMIN_PREFIX):
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise Forbidden(f"cross-site {request.method} on {request.path} refused")
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin.partition("://")[2] != request.host:
        raise Forbidden(f"cross-origin {request.method} from {origin} refused")


class Authenticator:
    """Turns a request's credential into a :class:`Principal` (tokens, Open WebUI JWTs, or
    either when both are configured)."""

    def __init__(self, config: AuthConfig, admin_token: str | None) -> None:
        self.tokens = TokenTable(config.tokens_file) if config.tokens_file else None
        self.jwt_secret = config.openwebui_jwt_secret
        self.admin_token = admin_token

    def is_admin(self, headers: CIMultiDictProxy[str]) -> bool:
        """Whether the request carries ``admin.token`` (``/memory/*`` for any user)."""
        return self.admin_token is not None and admin_credential(headers, self.admin_token)

    def principal(self, headers: CIMultiDictProxy[str]) -> Principal:
        """Who sent ``headers``. An Open WebUI JWT, when sent and configured, decides (Open
        WebUI also sends its one connection key, which names no user); else the token.

        Raises:
            Unauthorized: no credential, or a wrong, expired or malformed one.
            BadRequest: a credential header repeated, or two different tokens.
        """
        signed = single(headers, JWT_HEADER)
        if signed is not None and self.jwt_secret is not None:
            return Principal(verify_openwebui_jwt(signed.strip(), self.jwt_secret), "jwt")
        token, basic_user = presented_token(headers)
        if token is not None and self.tokens is not None:
            user = self.tokens.user_for(token)
            if user is None:
                raise Unauthorized("the token is not valid for this proxy")
            if basic_user is not None and basic_user != user:
                raise Unauthorized("the Basic user name is not the token's user")
            return Principal(user, "token")
        wanted = [
            *(["'Authorization: Bearer <token>' or 'x-api-key: <token>'"] if self.tokens else []),
            *([JWT_HEADER] if self.jwt_secret else []),
        ]
        raise Unauthorized(f"this proxy needs {' or '.join(wanted)}")


def check_claims(request: web.Request, principal: Principal) -> None:
    """403 when the request also claims another user (``X-Memory-User``, Open WebUI's user id
    header, or ``?user=`` on ``/memory/*``); claiming the same user is fine."""
    claims = [(USER_HEADER, single(request.headers, USER_HEADER))]
    claims.append((OPEN_WEBUI_USER, single(request.headers, OPEN_WEBUI_USER)))
    if request.path.startswith(ADMIN_PREFIX):
        claims.append(("?user=", request.query.get("user")))
    for name, value in claims:
        if value is not None:  # ambiguous before wrong: 400 first (proxy.scope.clean)
            value = clean(value, name)
        if value and value != principal.user:
            raise Forbidden(
                f"{name} names another user than the credential ({principal.method}) proves"
            )


def forwarded_headers(headers: CIMultiDictProxy[str], api_key: str | None) -> CIMultiDict[str]:
    """``headers`` without the proxy's credentials, plus ``Authorization: Bearer api_key``
    (``upstream.api_key``) when set."""
    out = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS)
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def unauthorized(exc: Unauthorized, path: str = "") -> web.Response:
    """The 401 answer: ``{"error": ...}`` and ``WWW-Authenticate: Bearer`` (RFC 6750 3), or
    on ``/ui`` a Basic challenge (RFC 7617), so the browser asks for a user and token."""
    challenge = f'Basic realm="{BASIC_REALM}", charset="UTF-8"'
    return web.json_response(
        {"error": exc.message},
        status=401,
        headers={"WWW-Authenticate": challenge if is_ui_path(path) else "Bearer"},
    )


def authenticate(authenticator: Authenticator | None, api_key: str | None) -> Middleware:
    """The middleware: authenticate (when ``authenticator`` is set), then hand the handler a
    copy of the request whose headers hold no proxy credential (and ``api_key``, if set)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = None
        refuse_cross_site(request)
        if authenticator is not None and request.path not in PUBLIC_PATHS:
            admin_path = (
                request.path.startswith(ADMIN_PREFIX)
                or request.path in ADMIN_PATHS
                or is_ui_path(request.path)
            )
            if admin_path and authenticator.is_admin(request.headers):
                return await handler(request)  # require_admin reads the admin token itself
            try:
                principal = authenticator.principal(request.headers)
            except Unauthorized as exc:
                return unauthorized(exc, request.path)
            check_claims(request, principal)
        if principal is None and not api_key:
            return await handler(request)
        relayed = request.clone(headers=forwarded_headers(request.headers, api_key))
        if principal is not None:
            relayed[PRINCIPAL] = principal
        return await handler(relayed)

    return middleware


def auth_middleware(config: Config) -> Middleware:
    """:func:`authenticate` for ``config``; raises ConfigError on an unreadable token file."""
    auth = config.auth
    authenticator = Authenticator(auth, config.admin.token) if auth.enabled else None
    return authenticate(authenticator, config.upstream.api_key)
