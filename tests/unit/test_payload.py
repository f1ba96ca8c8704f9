"""Payload encoding matches JSON.stringify and refuses what is not JSON."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphile_py import PayloadError
from graphile_py.jobs import encode_payload, encode_payloads

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_round_trips(value: object) -> None:
    encoded = encode_payload(value)
    assert json.loads(encoded) == ({} if value is None else value)


def test_compact_and_unicode_kept() -> None:
    assert encode_payload({"a": [1, 2], "é": "ü"}) == '{"a":[1,2],"é":"ü"}'
    assert encode_payload(None) == "{}"


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1, 2}, object(), b"bytes", {"x": {1}}])
def test_refuses_non_json(bad: object) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_payload(bad)


def test_refuses_cycles_and_oversize() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(PayloadError):
        encode_payload(cyclic)
    with pytest.raises(PayloadError, match="over the limit"):
        encode_payload("x" * 100, max_bytes=50)


@given(st.lists(json_values, max_size=8))
def test_bulk_encoding_equals_one_by_one(values: list[object]) -> None:
    one_by_one = "[" + ",".join(encode_payload(value) for value in values) + "]"
    assert encode_payloads(values) == one_by_one


def test_bulk_encoding_names_the_bad_payload_and_the_oversized_one() -> None:
    with pytest.raises(PayloadError, match="set"):
        encode_payloads([{"ok": 1}, None, {"bad": {1, 2}}])
    # Small enough together? Then each is small enough; otherwise each is checked.
    assert encode_payloads([{"a": 1}, {"b": 2}], max_bytes=16) == '[{"a":1},{"b":2}]'
    assert encode_payloads([{"a": 1}, {"b": 2}], max_bytes=7) == '[{"a":1},{"b":2}]'
    with pytest.raises(PayloadError, match="over the limit of 7"):
        encode_payloads([{"a": 1}, {"bb": 22}], max_bytes=7)
