"""The report page: one HTML string with its style, script and drawings inline.

Every piece of text from the data home (tasks, insight texts, namespaces, ids) is escaped on
its way into the HTML, and the map's tooltip data sits in a JSON block the script reads and
writes back with ``textContent`` only. The page's Content-Security-Policy allows no network
at all and only this page's own script (by its hash), as a second wall behind the escaping.
"""

from __future__ import annotations

import base64
import hashlib

from langdream.namespace import format_namespace
from langdream.report.assets import CSS, JS
from langdream.report.gather import MAX_DREAMS, ClusterSummary, NamespaceReport, ReportData
from langdream.report.insights import insights_card
from langdream.report.markup import STATUSES, esc, json_block, pct
from langdream.report.svg import colour_class, episode_map, history_chart, legend_marks

_LEGEND_CLUSTERS = 10  # clusters named in a map's legend; the rest are found from their cards
_OPEN_DREAMS = 10  # a history this short shows its table unfolded


def section_id(number: int) -> str:
    return f"ns-{number}"


# -- the page --------------------------------------------------------------------------------


def render(data: ReportData) -> str:
    """The whole report as one self-contained HTML document."""
    script_hash = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")
    policy = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'"
    title = "langdream report"
    body = [_header(data), '<main class="wrap">']
    if not data.sections:
        body.append(
            '<div class="card"><p class="empty">This data home has no episodes yet: record runs, '
            "then <code>langdream dream</code>, then run the report again.</p></div>"
        )
    else:
        body.append(_namespace_bar(data))
        body.extend(_section(ns, section_id(n)) for n, ns in enumerate(data.sections, start=1))
    body.append("</main>")
    body.append(_footer(data))
    body.append('<div id="tip" class="tip" hidden></div>')
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f'<meta name="generator" content="langdream {esc(data.version)}">'
        f"<title>{title} · {esc(data.home)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + f"<script>{JS}</script></body></html>\n"
    )


def _header(data: ReportData) -> str:
    return (
        '<header class="top"><div class="wrap"><div class="brand">langdream report</div>'
        "<h1>What the agent learned</h1>"
        f'<p class="sub">data home <code>{esc(data.home)}</code> · generated {data.generated_at:%Y-%m-%d %H:%M} UTC'
        f" · langdream {esc(data.version)}</p></div></header>"
    )


def _namespace_bar(data: ReportData) -> str:
    covered = {format_namespace(s.namespace): section_id(n) for n, s in enumerate(data.sections, start=1)}
    rows = []
    for stats in data.namespaces:
        name = format_namespace(stats.namespace)
        target = covered.get(name)
        attr = f' data-target="{target}"' if target and len(data.sections) > 1 else ""
        counts = "".join(f'<td class="n">{stats.insights.get(s, 0)}</td>' for s in STATUSES)
        rows.append(
            f'<tr{attr}><td>{esc(name)}</td><td class="n">{stats.episodes}</td>'
            f'<td class="n">{stats.pending}</td>{counts}</tr>'
        )
    heads = "".join(f'<th class="n">{s}</th>' for s in STATUSES)
    selector = ""
    if len(data.sections) > 1:
        options = "".join(
            f'<option value="{section_id(n)}">{esc(format_namespace(s.namespace))}</option>'
            for n, s in enumerate(data.sections, start=1)
        )
        selector = f'<label>namespace <select id="ns-select">{options}</select></label>'
    return (
        '<div class="nsbar"><div class="card"><div style="display:flex;justify-content:space-between;'
        f'align-items:center;gap:12px"><h2 style="margin:0">Namespaces</h2>{selector}</div>'
        '<table><thead><tr><th>namespace</th><th class="n">episodes</th><th class="n">pending</th>'
        f"{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></div>"
    )


def _footer(data: ReportData) -> str:
    return (
        '<footer class="wrap"><p>Map: each mark is an episode, placed by the first two principal components of '
        "its task's embedding, so runs on similar tasks sit close together. Colour: its lasting cluster "
        "(grey: pending, or in no cluster). Shape: how the run went. Axes have no units.</p>"
        f"<p>At most {data.max_points} episodes are drawn in all; beyond that a fixed sample is. "
        "Insights over dreams: bars count what each dream changed, the line is how many insights were "
        f"active right after it (the last {MAX_DREAMS} dreams at most).</p>"
        "<p>Made by <code>langdream report</code>; this file loads nothing from the network.</p></footer>"
    )


# -- one namespace ---------------------------------------------------------------------------


def _section(ns: NamespaceReport, sid: str) -> str:
    name = format_namespace(ns.namespace)
    ranks = {c.id: n for n, c in enumerate(ns.clusters)}
    return (
        f'<section class="ns" id="{sid}" data-namespace="{esc(name)}">'
        f'<h2 class="ns-title">{esc(name)}<span class="tag">namespace</span></h2>'
        + _kpis(ns)
        + '<div class="grid">'
        + _map_card(ns, sid, ranks)
        + _history_card(ns)
        + "</div>"
        + insights_card(ns, ranks)
        + "</section>"
    )


