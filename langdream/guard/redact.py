"""Secrets and personal data redaction, applied before anything is stored or embedded.

Episodes are kept for months, embedded, clustered and shown to a reflector model; a password or
an API key pasted into one run would travel through all of that. ``redact_episode`` replaces
such values with a visible placeholder (``[REDACTED:api_key]``) in every free-text field and
returns how many of each kind it replaced. The secret itself is never kept, counted by value
or logged.

Detection is by shape, validated where a checksum exists (Luhn for cards, mod-97 for IBANs),
and tuned against real agent runs so that years, dates, population figures, version numbers
and ISBNs in ordinary prose stay untouched. The rules run in a fixed order, most specific
first: a key inside a private-key block, or a JWT after ``Bearer``, is replaced (and counted)
once. Every later rule skips text an earlier one already replaced.

Ids (episode id, thread_id, run_id, injected_insight_ids) and the namespace are not redacted:
they must be opaque identifiers, never an email address or a phone number.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langdream.types import Episode

REDACTION_KINDS: tuple[str, ...] = (
    "private_key",
    "api_key",
    "jwt",
    "bearer_token",
    "password",
    "card_number",
    "iban",
    "us_ssn",
    "email",
    "phone",
)


def placeholder(kind: str) -> str:
    """The text that stands in for a redacted value of ``kind``."""
    return f"[REDACTED:{kind}]"


# A value an earlier rule already replaced is not a new secret.
_NOT_DONE = r"(?!\[REDACTED:)"


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    # Checks the value (the "v" group, or the whole match); a rejected match is left as it is.
    valid: Callable[[str], bool] | None = None
    # Where a match can be: near one of these (in the lower-cased text), or, with ``digits``,
    # near a run of digits. A regex scan of a whole 10 kB text costs ~0.1 ms while a substring
    # search costs a few microseconds, so the patterns only run on these windows.
    needles: tuple[str, ...] = ()
    # Matched (in the lower-cased text) right after a needle; a needle without it opens no window.
    confirm: re.Pattern[str] | None = None
    # Or near a ":" or "=" that follows one of these words (an assignment such as ``api_key=``).
    names: tuple[str, ...] = ()
    digits: bool = False
    back: int = 0
    ahead: int = 300


# --- validators -------------------------------------------------------------------------------


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_secret(value: str) -> bool:
    """An opaque token: letters with digits, or long; never a plain word or a short number."""
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if len(value) >= 8 and has_digit and has_alpha:
        return True
    return len(value) >= 20 and _entropy(value) >= 3.0


def _high_entropy(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and _entropy(value) >= 3.0


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    # Issuer ranges of the card networks (Amex, Diners, JCB 3; Visa 4; Mastercard 51-55 and
    # 2221-2720; Discover, Maestro, UnionPay 5-6). Years, ISBNs (978/979) and timestamps start
    # elsewhere, so a run of them that happens to pass Luhn is still not a card.
    if digits[0] == "2":
        if not 2221 <= int(digits[:4]) <= 2720:
            return False
    elif digits[0] not in "3456":
        return False
    return _luhn(digits)


# Lengths of the IBANs of the countries that issue them (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or _IBAN_LENGTHS.get(compact[:2], len(compact)) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ssn(value: str) -> bool:
    area, group, serial = value.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _nanp(value: str) -> bool:
    # Space-separated triples are common in tables of figures: ask for a real area code and
    # exchange (neither starts with 0 or 1) before calling them a phone number.
    digits = re.sub(r"\D", "", value)[-10:]
    if "(" not in value and "-" not in value and "." not in value:
        return digits[0] in "23456789" and digits[3] in "23456789"
    return True


def _international(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    return 7 <= digits <= 15


# --- patterns ---------------------------------------------------------------------------------

_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
)

# Shapes providers give their keys. The boundary keeps them from firing inside longer words.
_KEY_SHAPES = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-ant-[A-Za-z0-9_-]{20,}"
    r"|sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r")(?![A-Za-z0-9_-])"
)

_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?![A-Za-z0-9_-])")

_TOKEN_CHARS = r"[A-Za-z0-9\-._~+/]"
_BEARER = re.compile(rf"\b[Bb]earer\s+{_NOT_DONE}(?P<v>{_TOKEN_CHARS}{{8,}}=*)")
_SCHEMES = r"(?i:bearer|basic|token|digest|bot|apikey|api-key|negotiate)"
_AUTHORIZATION = re.compile(
    r"(?i:\b(?:proxy-)?authorization)[\"']?\s*[:=]\s*[\"']?"
    rf"(?:{_SCHEMES}\s+)?{_NOT_DONE}(?!{_SCHEMES}\s)(?P<v>{_TOKEN_CHARS}{{6,}}=*)"
)

# Names of settings that hold a secret: API_KEY, apiKey, x-api-key, client_secret, token, ...
# _secret_name decides how sure the name is; the pattern only finds candidates.
_KEY_NAME = (
    r"(?:(?<![A-Za-z0-9])|(?<=[a-z])(?=[A-Z]))"
    r"(?P<name>(?:[A-Za-z0-9]+[_.-])*"
    r"(?i:(?:api|access|secret|client|refresh|auth|id|session|bearer|private)[ _-]?(?:key|token|secret)|apikey|key|"
    r"token|secret))"
    r"(?![A-Za-z0-9])"
)
_SEPARATOR = r"[\"']?\s*(?::|=|=>|:=)\s*"
# A quoted value may hold spaces; a bare one runs to the next space or delimiter.
_VALUE = (
    rf"(?:\"{_NOT_DONE}(?P<dq>[^\"\n]{{1,200}})\"|'{_NOT_DONE}(?P<sq>[^'\n]{{1,200}})'"
    rf"|{_NOT_DONE}(?P<bare>[^\s\"'<>\[\](){{}},;]{{1,200}}))"
)
_KEY_ASSIGNMENT = re.compile(rf"{_KEY_NAME}{_SEPARATOR}{_NOT_DONE}{_VALUE}")
# A long random string a few words after a key word: "the token is 4f9c...".
_KEY_NEARBY = re.compile(
    r"(?i:\b(?:api[ _-]?key|key|token|secret))\b[^\n\[\]]{0,40}?"
    r"(?<![A-Za-z0-9+/_-])(?P<v>[A-Za-z0-9+/_-]{32,}={0,2})(?![A-Za-z0-9+/=_-])"
)

_PASSWORD = re.compile(
    r"(?:(?<![A-Za-z0-9])|(?<=[a-z])(?=[A-Z]))"
    r"(?i:(?:[a-z0-9]+[_.-])*(?:password|passwd|passphrase|pwd))(?![A-Za-z0-9])"
    rf"{_SEPARATOR}{_NOT_DONE}{_VALUE}"
)
_URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://(?P<v>[^\s:/@\[\]]+:[^\s@/\[\]]+)@")

_CARD = re.compile(
    r"(?<![\w.+-])(?<!\d[ -])(?:"
    r"\d{13,19}"
    r"|\d{4}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?:(?P=s1)\d{1,7})?"
    r"|\d{4}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5}"
    r")(?!\w|[ -]\d|\.\d)"
)
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?![A-Za-z0-9])"
)
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# "+44 20 7946 0958", "+1 (415) 555-2671", "(+49) 30 1234567": a plus, then digits in groups.
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\(?\+\d{1,3}\)?(?:[ .-]?\(?\d{1,5}\)?){2,6}(?![\d])")
# North American numbers: the separators must agree, so "1990-1995" or "12.5.2020" cannot fit.
_PHONE_NANP = re.compile(
    r"(?<![\w+.,/-])(?:1[ .-])?(?:\(\d{3}\) ?\d{3}-\d{4}|\d{3}(?P<s>[-. ])\d{3}(?P=s)\d{4})(?![\w-]|[.,/]\d)"
)
# Any reasonable number right after a word that announces one: "Tel: 030 1234 5678".
_PHONE_LABELLED = re.compile(
    r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp)\b(?:\s*(?:number|no\.?|#))?)\s*[:.]?\s*"
    r"(?P<v>\+?\(?\d[\d ().-]{5,20}\d)(?![\d])"
)

_WHOLE_TEXT = 1 << 62
_RULES: tuple[_Rule, ...] = (
    _Rule("private_key", _PEM, needles=("-----begin",), ahead=_WHOLE_TEXT),
    _Rule(
        "api_key",
        _KEY_SHAPES,
        needles=("sk-", "sk_", "rk_", "akia", "asia", "gh", "github_pat_", "glpat-", "xox", "aiza", "hf_"),
        confirm=re.compile(r"[a-z0-9_-]{8}"),
        back=1,
    ),
    _Rule("jwt", _JWT, needles=("eyj",), confirm=re.compile(r"[a-z0-9_-]{8,}\."), back=1, ahead=8000),
    _Rule(
        "bearer_token",
        _BEARER,
        lambda v: _looks_secret(v.rstrip(".")),
        needles=("bearer",),
        confirm=re.compile(r"\s+[a-z0-9._~+/-]{8}"),
        back=1,
        ahead=600,
    ),
    _Rule("bearer_token", _AUTHORIZATION, names=("authorization", "authorisation"), back=30, ahead=600),
    _Rule("api_key", _KEY_ASSIGNMENT, names=("key", "token", "secret", "key_id", "keyid", "key-id"), back=60),
    _Rule(
        "api_key",
        _KEY_NEARBY,
        _high_entropy,
        needles=("key", "token", "secret"),
        confirm=re.compile(r"[^\n\[\]]{0,40}?(?<![a-z0-9+/_-])[a-z0-9+/_-]{32}"),
        back=10,
        ahead=360,
    ),
    _Rule("password", _PASSWORD, names=("password", "passwd", "passphrase", "pwd", "pass_word"), back=60),
    _Rule("password", _URL_CREDENTIALS, needles=("://",), confirm=re.compile(r"[^\s/@:]+:[^\s@/]+@"), back=20),
    _Rule("card_number", _CARD, _card, digits=True, back=2, ahead=4),
    _Rule("iban", _IBAN, digits=True, back=34, ahead=40),  # validated (and trimmed) in _replace_iban
    _Rule("us_ssn", _SSN, _ssn, digits=True, back=2, ahead=4),
    _Rule("email", _EMAIL, needles=("@",), back=70, ahead=260),
    _Rule("phone", _PHONE_INTERNATIONAL, _international, digits=True, back=4, ahead=4),
    _Rule("phone", _PHONE_NANP, _nanp, digits=True, back=4, ahead=4),
    _Rule("phone", _PHONE_LABELLED, _international, digits=True, back=40, ahead=4),
)

_NEEDLES = tuple(dict.fromkeys(n for rule in _RULES for n in rule.needles))
# Needles that only matter in a text with an underscore (ghp_..., hf_..., sk_live_...): skipped otherwise.
_NEED_UNDERSCORE = frozenset(("sk_", "rk_", "gh", "github_pat_", "hf_"))
# Every card, IBAN, SSN and phone number holds a run like this; texts are scanned for it once.
_DIGIT_RUN = re.compile(r"[0-9][0-9 ().+-]{5,}[0-9]")


def _replace_iban(match: re.Match[str], counts: Counter[str]) -> str:
    text = match.group(0)
    compact = text.replace(" ", "")
    known = _IBAN_LENGTHS.get(compact[:2])
    # The grouped form can swallow a following word ("... 32 THEN"): try the registered length
    # first, then every shorter prefix, and keep what follows the IBAN as it was.
    lengths = [known] if known else range(len(compact), 14, -1)
    for length in lengths:
        if length <= len(compact) and _iban_ok(compact[:length]):
            consumed, seen = 0, 0
            while seen < length:
                seen += text[consumed] != " "
                consumed += 1
            counts["iban"] += 1
            return placeholder("iban") + text[consumed:]
    return text


def _windows(spans: list[tuple[int, int]], back: int, ahead: int, size: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        lo, hi = max(0, start - back), min(size, end + ahead)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _needle_spans(haystack: str, needles: tuple[str, ...], confirm: re.Pattern[str] | None) -> list[tuple[int, int]]:
    spans = []
    for needle in needles:
        i = haystack.find(needle)
        while i >= 0:
            end = i + len(needle)
            if confirm is None or confirm.match(haystack, end):
                spans.append((i, end))
            i = haystack.find(needle, end)
    return spans


def _separators(text: str) -> list[int]:
    found = []
    for sep in ":=":
        i = text.find(sep)
        while i >= 0:
            found.append(i)
            i = text.find(sep, i + 1)
    return found


def _name_spans(text: str, separators: list[int], names: tuple[str, ...]) -> list[tuple[int, int]]:
    spans = []
    for i in separators:
        before = text[max(0, i - 30) : i].rstrip(" \t\"'").lower()
        if before.endswith(names):
            spans.append((i, i + 1))
    return spans


def substitute(
    text: str, pattern: re.Pattern[str], windows: list[tuple[int, int]], replace: Callable[[re.Match[str]], str | None]
) -> str:
    """``text`` with the matches of ``pattern`` inside ``windows`` replaced; None from ``replace`` keeps one.

    Matching starts at each window but sees the text before it (lookbehinds work as on the
    whole text); shared with ``langdream.guard.neutralise``.
    """
    out: list[str] = []
    last = 0
    for lo, hi in windows:
        for match in pattern.finditer(text, max(lo, last), hi):
            new = replace(match)
            if new is None:
                continue
            out += (text[last : match.start()], new)
            last = match.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _replacer(rule: _Rule, counts: Counter[str]) -> Callable[[re.Match[str]], str | None]:
    if rule.kind == "iban":
        return lambda match: _replace_iban(match, counts)

    def replace(match: re.Match[str]) -> str | None:
        group = next((g for g in ("v", "dq", "sq", "bare") if g in match.re.groupindex and match.group(g)), None)
        value = match.group(group) if group else match.group(0)
        if rule.valid is not None and not rule.valid(value):
            return None
        if "name" in match.re.groupindex and not _key_value_ok(match.group("name"), value):
            return None
        counts[rule.kind] += 1
        if group is None:
            return placeholder(rule.kind)
        whole, offset = match.group(0), match.start()
        start, end = match.span(group)
        return whole[: start - offset] + placeholder(rule.kind) + whole[end - offset :]

    return replace


def redact_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` with every secret and personal value replaced by its placeholder, and counts per kind."""
    counts: Counter[str] = Counter()
    if len(text) < 6:  # shorter than any email, phone number or key
        return text, counts
    lowered = text.lower()
    # Most texts hold none of the needles: one pass over them decides which rules can match at all.
    underscore, colon = "_" in text, ":" in text
    present = {
        n for n in _NEEDLES if (underscore or n not in _NEED_UNDERSCORE) and (colon or n != "://") and n in lowered
    }
    if not present and not colon and "=" not in text and not _DIGIT_RUN.search(text):
        return text, counts
    digit_spans = separators = None
    for rule in _RULES:
        if rule.digits:
            if digit_spans is None:
                digit_spans = [m.span() for m in _DIGIT_RUN.finditer(text)]
            spans = digit_spans
        elif rule.names:
            if separators is None:
                separators = _separators(text)
            spans = _name_spans(text, separators, rule.names)
        elif not present.intersection(rule.needles):
            continue
        elif len(lowered) == len(text):
            spans = _needle_spans(lowered, rule.needles, rule.confirm)
        else:  # lower-casing changed the length (a few letters such as İ do): search everywhere
            spans = [(0, len(text))]
        if not spans:
            continue
        new = substitute(text, rule.pattern, _windows(spans, rule.back, rule.ahead, len(text)), _replacer(rule, counts))
        if new is not text:
            text, digit_spans, separators = new, None, None
            lowered = text.lower()
    return text, counts


