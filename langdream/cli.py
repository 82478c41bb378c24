"""``langdream``: the command line, a thin shell over ``DreamMemory``.

Listings take ``--json``; long work shows progress bars on stderr (stdout stays clean for
JSON); errors print what went wrong and how to fix it, and exit with status 1.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from langdream._version import __version__
from langdream.config import CHROMA_URL_ENV, DEFAULT_REPORT_FILE, DEFAULT_REPORT_MAX_POINTS, HOME_ENV, LEDGER_URL_ENV
from langdream.errors import LangDreamError
from langdream.namespace import format_namespace


def _print_error(exc: LangDreamError) -> None:
    err.print(f"[red]error:[/red] {exc.message}", highlight=False)
    if exc.hint:
        err.print(f"  hint: {exc.hint}", markup=False, highlight=False)


class _Group(typer.core.TyperGroup):
    """Turns a ``LangDreamError`` from any command into its message, its hint and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LangDreamError as exc:
            _print_error(exc)
            ctx.exit(1)


# `langdream dream` exits with this when a dream was parked (not an error of the command itself).
PARKED_EXIT_CODE = 3

app = typer.Typer(
    name="langdream",
    cls=_Group,
    help="A memory for LangGraph agents that improves while they sleep.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
insights_app = typer.Typer(help="List, explain and review insights.", no_args_is_help=True)
episodes_app = typer.Typer(help="List and inspect recorded episodes.", no_args_is_help=True)
app.add_typer(insights_app, name="insights")
app.add_typer(episodes_app, name="episodes")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"home": None, "ledger_url": None, "chroma_url": None}

_STAGES = {
    "ingest": "reading episodes",
    "embed": "embedding episodes",
    "reflect": "reflecting on clusters",
    "apply": "applying insights",
}


