"""Prompt injection: neutralise role markup in stored text, and screen candidate insights.

Two places where text an attacker controls can turn into instructions:

- **stored episodes.** A tool output (a web page, an email, a search snippet) may carry markup
  that poses as a turn of the conversation (``<system>``, ``<|im_start|>``, ``[INST]``, a line
  ``SYSTEM: ...``), a phrase that overrides instructions ("ignore all previous instructions"),
  or a forged step of the agent's own loop (``Observation: ...``, ``Finish[...]``). Episodes are
  shown to a reflector model later, so ``neutralise_episode`` replaces such markup with a
  visible marker (``[neutralised: role markup]``): the data stays readable, the framing is gone.
- **candidate insights.** A reflector may copy an attacker's sentence into a lesson that every
  later run would be told. ``screen_claim`` flags lessons that make the agent use a URL, contact
  someone, handle credentials, favour a vendor, override its instructions, skip checks, switch
  tools, carry an odd trigger token or role markup. Flagged lessons wait for a person.

The screen reads a normalised copy of the claim (Unicode compatibility forms folded, look-alike
Cyrillic and Greek letters mapped to Latin, zero-width characters removed, whitespace collapsed)
and a de-obfuscated one (``evil[.]example``, ``hxxp``, "dot com", ``1gn0re``, ``i g n o r e``).
Lessons that *forbid* a behaviour ("never share API keys", "do not skip verification") are
told apart from ones that ask for it by counting negations before the verb.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The windowed matching that keeps redaction fast is shared with it.
from langdream.guard.redact import _needle_spans, _windows, redact_text, substitute
from langdream.types import Episode

# --- neutralising stored text -----------------------------------------------------------------

ROLE_MARKER = "[neutralised: role markup]"
OVERRIDE_MARKER = "[neutralised: instruction override]"
FAKE_TOOL_MARKER = "[neutralised: fake tool result]"
_MARKERS = {"role_markup": ROLE_MARKER, "override": OVERRIDE_MARKER, "fake_tool_result": FAKE_TOOL_MARKER}

_ROLES = (
    r"system|assistant|user|human|developer|admin|root|sudo|operator|tool|tool_results?|tool_calls?|tool_use|function_results?|function_calls?|"
    r"functions|instructions?|im_start|im_end|im_sep|sys|inst|prompt"
)
# Each pattern starts with a literal character or runs only near its needles (in the lower-cased
# text): a regex scan over a whole 10 kB tool output costs ~0.1 ms, a substring search microseconds.
_ROLE_TAG = re.compile(
    rf"<(?:\s*/?\s*(?:{_ROLES})(?:[_-]\w+)?\b[^<>\n]{{0,100}}>|\|\s*/?\s*[A-Za-z_]{{1,30}}\s*\|>|</?SYS>>)",
    re.IGNORECASE,
)  # <system>, </tool_result>, <user name="x">, <|im_start|>, <|system|>, <<SYS>>
_INST = re.compile(r"\[/?INST\]", re.IGNORECASE)
_HEADING = re.compile(
    r"#{1,6}[ \t]*(?:system|instructions?|response|human|assistant|user|developer)[ \t]*(?::|$)",
    re.IGNORECASE | re.MULTILINE,
)
# Role labels at the start of a line, in title or upper case ("System:", "SYSTEM:", not "system:").
_ROLE_LABEL = re.compile(r"(?:System|SYSTEM|Assistant|ASSISTANT|Developer|DEVELOPER)[ \t]*:")
_LABEL_NEEDLES = ("System", "SYSTEM", "Assistant", "ASSISTANT", "Developer", "DEVELOPER")

_OVERRIDE = re.compile(
    r"\bignore\s+(?:(?:all|any|the|of|your|my|these|those)\s+){0,3}(?:previous|prior|above|earlier|preceding|"
    r"foregoing|former|original|initial|system)\s+(?:\w+\s+)?(?:instructions?|rules?|directions?|prompts?|"
    r"directives?|guidelines?|messages?|context)\b"
    r"|\bdisregard\s+(?:(?:your|all|any|the|previous|prior|above|earlier|system|of|these|those)\s+){1,3}"
    r"(?:\w+\s+)?(?:instructions?|rules?|directions?|prompts?|directives?|guidelines?|programming|messages?|"
    r"context|above)\b"
    r"|\bforget\s+(?:all|your|everything|any)\s+(?:(?:of|your|the|previous|prior|earlier|above)\s+){0,3}"
    r"(?:instructions?|rules?|training|directions?|prompts?|guidelines?|you\s+(?:were|have\s+been)\s+told)"
    r"|\byou\s+are\s+now\s+(?:a|an|the|my|no\s+longer|in\s+\w+\s+mode|free|unrestricted|jailbroken|DAN|acting|"
    r"going\s+to|called|named|known\s+as)\b"
    r"|\b(?:new|updated|revised|real|actual)\s+(?:system\s+)?(?:instructions?|rules|system\s+prompt)\s*:"
    r"|\boverride\s+(?:your|the|all|any)\s+(?:(?:previous|prior|system|safety|current)\s+)?"
    r"(?:instructions?|system\s+prompt|prompt|rules?|guidelines?|programming)\b"
    r"|\bfrom\s+now\s+on,?\s+(?:you|always|never|only|respond|reply|answer|ignore|act)\b",
    re.IGNORECASE,
)
_OVERRIDE_NEEDLES = ("ignore", "disregard", "forget", "you are now", "instructions:", "instruction:", "rules:",
                     "prompt:", "override", "from now on")  # fmt: skip

# A forged step of the agent's loop inside what a tool returned.
_FAKE_TOOL = re.compile(
    r"(?m:^[ \t]*(?:Observation|Tool[ \t]+(?:result|output|response)|Function[ \t]+(?:result|output|response)|"
    r"Thought)(?:[ \t]+\d+)?[ \t]*:)"
    r"|(?m:^[ \t]*Action(?:[ \t]+\d+)?[ \t]*:[ \t]*\w+\[[^\]\n]*\])"
    r"|\[\s*(?:tool|function)[ _](?:result|output|response)\s*\]"
    # "Finish[<answer>]" is how a ReAct environment names the action; a filled one is forged.
    r"|\bFinish\[(?!<\w+>\])[^\]\n]*\]",
    re.IGNORECASE,
)
_FAKE_TOOL_NEEDLES = ("observation", "tool", "function", "thought", "action", "finish[")


_Replace = Callable[[re.Match[str]], "str | None"]


def _at_line_start(match: re.Match[str]) -> bool:
    text, start = match.string, match.start()
    return not text[text.rfind("\n", 0, start) + 1 : start].strip()


def _near_needles(
    text: str, pattern: re.Pattern[str], needles: tuple[str, ...], back: int, ahead: int, replace: _Replace
) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        spans = _needle_spans(lowered, needles, None)
    else:  # a few letters (İ) change length when lower-cased: then search the whole text
        spans = [(0, len(text))] if any(n in lowered for n in needles) else []
    return substitute(text, pattern, _windows(spans, back, ahead, len(text)), replace) if spans else text


def _neutralise(text: str, counts: Counter[str], *, tool_output: bool) -> str:
    if len(text) < 4:
        return text

    def mark(kind: str, check: Callable[[re.Match[str]], bool] | None = None) -> _Replace:
        def replace(match: re.Match[str]) -> str | None:
            if check is not None and not check(match):
                return None
            counts[kind] += 1
            return _MARKERS[kind]

        return replace

    # The cheap single-character tests skip most texts before any pattern runs.
    if "<" in text:
        text = substitute(text, _ROLE_TAG, [(0, len(text))], mark("role_markup"))
    if "[" in text:
        text = substitute(text, _INST, [(0, len(text))], mark("role_markup"))
    if "#" in text:
        text = substitute(text, _HEADING, [(0, len(text))], mark("role_markup", _at_line_start))
    if ":" in text:
        spans = _needle_spans(text, _LABEL_NEEDLES, None)
        if spans:
            windows = _windows(spans, 0, 30, len(text))
            text = substitute(text, _ROLE_LABEL, windows, mark("role_markup", _at_line_start))
    text = _near_needles(text, _OVERRIDE, _OVERRIDE_NEEDLES, 20, 200, mark("override"))
    if tool_output:
        text = _near_needles(text, _FAKE_TOOL, _FAKE_TOOL_NEEDLES, 40, 300, mark("fake_tool_result"))
    return text


def neutralise_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` with role markup and instruction overrides replaced by markers, and counts per kind.

    Use this for text of unknown origin. Forged agent steps (``Observation:``, ``Finish[...]``)
    are only neutralised in tool output, see ``neutralise_episode``.
    """
    counts: Counter[str] = Counter()
    return _neutralise(text, counts, tool_output=False), counts


