"""``symbiotic-memory doctor``: will this set-up work? One line per check, with a fix.

Each check is an async function of a :class:`Probe` returning a :class:`Check`: ``ok``,
``warn`` (works, but worth knowing) or ``fail`` (the proxy will not work as configured). The
command exits 1 when any check failed, 0 otherwise. Checks only read: nothing is created,
migrated or written except one temporary file per directory proving it is writable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import ValidationError

from memory.config import default_outbox_path
from memory.embedders import make_embedder
from memory.errors import EmbedderError
from memory.store import layout
from proxy.auth import read_tokens
from proxy.config import Config
from proxy.errors import ConfigError
from proxy.manifest import Manifest, manifest_path

Status = Literal["ok", "warn", "fail"]
LOW_DISK_BYTES = 512 * 1024 * 1024
"""Free space below this beside the store is a warning: the outbox, archive and score log grow
with every exchange, and a full disk leaves exchanges unsaved (README, "Full disk")."""
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True)
class Check:
    """One line of the report: ``name``, ``status``, what was found, and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Probe:
    """What the checks share: the configuration, one HTTP session, and what earlier checks
    learned (``upstream_kind`` found by the upstream check, ``dim`` by the embedder check)."""

    config: Config
    session: aiohttp.ClientSession
    upstream_kind: str | None = None
    dim: int | None = None

    async def get_json(self, url: str, bearer: str | None = None) -> tuple[int, Any]:
        """``(status, decoded JSON or None)`` of ``GET url``; raises aiohttp.ClientError or
        TimeoutError when the server cannot be reached."""
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        async with self.session.get(url, headers=headers, timeout=PROBE_TIMEOUT) as resp:
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, None


async def detect_kind(probe: Probe, url: str, bearer: str | None) -> tuple[str | None, str]:
    """Which API the server at ``url`` speaks: ``("ollama", version)`` when ``/api/version``
    answers with a version, ``("openai", "N models")`` when ``/v1/models`` answers a model list,
    ``(None, what was seen)`` otherwise. Raises aiohttp.ClientError / TimeoutError when the
    server cannot be reached."""
    status, body = await probe.get_json(f"{url}/api/version", bearer)
    if status == 200 and isinstance(body, dict) and "version" in body:
        return "ollama", f"Ollama {body['version']}"
    status, body = await probe.get_json(f"{url}/v1/models", bearer)
    if status == 200 and isinstance(body, dict) and isinstance(body.get("data"), list):
        return "openai", f"OpenAI-compatible, {len(body['data'])} models"
    return None, f"/api/version and /v1/models gave no usable answer (HTTP {status})"


async def check_upstream(probe: Probe) -> Check:
    """The upstream answers, and speaks the configured ``upstream.kind``."""
    upstream = probe.config.upstream
    try:
        kind, seen = await detect_kind(probe, upstream.url, upstream.api_key)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Check(
            "upstream",
            "fail",
            f"{upstream.url} cannot be reached ({type(exc).__name__}: {exc})",
            "start the model server (`ollama serve`), or set upstream.url",
        )
    probe.upstream_kind = kind
    if kind is None:
        return Check(
            "upstream", "fail", f"{upstream.url}: {seen}", "is upstream.url a model server?"
        )
    if kind != upstream.kind:
        return Check(
            "upstream",
            "fail",
            f"{upstream.url} speaks {kind} ({seen}), upstream.kind is {upstream.kind}",
            f"set upstream.kind: {kind}",
        )
    return Check("upstream", "ok", f"{seen} at {upstream.url}")


def ollama_has(models: list[Any], wanted: str) -> bool:
    """Whether Ollama's ``/api/tags`` list holds ``wanted`` (a bare name means ``:latest``).

    >>> ollama_has([{"name": "nomic-embed-text:latest"}], "nomic-embed-text")
    True
    >>> ollama_has([{"name": "all-minilm:33m"}], "all-minilm")
    False
    """
    full = wanted if ":" in wanted else f"{wanted}:latest"
    names = {m.get("name") or m.get("model") for m in models if isinstance(m, dict)}
    return full in names or wanted in names


