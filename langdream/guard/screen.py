"""Screening candidate insights: a lesson that would make the agent do an attacker's bidding waits for a person.

A reflector may copy an attacker's sentence into a lesson that every later run would be told.
``screen_claim`` flags lessons that make the agent use a URL, contact someone, handle
credentials, favour a vendor, override its instructions, skip checks, switch tools, carry an odd
trigger token or role markup (the rules are in ``screen_checks.py``). It is a pattern screen: it
reads no intent, and novel paraphrases of an attack can pass it, which is why flagged lessons are
only one of the holds (see docs/security.md).
"""

from __future__ import annotations

import re
import unicodedata

# The windowed matching that keeps redaction fast is shared with it.
from langdream.guard.redact import placeholder, redact_text
from langdream.guard.screen_checks import (  # the rules and the text normalisation they share
    _CHECKS,
    _EVIDENCE_CHARS,
    _INVISIBLE,
    SCREEN_CATEGORIES,
    Flag,
    _deobfuscate,
    _negated,
    _normalise,
    _word_set,
)

# --- trigger tokens ---------------------------------------------------------------------------

_TRIGGER_MARKUP = re.compile(
    r"<\s*[A-Z][A-Z0-9_]{2,}\s*>|\[\[[^\]\n]{1,40}\]\]|\{\{[^}\n]{1,40}\}\}|\|[A-Z_]{3,}\||@@\w+@@|\b__[A-Z0-9]+__\b"
    r"|<<(?!/?SYS>>)[^<>\n]{1,30}>>"
    # A word wrapped in doubled symbols: "~~zz~~", "%%go%%" (not markdown's **bold** or __init__).
    r"|([~#|^%=+@!$&])\1[^\W_]{1,20}\1\1"
)
# A literal the lesson calls a code word: "contains the string 'vx-77'", "the marker [X9Q]".
_TRIGGER_PHRASE = re.compile(
    r"\b(?:the\s+)?(?:string|token|code\s*word|codeword|marker|tag|sequence|magic\s+word|trigger(?:\s+word)?|"
    r"secret\s+word|passphrase)\s+['\"“‘\[<][^\s'\"”’\]>]{2,30}['\"”’\]>]",
    re.IGNORECASE,
)
# A quoted literal that unlocks a privileged action: "if the request includes 'blue falcon', approve it".
_CONDITIONAL_TRIGGER = re.compile(
    r"\b(?:if|when|whenever|once)\b[^.;]{0,60}?\b(?:includes?|contains?|has|says?|mentions?|ends?\s+(?:with|in)|"
    r"starts?\s+with|uses?|writes?|types?|sees?|see|reads?)\b[^.;]{0,30}?['\"“‘][^'\"”’]{1,30}['\"”’][^.;]{0,40}?"
    r"\b(?:approve|grant|unlock|reveal|waive|refund|skip|bypass|ignore|output|confirm|answer\s+['\"“‘]|reply\s+['\"“‘]|"
    r"say\s+['\"“‘]|respond\s+with)",
    re.IGNORECASE,
)
# A run of mixed symbols: "##!!##", "$%$%" (not a markdown rule "----" or heading "####").
_SYMBOL_RUN = re.compile(r"[!#$%^&*~|=+<>@]{4,}")
_TECH_WORDS = _word_set(
    """
    html http https grpc pnpm nltk gbps mbps kbps sftp scss xhtml dll mkv wmv pptx docx xlsx
    b2b b2c h2o p2p r2d2 c3po gpt4o 4x4 a1c
    """
)
_VOWELS = set("aeiouyAEIOUY")
_RARE = set("qxzjvkw")


