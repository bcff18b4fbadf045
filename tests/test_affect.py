"""Affect levels and knobs: bounded for any event sequence, moving the documented way."""

from __future__ import annotations

import math

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.affect import DIRECTIONS, KNOBS, LEVELS, Affect, resolve_ranges, text_signals
from memory.config import AffectConfig, KnobsConfig, MemoryConfig
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(learning: bool = True) -> tuple[Affect, Clock]:
    clock = Clock()
    config = AffectConfig(learning=learning, learning_rate=1.0)
    return Affect(config, resolve_ranges(KnobsConfig(), MemoryConfig()), clock), clock


finite_or_wild = st.one_of(
    st.floats(min_value=-10, max_value=10),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308]),
)
events = st.lists(
    st.tuples(
        st.sampled_from(["pulse", "outcome", "recalled", "text", "wait"]),
        st.sampled_from(LEVELS),
        finite_or_wild,
        st.floats(min_value=0, max_value=1e7),
        st.text(max_size=80),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events=events, learning=st.booleans())
def test_levels_and_knobs_stay_bounded_for_any_events(events, learning: bool):
    affect, clock = make(learning)
    ranges = affect.ranges
    for kind, level, value, wait_s, text in events:
        if kind == "pulse":
            affect.pulse("u", {level: value})
        elif kind == "outcome":
            affect.outcome("u", value)
        elif kind == "recalled":
            affect.recalled("u", value)
        elif kind == "text":
            affect.pulse("u", text_signals(text))
        else:
            clock.now += wait_s
        state = affect.state("u")
        assert all(0.0 <= state.levels[name] <= 1.0 for name in LEVELS)
        knobs = affect.knobs("u")
        assert set(knobs) == set(KNOBS)
        for name, value_now in knobs.items():
            assert ranges[name].lo <= value_now <= ranges[name].hi
        for knob, weights in state.weights.items():
            for name, weight in weights.items():
                assert math.isfinite(weight)
                assert abs(weight) <= 2 * abs(DIRECTIONS[knob][name]) + 1e-12


def test_stress_recalls_less_and_novelty_recalls_more():
    affect, _ = make()
    rest = affect.knobs("calm")
    affect.pulse("stressed", {"stress": 0.9})
    stressed = affect.knobs("stressed")
    affect.pulse("curious", {"novelty": 0.9})
    curious = affect.knobs("curious")
    assert stressed["k"] < rest["k"] < curious["k"]
    assert stressed["max_tokens"] < rest["max_tokens"] < curious["max_tokens"]
    assert stressed["min_similarity"] > rest["min_similarity"] > curious["min_similarity"]
    assert stressed["temperature"] < rest["temperature"] < curious["temperature"]
    assert rest["k"] == MemoryConfig().k  # at baseline the knobs rest at the configured values


def test_levels_decay_back_with_their_half_life():
    affect, clock = make()
    affect.pulse("u", {"stress": 1.0})
    assert affect.state("u").levels["stress"] == 1.0
    clock.now += 300.0  # stress half-life
    assert abs(affect.state("u").levels["stress"] - (0.1 + 0.9 / 2)) < 1e-9
    clock.now += 10_000.0
    assert abs(affect.state("u").levels["stress"] - 0.1) < 1e-6


def test_learning_is_bounded_and_switchable():
    affect, _ = make(learning=True)
    frozen, _ = make(learning=False)
    for a in (affect, frozen):
        a.pulse("u", {"stress": 0.8})
        for _ in range(500):
            a.outcome("u", 1.0)
            a.outcome("u", 0.0)
    learned = affect.state("u").weights["k"]["stress"]
    assert -1.0 <= learned <= 0.0  # never flips the documented direction (-0.5)
    assert frozen.state("u").weights["k"]["stress"] == -0.5


def test_scopes_are_separate_and_bounded_in_number():
    clock = Clock()
    affect = Affect(
        AffectConfig(max_scopes=3), resolve_ranges(KnobsConfig(), MemoryConfig()), clock
    )
    affect.pulse("alice", {"stress": 0.9})
    assert affect.state("bob").levels["stress"] == 0.1
    for user in ("c", "d", "e"):
        affect.state(user)
    assert affect.state("alice").levels["stress"] == 0.1  # evicted, starts afresh


async def test_shouting_user_is_seen_by_the_affect_endpoint(proxy: RunningProxy):
    await proxy.ollama("alice").chat(
        model="m", messages=[{"role": "user", "content": "EVERYTHING IS BROKEN!!! URGENT!!!"}]
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/memory/affect", params={"user": "alice"}) as r:
            alice = await r.json()
        async with http.get(f"{proxy.url}/memory/affect", params={"user": "bob"}) as r:
            bob = await r.json()
    assert alice["levels"]["stress"] > 0.3 and bob["levels"]["stress"] == 0.1
    assert alice["knobs"]["k"] < bob["knobs"]["k"]


async def test_sampling_knobs_fill_only_unset_options(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy(knobs={"sampling": True})
    client = proxy.ollama("alice")
    await client.chat(
        model="m", messages=[{"role": "user", "content": "hi"}], options={"temperature": 0.05}
    )
    options = fake.calls("/api/chat")[-1].json()["options"]
    assert options["temperature"] == 0.05 and 0.5 <= options["top_p"] <= 1.0
    async with aiohttp.ClientSession() as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": 0.3}
        async with http.post(f"{proxy.url}/v1/chat/completions", json=body) as r:
            assert r.status == 200
    sent = fake.calls("/v1/chat/completions")[-1].json()
    assert sent["top_p"] == 0.3 and 0.2 <= sent["temperature"] <= 1.0


async def test_sampling_is_untouched_by_default(proxy: RunningProxy, fake: FakeOllama):
    await proxy.ollama("alice").chat(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "options" not in fake.calls("/api/chat")[-1].json()