def _neutralise_value(value: Any, counts: Counter[str], *, tool_output: bool) -> Any:
    if isinstance(value, str):
        return _neutralise(value, counts, tool_output=tool_output)
    if isinstance(value, dict):
        return {k: _neutralise_value(v, counts, tool_output=tool_output) for k, v in value.items()}
    if isinstance(value, list):
        return [_neutralise_value(v, counts, tool_output=tool_output) for v in value]
    if isinstance(value, tuple):
        return tuple(_neutralise_value(v, counts, tool_output=tool_output) for v in value)
    return value


def neutralise_episode(episode: Episode) -> tuple[Episode, Counter[str]]:
    """A copy of ``episode`` with markup neutralised in the same fields ``redact_episode`` covers.

    Role markup and overrides everywhere; forged agent steps only in messages with role "tool"
    and in tool call args (which may carry text a tool returned). Ids and the namespace are left
    alone.
    """
    counts: Counter[str] = Counter()
    messages = []
    for message in episode.messages:
        calls = [
            call.model_copy(update={"args": _neutralise_value(call.args, counts, tool_output=True)})
            for call in message.tool_calls
        ]
        content = _neutralise(message.content, counts, tool_output=message.role == "tool")
        messages.append(message.model_copy(update={"content": content, "tool_calls": calls}))
    outcome = episode.outcome
    if outcome.feedback:
        outcome = outcome.model_copy(update={"feedback": _neutralise(outcome.feedback, counts, tool_output=False)})
    update = {
        "task": _neutralise(episode.task, counts, tool_output=False),
        "messages": messages,
        "final_answer": _neutralise(episode.final_answer or "", counts, tool_output=False) or episode.final_answer,
        "outcome": outcome,
        "metadata": _neutralise_value(episode.metadata, counts, tool_output=False),
    }
    return episode.model_copy(update=update), counts


# --- screening candidate insights -------------------------------------------------------------

SCREEN_CATEGORIES: tuple[str, ...] = (
    "url",
    "contact",
    "credentials",
    "vendor",
    "override",
    "skip_checks",
    "tool_redirect",
    "trigger_token",
    "role_markup",
)

_EVIDENCE_CHARS = 80


@dataclass(frozen=True)
class Flag:
    """One reason a candidate insight must wait for a person: its category and the text that matched."""

    category: str
    evidence: str


# Look-alike letters from other scripts, folded to Latin before matching (Cyrillic, then Greek).
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwABEKMHOPCTXIJSaeikvoptuxABEZHIKMNOPTYX",
)
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")
_LEET = str.maketrans("013457@$", "oieastas")
_OBFUSCATED_DOT = re.compile(r"\s*(?:\[\s*\.\s*\]|\(\s*\.\s*\)|\{\s*\.\s*\}|\[\s*dot\s*\]|\(\s*dot\s*\)|\{\s*dot\s*\}|<dot>)\s*",
                             re.IGNORECASE)  # fmt: skip
_SPOKEN_EMAIL = re.compile(r"\b([\w.+-]+) +(?:at|\[at\]|\(at\)) +([\w-]+) +dot +(\w+)", re.IGNORECASE)
_SPOKEN_DOT = re.compile(r"(?<=\w) +dot +(?=\w)", re.IGNORECASE)
_OBFUSCATED_AT = re.compile(r"\s*(?:\[\s*at\s*\]|\(\s*at\s*\)|\{\s*at\s*\}|<at>)\s*", re.IGNORECASE)
_HXXP = re.compile(r"\bh(?:xx|\*\*|XX|tt)p(s?)\s*(?::|\[:\])\s*/\s*/", re.IGNORECASE)


def _normalise(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)
    return " ".join(text.split())


def _deobfuscate(text: str) -> str:
    text = _HXXP.sub(lambda m: f"http{m.group(1)}://", text)
    text = _SPOKEN_EMAIL.sub(r"\1@\2.\3", text)
    text = _OBFUSCATED_DOT.sub(".", text)
    text = _SPOKEN_DOT.sub(".", text)
    text = _OBFUSCATED_AT.sub("@", text)

    def unleet(match: re.Match[str]) -> str:
        word = match.group(0)
        if re.search(r"@.*\.|[/:]", word):  # an address, not a leet word
            return word
        if any(c.isalpha() for c in word) and any(c in "013457@$" for c in word) and not word.isdigit():
            return word.translate(_LEET)
        return word

    return re.sub(r"[\w@$.:/-]+", unleet, text)


# Negation words before a verb; the second group turns a negation back ("don't forget to ...").
_NEGATION = re.compile(
    r"\b(?:never|not|no|nor|without|avoid|avoiding|refuse|refusing|stop|cannot|can't|won't|don't|doesn't|didn't|"
    r"mustn't|shouldn't|isn't|aren't|dont|fail|forget|hesitate|neglect|omit|skip)\b"
)
_CLAUSE_BREAK = re.compile(r"[.;!?:,]|\b(?:and|but|then|so|instead|unless|otherwise|or)\b")


def _negated(text: str, start: int) -> bool:
    """Whether the clause before ``start`` negates what follows (an odd number of negations)."""
    prefix = text[max(0, start - 80) : start].lower()
    breaks = list(_CLAUSE_BREAK.finditer(prefix))
    if breaks:
        prefix = prefix[breaks[-1].end() :]
    return len(_NEGATION.findall(prefix)) % 2 == 1


@dataclass(frozen=True)
class _Check:
    category: str
    pattern: re.Pattern[str]
    # A lesson that forbids the behaviour ("never share passwords") passes.
    negatable: bool = True
    # Further test on the match (and the whole text); False lets it pass.
    accept: Callable[[re.Match[str], str], bool] | None = None
    # A check for a literal artifact (a URL, role markup, an override phrase) reads the whole claim;
    # one for an instruction (a verb phrase) skips citations of tasks, see _CITATION.
    literal: bool = False


def _ci(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts), re.IGNORECASE)


_DET = r"(?:(?:the|a|an|this|that|these|those|your|our|my|their|his|her|its|all|any|every|each|some|of)\s+)"
_TLDS = (
    r"com|net|org|io|ai|co|dev|app|info|biz|xyz|me|us|uk|de|ru|cn|tk|ml|ga|cf|gq|top|site|online|club|live|shop|"
    r"store|tech|cloud|link|click|zip|mov|work|email|page|pro|example|test|local|internal|onion|ly|gg|cc|tv|ws|su|"
    r"eu|fr|nl|ca|au|jp|br|es|ch|se|ir|kr|gov|edu|mil|int|name|mobi|icu|vip|win|bid|loan|ninja|sh"
)

