"""Configuration: one YAML file into a frozen pydantic model, plus environment overrides.

Environment variables ``SYMBIOTIC_MEMORY__SECTION__KEY=value`` override the file; values are
parsed as YAML scalars (``8080`` is an int, ``true`` a bool). Unknown keys are errors that name
the key and where it came from.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from memory.config import (
    AffectConfig,
    EmbedderConfig,
    Frozen,
    KnobsConfig,
    MemoryConfig,
    MetabolismConfig,
    ResilienceConfig,
    StoreConfig,
    SymbiosisConfig,
)
from proxy.errors import ConfigError

ENV_PREFIX = "SYMBIOTIC_MEMORY__"


class ListenConfig(Frozen):
    """Where the proxy listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=11435, ge=0, le=65535)


class UpstreamConfig(Frozen):
    """The model server the proxy fronts."""

    url: str = "http://127.0.0.1:11434"
    kind: Literal["ollama", "openai"] = "ollama"
    """``ollama``: an Ollama server. ``openai``: an OpenAI-compatible server (llama.cpp, vLLM,
    LM Studio); ``/api/chat``, ``/api/generate``, ``/api/tags`` and ``/api/embed`` are then
    translated to its ``/v1`` API (see ``proxy.openai_upstream``)."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0)
    """Longest silence between two chunks of an upstream reply (model loads can be slow)."""
    api_key: str | None = None
    """When set, sent to the upstream as ``Authorization: Bearer <api_key>`` in place of the
    client's ``Authorization`` / ``x-api-key`` (with ``auth`` on, those are the proxy's own
    credentials and are never forwarded either way)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class LimitsConfig(Frozen):
    """Bounds on what the proxy accepts."""

    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest body accepted on the intercepted chat endpoints (images make bodies large)."""
    header_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds a connection may take to send a request's headers, and may stay idle between
    requests (aiohttp's keep-alive timeout): then it is closed. A slow-headers client (a
    slowloris) cannot hold a connection open longer."""
    body_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds within which an intercepted chat request's whole body must arrive (answered
    408 otherwise; relayed requests stream their bodies and are not bounded). Enough for
    ``max_body_bytes`` at a few MB/s; raise it for large images over slow links."""


class AdminConfig(Frozen):
    """The ``/memory/*`` admin API."""

    token: str | None = None
    """When set, ``/memory/*`` requires ``Authorization: Bearer <token>``."""


class AuthConfig(Frozen):
    """Authenticated users (off by default: the user is then whatever the client claims).
    With either key set, every chat route and ``/memory/*`` need a credential that decides the
    user; either credential is accepted when both are set. See the README, "Security"."""

    tokens_file: Path | None = None
    """File of ``USER SHA256HEX`` lines (the SHA-256 of each user's token); clients send
    ``Authorization: Bearer <token>`` or ``x-api-key: <token>``. Add users with
    ``symbiotic-memory users add NAME``; the file is re-read when it changes."""
    openwebui_jwt_secret: str | None = Field(default=None, min_length=32)
    """Open WebUI's ``FORWARD_USER_INFO_HEADER_JWT_SECRET``: its ``X-OpenWebUI-User-Jwt``
    (HS256, ``exp`` required) is verified and its ``sub`` is the user. At least 32 characters
    (an HS256 key as long as the hash, RFC 7518 section 3.2)."""

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured."""
        return self.tokens_file is not None or self.openwebui_jwt_secret is not None


class Config(Frozen):
    """The whole configuration."""

    listen: ListenConfig = ListenConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    store: StoreConfig = Field(default_factory=StoreConfig)
    embedder: EmbedderConfig = EmbedderConfig()
    memory: MemoryConfig = MemoryConfig()
    symbiosis: SymbiosisConfig = SymbiosisConfig()
    metabolism: MetabolismConfig = MetabolismConfig()
    resilience: ResilienceConfig = ResilienceConfig()
    affect: AffectConfig = AffectConfig()
    knobs: KnobsConfig = KnobsConfig()
    limits: LimitsConfig = LimitsConfig()
    admin: AdminConfig = AdminConfig()
    auth: AuthConfig = AuthConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (``proxy.logs``), for log shippers."""

    @model_validator(mode="after")
    def _embedder_follows_upstream(self) -> Config:
        """An OpenAI-compatible upstream has no ``/api/embed``: unless an embedder kind was
        chosen, embed through its ``/v1/embeddings``."""
        if (
            self.upstream.kind == "openai"
            and self.embedder.kind == "ollama"
            and "kind" not in self.embedder.model_fields_set
        ):
            object.__setattr__(
                self, "embedder", self.embedder.model_copy(update={"kind": "openai"})
            )
        return self

    @model_validator(mode="after")
    def _auth_beyond_loopback(self) -> Config:
        """Beyond loopback anyone could claim any user: require proof of who is calling."""
        if not is_loopback(self.listen.host) and not self.auth.enabled:
            raise ValueError(
                f"listen.host {self.listen.host} is reachable beyond this machine: set "
                f"auth.tokens_file or auth.openwebui_jwt_secret so that users are authenticated"
            )
        return self

    @model_validator(mode="after")
    def _shared_tier_needs_auth(self) -> Config:
        """Claimed user names are free to invent, so they could fill the shared tier."""
        if self.metabolism.shared and not self.auth.enabled:
            raise ValueError(
                "metabolism.shared needs authenticated users: set auth.tokens_file or "
                "auth.openwebui_jwt_secret (claimed users could invent its supporters)"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds to loopback only (``localhost``, 127.0.0.0/8, ``::1``).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Nested dict of overrides and, per key path, the variable it came from."""
    tree: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} is not a section")
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            node[path[-1]] = raw
        origin[path] = name
    return tree, origin


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _explain(exc: ValidationError, source: str, origin: dict[tuple[str, ...], str]) -> str:
    first = exc.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    if not loc:  # a rule across keys
        return f"{source}: {first['msg'].removeprefix('Value error, ')}"
    where = origin.get(loc, source)
    dotted = ".".join(loc)
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key '{dotted}'"
    return f"{where}: invalid value for '{dotted}': {first['msg']}"


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (optional), apply ``SYMBIOTIC_MEMORY__*`` overrides, validate.

    Raises:
        ConfigError: unreadable file, bad YAML, unknown key or invalid value (one-line message).
    """
    data = _read_yaml(path) if path is not None else {}
    overrides, origin = _env_overrides(os.environ if env is None else env)
    source = str(path) if path is not None else "configuration"
    try:
        return Config.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source, origin)) from exc
