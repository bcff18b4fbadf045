"""The proxy's exception types; each carries the HTTP status it maps to (see ``middleware``)."""


class ProxyError(Exception):
    """An error answered to the client as ``{"error": message}`` with ``status``."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ProxyError):
    """The request body or parameters are unusable (HTTP 400)."""

    status = 400


class Unauthorized(ProxyError):
    """A bearer token is required and missing or wrong (HTTP 401)."""

    status = 401


class Forbidden(ProxyError):
    """The credential is valid but the request claims another user (HTTP 403)."""

    status = 403


class NotFound(ProxyError):
    """No such resource for this user (HTTP 404)."""

    status = 404


class RequestTimeout(ProxyError):
    """The request body did not arrive within ``limits.body_timeout_s`` (HTTP 408)."""

    status = 408


class PayloadTooLarge(ProxyError):
    """The body exceeds ``limits.max_body_bytes`` (HTTP 413)."""

    status = 413


class UpstreamUnavailable(ProxyError):
    """The upstream could not be reached or failed before answering (HTTP 502)."""

    status = 502


class UpstreamCircuitOpen(ProxyError):
    """The upstream failed repeatedly; its breaker is open until the next probe (HTTP 503)."""

    status = 503


class MemoryUnavailable(ProxyError):
    """An admin operation needs the memory store and it failed (HTTP 503)."""

    status = 503


class ConfigError(Exception):
    """The configuration file or environment is invalid; the message is one line for the CLI."""