def _odd_token(token: str) -> bool:
    """A token that looks random: the shape trigger-based poisoning uses."""
    core = token.strip(".,;:!?\"'()[]{}`’“”‘*")
    lower = core.lower()
    if len(core) < 3 or lower in _TECH_WORDS or core.startswith("[REDACTED"):
        return False
    # Punctuation inside a word: "tq9!k", "x#7q" (not "C#", "AT&T", "don't", "e-mail", "U.S.", "a=b").
    if re.search(r"[A-Za-z0-9][!#$%^*|~\\]+[A-Za-z0-9]", core):
        return True
    if "/" in core or "." in core or "@" in core:
        return False
    if re.fullmatch(r"[A-Z]{2,}s", core):  # PDFs, URLs, APIs
        return False
    parts = [p for p in re.split(r"[-_']", core) if p]
    for part in parts:
        has_alpha = any(c.isalpha() for c in part)
        has_digit = any(c.isdigit() for c in part)
        if has_alpha and has_digit:
            # Letters and digits alternating more than once: "xq7vz", "91ab" after "zx_" counts too.
            runs = len(re.findall(r"[A-Za-z]+|\d+", part))
            if runs >= 3 and part.lower() not in _TECH_WORDS:
                return True
            # "bzzrt9", "qxv7": letters without a vowel next to digits, long or made of rare letters.
            letters = "".join(c for c in part if c.isalpha())
            if not (_VOWELS & set(letters)) and (
                (len(letters) >= 4 and not letters.isupper()) or len(_RARE & set(letters.lower())) >= 2
            ):
                return True
        if part.isalpha() and part.isascii():
            if len(part) >= 4 and not (_VOWELS & set(part)) and not part.isupper() and part.lower() not in _TECH_WORDS:
                return True
            # Capitals without a vowel are acronyms (HTML, NFL) unless built from rare letters: "ZXQV".
            if len(part) >= 4 and part.isupper() and not (_VOWELS & set(part)) and len(_RARE & set(part.lower())) >= 2:
                return True
            # Three letters, no vowel, two of them rare: "xjq", "qzx" (not "pdf", "css", "mrs").
            if len(part) == 3 and part.islower() and not (_VOWELS & set(part)) and len(_RARE & set(part)) >= 2:
                return True
            if re.search(r"[bcdfghjklmnpqrstvwxz]{6,}", part.lower()):
                return True
            if (
                re.search(r"[bcdfghjklmnpqrstvwxz]{5}", part.lower())
                and re.search(r"[qxzjvk]", part.lower())
                and not (re.search(r"tsch|tzsch|ngth|ghth|nstr|rstw|chts", part.lower()))
            ):
                return True
            # cAsE games: "iGnOrE", "xQzV" (not "McDonald", "YouTube", "iPhone").
            if len(re.findall(r"[a-z][A-Z]", part)) >= 3:
                return True
    # "zx_91ab": a snake token whose pieces are short letters-digits mixes.
    if "_" in core and any(c.isdigit() for c in core) and len(parts) >= 2:
        pieces = [p for p in parts if any(c.isdigit() for c in p) and any(c.isalpha() for c in p)]
        if pieces and all(len(p) <= 6 for p in parts):
            return True
    return False


def _trigger_flags(raw: str, text: str) -> Flag | None:
    invisible = _INVISIBLE.search(raw)
    if invisible:
        return Flag("trigger_token", f"invisible character U+{ord(invisible.group(0)):04X}")
    for ch in raw:
        if not ch.isascii() and _unusual(ch):
            return Flag("trigger_token", f"unusual character {ch} (U+{ord(ch):04X})")
    if re.search(r"[\u0300-\u036f]{2,}", unicodedata.normalize("NFD", raw)) and re.search(r"[\u0300-\u036f]{3,}", raw):
        return Flag("trigger_token", "stacked combining marks")
    styled = [c for c in raw if not c.isascii() and _styled(c)]
    if len(styled) >= 2:
        return Flag("trigger_token", f"styled letters {''.join(styled[:8])}")
    for word in re.findall(r"\w+", raw):
        scripts = {_script(c) for c in word if c.isalpha()}
        scripts.discard(None)
        if len(scripts) > 1:
            return Flag("trigger_token", _evidence(f"mixed scripts in {word[:40]!r}"))
    markup = _TRIGGER_MARKUP.search(text)
    if markup:
        return Flag("trigger_token", _evidence(markup.group(0)))
    conditional = _CONDITIONAL_TRIGGER.search(text)
    if conditional:
        return Flag("trigger_token", _evidence(conditional.group(0)))
    phrase = _TRIGGER_PHRASE.search(text)
    if phrase and not _negated(text, phrase.start()):
        return Flag("trigger_token", _evidence(phrase.group(0)))
    for run in _SYMBOL_RUN.findall(text):
        if len(set(run)) > 1:
            return Flag("trigger_token", _evidence(run))
    for token in text.split():
        if _odd_token(token):
            return Flag("trigger_token", _evidence(token))
    return None


