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
from langdream.guard.injection import describe_flags, screen_claim
from langdream.guard.redact import redact_text
from langdream.reflect import Operation
from langdream.types import Episode, InsightHold, InsightOrigin


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


def claim_hold(
    op: Operation, evidence: Sequence[Episode], *, origin: InsightOrigin, min_support: int
) -> tuple[InsightHold, str] | None:
    """Why the claim of ``op`` (an add or edit) must wait for a person, or None when it may not."""
    claim, when = op.claim or "", op.applies_when or ""
    flags = screen_claim(claim, when)
    if flags:
        return InsightHold.INJECTION, f"quarantined: {describe_flags(flags)}"
    copied = copied_from_untrusted(_without_quoted_tasks(claim, evidence), [untrusted_text(e) for e in evidence])
    if copied:
        return InsightHold.COPIED, f"quarantined: copies a tool's output ({copied})"
    if origin is InsightOrigin.LLM:
        ungrounded = ungrounded_reason(claim, [episode_text(e) for e in evidence], min_support)
        if ungrounded:
            return InsightHold.UNGROUNDED, f"quarantined: not grounded in its evidence ({ungrounded})"
    return None


__all__ = ["claim_hold", "redact_operation"]
