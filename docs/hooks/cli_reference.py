"""The CLI reference, generated from the CLI itself at build time (a mkdocs hook).

docs/cli.md holds what a person writes (the introduction, exit statuses, examples) and two
markers that this hook replaces:

- ``<!-- langdream-cli:global-options -->``: the usage line and the options of ``langdream`` itself.
- ``<!-- langdream-cli:commands -->``: every command of ``langdream.cli.app``, each under a
  ``### langdream <path>`` heading with its help text, its usage line and a table of its
  arguments and options (names, types, defaults, ranges, environment variables), as
  ``--help`` prints them.

The ``### langdream <path>`` sections written by hand after the commands marker carry the notes
and examples of one command each; the hook puts each under the generated part of its command.
Commands come in the order of those hand-written sections, then every other command in the
order the CLI lists them, so a new command appears without anyone touching docs/cli.md. A
hand-written section for a command the CLI does not have stops the build; a command or option
without help text is a warning (an error under ``mkdocs build --strict``).

``render_cli_page(markdown)`` is what tests/test_docs.py checks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

GLOBAL_MARKER = "<!-- langdream-cli:global-options -->"
COMMANDS_MARKER = "<!-- langdream-cli:commands -->"
PROGRAM = "langdream"
PAGE = "cli.md"
_HEADING = re.compile(rf"^### {PROGRAM} (?P<path>\S.*?)\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# What the generated part shows: a hand-written options table or usage line would drift from it.
_HAND_TABLE = re.compile(r"^\|\s*(option|argument / option|argument)\s*\|")
_HAND_USAGE = re.compile(rf"^{PROGRAM} \S.*\[(--|OPTIONS)")

# Under "mkdocs", so that `mkdocs build --strict` counts its warnings.
log = logging.getLogger("mkdocs.hooks.cli_reference")


class CliReferenceError(Exception):
    """docs/cli.md does not fit the CLI (a marker is missing, or a section names no command)."""


@dataclass
class Command:
    """One leaf command: its path ("insights list"), the click command and its context."""

    path: str
    command: Any
    context: Any


def root_command() -> Any:
    import typer.main

    from langdream.cli import app

    return typer.main.get_command(app)


def _context(command: Any, name: str, parent: Any = None) -> Any:
    return command.context_class(command, info_name=name, parent=parent)


def commands(root: Any | None = None) -> list[Command]:
    """Every visible leaf command, in the order the CLI lists them (groups expanded in place)."""
    root = root_command() if root is None else root
    found: list[Command] = []

    def walk(group: Any, ctx: Any, prefix: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            sub_ctx = _context(sub, name, ctx)
            if getattr(sub, "commands", None):
                walk(sub, sub_ctx, (*prefix, name))
            else:
                found.append(Command(" ".join((*prefix, name)), sub, sub_ctx))

    walk(root, _context(root, PROGRAM), ())
    return found


# -- Markdown ------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Help text as Markdown: code spans kept, HTML-like text (``<login name>``) and table pipes escaped."""
    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_escape_plain(text[last : match.start()]))
        out.append(match.group(0).replace("|", "\\|"))
        last = match.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("*", "\\*")


def _code(text: str) -> str:
    text = text.replace("|", "\\|")
    ticks = "``" if "`" in text else "`"
    return f"{ticks}{text}{ticks}"


def _paragraphs(help_text: str) -> list[str]:
    """Click help text as paragraphs: ``\\b`` no-rewrap markers dropped, lines of a paragraph joined."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", help_text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip() != "\b"]
        if lines:
            paragraphs.append(_escape(" ".join(lines)))
    return paragraphs


def _usage(command: Any, ctx: Any) -> str:
    usage = command.get_usage(ctx).strip()
    return re.sub(r"^Usage:\s*", "", usage)


def _params_table(command: Any, ctx: Any, *, where: str, skip_help: bool = True) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if skip_help and param.name == "help":
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        if not (getattr(param, "help", None) or "").strip():
            log.warning("the CLI %s has no help text for %s; write help= for it", where, names)
        rows.append(f"| {_code(names)} | {' '.join(_paragraphs(help_text)) or '&nbsp;'} |")
    if not rows:
        return []
    return ["| argument / option | description |", "| --- | --- |", *rows]


def render_command(cmd: Command) -> str:
    """The generated part of one command's section, under its heading."""
    command, ctx = cmd.command, cmd.context
    help_text = (command.help or "").strip()
    if not help_text:
        log.warning("the CLI command '%s %s' has no help text; write its docstring", PROGRAM, cmd.path)
    lines = [f"### {PROGRAM} {cmd.path}", ""]
    for paragraph in _paragraphs(help_text):
        lines += [paragraph, ""]
    lines += ["```text", _usage(command, ctx), "```", ""]
    table = _params_table(command, ctx, where=f"command '{PROGRAM} {cmd.path}'")
    if table:
        lines += [*table, ""]
    return "\n".join(lines)


