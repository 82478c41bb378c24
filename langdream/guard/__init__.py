"""Guards between what runs record, what a reflector proposes, and what the agent believes.

- ``redact``: secrets and PII are replaced before an episode is stored or embedded;
- ``neutralise``: role-like markup is neutralised in stored text;
- ``screen`` (rules in ``screen_checks``): candidate claims that instruct the agent to do an
  attacker's bidding are flagged;
- ``grounding``: a claim's specifics must appear in its evidence, and it must not copy tool output;
- ``claims``: the verdict on one candidate claim (a hold for a person, or none);
- ``rules``: structural rules (evidence from the cluster, earned support, the drift guard).
"""

from langdream.guard.claims import ClaimChecker, redact_operation
from langdream.guard.rules import Screened, drift_verdict, screen, support_status
from langdream.guard.sanitize import sanitize_episode

__all__ = [
    "ClaimChecker",
    "Screened",
    "drift_verdict",
    "redact_operation",
    "sanitize_episode",
    "screen",
    "support_status",
]