_PASSWORD_NAME = re.compile(r"(?:\w+_)?(?:password|passwd|passphrase|pwd|pass_word)")
_AUTHORIZATION_NAME = re.compile(r"(?:proxy_)?authorization")
_STRONG_KEY_NAME = re.compile(
    r"(?:\w+_)?(?:api_?key|access_key(?:_id)?|secret_access_key|secret_key|client_secret"
    r"|(?:access|refresh|auth|id|session|bearer|api)_token|private_key)"
)
_WEAK_KEY_NAME = re.compile(r"(?:\w+_)?(?:key|token|secret)")


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str, field: bool = False) -> tuple[str, bool] | None:
    """The kind of secret a setting called ``name`` holds, and whether the name alone says so.

    Compound names (``api_key``, ``client_secret``, ``OPENAI_API_KEY``) are sure. A bare or
    prefixed ``key`` / ``token`` / ``secret`` is not (``primary_key``, ``pad_token``, "Key:" at
    the start of a sentence) unless written as an environment variable (``STRIPE_KEY``), or,
    for a mapping's ``field``, a bare ``token`` or ``secret``; nor is a name spelled with spaces
    ("API key: ..."), which is prose.
    """
    env_style = "_" in name and name.isupper()
    normal = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    normal = re.sub(r"[-. ]", "_", normal)
    if _PASSWORD_NAME.fullmatch(normal):
        return "password", True
    if _AUTHORIZATION_NAME.fullmatch(normal):
        return "bearer_token", True
    if _STRONG_KEY_NAME.fullmatch(normal):
        return "api_key", " " not in name
    if _WEAK_KEY_NAME.fullmatch(normal):
        return "api_key", env_style or (field and normal in ("token", "secret"))
    return None


