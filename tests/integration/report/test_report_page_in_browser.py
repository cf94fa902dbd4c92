"""The HTML report opened in a real headless browser: no console errors, every plot image loaded.

Playwright drives Debian's `chromium` package (Playwright's own browser download cannot be reached);
`make test` installs it where it can, and without it this test is skipped, saying how to get it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tweetmood_cli.cli import main

pytestmark = pytest.mark.integration
# Debian's /usr/bin/chromium is a wrapper script; Playwright wants the browser binary itself.
CANDIDATES = ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
HOW_TO_GET_IT = "no chromium here: run `make browser` as root, or `apt-get install chromium` (Debian's package)"


def _chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: make .venv/.dev")
    found = next((c for c in CANDIDATES if c and Path(c).is_file()), None)
    if found is None:
        pytest.skip(HOW_TO_GET_IT)
    return found


def test_the_report_page_opens_without_console_errors_and_every_plot_loads(demo_output, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    page_file = tmp_path / "report.html"
    assert main(["report", str(demo_output / "scored"), "--html", str(page_file)]) == 0
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(page_file.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}))")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            heading = page.inner_text("h1")
        finally:
            browser.close()
    assert problems == []
    assert [i["alt"] for i in images] == ["Label distribution", "Confidence histogram per label", "Rows per file", "Counts over time"]
    assert all(i["ok"] for i in images), images
    assert heading == "tweetmood report"
    assert (tmp_path / "report.png").stat().st_size > 10_000
