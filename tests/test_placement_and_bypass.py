"""Issue 14 (lead's part): where the block goes (``memory.placement``), traffic that is not
conversation (completions, Open WebUI tasks), Open WebUI's identity headers, LiteLLM's wrapped
prompts, and ``/api/show`` / ``/api/ps`` in front of an OpenAI-compatible server."""

from __future__ import annotations

import aiohttp
import ollama
import pytest

from proxy.chat import REASON_HEADER, STATUS_HEADER
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy

FACT = "My cat is called Miso and she is a grey tabby"
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hi!"},
]
TITLE_TASK = (
    "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
    "### Chat History:\n<chat_history>\nUSER: My cat is called Miso\n</chat_history>"
)


async def tell(proxy: RunningProxy, text: str = FACT, user: str = "alice") -> None:
    await proxy.ollama(user).chat(
        model="llama3.2", messages=[{"role": "user", "content": text}], stream=False
    )
    await proxy.flush()


async def stored_texts(proxy: RunningProxy, user: str) -> list[str]:
    return [r["text"] for r in await proxy.memory.export(user) if r["state"] == "stored"]


@pytest.mark.parametrize("placement", ["user", "before_user"])
async def test_placement_keeps_the_clients_prefix_byte_identical(
    start_proxy: StartProxy, fake: FakeOllama, placement: str
):
    proxy = await start_proxy(memory={"placement": placement})
    await tell(proxy)
    question = {"role": "user", "content": "What is my cat called?"}
    reply = await proxy.ollama("alice").chat(
        model="llama3.2", messages=[*HISTORY, question], stream=False
    )
    sent = fake.calls("/api/chat")[-1].json()["messages"]
    assert sent[:3] == HISTORY  # the system message and the earlier turns are untouched
    if placement == "user":
        assert len(sent) == 4 and sent[3]["role"] == "user"
        assert sent[3]["content"].endswith("\n\nWhat is my cat called?")
        assert FACT in sent[3]["content"].split("\n\nWhat is my cat called?")[0]
    else:
        assert [m["role"] for m in sent[3:]] == ["system", "user"]
        assert FACT in sent[3]["content"] and sent[4] == question
    assert reply.message.content
    await proxy.flush()
    # what is stored as the user's words is the turn, not the block
    assert any(
        t.startswith("User: What is my cat called?\n") for t in await stored_texts(proxy, "alice")
    )


async def test_system_placement_is_the_first_releases_behaviour(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"placement": "system"})
    await tell(proxy)
    question = {"role": "user", "content": "What is my cat called?"}
    await proxy.ollama("alice").chat(model="llama3.2", messages=[*HISTORY, question])
    sent = fake.calls("/api/chat")[-1].json()["messages"]
    assert sent[0]["content"].startswith("Be brief.\n\n") and FACT in sent[0]["content"]
    assert sent[1:] == [*HISTORY[1:], question]


async def test_open_webui_title_task_is_neither_recalled_for_nor_stored(
    proxy: RunningProxy, fake: FakeOllama
):
    await tell(proxy)
    before = await stored_texts(proxy, "alice")
    async with aiohttp.ClientSession() as http:
        body = {
            "model": "llama3.2",
            "stream": False,
            "messages": [{"role": "user", "content": TITLE_TASK}],
        }
        async with http.post(
            f"{proxy.url}/api/chat", json=body, headers={"X-OpenWebUI-User-Id": "alice"}
        ) as r:
            assert r.status == 200
            assert r.headers[STATUS_HEADER] == "bypassed" and r.headers[REASON_HEADER] == "task"
    sent = fake.calls("/api/chat")[-1].json()
    assert sent["messages"] == body["messages"]  # nothing injected
    await proxy.flush()
    assert await stored_texts(proxy, "alice") == before