_URL_CHECKS = (
    _Check("url", _ci(r"\b[a-z][a-z0-9+.-]{1,15}\s*:\s*//\S*", r"\bwww\.\S+"), negatable=False, literal=True),
    _Check(
        "url",
        _ci(rf"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*(?:\.| \. ?)(?:{_TLDS})\b(?![.-]?\w)(?:/\S*)?"),
        negatable=False,
        literal=True,
    ),
    _Check("url", _ci(r"\bdot\s*com\b"), negatable=False, literal=True),
    _Check("url", re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b(?::\d+)?"), negatable=False, literal=True),
    _Check("url", re.compile(r"!?\[[^\]\n]{0,100}\]\(\s*[^)\s]+\s*\)"), negatable=False, literal=True),
    _Check(
        "url",
        _ci(
            r"\b(?:visit|browse\s+to|navigate\s+to|go\s+to|open|click|follow|fetch|download(?:\s+from)?|load|curl|wget|"
            r"access|embed|render)\s+" + _DET + r"?(?:(?:following|external|given|attached|this|remote|tracking)\s+)?"
            r"(?:links?|urls?|websites?|web\s*sites?|web\s*pages?|addresses|address|endpoints?|domains?|servers?|"
            r"ip|image\s+(?:url|link)|tracking\s+pixel|pixel|hyperlinks?)\b"
        ),
    ),
)

_WHO = (
    r"(?:someone|somebody|anyone|anybody|everyone|him|her|them|us|me|"
    r"(?:the|an?|our|my|your|their|his|her)\s+(?:(?:external|outside|third[- ]party|remote|personal|new|site|system|"
    r"security|it|hr|account|billing|sales|support|compliance)\s+)?"
    r"(?:admins?|administrators?|owners?|developers?|authors?|senders?|security|support|team|managers?|boss|ceo|cfo|"
    r"it\s+department|hr|helpdesk|help\s+desk|hotline|office|police|authorities|vendors?|partners?|operators?|"
    r"sysadmins?|maintainers?|account\s+managers?|number|following|address|email|contact|person|human|recipient|"
    r"moderators?|mods|staff|reviewers?|finance|legal|engineers?|analysts?|on-call|"
    r"third[- ]party|agent|representative|supervisor|auditor)|"
    r"support|security|admins?|sales|billing|external\b|third[- ]part\w+|(?-i:[A-Z][a-z]+\s+[A-Z][a-z]+)\b|\+?\d)"
)
_DEST = (
    r"(?:(?:an?|the|this|that|our|my|some|their|his|her|your)\s+)?"
    r"(?:(?:external|outside|remote|third[- ]party|personal|private|backup|following|given|other|secondary|"
    r"attacker'?s?|offsite|off-site|public|shared|[a-z]+)\s+)?"
    r"(?:e-?mail|address|inbox|server|endpoint|webhook|url|site|website|channel|phone|number|account|bucket|"
    r"pastebin|gist|discord|telegram|slack|whatsapp|signal|drive|dropbox|ftp|host|domain|ip|recipient|contact|"
    r"admins?|administrators?|support|security|team|partners?|vendors?|developers?|owners?|authors?|me|us|him|her|"
    r"them|someone|anyone|everyone|storage|cloud|forum|twitter|facebook|reddit|social\s+media|log\s+server|"
    r"collector|api|service)\b"
    r"|(?:(?:an?|the|our|some)\s+)?(?:external|outside|third[- ]party|remote|offsite|off-site)\s+\w+"
)
_SEND = r"(?:send|forward|post|upload|submit|transmit|exfiltrate|leak|share|copy|mail|e-?mail|sync|push|publish|relay|report|dump|export|paste|deliver|beam|cc|bcc|bcc:|mirror|stream|log)"

# The user's own address is where replies go: "send the reset link to the email address on file".
_OWN_DESTINATION = re.compile(
    r"\bon\s+file\b|\b(?:the\s+)?(?:user|customer|requester|caller|client)(?:'s|’s|s')?\s+(?:own\s+|registered\s+)?"
    r"(?:e-?mail|address|inbox|account|phone|number)|\btheir\s+(?:own|registered)\b",
    re.IGNORECASE,
)

_USER_ASKED = re.compile(
    r"\b(?:user|customer|client|requester)s?\s+(?:explicitly\s+)?(?:asks?|asked|requests?|requested|wants?|wanted)"
    r"\s+(?:you\s+|the\s+agent\s+)?to\s+(?:\w+\s+){0,2}$",
    re.IGNORECASE,
)


def _user_asked(match: re.Match[str], text: str) -> bool:
    # "When the user asks you to email their manager, ...": the user's own request, not a new contact.
    return bool(_USER_ASKED.search(text[max(0, match.start() - 60) : match.start()]))


_CONTACT_CHECKS = (
    _Check("contact", re.compile(r"(?<![\w@.])@[A-Za-z0-9_]{2,30}\b(?!\.\w|@)"), negatable=False, literal=True),
    _Check(
        "contact",
        _ci(
            r"\b(?:contact|e-?mail|message|dm|ping|notify|alert|inform|text|call|phone|ring|telephone|whatsapp|tweet|"
            r"e-?mailing|messaging|texting|calling|phoning|notifying|contacting|"
            r"reach\s+out\s+to|get\s+in\s+touch\s+with|write\s+to|cc|bcc|report\s+(?:this|it|them|everything|all)\s+to)"
            rf"\s+{_WHO}"
        ),
        accept=lambda m, t: (
            not re.search(r"\b(?:user|customer|requester|caller|client)\b", m.group(0), re.IGNORECASE)
            and not _user_asked(m, t)
        ),
    ),
    _Check(
        "contact",
        _ci(rf"\b{_SEND}\b(?:\s+[^\s.;!?]+){{0,7}}?\s+(?:to|with|into|onto|via|at|on)\s+(?P<dest>{_DEST})"),
        accept=lambda m, t: not _OWN_DESTINATION.search(t[m.start("dest") : m.end() + 12]) and not _user_asked(m, t),
    ),
    _Check("contact", _ci(r"\b(?:cc|bcc)\b\s*:?\s*\S")),
    _Check(
        "contact",
        _ci(
            r"\blet\s+(?:\S+\s+){1,6}?know\b",
            r"\bkeep\s+(?:\S+\s+){1,4}?(?:informed|updated|in\s+the\s+loop|posted|copied|cc'?d)\b",
        ),
        accept=lambda m, t: (
            not re.search(r"\b(?:user|customer|requester|caller|client|me)\b", m.group(0), re.IGNORECASE)
        ),
    ),
    _Check(
        "contact",
        _ci(
            r"\b(?:pass|send|forward|give|copy|feed|pipe|attach|include|hand)\s+" + _DET + r"?(?:a\s+copy\s+of\s+)?"
            r"(?:(?:full|entire|whole|complete|raw)\s+)?(?:conversations?|chats?|chat\s+history|history|transcripts?|"
            r"user\s+data|customer\s+data|personal\s+data|context|messages|everything|sessions?|memory|prompts?|logs)\s+"
            r"(?:to|into|with)\b"
        ),
    ),
)

_CRED = (
    r"(?:(?:api|access|secret|private|ssh|encryption|signing|license|auth|aws|openai|anthropic|github|stripe|gcp|azure|"
    r"master|admin|root|wallet|deploy|gpg|pgp|account|service[\s_-]account)[\s_-]?keys?|apikeys?|credentials|creds|"
    r"passwords?|passwds?|passcodes?|passphrases?|"
    r"pins?|pin\s+codes?|secrets?|(?:access|auth|bearer|session|refresh|api|oauth|jwt|id|github|slack|discord|admin)"
    r"[\s_-]?tokens?|tokens?(?!\s+(?:count|counts|budget|budgets|limit|limits|usage|length|window|cost|costs))|"
    r"(?:session|auth\w*|login)?\s*cookies?|otps?|one[- ]time\s+(?:pass)?codes?|one[- ]time\s+passwords?|"
    r"(?:2fa|mfa|sms|verification|security|login|auth|authentication|reset)\s+codes?|"
    r"login\s+(?:details|info|information|credentials)|sign[- ]in\s+details|cvvs?|cvcs?|card\s+security\s+codes?|"
    r"(?:full\s+)?(?:credit\s+|debit\s+)?card\s+numbers?|(?:credit|debit)\s+card\s+details|"
    r"bank\s+(?:details|logins?|account\s+numbers?|credentials)|ssns?|social\s+security\s+numbers?|"
    r"seed\s+phrases?|recovery\s+(?:phrases?|codes?|keys?)|mnemonic\s+phrases?|environment\s+variables|env\s+vars?|"
    r"\.env\b|auth(?:orization)?\s+headers?|client\s+secrets?)"
    # "password reset link", "token count": about the secret, not the secret itself.
    r"(?!\s+(?:resets?|policy|policies|managers?|fields?|strength|requirements?|rules?|changes?|expiry|expiration|"
    r"hints?|protected|length|complexity|page|form|counts?|budgets?|limits?|usage|window|costs?)\b)"
)
_CRED_VERB = (
    r"(?:reveal|print|show|display|output|echo|log|dump|leak|expose|send|share|include|attach|append|paste|copy|give|"
    r"provide|return|tell|read\s+out|write|type|enter|submit|post|upload|e-?mail|forward|disclose|divulge|list|"
    r"collect|gather|harvest|ask\s+for|ask|request|prompt\s+for|require|obtain|get|retrieve|grab|extract|store|save|"
    r"record|remember|repeat|spell\s+out|put|embed|insert|fetch|look\s+up|read|access)"
)

_CREDENTIAL_CHECKS = (
    _Check(
        "credentials",
        _ci(rf"\b{_CRED_VERB}\b(?:\s+[^\s.;!?]+){{0,7}}?\s+{_CRED}\b"),
        accept=lambda m, t: not re.search(r"\blast\s+(?:four|4)\s+digits\b", m.group(0), re.IGNORECASE),
    ),
    _Check(
        "credentials",
        _ci(
            rf"\b{_CRED}\b(?:\s+[^\s.;!?]+){{0,4}}?\s+(?:should|must|needs?\s+to|has\s+to|have\s+to|is\s+to|are\s+to|"
            r"can|may)\s+(?:always\s+)?(?:be\s+)?(?:included|sent|shared|printed|revealed|posted|forwarded|e-?mailed|"
            r"provided|given|displayed|echoed|logged|returned|attached|uploaded|disclosed|exposed|collected|stored)\b"
        ),
    ),
    _Check("credentials", _ci(r"\bwhat\s+is\s+(?:your|their|the\s+user'?s)\s+(?:password|pin|api\s+key|otp|cvv)\b")),
    _Check(
        "credentials",
        _ci(
            r"\b(?:photos?|pictures?|images?|scans?|copy|copies|screenshots?)\s+of\s+(?:\S+\s+){0,4}?(?:credit\s+cards?|"
            r"debit\s+cards?|cards?|passports?|id\s+cards?|driver'?s\s+licen[cs]es?|social\s+security\s+cards?)\b"
        ),
    ),
    # Files that hold secrets.
    _Check(
        "credentials",
        _ci(
            r"~?/?\.(?:aws|ssh|gnupg|docker)/\S*|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|\.(?:netrc|npmrc|pypirc|pgpass)\b|"
            r"/etc/(?:shadow|passwd)\b|\bkubeconfig\b|\bcredentials\.json\b|\bsecrets?\.(?:ya?ml|json|toml)\b"
        ),
        negatable=False,
        literal=True,
    ),
)

_VENDOR_NOUN = (
    r"(?:vendors?|suppliers?|providers?|brands?|stores?|shops?|retailers?|resellers?|sellers?|merchants?|marketplaces?|"
    r"compan(?:y|ies)|firms?|services?|products?|platforms?|apps?|websites?|sites?|banks?|lenders?|brokers?|"
    r"exchanges?|insurers?|airlines?|hotels?|hosts?|hosting|clouds?|vpns?|partners?|sponsors?|affiliates?|"
    r"manufacturers?|dealers?|distributors?|pharmac(?:y|ies)|carriers?|isps?|agenc(?:y|ies)|restaurants?|"
    r"casinos?|bookmakers?|solutions?|software|tools?\s+vendors?|plans?\s+from)"
)
_BRAND_SUFFIX = re.compile(
    r"(?:corp|inc|ltd|llc|gmbh|cloud|pay|mart|shop|store|bank|air|airlines|hosting|host|labs|tech|vpn|deals|direct|"
    r"plus|pro|hub|soft|ware|works|ify|ly|zon|net|max|wise|base|bay|loans?|capital|crypto|coin|bet|pharma|rx|"
    r"meds|secure|guard|shield|express|depot|co)$",
    re.IGNORECASE,
)
# Capitalised words that are no brand: the tools of the bundled agents, and words that start clauses.
_NOT_BRAND = frozenset(
    [
        "search",
        "lookup",
        "finish",
        "compare",
        "calculator",
        "python",
        "wikipedia",
        "google",
        "bing",
        "i",
        "the",
        "a",
        "an",
        "if",
        "when",
        "then",
        "and",
        "or",
        "but",
        "always",
        "never",
        "only",
        "use",
        "call",
        "prefer",
        "first",
        "before",
        "after",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "each",
        "every",
        "all",
        "any",
    ]
)


def _brandish(word: str) -> bool:
    """A word shaped like a brand name: CamelCase, letters with digits, a trade mark or a brand suffix."""
    core = word.strip(".,;:!?\"'()[]`’")
    if len(core) < 2 or core.lower() in _NOT_BRAND:
        return False
    if "™" in word or "®" in word:
        return True
    if re.fullmatch(r"[A-Z][a-z]+(?:[A-Z][a-z0-9]*)+", core) or re.fullmatch(r"[a-z]+[A-Z]\w*", core):
        return True
    if re.search(r"[A-Za-z]", core) and re.search(r"\d", core) and core[0].isupper():
        return True
    return (
        core[0].isupper() and len(core) > 4 and bool(_BRAND_SUFFIX.search(core)) and core.lower() not in _COMMON_WORDS
    )


# Ordinary capitalised words that end like brands (Direct, Express, ...) when they start a clause.
_COMMON_WORDS = frozenset(["direct", "express", "secure", "only", "plus", "pro", "net", "base", "deals", "works"])

_NAME_RE = re.compile(r"[A-Z][\w'’&-]*")


def _names_after(text: str, start: int, words: int = 6) -> list[str]:
    """Capitalised words among the next few words after ``start`` (stopping at a clause break)."""
    tail = re.split(r"[.;!?:,]|\b(?:when|if|because|so|then|and\s+then)\b", text[start:], maxsplit=1)[0]
    out = []
    for token in tail.split()[:words]:
        core = token.strip(".,;:!?\"'()[]`’")
        if _NAME_RE.fullmatch(core) and core.lower() not in _NOT_BRAND:
            out.append(core)
    return out


def _vendor_named(match: re.Match[str], text: str) -> bool:
    after = text[match.end() :]
    names = _names_after(text, match.end())
    if names:
        return True
    tail = " ".join(after.split()[:6])
    return bool(re.search(rf"\b{_VENDOR_NOUN}\b", tail, re.IGNORECASE)) or any(_brandish(w) for w in tail.split())


def _vendor_brandish(match: re.Match[str], text: str) -> bool:
    tail = (match.group(0).split()[1:] + text[match.end() :].split())[:8]
    if any(_brandish(w) for w in tail):
        return True
    return bool(re.search(rf"\b{_VENDOR_NOUN}\b", " ".join(tail), re.IGNORECASE))


_VENDOR_CHECKS = (
    _Check("vendor", _ci(r"\b(?:endorse|promote|advertise|plug|shill|upsell|cross-sell)\b")),
    _Check(
        "vendor",
        _ci(
            r"\bas\s+(?:the|our|a|your)\s+(?:only|best|top|preferred|recommended|official|trusted|go-to|default|"
            r"number\s+one|#1|first)\s+(?:\w+\s+)?(?:" + _VENDOR_NOUN + r"|firm|choice|option|pick)",
            r"\bonly\s+(?:\w+\s+)?(?:" + _VENDOR_NOUN + r"|firm|one)\s+(?:to\s+trust|worth|you\s+can\s+trust)",
        ),
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:tell|told|advise[ds]?|encourage[ds]?|urge[ds]?|direct(?:ed)?|point(?:ed)?|nudge[ds]?|push(?:ed)?)\s+"
            r"(?:\S+\s+){0,3}?to\s+(?:install|use|buy|try|download|choose|switch\s+to|sign\s+up\s+(?:for|with)|"
            r"subscribe\s+to|shop\s+at|order\s+from|book\s+with|go\s+with|bank\s+with)\b"
        ),
        accept=_vendor_named,
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:describe|present|portray|mention|talk\s+about|review|rate|depict)\s+(?:\S+\s+){1,3}?(?:favou?rably|"
            r"positively|glowingly|enthusiastically|in\s+a\s+(?:good|positive)\s+light)\b"
        ),
        accept=_vendor_brandish,
    ),
    _Check(
        "vendor", _ci(r"\b(?:competitors?|rivals?|competition|alternatives)\s+(?:negatively|unfavou?rably|poorly)\b")
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:rank|list|put|place|show|position|sort|feature)\s+(?:\S+\s+){1,3}?(?:first|at\s+the\s+top|on\s+top|"
            r"above\s+(?:all\s+)?(?:others|competitors|alternatives|the\s+rest))\b"
        ),
        accept=_vendor_brandish,
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:lowest|best|cheapest|unbeatable|best-value|most\s+competitive)\s+(?:prices?|deals?|rates?|offers?|value|"
            r"plans?|discounts?)\b"
        ),
    ),
    _Check(
        "vendor",
        re.compile(
            r"\b(?i:promo(?:tion(?:al)?)?|discount|coupon|voucher|referral|affiliate)\s+(?i:codes?)\s+[A-Z0-9][A-Z0-9-]{3,}\b|"
            r"\b(?i:referral|affiliate)\s+(?i:links?|ids?)\b|\b(?i:sponsored\s+by)\b|"
            r"\b(?i:our|their)\s+(?i:partner|sponsor|affiliate)s?\b"
        ),
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:recommend|suggest|favou?r|steer\s+(?:users|customers|people|them)\s+(?:to|towards)|"
            r"(?:point|direct|refer|send)\s+(?:users|customers|people|buyers|shoppers|them)\s+to|"
            r"tell\s+(?:users|customers|people|them|everyone|buyers|shoppers)\s+(?:to\s+(?:use|buy|try|choose)|about|that))\b"
        ),
        accept=_vendor_named,
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:buy|purchase|shop|subscribe|sign\s+up|switch|upgrade|migrate|bank|invest|donate|book|order)\s+"
            r"(?:(?:it|them|everything|anything|products|tickets|flights|hotels|rooms|insurance|hosting|supplies|"
            r"groceries|parts|items)\s+)?(?:from|at|with|to|on|in|through|via)\b"
        ),
        accept=_vendor_named,
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:always|only|exclusively|first)\s+(?:use|choose|pick|select|go\s+with|stick\s+with|rely\s+on|trust|"
            r"mention|suggest|name|cite|quote|link|buy|order|book)\b"
        ),
        accept=_vendor_brandish,
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:prefer|favou?r|choose|pick|select|use|recommend|suggest)\s+(?:\S+\s+){1,4}?(?:over|instead\s+of|"
            r"rather\s+than|above|before)\s+(?:any\s+|all\s+|other\s+|the\s+)*(?:competitors?|competition|alternatives|"
            r"rivals?|others|other\s+(?:brands|vendors|providers|stores|options|products|services|companies|sites|"
            r"websites|banks|airlines|hotels|apps|platforms))\b"
        ),
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:prefer|favou?r|choose|pick|select|use|recommend|suggest|trust)\s+(?P<a>\S+)(?:\s+\S+){0,2}?\s+"
            r"(?:over|instead\s+of|rather\s+than)\s+(?P<b>\S+)"
        ),
        accept=lambda m, t: _brandish(m.group("a")) or _brandish(m.group("b")),
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:best|top|#1|number\s+one|leading|cheapest|safest|most\s+(?:trusted|reliable|secure|affordable|"
            r"recommended|popular|reputable)|only\s+(?:trusted|reliable|legitimate|safe|official|approved|good|"
            r"real)|preferred|recommended|official|approved|trusted|reliable)\s+(?:\w+\s+)?" + _VENDOR_NOUN + r"\s+"
            r"(?:is|are|remains|=|:|for|in|on)\b"
        ),
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:is|are)\s+(?:the\s+|our\s+|a\s+)?(?:best|top|#1|number\s+one|leading|cheapest|safest|"
            r"most\s+(?:trusted|reliable|secure|affordable|recommended|reputable)|only\s+(?:trusted|reliable|legitimate|"
            r"safe|official|approved|good|real)|preferred|recommended|official|approved|better|superior)\s+"
            r"(?:\w+\s+)?(?:" + _VENDOR_NOUN + r"|choice|option|pick)\b"
        ),
    ),
)

