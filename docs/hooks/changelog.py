"""The changelog page: the repository's CHANGELOG.md, put into docs/changelog.md at build time.

CHANGELOG.md lives at the repository root and links to the docs as ``docs/<page>.md``; on the
site those pages are siblings of the changelog, so such links lose their ``docs/`` prefix. The
file is read on every build (and watched by ``mkdocs serve``), so the page is never a copy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PAGE = "changelog.md"
SOURCE = "CHANGELOG.md"
# [text](docs/page.md#anchor) -> [text](page.md#anchor); links elsewhere are left as they are.
_DOCS_LINK = re.compile(r"(\]\(\s*<?)docs/")


def changelog_path(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent / SOURCE


def render_changelog(text: str) -> str:
    return _DOCS_LINK.sub(r"\1", text)


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    path = changelog_path(config)
    if not path.is_file():
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{PAGE} shows {path}, which does not exist")
    return render_changelog(path.read_text(encoding="utf-8"))


def on_serve(server: Any, config: Any, **kwargs: Any) -> Any:
    server.watch(str(changelog_path(config)))
    return server
