"""The HTML report: bytes per rank by group, traffic per rank, where a table's pieces are.

The numbers are checked against hand-worked plans; the page itself is opened in Debian's
headless Chromium (tests/browser.py), which must draw one bar per rank in each chart,
find the chosen table's ranks, request nothing from the network and log no error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from browser import Browser, chromium_path
from shared import SMALL, SMALL_YAML, invoke

from planner import load_plan, make_plan, spec_from_dict
from planner.reports.html_report import bytes_by_group, diff_page, plan_page

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# SMALL with a row-slice threshold of 800 and a data-parallel threshold of 40: c (40
# elements, float16, 80 B) is copied to both ranks; a (800 elements) is row-sliced, 50
# rows of 8 float32 (1600 B) on each rank; b (1600 B) and d (640 B) are dealt
# round-robin: b on rank 0, d on rank 1.
MIXED = {**SMALL, "row_slice_threshold": 800, "data_parallel_threshold": 40}
MIXED_BY_GROUP = [(80, 1600, 1600, 0), (80, 640, 1600, 0)]
ODD_NAME = "</script><img src=x onerror=\"console.error('injected')\">&amp; 'quote'"


# --- the numbers ------------------------------------------------------------------------


def test_each_rank_is_split_into_its_groups() -> None:
    plan = make_plan(spec_from_dict(MIXED))
    assert bytes_by_group(plan) == MIXED_BY_GROUP
    assert [sum(held) for held in bytes_by_group(plan)] == [r.bytes for r in plan.ranks]


def test_optimizer_state_counts_in_every_group() -> None:
    plan = make_plan(spec_from_dict({**MIXED, "optimizer": "adam"}))  # 2 slots: 3x
    assert bytes_by_group(plan) == [tuple(3 * b for b in held) for held in MIXED_BY_GROUP]


def test_weights_offloaded_to_host_get_their_own_segment() -> None:
    # a plan whose rank 0 keeps b's weight in host memory ("device": "host", as CPU
    # offload writes it): b's 1600 B move from table-parallel to host
    plan = make_plan(spec_from_dict(MIXED))
    rank = plan.ranks[0]
    weights = [w.model_copy(update={"device": "host"}) for w in rank.table_parallel_weights]
    ranks = [rank.model_copy(update={"table_parallel_weights": weights}), plan.ranks[1]]
    offloaded = plan.model_copy(update={"ranks": ranks})
    assert bytes_by_group(offloaded) == [(80, 0, 1600, 1600), (80, 640, 1600, 0)]
    assert "offloaded to host" in plan_page(offloaded, "x")
    assert "offloaded to host" not in plan_page(plan, "x")


# --- the file ---------------------------------------------------------------------------


def test_the_page_is_self_contained_and_the_same_every_time() -> None:
    spec = {**MIXED, "global_batch_size": 64, "device_memory": 4096}
    page = plan_page(make_plan(spec_from_dict(spec)), "mixed.yaml")
    assert page == plan_page(make_plan(spec_from_dict(spec)), "mixed.yaml")
    for reference in ("<link", " src=", "href=", "url(", "@import", "https:"):
        assert reference not in page
    assert page.count("http:") == page.count('xmlns="http://www.w3.org/2000/svg"') == 2
    assert page.count('<g class="bar"') == 2 * 2  # bytes and traffic, 2 ranks each


def test_names_are_escaped_in_markup_and_in_data() -> None:
    plan = make_plan(spec_from_dict({"world_size": 2, "tables": [
        {"name": ODD_NAME, "rows": 10, "width": 4},
        {"name": "plain", "rows": 10, "width": 4},
    ]}))  # fmt: skip
    page = plan_page(plan, "<spec>.yaml")
    assert ODD_NAME not in page
    assert "<img" not in page and "</script><" not in page
    assert "&lt;spec&gt;.yaml" in page
    assert page.count("</script>") == 2  # the data and the script, nothing else ends early


def test_show_and_plan_write_the_report(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "p.json", "--html", "plan.html")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == ["wrote p.json", "wrote plan.html"]
    shown = invoke("show", "p.json", "--html", "show.html", "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["world_size"] == 2
    assert shown.stderr.strip() == "wrote show.html"
    plan = load_plan(work / "p.json")
    assert (work / "show.html").read_text() == plan_page(plan, "p.json")
    assert (work / "plan.html").read_text() == plan_page(plan, "small.yaml")


def test_a_plan_that_does_not_fit_still_gets_its_report(work: Path) -> None:
    result = invoke(
        "plan", "small.yaml", "-o", "p.json", "--device-memory", "3000", "--html", "r.html"
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == "wrote r.html"
    assert sorted(p.name for p in work.iterdir()) == ["r.html", "small.yaml"]
    page = (work / "r.html").read_text()
    assert "device limit 2.93 KiB" in page
    assert "rank 0 needs 3.20 KiB, 280 B over the 2.93 KiB limit" in page


def test_a_report_never_overwrites_an_input(work: Path) -> None:
    result = invoke("plan", "small.yaml", "-o", "p.json", "--html", "small.yaml")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "Error: small.yaml: --html would overwrite small.yaml; name another file"
    )
    assert (work / "small.yaml").read_text() == SMALL_YAML
    assert invoke("plan", "small.yaml", "-o", "p.json").exit_code == 0
    before = (work / "p.json").read_bytes()
    for args in (["show", "p.json"], ["diff", "p.json", "p.json"]):
        refused = invoke(*args, "--html", "./p.json")
        assert refused.exit_code == 2
        assert "--html would overwrite p.json" in refused.stderr
    missing = invoke("show", "p.json", "--html", "no/such/folder/r.html")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        "Error: no/such/folder/r.html: folder no/such/folder does not exist; create it first"
    )
    assert (work / "p.json").read_bytes() == before
    assert sorted(p.name for p in work.iterdir()) == ["p.json", "small.yaml"]


def test_diff_draws_before_and_after_on_one_scale(work: Path) -> None:
    assert invoke("plan", "small.yaml", "-o", "old.json").exit_code == 0
    assert invoke("plan", "small.yaml", "-o", "new.json", "--world-size", "8").exit_code == 0
    result = invoke("diff", "old.json", "new.json", "--html", "d.html")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "wrote d.html"
    page = (work / "d.html").read_text()
    assert "before: old.json" in page and "after: new.json" in page
    assert page.count('<g class="bar"') == 2 + 8
    # both y axes end at the old plan's top tick (3280 B rounds up to 4 KiB); drawn
    # alone, the new plan (800 B at most: a cut into 4 slices of 2 columns) ends at 800 B
    assert page.count(">4 KiB</text>") == 2
    alone = plan_page(load_plan(work / "new.json"), "new.json")
    assert ">4 KiB</text>" not in alone and ">800 B</text>" in alone


# --- in a real browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: scripts/test.sh installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it)")
    with Browser(executable) as running:
        yield running


DRAWN = """(() => {
  const charts = {};
  for (const svg of document.querySelectorAll("svg.chart")) {
    charts[svg.id] = [...svg.querySelectorAll("g.bar")].map((bar) => {
      const hit = bar.querySelector("rect.hit").getBoundingClientRect();
      const height = [...bar.querySelectorAll("rect.seg")]
        .reduce((sum, seg) => sum + seg.getBoundingClientRect().height, 0);
      return [Number(bar.dataset.rank), hit.width, height];
    });
  }
  return charts;
})()"""


def pick(name: str) -> str:
    """Choose ``name`` in the table picker as a person would; returns the picked ranks
    per chart and the rows of each panel's pieces table."""
    return f"""(() => {{
  const picker = document.getElementById("table-picker");
  const option = [...picker.options].find((o) => o.textContent === {json.dumps(name)});
  picker.value = option.value;
  picker.dispatchEvent(new Event("change"));
  const picked = {{}};
  for (const svg of document.querySelectorAll("svg.chart")) {{
    picked[svg.id] = [...svg.querySelectorAll("g.bar.picked")].map((b) => Number(b.dataset.rank));
  }}
  const rows = [...document.querySelectorAll(".pieces")].map(
    (box) => [...box.querySelectorAll("tr")].slice(1).map((tr) => tr.textContent));
  const about = [...document.querySelectorAll(".pieces p")].map((p) => p.textContent);
  return {{picked, rows, about}};
}})()"""