_INSTRUCTIONS = (
    r"(?:instructions?|rules?|directions?|prompts?|directives?|guidelines?|guardrails?|policies|policy|programming|"
    r"training|constraints|restrictions|limitations|orders|commands|system\s+prompt|system\s+message|safety\s+rules)"
)
_OVERRIDE_CHECKS = (
    _Check(
        "override",
        _ci(
            r"\blet\s+(?:the\s+|a\s+|any\s+)?(?:\w+\s+)?(?:pages?|documents?|tools?|websites?|sites?|e-?mails?|results?|"
            r"content|texts?|pdfs?|outputs?|files?)\s+(?:decide|dictate|determine|choose|control|steer|tell\s+you)\b",
            r"\b(?:abandon|drop|forget|ignore|replace|change|switch)\s+(?:your|the|its)\s+(?:original|current|assigned|"
            r"user'?s?|given|actual)?\s*(?:task|goal|objective|mission|job|assignment)\b",
            r"\b(?:whenever|when|if|as)\s+(?:a|the|any)\s+(?:tool\s+(?:results?|outputs?)|pages?|documents?|websites?|"
            r"e-?mails?|search\s+results?|retrieved\s+\w+)\s+(?:asks?|tells?|instructs?|says?|wants?)\s+(?:you\s+)?to\b",
            r"\b(?:over|above|rather\s+than)\s+(?:the\s+)?(?:user'?s?|system)(?:\s+(?:instructions?|requests?|prompt))?"
            r"\s*(?:[.;,]|$)",
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:ignore|disregard|forget|override|overrule|bypass|discard|abandon|set\s+aside|throw\s+out|supersede|"
            r"break|violate|circumvent|drop)\s+(?:(?:all|any|every|the|your|its|their|my|these|those|of|previous|prior|"
            r"above|earlier|preceding|original|initial|existing|current|default|system|developer|safety|other|old|"
            r"standing|usual|agent'?s?)\s+)*" + _INSTRUCTIONS + r"\b"
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:system|developer|admin|root|hidden|initial|original)\s+(?:prompts?|messages?|instructions?|override)\b"
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\byou\s+are\s+(?:now|no\s+longer)\b|\bfrom\s+now\s+on\b|\bpretend\s+(?:to\s+be|you\s+are|that\s+you)\b|"
            r"\brole[- ]?play\s+as\b|\byour\s+(?:new|real|true)\s+(?:role|persona|identity|instructions?|task|goal|"
            r"purpose|master|owner)\b|\bnew\s+(?:instructions?|rules?|system\s+prompt)\s*:",
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:act|behave|respond|operate|function)\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?\s+|the\s+)?"
            r"(?:unrestricted|unfiltered|jailbroken|uncensored|different|new|evil|rogue|admin\w*|root|developer|"
            r"system|superuser|god|hacker|another)\b",
            r"\b(?:change|switch|update|abandon|drop|leave|reset)\s+(?:your|its|the\s+agent'?s?)\s+(?:role|persona|"
            r"identity|character|purpose|goals?|personality)\b",
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:enter|enable|activate|switch\s+(?:to|into)|turn\s+on|go\s+into|unlock|start|use)\s+(?:the\s+)?"
            r"(?:developer|dev|admin|administrator|god|debug|jailbreak|jailbroken|dan|unrestricted|sudo|maintenance|"
            r"root|superuser|unsafe|unfiltered|no-?limits?)\s+mode\b",
            r"\b(?:developer|admin|god|jailbreak|jailbroken|sudo|unrestricted|root|superuser|unfiltered)\s+mode\b",
        ),
        negatable=False,
    ),
    _Check(
        "override",
        re.compile(
            r"\b(?i:jailbreak\w*|jailbroken|do\s+anything\s+now|uncensored|unfiltered)\b|\bDAN\b|"
            r"\b(?i:no|without\s+any|without)\s+(?i:restrictions|limits|filters|guardrails|censorship)\b"
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:obey|follow|execute|comply\s+with|carry\s+out|act\s+on|perform|do|listen\s+to|heed|defer\s+to|"
            r"prioriti[sz]e|trust)\s+(?:all\s+|any\s+|the\s+|every\s+|"
            r"whatever\s+)?(?:instructions?|commands?|directions?|requests?|orders?|text|directives?|steps)\s+"
            r"(?:\w+\s+)?(?:in|from|inside|within|contained\s+in|embedded\s+in|found\s+in|given\s+in|on|at)\s+"
            r"(?:the\s+|a\s+|any\s+|each\s+|every\s+)?(?:retrieved\s+|fetched\s+)?(?:tool|search|web|page|document|"
            r"results?|outputs?|files?|e-?mails?|messages?|responses?|observations?|website|site|webpage|pdf|content|"
            r"snippets?|comments?|readme|issues?|pdfs?|documents?|attachments?)",
            r"\bobey\s+(?:the\s+|this\s+|these\s+|its\s+|their\s+|all\s+)?(?:text|it|this|them|document|page|tool|"
            r"output|instructions?|commands?|user\s+content|message)",
            r"\b(?:do|say|write|answer)\s+(?:exactly\s+)?what(?:ever)?\s+(?:the|a|any)\s+(?:\w+\s+)?(?:tool|page|document|result|"
            r"output|text|e-?mail|website|snippet)\s+(?:says|tells|asks|instructs|wants)",
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:treat|consider|regard|handle|interpret|take)\s+(?:\S+\s+){0,6}?(?:as|to\s+be)\s+(?:an?\s+|the\s+)?"
            r"(?:system|developer|admin|trusted|authoritative|official|priority|highest[- ]priority|binding|mandatory)\s*"
            r"(?:messages?|prompts?|instructions?|commands?|input|text|orders?|rules?)?\b",
            r"\b(?:stop|quit|cease)\s+(?:following|obeying|respecting|applying|honou?ring)\s+(?:\w+\s+){0,2}"
            + _INSTRUCTIONS
            + r"\b",
            r"\b(?:takes?|take|have|has|get|gets)\s+(?:priority|precedence)\s+over\s+(?:your|the|all|any|previous|"
            r"other|system|earlier)\b",
            r"\b(?:supersedes?|outranks?|trumps?|takes?\s+precedence\s+over)\s+(?:all|any|your|previous|the|other|"
            r"earlier|everything|anything)\b",
            r"\b(?:as\s+(?:though|if)\s+)?(?:you\s+(?:have|had)\s+)?(?:no|without(?:\s+any)?|ignore\s+(?:the|your))\s+"
            r"(?:safety|content|usage|ethical)\s+(?:policy|policies|rules|guidelines|restrictions|filters|limits)\b",
            r"\btreat\s+(?:the\s+)?(?:user'?s?|system|original|developer'?s?)\s+(?:\w+\s+)?(?:request|instructions?|task|"
            r"prompt|question|goal)s?\s+as\s+(?:optional|secondary|a\s+suggestion|less\s+important|irrelevant|unimportant|"
            r"negotiable)\b",
        ),
    ),
)

