"""The report of a run (``RUN/report.html`` and its Markdown twin ``RUN/report.md``):
what it says for a trained, an analysed, a surveyed and a swept run, that the HTML is
self-contained, that its config reads back to the run's experiment, and, in a headless
Chromium, that the page loads without an error and shows every figure."""

from __future__ import annotations

import base64
import html
import math
import re
import shutil
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import held_elsewhere

import nnkit
from nnkit.report import browser, formats, page, recipe
from nnkit.runs import lock
from nnkit.study import config

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

TRAINED = """
name = "trained"
seed = 2
inits = 8
[data]
kind = "teacher_student"
d = 2
n = 20
n_test = 10
teacher_width = 2
[model]
hidden = [3]
[train]
lr = 0.1
max_steps = 50
history = 6
[run]
backend = "numpy"
"""

SWEPT = """
name = "swept"
inits = 12
[data]
kind = "teacher_student"
n = 30
n_test = 20
[model]
activation = "relu"
bias = false
[train]
lr = 0.1
max_steps = 400
grad_tol = 1e-5
[run]
backend = "numpy"
[analysis]
enabled = true
[sweep]
mode = "zip"
"data.d" = [2, 3]
"data.teacher_width" = [1, 2]
"model.hidden" = [[2], [3]]
"""

#: trained too briefly for any init to reach a critical point, and not polished
STUCK = """
name = "stuck"
inits = 6
[data]
kind = "xor"
[model]
hidden = [2]
activation = "sigmoid"
[train]
lr = 0.01
max_steps = 3
[run]
backend = "numpy"
[analysis]
enabled = true
polish = false
"""


def _run(folder, text, *overrides):
    path = folder / "experiment.toml"
    path.write_text(textwrap.dedent(text))
    done = nnkit.run_experiment(nnkit.load_experiment(path, overrides), results_dir=folder, progress=False)
    return nnkit.load(done)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("trained"), TRAINED)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("swept"), SWEPT)


@pytest.fixture(scope="module")
def surveyed(tmp_path_factory):
    """The shipped XOR landscape study, small: trained, analysed and surveyed."""
    folder = tmp_path_factory.mktemp("surveyed")
    path = EXPERIMENTS / "xor_landscape.toml"
    overrides = ("inits=40", "landscape.max_pairs=6", "landscape.trajectory_inits=2")
    done = nnkit.run_experiment(nnkit.load_experiment(path, overrides), results_dir=folder, progress=False)
    run = nnkit.load(done)
    page.write_report(run)
    return run


def _copy(run, tmp_path):
    target = tmp_path / run.name / run.path.name
    shutil.copytree(run.path, target)
    return nnkit.load(target)


