"""Token counting with tiktoken, offline.

tiktoken downloads its BPE files on first use. langdream ships ``cl100k_base`` (the file tiktoken
itself fetches, checked against tiktoken's own hash) and builds the encoding from it, so counting
works with no network. Any other encoding name is loaded through tiktoken as usual.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources

import tiktoken

from langdream.config import DEFAULT_ENCODING
from langdream.errors import ConfigError

_BUNDLED = {
    "cl100k_base": {
        "file": "cl100k_base.tiktoken",
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        # The split pattern and special tokens of tiktoken_ext.openai_public.cl100k_base.
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        "special_tokens": {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    }
}


def _bundled_ranks(filename: str, sha256: str) -> dict[bytes, int]:
    """The BPE ranks of a bundled file, read directly: tiktoken's loader would copy it into its
    cache directory, which may not be writable (read-only containers)."""
    data = (resources.files("langdream") / "_data" / filename).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ConfigError(
            f"the bundled tiktoken file {filename} is corrupt (hash mismatch)",
            hint="reinstall langdream: pip install --force-reinstall langdream",
        )
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.lru_cache(maxsize=4)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The named encoding, from the bundled file when langdream ships it."""
    spec = _BUNDLED.get(name)
    if spec is None:
        try:
            return tiktoken.get_encoding(name)
        except Exception as exc:
            raise ConfigError(
                f"tiktoken encoding {name!r} is not bundled and could not be loaded: {exc}",
                hint=f"use encoding={DEFAULT_ENCODING!r} (bundled), or set TIKTOKEN_CACHE_DIR to a "
                "directory that holds the encoding file",
            ) from exc
    ranks = _bundled_ranks(spec["file"], spec["sha256"])
    return tiktoken.Encoding(
        name=name, pat_str=spec["pat_str"], mergeable_ranks=ranks, special_tokens=spec["special_tokens"]
    )


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens in ``text`` under ``encoding`` (the bundled cl100k_base by default), offline."""
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int, encoding: str = DEFAULT_ENCODING, marker: str = " …") -> str:
    """``text`` cut to at most ``max_tokens`` tokens (marker included), on a token boundary."""
    enc = get_encoding(encoding)
    tokens = enc.encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text
    keep = max(0, max_tokens - len(enc.encode(marker)))
    return enc.decode(tokens[:keep]) + marker
