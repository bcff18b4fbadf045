"""The write path's pure reinforcement plan (memory/write/reinforce.py)."""

from __future__ import annotations

import json

import numpy as np

from memory.types import Exchange, MemoryHit, Scope
from memory.write.reinforce import REINFORCE_STEP, memory_id, plan_batch, reinforces
from memory.write.writer import backoff_s


def exchange(text: str, reply: str = "Noted.", at: float = 1.0) -> Exchange:
    return Exchange(Scope("ann"), "chat", "m", text, reply, started_at=at)


def test_a_new_exchange_is_planned_as_a_new_memory_and_a_repeat_reinforces():
    fresh, again = exchange("I live in Lisbon now"), exchange("I live in Lisbon now", at=2.0)
    stored = MemoryHit(
        "old", again.text, {"strength": 0.5, "reinforcements": 1, "provenance": "[]"}
    )
    vector = np.array([1.0, 0.0], np.float32)
    plan = plan_batch([fresh, again], [None, None], [0.7, 0.7], [None, (stored, vector)], "e", 0.4)
    assert plan.ids == [memory_id(fresh)] and plan.rows == [0]
    assert plan.written == [memory_id(fresh), "old"] and plan.reinforced == 1
    update = plan.updates["old"]
    assert update["strength"] == 0.5 + REINFORCE_STEP and update["reinforcements"] == 2
    assert json.loads(update["provenance"]) == [again.id] and update["dormant"] is False
    change = plan.index_change(np.eye(2, dtype=np.float32))
    assert change is not None and [h.id for h in change[0]] == [memory_id(fresh), "old"]


def test_a_replayed_row_is_not_reinforced_twice():
    again = exchange("I live in Lisbon now")
    stored = MemoryHit("old", again.text, {"provenance": json.dumps([again.id])})
    target = (stored, np.array([1.0, 0.0], np.float32))
    plan = plan_batch([again], [None], [0.7], [target], "e", 0.4)
    assert plan.written == ["old"] and not plan.updates and plan.reinforced == 0
    assert plan.index_change(np.eye(1, 2, dtype=np.float32)) is None


def test_reinforcement_needs_similarity_polarity_and_the_same_words():
    said = exchange("the 823rd pebble is red")
    hit = MemoryHit("m", said.text, {"polarity": "attractor"})
    assert reinforces(hit, 0.95, said, "attractor", 0.9)
    assert reinforces(hit, 0.95, said, None, 0.9)  # unscored: takes the memory's polarity
    assert not reinforces(hit, 0.85, said, "attractor", 0.9)
    assert not reinforces(hit, 0.95, said, "repulsor", 0.9)
    other = MemoryHit("n", exchange("the 537th pebble is red").text, {"polarity": "attractor"})
    assert not reinforces(other, 0.99, said, "attractor", 0.9)


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_s(n, 1.0, 5.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
