"""``symbiotic-memory demo``: a short scripted conversation through the proxy, in the terminal.

The proxy runs in-process on a free loopback port in front of the configured upstream, with the
configured embedder but a temporary store (your own memories are neither read nor changed).
The official ``ollama`` client plays the user: three separate conversations, so whatever the
model learns about the user in the first can only reach the later ones through memory. Each
turn shows what was recalled and injected, the model's reply, and what was
stored, with its token counts and symbiosis score.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import ollama
from aiohttp import web

from memory.service import MemoryService
from proxy.app import create_app
from proxy.chat import Plan
from proxy.config import Config
from proxy.state import MEMORY, PLAN_LISTENERS

SCRIPT: list[tuple[str, str]] = [
    ("first", "Hi! My name is Ada and I live in Lisbon."),
    ("first", "I'm allergic to peanuts, so please keep that in mind for recipes."),
    ("second", "Can you suggest a quick snack for me?"),
    ("third", "Which city do I live in?"),
]
"""(conversation, user message): turns of one conversation share their history."""
USER = "demo"
"""The user the demo's memories belong to."""


class DemoError(Exception):
    """The demo cannot run (no upstream, no model); the message says why."""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_config(config: Config, store: Path) -> Config:
    """``config`` with memory on, a loopback listener and its store under ``store``."""
    data = config.model_dump()
    data["listen"] = {**data["listen"], "host": "127.0.0.1", "port": free_port()}
    data["store"] = {**data["store"], "path": str(store / "chroma"), "url": None}
    data["memory"] = {
        **data["memory"],
        "enabled": True,
        "outbox_path": str(store / "outbox.sqlite3"),
    }
    return Config.model_validate(data)


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[tuple[str, web.Application, list[Plan]]]:
    """The proxy serving ``config``; yields its URL, app and the plans it made."""
    app = create_app(config)
    plans: list[Plan] = []
    app[PLAN_LISTENERS] = [plans.append]
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.listen.host, config.listen.port).start()
        yield f"http://{config.listen.host}:{config.listen.port}", app, plans
    finally:
        await runner.cleanup()


async def pick_model(config: Config) -> str:
    """The first model the upstream lists; raises DemoError when there is none."""
    path = "/v1/models" if config.upstream.kind == "openai" else "/api/tags"
    url = config.upstream.url + path
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(url) as reply,
        ):
            body = await reply.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DemoError(f"cannot list models at {url}: {exc or type(exc).__name__}") from exc
    names = [m.get("id") for m in body.get("data") or []] + [
        m.get("name") for m in body.get("models") or []
    ]
    found = [str(n) for n in names if isinstance(n, str) and n]
    if not found:
        raise DemoError(f"{url} lists no model; pull one or pass --model")
    return found[0]


def _wrap(prefix: str, text: str, out: TextIO) -> None:
    body = " ".join(text.split()) or "(empty)"
    out.write(textwrap.fill(body, 96, initial_indent=prefix, subsequent_indent=" " * len(prefix)))
    out.write("\n")


def _score(metadata: dict[str, Any]) -> str:
    value = metadata.get("symbiosis")
    if not isinstance(value, int | float):
        return "not scored"
    return f"{float(value):.2f} ({metadata.get('polarity', 'attractor')})"


async def run_demo(
    config: Config, model: str | None, max_tokens: int = 64, out: TextIO = sys.stdout
) -> int:
    """Run :data:`SCRIPT`; returns how many turns had memories injected.

    Raises:
        DemoError: no model could be found on the upstream.
        MemoryLayerError: the store or embedder could not start.
    """
    model = model or await pick_model(config)
    injected_turns = 0
    with tempfile.TemporaryDirectory(prefix="symbiotic-demo-") as tmp:
        cfg = demo_config(config, Path(tmp))
        async with running(cfg) as (url, app, plans):
            out.write(
                f"symbiotic-memory demo: model {model} at {cfg.upstream.url} "
                f"({cfg.upstream.kind}), embedder {cfg.embedder.kind}, temporary store\n"
            )
            turn = DemoTurn(url, model, max_tokens, out)
            histories: dict[str, list[dict[str, str]]] = {}
            for number, (conversation, text) in enumerate(SCRIPT, start=1):
                history = histories.setdefault(conversation, [])
                out.write(f"\n--- turn {number}, conversation '{conversation}' ---\n")
                final = await turn.ask(conversation, history, text)
                if final is None:
                    return injected_turns
                injected_turns += show_plan(plans[-1], out)
                _wrap("model:    ", final.message.content or "", out)
                await show_stored(app[MEMORY], out)
                if final.done_reason:
                    out.write(f"          done: {final.done_reason}\n")
            out.write(
                f"\n{len(await app[MEMORY].store.all(USER))} memories stored; memories were "
                f"injected in {injected_turns} of {len(SCRIPT)} turns.\n"
            )
    return injected_turns


@dataclass
class DemoTurn:
    """Asks the proxy at ``url`` one scripted question as the demo user."""

    url: str
    model: str
    max_tokens: int
    out: TextIO

    async def ask(
        self, conversation: str, history: list[dict[str, str]], text: str
    ) -> ollama.ChatResponse | None:
        """Send ``text`` after ``history`` (both kept in it); None after an upstream error."""
        history.append({"role": "user", "content": text})
        _wrap("you:      ", text, self.out)
        headers = {"X-Memory-User": USER, "X-Memory-Session": conversation}
        client = ollama.AsyncClient(host=self.url, headers=headers)
        try:  # not streamed: some OpenAI-compatible servers report usage only then
            final = await client.chat(
                model=self.model,
                messages=history,
                stream=False,
                options={"num_predict": self.max_tokens, "temperature": 0.2},
            )
        except ollama.ResponseError as exc:
            self.out.write(f"upstream error: {exc.error}\n")
            return None
        finally:
            await client.close()  # type: ignore[no-untyped-call]
        history.append({"role": "assistant", "content": final.message.content or ""})
        return final


def show_plan(plan: Plan, out: TextIO) -> int:
    """Print what the proxy recalled and injected for a turn; 1 if it injected, else 0."""
    if not plan.block.ids:
        out.write(f"recalled: nothing ({plan.memory_status})\n")
        return 0
    out.write(
        f"recalled: {len(plan.block.ids)} memories, {plan.block.tokens} tokens "
        f"injected ({plan.memory_status})\n"
    )
    for line in plan.block.text.splitlines():
        if line.startswith("- "):
            _wrap("          ", line, out)
    return 1


async def show_stored(memory: MemoryService, out: TextIO) -> None:
    """Write the turn's exchange back and print what became of it."""
    gated, reinforced = memory.stats.gated, memory.stats.reinforced
    await memory.flush(timeout_s=30)
    records = await memory.store.all(USER)
    if memory.stats.gated > gated:
        out.write("stored:   raw archive only (the write gate found it unimportant)\n")
    elif memory.stats.reinforced > reinforced:
        out.write("stored:   reinforced a memory that already said this\n")
    elif records:
        newest = max(records, key=lambda h: float(h.metadata.get("created_at", 0)))
        meta = newest.metadata
        counts = (
            f"prompt {meta.get('prompt_eval_count', '?')} + reply "
            f"{meta.get('eval_count', '?')} tokens"
        )
        out.write(f"stored:   memory {newest.id[:8]} ({counts}), symbiosis: {_score(meta)}\n")
