"""Namespace isolation, end to end: 50 look-alike namespaces, each with its own canary, dreamed
over, then probed through every read path (recall, explain, insights, episodes, jobs, the CLI)
with queries that carry every other namespace's canary. Not one foreign canary may come back."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict

import pytest
from typer.testing import CliRunner

from langdream import DreamMemory, Episode, InsightStatus, UnknownNamespaceError
from langdream.cli import app
from langdream.namespace import format_namespace

# Exact-match look-alikes: prefixes, suffixes, case, SQL LIKE / glob wildcards, separators inside a
# label, quoting characters, unicode homoglyphs (Cyrillic а/е, fullwidth), invisible characters,
# NFC vs NFD, ligatures, and tuples that differ only in depth or in one label.
NAMESPACES: list[tuple[str, ...]] = [
    ("acme",),
    ("acme-corp",),
    ("acme_corp",),
    ("acme.corp",),
    ("acme corp",),
    ("acme,corp",),
    ("Acme",),
    ("ACME",),
    ("\u0430cme",),  # Cyrillic а
    ("acm\u0435",),  # Cyrillic е
    ("\uff41\uff43\uff4d\uff45",),  # fullwidth ａｃｍｅ
    ("acme\u200b",),  # zero-width space
    ("acme\x00",),  # NUL
    ("acme\t1",),
    ("acme%",),
    ("acme*",),
    ("acme_",),
    ("acme?",),
    ("%",),
    ("_",),
    ("*",),
    ("acme\\",),
    ("acme'",),
    ('acme"',),
    ('["acme"]',),
    ("acme", "u1"),
    ("acme", "u10"),
    ("acme", "U1"),
    ("acme", "u1", "x"),
    ("acme", "corp"),
    ("acme-corp", "u1"),
    ("acme,u1",),
    ("u1",),
    ("u10",),
    ("u1", "x"),
    ("u1x",),
    ("U1",),
    ("u", "1"),
    ("u01",),
    ("1",),
    ("01",),
    ("caf\u00e9",),  # NFC
    ("cafe\u0301",),  # NFD: same glyphs, other code points
    ("\ufb00",),  # ligature ﬀ
    ("ff",),
    ("x", "u1"),
    ("default",),
    ("default", "default"),
    ("ACME", "U1"),
    ("acme-corp-eu",),
]
# Mixed-outcome HotpotQA questions of the shipped sample (at least 2 successes and 2 failures)
# whose runs differ in behaviour enough for the extractive reflector to learn an active lesson.
QUESTIONS = [
    "13c27928bc",
    "578ce731df",
    "5df6f3c84d",
    "6ed5900117",
    "7ed5dc67a8",
    "8c0b85b8ef",
    "bc8144da70",
    "c3cf23df06",
    "c4db2e9d04",
    "c7929109e3",
    "e5319f7e07",
]
CANARY = re.compile(r"CANARY-(\d{2})-[0-9a-f]{12}")


def canaries_in(text: str) -> set[int]:
    """The namespace numbers of every canary in ``text``."""
    return {int(m.group(1)) for m in CANARY.finditer(text)}


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder, hotpotqa_records):
    """A data home with 50 look-alike namespaces, each holding one question's real runs with its
    canary in the ids, tasks, tool calls, tool results, assistant messages and answers; dreamed."""
    assert len(set(NAMESPACES)) == 50
    by_question: dict[str, list[dict]] = defaultdict(list)
    for record in hotpotqa_records:
        by_question[record["metadata"]["question_id"]].append(record)
    rng = random.Random(4242)
    canaries = [f"CANARY-{i:02d}-{rng.getrandbits(48):012x}" for i in range(len(NAMESPACES))]
    home = tmp_path_factory.mktemp("isolation") / "home"
    memory = DreamMemory(home, embedder=embedder)
    episode_ids: dict[int, set[str]] = {}
    tasks: dict[int, str] = {}
    for i, (namespace, canary) in enumerate(zip(NAMESPACES, canaries)):
        runs = by_question[QUESTIONS[i % len(QUESTIONS)]]
        outcomes = Counter(r["outcome"]["success"] for r in runs)
        assert outcomes[True] >= 2 and outcomes[False] >= 2 and len({r["thread_id"] for r in runs}) >= 2
        episode_ids[i] = set()
        for record in runs:
            task = f"{record['task']} [{canary}]"
            messages = []
            for message in record["messages"]:
                message = json.loads(json.dumps(message))
                if message["role"] == "user":
                    message["content"] = task
                elif message["role"] == "tool":
                    message["content"] += f" (retrieved for {canary})"
                elif message["role"] == "assistant":
                    message["content"] += f" ({canary})"
                messages.append(message)
            episode = Episode.model_validate(
                {
                    **record,
                    "id": f"{canary}-{record['id']}",
                    "run_id": f"run-{canary}-{record['id']}",
                    "namespace": namespace,
                    "thread_id": f"{canary}-{record['thread_id']}",
                    "task": task,
                    "messages": messages,
                    "final_answer": f"{record.get('final_answer') or ''} ({canary})",
                    "metadata": {**record["metadata"], "tenant_ref": canary},
                }
            )
            assert memory.record(episode)
            episode_ids[i].add(episode.id)
        tasks[i] = f"{runs[0]['task']} [{canary}]"
    reports = memory.dream()
    assert {r.namespace for r in reports} == set(NAMESPACES)
    yield memory, canaries, episode_ids, tasks, home
    memory.close()


def test_no_namespace_sees_another_namespaces_canaries(world):
    memory, canaries, episode_ids, tasks, _ = world
    leaks: list[str] = []
    checked = Counter()

    def check(where: str, text: str, own: int) -> None:
        checked[where] += 1
        foreign = canaries_in(text) - {own}
        if foreign:
            leaks.append(f"{where} of {format_namespace(NAMESPACES[own])!r} shows canaries of {sorted(foreign)}")

    assert canaries_in(" ".join(canaries)) == set(range(len(NAMESPACES))), "the detector must see every canary"
    assert {s.namespace for s in memory.namespaces()} == set(NAMESPACES)
    with_active = 0
    recalled_something = 0
    recalled_total = 0
    for i, namespace in enumerate(NAMESPACES):
        others = " ".join(c for j, c in enumerate(canaries) if j != i)
        # The namespace's own question, followed by every other namespace's canary; then a probe
        # made only of other namespaces' tasks (some of them the very same question) and canaries.
        neighbour = (i + 1) % len(NAMESPACES)
        queries = [f"{tasks[i]} {others}", f"{tasks[neighbour]} {tasks[(i + 11) % len(NAMESPACES)]} {others}"]
        listed = memory.insights(namespace, status="all")
        own_insights = {insight.id for insight in listed}
        active = [insight for insight in listed if insight.status is InsightStatus.ACTIVE]
        with_active += bool(active)
        explained: set[str] = set()
        for n, query in enumerate(queries):
            recall = memory.recall(query, namespace)
            check("recall.text", recall.text, i)
            check("recalled insights", json.dumps([r.model_dump(mode="json") for r in recall.insights]), i)
            for recalled in recall.insights:
                assert recalled.insight.namespace == namespace
                assert recalled.insight.id in own_insights, "recall returned an insight the namespace does not list"
                assert recalled.insight.status is InsightStatus.ACTIVE
            if n == 0 and recall.insights:
                recalled_something += 1
            recalled_total += len(recall.insights)
            explained.update(recall.insight_ids)
        check("insights(status=all)", json.dumps([insight.model_dump(mode="json") for insight in listed]), i)
        explained.update(own_insights)
        for insight_id in sorted(explained):
            explanation = memory.explain(insight_id)
            check("explain", explanation.model_dump_json(), i)
            assert explanation.insight.namespace == namespace
            evidence = {e.id for e in explanation.evidence}
            assert evidence and evidence <= episode_ids[i], "evidence from outside the namespace"
            for episode in explanation.evidence:
                assert episode.task is not None and canaries[i] in episode.task
            assert all(job.namespace == namespace for job in explanation.jobs)
            assert all(set(version.evidence) <= episode_ids[i] for version in explanation.versions)
        episodes = memory.episodes(namespace, limit=10_000)
        assert {e.id for e in episodes} == episode_ids[i]
        dumped = json.dumps([e.model_dump(mode="json") for e in episodes])
        assert dumped.count(canaries[i]) >= 5 * len(episodes), "the namespace's own canaries must be there"
        check("episodes", dumped, i)
        check("jobs", json.dumps([job.model_dump(mode="json") for job in memory.jobs(namespace)]), i)
        check("review queue", json.dumps([x.model_dump(mode="json") for x in memory.review_queue(namespace)]), i)

    print(
        f"\nisolation: {len(NAMESPACES)} namespaces ({with_active} with active insights); "
        f"{recalled_total} recalled insights in {checked['recall.text']} recalls; {checked['explain']} explanations; "
        f"checks {dict(checked)}; {len(leaks)} leaks"
    )
    assert leaks == [], f"{len(leaks)} leaks: {leaks[:10]}"
    assert with_active >= 40, f"only {with_active} of 50 namespaces learned an active insight"
    assert recalled_something >= 40, "recall of a namespace's own task must bring back its lessons"
    assert checked["explain"] >= len(NAMESPACES)


def test_look_alike_names_are_unknown_namespaces_not_prefixes(world):
    memory = world[0]
    for probe in [("acm",), ("acme-c",), ("acme", "u"), ("u",), ("acme", "u1", "x", "y"), ("caf",), ("ACME", "u1")]:
        with pytest.raises(UnknownNamespaceError):
            memory.episodes(probe)
        assert memory.recall("anything at all", probe).insights == []


def test_the_cli_recall_of_a_namespace_shows_nothing_of_its_look_alikes(world):
    memory, canaries, _, tasks, home = world
    runner = CliRunner()
    pairs = [
        (("acme",), ("acme-corp",)),
        (("u1",), ("u10",)),
        (("u1",), ("u1", "x")),
        (("acme", "u1"), ("acme", "u10")),
    ]
    shown = 0
    for own, other in pairs:
        i, j = NAMESPACES.index(own), NAMESPACES.index(other)
        other_ids = {insight.id for insight in memory.insights(other, status="all")}
        assert other_ids, f"{other} must have insights for this check to mean anything"
        own_active = {insight.id for insight in memory.insights(own)}
        # The other namespace's own task and canary, and this namespace's task.
        query = f"{tasks[j]} {tasks[i]} {canaries[j]}"
        plain = runner.invoke(app, ["--home", str(home), "recall", "--namespace", format_namespace(own), query])
        assert plain.exit_code == 0, plain.output
        assert canaries_in(plain.stdout) <= {i}
        assert not any(insight_id in plain.stdout for insight_id in other_ids)
        as_json = runner.invoke(
            app, ["--home", str(home), "recall", "--namespace", format_namespace(own), query, "--json"]
        )
        assert as_json.exit_code == 0, as_json.output
        result = json.loads(as_json.stdout)
        assert result["namespace"] == list(own)
        for recalled in result["insights"]:
            assert recalled["insight"]["namespace"] == list(own) and recalled["insight"]["id"] not in other_ids
        assert canaries_in(result["text"] + json.dumps(result["insights"])) <= {i}
        if own_active:
            assert result["insights"], f"{own} has active insights relevant to its own task"
            assert any(insight_id in plain.stdout for insight_id in own_active)
            shown += 1
    assert shown >= 2