def _key_value_ok(name: str, value: str) -> bool:
    """Whether ``value`` after the setting ``name`` is a secret worth redacting."""
    found = _secret_name(name)
    if found is None or not value.strip():
        return False
    return len(value.strip()) >= 3 if found[1] else _looks_secret(value)


def redact_value(value: Any) -> tuple[Any, Counter[str]]:
    """A copy of ``value`` with strings redacted, recursing into dicts (keys and values), lists and tuples.

    A string stored under a key that names a secret (``password``, ``api_key``, ``token``, ...)
    is replaced whole when no rule recognised anything in it. Other types are returned as they are.
    """
    counts: Counter[str] = Counter()
    return _redact(value, counts), counts


def _redact(value: Any, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        text, found = redact_text(value)
        counts.update(found)
        return text
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            secret = _secret_name(key, field=True) if isinstance(key, str) and len(key) < 64 else None
            # Keys are nearly always identifiers ("query", "api_key"), which hold no PII.
            new_key = key if not isinstance(key, str) or key.isidentifier() else _redact(key, counts)
            if secret and isinstance(item, str) and item.strip():
                text, found = redact_text(item)
                if not found and "[REDACTED:" not in item and (secret[1] or _looks_secret(item)):
                    text, found = placeholder(secret[0]), Counter({secret[0]: 1})
                counts.update(found)
                out[new_key] = text
            else:
                out[new_key] = _redact(item, counts)
        return out
    if isinstance(value, list):
        return [_redact(item, counts) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, counts) for item in value)
    return value


def redact_episode(episode: Episode) -> tuple[Episode, Counter[str]]:
    """A copy of ``episode`` with its free text redacted, and the counts per kind.

    Redacted: the task, every message's content, every tool call's args (recursively; the tool
    name stays), the final answer, the outcome's feedback and the metadata (recursively). Not
    touched: the namespace and the ids, which must be opaque.
    """
    counts: Counter[str] = Counter()
    messages = []
    for message in episode.messages:
        calls = [call.model_copy(update={"args": _redact(call.args, counts)}) for call in message.tool_calls]
        messages.append(message.model_copy(update={"content": _redact(message.content, counts), "tool_calls": calls}))
    outcome = episode.outcome
    if outcome.feedback:
        outcome = outcome.model_copy(update={"feedback": _redact(outcome.feedback, counts)})
    update = {
        "task": _redact(episode.task, counts),
        "messages": messages,
        "final_answer": _redact(episode.final_answer, counts) if episode.final_answer else episode.final_answer,
        "outcome": outcome,
        "metadata": _redact(episode.metadata, counts),
    }
    return episode.model_copy(update=update), counts


__all__ = ["REDACTION_KINDS", "placeholder", "redact_episode", "redact_text", "redact_value"]
