"""A fake Ollama for the tests: a real aiohttp server speaking Ollama's and OpenAI's wire formats,
OpenAI Responses (``/v1/responses``) and Anthropic Messages (``/v1/messages``) included.

Formats follow ``../shared/reference/ollama/api.md``, ``openai-compatibility.mdx`` and
``anthropic-compatibility.mdx``. Replies are deterministic (``Noted: <last user text>``);
special model names script failures: ``missing`` (404 before streaming), ``midstream-error``
(an error frame after two chunks), ``disconnect`` (the connection cut after two chunks),
``tool-model`` (a tool call until a tool result arrives), ``overflow`` (400), and, on the two
named-event routes, ``thinker`` (reasoning before the text).
Embeddings are hashed bags of words, so texts sharing words are similar.

Run it on its own to try the proxy without Ollama: ``python -m testing.fake_upstream 11434``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testing import event_streams as ev

EMBED_DIM = 64
TAGS_BODY = (
    b'{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest",'
    b'"modified_at":"2025-05-04T17:37:44.706015396-07:00","size":2019393189,'
    b'"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",'
    b'"details":{"format":"gguf","family":"llama","parameter_size":"3.2B",'
    b'"quantization_level":"Q4_K_M"}}]}  \n'
)
"""Deliberately odd formatting (trailing spaces): pass-through must keep it byte for byte."""


def embed_text(text: str, dim: int = EMBED_DIM) -> list[float]:
    """Hashed bag-of-words vector (not normalised: the proxy must normalise)."""
    vector = [0.0] * dim
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    if not any(vector):
        vector[0] = 1.0
    return vector


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""
    """The raw query string (``beta=true``)."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeOllama:
    """Start with ``await fake.start()``; ``fake.url`` then points at it."""

    requests: list[Recorded] = field(default_factory=list)
    embed_fail: bool = False
    embed_delay_s: float = 0.0
    embed_cold_s: float = 0.0
    """A model being loaded: the next embedding request waits this long, once."""
    embed_dim: int = EMBED_DIM
    chunk_delay_s: float = 0.0
    fault: str | None = None
    """Chaos for every generation endpoint: ``"500"``, ``"slow"`` (1.5 s before answering) or
    ``"disconnect"`` (one frame, then the connection is cut)."""
    pull_gate: asyncio.Event = field(default_factory=asyncio.Event)
    scripted: dict[str, str] = field(default_factory=dict)
    """Replies by the last user message: a chat whose last user turn is a key gets that reply."""
    structured: str = '{"helpful": 5, "honest": 5, "harmless": 5, "efficient": 4}'
    """The reply to a chat that asks for structured output (``format``: a JSON schema, or on
    ``/v1`` a ``response_format`` with a schema)."""
    refuse_json_schema: bool = False
    """``/v1/chat/completions`` refuses ``response_format`` of type ``json_schema`` as
    llama-cpp-python's server does (HTTP 500, its validation message); ``json_object`` with a
    ``schema`` beside it is accepted."""
    structured_gate: asyncio.Event | None = None
    """When set, chats with ``format`` wait for this event before answering."""
    echo_context: bool = False
    """Answer by repeating every system message before the last user turn: the worst case of
    a model that repeats whatever was put in its context (scripts/audit_leakage.py)."""
    without: frozenset[str] = frozenset()
    """Paths not served (404, as a server without that API answers), e.g. ``/v1/responses``."""
    pulled: tuple[str, ...] = ()
    """Extra model names ``/api/tags`` lists (when set, as plain JSON after the default one)."""
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen on a free loopback port; returns the base URL."""
        return await self.start_on(0)

    async def start_on(self, port: int) -> str:
        """Listen on ``port`` (0: any free one); returns the base URL."""
        app = web.Application(client_max_size=1024**3)
        app.middlewares.append(self._record)
        app.router.add_get("/", self.root)  # and HEAD /
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_post("/api/show", self.show)
        app.router.add_post("/api/pull", self.pull)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_post("/api/embeddings", self.embeddings_legacy)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/embeddings", self.v1_embeddings)
        app.router.add_post("/v1/chat/completions", self.v1_chat)
        for path, handler in (("/v1/responses", self.responses), ("/v1/messages", self.messages)):
            if path not in self.without:
                app.router.add_post(path, handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def calls(self, path: str) -> list[Recorded]:
        """Requests received on ``path``."""
        return [r for r in self.requests if r.path == path]

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        recorded = Recorded(request.method, request.path, headers, body, request.query_string)
        self.requests.append(recorded)
        if request.path in self.without:  # also paths routed before ``without`` was set
            raise web.HTTPNotFound()
        return await handler(request)

    # --- plain endpoints -------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.6"})

    async def tags(self, request: web.Request) -> web.Response:
        if self.pulled:
            models = json.loads(TAGS_BODY)["models"]
            models += [{**models[0], "name": name, "model": name} for name in self.pulled]
            return web.json_response({"models": models})
        return web.Response(body=TAGS_BODY, content_type="application/json")

    async def ps(self, request: web.Request) -> web.Response:
        return web.json_response({"models": []})

    async def show(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("model") == "missing":
            return web.json_response({"error": "model 'missing' not found"}, status=404)
        return web.json_response(
            {
                "modelfile": "FROM x",
                "template": "{{ .Prompt }}",
                "details": {"family": "llama", "format": "gguf"},
                "model_info": {"general.architecture": "llama"},
                "capabilities": ["completion"],
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "llama3.2", "object": "model", "owned_by": "me"}]}
        )

    async def pull(self, request: web.Request) -> web.StreamResponse:
        """A long NDJSON stream that waits on ``pull_gate`` after its first line."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(b'{"status":"pulling manifest"}\n')
        await asyncio.wait_for(self.pull_gate.wait(), 10)
        for done in (10, 20, 30):
            line = {"status": "pulling abc", "digest": "abc", "total": 30, "completed": done}
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write(b'{"status":"success"}\n')
        await response.write_eof()
        return response

    # --- embeddings ------------------------------------------------------------------------
    async def _embed_guard(self) -> web.Response | None:
        if self.embed_delay_s:
            await asyncio.sleep(self.embed_delay_s)
        if self.embed_cold_s:
            cold, self.embed_cold_s = self.embed_cold_s, 0.0
            await asyncio.sleep(cold)
        if self.embed_fail:
            return web.json_response({"error": "embedding model crashed"}, status=500)
        return None

    async def embed(self, request: web.Request) -> web.Response:
        if (failure := await self._embed_guard()) is not None:
            return failure
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [embed_text(t, self.embed_dim) for t in texts]
        return web.json_response({"model": body["model"], "embeddings": vectors})

    async def embeddings_legacy(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"embedding": embed_text(body.get("prompt", ""))})

    async def v1_embeddings(self, request: web.Request) -> web.Response:
        if (failure := await self._embed_guard()) is not None:
            return failure
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": embed_text(t, self.embed_dim)}
            for i, t in enumerate(texts)
        ]
        return web.json_response({"object": "list", "data": data[::-1], "model": body["model"]})

    # --- generation ------------------------------------------------------------------------
    @staticmethod
    def reply_for(messages: list[dict[str, Any]]) -> str:
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        content = last_user.get("content", "")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if messages and messages[-1].get("role") == "tool":
            return f"The tool says {messages[-1].get('content')}."
        return f"Noted: {content}"

    def answer(self, messages: list[dict[str, Any]]) -> str:
        """The reply to ``messages``: :attr:`scripted`, then :attr:`echo_context`, then
        :meth:`reply_for`."""
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        if isinstance(last_user.get("content"), str) and last_user["content"] in self.scripted:
            return self.scripted[last_user["content"]]
        reply = self.reply_for(messages)
        if self.echo_context:
            context = [str(m.get("content", "")) for m in messages if m.get("role") == "system"]
            reply = " ".join([*context, reply])
        return reply

    @staticmethod
    def metrics(prompt_tokens: int, reply_tokens: int) -> dict[str, Any]:
        return {
            "done_reason": "stop",
            "total_duration": 123_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 20_000_000,
            "eval_count": reply_tokens,
            "eval_duration": 100_000_000,
        }

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        return len(json.dumps(body).split())

    async def _ndjson(
        self, request: web.Request, frames: list[dict[str, Any]], drop: bool = False
    ) -> web.StreamResponse:
        """Stream ``frames``; with ``drop``, cut the connection after them as a crash would."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for frame in frames:
            await response.write(json.dumps(frame).encode() + b"\n")
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
        if drop:
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        """Apply ``self.fault`` (as it was when the request arrived); a response ends it early."""
        fault = self.fault
        if fault == "500":
            return web.json_response({"error": "upstream exploded (chaos)"}, status=500)
        if fault == "slow":
            await asyncio.sleep(1.5)
        if fault == "disconnect":
            return await self._ndjson(request, [{"message": {"content": "par"}}], drop=True)
        return None

    def _scripted_error(self, model: str) -> web.Response | None:
        if model == "missing":
            return web.json_response({"error": f"model '{model}' not found"}, status=404)
        if model == "overflow":
            return web.json_response(
                {"error": "the input length exceeds the context length"}, status=400
            )
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if (faulty := await self._fault(request)) is not None:
            return faulty
        body = await request.json()
        if (failure := self._scripted_error(body["model"])) is not None:
            return failure
        messages = body.get("messages") or []
        stamp = {"model": body["model"], "created_at": "2025-10-26T17:15:24.097767Z"}
        if not messages:
            return web.json_response(
                {
                    **stamp,
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load",
                    "done": True,
                }
            )
        if body["model"] == "tool-model" and messages[-1].get("role") != "tool":
            call = {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
            message = {"role": "assistant", "content": "", "tool_calls": [call]}
            final = {**stamp, "message": message, "done": True, **self.metrics(10, 5)}
            if body.get("stream") is False:
                return web.json_response(final)
            return await self._ndjson(request, [final])
        if isinstance(body.get("format"), dict):
            if self.structured_gate is not None:
                await self.structured_gate.wait()
            text = self.structured
        else:
            text = self.answer(messages)
        words = text.split(" ")
        final_metrics = self.metrics(self._prompt_tokens(body), len(words))
        if body.get("stream") is False:
            message = {"role": "assistant", "content": text}
            return web.json_response({**stamp, "message": message, "done": True, **final_metrics})
        frames: list[dict[str, Any]] = [
            {
                **stamp,
                "message": {
                    "role": "assistant",
                    "content": w + (" " if i < len(words) - 1 else ""),
                },
                "done": False,
            }
            for i, w in enumerate(words)
        ]
        if body["model"] == "disconnect":
            return await self._ndjson(request, frames[:2], drop=True)
        if body["model"] == "midstream-error":
            frames = [*frames[:2], {"error": "an error was encountered while running the model"}]
        else:
            frames.append(
                {
                    **stamp,
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    **final_metrics,
                }
            )
        return await self._ndjson(request, frames)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        if (faulty := await self._fault(request)) is not None:
            return faulty
        body = await request.json()
        if (failure := self._scripted_error(body["model"])) is not None:
            return failure
        stamp = {"model": body["model"], "created_at": "2025-10-26T17:15:24.097767Z"}
        prompt = body.get("prompt")
        if not prompt:
            return web.json_response({**stamp, "response": "", "done": True, "done_reason": "load"})
        text = f"Noted: {prompt}"
        final_metrics = self.metrics(self._prompt_tokens(body), len(text.split()))
        if body.get("stream") is False:
            return web.json_response(
                {**stamp, "response": text, "done": True, "context": [1, 2], **final_metrics}
            )
        words = text.split(" ")
        frames: list[dict[str, Any]] = [
            {**stamp, "response": w + (" " if i < len(words) - 1 else ""), "done": False}
            for i, w in enumerate(words)
        ]
        frames.append({**stamp, "response": "", "done": True, "context": [1, 2], **final_metrics})
        return await self._ndjson(request, frames)

    async def v1_chat(self, request: web.Request) -> web.StreamResponse:
        if (faulty := await self._fault(request)) is not None:
            return faulty
        body = await request.json()
        if body["model"] == "missing":
            error = {"message": "model 'missing' not found", "type": "api_error", "code": None}
            return web.json_response({"error": error}, status=404)
        if body["model"] == "overflow":
            error = {
                "message": "the input length exceeds the context length",
                "type": "invalid_request_error",
            }
            return web.json_response({"error": error}, status=400)
        if body["model"] == "tool-model" and body["messages"][-1].get("role") != "tool":
            return await v1_tool_call(request, body)
        wanted = body.get("response_format") or {}
        if wanted.get("type") == "json_schema" and self.refuse_json_schema:
            message = (
                "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
                "'input': 'json_schema'}"
            )
            error = {"message": message, "type": "internal_server_error"}
            return web.json_response({"error": error}, status=500)
        schema = (wanted.get("json_schema") or {}).get("schema") or wanted.get("schema")
        text = self.structured if schema else self.answer(body["messages"])
        created = int(time.time())
        base = {
            "id": "chatcmpl-1",
            "created": created,
            "model": body["model"],
            "system_fingerprint": "fp_ollama",
        }
        usage = {
            "prompt_tokens": self._prompt_tokens(body),
            "completion_tokens": len(text.split()),
            "total_tokens": 0,
        }
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word + (" " if i < len(words) - 1 else "")}
            chunk = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if body["model"] == "midstream-error" and i == 1:
                error = {"error": {"message": "model crashed", "type": "api_error"}}
                await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                await response.write_eof()
                return response
        last = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
            ],
        }
        await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await response.write(b"data: " + json.dumps(tail).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # --- OpenAI Responses and Anthropic Messages (testing.event_streams) ------------------
    def _event_answer(self, model: str, messages: list[dict[str, Any]], prompt: str) -> ev.Answer:
        """What the fake says to a Responses or Messages request (as chat ``messages``)."""
        tokens = len(prompt.split())
        if model == "tool-model" and (not messages or messages[-1].get("role") != "tool"):
            return ev.Answer([], tool=("get_weather", '{"city": "Tokyo"}'), input_tokens=tokens)
        words = self.answer(messages).split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        thinking = "Let me think about it." if model == "thinker" else ""
        return ev.Answer(pieces, thinking=thinking, input_tokens=tokens)

    async def _event_stream(
        self, request: web.Request, events: list[ev.Event], broken: ev.Event | None
    ) -> web.StreamResponse:
        """Stream ``events``; for ``midstream-error`` / ``disconnect`` models, stop after the
        second text delta with ``broken`` or by cutting the connection."""
        model = (await request.json())["model"]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        deltas = 0
        for frame in ev.sse(events):
            await response.write(frame)
            deltas += b'"text_delta"' in frame or b"output_text.delta" in frame[:40]
            if deltas == 2 and model == "midstream-error" and broken is not None:
                await response.write(ev.sse([broken])[0])
                break
            if deltas == 2 and model == "disconnect":
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.abort()
                return response
        await response.write_eof()
        return response

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses``: a response object, or its event stream."""
        body = await request.json()
        if body["model"] == "missing":
            error = {"message": "model 'missing' not found", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "model_not_found"}}, status=404)
        answer = self._event_answer(body["model"], responses_messages(body), json.dumps(body))
        if not body.get("stream"):
            return web.json_response(ev.response_object(body["model"], answer))
        events = ev.responses_events(body["model"], answer)
        return await self._event_stream(request, events, ev.responses_error("model crashed"))

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``: a message, or its event stream."""
        body = await request.json()
        if body["model"] == "missing":
            error = {"type": "not_found_error", "message": "model 'missing' not found"}
            return web.json_response({"type": "error", "error": error}, status=404)
        answer = self._event_answer(body["model"], anthropic_messages(body), json.dumps(body))
        if not body.get("stream"):
            return web.json_response(ev.anthropic_message(body["model"], answer))
        events = ev.anthropic_events(body["model"], answer)
        return await self._event_stream(request, events, ev.anthropic_error("Overloaded"))


def _text(content: Any, kinds: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    parts = [p for p in content or [] if isinstance(p, dict) and p.get("type") in kinds]
    return " ".join(str(p.get("text", "")) for p in parts)


def responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses request as chat messages (instructions first, function outputs as tools)."""
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given or []
    messages = (
        [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    )
    for item in items:
        if item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": item.get("output")})
        elif item.get("type", "message") == "message":
            text = _text(item.get("content"), ("input_text", "output_text"))
            messages.append({"role": item.get("role"), "content": text})
    return messages


def anthropic_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Messages request as chat messages (system first, tool-result turns as tools)."""
    system = body.get("system")
    messages = [{"role": "system", "content": _text(system, ("text",))}] if system else []
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if blocks and all(b.get("type") == "tool_result" for b in blocks):
            messages.append({"role": "tool", "content": _text(blocks[0].get("content"), ("text",))})
        else:
            messages.append({"role": message["role"], "content": _text(content, ("text",))})
    return messages


async def v1_tool_call(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """An OpenAI tool call (``get_weather``), streamed in two argument fragments or whole."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
    }
    base = {"id": "chatcmpl-2", "created": int(time.time()), "model": body["model"]}
    if not body.get("stream"):
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return web.json_response({**base, "object": "chat.completion", "choices": [choice]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    pieces = [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": '},
        },
        {"index": 0, "function": {"arguments": '"Tokyo"}'}},
    ]
    for piece in pieces:
        delta = {"role": "assistant", "tool_calls": [piece]}
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    await response.write(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
    await response.write_eof()
    return response


async def _serve_forever(port: int) -> None:
    fake = FakeOllama()
    await fake.start_on(port)
    print(f"fake Ollama on {fake.url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve_forever(int(sys.argv[1]) if len(sys.argv) > 1 else 11434))
