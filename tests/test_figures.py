"""Figures are drawn from a run's tables with matplotlib's object API: they say what the
tables say, draw into a caller's axes, and leave pyplot alone."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nnkit import load, run_experiment, write_figures
from nnkit.cli import main
from nnkit.report import figures
from nnkit.study import config

EXPERIMENT = """
name = "fig"
inits = 12
[data]
kind = "xor"
[model]
hidden = [2]
activation = "sigmoid"
[train]
lr = 1.0
max_steps = 60
history = 6
[run]
backend = "numpy"
[sweep]
"train.lr" = [0.5, 1.0]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fig")
    path = tmp / "fig.toml"
    path.write_text(EXPERIMENT)
    return load(run_experiment(config.load(path), results_dir=tmp, progress=False))


class FakeRun:
    """A run's tables without a folder: two sweep points, one of them with a spurious
    level holding three distinct minima."""

    name = "fake"
    sweep_keys = ["data.d"]
    history = None

    def __init__(self):
        self.runs = pd.DataFrame({
            "point": [0] * 10 + [1] * 10, "data.d": [2] * 10 + [3] * 10, "init": list(range(10)) * 2,
            "status": ["converged"] * 20, "loss": np.r_[np.zeros(10), np.full(6, 0.02), np.zeros(4)],
        })  # fmt: skip
        self.minima = pd.DataFrame({
            "point": [0, 1, 1, 1, 1], "data.d": [2, 3, 3, 3, 3], "minimum": [0, 0, 1, 2, 3],
            "level": [0, 0, 1, 1, 1], "loss": [1e-16, -1e-16, 0.02, 0.02, 0.02], "count": [10, 4, 2, 2, 2],
            "kind": ["strict minimum"] * 5, "spurious": [False, False, True, True, True],
            "eigenvalues": [[1.0, 2.0]] * 5,
        })  # fmt: skip


def test_no_pyplot_state_is_touched(run):
    made = figures.figures(run)
    assert set(made) == {"final_loss.png", "training.png", "minima.png", "spectra.png", "spurious.png"}
    assert isinstance(made["final_loss.png"], matplotlib.figure.Figure)
    assert made["minima.png"] is None and made["spectra.png"] is None and made["spurious.png"] is None  # not analysed
    # drawing and writing every figure in a fresh process never imports pyplot (which
    # would pick a backend and keep a list of open figures)
    code = (
        "import sys, nnkit; from nnkit.report import figures; run = nnkit.load(sys.argv[1]);"
        "figures.figures(run); nnkit.write_figures(run);"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    done = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_final_loss_histogram_counts_every_init_of_each_point(run):
    fig = figures.final_loss(run)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2  # one per sweep point
    for ax, (p, group) in zip(panels, run.runs.groupby("point")):
        heights = sum(patch.get_height() for patch in ax.patches)
        assert heights == len(group)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        for status, count in group["status"].value_counts().items():
            assert f"{status} ({count})" in labels
        assert "lr = " in ax.get_title()


def test_a_figure_draws_into_the_callers_axes(run):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    assert figures.final_loss(run, point=1, ax=ax) is fig
    assert "point 1" in ax.get_title()
    with pytest.raises(ValueError, match="point="):
        figures.final_loss(run, ax=fig.subplots())  # two points: which one?


def test_training_curves_have_a_legend_of_how_inits_ended(run):
    fig = figures.training_curves(run)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) == set(run.runs.loc[run.runs["point"] == 0, "status"])
    assert len(ax.lines) == (run.history["point"] == 0).groupby(run.history["init"]).any().sum()


def test_the_minima_map_shows_one_point_per_loss_level():
    fake = FakeRun()
    fig = figures.minima_map(fake)
    ax = [a for a in fig.axes if a.get_visible()][1]  # point 1: a global and a spurious level
    markers = [bars.lines[0] for bars in ax.containers]  # the data of each errorbar call
    xs = sorted(x for line in markers for x in line.get_xdata())
    assert len(xs) == 2 and xs[1] == pytest.approx(0.02)
    fractions = sorted(y for line in markers for y in line.get_ydata())
    assert fractions == pytest.approx([0.4, 0.6])  # 4 of 10 inits global, 6 spurious
    assert [t.get_text() for t in ax.texts] == ["3 minima"]
    left, right = ax.get_xlim()
    assert left < 0 < 0.02 < right  # the global level at 0 and the spurious one apart


def test_write_figures_writes_what_applies(run, tmp_path):
    files = write_figures(run)
    assert [f.name for f in files] == ["final_loss.png", "training.png"]
    for f in files:
        image = matplotlib.image.imread(f)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    result = CliRunner().invoke(main, ["plot", str(run.path)])
    assert result.exit_code == 0, result.output
    assert "final_loss.png" in result.output


STUDY = """
name = "{name}"
inits = 16
[data]
kind = "teacher_student"
teacher_weights = "orthonormal"
population = true
n = 5
n_test = 10
[model]
activation = "relu"
bias = false
output = "fixed"
[objective]
half = true
[train]
lr = 0.2
max_steps = 3000
grad_tol = 1e-9
[analysis]
enabled = true
optimum = 0.0
problem_symmetry = "teacher_permutations"
[run]
backend = "numpy"
[sweep]
mode = "zip"
"data.d" = [3, 4, 5]
"data.teacher_width" = [3, 4, 5]
"model.hidden" = [{hidden}]
"""


def test_the_spurious_fraction_against_k_one_curve_per_study(tmp_path):
    paths = []
    for name, hidden in (("narrow", "[3], [4], [5]"), ("wide", "[4], [5], [6]")):
        path = tmp_path / f"{name}.toml"
        path.write_text(STUDY.format(name=name, hidden=hidden))
        paths.append(run_experiment(config.load(path), results_dir=tmp_path / "r", progress=False))
    narrow, wide = (load(p) for p in paths)
    fig = figures.spurious_against([narrow, wide], "data.d", ["n = k", "n = k + 1"])
    frac, count = fig.axes[:2]
    assert [t.get_text() for t in frac.get_legend().get_texts()] == ["n = k", "n = k + 1"]
    assert len(count.get_lines()) == 4  # modulo the network and the problem, per study
    assert "spurious.png" in [f.name for f in write_figures(narrow)]  # a sweep of k draws it by itself
    out = tmp_path / "both.png"
    done = CliRunner().invoke(main, ["plot", str(paths[0]), str(paths[1]), "--out", str(out),
                                     "--label", "n = k", "--label", "n = k + 1"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert matplotlib.image.imread(out).shape[1] > 800
    bad = CliRunner().invoke(main, ["plot", str(paths[0]), str(paths[1])])
    assert bad.exit_code == 2 and "--out" in bad.output
    bad = CliRunner().invoke(main, ["plot", str(paths[0]), "--out", str(out), "--against", "train.lr"])
    assert bad.exit_code == 2 and "does not sweep train.lr" in bad.output
