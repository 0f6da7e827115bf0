"""The report page: the answer first, tables that fit (markup the inline script sorts and filters),
definitions for every header, provenance last with the study file, and merged folders."""

import json
import re

import pytest

from benchbench.cli import main as cli
from benchbench.results.htmltable import label, with_error
from benchbench.results.records import study_records
from benchbench.results.tables import aggregate
from benchbench.spec.paths import TABLES, StudyLayout
from tests.helpers.records import rec

TIMES = {("single", 1): (1.0, 1.02), ("ddp", 2): (0.50, 0.51), ("dp-naive", 2): (0.80, 0.81)}


def _study(root, name, scale=1.0, strategies=TIMES):
    layout = StudyLayout(name, root)
    layout.raw.mkdir(parents=True)
    for (s, ws), times in strategies.items():
        for r, t in enumerate(times):
            (layout.raw / f"{s}-ws{ws}-r{r}.json").write_text(json.dumps(rec(s, ws, t * scale, repeat=r)))
    aggregate(study_records(layout), {n: layout.table(n) for n in TABLES})
    return layout


def test_units_and_rounding():
    assert label("throughput") == "Throughput (samples/s)"
    assert label("comm_bytes_per_step") == "Comm per step (MiB)"
    assert with_error(123.456, 4.2) == "123 ± 5" and with_error(123.456, 1.23) == "123.5 ± 1.3"


def test_rounding_to_noise_never_shrinks_and_follows_the_rounded_half_width():
    assert with_error(1234, 96) == "1200 ± 100"  # the place of 100, not of 96
    assert with_error(1234, 0.95) == "1234 ± 1"  # rounded up: never narrower than the interval
    assert with_error(0.51234, 0.0042) == "0.512 ± 0.005" and with_error(123.456, 1.1) == "123.5 ± 1.1"
    assert with_error(98.7, 3.0) == "99 ± 3" and with_error(5.0, 0.0) == "5.00"  # no interval: 3 digits


def test_page_answers_first_and_tables_carry_the_sort_markup(tmp_path):
    layout = _study(tmp_path, "s")
    study = json.dumps({"study": "s", "description": "<script>x</script>"})
    assert cli.main(["report", "--study-dir", str(layout.dir), "--study-json", study]) == 0
    html = layout.report.read_text()
    order = [html.index(m) for m in ('id="findings"', 'id="side-by-side"', 'id="correctness"', 'id="provenance"')]
    assert order == sorted(order)
    assert "<b>ddp</b> is fastest, 1.59× dp-naive (significant, p = " in html
    assert re.search(r'<div class="scroll"><table class="data" id="t-scaling">', html)
    assert '<input type="search" class="table-filter" data-for="t-scaling"' in html
    assert (
        '<th data-key="throughput">Throughput (samples/s) <a class="def" href="#def-throughput" '
        'title="definition of Throughput (samples/s)">?</a></th>'
    ) in html  # label plain: a click sorts
    assert re.search(r'<td data-value="[0-9.e+-]+">\d+(\.\d+)? ± \d', html)  # throughput ± CI half-width
    for anchor in set(re.findall(r'href="#def-([^"]+)"', html)):
        assert f'id="def-{anchor}"' in html, anchor  # every header's definition is on the page
    runs = html.split("<details><summary>Every run")[1].split("</details>")[0]
    assert 'id="t-runs"' in runs
    assert html.count("<script") == 1 and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "&lt;script&gt;x&lt;/script&gt;" in html.split('id="provenance"')[1]  # the study file, escaped


def test_figures_json_shows_only_figures_with_data(tmp_path):
    layout = _study(tmp_path, "s")
    plots = layout.dir / "plots"
    plots.mkdir()
    for name in ("throughput", "memory"):
        (plots / f"{name}.svg").write_text(f'<?xml version="1.0"?><svg id="{name}-svg"></svg>')
    (plots / "figures.json").write_text(
        json.dumps(
            [
                {"name": "throughput", "caption": "Throughput <per> rank", "has_data": True},
                {"name": "memory", "caption": "Memory", "has_data": False},
            ]
        )
    )
    assert cli.main(["report", "--study-dir", str(layout.dir)]) == 0
    html = layout.report.read_text()
    assert '<figure class="plot" id="fig-throughput"><svg id="throughput-svg"></svg>' in html
    assert "<figcaption>Throughput &lt;per&gt; rank</figcaption>" in html and "memory-svg" not in html