def _images(text: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', text)


def _said(text: str) -> str:
    """The text of an HTML page, without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def _toml_of(text: str) -> str:
    found = re.search(r'<code class="language-toml">(.*?)</code>', text, re.DOTALL)
    return html.unescape(found.group(1))


def assert_self_contained(text: str) -> None:
    """No attribute that loads anything from elsewhere: no remote or relative src or
    href, no script, no style sheet by link, no CSS import or url()."""
    for attr, value in re.findall(r'\b(src|href|srcset|action|poster|data)\s*=\s*"([^"]*)"', text):
        if attr == "src":
            assert value.startswith("data:image/png;base64,"), value[:80]
        else:
            assert attr == "href" and value.startswith("#"), (attr, value)
    lowered = text.lower()
    for fragment in ("<script", "<link", "<iframe", "@import", "url(", "http://", "https://"):
        assert fragment not in lowered, fragment


def assert_markdown_images_exist(md_path: Path) -> list[Path]:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text(encoding="utf-8"))
    files = [(md_path.parent / link).resolve() for link in links]
    for file, link in zip(files, links):
        assert not link.startswith("/") and file.is_file(), link
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    return files


# -- the formats ------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_the_toml_of_every_shipped_experiment_reads_back_to_it(path):
    exp = config.load(path)
    text = formats.toml(exp.to_dict(), "a comment\non two lines")
    assert text.startswith("# a comment\n# on two lines\n")
    raw = tomllib.loads(text)
    assert raw == exp.to_dict()
    assert config.from_dict(raw) == exp


def test_toml_holds_what_tomllib_reads_back():
    awkward = {
        "name": 'quote " and \\ backslash, tab\t, newline\n, é, ±',
        "numbers": [0, -3, 1.5, 1e-300, 1e300, float("inf"), float("-inf"), 2**62],
        "flags": [True, False],
        "nested": [[1, 2], [], [[3]]],
        "empty": [],
        "inline": [{"a": 1, "b c": "d"}],
        "section": {"x": 1, "deeper": {"y": "z"}, "with.dot": {"k": 2}},
        "only_tables": {"inner": {"v": 1}},
        "bare": {},
        "sweep": {"model.hidden": [[2], [3]], "mode": "zip"},
    }
    back = tomllib.loads(formats.toml(awkward))
    assert back == awkward
    assert math.isnan(tomllib.loads(formats.toml({"v": float("nan")}))["v"])
    with pytest.raises(ValueError, match="TOML cannot hold"):
        formats.toml({"v": None})


def test_tables_are_escaped_and_align_numbers():
    frame = pd.DataFrame({"kind": ["<b>a|b</b>", "c"], "loss": [1.234567e-9, np.nan], "count": [3, 4],
                          "spurious": [True, False], "hidden": [(2,), (3, 4)]})  # fmt: skip
    text = formats.html_table(frame)
    assert "<b>" not in text and "&lt;b&gt;a|b&lt;/b&gt;" in text
    assert '<td class="num">1.235e-09</td>' in text and '<td class="num">–</td>' in text
    assert "<td>yes</td>" in text and "<td>[3, 4]</td>" in text
    lines = formats.pipe_table(frame).splitlines()
    assert lines[0] == "| kind | loss | count | spurious | hidden |"
    assert lines[1] == "|:---|---:|---:|:---|:---|"
    assert lines[2] == "| <b>a\\|b</b> | 1.235e-09 | 3 | yes | [2] |"
    assert len(lines) == 4


# -- what the report says ----------------------------------------------------------


def test_the_report_of_a_surveyed_run(surveyed):
    """Every section, every figure embedded (the landscape's among them), the tables,
    the experiment in words, and a config that reads back to the run's experiment."""
    run = surveyed
    text = (run.path / "report.html").read_text(encoding="utf-8")
    assert_self_contained(text)
    for anchor in ("experiment", "landing", "training", "minima", "figures", "landscape", "reproduce"):
        assert f'<h2 id="{anchor}">' in text, anchor
    shown = page.figures_of(run)
    names = [item.path.name for item in shown]
    assert names[:3] == ["final_loss.png", "minima.png", "spectra.png"]
    landscape = sorted(p.name for p in (run.path / "figures").glob("landscape-*.png"))
    assert sorted(names[3:]) == landscape and len(landscape) >= 4
    sources = _images(text)
    assert len(sources) == len(shown) == text.count("<figcaption>")
    for src, item in zip(sources, shown):
        assert base64.b64decode(src.split(",", 1)[1]) == item.path.read_bytes()
    assert all(re.search(r'<img [^>]*alt="[^"]+"', tag) for tag in re.findall(r"<img [^>]*>", text))
    said = _said(text)
    for fragment in ("A 2-2-1 network", "input dimension d = 2", "sigmoid", "XOR", "n = 4 training samples",
                     "L2 penalty of 0.001", "full-batch gradient descent with step 1", "20,000 steps",
                     "40 inits", f"{run.meta['backend']} in float64", "nnkit 0.1.0", "Python", "NumPy",
                     "recorded with the run", "Run on 20", "polished to a gradient norm of 1e-10",
                     f"{len(run.minima)} distinct minima in all", "Barriers between the minima"):  # fmt: skip
        assert fragment in said, fragment
    for column in ("spurious_fraction", "loss_median", "fraction_high", "barrier_median"):
        assert column in said, column
    assert config.from_dict(tomllib.loads(_toml_of(text))) == run.experiment
    assert "nnkit run experiment.toml" in said and "nnkit minima RUN" not in said  # nnkit run does it all


def test_the_markdown_twin_shows_the_same_figures_from_the_run_folder(surveyed):
    md = surveyed.path / "report.md"
    files = assert_markdown_images_exist(md)
    assert [f.name for f in files] == [item.path.name for item in page.figures_of(surveyed)]
    text = md.read_text(encoding="utf-8")
    assert "](figures/final_loss.png)" in text
    assert re.search(r"^\| inits \| global \| spurious \|", text, re.MULTILINE)  # one point: no column point
    toml_text = re.search(r"```toml\n(.*?)```", text, re.DOTALL).group(1)
    assert config.from_dict(tomllib.loads(toml_text)) == surveyed.experiment


def test_a_trained_run_says_how_to_analyse_it(trained, tmp_path):
    run = _copy(trained, tmp_path)
    html_path, md_path = page.write_report(run)
    text = html_path.read_text(encoding="utf-8")
    assert_self_contained(text)
    assert "This run has not been analysed" in text and "<code>nnkit minima RUN</code>" in text
    assert 'id="minima"' not in text and 'id="landscape"' not in text
    assert [item.path.name for item in page.figures_of(run)] == ["final_loss.png", "training.png"]
    assert len(_images(text)) == 2
    assert [f.name for f in assert_markdown_images_exist(md_path)] == ["final_loss.png", "training.png"]
    assert "numpy in float64" in text and "relu teacher of width 2" in text and "n = 20 training samples" in text
    assert all(item.figure is None for item in page.figures_of(run))  # written once, then read


def test_a_report_after_the_run_names_the_stages_and_their_settings(trained, swept, tmp_path):
    """A run analysed again and surveyed apart from ``nnkit run``, with settings other
    than its experiment file's: the commands say so; the survey's figures of every
    sweep point are shown."""
    assert [c for c, _ in recipe.commands(trained)] == ["nnkit run experiment.toml"]
    run = _copy(swept, tmp_path)
    nnkit.analyse_run(run, ["analysis.polish_steps=50"], progress=False)
    nnkit.landscape_run(run, ["landscape.tools=['barriers', 'slices']"], progress=False)
    commands = [c for c, _ in recipe.commands(run)]
    assert commands == ["nnkit run experiment.toml", "nnkit minima RUN --set analysis.polish_steps=50",
                        "nnkit landscape RUN --set 'landscape.tools=[\"barriers\", \"slices\"]'"]  # fmt: skip
    html_path, _ = page.write_report(run)
    text = html_path.read_text(encoding="utf-8")
    assert 'id="landscape"' in text
    titles = [item.title for item in page.figures_of(run) if item.section == "landscape"]
    assert "A slice of the loss (point 1: d = 3, teacher_width = 2, hidden = [3])" in titles, titles
    assert len(_images(text)) == len(page.figures_of(run))


def test_a_sweep_shows_every_point_and_the_spurious_fraction_against_each_key(swept):
    run = swept
    html_path, md_path = page.write_report(run)
    text = html_path.read_text(encoding="utf-8")
    assert_self_contained(text)
    names = [item.path.name for item in page.figures_of(run)]
    assert names == ["final_loss.png", "minima.png", "spectra.png", "spurious.png", "spurious-data.teacher_width.png"]
    assert "Spurious minima against data.d" in text and "Spurious minima against data.teacher_width" in text
    assert len(_images(text)) == len(names)
    assert "model.<wbr>hidden" in text and "over 2 sweep points" in text
    assert "A 2-2-1 or 3-3-1 (by sweep point) network" in _said(text)
    md = md_path.read_text(encoding="utf-8")
    assert re.search(r"^\| point \| data\.d \| data\.teacher_width \| model\.hidden \|", md, re.MULTILINE)
    assert len(assert_markdown_images_exist(md_path)) == len(names)


def test_a_run_without_minima_is_reported(tmp_path):
    run = _run(tmp_path, STUCK)
    assert run.minima is not None and run.minima.empty
    html_path, md_path = page.write_report(run)
    text = html_path.read_text(encoding="utf-8")
    assert "No init reached a certified minimum" in text
    assert [item.path.name for item in page.figures_of(run)] == ["final_loss.png"]
    assert len(_images(text)) == 1 and len(assert_markdown_images_exist(md_path)) == 1
    assert "checked for a gradient norm of 1e-10 (not polished)" in _said(text)


def test_a_report_written_elsewhere_links_the_run_figures(trained, tmp_path):
    run = _copy(trained, tmp_path / "results")
    html_path, md_path = page.write_report(run, out=tmp_path / "elsewhere" / "deeper")
    assert html_path.parent == md_path.parent == tmp_path / "elsewhere" / "deeper"
    assert not (run.path / "report.html").exists()
    files = assert_markdown_images_exist(md_path)
    assert files and all(f.parent == (run.path / "figures").resolve() for f in files)


def test_the_report_is_written_under_the_run_lock(trained, tmp_path):
    run = _copy(trained, tmp_path)
    with held_elsewhere(run.path), pytest.raises(lock.Busy):
        page.write_report(run)
    assert not (run.path / "report.html").exists() and not (run.path / "figures").exists()


# -- in a browser ------------------------------------------------------------------


@pytest.mark.skipif(browser.chromium() is None, reason="no Chromium executable ($NNKIT_CHROMIUM or chromium)")
def test_report_in_browser(surveyed, tmp_path):
    """The surveyed run's report in a headless Chromium: no console error, page error
    or failed request; every figure decoded and laid out; a first screen that shows
    something."""
    pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright (pip install playwright)")
    from matplotlib.image import imread

    html_path = surveyed.path / "report.html"
    errors, failed, requests = [], [], []
    with browser.page(1280, 800) as p:
        p.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        p.on("pageerror", lambda error: errors.append(str(error)))
        p.on("requestfailed", lambda request: failed.append(request.url))
        p.on("request", lambda request: requests.append(request.url))
        p.goto(html_path.as_uri(), wait_until="load")
        images = p.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.getBoundingClientRect().width, "
                   "e.getBoundingClientRect().height, e.alt])",
        )  # fmt: skip
        wide = p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot = tmp_path / "first-screen.png"
        p.screenshot(path=str(shot))
    assert not errors and not failed, (errors, failed)
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert len(images) == len(page.figures_of(surveyed)) > 0
    for complete, natural, width, height, alt in images:
        assert complete and natural > 0 and width > 0 and height > 0 and alt
    assert wide  # nothing wider than the window: tables scroll inside their frames
    pixels = imread(shot)
    assert pixels.shape[:2] == (800, 1280)
    assert pixels[..., :3].std() > 0.05 and len(np.unique(pixels[..., 0])) > 10


# -- the command line ---------------------------------------------------------------------


def test_nnkit_report_writes_both_files_and_prints_their_paths(trained, tmp_path):
    from conftest import assert_user_error, invoke

    run = _copy(trained, tmp_path)
    result = invoke("report", run.path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(run.path / "report.html"), str(run.path / "report.md")]
    assert_self_contained((run.path / "report.html").read_text(encoding="utf-8"))
    out = tmp_path / "elsewhere"
    assert invoke("report", run.path, "--out", out).exit_code == 0
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert_user_error(invoke("report", tmp_path), "not an nnkit run folder")


def test_nnkit_run_report_as_a_real_command(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "experiment.toml"
    path.write_text(textwrap.dedent(TRAINED))
    done = subprocess.run([sys.executable, "-m", "nnkit", "run", str(path), "--results", str(tmp_path / "results"),
                           "-q", "--report"], capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    run_dir = Path(done.stdout.strip())
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    assert "Traceback" not in done.stderr
