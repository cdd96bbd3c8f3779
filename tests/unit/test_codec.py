"""soniq.core.codec: the strict JSON check applied to job arguments, and the canonical encoding."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections import OrderedDict
from typing import Any

import pytest

from soniq.core import codec
from soniq.core.codec import NotJSONError, canonical_dumps, check_json


def _nested_lists(levels: int) -> list[Any]:
    """A list holding a list holding ... ``levels`` lists below the outermost one."""
    root: list[Any] = []
    current = root
    for _ in range(levels):
        child: list[Any] = []
        current.append(child)
        current = child
    return root


# -- accepted values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        "ünïcødé ✓",
        0,
        -7,
        10**30,
        1.5,
        -0.0,
        True,
        False,
        None,
        [],
        [1, "two", 3.0, None, True],
        (1, 2, 3),
        {},
        {"a": 1},
        {"outer": {"inner": [1, {"deep": ("x", None)}], "flag": False}},
        OrderedDict([("b", 1), ("a", 2)]),
    ],
    ids=repr,
)
def test_check_json_accepts_json_values(value: Any) -> None:
    check_json(value, "args")  # does not raise


def test_check_json_accepts_nesting_of_exactly_200_levels() -> None:
    check_json(_nested_lists(200), "args")


def test_tuples_are_accepted_and_encoded_as_lists() -> None:
    value = {"pair": (1, 2)}
    check_json(value, "args")
    assert json.loads(codec.dumps(value)) == {"pair": [1, 2]}


# -- refused values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        ({1, 2}, "set is not JSON; pass a list"),
        (frozenset({1}), "frozenset is not JSON; pass a list"),
        (b"raw", "bytes is not JSON; decode it"),
        (bytearray(b"raw"), "bytearray is not JSON"),
        (float("nan"), "is not a JSON number"),
        (float("inf"), "is not a JSON number"),
        (float("-inf"), "is not a JSON number"),
        (datetime.datetime(2024, 1, 2, 3, 4, 5), "pass value.isoformat()"),
        (datetime.date(2024, 1, 2), "pass value.isoformat()"),
        (decimal.Decimal("1.5"), "Decimal is not JSON"),
        (uuid.UUID(int=1), "UUID is not JSON"),
        (object(), "object is not JSON"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_check_json_refuses_non_json_values(value: Any, reason_part: str) -> None:
    with pytest.raises(NotJSONError) as info:
        check_json(value, "args")
    assert info.value.path == "args"
    assert reason_part in info.value.reason
    assert reason_part in str(info.value)
    assert str(info.value).startswith("args: ")


def test_not_json_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="set is not JSON"):
        check_json({1}, "args")


def test_arbitrary_object_with_pk_gets_a_primary_key_hint() -> None:
    class Model:
        pk = 7

    with pytest.raises(NotJSONError, match="pass its primary key"):
        check_json({"user": Model()}, "args")


@pytest.mark.parametrize("key", [1, 1.5, None, ("a", "b"), True])
def test_check_json_refuses_non_string_dict_keys(key: Any) -> None:
    with pytest.raises(NotJSONError) as info:
        check_json({"mapping": {key: "value"}}, "args")
    assert info.value.path == "args['mapping']"
    assert "JSON keys are strings" in info.value.reason
    assert type(key).__name__ in info.value.reason


def test_check_json_refuses_nesting_deeper_than_200_levels() -> None:
    with pytest.raises(NotJSONError, match="nested more than 200 levels deep"):
        check_json(_nested_lists(201), "args")


def _nested_dicts(levels: int, leaf: Any) -> dict[str, Any]:
    """``{"k": {"k": ... leaf}}``: ``leaf`` ``levels`` dicts below the outermost one."""
    root: dict[str, Any] = {}
    current = root
    for _ in range(levels - 1):
        child: dict[str, Any] = {}
        current["k"] = child
        current = child
    current["k"] = leaf
    return root


@pytest.mark.parametrize("leaf", [1, None, "x", 1.5])
def test_a_leaf_counts_for_the_nesting_limit_whatever_its_type(leaf: Any) -> None:
    check_json(_nested_dicts(200, leaf), "args")
    with pytest.raises(NotJSONError, match="nested more than 200 levels deep") as info:
        check_json(_nested_dicts(201, leaf), "args")
    assert info.value.path == "args" + "['k']" * 201


def test_deep_nesting_does_not_hit_the_recursion_limit() -> None:
    with pytest.raises(NotJSONError, match="nested more than 200 levels deep"):
        check_json(_nested_lists(5000), "args")


# -- error paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"items": [1, 2, {3}]}, "args['items'][2]"),
        ({"when": datetime.datetime(2024, 1, 1)}, "args['when']"),
        ({"a": {"b": [0, (1, b"x")]}}, "args['a']['b'][1][1]"),
        ([float("nan")], "args[0]"),
        ({"it's": {1}}, """args["it's"]"""),
    ],
)
def test_not_json_error_path_names_the_location(value: Any, path: str) -> None:
    with pytest.raises(NotJSONError) as info:
        check_json(value, "args")
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


def test_path_starts_from_the_given_root() -> None:
    with pytest.raises(NotJSONError) as info:
        check_json({"x": {1}}, "args_list[3]")
    assert info.value.path == "args_list[3]['x']"


# -- encodings -------------------------------------------------------------------------------


def test_canonical_dumps_is_independent_of_key_order() -> None:
    first = {"b": 1, "a": {"y": [1, 2], "x": None}, "c": "z"}
    second = {"c": "z", "a": {"x": None, "y": [1, 2]}, "b": 1}
    assert canonical_dumps(first) == canonical_dumps(second)
    assert canonical_dumps(first) == '{"a":{"x":null,"y":[1,2]},"b":1,"c":"z"}'


def test_canonical_dumps_keeps_list_order_and_distinguishes_values() -> None:
    assert canonical_dumps([1, 2]) != canonical_dumps([2, 1])
    assert canonical_dumps({"a": 1}) != canonical_dumps({"a": "1"})


def test_dumps_is_compact_and_keeps_non_ascii() -> None:
    assert codec.dumps({"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'


def test_dumps_refuses_nan_as_a_safety_net() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        codec.dumps(float("nan"))


def test_loads_round_trips_and_maps_none_to_none() -> None:
    value = {"a": [1, "b", None, True, 2.5]}
    assert codec.loads(codec.dumps(value)) == value
    assert codec.loads(codec.dumps(value).encode()) == value
    assert codec.loads(None) is None


def test_large_floats_are_written_positionally_so_jsonb_keeps_them_floats() -> None:
    import json

    from soniq.core.codec import dumps

    value = {"big": 1e20, "neg": -2.5e16, "tiny": 1e-20, "text": "1e+20 stays text"}
    text = dumps(value)
    assert "e+" not in text.replace("1e+20 stays text", "")
    assert '"big":100000000000000000000.0' in text
    assert json.loads(text) == value
    assert all(isinstance(json.loads(text)[key], float) for key in ("big", "neg", "tiny"))