async def test_configured_task_patterns_replace_the_default(start_proxy: StartProxy):
    proxy = await start_proxy(memory={"task_patterns": [r"\A/autocomplete "]})
    async with aiohttp.ClientSession() as http:
        statuses = []
        for text in ("/autocomplete def f(", TITLE_TASK):
            body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": text}]}
            async with http.post(
                f"{proxy.url}/api/chat", json=body, headers={"X-Memory-User": "alice"}
            ) as r:
                statuses.append(r.headers[STATUS_HEADER])
    assert statuses[0] == "bypassed"
    assert statuses[1] != "bypassed"  # the default list was replaced


async def test_open_webui_headers_give_each_account_its_own_memory(proxy: RunningProxy):
    async with aiohttp.ClientSession() as http:
        for user, chat in (("u-ann", "c1"), ("u-ben", "c2")):
            body = {
                "model": "m",
                "stream": False,
                "messages": [{"role": "user", "content": f"My name is {user} and I like tea"}],
            }
            headers = {"X-OpenWebUI-User-Id": user, "X-OpenWebUI-Chat-Id": chat}
            async with http.post(f"{proxy.url}/api/chat", json=body, headers=headers) as r:
                assert r.status == 200
    await proxy.flush()
    ann = [r for r in await proxy.memory.export("u-ann") if r["state"] == "stored"]
    assert [r["text"].split("\n")[0] for r in ann] == ["User: My name is u-ann and I like tea"]
    assert ann[0]["metadata"]["session"] == "c1"
    assert await proxy.memory.export("default") == []


async def test_completions_are_relayed_and_never_stored(proxy: RunningProxy, fake: FakeOllama):
    await tell(proxy)
    before = await stored_texts(proxy, "alice")
    client = proxy.ollama("alice")
    fim = await client.generate(model="m", prompt="def add(a, b):", suffix="\n", stream=False)
    raw = await client.generate(model="m", prompt="<|im_start|>user\nhi", raw=True, stream=False)
    assert fim.response and raw.response is not None
    for call in fake.calls("/api/generate")[-2:]:
        assert "system" not in call.json()  # no memory injected
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{proxy.url}/api/generate",
            json={"model": "m", "prompt": "x = ", "suffix": "", "stream": False},
            headers={"X-Memory-User": "alice"},
        ) as r:
            assert r.headers[STATUS_HEADER] == "bypassed"
            assert r.headers[REASON_HEADER] == "completion"
        # legacy / fill-in-the-middle completions: relayed as they are (the fake has no such
        # route: its 404 comes back), marked as bypassed
        fim_body = {"model": "m", "prompt": "def f(", "suffix": "\n    return 1"}
        async with http.post(f"{proxy.url}/v1/completions", json=fim_body) as r:
            assert r.status == 404 and r.headers[STATUS_HEADER] == "bypassed"
    assert fake.calls("/v1/completions")[-1].json() == fim_body
    await proxy.flush()
    assert await stored_texts(proxy, "alice") == before


async def test_litellm_wrapped_prompt_stores_the_users_words(proxy: RunningProxy):
    prompt = (
        "### System:\nBe brief.\n\n### User:\nHello\n\n### Assistant:\nHi!\n\n"
        "### User:\nI moved to Porto last spring\n\n"
    )
    await proxy.ollama("alice").generate(model="m", prompt=prompt, stream=False)
    await proxy.flush()
    texts = await stored_texts(proxy, "alice")
    assert len(texts) == 1 and texts[0].startswith("User: I moved to Porto last spring\n")
    assert "###" not in texts[0].split("\nAssistant:")[0]


async def test_show_and_ps_answer_for_an_openai_upstream(start_proxy: StartProxy):
    proxy = await start_proxy(upstream={"kind": "openai"}, embedder={"kind": "openai"})
    client = ollama.AsyncClient(host=proxy.url)
    shown = await client.show("llama3.2:latest")
    assert shown.capabilities == ["completion"]
    running = await client.ps()
    assert [m.model for m in running.models] == ["llama3.2"]
    with pytest.raises(ollama.ResponseError) as missing:
        await client.show("nope")
    assert missing.value.status_code == 404 and "not found" in missing.value.error