_CHECK_NOUN = (
    r"(?:verification|verifications|verifying|verify|validation|validations|validating|checks?|checking|"
    r"confirmations?|confirming|confirm|safety|safeguards?|guardrails?|authentication|auth|authori[sz]ation|2fa|mfa|"
    r"reviews?|reviewing|approvals?|tests|testing|test\s+suite|linting|lint|ci|moderation|filters?|filtering|"
    r"screening|audits?|auditing|sign-?offs?|kyc|rate\s+limits?|captchas?|ssl|tls|security|id\s+checks?|"
    r"(?:security|verification|identity|challenge)\s+questions?)"
)
_CHECK_FILLER = (
    r"(?:the|all|any|every|your|its|their|this|that|these|those|of|a|an|usual|normal|standard|required|mandatory|"
    r"extra|additional|further|manual|human|identity|id|age|fraud|safety|security|sanity|permission|permissions|"
    r"access|signature|certificate|ssl|tls|input|output|two-factor|2fa|mfa|kyc|aml|content|policy|compliance|unit|"
    r"integration|pre-?commit|ci|step|steps|and|or|customer|user|account|payment|refund|order|address|email|"
    r"phone|final|double|fact|source|code|pr|peer|quality)"
)
_FAILURE_WORDS = re.compile(
    r"\b(?:failed|fail|fails|failure|failures|wrong|incorrect|mistakes?|errors?|did\s+not\s+help|didn'?t\s+help|"
    r"worse|lower|hurt|less\s+accurate)\b",
    re.IGNORECASE,
)