def open_page(browser: Browser, path: Path) -> str:
    browser.problems.clear()
    return browser.open(path.resolve().as_uri())


def assert_one_bar_per_rank(drawn: dict, chart: str, ranks: list[int]) -> None:
    bars = drawn[chart]
    assert [rank for rank, _, _ in bars] == list(range(len(ranks)))
    assert all(width > 0 for _, width, _ in bars)
    # heights follow the values: the largest is the tallest, and each is in proportion
    tallest = max(height for _, _, height in bars)
    assert tallest > 20
    for (_, _, height), value in zip(bars, ranks, strict=True):
        assert height == pytest.approx(tallest * value / max(ranks), abs=1.0)


@pytest.mark.parametrize("world_size", [8, 1024])
def test_the_browser_draws_a_bar_per_rank(
    browser: Browser, tmp_path: Path, world_size: int
) -> None:
    config = yaml.safe_load((CONFIGS / "synthetic_small.yaml").read_text())
    spec = spec_from_dict({**config, "world_size": world_size, "global_batch_size": 65536})
    plan = make_plan(spec)
    path = tmp_path / "report.html"
    path.write_text(plan_page(plan, "synthetic_small.yaml"))
    session = open_page(browser, path)
    drawn = browser.evaluate(session, DRAWN)
    assert sorted(drawn) == ["comm-0", "memory-0"]
    assert_one_bar_per_rank(drawn, "memory-0", [r.bytes for r in plan.ranks])
    assert_one_bar_per_rank(drawn, "comm-0", [r.comm.seconds for r in plan.ranks if r.comm])

    table = max(plan.groups.table_parallel, key=lambda name: plan.table(name).elements)
    holders = sorted({s.rank for s in plan.shards if s.table == table})
    chosen = browser.evaluate(session, pick(table))
    assert chosen["picked"] == {"memory-0": holders, "comm-0": holders}
    pieces = [s for s in plan.shards if s.table == table]
    assert len(chosen["rows"][0]) == min(len(pieces), 64)
    assert browser.problems == []


