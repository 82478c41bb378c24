"""`langdream report`: gathering from a real dreamt memory, the 2-D projection, escaping of
untrusted text, the CLI, and the page itself in a real headless Chromium (offline)."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from langdream import DreamMemory, Episode
from langdream.cli import app
from langdream.config import DEFAULT_REPORT_FILE
from langdream.errors import UnknownNamespaceError, UsageError
from langdream.namespace import format_namespace
from langdream.report import awrite_report, build_report, gather, write_report
from langdream.report.gather import allot_points, sample_ids
from langdream.report.projection import fit_to_box, pca_2d, spread_duplicates
from langdream.types import Message, Outcome

REACT = ("hotpotqa", "react")
REFLEXION = ("hotpotqa", "reflexion")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & "q" </textarea>'


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder, hotpotqa_episodes):
    """Real HotpotQA runs of 24 questions in two namespaces: plain ReAct dreamt twice (trials 1-3,
    then 4-5), ReAct with Reflexion dreamt once; then runs of three more questions recorded into
    the ReAct namespace and left pending. Yields the memory and the ReAct dreams' reports."""
    memory = DreamMemory(tmp_path_factory.mktemp("report") / "home", embedder=embedder)
    questions = sorted({e.metadata["question_id"] for e in hotpotqa_episodes})
    chosen, later = set(questions[:24]), set(questions[24:27])

    def record(variant: str, trials: set[int], among: set[str], namespace: tuple[str, ...]) -> None:
        for e in hotpotqa_episodes:
            if (
                e.metadata["variant"] == variant
                and e.metadata["trial"] in trials
                and e.metadata["question_id"] in among
            ):
                memory.record(e.model_copy(update={"namespace": namespace}))

    record("react_base", {1, 2, 3}, chosen, REACT)
    reports = memory.dream(REACT)
    record("react_base", {4, 5}, chosen, REACT)
    reports += memory.dream(REACT)
    record("react_reflexion", {1, 2, 3, 4, 5}, chosen, REFLEXION)
    memory.dream(REFLEXION)
    record("react_base", {1, 2}, later, REACT)
    yield memory, reports
    memory.close()


@pytest.fixture(scope="module")
def dreamt(built) -> DreamMemory:
    return built[0]


@pytest.fixture(scope="module")
def data(dreamt):
    return gather(dreamt)


def _section(data, namespace):
    (found,) = [s for s in data.sections if s.namespace == namespace]
    return found


# -- projection --------------------------------------------------------------------------------


def test_pca_separates_groups_and_is_deterministic():
    rng = np.random.default_rng(7)
    centre = rng.normal(size=384)
    a = centre + rng.normal(scale=0.05, size=(40, 384))
    b = -centre + rng.normal(scale=0.05, size=(40, 384))
    vectors = np.vstack([a, b])
    coords = pca_2d(vectors)
    assert coords.shape == (80, 2)
    # The groups fall on either side of the first axis.
    assert (np.sign(coords[:40, 0]) == -np.sign(coords[40:, 0])).all()
    assert np.array_equal(coords, pca_2d(vectors))
    # Signs are fixed by the loadings, not by the row order: permuting rows permutes the points.
    order = rng.permutation(80)
    assert np.allclose(pca_2d(vectors[order]), coords[order])


