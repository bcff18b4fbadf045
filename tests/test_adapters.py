"""Pure parts of the wire-format adapters: the SSE parser, the tool-call merger, the adapters'
request and reply sides, and the re-framing of OpenAI replies for Ollama clients."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.adapters import ADAPTERS, OLLAMA_CHAT, OLLAMA_GENERATE, OPENAI_CHAT, Reply
from proxy.openai_upstream import to_openai_request
from proxy.reframe import OllamaFramer
from proxy.sse import DONE, SseParser, merge_tool_call


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events
    )


@given(size=st.integers(min_value=1, max_value=40))
def test_sse_parser_is_independent_of_chunking(size: int):
    raw = b": keep-alive\r\nevent: x\r\n" + sse({"a": "é"}, {"b": 2}, DONE).replace(b"\n", b"\r\n")
    parser = SseParser()
    out = [d for i in range(0, len(raw), size) for d in parser.feed(raw[i : i + size])]
    assert out + parser.close() == ['{"a": "\\u00e9"}', '{"b": 2}', DONE]


def test_sse_parser_close_returns_an_unterminated_last_line():
    parser = SseParser()
    assert parser.feed(b"data: 1\n\ndata: 2") == ["1"]
    assert parser.close() == ["2"]
    assert parser.close() == []


def test_merge_tool_call_keeps_parallel_calls_apart():
    calls: list[dict[str, Any]] = []
    for delta in (
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y"'}},
        {"index": 0, "function": {"arguments": '{"x": 1}'}},
        {"index": 1, "function": {"arguments": ": 2}"}},
    ):
        merge_tool_call(calls, delta)
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("a", '{"x": 1}'),
        ("b", '{"y": 2}'),
    ]


def test_merge_tool_call_appends_whole_calls_and_takes_object_arguments():
    calls: list[dict[str, Any]] = []
    whole = {"id": "c", "function": {"name": "f", "arguments": "{}"}}
    merge_tool_call(calls, whole)
    merge_tool_call(calls, {"index": 1, "function": {"name": "g", "arguments": {"k": 1}}})
    assert calls[0] is whole
    assert calls[1]["function"] == {"name": "g", "arguments": {"k": 1}}


def test_the_table_routes_each_format_to_its_path():
    assert {a.path: kind for kind, a in ADAPTERS.items()} == {
        "/api/chat": "ollama_chat",
        "/api/generate": "ollama_generate",
        "/v1/chat/completions": "openai_chat",
        "/v1/responses": "openai_responses",
        "/v1/messages": "anthropic_messages",
    }


def test_sampling_goes_where_each_format_keeps_it_and_never_overrides_the_client():
    knobs = {"temperature": 0.71234, "top_p": 0.9}
    chat = OLLAMA_CHAT.with_sampling({"options": {"temperature": 0.1}}, knobs)
    assert chat["options"] == {"temperature": 0.1, "top_p": 0.9}
    openai = OPENAI_CHAT.with_sampling({"top_p": 0.5}, knobs)
    assert (openai["temperature"], openai["top_p"]) == (0.712, 0.5)


def test_recall_query_joins_a_dependent_turn_with_the_previous_one_and_generate_never():
    body = {
        "messages": [
            {"role": "user", "content": "Tell me about Ann's trip"},
            {"role": "user", "content": "And then?"},
        ],
        "prompt": "And then?",
    }
    assert OPENAI_CHAT.recall_query(body, "And then?") == "Tell me about Ann's trip\nAnd then?"
    assert OLLAMA_GENERATE.recall_query(body, "And then?") == "And then?"
    assert OLLAMA_GENERATE.earlier_user_turns(body) == frozenset()
    assert OLLAMA_CHAT.earlier_user_turns(body) == {"Tell me about Ann's trip"}


def test_openai_absorb_reads_a_whole_completion():
    reply = Reply()
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {"content": "hi", "reasoning_content": "hmm", "tool_calls": [call]}
    completion = {
        "choices": [
            {"index": 1, "message": {"content": "other"}},
            {"index": 0, "message": message, "finish_reason": "tool_calls"},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    OPENAI_CHAT.absorb(reply, completion)
    assert (reply.content, reply.thinking, reply.tool_calls, reply.done) == (
        "hi",
        "hmm",
        [call],
        True,
    )
    assert reply.metrics == {"done_reason": "tool_calls", "prompt_eval_count": 5, "eval_count": 2}


def test_a_frame_of_another_shape_counts_as_unparsed():
    reply = Reply()
    OPENAI_CHAT.absorb(reply, {"choices": "nope"})
    OLLAMA_CHAT.absorb(reply, {"message": 3})
    assert (reply.unparsed, reply.content) == (2, "")


def test_ollama_generate_absorb_keeps_final_metrics():
    reply = Reply()
    OLLAMA_GENERATE.absorb(reply, {"response": "a", "done": False})
    OLLAMA_GENERATE.absorb(reply, {"response": "", "done": True, "eval_count": 1, "x": 9})
    assert (reply.content, reply.done, reply.metrics) == ("a", True, {"eval_count": 1})


def test_generate_translates_raw_mode_to_completions_and_names_what_it_drops():
    body = {"model": "m", "prompt": "p", "raw": True, "images": ["x"], "think": True}
    t = to_openai_request(OLLAMA_GENERATE, {**body, "format": "json", "stream": False})
    assert (t.path, t.body, t.stream) == (
        "/v1/completions",
        {"model": "m", "stream": False, "prompt": "p", "response_format": {"type": "json_object"}},
        False,
    )
    assert t.unsupported == ["images", "think"]
    plain = to_openai_request(OLLAMA_GENERATE, {"model": "m", "prompt": "p", "system": "s"})
    assert plain.body["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "p"},
    ]


def test_framer_reframes_a_stream_for_ollama_chat():
    framer = OllamaFramer(OLLAMA_CHAT, "m")
    first = framer.chunk({"choices": [{"index": 0, "delta": {"content": "He"}}]})
    assert first is not None and first["message"] == {"role": "assistant", "content": "He"}
    fragment = {"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert framer.chunk({"choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]}) is None
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    assert framer.chunk(finish) is None
    framer.chunk({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    final = framer.final()
    assert final["message"]["tool_calls"] == [{"function": {"name": "f", "arguments": {"a": 1}}}]
    assert (final["done"], final["done_reason"], final["prompt_eval_count"]) == (True, "stop", 3)
    assert final["eval_count"] == 4


def test_framer_reframes_a_whole_completion_for_ollama_generate():
    framer = OllamaFramer(OLLAMA_GENERATE, "m")
    whole = framer.whole({"choices": [{"index": 0, "text": "raw out", "finish_reason": "length"}]})
    assert (whole["response"], whole["done_reason"], "message" in whole) == (
        "raw out",
        "length",
        False,
    )