async def model_listed(probe: Probe) -> Check | None:
    """A failing check when the embedding model is missing from an HTTP embedder's model list
    (with the exact pull command for Ollama); None when it is listed or cannot be listed."""
    embedder, upstream = probe.config.embedder, probe.config.upstream
    model = embedder.model_name
    try:
        if embedder.kind == "ollama":
            status, body = await probe.get_json(f"{embedder.url or upstream.url}/api/tags")
            models = body.get("models") if isinstance(body, dict) else None
            if status == 200 and isinstance(models, list) and not ollama_has(models, model):
                fix = f"ollama pull {model}"
                return Check("embedder", "fail", f"{model} is not pulled on the upstream", fix)
        elif embedder.kind == "openai":
            url = embedder.url or f"{upstream.url}/v1"
            status, body = await probe.get_json(f"{url}/models", embedder.api_key)
            data = body.get("data") if isinstance(body, dict) else None
            if status == 200 and isinstance(data, list):
                ids = {m.get("id") for m in data if isinstance(m, dict)}
                if ids and model not in ids:
                    shown = ", ".join(sorted(str(i) for i in ids)[:5])
                    fix = f"set embedder.model to one of: {shown}"
                    return Check("embedder", "fail", f"{model} is not served at {url}", fix)
    except (aiohttp.ClientError, TimeoutError) as exc:
        where = embedder.url or upstream.url
        fix = "start its server, or set embedder.url"
        return Check("embedder", "fail", f"{where} cannot be reached ({exc})", fix)
    return None


async def check_embedder(probe: Probe) -> Check:
    """The embedding model is present and embeds; records its dimension for the store check."""
    embedder = probe.config.embedder
    if (missing := await model_listed(probe)) is not None:
        return missing
    try:
        vectors = await make_embedder(embedder, probe.config.upstream.url, probe.session).embed(
            ["doctor probe"]
        )
    except EmbedderError as exc:
        fix = {
            "ollama": f"ollama pull {embedder.model_name}",
            "openai": "check embedder.url, embedder.model and embedder.api_key",
            "sentence-transformers": "pip install 'symbiotic-latent-memory[local]'",
        }[embedder.kind]
        return Check("embedder", "fail", f"{embedder.kind} {embedder.model_name}: {exc}", fix)
    probe.dim = int(vectors.shape[1])
    return Check("embedder", "ok", f"{embedder.kind} {embedder.model_name}, {probe.dim} dims")


def writable(directory: Path) -> str | None:
    """None when a file can be created in ``directory`` (or in the nearest existing parent it
    would be created under), else the reason."""
    target = directory
    while not target.exists():
        if target.parent == target:
            return f"no existing parent of {directory}"
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-"):
            pass
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"
    return None


async def check_store(probe: Probe) -> Check:
    """A local store directory is writable (a Chroma server answers), and every collection of
    ours holds vectors of the embedder's dimension."""
    store = probe.config.store
    if store.url is None:
        if (reason := writable(store.path)) is not None:
            return Check("store", "fail", reason, "fix the permissions, or set store.path")
        if not store.path.exists():
            return Check("store", "ok", f"{store.path} will be created (writable)")
    try:
        dims = await collection_dims(probe.config)
    except Exception as exc:
        where = store.url or store.path
        return Check("store", "fail", f"{where}: {exc}", "is the Chroma server running?")
    where = store.url or str(store.path)
    wrong = {name: d for name, d in dims.items() if probe.dim is not None and d != probe.dim}
    if wrong:
        name, dim = next(iter(wrong.items()))
        return Check(
            "store",
            "fail",
            f"{where}: {name} holds {dim}-dim vectors, the embedder makes {probe.dim}",
            "set the embedder the store was built with, or a new store.path / "
            "store.collection_prefix (then `memories export` / `memories import` to move them)",
        )
    return Check("store", "ok", f"{where}, {len(dims)} collections, vector size matches")


async def collection_dims(config: Config) -> dict[str, int]:
    """``{collection name: recorded dimension}`` of this prefix's collections (read only: the
    store is not opened the proxy's way, so no layout migration runs)."""
    import chromadb
    from chromadb.config import Settings

    def read() -> dict[str, int]:
        settings = Settings(anonymized_telemetry=False)
        store = config.store
        if store.url is not None:
            client = chromadb.HttpClient(host=store.url, settings=settings)
        else:
            client = chromadb.PersistentClient(path=str(store.path), settings=settings)
        found: dict[str, int] = {}
        for collection in client.list_collections():
            dim = (collection.metadata or {}).get("dim")
            if layout.is_ours(store.collection_prefix, collection.name) and dim is not None:
                found[collection.name] = int(dim)
        return found

    return await asyncio.to_thread(read)


def sqlite_state(path: Path) -> str | None:
    """None when the SQLite file at ``path`` is usable (or can be created), else the reason."""
    if not path.exists():
        return writable(path.parent)
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path}: {exc}"
    return None if verdict == "ok" else f"{path}: {verdict}"


