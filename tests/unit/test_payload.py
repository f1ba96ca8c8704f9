"""Payload encoding matches JSON.stringify and refuses what is not JSON."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphile_py import PayloadError
from graphile_py.jobs import encode_payload

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
