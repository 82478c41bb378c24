"""Namespaces: parsing, validation, exact keys, and templates filled from a run's config."""

from __future__ import annotations

import json

import pytest

from langdream.errors import LangDreamError, NamespaceError
from langdream.namespace import (
    format_namespace,
    namespace_from_key,
    namespace_key,
    parse_namespace,
    resolve_namespace,
)

# -- parse_namespace ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acme", ("acme",)),
        ("acme/user-42", ("acme", "user-42")),
        ("  acme/user-42  ", ("acme", "user-42")),  # the whole string is stripped, not the labels
        (["acme", "user-42"], ("acme", "user-42")),
        (("acme", "user-42"), ("acme", "user-42")),
        ('["acme", "user-42"]', ("acme", "user-42")),
        ('  ["acme"]', ("acme",)),
        ("ünïcode/ユーザー", ("ünïcode", "ユーザー")),
    ],
)
def test_parse_namespace_accepts_the_documented_forms(value, expected):
    parsed = parse_namespace(value)
    assert parsed == expected
    assert isinstance(parsed, tuple)


def test_parse_namespace_json_array_label_may_contain_spaces_inside():
    assert parse_namespace('["acme corp", "u 1"]') == ("acme corp", "u 1")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        [],
        (),
        "[]",
    ],
)
def test_empty_namespace_is_rejected(value):
    with pytest.raises(NamespaceError) as info:
        parse_namespace(value)
    assert info.value.hint


@pytest.mark.parametrize(
    "value",
    [
        "acme//u1",  # an empty label in the middle
        "acme/",  # a trailing empty label
        "/acme",
        ["acme", ""],
        [" acme"],
        ["acme "],
        ["acme", "\tu1"],
        "acme/ u1",  # the label after the separator has a leading space
        '["acme", " u1"]',
    ],
)
def test_empty_or_space_padded_labels_are_rejected(value):
    with pytest.raises(NamespaceError) as info:
        parse_namespace(value)
    assert "empty or has surrounding spaces" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("value", [["acme/u1"], ("acme", "u1/x"), '["acme/u1"]'])
def test_labels_containing_the_separator_are_rejected(value):
    with pytest.raises(NamespaceError) as info:
        parse_namespace(value)
    assert "'/'" in info.value.message
    # The hint proposes the split form.
    assert "('acme', 'u1')" in info.value.hint or "('u1', 'x')" in info.value.hint


@pytest.mark.parametrize(
    "value",
    [
        ["acme", 42],
        [None],
        [b"acme"],
        ("acme", ("nested",)),
        '["acme", 1]',
    ],
)
def test_non_string_labels_are_rejected(value):
    with pytest.raises(NamespaceError) as info:
        parse_namespace(value)
    assert "must be strings" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("value", [42, None, b"acme", {"acme": 1}, 3.5])
def test_non_sequence_values_are_rejected(value):
    with pytest.raises(NamespaceError) as info:
        parse_namespace(value)
    assert info.value.hint


def test_json_that_is_not_an_array_is_read_as_a_plain_label():
    # Only a leading "[" switches to JSON; anything else is a "/"-separated string, kept verbatim.
    assert parse_namespace('"acme"') == ('"acme"',)
    assert parse_namespace('"acme"') != ("acme",)


def test_malformed_json_array_gives_namespace_error_with_hint():
    with pytest.raises(NamespaceError) as info:
        parse_namespace('["acme", ')
    assert "does not parse" in info.value.message
    assert info.value.hint
    # It is a langdream error: str() carries the hint too.
    assert isinstance(info.value, LangDreamError)
    assert "hint:" in str(info.value)


def test_json_array_that_is_not_a_list_of_strings_is_rejected():
    with pytest.raises(NamespaceError):
        parse_namespace('[["acme"]]')


# -- namespace_key exactness ------------------------------------------------------------------------


def test_namespace_key_distinguishes_prefixes_and_nesting():
    namespaces = [
        ("acme",),
        ("acme-corp",),
        ("acme", "corp"),
        ("acme/corp",),  # not parseable, but the key function itself must still not collide
        ("u1",),
        ("u10",),
        ("u1", "x"),
        ("u1", "x", "y"),
        ("u", "1"),
    ]
    keys = [namespace_key(ns) for ns in namespaces]
    assert len(set(keys)) == len(keys)
    assert namespace_key(("u1",)) != namespace_key(("u10",))
    assert namespace_key(("acme",)) != namespace_key(("acme-corp",))
    assert namespace_key(("u1",)) != namespace_key(("u1", "x"))


def test_namespace_key_round_trips_and_is_stable():
    for ns in [("acme",), ("acme", "user-42"), ("ünïcode", "ユーザー"), ('quo"te', "back\\slash")]:
        key = namespace_key(ns)
        assert namespace_from_key(key) == ns
        assert namespace_key(ns) == key  # deterministic
        assert json.loads(key) == list(ns)
    # Compact canonical form, not ASCII-escaped.
    assert namespace_key(("acme", "user-42")) == '["acme","user-42"]'
    assert namespace_key(("ユーザー",)) == '["ユーザー"]'


