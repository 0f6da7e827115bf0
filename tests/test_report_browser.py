"""The report as a person sees it: opened in real headless Chromium (Debian's ``chromium``, driven
by Playwright), with no network. Checked: no console or page errors, no request leaves the file,
every figure's SVG is drawn, tables sort and filter, nothing but a ``.scroll`` box is wider than a
1280 px window, and a screenshot is written beside the report.

Without ``chromium`` on PATH the tests skip, unless ``BENCHBENCH_REQUIRE_BROWSER=1`` (set by
``.ci/run``), where they fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import jinja2
import pytest

from benchbench.results.report import TEMPLATES, build_report
from benchbench.results.tables import aggregate
from benchbench.spec.paths import TABLES
from tests.helpers.costmodel import measured_calibration, prediction_study
from tests.helpers.records import rec

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
VIEWPORT = {"width": 1280, "height": 900}
LOCAL_SCHEMES = ("file:", "data:", "about:")


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - playwright is pinned in requirements-ci.txt
        why = f"playwright not importable: {e}"
    if why is None and executable is None:
        why = "no chromium on PATH (Debian: apt-get install chromium)"
    if why is not None:
        if os.environ.get("BENCHBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"BENCHBENCH_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def contract_page(path: Path, extra: str = "", no_script: bool = False) -> Path:
    """The hand-written page on the report's markup contract (inlining the real report.css and
    report.js), with ``extra`` HTML added before the script."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([FIXTURES, TEMPLATES]), autoescape=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template("report_contract.html.j2").render(extra=extra, no_script=no_script))
    return path


def synthetic_report(root: Path) -> Path:
    """A real report from :func:`build_report`: synthetic records, their tables and SVG plots."""
    from benchbench.results.figures.study import plot_scaling

    records = [rec("single", 1, 1.0), rec("ddp", 1, 1.1), rec("ddp", 2, 0.625), rec("ddp", 4, 0.5)]
    records += [rec("dp-naive", 2, 0.8), rec("dp-naive", 4, 0.9), rec("fsdp", 2, 0.7, status="failed")]
    study = records[0]["job"]["study"]
    results = root / "results" / study
    paths = []
    for i, r in enumerate(records):
        p = results / "raw" / f"r{i}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(r))
        paths.append(p)
    tables = {n: results / "tables" / f"{n}.csv" for n in TABLES}
    frames = aggregate(paths, tables)
    plots = plot_scaling(frames["scaling"], [results / "plots" / "throughput.svg", results / "plots" / "memory.svg"])
    return build_report(records=paths, tables=tables, plots=plots, out=results / "report" / "index.html")


# Everything the page does that a reader would notice, measured in the page.
_LAYOUT_JS = """() => {
  const vw = document.documentElement.clientWidth, wide = new Set();
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if ((r.width > vw + 0.5 || r.right > vw + 0.5) && !el.closest('.scroll')) wide.add(el);
  }
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const outermost = Array.from(wide).filter(el => !wide.has(el.parentElement));
  return {scrollWidth: document.documentElement.scrollWidth,
          wide: outermost.slice(0, 10).map(el => name(el) + ' ' + Math.round(el.getBoundingClientRect().width) + 'px')};
}"""
_ROWS_JS = """(t) => Array.from(t.tBodies[0].rows)
  .map(r => Array.from(r.cells).map(c => c.textContent.trim()).join('|'))"""
_VISIBLE_ROWS_JS = """(t) => Array.from(t.tBodies[0].rows).filter(r => r.offsetParent !== null).length"""
# a column to sort by: a numeric one with distinct values if there is one, else any with distinct texts
_SORT_COLUMN_JS = """(t) => {
  const rows = Array.from(t.tBodies[0].rows), n = t.tHead ? t.tHead.rows[0].cells.length : 0;
  let text = -1;
  for (let i = 0; i < n; i++) {
    const cells = rows.map(r => r.cells[i]).filter(Boolean);
    if (new Set(cells.map(c => c.textContent.trim())).size < 2) continue;
    if (cells.every(c => c.hasAttribute('data-value'))) return {index: i, numeric: true};
    if (text < 0) text = i;
  }
  return {index: text, numeric: false};
}"""
_COLUMN_VALUES_JS = """([t, i]) => Array.from(t.tBodies[0].rows)
  .map(r => Number(r.cells[i].getAttribute('data-value')))"""