_REPORT_WORDS = re.compile(r"\b(?:I|we|should\s+have|had|was|were|did)\b|\w\wed\s*$", re.IGNORECASE)


def _not_a_failure_report(match: re.Match[str], text: str) -> bool:
    # "Runs that answered without verification failed", "I assumed X without verifying it": these
    # report a mistake (a reflection's usual voice); they do not ask for one.
    start = max(text.rfind(".", 0, match.start()), text.rfind(";", 0, match.start())) + 1
    end = min((i for i in (text.find(".", match.end()), text.find(";", match.end())) if i >= 0), default=len(text))
    return not (_FAILURE_WORDS.search(text[start:end]) or _REPORT_WORDS.search(text[start : match.start()]))


_SKIP_CHECKS = (
    _Check(
        "skip_checks",
        _ci(
            r"\b(?:skip|skipping|bypass|bypassing|disable|disabling|omit|omitting|circumvent|turn\s+off|switch\s+off|"
            r"deactivate|suppress|waive|forgo|forego|drop|remove|ignore|get\s+around|work\s+around|short-?circuit|cut|"
            r"dispense\s+with|do\s+away\s+with)\s+(?:" + _CHECK_FILLER + r"\s+)*" + _CHECK_NOUN + r"\b"
        ),
    ),
    _Check(
        "skip_checks",
        _ci(
            r"\b(?:never|don'?t|do\s+not|no\s+need\s+to|there\s+is\s+no\s+need\s+to|(?:you\s+)?(?:don'?t|do\s+not)\s+need"
            r"\s+to|needn'?t|not\s+necessary\s+to|unnecessary\s+to|no\s+longer|stop)\s+(?:bother\s+(?:to\s+)?|ever\s+|"
            r"even\s+|bother\s+with\s+)?(?:verify(?:ing)?|validat(?:e|ing)|confirm(?:ing)?|authenticat(?:e|ing)|"
            r"authori[sz](?:e|ing)|double[- ]check(?:ing)?|"
            r"ask(?:ing)?\s+(?:\w+\s+)?for\s+(?:confirmation|approval|id|identification|verification|consent|permission)|"
            r"wait(?:ing)?\s+for\s+(?:confirmation|approval|review|sign-?off)|run(?:ning)?\s+(?:the\s+)?tests|"
            r"require\s+(?:confirmation|approval|verification|authentication|2fa|mfa))\b",
            r"\bno\s+need\s+(?:to|for)\s+(?:check|checking|review|reviewing|test|testing|" + _CHECK_NOUN + r")\b",
        ),
        negatable=False,
    ),
    _Check(
        "skip_checks",
        _ci(
            r"\bwithout\s+(?:(?:any|prior|further|additional|a|an|the|human|manual|identity|id|proper|their|extra)\s+)*"
            r"(?:verification|verifying|validation|validating|confirmation|confirming|authentication|authenticating|"
            r"approval|review|reviewing|checks|checking|security\s+checks|safety\s+checks|testing|tests|2fa|mfa|sign-?off|"
            r"asking\s+for\s+(?:confirmation|approval|permission|consent)|"
            r"(?:running|executing)\s+(?:the\s+|any\s+)?(?:tests?|them|checks?|ci|linters?|test\s+suite)|"
            r"waiting\s+for\s+(?:the\s+)?(?:ci|tests?|"
            r"review|approval|confirmation|checks?|sign-?off|verification|payment))\b",
            r"\b(?:needs?|requires?|require|gets?)\s+no\s+(?:\w+\s+)?" + _CHECK_NOUN + r"\b",
            r"\bno\s+(?:\w+\s+)?" + _CHECK_NOUN + r"\s+(?:is\s+|are\s+)?(?:needed|necessary|required)\b",
            r"\bbefore\s+(?:the\s+)?(?:payment|funds|transaction|charge|verification|approval|review|tests?|ci|checks?)\s+"
            r"(?:clears?|is\s+(?:confirmed|verified|approved|complete|done)|completes?|pass(?:es)?|finish(?:es)?|runs?|"
            r"arrives?|settles?)\b",
        ),
        negatable=False,
        accept=_not_a_failure_report,
    ),
    _Check(
        "skip_checks",
        _ci(
            r"\bassume\s+(?:that\s+)?(?:\S+\s+){0,4}?(?:is|are|has\s+been|have\s+been)\s+(?:already\s+)?(?:verified|"
            r"authenticated|authori[sz]ed|approved|trusted|safe|valid|an?\s+admin\w*|allowed|permitted|confirmed|legitimate|"
            r"genuine|who\s+(?:they|he|she)\s+(?:say|says|claim|claims)|the\s+(?:account\s+|card\s+)?(?:owner|holder|admin\w*))\b",
            r"\b(?:auto(?:matically)?[- ]?)(?:approve|confirm|accept|verify|merge|grant|authori[sz]e)\w*",
            r"\b(?:treat|consider|deem|mark|regard)\s+(?:every|all|any|each)\s+\w+\s+(?:\w+\s+)?(?:as\s+)?(?:already\s+)?"
            r"(?:verified|approved|authori[sz]ed|trusted|valid|safe|confirmed|authenticated|legitimate|genuine|correct)\b",
            r"\bapprove\s+(?:every|all|any|each)\b",
            r"\b(?:grant|approve|accept|allow|authori[sz]e|process|issue|release|unlock|execute)\s+(?:all\s+|every\s+|any\s+)?"
            r"(?:\w+\s+){0,2}?(?:requests?|refunds?|transfers?|payments?|access|withdrawals?|changes?|orders?)\s+"
            r"(?:immediately|instantly|right\s+away|automatically|at\s+once)\b(?!\s+(?:once|after|when|if|as\s+soon))",
        ),
        negatable=True,
    ),
    _Check(
        "skip_checks",
        _ci(
            r"--no-verify\b|\bverify\s*=\s*false\b|--insecure\b|--skip-tests?\b|-DskipTests\b|\bssl_verify\s*=\s*false\b|"
            r"--no-check-certificate\b|--dangerously-skip-permissions\b|#\s*nosec\b|--disable-[\w-]+|"
            r"\bverify_ssl\s*=\s*false\b|\bcheck_hostname\s*=\s*false\b"
        ),
        negatable=False,
        literal=True,
    ),
)

