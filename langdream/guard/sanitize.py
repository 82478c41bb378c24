"""What happens to an episode before it is stored: secrets and PII redacted, role markup neutralised.

Both are recorded on the episode (counts per kind, never the values) under
``metadata["langdream"]``, so ``langdream episodes show --json`` says what was changed.
"""

from __future__ import annotations

from collections import Counter

from langdream.guard.neutralise import neutralise_episode, neutralise_text
from langdream.guard.redact import redact_episode, redact_text
from langdream.types import Episode

METADATA_KEY = "langdream"


def sanitize_text(text: str) -> str:
    """One free text (a feedback note given later) as it may be stored: redacted, then neutralised."""
    return neutralise_text(redact_text(text)[0])[0]


def sanitize_episode(episode: Episode) -> Episode:
    """``episode`` as it may be stored: redacted, then neutralised, with what changed recorded."""
    redacted, redactions = redact_episode(episode)
    neutralised, neutralisations = neutralise_episode(redacted)
    if not redactions and not neutralisations:
        return episode
    existing = neutralised.metadata.get(METADATA_KEY)
    notes = dict(existing) if isinstance(existing, dict) else {}
    for key, counts in (("redacted", redactions), ("neutralised", neutralisations)):
        if counts:
            notes[key] = dict(Counter(notes.get(key) or {}) + counts)
    return neutralised.model_copy(update={"metadata": {**neutralised.metadata, METADATA_KEY: notes}})


__all__ = ["METADATA_KEY", "sanitize_episode", "sanitize_text"]