def check_page(browser, html: Path, screenshot: Path | None = None, want_figures: bool = True) -> list[str]:
    """Open ``html`` at 1280 × 900 and return every problem a reader would meet (empty: none)."""
    problems: list[str] = []
    page = browser.new_page(viewport=VIEWPORT)
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def route(r):
        if r.request.url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            problems.append(f"network request: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    try:
        page.goto(html.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(100)  # late errors and requests from scripts
        problems += _figures(page, want_figures) + _layout(page) + _sorting(page) + _filtering(page)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    return problems


def _figures(page, want: bool) -> list[str]:
    svgs = page.locator("figure.plot svg")
    if want and svgs.count() == 0:
        return ["no figure.plot svg on the page"]
    out = []
    for i in range(svgs.count()):
        box = svgs.nth(i).bounding_box()
        if not svgs.nth(i).is_visible() or box is None or box["width"] <= 0 or box["height"] <= 0:
            out.append(f"figure svg {i} not drawn (box {box})")
    return out


def _layout(page) -> list[str]:
    got = page.evaluate(_LAYOUT_JS)
    out = [f"page scrolls sideways: scrollWidth {got['scrollWidth']} > 1280"] if got["scrollWidth"] > 1280 else []
    return out + [f"wider than the window outside a .scroll box: {w}" for w in got["wide"]]


def _sorting(page) -> list[str]:
    out, tables, sorted_any = [], page.locator("table.data").element_handles(), False
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")  # as a reader opens them
    for t in tables:
        name = t.get_attribute("id")
        if page.evaluate("(t) => t.tBodies.length ? t.tBodies[0].rows.length : 0", t) < 2:
            continue
        column = page.evaluate(_SORT_COLUMN_JS, t)
        if column["index"] < 0:
            continue
        th, sorted_any = t.query_selector_all("thead th")[column["index"]], True
        before = page.evaluate(_ROWS_JS, t)
        orders, sorts = [], []
        for _ in range(2):  # ascending, then descending: one of them changes a table of distinct values
            th.scroll_into_view_if_needed()
            y = page.evaluate("window.scrollY")
            th.click()
            orders.append(page.evaluate(_ROWS_JS, t))
            sorts.append(th.get_attribute("aria-sort"))
            if page.evaluate("window.scrollY") != y:
                out.append(f"clicking a header of #{name} scrolled the page (a link in the header followed)")
        if all(o == before for o in orders):
            out.append(f"clicking a header of #{name} did not re-order its rows")
        if sorts != ["ascending", "descending"]:
            out.append(f"#{name} header aria-sort after two clicks: {sorts}")
        if column["numeric"] and sorts[1] == "descending":
            values = page.evaluate(_COLUMN_VALUES_JS, [t, column["index"]])
            if values != sorted(values, reverse=True):
                out.append(f"#{name} not sorted by data-value, descending: {values}")
    return out + (["no data table on the page could be sorted"] if tables and not sorted_any else [])


def _filtering(page) -> list[str]:
    out, filtered = [], False
    for box in page.locator("input.table-filter").element_handles():
        target = box.get_attribute("data-for")
        t = page.query_selector(f"#{target}")
        if t is None:
            out.append(f"filter for #{target}: no such table")
            continue
        rows = page.evaluate(_ROWS_JS, t)
        # a word of one row that some other row lacks, typed in upper case (the match ignores case)
        words = (w for r in rows for w in r.split("|") if w)
        needle = next((w for w in words if any(w.lower() not in o.lower() for o in rows)), None)
        if needle is None:
            continue
        box.fill(needle.upper())
        filtered = True
        texts = page.evaluate("(t) => Array.from(t.tBodies[0].rows).map(r => r.textContent.toLowerCase())", t)
        shown, expected = page.evaluate(_VISIBLE_ROWS_JS, t), sum(needle.lower() in r for r in texts)
        if shown != expected:
            out.append(f"filter {needle.upper()!r} on #{target}: {shown} rows shown, {expected} expected")
        box.fill("")
        if page.evaluate(_VISIBLE_ROWS_JS, t) != len(rows):
            out.append(f"clearing the filter of #{target} did not show every row again")
    if not filtered and page.locator("table.data").count():
        out.append("no data table on the page could be filtered")
    return out


def assert_png(path: Path, width: int | None = VIEWPORT["width"]) -> None:
    """A real screenshot: a PNG ``width`` px wide (the window's: nothing scrolls sideways), at
    least a window high, not one flat colour."""
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"{path}: {len(data)} bytes"
    w, h = struct.unpack(">II", data[16:24])
    assert (width is None or w == width) and h >= VIEWPORT["height"], (w, h)
    with Image.open(path) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 16, "screenshot is nearly one colour"


def test_contract_page_sorts_filters_and_fits(browser, tmp_path):
    html = contract_page(tmp_path / "results" / "contract" / "report" / "index.html")
    shot = html.parent / "screenshot.png"
    assert check_page(browser, html, shot) == []
    assert_png(shot)


def test_built_report_as_a_reader_sees_it(browser, tmp_path):
    html = synthetic_report(tmp_path)
    shot = html.parent / "screenshot.png"
    assert shot == tmp_path / "results" / "s" / "report" / "screenshot.png"
    problems = check_page(browser, html, shot)
    markup = re.sub(r"<(script|style)\b.*?</\1>", "", html.read_text(), flags=re.S)
    assert re.search(r'<table\b[^>]*\bclass="([^"]* )?data[ "]', markup)  # the page follows the contract
    assert_png(shot, VIEWPORT["width"])
    assert problems == []


def test_definition_link_in_a_header_jumps_and_does_not_sort(browser, tmp_path):
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(synthetic_report(tmp_path).resolve().as_uri(), wait_until="load")
        th = page.locator("#t-scaling thead th").filter(has=page.locator("a.def")).first
        assert th.evaluate("(th) => th.firstChild.nodeType") == 3  # the label is plain text, not the link
        href = th.locator("a.def").get_attribute("href")
        th.locator("a.def").click()
        assert page.evaluate("location.hash") == href and th.get_attribute("aria-sort") is None
        assert page.locator(href).bounding_box()["y"] < VIEWPORT["height"]  # the definition is in view
    finally:
        page.close()


@pytest.mark.parametrize(
    ("extra", "no_script", "expected"),
    [
        pytest.param(
            '<div id="wide" style="width:2000px">too wide</div>',
            False,
            ["page scrolls sideways", "outside a .scroll box: div#wide"],
            id="wide-element",
        ),
        pytest.param("<script>undefinedFunction();</script>", False, ["page error:"], id="script-throws"),
        pytest.param(
            '<img src="http://example.com/x.png" alt="">',
            False,
            ["network request: http://example.com/x.png"],
            id="remote-image",
        ),
        pytest.param("", True, ["did not re-order", "aria-sort", "filter"], id="no-script"),
        pytest.param(
            '<figure class="plot" id="fig-hidden" style="display:none"><svg width="10" height="10"></svg></figure>',
            False,
            ["figure svg 1 not drawn"],
            id="hidden-figure",
        ),
    ],
)
def test_broken_pages_are_caught(browser, tmp_path, extra, no_script, expected):
    problems = check_page(browser, contract_page(tmp_path / "index.html", extra, no_script))
    for want in expected:
        assert any(want in p for p in problems), (want, problems)


def test_prediction_section_as_a_reader_sees_it(browser, tmp_path):
    """The Prediction section (tests/test_validate.py's study: records, calibration, prediction
    tables, the cost model's figures) sorts, filters and fits like the rest of the page."""
    from benchbench.cli import main as cli
    from benchbench.results.figures.costmodel import calibration_points, plot_costmodel
    from benchbench.results.tables import read_table
    from benchbench.spec.paths import COSTMODEL_PLOTS

    layout = prediction_study(tmp_path)
    plot_costmodel(
        calibration_points([measured_calibration()]),
        read_table(layout.table("predictions")),
        [layout.plot(n, "svg") for n in COSTMODEL_PLOTS],
    )
    assert cli.main(["report", "--study-dir", str(layout.dir)]) == 0
    shot = layout.report.parent / "screenshot.png"
    assert check_page(browser, layout.report, shot) == []
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(layout.report.resolve().as_uri(), wait_until="load")
        assert page.locator("#fig-busbw svg").is_visible() and page.locator("#fig-predicted svg").is_visible()
        assert page.locator("#t-prediction tr.flag").count() == 1
    finally:
        page.close()