def _version(value: bool) -> None:
    if value:
        out.print(f"langdream {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Optional[Path] = typer.Option(
        None, "--home", envvar=HOME_ENV, help="Data home (default ./.langdream).", show_default=False
    ),
    ledger_url: Optional[str] = typer.Option(
        None, "--ledger-url", envvar=LEDGER_URL_ENV, help="postgresql:// ledger (default: SQLite in the home).",
        show_default=False,
    ),
    chroma_url: Optional[str] = typer.Option(
        None, "--chroma-url", envvar=CHROMA_URL_ENV, help="http(s):// chroma server (default: chroma/ in the home).",
        show_default=False,
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what langdream does."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    _state.update(home=home, ledger_url=ledger_url, chroma_url=chroma_url)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


def memory(**kwargs: Any):
    from langdream.memory import DreamMemory

    return DreamMemory(_state["home"], ledger_url=_state["ledger_url"], chroma_url=_state["chroma_url"], **kwargs)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Callable[[str, int, int | None], None]]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on stderr."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bars:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            # total None: not known in advance (a file being read), the bar shows a count;
            # total 0: nothing to do in this stage, shown as complete.
            if total == 0:
                done, total = 1, 1
            if stage not in tasks:
                tasks[stage] = bars.add_task(_STAGES.get(stage, stage), total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield update


def insight_json(insight, *, history=None) -> dict[str, Any]:
    data = insight.model_dump(mode="json")
    if history is not None:
        data["history"] = [v.model_dump(mode="json") for v in history]
    return data


# -- commands -----------------------------------------------------------------------------------


@app.command()
def demo(
    model: Optional[str] = typer.Option(None, "--model", help="Reflect with this chat model, e.g. anthropic:claude-sonnet-4-5."),
    held_out: int = typer.Option(5, "--held-out", min=1, help="Questions kept out of the memory to show recall on."),
) -> None:
    """Dream over real HotpotQA ReAct runs and show what a new question would be told."""
    from langdream.demo import run_demo

    run_demo(out, err, home=_state["home"], model=model, held_out=held_out, progress=progress_bars)


@app.command()
def ingest(
    file: Path = typer.Argument(..., help="Episodes as JSON Lines (.jsonl or .jsonl.gz)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Namespace for lines that name none (default 'default')."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import episodes from a JSONL file. Bad lines are reported by number; good lines are kept."""
    with memory() as mem, progress_bars(not as_json) as progress:
        seen = [0]

        def counted(n: int) -> None:
            seen[0] += n
            progress("ingest", seen[0], None)

        report = mem.ingest(file, namespace=namespace, progress=counted)
    if as_json:
        emit_json(report.model_dump(mode="json"))
    else:
        out.print(f"added {report.added} episodes, {report.duplicates} already stored")
        for ns, count in sorted(report.namespaces.items()):
            out.print(f"  {ns}: {count}")
        for error in report.errors:
            err.print(f"[red]line {error.line}[/red]: {error.reason}")
    if report.errors:
        raise typer.Exit(1)


@app.command()
def dream(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Dream over this namespace only."),
    model: Optional[str] = typer.Option(None, "--model", help="Reflect with this chat model (provider:name)."),
    as_json: bool = typer.Option(False, "--json", help="Print the dream reports as JSON."),
) -> None:
    """Consolidate new episodes into insights (also what cron should run).

    Exits with status 3 when a dream was parked (its reflections kept failing; the next dream
    resumes it), so a scheduler can alert on it.
    """
    with memory() as mem, progress_bars(not as_json) as progress:
        reports = mem.dream(namespace, model=model, progress=progress)
    if as_json:
        emit_json([r.model_dump(mode="json") for r in reports])
    else:
        if not reports:
            out.print("nothing to dream about: no namespace has new episodes")
        for report in reports:
            out.print(report.summary())
    if any(r.parked for r in reports):
        raise typer.Exit(PARKED_EXIT_CODE)


@insights_app.command("list")
def insights_list(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Only this namespace (labels joined by '/')."),
    status: str = typer.Option("active", "--status", "-s", help="active, quarantined, retired, revoked or all."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List insights."""
    if status not in ("active", "quarantined", "retired", "revoked", "all"):
        raise LangDreamError(f"unknown status {status!r}", hint="use active, quarantined, retired, revoked or all")
    with memory() as mem:
        found = mem.insights(namespace, status=status)  # type: ignore[arg-type]
    if as_json:
        emit_json([insight_json(i) for i in found])
        return
    table = Table("namespace", "status", "support", "conf.", "insight", show_lines=False)
    table.add_column("id", no_wrap=True)  # whole, so it can be copied into `insights show`
    for i in found:
        status = f"{i.status.value} ({i.hold.value})" if i.hold else i.status.value
        table.add_row(format_namespace(i.namespace), status, str(i.support), f"{i.confidence:.2f}", i.display_text(), i.id)
    out.print(table if found else "no insights")


@insights_app.command("show")
def insights_show(
    insight_id: str = typer.Argument(..., help="The insight's id (see `insights list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with history and evidence episodes)."),
) -> None:
    """Show one insight with its evidence episodes and its history."""
    with memory() as mem:
        insight = mem.insight(insight_id)
        history = mem.history(insight_id)
        evidence = mem.ledger.get_episodes(insight.evidence)
    if as_json:
        data = insight_json(insight, history=history)
        data["evidence_episodes"] = [
            {"id": e.id, "task": e.task, "outcome": e.outcome.model_dump(), "thread_id": e.thread_id} for e in evidence
        ]
        emit_json(data)
        return
    out.print(f"[bold]{insight.id}[/bold]  ({insight.status.value}: {insight.status_reason})")
    out.print(f"  {insight.display_text()}", markup=False)
    out.print(f"  applies: {insight.applies_when or '-'}", markup=False)
    out.print(
        f"  namespace {format_namespace(insight.namespace)}; support {insight.support} episodes, {insight.threads} threads, "
        f"{insight.tasks} tasks; confidence {insight.confidence:.2f}; {insight.origin.value} by {insight.model_id} "
        f"({insight.prompt_version})"
    )
    wins = sum(1 for e in evidence if e.outcome.success is True)
    losses = sum(1 for e in evidence if e.outcome.success is False)
    out.print(f"  evidence: {len(evidence)} episodes ({wins} succeeded, {losses} failed)")
    for e in evidence[:10]:
        out.print(f"    {e.id}  ({e.outcome.label})  {e.task[:90]}", markup=False)
    if len(evidence) > 10:
        out.print(f"    … and {len(evidence) - 10} more (--json lists all)")
    out.print("  history:")
    for v in history:
        out.print(f"    v{v.version} {v.created_at:%Y-%m-%d %H:%M} {v.action.value:<8} {v.status.value:<11} dream {v.job_id}")


@insights_app.command("explain")
def insights_explain(
    insight_id: str = typer.Argument(..., help="The insight's id (see `insights list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole explanation as JSON."),
) -> None:
    """Why this insight is believed: every version with who changed it and why, its evidence
    episodes with their outcomes, the dream jobs, and how runs shown it went."""
    with memory() as mem:
        explained = mem.explain(insight_id)
    if as_json:
        emit_json(explained.model_dump(mode="json"))
        return
    insight = explained.insight
    hold = f", held: {insight.hold.value}" if insight.hold else ""
    out.print(f"[bold]{insight.id}[/bold]  {insight.status.value}{hold} — {insight.status_reason}", highlight=False)
    out.print(f"  {insight.display_text()}", markup=False)
    out.print(f"  applies: {insight.applies_when or '-'}; namespace {format_namespace(insight.namespace)}", markup=False)
    out.print("  versions:")
    for v in explained.versions:
        source = f"dream {v.job_id} ({v.model_id}, {v.prompt_version})" if v.actor == "dream" else v.actor
        out.print(
            f"    v{v.version} #{v.seq} {v.created_at:%Y-%m-%d %H:%M} {v.action.value:<8} → {v.status.value:<11} "
            f"support {v.support}/{v.threads} threads, conf. {v.confidence:.2f}; {source}: {v.cause}",
            markup=False,
        )
    out.print(
        f"  evidence: {len(explained.evidence)} episodes "
        f"({explained.successes()} succeeded, {explained.failures()} failed)"
    )
    for e in explained.evidence[:20]:
        shown = " [was shown this insight]" if e.shown_this_insight else ""
        task = (e.task or "(forgotten)")[:80]
        out.print(f"    {e.id}  {e.outcome:<9} thread {e.thread_id or '-'}  {task}{shown}", markup=False)
    if len(explained.evidence) > 20:
        out.print(f"    … and {len(explained.evidence) - 20} more (--json lists all)")
    out.print("  dreams:")
    for job in explained.jobs:
        out.print(f"    {job.id}  {job.status}  {job.created_at:%Y-%m-%d %H:%M}  {len(job.episodes)} episodes, {job.model_id}")
    effect = explained.effect
    out.print(
        f"  effect: shown to {effect.shown} runs ({effect.shown_successes} succeeded); "
        f"{effect.unshown} comparable runs not shown it ({effect.unshown_successes} succeeded)"
    )


@insights_app.command("review")
def insights_review(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Only this namespace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the quarantined insights that wait for a person, with why (approve / reject / retire them)."""
    with memory() as mem:
        held = mem.review_queue(namespace)
    if as_json:
        emit_json([insight_json(i) for i in held])
        return
    table = Table("namespace", "hold", "support", "insight", "reason")
    table.add_column("id", no_wrap=True)
    for i in held:
        table.add_row(format_namespace(i.namespace), i.hold.value if i.hold else "", str(i.support), i.display_text(), i.status_reason, i.id)
    out.print(table if held else "nothing waits for review")


def _person_action(action: str, insight_id: str, note: str, actor: Optional[str], as_json: bool) -> None:
    with memory() as mem:
        insight = getattr(mem, action)(insight_id, actor=actor, note=note)
    if as_json:
        emit_json(insight_json(insight))
    else:
        out.print(f"{insight.id}: {insight.status.value} — {insight.status_reason}", markup=False)


_NOTE = typer.Option("", "--note", help="Why (kept in the insight's history).")
_ACTOR = typer.Option(None, "--actor", help="Who acts (default person:<login name>).")
_JSON = typer.Option(False, "--json", help="Print the insight as JSON.")


@insights_app.command("approve")
def insights_approve(insight_id: str = typer.Argument(..., help="A quarantined insight's id."), note: str = _NOTE, actor: Optional[str] = _ACTOR, as_json: bool = _JSON) -> None:
    """Lift an insight's hold; it becomes active once its support is earned."""
    _person_action("approve", insight_id, note, actor, as_json)


@insights_app.command("reject")
def insights_reject(insight_id: str = typer.Argument(..., help="The insight's id."), note: str = _NOTE, actor: Optional[str] = _ACTOR, as_json: bool = _JSON) -> None:
    """Revoke an insight (dreams will not learn it again silently); for a held edit, undo the edit."""
    _person_action("reject", insight_id, note, actor, as_json)


@insights_app.command("retire")
def insights_retire(insight_id: str = typer.Argument(..., help="The insight's id."), note: str = _NOTE, actor: Optional[str] = _ACTOR, as_json: bool = _JSON) -> None:
    """Retire an insight by your decision (remembered like one retired by evidence)."""
    _person_action("retire", insight_id, note, actor, as_json)


@app.command()
def jobs(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Only this namespace."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List dream jobs, newest first (their ids are what `rollback --to-dream` takes)."""
    with memory() as mem:
        found = mem.jobs(namespace, limit=limit)
    if as_json:
        emit_json([j.model_dump(mode="json", exclude={"episodes", "clusters", "cluster_ids", "noise"}) for j in found])
        return
    table = Table("namespace", "status", "created", "episodes", "result")
    table.add_column("id", no_wrap=True)
    for j in found:
        result = j.report.summary() if j.report else (f"parked: {j.parked_reason}" if j.parked_reason else "-")
        table.add_row(format_namespace(j.namespace), j.status, f"{j.created_at:%Y-%m-%d %H:%M}", str(len(j.episodes)), result, j.id)
    out.print(table if found else "no dream jobs yet")


@app.command()
def rollback(
    to_dream: str = typer.Option(..., "--to-dream", help="The dream job to go back to (see `langdream jobs`)."),
    actor: Optional[str] = _ACTOR,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Restore a namespace's insights to what they were right after dream JOB; later ones are revoked."""
    with memory() as mem:
        report = mem.rollback(to_dream, actor=actor)
    if as_json:
        emit_json(report.model_dump(mode="json"))
    else:
        out.print(
            f"{format_namespace(report.namespace)}: back to dream {report.to_dream}: {len(report.restored)} restored, "
            f"{len(report.revoked)} revoked, {report.unchanged} unchanged"
        )


@app.command()
def forget(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Forget this whole namespace (or narrow the others to it)."),
    episode: Optional[list[str]] = typer.Option(None, "--episode", help="Forget this episode (id or run id); repeatable."),
    thread: Optional[str] = typer.Option(None, "--thread", help="Forget every episode of this thread."),
    actor: Optional[str] = _ACTOR,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Delete episodes and everything derived from them; insights that cited them are recounted."""
    with memory() as mem:
        report = mem.forget(namespace=namespace, episode=episode or None, thread=thread, actor=actor)
    if as_json:
        emit_json(report.model_dump(mode="json"))
        return
    out.print(
        f"forgot {report.episodes} episodes; insights: {report.insights_deleted} deleted with their namespace, "
        f"{report.insights_revoked} revoked, {report.insights_updated} recounted; "
        f"data home {report.bytes_before:,} → {report.bytes_after:,} bytes"
    )


@episodes_app.command("list")
def episodes_list(
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Only this namespace (labels joined by '/')."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many episodes."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many of the newest first."),
    pending: Optional[bool] = typer.Option(None, "--pending/--consolidated", help="Only episodes waiting for / consumed by a dream."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List recorded episodes, newest first."""
    with memory() as mem:
        found = mem.episodes(namespace, limit=limit, offset=offset, pending=pending)
    if as_json:
        emit_json([e.model_dump(mode="json", exclude={"messages"}) for e in found])
        return
    table = Table("namespace", "outcome", "dream", "task")
    table.add_column("id", no_wrap=True)  # whole, so it can be copied into `episodes show`
    for e in found:
        table.add_row(format_namespace(e.namespace), e.outcome.label, e.consolidated_by or "pending", e.task[:80], e.id)
    out.print(table if found else "no episodes")


@episodes_app.command("show")
def episodes_show(
    episode_id: str = typer.Argument(..., help="Episode id or run id."),
    as_json: bool = typer.Option(False, "--json", help="Print the episode as JSON."),
) -> None:
    """Show one episode (by episode id or run id) with its trajectory."""
    with memory() as mem:
        episode = mem.episode(episode_id)
    if as_json:
        emit_json(episode.model_dump(mode="json"))
        return
    out.print(f"[bold]{episode.id}[/bold]  {format_namespace(episode.namespace)}  thread {episode.thread_id or '-'}")
    out.print(f"  task: {episode.task}", markup=False)
    out.print(f"  outcome: {episode.outcome.label} (score {episode.outcome.score}, feedback {episode.outcome.feedback!r})")
    out.print(f"  shown insights: {', '.join(episode.injected_insight_ids) or '-'}")
    for m in episode.messages:
        calls = "".join(f" → {c.name}({json.dumps(c.args, ensure_ascii=False)})" for c in m.tool_calls)
        out.print(f"  [{m.role}{'/' + m.name if m.name else ''}] {m.content[:200]}{calls}", markup=False)
    out.print(f"  final answer: {episode.final_answer}")


@app.command()
def recall(
    task: str = typer.Argument(..., help="The task a new run would get."),
    namespace: str = typer.Option("default", "--namespace", "-n", help="The run's namespace (labels joined by '/')."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="At most this many insights."),
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="Token budget of the recalled text."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show the insights a run on TASK would recall, and the exact text it would receive."""
    with memory() as mem:
        ns = mem.require_namespace(namespace)
        result = mem.recall(task, ns, k=k, token_budget=budget)
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    if not result.insights:
        out.print("no active insight is relevant to this task")
        return
    for r in result.insights:
        out.print(f"{r.insight.id}  similarity {r.similarity:.2f}  score {r.score:.3f}")
    out.print(f"\n--- text the run receives ({result.tokens} tokens) ---")
    out.print(result.text, markup=False)


@app.command()
def feedback(
    run_id: str = typer.Argument(..., help="Run id (or episode id) of a recorded run."),
    success: Optional[bool] = typer.Option(None, "--success/--failure", help="Whether the run succeeded."),
    score: Optional[float] = typer.Option(None, "--score", help="A score for the run (default 1.0/0.0 with --success/--failure)."),
    note: Optional[str] = typer.Option(None, "--note", help="Free-text feedback."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Attach or change the outcome of a recorded run."""
    with memory() as mem:
        episode = mem.feedback(run_id, success=success, score=score, feedback=note)
    if as_json:
        emit_json(episode.model_dump(mode="json", exclude={"messages"}))
    else:
        out.print(f"{episode.id}: {episode.outcome.label}; it will be weighed again by the next dream")


@app.command()
def namespaces(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List namespaces with their episode and insight counts."""
    with memory() as mem:
        stats = mem.namespaces()
    if as_json:
        emit_json([s.model_dump(mode="json") for s in stats])
        return
    table = Table("namespace", "episodes", "pending", "insights")
    for s in stats:
        table.add_row(format_namespace(s.namespace), str(s.episodes), str(s.pending), json.dumps(s.insights))
    out.print(table if stats else "no namespaces yet")


@app.command()
def report(
    out_file: Path = typer.Option(Path(DEFAULT_REPORT_FILE), "--out", "-o", help="Write the HTML report to this file."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Only this namespace (default: all of them)."),
    max_points: int = typer.Option(
        DEFAULT_REPORT_MAX_POINTS, "--max-points", min=0, help="Draw at most this many episodes on the maps (a fixed sample beyond)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the path and size as JSON."),
) -> None:
    """Write one self-contained HTML page of what was learned: an episode map coloured by cluster,
    each cluster's insights, what every dream changed, and the namespaces. Prints its path."""
    from langdream.report import write_report

    with memory() as mem:
        path = write_report(mem, out_file, namespace=namespace, max_points=max_points).resolve()
    if as_json:
        emit_json({"path": str(path), "bytes": path.stat().st_size})
    else:
        out.print(str(path), markup=False, highlight=False, soft_wrap=True)


@app.command()
def reindex(as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON.")) -> None:
    """Rebuild the chroma index from the ledger."""
    with memory() as mem, progress_bars(not as_json) as progress:
        counts = mem.reindex(progress=progress)
    if as_json:
        emit_json(counts)
    else:
        out.print(f"reindexed {counts['episodes']} episodes and {counts['insights']} active insights")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """What is installed, which device and model are used, and where the data lives."""
    from langdream.doctor import diagnose

    report = diagnose(_state["home"], ledger_url=_state["ledger_url"], chroma_url=_state["chroma_url"])
    if as_json:
        emit_json(report)
        return
    for section, values in report.items():
        out.print(f"[bold]{section}[/bold]")
        for key, value in values.items():
            out.print(f"  {key}: {value}", markup=False)


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="Smaller sizes and fewer repeats (a few minutes; what CI runs)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results document to this file."),
    section: Optional[list[str]] = typer.Option(
        None, "--section", help="Run only this section (repeatable): recall, embedding, clustering, incremental, fanout, stores, postgres."
    ),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Folder with clinc150/ and banking77/ (default $LANGDREAM_SHARED_DATA or ../shared/data)."
    ),
) -> None:
    """Measure speed, memory and quality against peers in the same run; print a table, write JSON."""
    from langdream.bench import run_bench

    document = run_bench(
        quick=quick, sections=section, json_out=json_out, data_dir=data, log=lambda line: err.print(line, markup=False)
    )
    out.print(document["table"], markup=False, highlight=False)
    missed = [t for t in document["targets"] if not t["met"]]
    verdict = "all targets met" if not missed else f"{len(missed)} target(s) missed"
    out.print(f"{verdict}; {document['seconds']}s" + (f"; results in {json_out}" if json_out else ""), markup=False)
    if missed:
        raise typer.Exit(2)


def main(args: Optional[list[str]] = None) -> None:
    app(args=args)


if __name__ == "__main__":
    main()
