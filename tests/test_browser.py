"""The pages a newcomer meets, in a real Chromium (Debian's, driven by Playwright).

One archive of a few thousand talks, built by the real `harvester sync` against the
simulated site (two syncs, with retitles, reschedules, abstract edits and removals
between them), served by `harvester serve` on 127.0.0.1; one browser for the module.
Each page is loaded at a desktop size and a phone size; screenshots go to /tmp/shots/.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harvester, write_config
from tests.sitesim import Site, serve
from tests.test_serve import free_port, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("/tmp/shots")
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
SHOT_HEIGHT = 3000
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
SERIES = 24
TALKS_PER_SERIES = 125  # 3,000 talks
ABSTRACT = (
    "We study the moduli space of stable curves and its tropicalization, proving that every "
    "p-adic representation of the absolute Galois group arises from a crystalline lift. "
) * 8
SEARCHED = "tropicalization"  # in every abstract; in the titles of a few talks only
EDITED_ABSTRACT_UID = "S2/3"
PAGES = {
    "front": "/",
    "talks": "/archive/talks",
    "search": f"/archive/talks?_search={SEARCHED}",
    "history": f"/archive/talk_history?uid={EDITED_ABSTRACT_UID}",
    "recent_changes": "/archive/recent_changes",
    "chart": "/archive/weekly_changes",
    "feed_health": "/archive/feed_health",
}
TABLE_PAGES = ("talks", "search", "history", "recent_changes", "feed_health")

playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra brings it")


@dataclass
class Served:
    base: str
    harvester: Harvester


def _populate(site: Site, now: datetime) -> None:
    for s in range(1, SERIES + 1):
        series = site.add_series(f"S{s}", f"Seminar {s}")
        for n in range(1, TALKS_PER_SERIES + 1):
            start = now + timedelta(days=(n - 60) * 3, hours=s % 8)
            title = f"Talk {n} of series {s}" + (f" on {SEARCHED}" if n % 50 == 0 else "")
            series.add(n, start, [("Emmy Noether", "Göttingen")], title=title, abstract=ABSTRACT)


def _change(site: Site) -> None:
    for s in range(1, SERIES + 1):
        talks = site.series[f"S{s}"].talks
        talks[1].title = f"A new title for series {s}"
        talks[2].start += timedelta(days=1)
        talks[3].abstract = ABSTRACT.replace("stable curves", "unstable surfaces")
        del talks[4]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} is absent (.ci/run installs Debian's chromium)")
    workdir = Path(tempfile.mkdtemp(prefix="browser-"))
    site = Site()
    _populate(site, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    try:
        with serve(site):
            config = write_config(workdir, [site.feed_url(f"S{s}") for s in range(1, SERIES + 1)])
            harvester = Harvester(config)
            first = harvester("sync")
            assert first.exit_code == 0, first.output
            _change(site)
            second = harvester("sync")
            assert second.exit_code == 0, second.output
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("HARVESTER_DB", "HARVESTER_CONFIG")}
        command = [sys.executable, "-m", "harvester", "--config", str(config), "serve"]
        with serving(command, port, cwd=workdir, env=env) as (base, _process):
            yield Served(base, harvester)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium(served: Served) -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Loaded:
    page: Any
    console_errors: list[str]


@pytest.fixture(scope="module")
def pages(served: Served, chromium: Any) -> Iterator[dict[tuple[str, str], Loaded]]:
    """Every page at both sizes, loaded once (and screenshot) for the tests below."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    loaded: dict[tuple[str, str], Loaded] = {}
    for size_name, viewport in SIZES.items():
        for name, path in PAGES.items():
            page = chromium.new_page()
            page.set_viewport_size(viewport)
            errors: list[str] = []
            page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
            response = page.goto(served.base + path, wait_until="load")
            assert response is not None and response.status == 200, (name, size_name)
            _screenshot(page, SHOTS / f"{name}-{size_name}.png")
            loaded[(name, size_name)] = Loaded(page, errors)
    yield loaded
    for each in loaded.values():
        each.page.close()


