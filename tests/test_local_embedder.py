"""The offline sentence-transformers embedder (the ``local`` extra) with the shipped MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memory.config import EmbedderConfig
from memory.embedders import SentenceTransformerEmbedder, resolve_local_model
from memory.errors import EmbedderError
from testing.fake_upstream import FakeOllama
from tests.conftest import StartProxy

pytestmark = pytest.mark.local_embedder


def test_minilm_name_resolves_to_the_packaged_copy():
    path = Path(resolve_local_model("all-MiniLM-L6-v2"))
    assert path.is_dir() and (path / "config.json").is_file()
    assert resolve_local_model("/some/dir") == "/some/dir"


async def test_minilm_vectors_are_unit_384d_and_semantic():
    embedder = SentenceTransformerEmbedder(EmbedderConfig(kind="sentence-transformers"))
    vectors = await embedder.embed(
        ["My cat is called Miso.", "What is the name of my cat?", "Quarterly tax filing deadline"]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    await embedder.aclose()


async def test_missing_local_model_is_an_embedder_error(tmp_path: Path):
    config = EmbedderConfig(kind="sentence-transformers", model=str(tmp_path / "nothing"))
    with pytest.raises(EmbedderError):
        await SentenceTransformerEmbedder(config).embed(["x"])


async def test_proxy_with_local_embedder(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy(embedder={"kind": "sentence-transformers"})
    client = proxy.ollama("alice")
    await client.chat(model="m", messages=[{"role": "user", "content": "My cat is called Miso."}])
    await proxy.flush()
    await client.chat(model="m", messages=[{"role": "user", "content": "What's my cat's name?"}])
    assert "Miso" in fake.calls("/api/chat")[-1].json()["messages"][0]["content"]
    assert fake.calls("/api/embed") == []  # embeddings were computed locally
