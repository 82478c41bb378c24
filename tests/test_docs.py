"""The docs cover the public surface: every public name, every CLI command, every setting, and
no relative link in docs/ points at a missing file.

The API reference renders each public name from its docstring (a ``::: langdream.Name`` block
under its ``### Name`` heading), and the CLI reference is generated from the CLI itself by
docs/hooks/cli_reference.py; these tests check the generated text, so a new command or a new
public name that nobody documented fails here.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

import langdream
from langdream import Settings, config
from langdream.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# [text](target) and [text](target "title"); images too. Autolinks and reference links are not used.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_BLOCK = re.compile(r"^::: (langdream(?:\.\w+)+)\s*$", re.M)


def _load_hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cli_reference = _load_hook("cli_reference")


def _read(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


def _headings(text: str, level: int) -> set[str]:
    marker = "#" * level + " "
    return {line[len(marker):].strip() for line in text.splitlines() if line.startswith(marker)}


def _sections(text: str, level: int) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of that level or higher
    (lines inside fenced code blocks are never headings)."""
    lines = text.split("\n")
    starts: list[tuple[int, int, str]] = []  # (line, level, heading text)
    fence = None
    for i, line in enumerate(lines):
        opened = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None and (heading := re.match(r"^(#{1,6}) (.+?)\s*$", line)):
            starts.append((i, len(heading.group(1)), heading.group(2)))
    sections = {}
    for n, (start, depth, title) in enumerate(starts):
        if depth != level:
            continue
        end = next((s for s, d, _ in starts[n + 1 :] if d <= level), len(lines))
        sections[title] = "\n".join(lines[start + 1 : end])
    return sections


def _command_paths(command, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every leaf command of a click/typer group, as "insights list"-style paths."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [" ".join(prefix)]
    paths = []
    for name, sub in sorted(subcommands.items()):
        if getattr(sub, "hidden", False):
            continue
        paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


PUBLIC_NAMES = sorted(n for n in langdream.__all__ if n != "__version__")
COMMANDS = _command_paths(typer.main.get_command(app))
SETTINGS_FIELDS = sorted(Settings.model_fields)
DEFAULT_CONSTANTS = sorted(n for n in vars(config) if n.startswith("DEFAULT_"))
DOC_FILES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


@pytest.fixture(scope="module")
def cli_page() -> str:
    """docs/cli.md as the site shows it: with the reference generated from the CLI."""
    return cli_reference.render_cli_page(_read("cli.md"))


def test_the_walk_finds_the_cli_commands() -> None:
    # Guards the walk itself: if it found nothing, the CLI test below would pass vacuously.
    assert {"dream", "ingest", "insights list", "insights show", "episodes list", "episodes show"} <= set(COMMANDS)
    assert sorted(c.path for c in cli_reference.commands()) == COMMANDS


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_has_an_api_heading(name: str) -> None:
    assert name in _headings(_read("api.md"), 3), f"docs/api.md has no heading '### {name}'"


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_is_rendered_from_its_docstring(name: str) -> None:
    """Under its heading, a mkdocstrings block names the very object that langdream exports."""
    section = _sections(_read("api.md"), 3).get(name, "")
    targets = _BLOCK.findall(section)
    assert targets, f"docs/api.md: '### {name}' has no '::: langdream.{name}' block under it"
    module_path, _, attribute = targets[0].rpartition(".")
    assert attribute == name, f"docs/api.md: '### {name}' renders {targets[0]}"
    assert getattr(importlib.import_module(module_path), attribute) is getattr(langdream, name)


def test_every_api_block_names_an_object_that_exists() -> None:
    for target in _BLOCK.findall(_read("api.md")):
        module_path, _, attribute = target.rpartition(".")
        assert hasattr(importlib.import_module(module_path), attribute), f"docs/api.md renders missing {target}"


def test_fake_reflection_model_is_documented() -> None:
    assert "FakeReflectionModel" in _headings(_read("api.md"), 3)


@pytest.mark.parametrize("path", COMMANDS)
def test_cli_command_has_a_heading(path: str, cli_page: str) -> None:
    heading = f"langdream {path}"
    assert heading in _headings(cli_page, 3), f"the CLI reference has no heading '### {heading}'"


@pytest.mark.parametrize("path", COMMANDS)
def test_cli_command_is_documented_by_its_help(path: str, cli_page: str) -> None:
    """The generated section says what the command does and shows its usage and every option."""
    (found,) = [c for c in cli_reference.commands() if c.path == path]
    assert (found.command.help or "").strip(), f"`langdream {path}` has no help text (write its docstring)"
    section = _sections(cli_page, 3)[f"langdream {path}"]
    assert f"langdream {path}" in section.split("```text", 1)[1].split("```", 1)[0], "no usage line"
    for param in found.command.get_params(found.context):
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        assert (getattr(param, "help", None) or "").strip(), f"`langdream {path}`: {param.opts[0]} has no help text"
        assert param.opts[0] in section, f"the reference of `langdream {path}` does not show {param.opts[0]}"


def test_cli_global_options_are_generated(cli_page: str) -> None:
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="langdream")
    section = _sections(cli_page, 2)["Global options"]
    for param in root.get_params(ctx):
        if not getattr(param, "hidden", False):
            assert param.opts[0] in section, f"the CLI reference does not show the global option {param.opts[0]}"
    assert "<!-- langdream-cli" not in cli_page


