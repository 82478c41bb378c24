"""The report's list of insights: grouped by the lasting clusters they were learned from."""

from __future__ import annotations

from langdream.report.gather import ClusterSummary, InsightSummary, NamespaceReport
from langdream.report.markup import STATUSES, esc, meter, mini, pct
from langdream.report.svg import colour_class

_CHIPS = 8  # clusters named on an insight drawn from several


def insights_card(ns: NamespaceReport, ranks: dict[str, int]) -> str:
    head = '<div class="card"><h3>What was learned</h3>'
    if not ns.insights:
        return head + '<p class="empty">No insights yet: a dream learns them from clusters of similar runs.</p></div>'
    present = {s: sum(1 for i in ns.insights if i.insight.status.value == s) for s in STATUSES}
    chips = "".join(
        f'<label class="chip"><input type="checkbox" value="{s}" checked>{s} {present[s]}</label>'
        for s in STATUSES
        if present[s]
    )
    search = '<input type="search" placeholder="filter insights…" aria-label="filter insights">'
    filters = f'<div class="filters">{chips}{search}</div>'
    shared = [i for i in ns.insights if len(i.clusters) > 1]
    loose = [i for i in ns.insights if not i.clusters]
    by_cluster: dict[str, list[InsightSummary]] = {}
    for item in ns.insights:
        if len(item.clusters) == 1:
            by_cluster.setdefault(item.clusters[0], []).append(item)
    groups = []
    if shared:
        cards = "".join(_insight(i, ns, ranks) for i in shared)
        groups.append(
            f'<div class="group"><h4>Learned across clusters ({len(shared)})</h4><div class="flat">{cards}</div></div>'
        )
    if by_cluster:
        blocks = "".join(_cluster_block(c, by_cluster[c.id], ns, ranks) for c in ns.clusters if c.id in by_cluster)
        groups.append(f'<div class="group"><h4>By cluster ({len(by_cluster)})</h4>{blocks}</div>')
    if loose:
        cards = "".join(_insight(i, ns, ranks) for i in loose)
        groups.append(
            f'<div class="group"><h4>Not tied to a lasting cluster ({len(loose)})</h4>'
            f'<div class="flat">{cards}</div></div>'
        )
    bare = [c for c in ns.clusters if c.id not in by_cluster]
    if bare:
        rows = "".join(
            f'<tr class="{colour_class(ranks[c.id])}" data-c="{ranks[c.id]}">'
            f'<td><span class="sw"></span> {c.label}</td>'
            f'<td class="n">{c.size}</td><td class="n">{pct(c.successes, c.successes + c.failures)}</td>'
            f"<td>{esc(c.task)}</td></tr>"
            for c in bare
        )
        groups.append(
            f"<details><summary>{len(bare)} clusters with no insight of their own</summary><table><thead><tr>"
            '<th>cluster</th><th class="n">episodes</th><th class="n">success</th><th>typical task</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></details>"
        )
    more = (
        f'<p class="note">Listing {len(ns.insights):,} of {ns.insights_total:,} insights (active first).</p>'
        if ns.insights_total > len(ns.insights)
        else ""
    )
    return head + filters + f'<div class="insights">{"".join(groups)}</div>' + more + "</div>"


def _cluster_block(
    cluster: ClusterSummary, items: list[InsightSummary], ns: NamespaceReport, ranks: dict[str, int]
) -> str:
    rank = ranks[cluster.id]
    rate = pct(cluster.successes, cluster.successes + cluster.failures)
    return (
        f'<div class="cluster {colour_class(rank)}" data-cluster="{esc(cluster.id)}">'
        f'<div class="head" data-c="{rank}" tabindex="0"><span class="sw"></span>'
        f'<span class="lab">{cluster.label}</span>'
        f'<span class="task" title="{esc(cluster.task)}">{esc(cluster.task)}</span>'
        f'<span class="rate">{cluster.size} episodes · {rate} succeeded '
        f"{mini(cluster.successes, cluster.failures)}</span></div>"
        + "".join(_insight(i, ns, ranks) for i in items)
        + "</div>"
    )


def _insight(item: InsightSummary, ns: NamespaceReport, ranks: dict[str, int]) -> str:
    insight = item.insight
    status = insight.status.value
    badge = f'<span class="badge b-{status}">{status}{" · " + esc(insight.hold.value) if insight.hold else ""}</span>'
    meta = [
        badge,
        f"support {insight.support}",
        f"{insight.threads} threads",
        f"{insight.tasks} tasks",
        f"confidence {insight.confidence:.2f}",
        f"v{insight.version}",
        esc(insight.origin.value),
        f'<code title="langdream insights explain {esc(insight.id)}">{esc(insight.id)}</code>',
    ]
    if len(item.clusters) > 1:
        chips = "".join(
            f'<span class="c {colour_class(ranks.get(c))}" data-c="{ranks.get(c, -1)}"><span class="sw"></span>'
            f"{esc(ns.cluster(c).label if ns.cluster(c) else c)}</span>"
            for c in item.clusters[:_CHIPS]
        )
        extra = f"+{len(item.clusters) - _CHIPS}" if len(item.clusters) > _CHIPS else ""
        meta.append(f'<span class="from">from {chips}{extra}</span>')
    when = f'<p class="ins-when">applies when: {esc(insight.applies_when)}</p>' if insight.applies_when else ""
    reason = f' title="{esc(insight.status_reason)}"' if insight.status_reason else ""
    ok, bad = item.evidence_successes, item.evidence_failures
    side = [f"<div>evidence: {ok} succeeded · {bad} failed{meter(ok, bad)}</div>"]
    if item.effect is not None and (item.effect.shown or item.effect.unshown):
        side.append(_effect(item))
    return (
        f'<div class="ins" data-status="{status}" data-id="{esc(insight.id)}"{reason}>'
        f'<div><p class="ins-text">{esc(insight.text)}</p>{when}'
        f'<p class="ins-meta">{"".join(f"<span>{m}</span>" for m in meta)}</p></div>'
        f'<div class="side">{"".join(side)}</div></div>'
    )


def _effect(item: InsightSummary) -> str:
    effect = item.effect
    assert effect is not None
    rows = []
    for label, runs, rate, cls in (
        ("shown it", effect.shown, effect.shown_rate, ""),
        ("not shown", effect.unshown, effect.unshown_rate, " un"),
    ):
        width = 0.0 if rate is None else 100 * rate
        pct = "–" if rate is None else f"{round(100 * rate)}%"
        rows.append(
            f'<span>{label} · {runs}</span><span class="bar{cls}"><i style="width:{width:.1f}%"></i></span>'
            f'<span class="pc">{pct}</span>'
        )
    return f'<div>success of related runs<div class="effect">{"".join(rows)}</div></div>'
