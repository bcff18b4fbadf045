"""Pure functions: injection, query extraction, the tee, block rendering within budget."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.config import DEFAULT_TEMPLATE
from memory.recall.render import render_block
from memory.tokens import count_tokens
from memory.types import MemoryHit
from proxy.adapters import ADAPTERS
from proxy.tee import Tee


def test_inject_inserts_system_before_first_user_message():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": 1}
    out = ADAPTERS["ollama_chat"].inject(body, "BLOCK")
    assert out["messages"] == [{"role": "system", "content": "BLOCK"}, body["messages"][0]]
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # input untouched
    assert out["x"] == 1


def test_inject_merges_into_openai_parts_and_developer_messages():
    parts = [{"type": "text", "text": "Be brief."}]
    body = {"messages": [{"role": "developer", "content": parts}, {"role": "user", "content": "q"}]}
    out = ADAPTERS["openai_chat"].inject(body, "BLOCK")
    assert out["messages"][0]["content"] == [*parts, {"type": "text", "text": "BLOCK"}]
    assert out["messages"][1] == {"role": "user", "content": "q"}


def test_inject_generate_uses_system():
    assert ADAPTERS["ollama_generate"].inject({"prompt": "p"}, "B")["system"] == "B"
    assert (
        ADAPTERS["ollama_generate"].inject({"prompt": "p", "system": "S"}, "B")["system"]
        == "S\n\nB"
    )


def test_last_user_turn_rules():
    assert ADAPTERS["ollama_chat"].user_turn({"messages": []}) is None
    assert ADAPTERS["ollama_generate"].user_turn({"prompt": "p", "raw": True}) is None
    assert ADAPTERS["ollama_generate"].user_turn({"prompt": ""}) is None
    prefill = {
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    }
    assert ADAPTERS["ollama_chat"].user_turn(prefill) is None
    tool_loop = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w"}}]},
            {"role": "tool", "content": "sunny"},
        ]
    }
    assert ADAPTERS["ollama_chat"].user_turn(tool_loop) == "weather?"
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}]}]}
    assert ADAPTERS["openai_chat"].user_turn(parts) == "see"


def feed_in_pieces(tee: Tee, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        tee.feed(data[start : start + size])


@given(size=st.integers(min_value=1, max_value=64))
def test_tee_assembles_ndjson_whatever_the_chunking(size: int):
    frames = [
        {"message": {"role": "assistant", "content": "Hé", "thinking": "hmm"}, "done": False},
        {"message": {"role": "assistant", "content": "llo"}, "done": False},
        {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "eval_count": 2,
            "prompt_eval_count": 9,
            "total_duration": 5,
        },
    ]
    tee = Tee(ADAPTERS["ollama_chat"], "ndjson")
    feed_in_pieces(
        tee, b"".join(json.dumps(f, ensure_ascii=False).encode() + b"\n" for f in frames), size
    )
    reply = tee.close()
    assert (reply.content, reply.thinking, reply.done) == ("Héllo", "hmm", True)
    assert reply.metrics == {
        "done_reason": "stop",
        "eval_count": 2,
        "prompt_eval_count": 9,
        "total_duration": 5,
    }


def test_tee_merges_openai_streamed_tool_call_fragments():
    chunks = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Tokyo"}'}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}},
    ]
    raw = (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )
    tee = Tee(ADAPTERS["openai_chat"], "sse")
    feed_in_pieces(tee, raw, 7)
    reply = tee.close()
    assert reply.tool_calls == [
        {
            "index": 0,
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
        }
    ]
    assert reply.metrics == {"done_reason": "tool_calls", "prompt_eval_count": 11, "eval_count": 4}


def test_tee_records_midstream_error_and_survives_garbage():
    tee = Tee(ADAPTERS["ollama_generate"], "ndjson")
    tee.feed(b'{"response": "a", "done": false}\nnot json\n{"error": "boom"}\n')
    reply = tee.close()
    assert (reply.content, reply.error, reply.unparsed, reply.done) == ("a", "boom", 1, False)


def test_tee_whole_json_body():
    tee = Tee(ADAPTERS["openai_chat"], "json")
    body = {
        "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    feed_in_pieces(tee, json.dumps(body).encode(), 5)
    reply = tee.close()
    assert (reply.content, reply.done, reply.metrics["eval_count"]) == ("hi", True, 1)


hit_texts = st.lists(st.text(min_size=0, max_size=400), min_size=0, max_size=12)


@settings(max_examples=60, deadline=None)
@given(texts=hit_texts, budget=st.integers(min_value=0, max_value=400))
def test_render_block_never_exceeds_budget(texts: list[str], budget: int):
    hits = [MemoryHit(id=str(i), text=t, metadata={"event_at": 1.7e9}) for i, t in enumerate(texts)]
    block = render_block(hits, DEFAULT_TEMPLATE, budget)
    assert block.tokens == (count_tokens(block.text) if block.text else 0)
    assert block.tokens <= budget
    assert len(set(block.ids)) == len(block.ids)
    assert [h.id for h in hits if h.id in block.ids] == list(block.ids)  # rank order kept
    if block.text:
        assert "2023-11-14" in block.text  # the event date is shown


def test_render_block_skips_a_too_long_memory_but_keeps_later_short_ones():
    hits = [MemoryHit("long", "word " * 500, {}), MemoryHit("short", "short fact", {})]
    block = render_block(hits, DEFAULT_TEMPLATE, 150)
    assert block.ids == ("short",)
