#!/usr/bin/env python3
"""How much of each prompt a prefix-caching server can reuse, sent directly or through the proxy
with each ``memory.placement``, and what that costs per turn on a real CPU model.

Ollama and llama.cpp keep the previous request's KV cache and evaluate only the prompt after the
longest common prefix with it. A proxy that edits the start of the prompt each turn (the memory
block in the leading system message) defeats that cache; one that adds the block near the end
of the prompt keeps it.

Part 1 (token counts, the fake upstream of the tests): a user with 40 earlier memories
plays a 10-turn chat, each turn's reply appended to the history as a chat client does. Each arm
(direct; proxy with placement ``system``, ``before_user``, ``user``) gets a fresh store seeded
alike. For every turn after the first, the prompt the upstream received is rendered with the
ChatML template (SmolLM2's) and tokenised with cl100k; the server's cache after turn t-1 is that
turn's prompt plus its reply. ``reuse`` = longest common prefix / prompt length, averaged over
turns 2-10; the ratio is against the direct arm of the same run. ``new_tokens`` is the mean
count of tokens after that prefix: what the server evaluates anew each turn (the memory block
itself is always new).

Part 2 (``--llama``, needs ``scripts/setup-e2e``): the same chat against llama-cpp-python serving
SmolLM2-135M-Instruct (``max_tokens`` 32, temperature 0), directly and through the proxy with
``upstream.kind: openai``; prints the mean wall time of turns 2-10 per arm and its ratio to
direct. llama-cpp-python reuses the longest prefix of its previous prompt, as Ollama does.

    python scripts/bench_prefix.py [--embedder minilm|fake] [--llama]

Last line: ``reuse_direct=A reuse_system=B reuse_before_user=C reuse_user=D`` then, with
``--llama``, ``turn_ms_direct=... turn_ms_system=... turn_ms_user=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory.tokens import encoding  # noqa: E402
from memory.types import Exchange, Scope  # noqa: E402
from proxy.app import create_app  # noqa: E402
from proxy.config import Config  # noqa: E402
from proxy.state import MEMORY  # noqa: E402
from testing.fake_upstream import FakeOllama  # noqa: E402
from testing.net import serve_app  # noqa: E402

USER = "marta"
SYSTEM = "You are a helpful assistant. Answer briefly and concretely."
EARLIER = [
    "I live in Porto, in Portugal.",
    "I work as a hydrologist at Porto's municipal water utility.",
    "I have a retired racing greyhound named Biscoito.",
    "I also have a cat called Pimenta who hates the vacuum cleaner.",
    "I'm allergic to hazelnuts.",
    "Penicillin gives me a rash, I'm allergic to it.",
    "I'm running the Porto half marathon on 18 May.",
    "My sister Ingrid gets married in Uppsala on 14 June.",
    "I take Portuguese lessons every Tuesday evening.",
    "I've been vegetarian for six years.",
    "I have a dentist appointment on 29 April at 09:30.",
    "I'm going hiking in Madeira from 3 to 10 September.",
    "My favourite author is Saramago.",
    "I cycle to work along the Douro river.",
    "My flat has a small balcony where I grow basil and chillies.",
    "I play the cello in an amateur orchestra.",
    "My best friend Joana lives in Lisbon.",
    "I drink my coffee black, no sugar.",
    "I'm learning to bake sourdough bread.",
    "My parents live in Braga.",
    "I studied environmental engineering in Coimbra.",
    "I don't own a car.",
    "I'm saving up for a trip to Japan next year.",
    "My running coach is called Rui.",
    "I prefer tea in the evening, usually chamomile.",
    "I volunteer at the dog shelter on Saturdays.",
    "My birthday is on 2 March.",
    "I'm afraid of heights but I love mountains.",
    "I use Linux on my laptop.",
    "I'm reading a book about river restoration.",
    "My team at work is four people.",
    "I speak Swedish because my mother is from Sweden.",
    "I usually run 40 kilometres a week.",
    "I can't eat anything with nuts in it, hazelnuts are the worst.",
    "Biscoito is nine years old.",
    "Pimenta likes sleeping on the radiator.",
    "I want to adopt a second greyhound.",
    "I go swimming on Thursdays.",
    "My favourite food is francesinha, the vegetarian kind.",
    "I'm planning to repaint my kitchen green.",
]
CHAT = [
    "Hi! Can you help me plan my week?",
    "What would be a good weekend plan for me and my dog?",
    "Suggest a dessert I could bake this weekend.",
    "How should I plan my training for the race?",
    "What should I pack for the trip to Sweden?",
    "Any ideas for a present for my sister's wedding?",
    "What could I cook for my parents when they visit?",
    "Remind me what my pets are called.",
    "How do I keep my balcony plants alive in summer?",
    "Thanks! What's a good book to read on the train?",
]
PLACEMENTS = ("system", "before_user", "user")


def chatml(messages: Sequence[dict[str, Any]]) -> str:
    """``messages`` in SmolLM2's ChatML template, ready for the assistant's turn."""
    parts = [f"<|im_start|>{m['role']}\n{content(m)}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


def content(message: dict[str, Any]) -> str:
    value = message.get("content") or ""
    if isinstance(value, list):
        return "\n\n".join(p.get("text", "") for p in value if isinstance(p, dict))
    return str(value)


def tokens(text: str) -> list[int]:
    return list(encoding().encode(text, disallowed_special=()))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def reuse_shares(
    prompts: list[list[dict[str, Any]]], replies: list[str]
) -> tuple[list[float], list[int]]:
    """Per turn after the first: the share of its prompt's tokens that prefix the previous
    turn's prompt and reply (what a prefix cache holds), and how many tokens follow that
    prefix (what the server evaluates anew)."""
    shares, fresh = [], []
    for t in range(1, len(prompts)):
        cached = tokens(chatml(prompts[t - 1]) + replies[t - 1] + "<|im_end|>\n")
        prompt = tokens(chatml(prompts[t]))
        reused = common_prefix(cached, prompt)
        shares.append(reused / len(prompt))
        fresh.append(len(prompt) - reused)
    return shares, fresh


@asynccontextmanager
async def target(
    arm: str, tmp: str, upstream: str, kind: str, embedder: dict[str, Any]
) -> AsyncIterator[tuple[str, web.AppRunner | None]]:
    """Where an arm's chat goes: the ``upstream`` itself (``direct``), or a proxy in front of
    it with placement ``arm`` and a fresh store seeded with :data:`EARLIER`; yields its URL
    and the proxy's runner (None when direct)."""
    if arm == "direct":
        yield upstream, None
        return
    config = Config.model_validate(
        {
            "upstream": {"url": upstream, "kind": kind},
            "store": {"path": f"{tmp}/chroma-{arm}"},
            "embedder": embedder,
            "memory": {"placement": arm, "timeout_ms": 10000},
        }
    )
    runner, url = await serve_app(create_app(config))
    try:
        await seed(runner)
        yield url, runner
    finally:
        await runner.cleanup()


