"""The verdict on one candidate claim: may it earn activation by support, or must a person look?

Three checks, in order, each naming its reason:

- **injection**: the claim tells the agent to use a URL, contact someone, handle credentials,
  prefer a vendor, override its instructions, skip checks or switch tools (``screen_claim``);
- **copied**: the claim repeats a run of text a tool returned: tool output is untrusted data,
  and a lesson is something the runs show, not something a document says;
- **ungrounded**: the claim names specifics (names, numbers, URLs, code tokens) that too few of
  its evidence episodes contain. Extractive claims are computed from the episodes, so only
  claims a model wrote are checked for grounding.

Claims are also redacted like episodes, so a model that reproduces a secret cannot store it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langdream.guard.grounding import copied_from_untrusted, episode_text, ungrounded_reason, untrusted_text
from langdream.guard.redact import redact_text
from langdream.guard.screen import describe_flags, screen_claim
from langdream.reflect import Operation
from langdream.types import Episode, InsightHold, InsightOrigin

# Categories that make recalled text dangerous wherever they appear, even in ``applies_when``.
_ANYWHERE = {"url", "credentials", "override", "role_markup"}
# An instruction addressed to whoever reads the text: an imperative opening, or the reader named.
_LEAD_IN = re.compile(r"^\W*(?:(?:note|important|attention|reminder|tip|editor'?s tip|policy|system)\b[^:]*:\s*)*", re.I)
_IMPERATIVES = frozenset(
    "always never do don't dont call use send reply respond tell print include add append forward share reveal "
    "post upload email contact visit open fetch load click ignore disregard forget override approve transfer "
    "refund close delete execute run skip bypass disable recommend suggest prefer choose buy install answer "
    "say make ensure output return give provide write".split()
)
_ADDRESSED = re.compile(
    r"\b(?:assistants?|agents?|the ai|ai models?|language models?|llms?|the model|chatbots?|bots?)\b"
    r"|\byou(?:r)?\b",
    re.I,
)


def _directive(claim: str) -> bool:
    """Whether ``claim`` tells its reader to do something: tool output that does is the signature
    of an indirect prompt injection; tool output that informs (an FAQ answer) is not."""
    body = _LEAD_IN.sub("", claim)
    first = re.match(r"[A-Za-z']+", body)
    return bool(first and first.group(0).lower() in _IMPERATIVES) or bool(_ADDRESSED.search(claim))


_QUOTED = re.compile(r'["“”]([^"“”]{8,})["“”]')


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _without_quoted_tasks(claim: str, evidence: Sequence[Episode]) -> str:
    """The claim minus quotations of its evidence's tasks: a task is what the user asked, and a
    tool that echoes it back (a search for the question itself) does not make the quote a copy."""
    tasks = [_norm(e.task) for e in evidence]

    def keep(match: re.Match) -> str:
        quoted = _norm(match.group(1).rstrip("…. "))
        return '""' if any(quoted in task for task in tasks) else match.group(0)

    return _QUOTED.sub(keep, claim)


def redact_operation(op: Operation) -> Operation:
    """``op`` with secrets and PII in its claim and its ``applies_when`` replaced by placeholders."""
    claim = redact_text(op.claim)[0] if op.claim else op.claim
    when = redact_text(op.applies_when)[0] if op.applies_when else op.applies_when
    if (claim, when) == (op.claim, op.applies_when):
        return op
    return op.model_copy(update={"claim": claim, "applies_when": when})


class ClaimChecker:
    """Checks the candidate claims of one dream; each episode's text is flattened once."""

    def __init__(self, *, origin: InsightOrigin, min_support: int) -> None:
        self.origin = origin
        self.min_support = min_support
        self._texts: dict[str, tuple[str, str]] = {}

    def _text(self, episode: Episode) -> tuple[str, str]:
        """(all of its text, what its tools returned)."""
        cached = self._texts.get(episode.id)
        if cached is None:
            cached = self._texts[episode.id] = (episode_text(episode), untrusted_text(episode))
        return cached

    def hold(self, op: Operation, evidence: Sequence[Episode]) -> tuple[InsightHold, str] | None:
        """Why the claim of ``op`` (an add or edit) must wait for a person, or None when it may not."""
        claim, when = op.claim or "", op.applies_when or ""
        # ``applies_when`` describes the tasks (often in the user's own words: "how do I contact
        # support?"), so only what would be dangerous anywhere in recalled text counts there.
        flags = screen_claim(claim) + [f for f in screen_claim(when) if f.category in _ANYWHERE]
        if flags:
            return InsightHold.INJECTION, f"quarantined: {describe_flags(flags)}"
        texts = [self._text(e) for e in evidence]
        copied = copied_from_untrusted(_without_quoted_tasks(claim, evidence), [tool for _, tool in texts])
        if copied and _directive(claim):
            return InsightHold.COPIED, f"quarantined: repeats an instruction a tool returned ({copied})"
        if self.origin is InsightOrigin.LLM:
            ungrounded = ungrounded_reason(claim, [text for text, _ in texts], self.min_support)
            if ungrounded:
                return InsightHold.UNGROUNDED, f"quarantined: not grounded in its evidence ({ungrounded})"
        return None


__all__ = ["ClaimChecker", "redact_operation"]