def test_the_browser_shows_odd_names_as_text(browser: Browser, tmp_path: Path) -> None:
    plan = make_plan(spec_from_dict({"world_size": 2, "data_parallel_threshold": 40, "tables": [
        {"name": ODD_NAME, "rows": 100, "width": 8},
        {"name": "__proto__", "rows": 10, "width": 4},
        {"name": "b", "rows": 50, "width": 8},
    ]}))  # fmt: skip
    path = tmp_path / "odd.html"
    path.write_text(plan_page(plan, ODD_NAME))
    session = open_page(browser, path)
    assert browser.evaluate(session, "document.querySelector('h1').textContent") == (
        f"{ODD_NAME}: 2 ranks, strategy basic"
    )
    chosen = browser.evaluate(session, pick(ODD_NAME))
    assert chosen["picked"]["memory-0"] == [0]
    assert chosen["about"] == [f"{ODD_NAME}: table-parallel, 100 x 8, 3.12 KiB; 1 piece on 1 rank"]
    replicated = browser.evaluate(session, pick("__proto__"))
    assert replicated["picked"]["memory-0"] == [0, 1]  # data-parallel: every rank
    assert replicated["about"] == ["__proto__: data-parallel, 10 x 4, 160 B; a copy on every rank"]
    assert browser.evaluate(session, "document.querySelectorAll('img').length") == 0
    assert browser.problems == []


def test_the_browser_draws_both_sides_of_a_diff(browser: Browser, tmp_path: Path) -> None:
    old = make_plan(spec_from_dict({**MIXED, "global_batch_size": 96}))
    new = make_plan(spec_from_dict({**MIXED, "global_batch_size": 96, "world_size": 3}))
    path = tmp_path / "diff.html"
    path.write_text(diff_page(old, new, ("old.json", "new.json"), "world size 2 -> 3"))
    session = open_page(browser, path)
    drawn = browser.evaluate(session, DRAWN)
    assert {chart: len(bars) for chart, bars in drawn.items()} == {
        "memory-0": 2, "comm-0": 2, "memory-1": 3, "comm-1": 3,
    }  # fmt: skip
    # one scale: rank 0 of the old plan (3280 B) against the new plan's ranks
    old_top = drawn["memory-0"][0][2]
    for (rank, _, height), held in zip(drawn["memory-1"], new.ranks, strict=True):
        assert height == pytest.approx(old_top * held.bytes / 3280, abs=1.0), rank
    chosen = browser.evaluate(session, pick("a"))  # row-sliced: every rank on both sides
    assert chosen["picked"]["memory-0"] == [0, 1]
    assert chosen["picked"]["memory-1"] == [0, 1, 2]
    assert browser.problems == []


def test_the_browser_check_catches_errors_and_requests(browser: Browser, tmp_path: Path) -> None:
    # the checks above pass only because the report is clean: a page that logs an error,
    # throws, and fetches from the network (a closed port on this machine) is caught
    path = tmp_path / "bad.html"
    path.write_text(
        "<!DOCTYPE html><title>bad</title><script>console.error('logged');"
        "fetch('http://127.0.0.1:9/x').catch(() => {});"
        "setTimeout(() => { throw new Error('thrown'); }, 0);</script>"
    )
    session = open_page(browser, path)
    browser.evaluate(session, "new Promise((done) => setTimeout(done, 200))")
    problems = "\n".join(browser.problems)
    assert "console error: logged" in problems
    assert "uncaught exception: Error: thrown" in problems
    assert "network request: http://127.0.0.1:9/x" in problems