def test_equal_namespaces_from_different_spellings_share_one_key():
    spellings = ["acme/u1", ["acme", "u1"], ("acme", "u1"), '["acme","u1"]', ' [ "acme" , "u1" ] ']
    keys = {namespace_key(parse_namespace(s)) for s in spellings}
    assert len(keys) == 1


def test_format_namespace_joins_with_separator():
    assert format_namespace(("acme", "u1")) == "acme/u1"
    assert parse_namespace(format_namespace(("acme", "u1"))) == ("acme", "u1")


# -- resolve_namespace -------------------------------------------------------------------------------


def test_resolve_plain_specs_without_config():
    assert resolve_namespace("acme", None) == ("acme",)
    assert resolve_namespace("acme/u1", {}) == ("acme", "u1")
    assert resolve_namespace(("acme", "u1"), {"configurable": {}}) == ("acme", "u1")


def test_resolve_template_filled_from_configurable():
    config = {"configurable": {"user_id": "u-42", "org": "acme", "unused": "x"}}
    assert resolve_namespace(("{org}", "{user_id}"), config) == ("acme", "u-42")
    assert resolve_namespace(("tenant", "{user_id}"), config) == ("tenant", "u-42")
    assert resolve_namespace("{org}/{user_id}", config) == ("acme", "u-42")
    # Partial labels are filled too, and non-string values are stringified.
    assert resolve_namespace(("user-{user_id}", "n{n}"), {"configurable": {"user_id": "7", "n": 3}}) == (
        "user-7",
        "n3",
    )


def test_resolve_template_different_configs_give_different_namespaces():
    spec = ("acme", "{user_id}")
    a = resolve_namespace(spec, {"configurable": {"user_id": "u1"}})
    b = resolve_namespace(spec, {"configurable": {"user_id": "u10"}})
    assert a == ("acme", "u1")
    assert b == ("acme", "u10")
    assert namespace_key(a) != namespace_key(b)


@pytest.mark.parametrize("config", [None, {}, {"configurable": None}, {"configurable": {"other": "x"}}])
def test_resolve_template_missing_key_names_it_in_the_hint(config):
    with pytest.raises(NamespaceError) as info:
        resolve_namespace(("acme", "{user_id}"), config)
    assert "user_id" in info.value.message
    assert info.value.hint is not None
    assert "user_id" in info.value.hint
    assert "configurable" in info.value.hint


def test_resolve_template_names_the_first_missing_key():
    with pytest.raises(NamespaceError) as info:
        resolve_namespace(("{org}", "{user_id}"), {"configurable": {"org": "acme"}})
    assert "user_id" in info.value.hint
    assert "'org'" not in info.value.hint


def test_resolve_template_filled_value_is_validated():
    # A value that would smuggle a separator into a label is rejected, not split silently.
    with pytest.raises(NamespaceError):
        resolve_namespace(("acme", "{user_id}"), {"configurable": {"user_id": "u1/admin"}})
    with pytest.raises(NamespaceError):
        resolve_namespace(("acme", "{user_id}"), {"configurable": {"user_id": ""}})


def test_single_label_template_does_not_split_a_filled_value():
    # A config value must fill one label, never choose several: with the template ("{user_id}",)
    # a user id of "victim/u1" must not resolve to the namespace ("victim", "u1").
    with pytest.raises(NamespaceError):
        resolve_namespace(("{user_id}",), {"configurable": {"user_id": "victim/u1"}})


def test_string_template_does_not_split_a_filled_value():
    # "acme/{user_id}" has two labels; a value with "/" in it must not add a third.
    with pytest.raises(NamespaceError):
        resolve_namespace("acme/{user_id}", {"configurable": {"user_id": "u1/x"}})


def test_resolve_template_non_string_label_rejected():
    with pytest.raises(NamespaceError):
        resolve_namespace(("acme", 5), {"configurable": {}})


def test_resolve_callable_receives_the_config():
    seen = []

    def spec(config):
        seen.append(config)
        return ("acme", config["configurable"]["user_id"])

    config = {"configurable": {"user_id": "u9"}}
    assert resolve_namespace(spec, config) == ("acme", "u9")
    assert seen == [config]


def test_resolve_callable_may_return_a_string_or_list():
    assert resolve_namespace(lambda config: "acme/u1", {}) == ("acme", "u1")
    assert resolve_namespace(lambda config: ["acme", "u2"], {}) == ("acme", "u2")


def test_resolve_callable_gets_an_empty_mapping_for_no_config():
    assert resolve_namespace(lambda config: ("n", str(len(config))), None) == ("n", "0")


def test_resolve_callable_that_raises_gives_namespace_error():
    def spec(config):
        raise KeyError("user_id")

    with pytest.raises(NamespaceError) as info:
        resolve_namespace(spec, {"configurable": {}})
    assert "KeyError" in info.value.message
    assert info.value.hint
    assert isinstance(info.value.__cause__, KeyError)


def test_resolve_callable_returning_garbage_gives_namespace_error():
    with pytest.raises(NamespaceError):
        resolve_namespace(lambda config: 42, {})
    with pytest.raises(NamespaceError):
        resolve_namespace(lambda config: ("acme", ""), {})
