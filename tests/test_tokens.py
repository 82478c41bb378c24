"""Token counting: the bundled cl100k_base works offline; truncation respects its budget."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from langdream import tokens
from langdream.errors import ConfigError
from langdream.tokens import count_tokens, get_encoding, truncate_tokens


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No network, an empty tiktoken cache, and no encoding cached in this process."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append(repr(args[:2]))
        raise NetworkUsed(f"network access attempted: {args[:2]!r}")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    get_encoding.cache_clear()
    yield calls, cache
    get_encoding.cache_clear()


def test_bundled_cl100k_works_with_no_network_and_no_cache(offline):
    calls, cache = offline
    enc = get_encoding("cl100k_base")
    assert enc.name == "cl100k_base"
    assert enc.encode("hello world") == [15339, 1917]
    assert count_tokens("hello world") == 2
    assert calls == []


def test_bundled_cl100k_does_not_need_a_usable_tiktoken_cache(offline, tmp_path, monkeypatch):
    # A read-only or broken TIKTOKEN_CACHE_DIR (common in locked-down containers) must not stop
    # the bundled encoding from loading: the file ships with langdream, nothing has to be cached.
    # (As root, chmod cannot make a directory unwritable, so the cache path is put under a file.)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(blocker / "cache"))
    get_encoding.cache_clear()
    assert count_tokens("hello world") == 2


def test_default_encoding_is_the_bundled_one(offline):
    assert get_encoding().name == "cl100k_base"
    assert get_encoding().encode("hello world") == [15339, 1917]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello world", [15339, 1917]),
        ("", []),
        (" ", [220]),
        ("tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
    ],
)
def test_known_cl100k_encodings(offline, text, expected):
    enc = get_encoding("cl100k_base")
    assert enc.encode(text) == expected
    assert enc.decode(expected) == text
    assert count_tokens(text) == len(expected)


def test_bundled_encoding_has_cl100k_vocabulary_and_special_tokens(offline):
    enc = get_encoding("cl100k_base")
    assert enc.n_vocab == 100277
    assert enc.encode("<|endoftext|>", allowed_special="all") == [100257]
    # count_tokens treats special-token text as ordinary text instead of raising.
    assert count_tokens("<|endoftext|>") > 1


def test_round_trip_of_unicode_text(offline):
    enc = get_encoding("cl100k_base")
    text = "Grüße aus Köln — 東京 🚀 and some code: def f(x): return x**2\n"
    assert enc.decode(enc.encode(text)) == text
    assert count_tokens(text) == len(enc.encode(text))


def test_truncate_leaves_short_text_alone(offline):
    text = "a short sentence"
    assert truncate_tokens(text, 100) == text
    assert truncate_tokens(text, count_tokens(text)) == text  # exactly at the limit


@pytest.mark.parametrize("limit", [3, 5, 10, 25])
def test_truncate_respects_the_limit_marker_included(offline, limit):
    text = " ".join(f"word{i}" for i in range(200))
    assert count_tokens(text) > limit
    cut = truncate_tokens(text, limit)
    assert cut != text
    assert cut.endswith(" …")
    assert count_tokens(cut) <= limit
    # What is kept is a prefix of the original text.
    assert text.startswith(cut[: -len(" …")])


def test_truncate_custom_marker_and_tiny_limit(offline):
    text = "one two three four five six seven eight nine ten"
    cut = truncate_tokens(text, 4, marker="[cut]")
    assert cut.endswith("[cut]")
    assert count_tokens(cut) <= 4
    assert text.startswith(cut[: -len("[cut]")])


def test_unknown_encoding_name_gives_config_error_with_hint(offline):
    with pytest.raises(ConfigError) as info:
        get_encoding("no_such_encoding_xyz")
    assert "no_such_encoding_xyz" in info.value.message
    assert info.value.hint
    assert "cl100k_base" in info.value.hint
    with pytest.raises(ConfigError):
        count_tokens("hello", encoding="no_such_encoding_xyz")


def test_unbundled_encoding_without_network_gives_config_error(offline):
    # o200k_base is a real tiktoken encoding but is not bundled: with no network and an empty
    # cache it cannot be loaded, and that must surface as a ConfigError that says what to do.
    calls, _ = offline
    with pytest.raises(ConfigError) as info:
        get_encoding("o200k_base")
    assert "o200k_base" in info.value.message
    assert "TIKTOKEN_CACHE_DIR" in info.value.hint
    assert calls, "tiktoken should have tried (and been refused) the network"


def test_bundled_file_is_checked_against_tiktokens_hash():
    spec = tokens._BUNDLED["cl100k_base"]
    import hashlib
    from importlib import resources

    data = (resources.files("langdream") / "_data" / spec["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec["sha256"]