def test_cli_notes_name_only_real_commands() -> None:
    source = _read("cli.md")
    _, notes = cli_reference.split_sections(source.split(cli_reference.COMMANDS_MARKER, 1)[1].split("\n## ", 1)[0])
    assert set(notes) <= set(COMMANDS), f"docs/cli.md has notes for unknown commands: {set(notes) - set(COMMANDS)}"
    broken = source.replace("### langdream dream\n", "### langdream dreem\n")
    with pytest.raises(cli_reference.CliReferenceError, match="dreem"):
        cli_reference.render_cli_page(broken)


def test_cli_notes_do_not_repeat_the_generated_options() -> None:
    # The usage lines and option tables come from the CLI; a hand-written copy would drift.
    source = _read("cli.md").split(cli_reference.COMMANDS_MARKER, 1)[1]
    assert not re.search(r"^\|\s*(option|argument / option)\s*\|", source, re.M)


def test_an_undocumented_command_or_option_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    # What `mkdocs build --strict` fails on: a command or option nobody wrote help for.
    toy = typer.Typer()

    @toy.command()
    def documented(flag: bool = typer.Option(False, "--flag", help="A flag.")) -> None:
        """Does one thing."""

    @toy.command()
    def bare(limit: int = typer.Option(3, "--limit")) -> None:
        pass

    root = typer.main.get_command(toy)
    page = cli_reference.render_cli_page(
        f"{cli_reference.GLOBAL_MARKER}\n\n## Commands\n\n{cli_reference.COMMANDS_MARKER}\n", root
    )
    assert "### langdream documented" in page and "### langdream bare" in page
    assert "`--limit <int>`" in page or "--limit" in page.split("### langdream bare", 1)[1]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'langdream bare' has no help text" in w for w in warnings), warnings
    assert any("--limit" in w and "no help text" in w for w in warnings), warnings
    assert not any("documented" in w for w in warnings), warnings


def test_cli_reference_escapes_help_text() -> None:
    assert cli_reference._escape("who acts (default person:<login name>) | `a|b`") == (
        "who acts (default person:&lt;login name&gt;) \\| `a\\|b`"
    )


@pytest.mark.parametrize("field", SETTINGS_FIELDS)
def test_setting_is_documented(field: str) -> None:
    assert re.search(rf"`{re.escape(field)}`", _read("configuration.md")), (
        f"docs/configuration.md does not mention the setting `{field}`"
    )


@pytest.mark.parametrize("constant", DEFAULT_CONSTANTS)
def test_default_constant_is_documented(constant: str) -> None:
    # config.py promises that docs/configuration.md lists every DEFAULT_* constant.
    assert re.search(rf"\b{re.escape(constant)}\b", _read("configuration.md")), (
        f"docs/configuration.md does not mention {constant}"
    )


def _relative_links(text: str) -> list[str]:
    text = _FENCE.sub("", text)
    text = _CODE_SPAN.sub("", text)
    targets = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")):
            continue  # http:, mailto:, in-page anchors
        targets.append(target)
    return targets


def test_relative_link_pattern_sees_links() -> None:
    assert _relative_links("see [cli](cli.md#langdream-dream) and [x](https://example.com) `[no](x.md)`") == [
        "cli.md#langdream-dream"
    ]


def test_the_guides_are_checked_too() -> None:
    assert {"guides/stategraph.md", "guides/namespaces.md", "guides/gpu.md"} <= set(DOC_FILES)


@pytest.mark.parametrize("name", DOC_FILES)
def test_relative_links_point_to_existing_files(name: str) -> None:
    source = DOCS / name
    missing = []
    for target in _relative_links(_read(name)):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (source.parent / path).exists():
            missing.append(target)
    assert not missing, f"docs/{name} links to missing files: {missing}"


# A code block marked runnable is run as written; the plain block right after it, if any, is
# what it prints.
_RUNNABLE = re.compile(r"<!-- runnable[^>]*-->\n```python\n(.*?)\n```\n(?:\n```\n(.*?)\n```)?", re.S)
EXAMPLES = [(name, n) for name in DOC_FILES for n in range(len(_RUNNABLE.findall(_read(name))))]


def test_the_guides_have_runnable_examples() -> None:
    assert len(EXAMPLES) >= 4 and {name for name, _ in EXAMPLES} >= {"guides/stategraph.md", "guides/namespaces.md"}


@pytest.mark.parametrize(("name", "number"), EXAMPLES)
def test_doc_example_runs_as_written(name: str, number: int, tmp_path: Path) -> None:
    code, expected = _RUNNABLE.findall(_read(name))[number]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"docs/{name}, example {number + 1}:\n{result.stderr[-3000:]}"
    if expected:
        assert result.stdout.strip() == expected.strip(), f"docs/{name}, example {number + 1} printed something else"


def test_docs_exist() -> None:
    for name in ("index.md", "quickstart.md", "concepts.md", "cli.md", "configuration.md", "api.md", "errors.md"):
        _read(name)
