"""MemoryRecord: the one decoder and encoder of stored memory metadata."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.record import (
    NEUTRAL_SYMBIOSIS,
    SCHEMA_VERSION,
    MemoryRecord,
    encoded,
    provenance,
    signals_of,
)
from memory.types import MemoryHit

texts = st.text(max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=10**6)
ids = st.lists(st.text(min_size=1, max_size=8), max_size=4).map(tuple)
scalars = st.one_of(texts, st.integers(), floats, st.booleans())
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.sampled_from([1, 2, 3]),
    "user": texts,
    "session": texts,
    "tier": st.sampled_from(["session", "user", "shared"]),
    "speaker": texts,
    "exchange_id": texts,
    "embedder": texts,
    "event_at": st.one_of(floats, st.integers()),
    "created_at": floats,
    "thinking_chars": counts,
    "strength": st.floats(0, 1),
    "access_count": counts,
    "last_access_at": floats,
    "reinforcements": counts,
    "provenance": ids,
    "importance": st.floats(0, 1),
    "symbiosis": st.floats(0, 1),
    "symbiosis_signals": st.dictionaries(st.text(max_size=8), st.floats(0, 1), max_size=4),
    "symbiosis_provisional": st.booleans(),
    "polarity": st.sampled_from(["attractor", "repulsor"]),
    "phase": st.sampled_from(["free", "screened"]),
    "dormant": st.booleans(),
    "uses_at_cycle": counts,
    "consolidated_into": texts,
    "supporters": ids,
    "dropped": st.sampled_from(["", "unsupported", "contradicted"]),
}
records = st.fixed_dictionaries({}, optional=FIELDS).map(
    lambda f: MemoryRecord.create("m", "t", **f)
)
metadata = st.dictionaries(
    st.sampled_from([*FIELDS, "done_reason", "eval_count", "model"]), scalars, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(records)
def test_a_record_round_trips_through_its_stored_metadata(record: MemoryRecord):
    stored = record.to_metadata()
    assert all(isinstance(v, str | int | float | bool) for v in stored.values())
    assert MemoryRecord.from_metadata(record.id, record.text, stored) == record


@settings(max_examples=300, deadline=None)
@given(metadata)
def test_any_stored_metadata_is_written_back_unchanged(meta: dict[str, Any]):
    record = MemoryRecord.from_metadata("m", "t", meta)
    out = record.to_metadata()
    assert out == meta and {k: type(v) for k, v in out.items()} == {
        k: type(v) for k, v in meta.items()
    }


def test_version_1_and_2_records_read_with_the_defaults():
    v1 = MemoryRecord.from_metadata(
        "m", "User: hi", {"schema_version": 1, "user": "ann", "created_at": 5.0}
    )
    assert (v1.strength, v1.access_count, v1.provenance, v1.speaker) == (1.0, 0, (), None)
    assert (v1.symbiosis, v1.polarity, v1.repulsor, v1.scored) == (
        NEUTRAL_SYMBIOSIS,
        None,
        False,
        False,
    )
    assert (v1.importance, v1.reinforcements, v1.dormant, v1.screened) == (1.0, 0, False, False)
    assert v1.event_time == 5.0 and v1.last_used == 5.0 and v1.uses == 0
    v2 = MemoryRecord.from_metadata(
        "m",
        "t",
        {
            "schema_version": 2,
            "event_at": 3.0,
            "created_at": 5.0,
            "speaker": "Ann",
            "strength": 0.5,
            "access_count": 2,
            "last_access_at": 9.0,
            "valence": 0.0,
            "provenance": json.dumps(["e1"]),
        },
    )
    assert (v2.event_time, v2.last_used, v2.uses, v2.provenance) == (3.0, 9.0, 2, ("e1",))
    assert not v2.scored and v2.symbiosis == NEUTRAL_SYMBIOSIS and v2.symbiosis_signals == {}
    assert MemoryRecord.from_metadata("m", "t", {}).event_time is None


def test_values_that_do_not_decode_keep_their_stored_form():
    meta = {"provenance": "e1", "access_count": 2.0, "dormant": "yes", "symbiosis": "high"}
    record = MemoryRecord.from_metadata("m", "t", meta)
    assert record.provenance == ("e1",) and record.access_count == 2
    assert record.dormant is False and record.scored and record.symbiosis == NEUTRAL_SYMBIOSIS
    assert record.to_metadata() == meta
    assert provenance(meta) == ["e1"] and signals_of({"symbiosis_signals": "{"}) == {}


def test_merged_sets_stored_keys_and_encoded_writes_what_the_store_takes():
    record = MemoryRecord.create("m", "t", strength=0.4, polarity="repulsor", eval_count=3)
    after = record.merged({**encoded(strength=0.9, provenance=("e1",)), "polarity": None})
    assert (after.strength, after.provenance, after.polarity) == (0.9, ("e1",), "repulsor")
    assert after.to_metadata() == {
        "strength": 0.9,
        "provenance": '["e1"]',
        "polarity": "repulsor",
        "eval_count": 3,
    }
    assert record.merged({"strength": "x"}).strength == 1.0
    assert encoded(schema_version=SCHEMA_VERSION, symbiosis_signals={"b": 1.0, "a": 0.5}) == {
        "schema_version": SCHEMA_VERSION,
        "symbiosis_signals": '{"a": 0.5, "b": 1.0}',
    }


def test_a_hit_decodes_its_record_once_and_keeps_it_with_another_similarity():
    hit = MemoryHit("m", "t", {"strength": 0.5, "tier": "shared"})
    assert hit.record is hit.record and hit.record.tier == "shared"
    moved = hit.with_similarity(0.7)
    assert moved.similarity == 0.7 and moved.record is hit.record