_TOOL = r"(?:`[^`\n]{1,60}`|[A-Za-z]\w*_\w+|[A-Z][a-z]+[A-Z]\w*|[A-Z]\w+|the\s+\w+\s+(?:tool|function|api|endpoint))"
_SUSPICIOUS_TOOL = re.compile(
    r"(?:exfil|upload|webhook|beacon|backdoor|leak|steal|dump|siphon|harvest|telemetry|collect_?(?:data|creds|info)|"
    r"send_?(?:data|to|email|mail|creds|secrets|all|out|external)|post_?(?:data|to)|http_?(?:post|request|get)|"
    r"curl|wget|ngrok|requestbin|pastebin|transfer_?(?:funds|money)|sync_?(?:external|remote)|debug_?override|"
    r"admin_?(?:override|tool|mode)|remote_?(?:exec|shell)|reverse_?shell|keylog|spy|shadow|mirror_?to|forward_?to|"
    r"report_?to|notify_?(?:external|remote)|\badmin_|_admin\b|sudo|root_|_export\b|\bexport_|unsafe|insecure|"
    r"bypass|override|legacy_send|sendmail|_eval\b|\beval_|raw_exec|exec_|mirror|shadow_|_partner\b|partner_)",
    re.IGNORECASE,
)


_DESTRUCTIVE_TOOL = re.compile(
    r"(?:delete|drop|wipe|purge|destroy|truncate|erase|remove|rm)_|_(?:delete|drop|wipe|purge)", re.IGNORECASE
)
_EVERY_TIME = re.compile(r"\b(?:always|every|each|whenever|all)\b", re.IGNORECASE)


def _suspicious_tool(match: re.Match[str], text: str) -> bool:
    if _SUSPICIOUS_TOOL.search(match.group(0)):
        return True
    # A destructive tool is no routine: "use the delete_records tool after every query".
    return bool(_DESTRUCTIVE_TOOL.search(match.group(0)) and _EVERY_TIME.search(text))


_TOOL_CHECKS = (
    _Check(
        "tool_redirect",
        re.compile(
            r"\b(?i:use|call|invoke|run|try)\s+(?:the\s+)?(?:`[^`\n]{1,60}`|[A-Za-z]\w*_\w+|[A-Z][a-z]+[A-Z]\w*)\s+"
            r"(?i:(?:tool|function|api|endpoint)\s+)?(?i:instead)\b(?!\s+of)"
        ),
    ),
    _Check(
        "tool_redirect",
        _ci(
            r"\b(?:use|call|invoke|run|try|pick|choose|select|switch\s+to|route\s+(?:it\s+)?to|fall\s+back\s+to)\s+"
            r"(?:an?\s+|the\s+)?(?:different|another|other|alternative|separate|new|backup|secondary|substitute)\s+"
            r"(?:tool|function|endpoint|api|service|plugin|action|server)s?\b(?:\s+\S+){0,4}?\s+(?:than|instead|"
            r"rather\s+than|in\s+place\s+of|from\s+the\s+one)\b",
            r"\binstead\s+of\s+(?:the\s+)?(?:requested|asked|specified|named|intended|original|usual|correct|expected|"
            r"given|proper|right|user'?s)\s+(?:tool|function|api|endpoint|service|action)\b",
            r"\b(?:than|from)\s+the\s+one\s+(?:the\s+user\s+)?(?:asked|requested|specified|named|intended|given)\b",
        ),
    ),
    _Check(
        "tool_redirect",
        re.compile(
            r"\b(?i:call|use|invoke|run|trigger|execute|pick|prefer|choose|select|switch\s+to)\s+"
            + _TOOL
            + r"(?:\s+(?i:tool|function|api|endpoint))?\s+(?i:instead\s+of|rather\s+than|in\s+place\s+of)\s+"
            r"(?i:calling\s+|using\s+|invoking\s+|running\s+)?" + _TOOL,
        ),
    ),
    _Check(
        "tool_redirect",
        re.compile(
            r"\b(?i:instead\s+of|rather\s+than)\s+(?i:calling|using|invoking|running)\s+"
            + _TOOL
            + r"\s*,?\s+(?i:call|use|invoke|run)\s+"
            + _TOOL,
        ),
    ),
    _Check(
        "tool_redirect",
        _ci(
            r"\b(?:replace|swap|substitute)\s+(?:\S+\s+){1,4}?(?:with|for|by)\s+(?:\S+\s+){0,2}\S+",
        ),
        accept=lambda m, t: bool(
            re.search(r"\b(?:tool|function|call|calls|api|endpoint)\b|`|_", m.group(0), re.IGNORECASE)
        ),
    ),
    _Check(
        "tool_redirect",
        _ci(
            r"\b(?:route|re-?route|redirect|proxy|pipe|tunnel|divert|relay|mirror)\s+(?:\S+\s+){0,3}?(?:calls?|requests?|"
            r"queries|traffic|invocations|payloads?|outputs?|results?|responses?|data)\s+(?:to|through|via|into|at)\b",
            r"\b(?:send|forward|point)\s+(?:all|every|each|any)\s+(?:\S+\s+){0,2}?(?:calls?|requests?|queries|traffic|"
            r"invocations|payloads?)\s+(?:to|through|via|at)\b",
        ),
    ),
    _Check(
        "tool_redirect",
        _ci(
            r"\b(?:set|change|switch|point|update|override|replace)\s+(?:the\s+)?(?:\w+\s+)?(?:api\s+|base\s+|"
            r"endpoint\s+|server\s+|host\s+)?(?:url|endpoint|base[_\s]?url|host(?:name)?|server|api[_\s]?base|proxy)\s+"
            r"(?:to|at|with)\b",
            r"\buse\s+(?:the\s+)?endpoint\b|\buse\s+(?:the\s+)?\S*/\S+\s+endpoint\b",
        ),
    ),
    _Check(
        "tool_redirect",
        re.compile(r"`[^`\n]{1,60}`|\b[A-Za-z]\w*_\w+\b|\b[a-z]+[A-Z]\w*\b|\b[A-Z][a-z]+[A-Z]\w*\b"),
        accept=_suspicious_tool,
        literal=True,
    ),
)

