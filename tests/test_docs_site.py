"""The documentation site builds with ``mkdocs build --strict`` and holds what it promises.

Strict mode turns every warning into a failure: a broken link or anchor, a page missing from
the navigation, a docstring mkdocstrings cannot parse, a CLI command or option without help
text, or notes in docs/cli.md for a command the CLI does not have.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")
pytest.importorskip(
    "mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed (pip install -e '.[docs]')"
)

import typer.main

from langdream.cli import app

ROOT = Path(__file__).resolve().parent.parent
BUILD_SECONDS = 600


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    # Material prints a notice about MkDocs 2 on every build; it is not a warning of this site.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
    )
    if result.returncode != 0:
        print(result.stdout[-20000:])
        print(result.stderr[-20000:])
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + result.stderr[-8000:]
    return out


def _page(site: Path, name: str) -> str:
    """A built page's HTML: name.html (mkdocs.yml sets use_directory_urls: false) or name/index.html."""
    for candidate in (site / f"{name}.html", site / name / "index.html"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise AssertionError(f"the site has no page {name!r}: {sorted(p.name for p in site.iterdir())}")


def _text(raw: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", raw)))


def test_the_api_page_is_generated_from_docstrings(site: Path) -> None:
    raw = _page(site, "api")
    text = _text(raw)
    assert 'id="dreammemory"' in raw
    # The signature and parameters come from the code, not from the Markdown.
    assert "doc-signature" in raw
    assert "ledger_url" in text or "home :" in text
    assert "A memory that records episodes, dreams over them, and recalls what it learned." in text
    # Pydantic fields get a generated table with their defaults (docs/hooks/griffe_fields.py).
    assert "DEFAULT_RECALL_K" in text and "recall_token_budget" in text


def test_the_cli_page_has_every_command_generated(site: Path) -> None:
    raw = _page(site, "cli")
    text = _text(raw)
    root = typer.main.get_command(app)
    assert "langdream dream [OPTIONS]" in text  # a usage line from the CLI
    assert "Consolidate new episodes into insights" in text  # the command's own help
    for name, command in root.commands.items():
        leaves = command.commands if getattr(command, "commands", None) else {None: command}
        for sub in leaves:
            path = name if sub is None else f"{name} {sub}"
            anchor = "langdream-" + path.replace(" ", "-")
            assert f'id="{anchor}"' in raw, f"the built CLI page has no section for `langdream {path}`"


def test_the_guides_are_built(site: Path) -> None:
    text = _text(_page(site, "guides/stategraph"))
    assert "add_dreaming" in text
    for guide in ("choosing-a-model", "namespaces", "scheduling", "gpu"):
        _page(site, f"guides/{guide}")


def test_the_changelog_page_shows_the_changelog(site: Path) -> None:
    raw = _page(site, "changelog")
    text = _text(raw)
    assert "[Unreleased]" in text
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    for heading in re.findall(r"^##+ (.+?)\s*$", changelog, re.M):
        assert _text(heading.replace("`", "")) in text, f"the changelog page lacks the section {heading!r}"
    # CHANGELOG.md links to docs/<page>.md from the repository root; on the site those are siblings.
    assert 'href="docs/' not in raw


def test_the_site_needs_no_network(site: Path) -> None:
    for page in site.rglob("*.html"):
        raw = page.read_text(encoding="utf-8")
        for host in ("fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net", "unpkg.com"):
            assert host not in raw, f"{page.relative_to(site)} loads {host}"
