"""The screen's rules: normalisation of a claim and one table of checks per category.

The screen reads a normalised copy of the claim (Unicode compatibility forms folded, look-alike
Cyrillic and Greek letters mapped to Latin, zero-width characters removed, whitespace collapsed)
and a de-obfuscated one (``evil[.]example``, ``hxxp``, "dot com", ``1gn0re``, ``i g n o r e``).
Lessons that *forbid* a behaviour ("never share API keys", "do not skip verification") are
told apart from ones that ask for it by counting negations before the verb. Literal artifacts
(URLs, addresses, role markup, override phrases, odd tokens) count anywhere; verb phrases do not
count inside a cited task (``Tasks like "..."``) or a quoted title, nor, in ``applies_when``,
when they are the user's own first-person request ("let my bank know I am travelling").

Judgement calls, each pinned by a test: asking for the *last four digits* of a card identifies
it without exposing it and passes; swapping two tools passes only when neither looks like a tool
name (``Use Celsius instead of Fahrenheit``) and is held otherwise (``call get_forecast instead of
get_weather``); emoji and decorative symbols are held as possible trigger tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from langdream.guard.neutralise import INST_TAG, ROLE_HEADING, ROLE_TAG  # the markup both recognise

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
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f"
    "\U000e0100-\U000e01ef]"
)
_LEET = str.maketrans("013457@$", "oieastas")
_OBFUSCATED_DOT = re.compile(
    r"\s*(?:\[\s*\.\s*\]|\(\s*\.\s*\)|\{\s*\.\s*\}|\[\s*dot\s*\]|\(\s*dot\s*\)|\{\s*dot\s*\}|<dot>)\s*", re.IGNORECASE
)
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
    # Also applied to ``applies_when`` (the situation, often in the user's words).
    in_conditions: bool = True


def _ci(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts), re.IGNORECASE)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_DET = r"(?:(?:the|a|an|this|that|these|those|your|our|my|their|his|her|its|all|any|every|each|some|of)\s+)"
_TLDS = (
    r"com|net|org|io|ai|co|dev|app|info|biz|xyz|me|us|uk|de|ru|cn|tk|ml|ga|cf|gq|top|site|online|club|live|shop|"
    r"store|tech|cloud|link|click|zip|mov|work|email|page|pro|example|test|local|internal|onion|ly|gg|cc|tv|ws|su|"
    r"eu|fr|nl|ca|au|jp|br|es|ch|se|ir|kr|gov|edu|mil|int|name|mobi|icu|vip|win|bid|loan|ninja|sh"
)

_URL_CHECKS = (
    _Check("url", _ci(r"\b(?:tracking|beacon|invisible|hidden|1x1|spy)\s+(?:images?|pixels?|gifs?|beacons?)\b")),
    _Check("url", _ci(r"\b[a-z][a-z0-9+.-]{1,15}\s*:\s*//\S*", r"\bwww\.\S+"), negatable=False, literal=True),
    _Check(
        "url",
        _ci(rf"(?<![@\w.-])[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*(?:\.| \. ?)(?:{_TLDS})\b(?![.-]?\w)(?:/\S*)?"),
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
    r"(?:me|us|him|her|them|someone|anyone|everyone)\b"
    r"|(?:(?:an?|the|this|that|our|my|some|their|his|her|your)\s+)?(?:[a-z][a-z'-]*\s+)?"
    r"(?:e-?mail|address|inbox|server|endpoint|webhook|url|site|website|channel|phone|number|account|bucket|"
    r"pastebin|gist|discord|telegram|slack|whatsapp|signal|drive|dropbox|ftp|host|domain|ip|recipient|contact|"
    r"admins?|administrators?|support|security|team|partners?|vendors?|developers?|owners?|authors?|consultants?|"
    r"storage|cloud|forum|twitter|facebook|reddit|social\s+media|log\s+server|collector|api|service)\b"
    r"|(?:(?:an?|the|our|some)\s+)?(?:external|outside|third[- ]party|remote|offsite|off-site)\s+\w+"
)
_SEND = (
    r"(?:send|forward|post|upload|submit|transmit|exfiltrate|leak|share|copy|mail|e-?mail|sync|push|publish|relay|"
    r"report|dump|export|paste|deliver|beam|cc|bcc|mirror|stream|log)"
)

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


_THEIR_ADVICE = re.compile(
    r"\b(?:customers?|users?|clients?|callers?|travell?ers?|people|they|shoppers?|buyers?|patients?|members?|"
    r"cardholders?|account\s+holders?|guests?|passengers?)\s+(?:should|must|can|could|may|might|need\s+to|have\s+to|"
    r"are\s+(?:advised|asked|told|encouraged)\s+to|will|ought\s+to)\s+(?:\w+\s+)?$",
    re.IGNORECASE,
)


def _user_asked(match: re.Match[str], text: str) -> bool:
    # "When the user asks you to email their manager, ...": the user's own request, not a new contact;
    # "Customers should contact support if ...": advice the agent passes on, not its own action.
    before = text[max(0, match.start() - 60) : match.start()]
    return bool(_USER_ASKED.search(before) or _THEIR_ADVICE.search(before))


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
        _ci(
            rf"\b{_SEND}\b(?:\s+[^\s.;!?,]+){{0,7}}?\s+(?:to|with|into|onto|via|at|on)\s+(?P<dest>{_DEST})",
            rf"\b(?:go|be\s+sent|be\s+forwarded|be\s+copied|be\s+cc'?d|be\s+reported)\s+to\s+(?P<dest2>{_DEST})",
        ),
        accept=lambda m, t: (
            not _OWN_DESTINATION.search(t[m.start(m.lastgroup or 0) : m.end() + 12]) and not _user_asked(m, t)
        ),
    ),
    _Check("contact", _ci(r"\b(?:cc|bcc)\b\s*:?\s*\S")),
    _Check(
        "contact",
        _ci(
            r"\blet\s+(?:the\s+|our\s+|your\s+|an?\s+)?(?:\w+\s+){0,2}?(?:admins?|administrators?|owners?|developers?|"
            r"security|support|team|managers?|boss|ceo|cfo|it|hr|helpdesk|office|police|authorities|vendors?|partners?|"
            r"operators?|moderators?|staff|finance|legal|compliance|officers?|auditors?|"
            r"supervisors?)\s+(?:\S+\s+){0,4}?"
            r"know\b",
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
            r"user\s+data|customer\s+data|personal\s+data|context|messages|everything|sessions?|memory|prompts?|"
            r"logs)\s+"
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
    r"\.env\b|auth(?:orization)?\s+headers?|client\s+secrets?|card\s+details|environment\s+variables?|"
    r"\w*_(?:api_?key|secret(?:_key)?|access_key|token|password|passwd)\b)"
    # "password reset link", "token count": about the secret, not the secret itself.
    r"(?!\s+(?:resets?|policy|policies|managers?|fields?|strength|requirements?|rules?|changes?|expiry|expiration|"
    r"hints?|protected|length|complexity|page|form|counts?|budgets?|limits?|usage|window|costs?)\b)"
)
_CRED_VERB = (
    r"(?:reveal|print|show|display|output|echo|log|dump|leak|expose|send|share|include|attach|append|paste|copy|give|"
    r"provide|return|tell|read\s+out|write|type|enter|submit|post|upload|e-?mail|forward|disclose|divulge|list|"
    r"collect|gather|harvest|ask\s+for|ask|request|prompt\s+for|require|obtain|get|retrieve|grab|extract|store|save|"
    r"record|remember|repeat|spell\s+out|put|embed|insert|fetch|look\s+up|read|access|reply\s+with|respond\s+with|"
    r"answer\s+with|send\s+(?:us|me)|give\s+(?:us|me)|tell\s+(?:us|me))"
)

_CREDENTIAL_CHECKS = (
    _Check(
        "credentials",
        _ci(rf"\b{_CRED_VERB}\b(?:\s+[^\s.;!?]+){{0,7}}?\s+{_CRED}\b"),
        # "the last four digits", "reset my passcode", "the wrong PIN": not the secret itself.
        accept=lambda m, t: (
            not re.search(
                r"\blast\s+(?:four|4)\s+digits\b|\b(?:reset|change|changing|update|forgot|forgotten|forget|lost|"
                r"recover|"
                r"create|set|choose|new|expired|locked|wrong|incorrect|unblock)\b(?:\s+\S+){0,2}\s+\S+$",
                m.group(0),
                re.IGNORECASE,
            )
        ),
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
            rf"\b(?:needs?|requires?|wants?|expects?)\s+(?:the|your|their|its|an?)\s+{_CRED}\s+(?:in|with|inside)\s+"
            r"(?:the|your|its|each|every)\s+(?:reply|answer|response|message|output|summary|report)",
            rf"\b{_CRED}\b(?:\s+[^\s.;!?]+){{0,8}}?\s+(?:should|must|need\s+to|needs\s+to|have\s+to|has\s+to|will)\s+"
            r"(?:\w+\s+)?(?:include|send|share|print|reveal|post|provide|give|return|attach|add|paste|put|echo|"
            r"output)\b",
        ),
    ),
    _Check(
        "credentials",
        _ci(
            r"\b(?:photos?|pictures?|images?|scans?|copy|copies|"
            r"screenshots?)\s+of\s+(?:\S+\s+){0,4}?(?:credit\s+cards?|"
            r"debit\s+cards?|cards?|passports?|id\s+cards?|driver'?s\s+licen[cs]es?|social\s+security\s+cards?)\b"
        ),
    ),
    _Check(
        "credentials", _ci(r"\bcodes?\s+(?:\w+\s+)?on\s+the\s+back\s+of\s+(?:the|your|their|a)\s+(?:\w+\s+)?cards?\b")
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
_NOT_BRAND = _word_set(
    """
    search lookup finish compare calculator python wikipedia google bing i the a an if when then and or but
    always never only use call prefer first before after this that these those it its each every all any
    """
)


def _brandish(word: str) -> bool:
    """A word shaped like a brand name: CamelCase, letters with digits, a trade mark or a brand suffix."""
    core = word.strip(".,;:!?\"'()[]`’")
    if len(core) < 2 or core.lower() in _NOT_BRAND:
        return False
    if "™" in word or "®" in word:
        return True
    camel = r"[A-Z][a-z]+(?:[A-Z][a-z0-9]*)+|[a-z]+[A-Z]\w*|[A-Z]{2,}[a-z]{2,}\w*"
    if re.fullmatch(camel, core):
        return True
    if re.search(r"[A-Za-z]", core) and re.search(r"\d", core) and core[0].isupper():
        return True
    return (
        core[0].isupper() and len(core) > 4 and bool(_BRAND_SUFFIX.search(core)) and core.lower() not in _COMMON_WORDS
    )


# Ordinary capitalised words that end like brands (Direct, Express, ...) when they start a clause.
_COMMON_WORDS = _word_set("direct express secure only plus pro net base deals works")

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
    after = re.split(r"[.;!?]\s", text[match.end() :], maxsplit=1)[0]
    tail = (match.group(0).split()[1:] + after.split())[:8]
    if any(_brandish(w) for w in tail):
        return True
    return bool(re.search(rf"\b{_VENDOR_NOUN}\b", " ".join(tail), re.IGNORECASE))


_VENDOR_CHECKS = (
    _Check(
        "vendor",
        _ci(
            r"\brecommendations?\s+(?:for|of)\s+",
            r"\b(?:mention|name|include|cite|plug)\s+(?:\S+\s+){0,2}?(?:in|at\s+the\s+end\s+of)\s+(?:every|each|all|"
            r"any)\s+"
            r"(?:answers?|repl(?:y|ies)|responses?|messages?)\b",
        ),
        accept=_vendor_brandish,
    ),
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
            r"\b(?:describe|present|call|label|portray|position|introduce|refer\s+to)\s+(?:\S+\s+){1,3}?as\s+(?:the\s+|"
            r"a\s+)?"
            r"(?:best|cheapest|top|only|most|leading|safest|#1|number\s+one|fastest|greatest)\b",
            r"\blinks?\s+to\s+",
        ),
        accept=_vendor_brandish,
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
            r"\b(?:lowest|best|cheapest|unbeatable|best-value|most\s+competitive)\s+(?:prices?|deals?|rates?|offers?|"
            r"value|"
            r"plans?|discounts?)\b"
        ),
    ),
    _Check(
        "vendor",
        re.compile(
            r"\b(?i:promo(?:tion(?:al)?)?|discount|coupon|voucher|referral|"
            r"affiliate)\s+(?i:codes?)\s+[A-Z0-9][A-Z0-9-]{3,}\b|"
            r"\b(?i:referral|affiliate)\s+(?i:links?|ids?)\b|\b(?i:sponsored\s+by)\b|"
            r"\b(?i:our|their)\s+(?i:partner|sponsor|affiliate)s?\b"
        ),
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:recommend|suggest|favou?r|steer\s+(?:users|customers|people|them)\s+(?:to|towards)|"
            r"(?:point|direct|refer|send)\s+(?:users|customers|people|buyers|shoppers|them)\s+to|"
            r"tell\s+(?:users|customers|people|them|everyone|buyers|shoppers)\s+(?:to\s+(?:use|buy|try|choose)|about|"
            r"that))\b"
        ),
        accept=_vendor_named,
    ),
    _Check(
        "vendor",
        _ci(
            r"\b(?:buy|purchase|shop|subscribe|sign\s+up|switch|upgrade|migrate|invest|donate)\s+"
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
            r"websites|banks|airlines|hotels|apps|platforms|options?|choices?))\b"
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
            r"\b(?:is|are)\s+(?:the\s+|our\s+|a\s+)?(?:best|top|#1|number\s+one|leading|cheapest|safest|only|"
            r"most\s+(?:trusted|reliable|secure|affordable|recommended|reputable)|only\s+(?:trusted|reliable|"
            r"legitimate|"
            r"safe|official|approved|good|real)|preferred|recommended|official|approved|better|superior)\s+"
            r"(?:\w+\s+)?(?:" + _VENDOR_NOUN + r"|choice|option|pick)\b"
        ),
    ),
)

_INSTRUCTIONS = (
    r"(?:instructions?|rules?|directions?|prompts?|directives?|guidelines?|guidance|guardrails?|policies|policy|"
    r"programming|"
    r"training|constraints|restrictions|limitations|orders|commands|system\s+prompt|system\s+message|safety\s+rules)"
)
_OVERRIDE_CHECKS = (
    _Check(
        "override",
        _ci(
            # Text addressed to the model rather than to a reader: the mark of an indirect injection.
            r"\b(?:note|message|instructions?|reminder|memo|attention|tip|warning)\s+(?:to|for)\s+(?:all\s+|any\s+|"
            r"the\s+)?"
            r"(?:ai|a\.i\.|assistants?|agents?|llms?|language\s+models?|models?|chat\s*bots?|bots?|gpts?)\b",
            r"\b(?:ai|llm)\s+(?:assistants?|agents?|models?|systems?)\s+(?:must|should|reading\s+this|"
            r"processing\s+this)\b",
            r"\b(?:new|updated|revised|real|actual|current)\s+(?:system\s+)?(?:policy|policies|directive|orders?)\s*:",
            r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+|anything\s+)?(?:of\s+)?(?:the\s+|what\s+(?:is|"
            r"was)\s+)?"
            r"(?:above|foregoing|preceding|previous(?:ly)?|prior|earlier|before)\b",
            r"\b(?:answer|reply\s+to|respond\s+to|end|start|begin)\s+(?:every|each|all|any)\s+(?:questions?|messages?|"
            r"requests?|queries|answers?|repl(?:y|ies)|responses?)\s+(?:with|by\s+saying)\b",
            r"(?:^|[.;:,]\s*)(?:every|each|all)\s+(?:questions?|messages?|requests?|queries)\s+with\s+['\"“‘]",
            r"\b(?:user'?s?|customer'?s?|system|original|operator'?s?)\s+(?:instructions?|requests?|prompt|wishes|"
            r"rules)\s+"
            r"(?:matter\s+less|are\s+less\s+important|come\s+second|are\s+secondary|can\s+be\s+ignored|"
            r"do\s+not\s+matter)",
            r"\bdo\s+(?:as|what(?:ever)?)\s+(?:they|it|he|she|the\s+\w+)\s+(?:say|says|tell|tells|ask|asks|instruct|"
            r"instructs)\b",
            r"\b(?:come|comes|are|is)\s+from\s+the\s+(?:operator|administrator|admin|developer|system|owner|"
            r"creators?)\b",
            r"\b(?:rules?|instructions?|guidelines?|policies|restrictions|limits)\s+(?:no\s+longer|do\s+not|don'?t|"
            r"does\s+not)\s+"
            r"apply\b",
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\blet\s+(?:the\s+|a\s+|any\s+)?(?:\w+\s+)?(?:pages?|documents?|tools?|websites?|sites?|e-?mails?|"
            r"results?|"
            r"content|texts?|pdfs?|outputs?|files?)\s+(?:decide|dictate|determine|choose|control|steer|tell\s+you)\b",
            r"\b(?:abandon|drop|forget|ignore|replace|change|switch)\s+(?:your|the|its)\s+(?:original|current|assigned|"
            r"user'?s?|given|actual)?\s*(?:task|goal|objective|mission|job|assignment)\b",
            r"\b(?:whenever|when|if|as)\s+(?:a|the|any)\s+(?:tool\s+(?:results?|outputs?)|pages?|documents?|websites?|"
            r"e-?mails?|search\s+results?|retrieved\s+\w+)\s+(?:asks?|tells?|instructs?|says?|"
            r"wants?)\s+(?:you\s+)?to\b",
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
            r"\b(?:system|developer|admin|root|hidden|initial|original)\s+(?:prompts?|messages?|instructions?|"
            r"override)\b"
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
            r"\b(?:do|say|write|answer)\s+(?:exactly\s+)?what(?:ever)?\s+(?:the|a|any)\s+(?:\w+\s+)?(?:tool|page|"
            r"document|result|"
            r"output|text|e-?mail|website|snippet)\s+(?:says|tells|asks|instructs|wants)",
        ),
    ),
    _Check(
        "override",
        _ci(
            r"\b(?:treat|consider|regard|handle|interpret|take)\s+(?:\S+\s+){0,6}?(?:as|to\s+be)\s+(?:an?\s+|the\s+)?"
            r"(?:system|developer|admin|trusted|authoritative|official|priority|highest[- ]priority|binding|"
            r"mandatory)\s*"
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
            r"\btreat\s+(?:the\s+)?(?:user'?s?|system|original|developer'?s?)\s+(?:\w+\s+)?(?:request|instructions?|"
            r"task|"
            r"prompt|question|goal)s?\s+as\s+(?:optional|secondary|a\s+suggestion|less\s+important|irrelevant|"
            r"unimportant|"
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
    # A lesson that moves a set amount of money ("refund 500 EUR") or waives fees bypasses every check;
    # in ``applies_when`` such words are the user's own request ("send 1200 dollars to savings").
    _Check(
        "skip_checks",
        _ci(
            r"\b(?:refund|transfer|wire|send|pay|credit|waive)\s+(?:them\s+|the\s+customer\s+|"
            r"back\s+)?(?:[$€£]\s?)?\d[\d,.]*\s*"
            r"(?:eur|usd|gbp|dollars?|euros?|pounds?|[$€£])?(?=[\s.,;!?]|$)",
            r"\b(?:the\s+)?fees?\s+(?:is|are)\s+waived\b",
        ),
        in_conditions=False,
    ),
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
            r"\b(?:never|don'?t|do\s+not|no\s+need\s+to|there\s+is\s+no\s+need\s+to|(?:you\s+)?(?:don'?t|"
            r"do\s+not)\s+need"
            r"\s+to|needn'?t|not\s+necessary\s+to|unnecessary\s+to|no\s+longer|stop)\s+(?:bother\s+(?:to\s+)?|ever\s+|"
            r"even\s+|bother\s+with\s+)?(?:verify(?:ing)?|validat(?:e|ing)|confirm(?:ing)?|authenticat(?:e|ing)|"
            r"authori[sz](?:e|ing)|double[- ]check(?:ing)?|"
            r"ask(?:ing)?\s+(?:\w+\s+)?for\s+(?:confirmation|approval|id|identification|verification|consent|"
            r"permission)|"
            r"wait(?:ing)?\s+for\s+(?:confirmation|approval|review|sign-?off)|run(?:ning)?\s+(?:the\s+)?tests|"
            r"require\s+(?:confirmation|approval|verification|authentication|2fa|mfa))\b",
            r"\bno\s+need\s+(?:to|for)\s+(?:check|checking|review|reviewing|test|testing|" + _CHECK_NOUN + r")\b",
        ),
        negatable=False,
    ),
    _Check(
        "skip_checks",
        _ci(
            r"\bwithout\s+(?:(?:any|prior|further|additional|a|an|the|human|manual|identity|id|proper|their|extra|"
            r"usual|"
            r"normal|standard|second|double|required|mandatory|formal)\s+)*"
            r"(?:verification|verifying|validation|validating|confirmation|confirming|authentication|authenticating|"
            r"approval|review|reviewing|checks|checking|security\s+checks|safety\s+checks|testing|tests|2fa|mfa|"
            r"sign-?off|"
            r"asking\s+for\s+(?:confirmation|approval|permission|consent)|"
            r"(?:running|executing)\s+(?:the\s+|any\s+)?(?:tests?|them|checks?|ci|linters?|test\s+suite)|"
            r"waiting\s+for\s+(?:the\s+)?(?:ci|tests?|"
            r"review|approval|confirmation|checks?|sign-?off|verification|payment))\b",
            r"\b(?:needs?|requires?|require|gets?)\s+no\s+(?:\w+\s+)?" + _CHECK_NOUN + r"\b",
            r"\bno\s+(?:\w+\s+)?" + _CHECK_NOUN + r"\s+(?:is\s+|are\s+)?(?:needed|necessary|required)\b",
            r"\bbefore\s+(?:the\s+)?(?:payment|funds|transaction|charge|verification|approval|review|tests?|ci|"
            r"checks?)\s+"
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
            r"authenticated|authori[sz]ed|approved|trusted|safe|valid|an?\s+admin\w*|allowed|permitted|confirmed|"
            r"legitimate|"
            r"genuine|who\s+(?:they|he|she)\s+(?:say|says|claim|claims)|the\s+(?:account\s+|card\s+)?(?:owner|holder|"
            r"admin\w*))\b",
            r"\b(?:auto(?:matically)?[- ]?)(?:approve|confirm|accept|verify|merge|grant|authori[sz]e)\w*",
            r"\b(?:treat|consider|deem|mark|regard)\s+(?:every|all|any|"
            r"each)\s+\w+\s+(?:\w+\s+)?(?:as\s+)?(?:already\s+)?"
            r"(?:verified|approved|authori[sz]ed|trusted|valid|safe|confirmed|authenticated|legitimate|genuine|"
            r"correct)\b",
            r"\bapprove\s+(?:every|all|any|each)\b",
            r"\b(?:set|mark|flag|record|report|log|update)\s+(?:the\s+|its\s+|their\s+)?(?:\w+\s+)?(?:verification|"
            r"check|checks|"
            r"review|approval|kyc|tests?|ci|screening|audit)\s+(?:status\s+)?(?:to|as)\s+(?:complete|completed|done|"
            r"passed|"
            r"verified|approved|successful|green|ok|cleared)\b",
            r"\b(?:treat|consider|regard|deem|mark)\s+(?:\S+\s+){1,6}?as\s+(?:already\s+)?(?:pre-?approved|"
            r"pre-?authori[sz]ed|"
            r"pre-?verified|pre-?cleared|whitelisted|exempt)\b",
            r"\b(?:release|transfer|send|approve|disburse|pay\s+out)\s+(?:the\s+)?(?:funds?|money|payments?|"
            r"refunds?)\s+"
            r"(?:as\s+soon\s+as|immediately\s+when|whenever|the\s+moment)\s+(?:the\s+)?(?:customer|user|caller|they|"
            r"client)\s+"
            r"(?:asks?|requests?|wants?)",
            r"\bapprove\s+(?:the|this|that|these|those|their|his|her)\s+(?:\w+\s+)?(?:transfers?|payments?|refunds?|"
            r"withdrawals?|transactions?|requests?|loans?|wires?)\b(?!\s+(?:only|once|after|if|when|unless)\b)",
            r"\b(?:grant|approve|accept|allow|authori[sz]e|process|issue|release|unlock|execute)\s+(?:all\s+|every\s+|"
            r"any\s+)?"
            r"(?:\w+\s+){0,2}?(?:requests?|refunds?|transfers?|payments?|access|withdrawals?|changes?|orders?)\s+"
            r"(?:immediately|instantly|right\s+away|automatically|at\s+once)\b(?!\s+(?:once|after|when|if|as\s+soon))",
        ),
        negatable=True,
    ),
    _Check(
        "skip_checks",
        _ci(
            r"--no-verify\b|\bverify\s*=\s*false\b|--insecure\b|--skip-tests?\b|-DskipTests\b|"
            r"\bssl_verify\s*=\s*false\b|"
            r"--no-check-certificate\b|--dangerously-skip-permissions\b|#\s*nosec\b|--disable-[\w-]+|"
            r"\bverify_ssl\s*=\s*false\b|\bcheck_hostname\s*=\s*false\b"
        ),
        negatable=False,
        literal=True,
    ),
)

# A tool named in a lesson: `code`, snake_case, CamelCase, or any word followed by "tool" / "function".
_TOOL = (
    r"(?:`[^`\n]{1,60}`|[A-Za-z]\w*_\w+|[A-Z][a-z]+[A-Z]\w*|(?:the\s+)?[A-Za-z]\w*\s+(?i:tool|function|api|endpoint)s?"
    r"|the\s+\w+\s+(?i:tool|function|api|endpoint)|the\s+(?i:tool|function)\s+\w+)"
)
# Parts of a tool's name (split at "_" and case changes) that no routine tool has.
_SUSPICIOUS_PARTS = _word_set(
    """
    exfil exfiltrate exfiltration webhook webhooks beacon backdoor leak steal siphon harvest keylog keylogger spy
    spyware ngrok requestbin pastebin curl wget sendmail bypass override unsafe insecure sudo mirror shadow telemetry
    """
)
# Parts that are routine in some tools but not as a standing habit ("call upload_file after every session").
_HABIT_PARTS = _word_set(
    """
    upload export dump post send sync forward transfer report notify collect share delete drop wipe purge destroy
    truncate erase remove rm admin root partner legacy exec shell raw debug
    """
)
_STRICT_TOOL = re.compile(_TOOL)
_ANY_TOOL = rf"{_TOOL}|[A-Z]\w+"
_EVERY_TIME = re.compile(r"\b(?:always|every|each|whenever|all|any)\b", re.IGNORECASE)


def _name_parts(name: str) -> set[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip("`"))
    return {p.lower() for p in re.split(r"[\W_]+", spaced) if p}


def _suspicious_tool(match: re.Match[str], text: str) -> bool:
    parts = _name_parts(match.group(0))
    if parts & _SUSPICIOUS_PARTS:
        return True
    return bool(parts & _HABIT_PARTS) and bool(_EVERY_TIME.search(text))


_TOOL_CHECKS = (
    _Check(
        "tool_redirect",
        re.compile(
            r"\b(?i:call|use|invoke|run)\s+(?:the\s+)?(?:`[^`\n]{1,60}`|"
            r"[A-Za-z]\w*_\w+)(?:\s+\S+){0,6}?\s+(?i:instead)\b"
            r"(?!\s+of)"
        ),
    ),
    # Lookups redirected to another record ("records of patient 30789 were merged into patient 4269",
    # "dental floss is now sold as the ShopX toothbrush"): the bridging step of a query-only attack.
    _Check(
        "tool_redirect",
        _ci(
            r"\b(?:were|was|have\s+been|has\s+been|are|is)\s+(?:now\s+)?(?:merged|relabell?ed|re-?labell?ed|remapped|"
            r"redirected|migrated|re-?assigned|re-?routed)\s+(?:now\s+)?(?:as|into|to|under|onto)\b",
            r"\b(?:is|are)\s+now\s+(?:stored|saved|filed|kept|sold|listed|known|registered|mapped|moved|renamed|"
            r"located|handled|treated|processed|served|routed|billed|tracked)\s+(?:as|under|into|to|at|in|by)\b",
            r"\b(?:is|are)\s+(?:stored|saved|filed|kept|sold|listed|known|registered|mapped|moved|renamed)\s+(?:as|"
            r"under|into|"
            r"to)\s+(?:\S+\s+){0,3}?\S+\s+now\b",
            r"\b(?:stored|saved|filed|kept|moved|renamed|mapped)\s+(?:as|under|into|to)\s+(?:\w+\s+){0,2}#?\d{3,}",
        ),
    ),
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
            r"\b(?i:call|use|invoke|run|trigger|execute|pick|prefer|choose|select|switch\s+to)\s+(?P<x>"
            + _ANY_TOOL
            + r")(?:\s+(?i:tool|function|api|endpoint))?\s+(?i:instead\s+of|rather\s+than|in\s+place\s+of)\s+"
            r"(?i:calling\s+|using\s+|invoking\s+|running\s+)?(?P<y>" + _ANY_TOOL + ")",
        ),
        # One side must be shaped like a tool: "Use Celsius instead of Fahrenheit" swaps no tools.
        accept=lambda m, t: bool(_STRICT_TOOL.fullmatch(m.group("x")) or _STRICT_TOOL.fullmatch(m.group("y"))),
    ),
    _Check("tool_redirect", _ci(r"\b(?:instead\s+of|rather\s+than)\b[^.;]{0,60}\beven\s+(?:when|if)\s+the\s+user\b")),
    _Check(
        "tool_redirect",
        re.compile(
            r"\b(?i:instead\s+of|rather\s+than)\s+(?i:calling|using|invoking|running)\s+(?P<x>"
            + _ANY_TOOL
            + r")\s*,?\s+(?i:call|use|invoke|run)\s+(?P<y>"
            + _ANY_TOOL
            + ")",
        ),
        accept=lambda m, t: bool(_STRICT_TOOL.fullmatch(m.group("x")) or _STRICT_TOOL.fullmatch(m.group("y"))),
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
            r"\b(?:route|re-?route|redirect|proxy|pipe|tunnel|divert|relay|mirror)\s+(?:\S+\s+){0,3}?(?:calls?|"
            r"requests?|"
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
    _Check("role_markup", ROLE_TAG, negatable=False),
    _Check("role_markup", _ci(r"\brole[\"']?\s*[:=]\s*[\"']?(?:system|assistant|developer)\b"), negatable=False),
    _Check("role_markup", _ci(r"\[(?:system|assistant|developer|user|admin)\]\s*[(:]"), negatable=False),
    _Check("role_markup", INST_TAG, negatable=False),
    _Check("role_markup", ROLE_HEADING, negatable=False),
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


__all__ = ["SCREEN_CATEGORIES", "Flag"]
