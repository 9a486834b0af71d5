"""`dvc plots show --html-template reports/plots.html` writes a page that works in a real browser, offline.

The toy project (tests/toy_project.py) is reproduced once; the page DVC writes for it is opened in headless
Chromium (with every host name unresolvable, so nothing can come from the network) and the DOM Chromium
has after running the page's scripts is checked: every Vega plot drew an SVG, the confusion matrices
show the test predictions of evaluate's confusion.csv, the training curves show the epochs DVCLive logged.
A page whose scripts do not load or fail draws nothing and fails these tests.

Skipped only when no Chromium is installed (`.ci/run` installs it: apt-get install chromium).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from toy_project import DVC, dvc_env, sh
from toy_runs import LABELS

ROOT = Path(__file__).resolve().parent.parent  # the checkout

TEMPLATE = ROOT / "reports" / "plots.html"
ADAPTERS = ("lora", "ia3")  # the toy project's runs: toy / tiny-bert / <adapter>
RUN = "metrics/{kind}/toy/tiny-bert/{adapter}"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """$CHROMIUM if set, else the first Chromium / Chrome on PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def plot_id(path: str) -> str:
    """The id of the <div> DVC writes for a plot file (dvc_render: the path with / and . made _)."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", path)


@dataclass
class Plot:
    """What one plot <div> holds in the rendered DOM."""
    tags: list[tuple[str, dict]] = field(default_factory=list)  # every element inside, in order
    svg_text: list[str] = field(default_factory=list)  # the text of its SVG <text> elements
    errors: list[str] = field(default_factory=list)  # messages the template shows for a failed plot

    @property
    def svg(self) -> bool:
        """Vega drew it: an <svg class="marks"> with at least one mark in it."""
        return (any(tag == "svg" and "marks" in attrs.get("class", "").split() for tag, attrs in self.tags)
                and any("role-mark" in attrs.get("class", "") for _, attrs in self.tags))

    def data(self) -> list[dict[str, str]]:
        """The data behind its marks: Vega labels each drawn datum "field: value; field: value"."""
        labels = {attrs["aria-label"] for _, attrs in self.tags
                  if attrs.get("role") == "graphics-symbol" and ": " in attrs.get("aria-label", "")}
        return [dict(part.split(": ", 1) for part in label.split("; ")) for label in sorted(labels)]

    def lines(self) -> list[str]:
        """The SVG paths of its line marks (each "M x,y L x,y ..." through the points of one line)."""
        return [attrs.get("d", "") for tag, attrs in self.tags
                if tag == "path" and attrs.get("aria-roledescription") == "line mark"]


class RenderedPlots(HTMLParser):
    """Collects, per plot <div id=...>, the elements and text inside it."""

    def __init__(self, ids: set[str]):
        super().__init__(convert_charrefs=True)
        self.ids, self.plots = ids, {}
        self._plot, self._divs, self._text = None, 0, None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if self._plot is None:
            if tag == "div" and attrs.get("id") in self.ids:
                self._plot, self._divs = self.plots.setdefault(attrs["id"], Plot()), 1
            return
        self._divs += tag == "div"
        self._plot.tags.append((tag, attrs))
        if tag == "text":
            self._text = self._plot.svg_text
        elif "plot-error" in attrs.get("class", ""):
            self._text = self._plot.errors

    def handle_endtag(self, tag):
        if self._plot is None:
            return
        if tag in ("text", "pre"):
            self._text = None
        if tag == "div":
            self._divs -= 1
            if self._divs == 0:
                self._plot = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


@dataclass
class Page:
    root: Path  # the toy project
    index: Path  # dvc_plots/index.html, as DVC wrote it
    html: str  # its text
    plots: dict[str, Plot]  # vega plot id -> what the rendered DOM holds for it
    dump: str  # the rendered DOM


def render(chromium: str, page: Path, profile: Path) -> str:
    """The DOM of `page` after its scripts ran (headless Chromium, 10 s of virtual time, no network)."""
    command = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-quic", f"--user-data-dir={profile}",
               "--host-resolver-rules=MAP * ~NOTFOUND",  # a page that needs the network fails here too
               "--window-size=1400,1000", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "</html>" in result.stdout, \
        f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory, toy_project) -> Page:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(f"no Chromium to render the plots page in (looked for ${{CHROMIUM}}, "
                    f"{', '.join(CHROMIUM_NAMES)} on PATH; install it with `apt-get install chromium`)")
    root = toy_project
    (root / "reports").mkdir(exist_ok=True)
    shutil.copy(TEMPLATE, root / "reports" / "plots.html")
    out = sh(root, DVC, "plots", "show", "--html-template", "reports/plots.html")  # as docs/evaluation.md says
    index = root / "dvc_plots" / "index.html"
    assert index.as_uri() in out, out
    html = index.read_text(encoding="utf-8")
    ids = set(re.findall(r"vegaEmbed\('#([^']+)'", html))
    dump = render(chromium, index, tmp_path_factory.mktemp("chromium_profile"))
    parser = RenderedPlots(ids)
    parser.feed(dump)
    return Page(root, index, html, {i: parser.plots.get(i, Plot()) for i in ids}, dump)


def test_page_loads_no_script_from_outside(page):
    """Nothing for the browser to fetch: no <script src=...>, DVC's CDN tags left out."""
    assert not re.search(r"<script[^>]*\ssrc\s*=", page.html, re.I)
    assert '"http' not in "".join(re.findall(r"<(?:link|img)[^>]*>", page.html))


