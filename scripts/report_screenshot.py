"""Regenerate docs/img/report.png: a report of the demo data, photographed by headless Chromium.

The demo's real HotpotQA ReAct runs (shipped with the package) are recorded in two namespaces,
one per agent variant (plain ReAct and ReAct with Reflexion), one trial at a time, with a dream
after each trial, so the report has two namespaces and a history of several dreams. Then the
report is written, opened from disk in Chromium (through Playwright, with the system's
/usr/bin/chromium; nothing is downloaded) and photographed with a mark hovered.

    python scripts/report_screenshot.py [--out docs/img/report.png] [--html report.html]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from langdream.demo import sample_lines
from langdream.memory import DreamMemory
from langdream.report import write_report

CHROMIUM = "/usr/bin/chromium"
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
VARIANTS = {"react_base": ("hotpotqa", "react"), "react_reflexion": ("hotpotqa", "reflexion")}


def build_demo_home(home: Path) -> DreamMemory:
    """A data home with the demo runs, dreamt trial by trial (five dreams per namespace)."""
    records = [json.loads(line) for line in sample_lines()]
    memory = DreamMemory(home)
    for trial in sorted({r["metadata"]["trial"] for r in records}):
        for variant, namespace in VARIANTS.items():
            batch = [
                {**r, "namespace": list(namespace)}
                for r in records
                if r["metadata"]["trial"] == trial and r["metadata"]["variant"] == variant
            ]
            source = home / f"trial-{trial}-{variant}.jsonl"
            source.write_text("".join(json.dumps(r) + "\n" for r in batch), encoding="utf-8")
            memory.ingest(source, namespace=namespace)
            memory.dream(namespace)
    return memory


def photograph(html: Path, png: Path, *, width: int = 1280, height: int = 1560) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.route(
                "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
            )
            page.goto(html.resolve().as_uri())
            # Hover a run of the largest cluster (a failure if one is on top), so the picture
            # shows a tooltip and a highlighted cluster too.
            index = page.evaluate(
                """() => {
                  const section = document.querySelector("section.ns:not([hidden])");
                  const data = JSON.parse(section.querySelector("script.points").textContent);
                  const marks = [...section.querySelectorAll("svg.map .pt")].filter((m) => {
                    const box = m.getBoundingClientRect();
                    const top = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
                    return top === m && data.p[+m.dataset.i][3] === 0;
                  });
                  const failed = marks.filter((m) => data.p[+m.dataset.i][2] === "f");
                  const pick = failed[0] || marks[0];
                  return pick ? +pick.dataset.i : -1;
                }"""
            )
            if index >= 0:
                # The mouse goes where the mark is; whichever mark is drawn on top there answers.
                box = page.locator(f'section.ns:not([hidden]) svg.map .pt[data-i="{index}"]').bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.screenshot(path=str(png), full_page=False)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--out", type=Path, default=root / "docs" / "img" / "report.png")
    parser.add_argument("--html", type=Path, default=None, help="keep the report here too")
    parser.add_argument("--home", type=Path, default=None, help="data home to build (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="langdream-report-") as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        with build_demo_home(home) as memory:
            html = write_report(memory, args.html or Path(tmp) / "report.html")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        photograph(html, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