def test_without_figures_json_no_data_placeholders_are_left_out_and_captions_are_the_plots(tmp_path):
    from benchbench.results.figures.captions import CAPTIONS

    layout = _study(tmp_path, "s")
    plots = layout.dir / "plots"
    plots.mkdir()
    (plots / "throughput.svg").write_text('<?xml version="1.0"?><svg id="throughput-svg"><text>2</text></svg>')
    (plots / "memory.svg").write_text('<svg id="memory-svg"><text>no data: no peak memory</text></svg>')
    assert cli.main(["report", "--study-dir", str(layout.dir)]) == 0
    html = layout.report.read_text()
    assert '<figure class="plot" id="fig-throughput"><svg id="throughput-svg">' in html and "memory-svg" not in html
    caption = html.split('id="fig-throughput"')[1].split("<figcaption>")[1].split("</figcaption>")[0]
    assert caption and caption != "throughput" and caption.split()[:3] == CAPTIONS["throughput"].split()[:3]


@pytest.mark.parametrize("option", [["--study-json", "{}"], ["--figures", "f.json"], ["--records", "r.json"]])
def test_merged_report_refuses_options_it_would_ignore(tmp_path, capsys, option):
    a, b = _study(tmp_path / "a", "base"), _study(tmp_path / "b", "new", scale=0.5)
    out = tmp_path / "merged.html"
    argv = ["report", "--study-dir", str(a.dir), "--study-dir", str(b.dir), "--out", str(out), *option]
    assert cli.main(argv) == 2 and not out.exists()
    assert f"{option[0]} cannot be used with more than one --study-dir" in capsys.readouterr().err


def test_merged_folders_get_a_section_each_and_a_comparison(tmp_path):
    a, b = _study(tmp_path / "a", "base"), _study(tmp_path / "b", "new", scale=0.5)
    out = tmp_path / "merged.html"
    assert cli.main(["report", "--study-dir", str(a.dir), "--study-dir", str(b.dir), "--out", str(out)]) == 0
    html = out.read_text()
    assert f"Results folder: {a.dir}" in html and f"Results folder: {b.dir}" in html
    assert 'id="t-s0-scaling"' in html and 'id="t-s1-scaling"' in html and 'id="s1-findings"' in html
    comparison = html.split('id="comparison"')[1]
    assert 'id="t-cmp-0-1"' in comparison and comparison.count("<td>faster</td>") == 3


def test_bytes_shown_in_mib_and_mib_kept():
    from benchbench.results.htmltable import shown

    assert shown("comm_bytes_per_step", 3 * 2**20) == ("3.00", 3 * 2**20)
    assert shown("peak_mem_mb", 512.0) == ("512", 512.0)
    assert shown("efficiency", 0.712) == ("71", 0.712) and label("model_state_bytes_est").endswith("(MiB)")


def test_merged_folders_without_shared_configurations_get_no_comparison(tmp_path):
    a = _study(tmp_path / "a", "base")
    c = _study(tmp_path / "c", "other", strategies={("fsdp", 2): (0.5, 0.52)})
    (c.dir / "tables" / "failures.csv").unlink()  # older results: a table missing
    out = tmp_path / "merged.html"
    assert cli.main(["report", "--study-dir", str(a.dir), "--study-dir", str(c.dir), "--out", str(out)]) == 0
    html = out.read_text()
    assert "fsdp had no reference to check against" in html and 'id="t-cmp-' not in html
    note = re.search(r'<p class="muted comparison-note">(.*?)</p>', html)
    assert note and note.group(1).startswith("no comparison of base and other: ")  # why, not silence
