"""The docs cover the public surface: every public name, every CLI command, every setting, and
no relative link in docs/ points at a missing file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

import langdream
from langdream import Settings, config
from langdream.cli import app

DOCS = Path(__file__).resolve().parent.parent / "docs"
# [text](target) and [text](target "title"); images too. Autolinks and reference links are not used.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _read(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


def _headings(text: str, level: int) -> set[str]:
    marker = "#" * level + " "
    return {line[len(marker):].strip() for line in text.splitlines() if line.startswith(marker)}


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
DOC_FILES = sorted(p.name for p in DOCS.glob("*.md"))


def test_the_walk_finds_the_cli_commands() -> None:
    # Guards the walk itself: if it found nothing, the CLI test below would pass vacuously.
    assert {"dream", "ingest", "insights list", "insights show", "episodes list", "episodes show"} <= set(COMMANDS)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_has_an_api_heading(name: str) -> None:
    assert name in _headings(_read("api.md"), 3), f"docs/api.md has no heading '### {name}'"


def test_fake_reflection_model_is_documented() -> None:
    assert "FakeReflectionModel" in _headings(_read("api.md"), 3)


@pytest.mark.parametrize("path", COMMANDS)
def test_cli_command_has_a_heading(path: str) -> None:
    heading = f"langdream {path}"
    assert heading in _headings(_read("cli.md"), 3), f"docs/cli.md has no heading '### {heading}'"


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


@pytest.mark.parametrize("name", DOC_FILES)
def test_relative_links_point_to_existing_files(name: str) -> None:
    source = DOCS / name
    missing = []
    for target in _relative_links(_read(name)):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (source.parent / path).exists():
            missing.append(target)
    assert not missing, f"docs/{name} links to missing files: {missing}"


def test_docs_exist() -> None:
    for name in ("index.md", "quickstart.md", "concepts.md", "cli.md", "configuration.md", "api.md", "errors.md"):
        _read(name)