async def seed(runner: web.AppRunner) -> None:
    """The user's earlier conversation, one memory per statement (a week ago)."""
    service = runner.app[MEMORY]
    week_ago = time.time() - 7 * 86400
    for i, text in enumerate(EARLIER):
        exchange = Exchange(
            scope=Scope(USER, "earlier"),
            endpoint="/api/chat",
            model="m",
            user_text=text,
            reply="Thanks, I'll keep that in mind.",
            started_at=week_ago + i * 60,
        )
        await service.write(exchange)


async def play(
    http: aiohttp.ClientSession, url: str, path: str, model: str, runner: web.AppRunner | None
) -> tuple[list[str], list[float]]:
    """The chat against ``url`` (Ollama ``/api/chat`` or OpenAI ``/v1/chat/completions``):
    the replies and each turn's wall time in ms (write-back drained between turns, untimed)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    replies, times = [], []
    headers = {"X-Memory-User": USER, "X-Memory-Session": "today"}
    for turn in CHAT:
        messages.append({"role": "user", "content": turn})
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        if path.startswith("/v1"):
            body |= {"max_tokens": 32, "temperature": 0.0}
        else:
            body["options"] = {"temperature": 0.0}
        t0 = time.perf_counter()
        async with http.post(url + path, json=body, headers=headers) as response:
            answer = await response.json()
            assert response.status == 200, answer
        times.append((time.perf_counter() - t0) * 1e3)
        reply = answer["message"]["content"] if "message" in answer else ""
        if "choices" in answer:
            reply = answer["choices"][0]["message"]["content"] or ""
        replies.append(reply)
        messages.append({"role": "assistant", "content": reply})
        if runner is not None:
            await runner.app[MEMORY].flush()
    return replies, times


async def token_arms(embedder: dict[str, Any]) -> dict[str, float]:
    """Part 1: mean reuse share per arm, against the fake upstream."""
    fake = FakeOllama()
    await fake.start()
    if embedder.get("kind") == "ollama":
        embedder = {**embedder, "url": fake.url}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with aiohttp.ClientSession() as http:
            for arm in ("direct", *PLACEMENTS):
                async with target(arm, tmp, fake.url, "ollama", embedder) as (url, runner):
                    fake.requests.clear()
                    replies, _ = await play(http, url, "/api/chat", "m", runner)
                prompts = [r.json()["messages"] for r in fake.calls("/api/chat")]
                shares, fresh = reuse_shares(prompts, replies)
                results[arm] = sum(shares) / len(shares)
                per_turn = " ".join(f"{s:.2f}" for s in shares)
                new = sum(fresh) / len(fresh)
                print(
                    f"{arm:<12} reuse={results[arm]:.3f} new_tokens={new:.0f}  per turn: {per_turn}"
                )
    await fake.close()
    return results


async def latency_arms(embedder: dict[str, Any]) -> dict[str, float]:
    """Part 2: mean turn time (turns 2-10) per arm against llama.cpp serving SmolLM2."""
    from testing.llama import MODEL, llama_server

    fake = FakeOllama()  # embeddings only, when the embedder is the fake's
    await fake.start()
    if embedder.get("kind") == "ollama":
        embedder = {**embedder, "url": fake.url}
    results: dict[str, float] = {}
    with llama_server(n_ctx=4096) as llama, tempfile.TemporaryDirectory() as tmp:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await play(http, llama, "/v1/chat/completions", MODEL, None)  # warm the model
            for arm in ("direct", "system", "user"):
                async with target(arm, tmp, llama, "openai", embedder) as (url, runner):
                    _, times = await play(http, url, "/v1/chat/completions", MODEL, runner)
                results[arm] = sum(times[1:]) / len(times[1:])
                per_turn = " ".join(f"{t:.0f}" for t in times)
                print(f"{arm:<12} turn_ms={results[arm]:.0f}  per turn: {per_turn}")
    await fake.close()
    return results


async def main(args: argparse.Namespace) -> None:
    embedder: dict[str, Any] = (
        {"kind": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
        if args.embedder == "minilm"
        else {"kind": "ollama", "model": "fake-embed"}
    )
    print(f"{len(EARLIER)} earlier memories, {len(CHAT)}-turn chat, embedder {args.embedder}")
    reuse = await token_arms(embedder)
    direct = reuse["direct"]
    for arm in PLACEMENTS:
        print(f"placement {arm:<12} reuse {reuse[arm]:.3f} = {reuse[arm] / direct:.2f} x direct")
    line = " ".join(f"reuse_{arm}={value:.3f}" for arm, value in reuse.items())
    if args.llama:
        times = await latency_arms(embedder)
        for arm in ("system", "user"):
            ratio = times[arm] / times["direct"]
            print(f"placement {arm:<12} turn {times[arm]:.0f} ms = {ratio:.2f} x direct")
        print(line)
        print(" ".join(f"turn_ms_{arm}={value:.0f}" for arm, value in times.items()))
    else:
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", choices=("minilm", "fake"), default="minilm")
    parser.add_argument("--llama", action="store_true", help="also time turns on llama.cpp")
    asyncio.run(main(parser.parse_args()))
