"""Guards between a reflector's output and the ledger.

A reflection is a proposal. ``screen`` drops operations that do not fit the rules (evidence
from outside the cluster, targets the reflector was not shown, add/edit without a claim), and
``support_status`` decides whether an insight has earned activation.
"""

from langdream.guard.rules import Screened, screen, support_status

__all__ = ["Screened", "screen", "support_status"]