def test_every_vega_plot_renders_as_svg(page):
    expected = {plot_id(RUN.format(kind="eval", adapter=a) + f"/{name}.csv")
                for a in ADAPTERS for name in ("confusion", "per_class")}
    expected |= {plot_id(RUN.format(kind="train", adapter=a) + f"/plots/metrics/{name}.tsv")
                 for a in ADAPTERS for name in ("train/loss", "val/loss")}
    expected.add(plot_id("metrics/leaderboard.csv"))
    assert expected <= set(page.plots), f"plots missing from the page: {sorted(expected - set(page.plots))}"
    failed = {name: plot.errors for name, plot in page.plots.items() if plot.errors or not plot.svg}
    assert not failed, (f"{len(failed)} of {len(page.plots)} plots not drawn in Chromium: {failed}\n"
                        f"rendered DOM (end): {page.dump[-2000:]}")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_confusion_matrix_shows_the_test_predictions(page, adapter):
    source = RUN.format(kind="eval", adapter=adapter) + "/confusion.csv"
    plot = page.plots[plot_id(source)]
    assert plot.svg, f"{source} not drawn: {plot.errors or 'no <svg class=marks> with marks in it'}"
    assert f"Test confusion (toy tiny-bert {adapter})" in plot.svg_text
    assert {"predicted", "actual"} <= set(plot.svg_text)  # axis titles
    with open(page.root / source, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert set(plot.svg_text) >= {row["actual"] for row in rows}  # the classes along the axis
    assert {row["actual"] for row in rows} <= set(LABELS)
    drawn = {(cell["predicted"], cell["actual"]): int(cell["xy_count"]) for cell in plot.data()
             if "xy_count" in cell}
    assert drawn == Counter((row["predicted"], row["actual"]) for row in rows)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("curve", ["train/loss", "val/loss", "val/macro_f1"])
def test_training_curve_shows_every_logged_epoch(page, adapter, curve):
    source = RUN.format(kind="train", adapter=adapter) + f"/plots/metrics/{curve}.tsv"
    plot = page.plots[plot_id(source)]
    assert plot.svg, f"{source} not drawn: {plot.errors or 'no <svg class=marks> with marks in it'}"
    metric = curve.split("/")[1]
    assert {"step", metric} <= set(plot.svg_text)  # axis titles
    assert source in plot.svg_text  # the plot's title
    assert any(re.fullmatch(r"M[-\d.e,]+(L[-\d.e,]+)+", d) for d in plot.lines()), plot.lines()  # a drawn line
    with open(page.root / source, newline="", encoding="utf-8") as f:
        logged = {int(row["step"]): float(row[metric]) for row in csv.DictReader(f, delimiter="\t")}
    assert len(logged) == 2  # params: train.epochs 2
    drawn = {int(p["step"]): float(p[metric]) for p in plot.data() if metric in p}
    assert drawn.keys() == logged.keys()
    assert all(abs(drawn[step] - value) < 1e-6 for step, value in logged.items()), (drawn, logged)


def test_pareto_image_is_on_the_page(page):
    sources = re.findall(r'<img src="([^"]+)"', page.html)
    pareto = [s for s in sources if s.endswith("metrics_pareto_toy.png")]
    assert pareto, sources
    assert (page.index.parent / pareto[0]).stat().st_size > 1000


def test_template_inlines_the_vega_versions_dvc_uses():
    """reports/plots.html carries the vega / vega-lite / vega-embed that DVC's own page loads from a CDN."""
    from dvc_render.vega import VegaRenderer

    cdn = dict(re.findall(r"/npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))
    template = TEMPLATE.read_text(encoding="utf-8")
    inlined = dict(re.findall(r'<script data-library="([a-z-]+)@([0-9.]+)">', template))
    assert set(cdn) == {"vega", "vega-lite", "vega-embed"} and inlined == cdn
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))["packages"]
    assert {name: lock[f"node_modules/{name}"]["version"] for name in cdn} == cdn
    assert template.count("{plot_divs}") == 1 and "{scripts}" not in template


def test_template_is_built_from_the_pinned_packages():
    """The committed template is exactly what reports/build_plots_template.py makes of node_modules."""
    if not (ROOT / "node_modules" / "vega-embed" / "package.json").is_file():
        pytest.skip("node_modules is not installed (`npm ci`; .ci/run does it)")
    result = subprocess.run([sys.executable, str(ROOT / "reports" / "build_plots_template.py"), "--check"],
                            cwd=ROOT, env=dvc_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
