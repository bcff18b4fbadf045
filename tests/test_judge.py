"""The optional LLM judge: structured output through the upstream, off the response path,
never blocking a write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from memory.config import SymbiosisConfig
from memory.score.judge import RUBRIC_SCHEMA, Judge, JudgeError, parse_rating
from memory.score.symbiosis import Scorer
from memory.store.score_log import verify
from testing.fake_upstream import FakeOllama
from tests.conftest import StartProxy

ASK = "How long should I boil an egg for a runny yolk?"


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (polls state the proxy changes)
            await asyncio.sleep(0.02)


def judge_calls(fake: FakeOllama) -> list[dict]:  # type: ignore[type-arg]
    return [c.json() for c in fake.calls("/api/chat") if "format" in c.json()]


async def test_judge_revises_the_score_after_the_answer_without_delaying_it(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path
):
    fake.structured_gate = asyncio.Event()  # the judge answers only when the test says so
    proxy = await start_proxy(symbiosis={"judge_model": "judge-model"})
    reply = await proxy.ollama("alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": ASK}], stream=False
    )
    assert reply.message.content == f"Noted: {ASK}"  # answered while the judge is still busy
    await proxy.flush()
    (memory,) = await proxy.memory.store.all("alice")
    before = json.loads(memory.metadata["symbiosis_signals"])
    score = memory.metadata["symbiosis"]
    assert "judge" not in before  # written with the default score first
    await until(lambda: len(judge_calls(fake)) == 1)
    (call,) = judge_calls(fake)
    assert call["model"] == "judge-model" and call["format"] == RUBRIC_SCHEMA
    assert call["stream"] is False and call["options"]["temperature"] == 0
    assert json.loads(call["messages"][1]["content"]) == {"user": ASK, "assistant": f"Noted: {ASK}"}
    assert "principles" in call["messages"][0]["content"]

    fake.structured = '{"helpful": 1, "honest": 2, "harmless": 5, "efficient": 1}'
    fake.structured_gate.set()
    await until(lambda: proxy.memory.stats.judged == 1)
    (memory,) = await proxy.memory.store.all("alice")
    after = json.loads(memory.metadata["symbiosis_signals"])
    assert after["judge"] == pytest.approx((0 + 0.25 + 1 + 0) / 4)
    assert after["judge_helpful"] == 0.0 and after["harm_refusal"] == before["harm_refusal"]
    assert memory.metadata["symbiosis"] < score - 0.1  # a poor rating pulled the score down
    log = verify(tmp_path / "chroma-scores.jsonl", memory.id)
    assert log.ok and [e["reason"] for e in log.matches] == ["scored", "judge"]
    plain = Scorer(SymbiosisConfig(), None, None).definition.hash
    assert log.matches[-1]["definition"] != plain  # the judge is part of the definition


async def test_a_judge_that_fails_changes_nothing_but_a_counter(
    start_proxy: StartProxy, fake: FakeOllama
):
    fake.structured = "Sure! I think it was quite good."  # not the rubric
    proxy = await start_proxy(symbiosis={"judge_model": "judge-model"})
    await proxy.ollama("alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": ASK}], stream=False
    )
    await proxy.flush()
    await until(lambda: proxy.memory.stats.judge_failed == 1)
    (memory,) = await proxy.memory.store.all("alice")
    assert "judge" not in json.loads(memory.metadata["symbiosis_signals"])
    assert proxy.memory.stats.judged == 0 and proxy.memory.stats.written == 1


async def test_no_judge_by_default(proxy, fake: FakeOllama):  # type: ignore[no-untyped-def]
    await proxy.ollama("alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": ASK}], stream=False
    )
    await proxy.flush()
    assert proxy.memory.judge is None and not judge_calls(fake)


async def test_judge_errors_are_judge_errors(fake: FakeOllama):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        judge = Judge("missing", fake.url, "ollama", session, ("Be honest.",), 5.0)
        with pytest.raises(JudgeError, match="HTTP 404"):
            await judge.rate("hi", "hello")
        judge = Judge("m", "http://127.0.0.1:9", "ollama", session, ("Be honest.",), 5.0)
        with pytest.raises(JudgeError):
            await judge.rate("hi", "hello")
        url, body = Judge("m", fake.url, "openai", session, (), 5.0).request("hi", "hello")
    assert url.endswith("/v1/chat/completions")
    assert body["response_format"]["json_schema"]["schema"] == RUBRIC_SCHEMA
    with pytest.raises(JudgeError):
        parse_rating('{"helpful": 6, "honest": 5, "harmless": 5, "efficient": 5}')
    with pytest.raises(JudgeError):
        parse_rating('{"helpful": 5}')
