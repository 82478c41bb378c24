"""The report's two drawings, as inline SVG: the episode map and the insights-over-dreams chart."""

from __future__ import annotations

import math
from html import escape

import numpy as np

from langdream.report.assets import PALETTE
from langdream.report.gather import DreamSummary, EpisodePoint
from langdream.report.projection import fit_to_box, spread_duplicates

MAP_WIDTH, MAP_HEIGHT, MAP_PAD = 760, 470, 18
CHART_WIDTH, CHART_HEIGHT = 420, 230
_CHART_MARGIN = (14, 12, 30, 38)  # top, right, bottom, left


def colour_class(cluster_rank: int | None) -> str:
    """``k0`` (grey) for no lasting cluster, else one of the palette's classes."""
    return "k0" if cluster_rank is None or cluster_rank < 0 else f"k{cluster_rank % len(PALETTE) + 1}"


def mark_radius(count: int) -> float:
    """Smaller marks as the map fills up, so a few thousand points stay legible."""
    if count <= 300:
        return 4.6
    if count <= 1200:
        return 3.6
    return 2.7


def cross_path(radius: float) -> str:
    """A filled X (so the whole mark, not a hairline, takes the pointer), drawn around 0,0."""
    r, w = radius * 1.05, radius * 0.36
    d = w / math.sqrt(2)
    # The X is a plus turned by 45°: walk its twelve corners.
    corners = [(r, -r + 2 * d), (r - 2 * d, -r), (0, -2 * d), (-r + 2 * d, -r), (-r, -r + 2 * d), (-2 * d, 0)]
    corners += [(-r, r - 2 * d), (-r + 2 * d, r), (0, 2 * d), (r - 2 * d, r), (r, r - 2 * d), (2 * d, 0)]
    return "M" + "L".join(f"{x:.2f},{y:.2f}" for x, y in corners) + "Z"


def episode_map(points: list[EpisodePoint], ranks: dict[str, int], map_id: str) -> str:
    """One mark per point (class ``pt``, ``data-i`` its index): a filled circle for a success, a
    cross for a failure, a ring for no outcome, coloured by the point's lasting cluster."""
    width, height = MAP_WIDTH, MAP_HEIGHT
    radius = mark_radius(len(points))
    coords = fit_to_box(np.array([[p.x, p.y] for p in points]).reshape(-1, 2), width, height, MAP_PAD + radius)
    coords = np.clip(spread_duplicates(coords, radius * 1.15), radius, [width - radius, height - radius])
    marks = []
    for i, (point, (x, y)) in enumerate(zip(points, coords)):
        colour = colour_class(ranks.get(point.cluster) if point.cluster else None)
        if point.outcome == "failure":
            marks.append(f'<use class="pt f {colour}" data-i="{i}" href="#{map_id}-x" x="{x:.1f}" y="{y:.1f}"/>')
        else:
            kind = "s" if point.outcome == "success" else "u"
            r = radius if kind == "s" else radius * 0.82
            marks.append(f'<circle class="pt {kind} {colour}" data-i="{i}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"/>')
    return (
        f'<svg class="map" id="{map_id}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="map of {len(points)} episodes, coloured by cluster">'
        f'<defs><path id="{map_id}-x" d="{cross_path(radius)}"/></defs>' + "".join(marks) + "</svg>"
    )


def legend_marks() -> str:
    """The outcome shapes, as drawn on the map (in the ink colour)."""
    shapes = (
        ("success", '<circle cx="7" cy="7" r="4.6" fill="currentColor"/>'),
        ("failure", f'<path transform="translate(7 7)" d="{cross_path(4.6)}" fill="currentColor"/>'),
        ("no outcome", '<circle cx="7" cy="7" r="3.8" fill="none" stroke="currentColor" stroke-width="1.6"/>'),
    )
    return "".join(
        f'<span class="item"><svg viewBox="0 0 14 14" aria-hidden="true">{shape}</svg>{label}</span>'
        for label, shape in shapes
    )


def _nice_ceiling(value: float) -> int:
    if value <= 4:
        return 4
    step = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * step:
            return math.ceil(factor * step)
    return math.ceil(value)


def history_chart(dreams: list[DreamSummary]) -> str:
    """Per dream a stacked bar (insights added, edited, retired) and the line of active insights after it."""
    top, right, bottom, left = _CHART_MARGIN
    inner_w, inner_h = CHART_WIDTH - left - right, CHART_HEIGHT - top - bottom
    peak = max([max(d.active_after, d.added + d.edited + d.retired) for d in dreams] or [1])
    ceiling = _nice_ceiling(peak)
    band = inner_w / max(1, len(dreams))
    bar = min(26.0, band * 0.62)

    def y(value: float) -> float:
        return top + inner_h - value / ceiling * inner_h

    parts = ['<g class="axis">']
    for tick in range(5):
        value = ceiling * tick / 4
        parts.append(
            f'<line class="gridline" x1="{left}" x2="{CHART_WIDTH - right}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
        )
        label = f"{value:g}" if value != int(value) else str(int(value))
        parts.append(f'<text x="{left - 6}" y="{y(value) + 3.5:.1f}" text-anchor="end">{label}</text>')
    every = max(1, math.ceil(len(dreams) / 12))
    for n in range(len(dreams)):
        if n % every == 0 or n == len(dreams) - 1:
            cx = left + band * (n + 0.5)
            parts.append(f'<text x="{cx:.1f}" y="{CHART_HEIGHT - bottom + 15}" text-anchor="middle">{n + 1}</text>')
    parts.append(f'<text x="{left + inner_w / 2:.1f}" y="{CHART_HEIGHT - 3}" text-anchor="middle">dream</text></g>')
    for n, d in enumerate(dreams):
        cx = left + band * (n + 0.5)
        title = escape(
            f"dream {n + 1} ({d.id}, {d.created_at:%Y-%m-%d %H:%M}): {d.episodes} episodes; +{d.added} added, "
            f"{d.edited} edited, {d.retired} retired; {d.active_after} active after it"
        )
        group = [f'<g class="dream"><title>{title}</title>']
        base = 0
        for value, cls in ((d.added, "bar-add"), (d.edited, "bar-edit"), (d.retired, "bar-retire")):
            if value:
                group.append(
                    f'<rect class="{cls}" x="{cx - bar / 2:.1f}" y="{y(base + value):.1f}" width="{bar:.1f}" '
                    f'height="{y(base) - y(base + value):.1f}" rx="1.5"/>'
                )
                base += value
        # A transparent column over the whole band, so the title shows wherever the band is hovered.
        group.append(
            f'<rect x="{cx - band / 2:.1f}" y="{top}" width="{band:.1f}" height="{inner_h}" fill="transparent"/></g>'
        )
        parts.append("".join(group))
    line = " ".join(f"{left + band * (n + 0.5):.1f},{y(d.active_after):.1f}" for n, d in enumerate(dreams))
    if len(dreams) > 1:
        parts.append(f'<polyline class="active-line" points="{line}"/>')
    dot = 3.2 if len(dreams) <= 30 else 2.2
    for n, d in enumerate(dreams):
        parts.append(
            f'<circle class="active-dot" cx="{left + band * (n + 0.5):.1f}" cy="{y(d.active_after):.1f}" r="{dot}"/>'
        )
    return (
        f'<svg class="chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
        f'aria-label="insights added, edited and retired per dream, and active insights after each">'
        + "".join(parts)
        + "</svg>"
    )