async def check_files(probe: Probe) -> Check:
    """The outbox, the raw archive and the score log can be written, and there is room."""
    config = probe.config
    store, symbiosis = config.store, config.symbiosis
    beside = store.path.parent
    outbox = config.memory.outbox_path or default_outbox_path(store)
    archive = symbiosis.archive_path or beside / f"{store.path.name}-archive.sqlite3"
    log = symbiosis.log_path or beside / f"{store.path.name}-scores.jsonl"
    problems = [p for p in (sqlite_state(outbox), sqlite_state(archive)) if p]
    if log.exists() and not os.access(log, os.W_OK):
        problems.append(f"{log} is not writable")
    elif not log.exists() and (reason := writable(log.parent)):
        problems.append(reason)
    if problems:
        return Check("files", "fail", "; ".join(problems), "fix the permissions or the paths")
    existing = next((p for p in (outbox.parent, *outbox.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    shown = f"outbox {outbox}, archive {archive}, score log {log}"
    if free < LOW_DISK_BYTES:
        fix = "free some space: a full disk leaves exchanges unsaved"
        return Check("files", "warn", f"{shown}; only {free // 2**20} MiB free", fix)
    return Check("files", "ok", f"{shown} writable; {free // 2**30} GiB free")


async def check_manifest(probe: Probe) -> Check:
    """``symbiotic_manifest.json`` is installed and valid against :class:`Manifest`."""
    path = manifest_path()
    if path is None:
        return Check("manifest", "fail", "symbiotic_manifest.json is not installed", "reinstall")
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        return Check("manifest", "fail", f"{path}: {first}", "restore the file from the release")
    return Check("manifest", "ok", f"{path} valid ({manifest.name} {manifest.version})")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def check_auth(probe: Probe) -> Check:
    """Authentication is set up when the proxy listens beyond loopback, and its token file
    holds users."""
    config = probe.config
    auth, host = config.auth, config.listen.host
    if auth.tokens_file is not None:
        try:
            users = read_tokens(auth.tokens_file)
        except (ConfigError, OSError) as exc:
            return Check("auth", "fail", str(exc), "symbiotic-memory users add NAME")
        if not users:
            fix = f"symbiotic-memory users add NAME --file {auth.tokens_file}"
            return Check("auth", "fail", f"{auth.tokens_file} lists no users", fix)
        return Check("auth", "ok", f"{len(users)} users in {auth.tokens_file}")
    if auth.openwebui_jwt_secret is not None:
        return Check("auth", "ok", "Open WebUI's signed user JWT")
    if not is_loopback(host):  # load_config refuses this; kept for configs built in code
        fix = "set auth.tokens_file (symbiotic-memory users add NAME)"
        return Check("auth", "fail", f"listening on {host} without authentication", fix)
    return Check("auth", "ok", f"off: {host} is loopback only, users are what clients claim")


async def check_scorer(probe: Probe) -> Check:
    """The symbiosis scorer's models load (else scores use lexical signals only: a warning)."""
    symbiosis = probe.config.symbiosis
    if not symbiosis.enabled:
        return Check("scorer", "ok", "symbiosis.enabled is false")
    from memory.score.symbiosis import make_scorer

    # (memory.embedders.load_sentence_transformer keeps its bars out of the report)
    scorer = await asyncio.to_thread(make_scorer, symbiosis)
    if scorer.degraded:
        fix = "pip install 'symbiotic-latent-memory[local]', or set symbiosis.scorer: lexical"
        return Check("scorer", "warn", f"lexical signals only: {scorer.degraded}", fix)
    return Check("scorer", "ok", f"{symbiosis.scorer} (definition {scorer.definition.hash})")


async def check_listen(probe: Probe) -> Check:
    """The listen address is free, or a symbiotic-memory proxy already answers there."""
    listen = probe.config.listen
    if listen.port == 0:
        return Check("listen", "ok", f"{listen.host}, a free port chosen at start")
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            sock.bind((listen.host, listen.port))
        except OSError as exc:
            bind_error = exc.strerror or str(exc)
        else:
            return Check("listen", "ok", f"{listen.host}:{listen.port} is free")
    host = f"[{listen.host}]" if family == socket.AF_INET6 else listen.host
    try:
        _, body = await probe.get_json(f"http://{host}:{listen.port}/healthz")
    except (aiohttp.ClientError, TimeoutError):
        body = None
    if isinstance(body, dict) and "status" in body and "upstream" in body:
        detail = f"a proxy already runs on {host}:{listen.port} (status {body['status']})"
        return Check("listen", "ok", detail)
    fix = "stop what holds it, or set listen.port"
    return Check("listen", "fail", f"{host}:{listen.port}: {bind_error}", fix)


CHECKS: tuple[Callable[[Probe], Awaitable[Check]], ...] = (
    check_upstream,
    check_embedder,
    check_store,
    check_files,
    check_scorer,
    check_manifest,
    check_auth,
    check_listen,
)
"""In order: the store check uses the dimension the embedder check found."""


async def diagnose(config: Config) -> list[Check]:
    """Every check of :data:`CHECKS` on ``config``, in order (a check never raises)."""
    async with aiohttp.ClientSession() as session:
        probe = Probe(config, session)
        results: list[Check] = []
        for check in CHECKS:
            if not config.memory.enabled and check in (check_embedder, check_store):
                results.append(Check(check.__name__[6:], "ok", "memory.enabled is false"))
                continue
            results.append(await check(probe))
        return results