def _screenshot(page: Any, path: Path) -> None:
    """The page from its top, as far down as a reader scrolls to see what it is (3,000 px)."""
    width, height = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": min(height, SHOT_HEIGHT)}
    page.screenshot(path=str(path), full_page=True, clip=clip)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", PAGES)
def test_page_loads_without_console_errors(
    pages: dict[tuple[str, str], Loaded], name: str, size: str
) -> None:
    assert pages[(name, size)].console_errors == []


# The cells of a table with their column: Datasette's (th data-column, td class col-X) and
# the talk page's history table (the same classes).
CELLS_WITH_COLUMNS = """
(table) => {
  const headers = [...table.querySelectorAll('thead th')].map(
    th => th.dataset.column || th.textContent.trim());
  const columnOf = el => [...el.classList].find(c => c.startsWith('col-'));
  const headerOf = Object.fromEntries([...table.querySelectorAll('thead th')].map(
    (th, i) => [columnOf(th), headers[i]]));
  return [...table.querySelectorAll('tbody tr')].slice(0, 12).flatMap(tr =>
    [...tr.querySelectorAll('td')].map(td => ({
      column: headerOf[columnOf(td)],
      label: getComputedStyle(td, '::before').content,
      visible: td.getBoundingClientRect().width > 0,
    })));
}
"""


def _main_tables(page: Any) -> list[Any]:
    tables: list[Any] = page.query_selector_all("table.rows-and-columns")
    assert tables, "no table on the page"
    return tables


@pytest.mark.parametrize("name", TABLE_PAGES)
def test_on_a_phone_every_label_stands_beside_its_own_value(
    pages: dict[tuple[str, str], Loaded], name: str
) -> None:
    page = pages[(name, "phone")].page
    checked = 0
    for table in _main_tables(page):
        for cell in table.evaluate(CELLS_WITH_COLUMNS):
            assert cell["column"], cell
            assert cell["label"] == f'"{_label(cell["column"])}"', (name, cell)
            checked += 1
    assert checked > 10, name


def _label(column: str) -> str:
    """The label a phone shows for a column: its name as the table header gives it."""
    return column


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", PAGES)
def test_nothing_runs_off_the_right_edge(
    pages: dict[tuple[str, str], Loaded], name: str, size: str
) -> None:
    page = pages[(name, size)].page
    scroll_width, viewport = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= viewport, name
    for table in page.query_selector_all("table.rows-and-columns"):
        right = table.evaluate("t => t.getBoundingClientRect().right")
        assert right <= viewport, name


def test_a_search_shows_the_best_matches_first(pages: dict[tuple[str, str], Loaded]) -> None:
    page = pages[("search", "desktop")].page
    titles = page.eval_on_selector_all(
        "table.rows-and-columns tbody td.col-title", "cells => cells.map(c => c.textContent)"
    )
    in_title = TALKS_PER_SERIES // 50 * SERIES  # the talks with the word in their title too
    assert len(titles) > in_title
    assert all(SEARCHED in title for title in titles[:in_title]), titles[:in_title]


@pytest.mark.parametrize(("size", "shown"), [("desktop", "wide"), ("phone", "phone")])
def test_each_size_gets_its_own_chart(
    pages: dict[tuple[str, str], Loaded], size: str, shown: str
) -> None:
    page = pages[("chart", size)].page
    visible = page.eval_on_selector_all(
        "figure.harvester-chart",
        "figures => figures.filter(f => f.getBoundingClientRect().height > 0)"
        ".map(f => f.className)",
    )
    assert visible == [f"harvester-chart harvester-chart-{shown}"]
    width = page.eval_on_selector(
        f".harvester-chart-{shown} svg", "s => s.getBoundingClientRect().width"
    )
    assert width >= PHONE["width"] - 40
