"""Small pieces of HTML the report is built from; every text from the data home goes through ``esc``."""

from __future__ import annotations

import json
from html import escape

from langdream.types import InsightStatus

# Insight statuses in the order the report lists and counts them.
STATUSES = [
    s.value for s in (InsightStatus.ACTIVE, InsightStatus.QUARANTINED, InsightStatus.RETIRED, InsightStatus.REVOKED)
]


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def pct(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "–"


def json_block(value: object) -> str:
    """JSON that cannot end its <script> element early, whatever the strings in it say."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, safe in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, safe)
    return text


def meter(ok: int, bad: int) -> str:
    total = ok + bad
    if not total:
        return '<div class="meter"></div>'
    return (
        f'<div class="meter"><span class="ok" style="width:{100 * ok / total:.1f}%"></span>'
        f'<span class="bad" style="width:{100 * bad / total:.1f}%"></span></div>'
    )


def mini(ok: int, bad: int) -> str:
    total = ok + bad
    if not total:
        return ""
    return (
        f'<span class="mini"><span class="ok" style="width:{100 * ok / total:.1f}%"></span>'
        f'<span class="bad" style="width:{100 * bad / total:.1f}%"></span></span>'
    )