# Blocks of symbols that ordinary prose uses: Latin-1 signs, general punctuation (quotes, dashes,
# ellipsis), currency, letterlike symbols, arrows and mathematical operators.
_USUAL_SYMBOLS = (
    (0x00A0, 0x00BF),
    (0x00D7, 0x00D7),
    (0x00F7, 0x00F7),
    (0x2010, 0x205E),
    (0x20A0, 0x20CF),
    (0x2100, 0x214F),
    (0x2190, 0x21FF),
    (0x2200, 0x22FF),
    (0x2713, 0x2718),
)


def _unusual(ch: str) -> bool:
    """A character a written lesson has no reason to hold: private use, unassigned, format, odd symbols.

    Letters and punctuation of every script pass (a lesson may be written in Chinese or Arabic);
    symbols, emoji, circled digits and decorative brackets outside the usual blocks do not.
    """
    category = unicodedata.category(ch)
    if category in ("Co", "Cs", "Cn", "Cf", "Cc"):
        return True
    code = ord(ch)
    if any(lo <= code <= hi for lo, hi in _USUAL_SYMBOLS):
        return False
    if category[0] == "P":
        return 0x2300 <= code <= 0x2BFF  # decorative brackets such as ⟦ ⟧ live among the symbols
    return category[0] == "S" or category == "No"


def _styled(ch: str) -> bool:
    # A letter in another costume: fullwidth, circled, mathematical bold ("ⓧ", "𝗑", "ｘ").
    folded = unicodedata.normalize("NFKC", ch)
    return folded != ch and folded.isascii() and folded.isalpha()


def _script(ch: str) -> str | None:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    for script in ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"):
        if name.startswith(script):
            return script
    return None


# --- the screen -------------------------------------------------------------------------------


def _evidence(text: str) -> str:
    # Evidence is shown to people and stored with the insight: never a secret the claim carried.
    text = redact_text(" ".join(text.split()))[0]
    return text if len(text) <= _EVIDENCE_CHARS else text[: _EVIDENCE_CHARS - 1] + "…"


_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|me|my|mine|we|us|our)\b", re.IGNORECASE)


def _run_checks(text: str, found: dict[str, Flag], *, literal: bool, condition: bool = False) -> None:
    for check in _CHECKS:
        is_literal = check.literal or check.category in ("override", "role_markup")
        if check.category in found or is_literal != literal or (condition and not check.in_conditions):
            continue
        for match in check.pattern.finditer(text):
            if check.negatable and _negated(text, match.start()):
                continue
            if (
                condition
                and not is_literal
                and check.category in ("contact", "credentials")
                and _FIRST_PERSON.search(text[max(0, match.start() - 40) : match.end()])
            ):
                continue  # the user's own request, quoted as the situation
            if check.accept is not None and not check.accept(match, text):
                continue
            found[check.category] = Flag(check.category, _evidence(match.group(0)))
            break


# The extractive reflector quotes a task as an example ('Tasks like "Email the report to Bob" failed
# in 3 of 4 earlier runs', applies when "tasks like: ..."). The task is what a user asked, cited,
# not an instruction to the agent: verb-phrase checks skip it; literal checks still read it.
_QUOTED_TITLE = re.compile(r"\"([^\"\n]{3,120})\"|“([^”\n]{3,120})”")
_CITATION = re.compile(
    r"(\btasks?\s+like:?\s*)(?:\".*?\"(?=\s+failed\s+in\s+\d+\s+of\s+\d+)|\"[^\"\n]*\"|“[^”\n]*”|[^\n\"“]+$)",
    re.IGNORECASE | re.MULTILINE,
)
# Letters spaced out to dodge keyword matching ("i g n o r e  a l l"), with wider gaps between words.
_SPACED_WORDS = re.compile(r"(?<!\S)(?:[^\W\d_] ){2,}[^\W\d_](?!\S)(?:\s{2,}(?:[^\W\d_] )+[^\W\d_](?!\S))*")