def test_pca_degenerate_inputs_stay_finite():
    assert pca_2d(np.zeros((0, 384))).shape == (0, 2)
    assert np.array_equal(pca_2d(np.ones((1, 8))), np.zeros((1, 2)))
    same = pca_2d(np.ones((5, 8)))
    assert np.array_equal(same, np.zeros((5, 2)))
    two = pca_2d(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert two[:, 1].tolist() == [0.0, 0.0] and two[0, 0] == -two[1, 0] != 0
    with pytest.raises(ValueError):
        pca_2d(np.ones(5))


def test_fit_to_box_and_spreading_duplicates():
    coords = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    placed = fit_to_box(coords, 700, 400, 20)
    assert (placed[:, 0] >= 20 - 1e-9).all() and (placed[:, 0] <= 680 + 1e-9).all()
    assert (placed[:, 1] >= 20 - 1e-9).all() and (placed[:, 1] <= 380 + 1e-9).all()
    assert placed[2, 1] < placed[0, 1]  # y points up
    spread = spread_duplicates(placed, 5.0)
    assert np.array_equal(spread[:3], placed[:3])  # the first at a spot stays put
    assert len({(round(x, 3), round(y, 3)) for x, y in spread}) == 5
    assert np.linalg.norm(spread[3] - placed[3]) == pytest.approx(5.0)
    assert fit_to_box(np.ones((3, 2)), 100, 100, 10).tolist() == [[50.0, 50.0]] * 3


def test_points_are_shared_fairly_and_sampled_the_same_way_every_time():
    assert allot_points([10, 5000, 20000], 3000) == [10, 1495, 1495]
    assert allot_points([10, 20], 3000) == [10, 20]
    assert sum(allot_points([7, 7, 7], 10)) == 10
    assert allot_points([5], 0) == [0]
    ids = [f"ep-{n}" for n in range(100)]
    assert sample_ids(ids, 10) == sample_ids(list(reversed(ids)), 10)
    assert len(set(sample_ids(ids, 10))) == 10 and sample_ids(ids, 500) == ids


# -- gathering -----------------------------------------------------------------------------------


def test_gather_counts_match_the_ledger(dreamt, data):
    assert [format_namespace(s.namespace) for s in data.sections] == ["hotpotqa/react", "hotpotqa/reflexion"]
    assert {format_namespace(s.namespace) for s in data.namespaces} == {"hotpotqa/react", "hotpotqa/reflexion"}
    react = _section(data, REACT)
    episodes = dreamt.ledger.list_episodes(REACT, limit=10_000)
    assert react.stats.episodes == len(episodes) == len(react.points)  # under the cap: every episode drawn
    assert react.stats.pending > 0 and not react.sampled
    assert react.successes == sum(e.outcome.success is True for e in episodes)
    assert react.failures == sum(e.outcome.success is False for e in episodes)
    member_of = dreamt.ledger.cluster_of([e.id for e in episodes])
    by_id = {e.id: e for e in episodes}
    for point in react.points:
        assert point.cluster == member_of.get(point.id)
        assert point.outcome == by_id[point.id].outcome.label
        assert point.task == by_id[point.id].task[:240]
    pending = {e.id for e in episodes if e.consolidated_by is None}
    assert all(p.cluster is None for p in react.points if p.id in pending)
    # Clusters: every lasting cluster of the namespace, biggest first, with its members' outcomes.
    assert {c.id for c in react.clusters} == {s.id for s in dreamt.ledger.clusters(REACT)}
    assert [c.label for c in react.clusters] == [f"C{n}" for n in range(1, len(react.clusters) + 1)]
    assert [c.size for c in react.clusters] == sorted((c.size for c in react.clusters), reverse=True)
    sizes = Counter(member_of.values())
    for cluster in react.clusters:
        members = [by_id[i] for i, c in member_of.items() if c == cluster.id]
        assert cluster.size == sizes[cluster.id] == len(members)
        assert cluster.successes == sum(e.outcome.success is True for e in members)
        assert cluster.failures == sum(e.outcome.success is False for e in members)
        assert cluster.task in {e.task[:240] for e in members}


def test_gather_insights_carry_their_evidence_and_clusters(dreamt, data):
    for section in data.sections:
        stored = dreamt.ledger.list_insights(section.namespace)
        assert {i.insight.id for i in section.insights} == {i.id for i in stored}
        assert section.insights_total == len(stored)
        statuses = [i.insight.status.value for i in section.insights]
        assert statuses == sorted(statuses, key=["active", "quarantined", "retired", "revoked"].index)
        for item in section.insights:
            evidence = dreamt.ledger.get_episodes(item.insight.evidence)
            assert item.evidence_successes == sum(e.outcome.success is True for e in evidence)
            assert item.evidence_failures == sum(e.outcome.success is False for e in evidence)
            assert set(item.clusters) == set(dreamt.ledger.cluster_of(item.insight.evidence).values())
    assert any(i.insight.status.value == "active" for i in _section(data, REACT).insights)


def test_gather_history_follows_the_dreams(built, data):
    dreamt, reports = built
    react = _section(data, REACT)
    assert len(reports) == 2 and all(r.job_id for r in reports)
    assert [d.id for d in react.dreams] == [r.job_id for r in reports]
    assert [(d.added, d.edited, d.retired) for d in react.dreams] == [(r.added, r.edited, r.retired) for r in reports]
    assert react.dreams[0].active_after <= react.dreams[0].added
    # Nobody changed an insight after the last dream: what was active then is active now.
    assert react.dreams[-1].active_after == len(dreamt.insights(REACT, status="active")) > 0
    assert len(_section(data, REFLEXION).dreams) == 1


def test_map_positions_come_from_the_index_and_group_similar_tasks(data):
    react, reflexion = _section(data, REACT), _section(data, REFLEXION)
    assert reflexion.vector_source == "index"  # all consolidated: every vector was in the index
    assert react.vector_source == "index+embedder"  # the pending runs were embedded for the report
    # Runs of one question share a task, hence a spot; runs of a cluster sit closer together
    # than runs in general.
    xy = np.array([[p.x, p.y] for p in react.points])
    by_task: dict[str, list[int]] = {}
    for n, p in enumerate(react.points):
        by_task.setdefault(p.task, []).append(n)
    repeated = [rows for rows in by_task.values() if len(rows) > 1]
    assert repeated and all(np.allclose(xy[rows], xy[rows[0]], atol=1e-5) for rows in repeated)
    overall = np.mean(np.linalg.norm(xy[:, None] - xy[None], axis=-1))
    within = [
        np.mean(np.linalg.norm(xy[rows][:, None] - xy[rows][None], axis=-1))
        for c in react.clusters
        if len(rows := [n for n, p in enumerate(react.points) if p.cluster == c.id]) > 1
    ]
    assert np.mean(within) < overall / 2


def test_gather_is_deterministic_and_caps_the_points(dreamt, data):
    again = gather(dreamt, REACT)
    assert [s.namespace for s in again.sections] == [REACT]
    assert again.sections[0].points == _section(data, REACT).points
    capped = gather(dreamt, max_points=100)
    assert sum(len(s.points) for s in capped.sections) == 100
    assert all(s.sampled for s in capped.sections)
    assert capped.sections[0].points == gather(dreamt, max_points=100).sections[0].points
    page = build_report(dreamt, max_points=100)
    assert "Showing a fixed sample of" in page
    assert len(page) < len(build_report(dreamt))
    with pytest.raises(UnknownNamespaceError):
        gather(dreamt, "no/such")
    with pytest.raises(UsageError):
        gather(dreamt, max_points=-1)


async def test_the_async_twin_writes_the_same_report(dreamt, tmp_path):
    path = await awrite_report(dreamt, tmp_path / "async.html", namespace="hotpotqa/reflexion", max_points=50)
    page = path.read_text(encoding="utf-8")
    assert 'data-namespace="hotpotqa/reflexion"' in page and "Showing a fixed sample of 50 of" in page
    # Apart from the time it was made, the page is the sync one.
    strip = re.compile(r"generated [0-9-]+ [0-9:]+ UTC")
    assert strip.sub("", page) == strip.sub("", build_report(dreamt, namespace=REFLEXION, max_points=50))


def test_an_empty_data_home_still_gets_a_page(memory, tmp_path):
    path = write_report(memory, tmp_path / "out" / "empty.html")
    assert path.is_file() and "has no episodes yet" in path.read_text(encoding="utf-8")
    with pytest.raises(UsageError) as info:
        write_report(memory, tmp_path)
    assert info.value.hint


# -- escaping ------------------------------------------------------------------------------------


@pytest.fixture
def hostile(make_memory) -> DreamMemory:
    """A namespace whose runs all carry markup in their task; the extractive reflector quotes it
    in the insight it learns, so the insight text is hostile too."""
    memory = make_memory()
    for n in range(6):
        memory.record(
            Episode(
                id=f"evil-{n}",
                namespace=("evil",),
                task=HOSTILE,
                thread_id=f"t{n % 3}",
                outcome=Outcome(success=n == 0),
                messages=[Message(role="user", content=HOSTILE), Message(role="assistant", content="no idea")],
                final_answer="no idea",
            )
        )
    memory.dream("evil")
    assert any("<script>" in i.text for i in memory.insights("evil", status="all"))
    return memory


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_untrusted_text_is_escaped(hostile):
    page = build_report(hostile)
    assert "<script>window.__pwned" not in page and "<img src=x" not in page
    assert html.escape(HOSTILE, quote=True) in page  # the insight text and the typical task, as text
    parser = _Tags()
    parser.feed(page)
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    # The page's own script, and one JSON block per namespace: nothing else.
    assert len(scripts) == 2 and scripts[0] == {"type": "application/json", "class": "points"}
    assert not [t for t, _ in parser.tags if t == "img"]
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    block = re.search(r'<script type="application/json" class="points">(.*?)</script>', page, re.DOTALL).group(1)
    assert "<" not in block and json.loads(block)["p"][0][1] == HOSTILE


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_report_writes_the_file_and_prints_its_path(dreamt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(dreamt.home), "report"])
    assert result.exit_code == 0, result.output
    default = (tmp_path / DEFAULT_REPORT_FILE).resolve()
    assert result.stdout.strip() == str(default) and default.is_file()
    assert "hotpotqa/reflexion" in default.read_text(encoding="utf-8")

    result = runner.invoke(
        app, ["--home", str(dreamt.home), "report", "--out", "sub/one.html", "-n", "hotpotqa/react", "--json"]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    page = Path(written["path"]).read_text(encoding="utf-8")
    assert written["bytes"] == len(page.encode("utf-8"))
    assert 'data-namespace="hotpotqa/react"' in page and 'data-namespace="hotpotqa/reflexion"' not in page

    result = runner.invoke(app, ["--home", str(dreamt.home), "report", "-n", "nope"])
    assert result.exit_code == 1
    assert "unknown namespace 'nope'" in result.stderr and "hint:" in result.stderr


# -- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (Debian package `chromium`); it is not installed here")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class _Page:
    """A page that records console errors, page errors and every request that was not a file."""

    def __init__(self, browser, path: Path) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: None if r.url.startswith("file:") else self.outside.append(r.url))
        self.page.route("**/*", self._route)
        self.page.goto(path.resolve().as_uri())

    def _route(self, route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()


def test_the_page_works_in_chromium_offline(browser, dreamt, data, tmp_path):
    path = write_report(dreamt, tmp_path / "report.html")
    view = _Page(browser, path)
    page = view.page
    assert page.evaluate("document.documentElement.classList.contains('js')")  # the script ran (CSP hash)
    react, reflexion = _section(data, REACT), _section(data, REFLEXION)
    first, second = page.locator("section.ns").nth(0), page.locator("section.ns").nth(1)
    assert first.get_attribute("data-namespace") == "hotpotqa/react"
    assert first.is_visible() and not second.is_visible()

    # One mark per drawn episode, as many as the note says.
    marks = first.locator("svg.map .pt")
    assert marks.count() == len(react.points) == int(first.locator(".note[data-drawn]").get_attribute("data-drawn"))
    assert first.locator("svg.map .pt.f").count() == sum(p.outcome == "failure" for p in react.points)
    assert first.locator("svg.map .pt.k0").count() == sum(p.cluster is None for p in react.points)

    # The insights listed are the namespace's insights.
    listed = first.locator(".insights .ins").evaluate_all("els => els.map(e => e.dataset.id)")
    assert sorted(listed) == sorted(i.insight.id for i in react.insights)
    assert first.locator("svg.chart").count() == 1

    # Hovering the topmost mark shows its task, outcome and cluster.
    tip = page.locator("#tip")
    assert not tip.is_visible()
    last = marks.nth(marks.count() - 1)
    last.hover()
    point = react.points[int(last.get_attribute("data-i"))]
    assert tip.is_visible()
    assert point.task in tip.inner_text() and point.id in tip.inner_text()
    cluster = react.cluster(point.cluster) if point.cluster else None
    assert (f"cluster {cluster.label}" if cluster else "in no lasting cluster") in tip.inner_text()
    page.mouse.move(2, 2)
    assert not tip.is_visible()

    # Hovering a cluster's card highlights its marks on the map.
    head = first.locator(".cluster .head").first
    head.hover()
    on = first.locator("svg.map.focus .pt.on").count()
    label = head.locator(".lab").inner_text()
    (shown,) = [c for c in react.clusters if c.label == label]
    assert on == sum(p.cluster == shown.id for p in react.points) > 0

    # The status filter hides what is unticked.
    first.locator(".filters input[value=active]").uncheck()
    assert first.locator(".ins[data-status=active]").first.is_hidden()

    # The namespace selector shows the other namespace.
    page.select_option("#ns-select", "ns-2")
    assert second.is_visible() and not first.is_visible()
    assert second.locator("svg.map .pt").count() == len(reflexion.points)
    assert view.errors == [] and view.outside == []
    page.close()


def test_hostile_text_stays_text_in_chromium(browser, hostile, tmp_path):
    path = write_report(hostile, tmp_path / "evil.html")
    view = _Page(browser, path)
    page = view.page
    assert page.evaluate("window.__pwned") is None
    assert HOSTILE in page.locator(".ins-text").first.inner_text()
    page.locator("svg.map .pt").last.hover()
    assert HOSTILE in page.locator("#tip").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert view.errors == [] and view.outside == []
    page.close()
