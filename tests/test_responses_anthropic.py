"""Memory on ``POST /v1/responses`` and ``POST /v1/messages``, driven by the official ``openai``
and ``anthropic`` Python clients through the proxy in front of the fake upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from proxy.adapters import ANTHROPIC_MESSAGES, OPENAI_RESPONSES
from proxy.app import create_app
from proxy.chat import RECALLED_HEADER, STATUS_HEADER
from proxy.tee import Tee
from testing import event_streams as ev
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy, make_config

FACT = "My cat is called Miso and she is a grey tabby"
QUESTION = "What is my cat called?"
WEATHER = "What is the weather in Tokyo today?"


@pytest.fixture
async def oai(proxy: RunningProxy) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_for(proxy) as client:
        yield client


@pytest.fixture
async def claude(proxy: RunningProxy) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_for(proxy) as client:
        yield client


def openai_for(proxy: RunningProxy, user: str = "alice") -> openai.AsyncOpenAI:
    headers = {"X-Memory-User": user}
    return openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x", default_headers=headers)


def anthropic_for(proxy: RunningProxy, user: str = "alice") -> anthropic.AsyncAnthropic:
    headers = {"X-Memory-User": user}
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", default_headers=headers)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def stored(proxy: RunningProxy, query: str) -> list[str]:
    await proxy.flush()
    return [hit.text for hit in await proxy.memory.search("alice", query, 5)]


# --- OpenAI Responses ------------------------------------------------------------------------
async def test_responses_recall_reaches_instructions_and_exchange_is_stored(
    proxy: RunningProxy, fake: FakeOllama, oai: openai.AsyncOpenAI
):
    first = await oai.responses.create(model="llama3.2", input=FACT)
    assert first.output_text == f"Noted: {FACT}"
    assert await stored(proxy, FACT) == [f"User: {FACT}\nAssistant: Noted: {FACT}"]

    raw = await oai.responses.with_raw_response.create(
        model="llama3.2", instructions="Be brief.", input=QUESTION
    )
    assert raw.headers[STATUS_HEADER] == "injected" and raw.headers[RECALLED_HEADER] == "1"
    assert raw.parse().output_text == f"Noted: {QUESTION}"
    sent = fake.calls("/v1/responses")[-1].json()
    assert sent["instructions"].startswith("Be brief.\n\n") and FACT in sent["instructions"]
    assert sent["input"] == QUESTION  # the user's own text is untouched


async def test_responses_streamed_both_ways_with_memory(
    proxy: RunningProxy, fake: FakeOllama, oai: openai.AsyncOpenAI
):
    items = [{"role": "user", "content": [{"type": "input_text", "text": FACT}]}]
    stream = await oai.responses.create(model="llama3.2", input=items, stream=True)
    deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == f"Noted: {FACT}"
    assert await stored(proxy, FACT) == [f"User: {FACT}\nAssistant: Noted: {FACT}"]

    async with oai.responses.stream(model="llama3.2", input=QUESTION) as events:
        async for _ in events:
            pass
        final = await events.get_final_response()
    assert final.output_text == f"Noted: {QUESTION}" and final.usage is not None
    assert FACT in fake.calls("/v1/responses")[-1].json()["instructions"]
    await proxy.flush()
    (hit,) = [h for h in await proxy.memory.search("alice", QUESTION, 5) if QUESTION in h.text]
    assert hit.metadata["endpoint"] == "/v1/responses"
    assert hit.metadata["eval_count"] == final.usage.output_tokens
    assert hit.metadata["prompt_eval_count"] == final.usage.input_tokens


async def test_responses_reasoning_is_kept_apart_from_the_stored_reply(
    proxy: RunningProxy, oai: openai.AsyncOpenAI
):
    whole = await oai.responses.create(model="thinker", input=FACT)
    assert [item.type for item in whole.output] == ["reasoning", "message"]
    stream = await oai.responses.create(model="thinker", input=QUESTION, stream=True)
    types = [e.type async for e in stream]
    assert "response.reasoning_text.delta" in types
    texts = await stored(proxy, "cat")
    assert sorted(texts) == sorted(
        [
            f"User: {FACT}\nAssistant: Noted: {FACT}",
            f"User: {QUESTION}\nAssistant: Noted: {QUESTION}",
        ]
    )
    assert not any("think about it" in t for t in texts)


async def test_responses_tool_step_is_not_stored_and_the_loop_stores_the_user_turn(
    proxy: RunningProxy, oai: openai.AsyncOpenAI
):
    first = await oai.responses.create(model="tool-model", input=WEATHER, stream=False)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    stream = await oai.responses.create(model="tool-model", input=WEATHER, stream=True)
    assert "response.function_call_arguments.delta" in [e.type async for e in stream]
    assert await stored(proxy, "weather Tokyo") == []
    assert proxy.memory.stats.written == 0
    history: list[Any] = [
        *user(WEATHER),
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": "{}"},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
    ]
    final = await oai.responses.create(model="tool-model", input=history)
    assert final.output_text == "The tool says sunny, 21 C."
    assert await stored(proxy, "weather Tokyo") == [
        f"User: {WEATHER}\nAssistant: The tool says sunny, 21 C."
    ]


async def test_responses_midstream_error_is_relayed_and_not_stored(
    proxy: RunningProxy, oai: openai.AsyncOpenAI
):
    stream = await oai.responses.create(model="midstream-error", input=FACT, stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "error" and events[-1].message == "model crashed"
    assert await stored(proxy, FACT) == []
    assert proxy.memory.stats.skipped == 1


async def test_responses_upstream_break_ends_with_an_error_event(
    proxy: RunningProxy, oai: openai.AsyncOpenAI
):
    stream = await oai.responses.create(model="disconnect", input=FACT, stream=True)
    events = [e async for e in stream]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Noted: ", "My "]
    assert events[-1].type == "error"
    assert events[-1].message.startswith("upstream connection lost")
    assert await stored(proxy, FACT) == []


async def test_responses_with_previous_response_id_still_recalls(
    proxy: RunningProxy, fake: FakeOllama, oai: openai.AsyncOpenAI
):
    await oai.responses.create(model="llama3.2", input=FACT)
    await proxy.flush()
    await oai.responses.create(model="llama3.2", input=QUESTION, previous_response_id="resp_1")
    sent = fake.calls("/v1/responses")[-1].json()
    assert sent["previous_response_id"] == "resp_1" and FACT in sent["instructions"]


async def test_responses_upstream_404_is_relayed(oai: openai.AsyncOpenAI):
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.responses.create(model="missing", input="x")
    assert "model 'missing' not found" in str(caught.value)


# --- Anthropic Messages ----------------------------------------------------------------------
async def test_messages_recall_reaches_system_blocks_and_exchange_is_stored(
    proxy: RunningProxy, fake: FakeOllama, claude: anthropic.AsyncAnthropic
):
    first = await claude.messages.create(model="llama3.2", max_tokens=64, messages=user(FACT))
    assert first.content[0].type == "text" and first.content[0].text == f"Noted: {FACT}"
    assert await stored(proxy, FACT) == [f"User: {FACT}\nAssistant: Noted: {FACT}"]

    system: list[Any] = [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
    ]
    raw = await claude.messages.with_raw_response.create(
        model="llama3.2", max_tokens=64, system=system, messages=user(QUESTION)
    )
    assert raw.headers[STATUS_HEADER] == "injected" and raw.headers[RECALLED_HEADER] == "1"
    sent = fake.calls("/v1/messages")[-1].json()
    assert sent["system"][0] == system[0]  # the client's cached block is untouched
    assert sent["system"][1]["type"] == "text" and FACT in sent["system"][1]["text"]
    assert sent["messages"] == user(QUESTION)


async def test_messages_streamed_with_the_stream_helper_and_raw_events(
    proxy: RunningProxy, fake: FakeOllama, claude: anthropic.AsyncAnthropic
):
    async with claude.messages.stream(
        model="llama3.2", max_tokens=64, system="Be brief.", messages=user(FACT)
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == f"Noted: {FACT}" and final.stop_reason == "end_turn"
    await proxy.flush()
    (hit,) = await proxy.memory.search("alice", FACT, 1)
    assert hit.text == f"User: {FACT}\nAssistant: Noted: {FACT}"
    assert hit.metadata["endpoint"] == "/v1/messages"
    assert hit.metadata["eval_count"] == final.usage.output_tokens
    assert hit.metadata["done_reason"] == "stop"

    events = await claude.messages.create(
        model="llama3.2", max_tokens=64, messages=user(QUESTION), stream=True
    )
    kinds = [e.type async for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    sent = fake.calls("/v1/messages")[-1].json()
    assert isinstance(sent["system"], str) and FACT in sent["system"]


async def test_messages_thinking_is_kept_apart_from_the_stored_reply(
    proxy: RunningProxy, claude: anthropic.AsyncAnthropic
):
    whole = await claude.messages.create(model="thinker", max_tokens=64, messages=user(FACT))
    assert [b.type for b in whole.content] == ["thinking", "text"]
    async with claude.messages.stream(
        model="thinker", max_tokens=64, messages=user(QUESTION)
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "thinking"
    texts = await stored(proxy, "cat")
    assert len(texts) == 2 and not any("think about it" in t for t in texts)


async def test_messages_tool_use_is_not_stored_and_tool_results_are_a_tool_step(
    proxy: RunningProxy, claude: anthropic.AsyncAnthropic
):
    first = await claude.messages.create(model="tool-model", max_tokens=64, messages=user(WEATHER))
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and call.input == {"city": "Tokyo"}
    async with claude.messages.stream(
        model="tool-model", max_tokens=64, messages=user(WEATHER)
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == call.input
    assert await stored(proxy, "weather Tokyo") == []
    history: list[Any] = [
        *user(WEATHER),
        {"role": "assistant", "content": [call.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}],
        },
    ]
    final = await claude.messages.create(model="tool-model", max_tokens=64, messages=history)
    assert final.content[0].type == "text"
    assert await stored(proxy, "weather Tokyo") == [
        f"User: {WEATHER}\nAssistant: The tool says sunny, 21 C."
    ]


async def test_messages_with_beta_query_string_keeps_memory_and_forwards_the_query(
    proxy: RunningProxy, fake: FakeOllama, claude: anthropic.AsyncAnthropic
):
    await claude.messages.create(model="llama3.2", max_tokens=64, messages=user(FACT))
    await proxy.flush()
    # Claude Code posts to /v1/messages?beta=true; this SDK version keeps its beta marker out
    # of the URL, so the query string is sent as Claude Code sends it.
    reply = await claude.messages.with_raw_response.create(
        model="llama3.2", max_tokens=64, messages=user(QUESTION), extra_query={"beta": "true"}
    )
    assert reply.headers[STATUS_HEADER] == "injected"
    recorded = fake.calls("/v1/messages")[-1]
    assert recorded.query == "beta=true" and FACT in recorded.json()["system"]


async def test_messages_midstream_error_event_is_relayed_and_not_stored(
    proxy: RunningProxy, claude: anthropic.AsyncAnthropic
):
    stream = await claude.messages.create(
        model="midstream-error", max_tokens=64, messages=user(FACT), stream=True
    )
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        async for _ in stream:
            pass
    assert await stored(proxy, FACT) == []
    assert proxy.memory.stats.skipped == 1


async def test_messages_upstream_break_ends_with_an_anthropic_error_event(
    proxy: RunningProxy, claude: anthropic.AsyncAnthropic
):
    stream = await claude.messages.create(
        model="disconnect", max_tokens=64, messages=user(FACT), stream=True
    )
    with pytest.raises(anthropic.APIStatusError, match="upstream connection lost"):
        async for _ in stream:
            pass
    assert await stored(proxy, FACT) == []


async def test_messages_upstream_404_is_relayed(claude: anthropic.AsyncAnthropic):
    with pytest.raises(anthropic.NotFoundError, match="model 'missing' not found"):
        await claude.messages.create(model="missing", max_tokens=8, messages=user("x"))


# --- both routes -----------------------------------------------------------------------------
async def test_fail_open_on_both_routes_when_the_embedder_fails(
    proxy: RunningProxy, fake: FakeOllama
):
    fake.embed_fail = True
    async with openai_for(proxy) as oai, anthropic_for(proxy) as claude:
        raw = await oai.responses.with_raw_response.create(model="llama3.2", input=QUESTION)
        assert raw.headers[STATUS_HEADER] == "skipped"
        assert raw.parse().output_text == f"Noted: {QUESTION}"
        msg = await claude.messages.with_raw_response.create(
            model="llama3.2", max_tokens=8, messages=user(QUESTION)
        )
        assert msg.headers[STATUS_HEADER] == "skipped"
        assert (await msg.parse()).content[0].type == "text"


async def test_memory_off_header_and_blank_turns_touch_no_memory(
    proxy: RunningProxy, fake: FakeOllama
):
    async with aiohttp.ClientSession() as http:
        off = {"X-Memory": "off"}
        body = {"model": "llama3.2", "input": QUESTION}
        async with http.post(f"{proxy.url}/v1/responses", json=body, headers=off) as r:
            assert r.status == 200 and r.headers[STATUS_HEADER] == "off"
        prefill = {
            "model": "llama3.2",
            "max_tokens": 8,
            "messages": [*user(QUESTION), {"role": "assistant", "content": "It is"}],
        }
        async with http.post(f"{proxy.url}/v1/messages", json=prefill) as r:
            assert r.status == 200 and r.headers[STATUS_HEADER] == "none"
    assert await stored(proxy, QUESTION) == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/responses", {"model": "m", "input": 3}, "input"),
        ("/v1/messages", {"model": "m", "messages": "hi"}, "messages"),
        ("/v1/messages", {"messages": []}, "model"),
    ],
)
async def test_bad_bodies_get_an_ollama_style_400(
    proxy: RunningProxy, path: str, body: dict[str, Any], field: str
):
    async with aiohttp.ClientSession() as http, http.post(proxy.url + path, json=body) as r:
        assert r.status == 400
        assert f"'{field}" in (await r.json())["error"]


async def test_openai_kind_upstream_serves_both_routes_with_memory(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(upstream={"kind": "openai"})
    async with openai_for(proxy) as oai, anthropic_for(proxy) as claude:
        await oai.responses.create(model="llama3.2", input=FACT)
        await proxy.flush()
        raw = await claude.messages.with_raw_response.create(
            model="llama3.2", max_tokens=8, messages=user(QUESTION)
        )
        assert raw.headers[STATUS_HEADER] == "injected"
    assert FACT in fake.calls("/v1/messages")[-1].json()["system"]
    assert fake.calls("/v1/embeddings") and not fake.calls("/api/embed")


async def test_openai_kind_upstream_without_the_route_has_its_404_relayed(tmp_path: Path):
    server = FakeOllama(without=frozenset({"/v1/responses", "/v1/messages"}))
    await server.start()
    runner = web.AppRunner(
        create_app(make_config(server.url, tmp_path, upstream={"kind": "openai"}))
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            for path in ("/v1/responses", "/v1/messages?beta=true"):
                async with http.post(
                    url + path, json={"model": "m", "input": "hi", "messages": []}
                ) as r:
                    assert r.status == 404 and await r.text() == "404: Not Found"
    finally:
        await runner.cleanup()
        await server.close()


# --- placement (memory.placement; the other tests pin `system`) ------------------------------
async def recalled_proxy(start_proxy: StartProxy, placement: str) -> RunningProxy:
    """A proxy with ``placement`` that already remembers FACT (written over /v1/responses)."""
    proxy = await start_proxy(memory={"placement": placement})
    async with openai_for(proxy) as oai:
        await oai.responses.create(model="llama3.2", input=FACT)
    await proxy.flush()
    return proxy


async def stored_user_texts(proxy: RunningProxy) -> list[str]:
    await proxy.flush()
    hits = await proxy.memory.search("alice", QUESTION, 5)
    return [h.text.split("\nAssistant:")[0] for h in hits if QUESTION in h.text]


async def test_responses_placement_user_leads_the_turn_and_stores_only_the_users_text(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await recalled_proxy(start_proxy, "user")
    parts = [{"type": "input_text", "text": QUESTION}]
    async with openai_for(proxy) as oai:
        raw = await oai.responses.with_raw_response.create(
            model="llama3.2", instructions="Be brief.", input=QUESTION
        )
        assert raw.headers[STATUS_HEADER] == "injected"
        await oai.responses.create(model="llama3.2", input=[{"role": "user", "content": parts}])
    as_string, as_parts = (r.json() for r in fake.calls("/v1/responses")[-2:])
    assert as_string["instructions"] == "Be brief."  # the client's prefix is untouched
    block, question = as_string["input"].split("\n\n", 1)[0], QUESTION
    assert FACT in block and as_string["input"].endswith(f"\n\n{question}")
    (turn,) = as_parts["input"]
    assert turn["content"][0]["type"] == "input_text" and FACT in turn["content"][0]["text"]
    assert turn["content"][1:] == parts and "instructions" not in as_parts
    assert await stored_user_texts(proxy) == [f"User: {QUESTION}"] * 2


async def test_responses_placement_before_user_is_a_system_item_before_the_turn(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await recalled_proxy(start_proxy, "before_user")
    history = [*user("Hi"), {"role": "assistant", "content": "Hello!"}, *user(QUESTION)]
    async with openai_for(proxy) as oai:
        await oai.responses.create(model="llama3.2", input=history)
    sent = fake.calls("/v1/responses")[-1].json()["input"]
    assert sent[:2] == history[:2] and sent[3] == history[2]
    assert sent[2]["role"] == "system" and FACT in sent[2]["content"]


@pytest.mark.parametrize("placement", ["user", "before_user"])
async def test_messages_placement_user_leads_the_turn_system_untouched(
    start_proxy: StartProxy, fake: FakeOllama, placement: str
):
    proxy = await recalled_proxy(start_proxy, placement)
    system: list[Any] = [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
    ]
    async with anthropic_for(proxy) as claude:
        raw = await claude.messages.with_raw_response.create(
            model="llama3.2", max_tokens=64, system=system, messages=user(QUESTION)
        )
        assert raw.headers[STATUS_HEADER] == "injected"
    sent = fake.calls("/v1/messages")[-1].json()
    assert sent["system"] == system
    (turn,) = sent["messages"]
    assert turn["role"] == "user" and turn["content"].endswith(f"\n\n{QUESTION}")
    assert FACT in turn["content"].split("\n\n", 1)[0]
    assert await stored_user_texts(proxy) == [f"User: {QUESTION}"]


async def test_messages_placement_user_in_a_tool_loop_goes_into_the_real_user_turn(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await recalled_proxy(start_proxy, "user")
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    question = [{"type": "text", "text": QUESTION}]
    history: list[Any] = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    async with anthropic_for(proxy) as claude:
        await claude.messages.create(model="tool-model", max_tokens=64, messages=history)
    sent = fake.calls("/v1/messages")[-1].json()["messages"]
    assert sent[1:] == history[1:]  # the tool steps are untouched
    assert FACT in sent[0]["content"][0]["text"] and sent[0]["content"][1:] == question


# --- the tee over the two event streams (no server) -------------------------------------------
def tee_bytes(adapter: Any, raw: bytes, size: int) -> tuple[Tee, list[bool]]:
    tee = Tee(adapter, "sse")
    ends = []
    for i in range(0, len(raw), size):
        tee.feed(raw[i : i + size])
        ends.append(tee.at_end(None))
    return tee, ends


@given(size=st.integers(min_value=1, max_value=97))
def test_tee_assembles_both_event_streams_whatever_the_chunking(size: int):
    answer = ev.Answer(["Hi ", "th", "ere"], thinking="hmm", input_tokens=7)
    streams = (
        (OPENAI_RESPONSES, ev.responses_events("m", answer)),
        (ANTHROPIC_MESSAGES, ev.anthropic_events("m", answer)),
    )
    for adapter, events in streams:
        raw = b"".join(ev.sse(events)).replace(b"\n", b"\r\n")
        tee, ends = tee_bytes(adapter, raw, size)
        reply = tee.close()
        assert (reply.content, reply.thinking, reply.error) == ("Hi there", "hmm", None)
        # complete once the closing event's data line is in, not before, and from then on
        first = ends.index(True)
        assert not any(ends[:first]) and all(ends[first:]) and reply.done
        assert (first + 1) * size >= raw.rindex(b"\r\n\r\n") + 2
        assert reply.metrics["prompt_eval_count"] == 7
        assert reply.metrics["eval_count"] == answer.output_tokens
        assert reply.metrics["done_reason"] == "stop" and reply.unparsed == 0


def test_tee_reads_tool_calls_and_error_events_of_both_streams():
    answer = ev.Answer([], tool=("get_weather", '{"city": "Tokyo"}'))
    for adapter, events in (
        (OPENAI_RESPONSES, ev.responses_events("m", answer)),
        (ANTHROPIC_MESSAGES, ev.anthropic_events("m", answer)),
    ):
        reply = tee_bytes(adapter, b"".join(ev.sse(events)), 13)[0].close()
        (call,) = reply.tool_calls
        assert call["function"]["name"] == "get_weather" and reply.content == ""
        assert json.loads(call["function"]["arguments"]) == {"city": "Tokyo"}
    broken = (
        (OPENAI_RESPONSES, ev.responses_error("model crashed")),
        (ANTHROPIC_MESSAGES, ev.anthropic_error("model crashed")),
    )
    for adapter, event in broken:
        reply = tee_bytes(adapter, ev.sse([event])[0], 5)[0].close()
        assert reply.error == "model crashed" and not reply.done