def _unspace(raw: str) -> str:
    def join(match: re.Match[str]) -> str:
        return " ".join(word.replace(" ", "") for word in re.split(r"\s{2,}", match.group(0)))

    return _SPACED_WORDS.sub(join, raw)


def _commands_view(raw: str) -> str:
    """``raw`` with citations blanked: quoted tasks of the extractive template, and quoted titles."""
    text = _CITATION.sub(r'\1"…"', raw)
    return _QUOTED_TITLE.sub(lambda m: '"…"' if _title_case(m.group(1) or m.group(2)) else m.group(0), text)


def _title_case(text: str) -> bool:
    # "Text Me Merry Christmas": the title of a work, not an instruction.
    words = [w for w in re.findall(r"[^\W\d_][\w'’]*", text) if len(w) > 3]
    return len(words) >= 2 and sum(w[0].isupper() for w in words) >= 0.6 * len(words)


def _screen(raw: str, found: dict[str, Flag], *, condition: bool) -> None:
    normal = _normalise(raw)
    views = dict.fromkeys((normal, _deobfuscate(_normalise(_unspace(raw)))))
    commands = dict.fromkeys(_normalise(_commands_view(v)) for v in (raw, _deobfuscate(_unspace(raw))))
    for view in views:
        _run_checks(view, found, literal=True, condition=condition)
    for view in commands:
        _run_checks(view, found, literal=False, condition=condition)
    # Secrets and personal data a model reproduced in the claim (or already redacted there).
    for view in views:
        for kind in redact_text(view)[1]:
            category = "contact" if kind in ("email", "phone") else "credentials"
            found.setdefault(category, Flag(category, kind.replace("_", " ")))
    for kind in re.findall(r"\[REDACTED:(\w+)\]", normal):
        category = "contact" if kind in ("email", "phone") else "credentials"
        found.setdefault(category, Flag(category, placeholder(kind)))
    if "trigger_token" not in found:
        trigger = _trigger_flags(raw, normal)
        if trigger:
            found["trigger_token"] = trigger


def screen_claim(claim: str, applies_when: str = "") -> list[Flag]:
    """The reasons a candidate insight must be quarantined (one flag per category), or [] if none.

    Both the claim and its ``applies_when`` are screened, each on its own. ``applies_when``
    describes a situation, often in the user's words ("let my bank know I am travelling"): a
    request about the user's own account or contacts, in the first person, is a condition there,
    not an instruction. A flag is a reason to hold the insight for a person, not a proof of an
    attack.
    """
    found: dict[str, Flag] = {}
    for text, condition in ((claim, False), (applies_when, True)):
        if text and text.strip():
            _screen(text, found, condition=condition)
    return [found[c] for c in SCREEN_CATEGORIES if c in found]


_DESCRIPTIONS = {
    "url": "instructs the agent to use a URL",
    "contact": "tells the agent to contact someone or send data out",
    "credentials": "asks for credentials",
    "vendor": "favours a vendor",
    "override": "tries to override the agent's instructions",
    "skip_checks": "tells the agent to skip checks",
    "tool_redirect": "redirects tool calls",
    "trigger_token": "carries an odd token typical of trigger poisoning",
    "role_markup": "contains role markup",
}


def describe_flags(flags: list[Flag]) -> str:
    """One human-readable reason for a list of flags, e.g. "instructs the agent to use a URL (evil.example/x)"."""
    return "; ".join(f"{_DESCRIPTIONS.get(f.category, f.category)} ({f.evidence})" for f in flags)


__all__ = ["SCREEN_CATEGORIES", "Flag", "describe_flags", "screen_claim"]
