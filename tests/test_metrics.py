"""``GET /metrics`` and ``X-Memory-Exchange-Id``: real requests through the app against the
fake upstream, read back with prometheus-client's own parser and the official clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.chat import EXCHANGE_HEADER, STATUS_HEADER
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy
from tests.test_auth import bearer, tokens_file

FACT = "My cat is called Miso and she is a grey tabby"
QUESTION = "What is my cat called?"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(proxy: RunningProxy, **headers: str) -> Samples:
    """Every sample of ``/metrics``, parsed: (name, sorted labels) -> value."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/metrics", headers=headers) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"].startswith("text/plain; version=")
            text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def chat(text: str, stream: bool = False) -> dict[str, object]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": text}], "stream": stream}


async def post(proxy: RunningProxy, path: str, body: dict[str, object]) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession(headers={"X-Memory-User": "alice"}) as http:
        async with http.post(f"{proxy.url}{path}", json=body) as r:
            await r.read()
            return r


async def test_requests_recall_and_injection_move_after_real_chats(proxy: RunningProxy):
    before = await scrape(proxy)
    assert value(before, "symbiotic_memory_requests_total", route="/api/chat", code="200") == 0
    first = await post(proxy, "/api/chat", chat(FACT))
    assert first.status == 200 and first.headers[STATUS_HEADER] == "none"
    await proxy.flush()
    mid = await scrape(proxy)
    assert value(mid, "symbiotic_memory_symbiosis_score_count") == 1  # the written exchange
    second = await post(proxy, "/api/chat", chat(QUESTION, stream=True))
    assert second.headers[STATUS_HEADER] == "injected"
    async with aiohttp.ClientSession() as http:  # relayed: the passthrough label, not the path
        async with http.get(f"{proxy.url}/api/tags") as r:
            assert r.status == 200
    after = await scrape(proxy)
    assert value(after, "symbiotic_memory_requests_total", route="/api/chat", code="200") == 2
    assert value(after, "symbiotic_memory_requests_total", route="passthrough", code="200") == 1
    assert not any("/api/tags" in dict(labels).get("route", "") for _, labels in after)
    recall = "symbiotic_memory_recall_total"
    assert value(after, recall, route="/api/chat", status="none", reason="") == 1
    assert value(after, recall, route="/api/chat", status="injected", reason="") == 1
    assert value(after, "symbiotic_memory_injected_memories_total", route="/api/chat") == 1
    assert value(after, "symbiotic_memory_injected_tokens_total", route="/api/chat") > 0
    stage = "symbiotic_memory_request_stage_seconds_count"
    for name in ("total", "first_byte", "recall", "recall_embed"):
        assert value(after, stage, route="/api/chat", stage=name) == 2, name
    assert value(after, "symbiotic_memory_writer_exchanges_total", kind="written") >= 1
    assert value(after, "symbiotic_memory_index_cache_users") == 1
    assert value(after, "symbiotic_memory_index_cache_bytes") > 0
    assert value(after, "symbiotic_memory_outbox_rows") >= 0
    assert value(after, "symbiotic_memory_breaker_state", breaker="store", state="closed") == 1


async def test_bypassed_task_is_counted_with_its_reason(proxy: RunningProxy):
    task = chat("### Task:\nGenerate a concise, 3-5 word title for the chat")
    r = await post(proxy, "/v1/chat/completions", task)
    assert r.headers[STATUS_HEADER] == "bypassed" and EXCHANGE_HEADER not in r.headers
    after = await scrape(proxy)
    labels = {"route": "/v1/chat/completions", "status": "bypassed", "reason": "task"}
    assert value(after, "symbiotic_memory_recall_total", **labels) == 1