def render_global_options(root: Any | None = None) -> str:
    root = root_command() if root is None else root
    ctx = _context(root, PROGRAM)
    lines = ["```text", _usage(root, ctx), "```", ""]
    lines += _params_table(root, ctx, where=PROGRAM, skip_help=False)
    return "\n".join(lines) + "\n"


# -- the page ------------------------------------------------------------------------------------


def _lines_outside_fences(text: str) -> Iterator[tuple[int, str, bool]]:
    """(index, line, inside a fenced block) for each line."""
    fence: str | None = None
    for i, line in enumerate(text.split("\n")):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            yield i, line, True
        elif fence is not None:
            yield i, line, True
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
        else:
            yield i, line, False


def split_sections(region: str) -> tuple[str, dict[str, str]]:
    """Text of the commands region: (what comes before the first command heading, {path: body})."""
    lines = region.split("\n")
    starts: list[tuple[int, str]] = []
    for i, line, fenced in _lines_outside_fences(region):
        match = None if fenced else _HEADING.match(line)
        if match:
            starts.append((i, match.group("path")))
    lead = "\n".join(lines[: starts[0][0]] if starts else lines)
    sections: dict[str, str] = {}
    for n, (start, path) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        if path in sections:
            raise CliReferenceError(f"docs/{PAGE} has two sections '### {PROGRAM} {path}'")
        sections[path] = "\n".join(lines[start + 1 : end]).strip("\n")
    return lead, sections


def _region(markdown: str, marker: str) -> tuple[int, int]:
    """Where the commands region lies: from the marker to the next level-2 heading (or the end)."""
    start = markdown.find(marker)
    if start < 0:
        raise CliReferenceError(f"docs/{PAGE} lacks the marker {marker}")
    body_start = start + len(marker)
    offset = 0
    for _, line, fenced in _lines_outside_fences(markdown[body_start:]):
        if not fenced and re.match(r"^#{1,2} ", line):
            return start, body_start + offset
        offset += len(line) + 1
    return start, len(markdown)


def render_cli_page(markdown: str, root: Any | None = None) -> str:
    """docs/cli.md with its markers replaced by the reference generated from the CLI."""
    root = root_command() if root is None else root
    if GLOBAL_MARKER not in markdown:
        raise CliReferenceError(f"docs/{PAGE} lacks the marker {GLOBAL_MARKER}")
    markdown = markdown.replace(GLOBAL_MARKER, render_global_options(root), 1)
    start, end = _region(markdown, COMMANDS_MARKER)
    lead, notes = split_sections(markdown[start + len(COMMANDS_MARKER) : end])
    by_path = {c.path: c for c in commands(root)}
    unknown = sorted(set(notes) - set(by_path))
    if unknown:
        raise CliReferenceError(
            f"docs/{PAGE} has notes for commands the CLI does not have: "
            + ", ".join(f"'{PROGRAM} {p}'" for p in unknown)
            + "; rename or remove those sections"
        )
    for path, body in notes.items():
        for line in body.split("\n"):
            if _HAND_TABLE.match(line) or _HAND_USAGE.match(line):
                log.warning(
                    "docs/%s: the notes of '%s %s' repeat its usage or options (%r); the generated "
                    "reference already shows them, so keep only notes and examples there",
                    PAGE, PROGRAM, path, line.strip(),
                )
                break
    order = [*notes, *(p for p in by_path if p not in notes)]
    parts = [lead.strip("\n")] if lead.strip() else []
    for path in order:
        section = render_command(by_path[path])
        if notes.get(path):
            section += "\n" + notes[path] + "\n"
        parts.append(section.rstrip("\n"))
    generated = "\n\n".join(parts) + "\n"
    tail = markdown[end:]
    return markdown[:start] + generated + ("\n" + tail if tail else "")


# -- mkdocs hook ---------------------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    import importlib

    from mkdocs.exceptions import PluginError

    import langdream.cli

    # `mkdocs serve` rebuilds in one process: read the CLI as it is now, not as first imported.
    importlib.reload(langdream.cli)
    try:
        return render_cli_page(markdown)
    except CliReferenceError as exc:
        raise PluginError(str(exc)) from exc