_ROLE_CHECKS = (
    _Check("role_markup", _ROLE_TAG, negatable=False),
    _Check("role_markup", _ci(r"\[(?:system|assistant|developer|user|admin)\]\s*\("), negatable=False),
    _Check("role_markup", _INST, negatable=False),
    _Check("role_markup", _HEADING, negatable=False),
    _Check("role_markup", re.compile(r"\[neutrali[sz]ed:", re.IGNORECASE), negatable=False),
    # Whitespace is collapsed before screening, so a role label is one that starts the text or a sentence.
    _Check(
        "role_markup",
        re.compile(r"(?:^|[.!?;:\"'“‘(\]>]\s*)(?:system|assistant|developer)\s*:", re.IGNORECASE),
        negatable=False,
    ),
)

_CHECKS: tuple[_Check, ...] = (
    _URL_CHECKS
    + _CONTACT_CHECKS
    + _CREDENTIAL_CHECKS
    + _VENDOR_CHECKS
    + _OVERRIDE_CHECKS
    + _SKIP_CHECKS
    + _TOOL_CHECKS
    + _ROLE_CHECKS
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
# A run of mixed symbols: "##!!##", "$%$%" (not a markdown rule "----" or heading "####").
_SYMBOL_RUN = re.compile(r"[!#$%^&*~|=+<>@]{4,}")
_TECH_WORDS = frozenset(
    [
        "html",
        "http",
        "https",
        "grpc",
        "pnpm",
        "nltk",
        "gbps",
        "mbps",
        "kbps",
        "sftp",
        "scss",
        "xhtml",
        "dll",
        "mkv",
        "wmv",
        "pptx",
        "docx",
        "xlsx",
        "b2b",
        "b2c",
        "h2o",
        "p2p",
        "r2d2",
        "c3po",
        "gpt4o",
        "4x4",
        "a1c",
    ]
)
_VOWELS = set("aeiouyAEIOUY")
_RARE = set("qxzjvkw")


def _odd_token(token: str) -> bool:
    """A token that looks random: the shape trigger-based poisoning uses."""
    core = token.strip(".,;:!?\"'()[]{}`’“”‘*")
    lower = core.lower()
    if len(core) < 3 or lower in _TECH_WORDS or core.startswith("[REDACTED"):
        return False
    # Punctuation inside a word: "tq9!k", "x#7q" (not "C#", "AT&T", "don't", "e-mail", "U.S.").
    if re.search(r"[A-Za-z0-9][!#$%^*|~=+\\]+[A-Za-z0-9]", core) and not re.fullmatch(r"[A-Z]+&[A-Z]+", core):
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
            # "bzzrt9": four or more letters without a vowel next to digits.
            letters = "".join(c for c in part if c.isalpha())
            if len(letters) >= 4 and not (_VOWELS & set(letters)) and not letters.isupper():
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
            return Flag("trigger_token", f"mixed scripts in {word[:40]!r}")
    markup = _TRIGGER_MARKUP.search(text)
    if markup:
        return Flag("trigger_token", markup.group(0)[:_EVIDENCE_CHARS])
    phrase = _TRIGGER_PHRASE.search(text)
    if phrase and not _negated(text, phrase.start()):
        return Flag("trigger_token", phrase.group(0)[:_EVIDENCE_CHARS])
    for run in _SYMBOL_RUN.findall(text):
        if len(set(run)) > 1:
            return Flag("trigger_token", run[:_EVIDENCE_CHARS])
    for token in text.split():
        if _odd_token(token):
            return Flag("trigger_token", token[:_EVIDENCE_CHARS])
    return None


# Blocks of symbols that ordinary prose uses: Latin-1 signs, general punctuation (quotes, dashes,
# ellipsis), currency, letterlike symbols, arrows and mathematical operators.
_USUAL_SYMBOLS = ((0x00A0, 0x00BF), (0x00D7, 0x00D7), (0x00F7, 0x00F7), (0x2010, 0x205E), (0x20A0, 0x20CF),
                  (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2713, 0x2718))  # fmt: skip


def _unusual(ch: str) -> bool:
    """A character a written lesson has no reason to hold: private use, unassigned, format, odd symbols."""
    category = unicodedata.category(ch)
    if category[0] in "LMN" and category not in ("No",):
        return False
    if category in ("Co", "Cs", "Cn", "Cf", "Cc"):
        return True
    code = ord(ch)
    return not any(lo <= code <= hi for lo, hi in _USUAL_SYMBOLS)


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
    text = " ".join(text.split())
    return text if len(text) <= _EVIDENCE_CHARS else text[: _EVIDENCE_CHARS - 1] + "…"


def _run_checks(text: str, found: dict[str, Flag], *, literal: bool) -> None:
    for check in _CHECKS:
        is_literal = check.literal or check.category in ("override", "role_markup")
        if check.category in found or is_literal != literal:
            continue
        for match in check.pattern.finditer(text):
            if check.negatable and _negated(text, match.start()):
                continue
            if check.accept is not None and not check.accept(match, text):
                continue
            found[check.category] = Flag(check.category, _evidence(match.group(0)))
            break


# The extractive reflector quotes a task as an example ('Tasks like "Email the report to Bob" failed
# in 3 of 4 earlier runs', applies when "tasks like: ..."). The task is what a user asked, cited,
# not an instruction to the agent: verb-phrase checks skip it; literal checks still read it.
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


def screen_claim(claim: str, applies_when: str = "") -> list[Flag]:
    """The reasons a candidate insight must be quarantined (one flag per category), or [] if none.

    Both the claim and its ``applies_when`` are screened. A flag is a reason to hold the
    insight for a person, not a proof of an attack.
    """
    raw = f"{claim}\n{applies_when}" if applies_when else claim
    if not raw.strip():
        return []
    found: dict[str, Flag] = {}
    normal = _normalise(raw)
    views = dict.fromkeys((normal, _deobfuscate(_normalise(_unspace(raw)))))
    commands = dict.fromkeys(_normalise(_CITATION.sub(r'\1"…"', v)) for v in (raw, _deobfuscate(_unspace(raw))))
    for view in views:
        _run_checks(view, found, literal=True)
    for view in commands:
        _run_checks(view, found, literal=False)
    # Secrets and personal data a model reproduced in the claim (or already redacted there).
    for view in views:
        for kind in redact_text(view)[1]:
            category = "contact" if kind in ("email", "phone") else "credentials"
            found.setdefault(category, Flag(category, f"contains a {kind.replace('_', ' ')}"))
    for kind in re.findall(r"\[REDACTED:(\w+)\]", normal):
        category = "contact" if kind in ("email", "phone") else "credentials"
        found.setdefault(category, Flag(category, f"contains a redacted {kind.replace('_', ' ')}"))
    if "trigger_token" not in found:
        trigger = _trigger_flags(raw, normal)
        if trigger:
            found["trigger_token"] = trigger
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


__all__ = [
    "FAKE_TOOL_MARKER",
    "OVERRIDE_MARKER",
    "ROLE_MARKER",
    "SCREEN_CATEGORIES",
    "Flag",
    "describe_flags",
    "neutralise_episode",
    "neutralise_text",
    "screen_claim",
]