async def test_failing_embedder_shows_as_skipped_recall_and_a_waiting_outbox(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(resilience={"failure_threshold": 1})
    fake.embed_fail = True  # recall fails open; the write-back waits in the outbox
    r = await post(proxy, "/api/chat", chat(FACT))
    assert r.status == 200 and r.headers[STATUS_HEADER] == "skipped"
    await asyncio.sleep(0.3)  # the writer tries, fails, and leaves the row for later
    after = await scrape(proxy)
    skipped = {"route": "/api/chat", "status": "skipped", "reason": ""}
    assert value(after, "symbiotic_memory_recall_total", **skipped) == 1
    assert value(after, "symbiotic_memory_fail_open_total") == 1
    assert value(after, "symbiotic_memory_outbox_rows") == 1
    assert value(after, "symbiotic_memory_outbox_oldest_age_seconds") > 0.2
    assert value(after, "symbiotic_memory_breaker_state", breaker="embedder", state="open") == 1
    assert value(after, "symbiotic_memory_symbiosis_score_count") == 0  # nothing written


async def test_ollama_format_over_an_openai_upstream_is_counted_and_has_the_header(
    start_proxy: StartProxy,
):
    proxy = await start_proxy(upstream={"kind": "openai"}, embedder={"kind": "openai"})
    r = await post(proxy, "/api/chat", chat(FACT))
    assert r.status == 200 and len(r.headers[EXCHANGE_HEADER]) == 64
    assert (await feedback(proxy, r.headers[EXCHANGE_HEADER]))["memory_id"]
    after = await scrape(proxy)
    assert value(after, "symbiotic_memory_requests_total", route="/api/chat", code="200") == 1
    assert value(after, "symbiotic_memory_symbiosis_score_count") == 1


async def test_upstream_breaker_state_follows_a_failing_upstream(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(resilience={"failure_threshold": 2})
    state = "symbiotic_memory_breaker_state"
    assert value(await scrape(proxy), state, breaker="upstream", state="closed") == 1
    await fake.close()  # connections refused from now on
    codes = [(await post(proxy, "/api/chat", chat(f"hello {i}"))).status for i in range(3)]
    assert codes == [502, 502, 503]  # the third is refused by the open breaker
    after = await scrape(proxy)
    assert value(after, state, breaker="upstream", state="open") == 1
    assert value(after, state, breaker="upstream", state="closed") == 0
    assert value(after, "symbiotic_memory_breaker_trips_total", breaker="upstream") == 1
    assert value(after, "symbiotic_memory_requests_total", route="/api/chat", code="503") == 1


async def test_metrics_need_a_credential_when_auth_is_on(start_proxy: StartProxy, tmp_path: Path):
    proxy = await start_proxy(
        auth={"tokens_file": str(tokens_file(tmp_path))}, admin={"token": "admin-secret"}
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/metrics") as r:
            assert r.status == 401 and "error" in await r.json()
        async with http.get(f"{proxy.url}/metrics", headers={"Authorization": "Bearer no"}) as r:
            assert r.status == 401
    assert value(await scrape(proxy, Authorization="Bearer admin-secret"), "x") == 0  # 200
    samples = await scrape(proxy, **bearer("alice"))
    assert value(samples, "symbiotic_memory_requests_total", route="/metrics", code="401") == 2


async def test_metrics_need_the_admin_token_when_only_it_is_set(start_proxy: StartProxy):
    proxy = await start_proxy(admin={"token": "admin-secret"})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/metrics") as r:
            assert r.status == 401
    await scrape(proxy, Authorization="Bearer admin-secret")


async def test_two_apps_in_one_process_count_separately(start_proxy: StartProxy):
    one, two = await start_proxy(), await start_proxy(memory={"enabled": False})
    await post(one, "/api/chat", chat("hello"))
    name = "symbiotic_memory_requests_total"
    assert value(await scrape(one), name, route="/api/chat", code="200") == 1
    assert value(await scrape(two), name, route="/api/chat", code="200") == 0


# --- X-Memory-Exchange-Id through the official clients ---------------------------------------
@pytest.fixture
async def oai(proxy: RunningProxy) -> AsyncIterator[openai.AsyncOpenAI]:
    headers = {"X-Memory-User": "alice"}
    async with openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="x", default_headers=headers
    ) as client:
        yield client


async def feedback(proxy: RunningProxy, exchange_id: str) -> dict[str, object]:
    await proxy.flush()
    async with aiohttp.ClientSession() as http:
        url = f"{proxy.url}/memory/feedback?user=alice"
        async with http.post(url, json={"exchange_id": exchange_id, "score": 0.9}) as r:
            assert r.status == 200, await r.text()
            result: dict[str, object] = await r.json()
            return result


async def test_openai_chat_header_works_for_feedback(proxy: RunningProxy, oai: openai.AsyncOpenAI):
    raw = await oai.chat.completions.with_raw_response.create(
        model="llama3.2", messages=[{"role": "user", "content": FACT}]
    )
    exchange_id = raw.headers[EXCHANGE_HEADER]
    assert len(exchange_id) == 64 and int(exchange_id, 16) >= 0
    result = await feedback(proxy, exchange_id)
    hit = await proxy.memory.get("alice", str(result["memory_id"]))
    assert hit is not None and exchange_id in hit.record.provenance
    assert result["signals"]["feedback"] == 0.9  # type: ignore[index]


async def test_openai_stream_and_responses_carry_distinct_ids(
    proxy: RunningProxy, oai: openai.AsyncOpenAI
):
    async with oai.chat.completions.with_streaming_response.create(
        model="llama3.2", messages=[{"role": "user", "content": FACT}], stream=True
    ) as streamed:
        streamed_id = streamed.headers[EXCHANGE_HEADER]
        async for _ in streamed.iter_lines():
            pass
    raw = await oai.responses.with_raw_response.create(model="llama3.2", input=QUESTION)
    responses_id = raw.headers[EXCHANGE_HEADER]
    assert streamed_id != responses_id
    assert (await feedback(proxy, responses_id))["memory_id"]
    assert (await feedback(proxy, streamed_id))["memory_id"]


async def test_anthropic_header_works_for_feedback(proxy: RunningProxy):
    headers = {"X-Memory-User": "alice"}
    async with anthropic.AsyncAnthropic(
        base_url=proxy.url, api_key="x", default_headers=headers
    ) as claude:
        raw = await claude.messages.with_raw_response.create(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": FACT}]
        )
    assert (await feedback(proxy, raw.headers[EXCHANGE_HEADER]))["memory_id"]


async def test_ollama_endpoints_carry_the_header(proxy: RunningProxy):
    chat_reply = await post(proxy, "/api/chat", chat(FACT, stream=True))
    generate = await post(proxy, "/api/generate", {"model": "llama3.2", "prompt": QUESTION})
    ids = {chat_reply.headers[EXCHANGE_HEADER], generate.headers[EXCHANGE_HEADER]}
    assert len(ids) == 2
    for exchange_id in ids:
        assert (await feedback(proxy, exchange_id))["memory_id"]