def _kpis(ns: NamespaceReport) -> str:
    known = ns.successes + ns.failures
    unknown = ns.stats.episodes - known
    clustered = sum(c.size for c in ns.clusters)
    counts = ns.stats.insights
    last = f"last {ns.dreams[-1].created_at:%Y-%m-%d}" if ns.dreams else "none finished yet"
    cards = [
        ("episodes", f"{ns.stats.episodes:,}", f"{ns.stats.pending:,} waiting for a dream"),
        (
            "success rate",
            pct(ns.successes, known),
            f"{ns.successes:,} succeeded · {ns.failures:,} failed" + (f" · {unknown:,} unknown" if unknown else ""),
        ),
        ("lasting clusters", f"{len(ns.clusters):,}", f"{clustered:,} episodes in them"),
        (
            "active insights",
            f"{counts.get('active', 0):,}",
            " · ".join(f"{counts.get(s, 0):,} {s}" for s in ("quarantined", "retired", "revoked")),
        ),
        ("dreams", f"{len(ns.dreams):,}{'+' if ns.more_dreams else ''}", last),
    ]
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi"><div class="l">{label}</div><div class="v">{value}</div>'
            f'<div class="s">{esc(sub)}</div></div>'
            for label, value, sub in cards
        )
        + "</div>"
    )


def _map_card(ns: NamespaceReport, sid: str, ranks: dict[str, int]) -> str:
    if not ns.points:
        return '<div class="card"><h3>Episode map</h3><p class="empty">No episodes to draw.</p></div>'
    clusters = [[c.label, _cluster_words(c)] for c in ns.clusters]
    points = [
        [
            p.id,
            p.task,
            p.outcome[0] if p.outcome in ("success", "failure") else "u",
            ranks.get(p.cluster, -1) if p.cluster else -1,
        ]
        for p in ns.points
    ]
    legend = [
        legend_marks(),
        '<span class="sep"></span>',
        '<span class="item"><span class="sw k0"></span>no cluster</span>',
    ]
    for rank, cluster in enumerate(ns.clusters[:_LEGEND_CLUSTERS]):
        legend.append(
            f'<span class="item {colour_class(rank)}" data-c="{rank}" tabindex="0" title="{esc(cluster.task)}">'
            f'<span class="sw"></span>{cluster.label} · {cluster.size}</span>'
        )
    if len(ns.clusters) > _LEGEND_CLUSTERS:
        legend.append(
            f'<span class="item">+{len(ns.clusters) - _LEGEND_CLUSTERS} more clusters: hover one below</span>'
        )
    sampled = (
        f"Showing a fixed sample of {len(ns.points):,} of {ns.stats.episodes:,} episodes. "
        if ns.sampled
        else f"All {len(ns.points):,} episodes. "
    )
    source = {
        "index": "Positions from the episode vectors in the index.",
        "embedder": "Positions from the tasks, embedded for this report.",
        "index+embedder": "Positions from the index; episodes not in it yet were embedded for this report.",
    }[ns.vector_source]
    return (
        '<div class="card map-card"><h3>Episode map</h3>'
        '<p class="hint">Similar tasks sit close together. '
        "Hover a mark to read its task; hover a cluster to find it.</p>"
        + episode_map(ns.points, ranks, f"{sid}-map")
        + f'<div class="legend">{"".join(legend)}</div>'
        + f'<p class="note" data-drawn="{len(ns.points)}">{sampled}{source}</p>'
        + f'<script type="application/json" class="points">{json_block({"c": clusters, "p": points})}</script>'
        + "</div>"
    )


def _cluster_words(cluster: ClusterSummary) -> str:
    rate = cluster.success_rate
    return f"{cluster.size} episodes · " + (f"{round(100 * rate)}% succeeded" if rate is not None else "no outcomes")


def _history_card(ns: NamespaceReport) -> str:
    head = '<div class="card"><h3>Insights over dreams</h3>'
    if not ns.dreams:
        waiting = f" ({ns.unfinished_dreams} unfinished)" if ns.unfinished_dreams else ""
        return (
            head
            + f'<p class="empty">No dream has finished here yet{waiting}: run <code>langdream dream</code>.</p></div>'
        )
    hint = (
        f"The latest {len(ns.dreams)} dreams. " if ns.more_dreams else ""
    ) + "Bars: insights each dream added, edited or retired. Line: insights active after it."
    legend = (
        '<div class="chart-legend"><span><span class="sw" style="--c:#59a14f"></span>added</span>'
        '<span><span class="sw" style="--c:#4e79a7"></span>edited</span>'
        '<span><span class="sw" style="--c:#e15759"></span>retired</span>'
        '<span><span class="sw" style="--c:var(--accent);height:3px"></span>active after</span></div>'
    )
    rows = "".join(
        f'<tr title="{esc(d.id)}"><td class="n">{n}</td><td>{d.created_at:%m-%d %H:%M}</td>'
        f'<td class="n">{d.episodes}</td>'
        f'<td class="n">{d.added}</td><td class="n">{d.edited}</td><td class="n">{d.retired}</td>'
        f'<td class="n">{d.active_after}</td></tr>'
        for n, d in enumerate(ns.dreams, start=1)
    )
    table = (
        f"<details{' open' if len(ns.dreams) <= _OPEN_DREAMS else ''}><summary>every dream ({len(ns.dreams)})</summary>"
        '<div class="scroll"><table class="compact"><thead><tr><th class="n">#</th><th>when (UTC)</th>'
        '<th class="n">episodes</th><th class="n">added</th><th class="n">edited</th><th class="n">retired</th>'
        '<th class="n">active</th></tr>'
        f"</thead><tbody>{rows}</tbody>"
        "</table></div></details>"
    )
    unfinished = (
        f'<p class="note">{ns.unfinished_dreams} dream(s) open or parked, not shown.</p>'
        if ns.unfinished_dreams
        else ""
    )
    return head + f'<p class="hint">{hint}</p>' + legend + history_chart(ns.dreams) + table + unfinished + "</div>"
