"""Mapping the minima: polishing, grouping modulo symmetry, the minima table, and the
analysis stage of a run through the CLI."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import make_problem, objective_of

import nnkit
import nnkit.study
import nnkit.training
from nnkit.backends.reference import ReferenceKernel
from nnkit.cli import main
from nnkit.landscape import AnalysisConfig, analyse, group, polish, symmetry, wilson
from nnkit.study import config


class Quartic:
    """``E(w) = sum (w^2 - 1)^2 / 4``: minima at +-1, a maximum at 0, saddles between.
    A hand-made objective: the landscape tools need only these methods, and, to group
    minima, the model whose symmetries apply (here a linear unit, given by the caller)."""

    def __init__(self, model=None):
        self.model = model

    def value_and_grad(self, t):
        return ((t**2 - 1) ** 2).sum(axis=1) / 4, t**3 - t

    def hessian(self, t):
        return np.stack([np.diag(3 * r**2 - 1) for r in t])


def quartic(model=None):
    return Quartic(model)


def test_polishing_reaches_the_nearby_critical_point_whatever_its_kind():
    land = quartic()
    start = np.array([[0.9, 1.2, -1.1], [0.02, 0.95, -0.05]])
    res = polish(land, start, 1e-12, 50)
    assert res.converged.all() and (res.grad_norm <= 1e-12).all()
    np.testing.assert_allclose(res.theta, [[1, 1, -1], [0, 1, 0]], atol=1e-12)
    assert (res.steps > 0).all() and (res.steps < 20).all()


def test_polishing_a_network_to_1e_10_and_not_converged_when_it_cannot():
    model, obj, theta, X, _ = make_problem(activation="tanh", widths=(3,), d=2, n=30, R=5, seed=3)
    kernel = ReferenceKernel(model, obj)
    y = kernel.predict(theta[:1], X)[0]  # a realisable target: theta[0] is a minimum
    land = objective_of(model, obj, X, y)
    start = theta[[0] * 5] + 1e-3 * np.random.default_rng(0).normal(size=(5, theta.shape[1]))
    res = polish(land, start, 1e-10, 60)
    assert res.converged.all() and (res.grad_norm <= 1e-10).all() and (res.steps <= 40).all()
    np.testing.assert_allclose(res.theta, theta[[0] * 5], atol=1e-5)  # an ill-conditioned minimum
    assert (res.loss < 1e-15).all()
    stuck = polish(land, start, 1e-10, 0)
    assert not stuck.converged.any() and (stuck.steps == 0).all()


def test_wilson_interval():
    low, high = wilson(np.array([0, 50, 100]), 100)
    assert low[0] < 1e-15 and 0 < high[0] < 0.05
    assert low[1] < 0.5 < high[1] and abs((low[1] + high[1]) / 2 - 0.5) < 1e-12
    assert high[2] > 1 - 1e-15 and 0.95 < low[2] < 1


def test_symmetric_copies_are_one_minimum_and_different_networks_are_not():
    model, obj, theta, X, y = make_problem(activation="tanh", widths=(4,), R=2, seed=5)
    rng = np.random.default_rng(0)
    copies = np.vstack([symmetry.random_symmetry(model, theta[[0]], rng) for _ in range(5)])
    points = np.vstack([copies, theta[[1]]])
    loss = ReferenceKernel(model, obj).value(points, X, y)
    ids = group(model, points, loss, np.ones(6, bool), AnalysisConfig())
    assert len(set(ids[:5])) == 1 and ids[5] != ids[0]


def test_the_minima_table_counts_and_flags():
    model = make_problem(activation="linear", widths=(1,), d=1, bias=False, output_bias=False)[0]
    land = quartic(model)
    rng = np.random.default_rng(1)
    start = np.sign(rng.normal(size=(40, 1))) * (1 + 0.01 * rng.normal(size=(40, 1)))
    start = np.hstack([start, 0.01 * rng.normal(size=(40, 1))])  # second coordinate: near 0
    theta, per_init, minima = analyse(land, start, AnalysisConfig(), np.arange(40))
    # near (+-1, 0): the second coordinate sits at a maximum of its quartic: saddles
    assert set(per_init["kind"]) == {"saddle"} and (per_init["minimum"] == -1).all()
    assert minima.empty
    start[:, 1] = np.sign(start[:, 0]) * (1 + 0.01 * rng.normal(size=40))
    theta, per_init, minima = analyse(land, start, AnalysisConfig(), np.arange(40))
    # (1, 1) and (-1, -1): a linear unit's sign flip maps one onto the other
    assert (per_init["kind"] == "strict minimum").all()
    assert len(minima) == 1 and minima["count"].iloc[0] == 40
    assert minima["is_global"].all() and not minima["spurious"].any()
    assert minima["fraction_low"].iloc[0] < 1 == minima["fraction_high"].iloc[0]


XOR = """
name = "xm"
inits = 24
[data]
kind = "xor"
[model]
hidden = [2]
activation = "sigmoid"
output_bias = true
[objective]
half = true
[init]
scale = "fixed"
std = 1.0
[train]
lr = 1.0
max_steps = 4000
[analysis]
enabled = true
optimum = 0.0
[run]
backend = "numpy"
"""


def test_run_with_analysis_then_nnkit_minima_and_show(tmp_path):
    path = tmp_path / "xm.toml"
    path.write_text(textwrap.dedent(XOR))
    cli = CliRunner()
    done = cli.invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q"])
    assert done.exit_code == 0, done.output
    run_dir = done.output.strip().splitlines()[-1]
    run = nnkit.load(run_dir)
    minima = pd.read_parquet(f"{run_dir}/minima.parquet")
    assert {"minimum", "kind", "polished_grad_norm", "polish_steps"} <= set(run.runs.columns)
    assert minima["count"].sum() == (run.runs["minimum"] >= 0).sum()
    converged = run.runs["kind"].isin(["strict minimum", "degenerate minimum"])
    assert (run.runs.loc[converged, "polished_grad_norm"] <= 1e-10).all()
    for name in ("minima.png", "spectra.png"):
        assert (run.path / "figures" / name).is_file()

    # the stored table is the analysis of the stored parameters, redone here by hand
    exp = run.experiment
    objective = nnkit.make_objective(nnkit.study.problem(exp), nnkit.backends.get("numpy"))
    theta, per_init, table = analyse(objective, run.params(0), exp.analysis, run.runs["init"].to_numpy(),
                                     lambda th: nnkit.training.evaluate(objective, th)["test_loss"])  # fmt: skip
    table.insert(0, "point", 0)
    pd.testing.assert_frame_equal(minima, table)
    np.testing.assert_array_equal(run.params(0, polished=True), theta)
    np.testing.assert_array_equal(run.runs["minimum"], per_init["minimum"])
    assert minima["is_global"].any() and (minima["loss"] >= -1e-12).all()

    shown = cli.invoke(main, ["show", run_dir])
    assert "distinct minima" in shown.output and "where the inits ended" in shown.output
    assert list(run.summary()) == ["training", "landing", "minima"]
    assert run._repr_html_().count("<table") == 3
    landing = run.landing()
    assert shown.output.count("\n") > 6 and int(landing["global"].iloc[0]) == int(minima.loc[minima["is_global"], "count"].sum())

    # a changed setting is used: analysis.json records it, and it changes the table
    again = cli.invoke(main, ["minima", run_dir, "--set", "analysis.optimum=5.0", "-q"])
    assert again.exit_code == 0 and again.output.strip() == run_dir
    assert nnkit.load(run_dir).meta == run.meta  # training is untouched
    moved = pd.read_parquet(f"{run_dir}/minima.parquet")
    assert json.loads((run.path / "analysis.json").read_text())["settings"]["optimum"] == 5.0
    assert not moved["is_global"].any() and moved["spurious"].all()  # nothing is near 5
    again = cli.invoke(main, ["minima", run_dir, "--set", "analysis.loss_tol=1e-3", "-q"])
    assert again.exit_code == 0
    assert json.loads((run.path / "analysis.json").read_text())["settings"]["loss_tol"] == 1e-3
    assert len(pd.read_parquet(f"{run_dir}/minima.parquet")) <= len(minima)
    bad = cli.invoke(main, ["minima", run_dir, "--set", "train.lr=1"])
    assert bad.exit_code == 2 and "only analysis" in bad.output


def test_zip_sweeps_pair_values_and_check_lengths():
    exp = config.from_dict({"sweep": {"mode": "zip", "data.d": [2, 3], "data.teacher_width": [2, 3]}})
    values = [v for v, _ in config.expand_sweep(exp)]
    assert values == [{"data.d": 2, "data.teacher_width": 2}, {"data.d": 3, "data.teacher_width": 3}]
    assert config.from_dict(exp.to_dict()) == exp
    with pytest.raises(nnkit.ConfigError, match="one length"):
        config.from_dict({"sweep": {"mode": "zip", "data.d": [2, 3], "seed": [1]}})
    with pytest.raises(nnkit.ConfigError, match="sweep.mode"):
        config.from_dict({"sweep": {"mode": "all", "data.d": [2]}})


POPULATION = """
name = "pop"
inits = 12
[data]
kind = "teacher_student"
d = 3
teacher_width = 3
teacher_weights = "orthonormal"
population = true
n = 5
n_test = 50
[model]
hidden = [3]
bias = false
output = "fixed"
[objective]
half = true
[train]
lr = 0.5
max_steps = 4000
grad_tol = 1e-9
[analysis]
enabled = true
optimum = 0.0
"""


def test_population_study_end_to_end(tmp_path):
    from nnkit.report.tables import landing

    path = tmp_path / "pop.toml"
    path.write_text(textwrap.dedent(POPULATION))
    cli = CliRunner()
    done = cli.invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q"])
    assert done.exit_code == 0, done.output
    run = nnkit.load(done.output.strip().splitlines()[-1])
    assert run.meta["backend"] == "numba"  # auto: the population loss's compiled kernels
    minima = pd.read_parquet(run.path / "minima.parquet")
    table = landing(run.runs, minima, run.sweep_keys)
    row = table.iloc[0]
    assert row["global"] + row["spurious"] + row["saddle"] + row["not_converged"] == 12
    assert row["global"] >= 10  # k = 3 has (almost) no spurious minima
    best = minima[minima["is_global"]].iloc[0]
    assert abs(best["loss"]) < 1e-12 and best["kind"] == "strict minimum"
    # the test loss on samples agrees with the exact loss to sampling error
    assert (run.runs["test_loss"] < 1e-10).sum() >= 10


def test_asking_another_backend_for_a_population_run_is_warned_about(tmp_path):
    path = tmp_path / "pop.toml"
    path.write_text(textwrap.dedent(POPULATION).replace("enabled = true", "enabled = false"))
    done = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q",
                                     "--backend", "cupy", "--inits", "2", "--set", "train.max_steps=5"])  # fmt: skip
    assert done.exit_code == 0, done.output
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:") and "backend" in line]
    assert len(warnings) == 1 and "numpy" in warnings[0] and "cupy" in warnings[0]
    assert nnkit.load(done.stdout.strip()).meta["backend"] == "numpy"
    quiet = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q", "--inits", "2",
                                      "--set", "train.max_steps=5"])  # fmt: skip
    assert quiet.exit_code == 0 and "backend" not in quiet.stderr  # auto: nothing was overridden


def test_a_population_run_asked_for_on_cuda_runs_there(tmp_path):
    """The population loss has kernels of its own on the cuda backend (here the CUDA
    simulator): no warning, and the run records cuda."""
    path = tmp_path / "pop.toml"
    path.write_text(textwrap.dedent(POPULATION).replace("enabled = true", "enabled = false"))
    done = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q",
                                     "--backend", "cuda", "--inits", "2", "--set", "train.max_steps=5"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert not [line for line in done.stderr.splitlines() if line.startswith("warning:") and "backend" in line]
    run = nnkit.load(done.stdout.strip())
    assert run.meta["backend"] == "cuda" and list(run.runs["steps"]) == [5, 5]


@pytest.mark.parametrize("change, message", [
    ("data.teacher_activation='tanh'", "ReLU teacher"),
    ("model.activation='tanh'", "ReLU student"),
    ("model.bias=true", "population"),
])  # fmt: skip
def test_population_needs_a_relu_teacher_and_student(tmp_path, change, message):
    path = tmp_path / "pop.toml"
    path.write_text(textwrap.dedent(POPULATION))
    done = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "--set", change])
    assert done.exit_code == 2 and message in done.output
    assert len(done.output.strip().splitlines()) == 1


def test_polishing_far_from_where_training_stopped_is_not_converged():
    land = quartic(make_problem(activation="linear", widths=(1,), d=1, bias=False, output_bias=False)[0])
    start = np.array([[0.6, 1.0], [1.001, 1.0]])  # the first needs a long way to +-1 or 0
    _, per_init, _ = analyse(land, start, AnalysisConfig(), [0, 1])
    assert per_init["polish_move"].iloc[0] > 0.05 and per_init["kind"].iloc[0] == "not converged"
    assert per_init["kind"].iloc[1] == "strict minimum"


def test_swept_analysis_settings_apply_to_their_own_points(tmp_path):
    path = tmp_path / "xm.toml"
    path.write_text(textwrap.dedent(XOR) + '\n[sweep]\n"analysis.optimum" = [0.0, 5.0]\n')
    done = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q"])
    assert done.exit_code == 0, done.output
    minima = pd.read_parquet(f"{done.output.strip().splitlines()[-1]}/minima.parquet")
    assert minima.loc[minima["point"] == 0, "is_global"].any()
    assert not minima.loc[minima["point"] == 1, "is_global"].any()  # nothing is near 5


def test_analysis_in_slices_equals_all_at_once():
    model = make_problem(activation="linear", widths=(1,), d=1, bias=False, output_bias=False)[0]
    land = quartic(model)
    start = 1 + 0.01 * np.random.default_rng(2).normal(size=(9, 2))
    whole = analyse(land, start, AnalysisConfig(), np.arange(9))
    sliced = analyse(land, start, AnalysisConfig(), np.arange(9), slice_rows=2)
    np.testing.assert_array_equal(whole[0], sliced[0])
    pd.testing.assert_frame_equal(whole[1], sliced[1])


def test_descent_goes_downhill_to_a_minimum_never_to_the_saddle_beside_it():
    from nnkit.landscape.descent import descend

    land = quartic()
    start = np.array([[0.02, 0.95, -0.05], [0.6, -0.3, 1.4]])  # next to a saddle; far from everything
    res = descend(land, start, 1e-12, 100)
    assert (res.grad_norm <= 1e-12).all() and (res.steps < 60).all()
    np.testing.assert_allclose(np.abs(res.theta), 1.0, atol=1e-12)  # minima only: every coordinate +-1
    assert (res.loss <= land.value_and_grad(start)[0]).all()
    polished = polish(land, start[:1], 1e-12, 50)  # polishing the first finds the saddle instead
    np.testing.assert_allclose(polished.theta, [[0, 1, 0]], atol=1e-12)


def test_the_analysis_says_why_not_and_descend_certifies_what_training_left_far_away():
    land = quartic(make_problem(activation="linear", widths=(1,), d=1, bias=False, output_bias=False)[0])
    start = np.array([[0.6, 1.0], [1.001, 1.0], [np.nan, 1.0]])
    _, plain, _ = analyse(land, start, AnalysisConfig(polish_steps=2), [0, 1, 2])
    assert list(plain["why_not"]) == ["far", "", "finite"] and (plain["descend_steps"] == 0).all()
    _, moved, _ = analyse(land, start, AnalysisConfig(), [0, 1, 2])
    assert moved["why_not"].iloc[0] == "moved"
    seconds, seen = {}, []
    _, far, _ = analyse(land, start, AnalysisConfig(descend=True), [0, 1, 2], slice_rows=2,
                        on_rows=seen.append, seconds=seconds)  # fmt: skip
    assert list(far["kind"][:2]) == ["strict minimum"] * 2 and far["why_not"].iloc[0] == ""
    assert far["descend_move"].iloc[0] > 0.05 and far["polish_move"].iloc[0] < 1e-6
    assert sum(seen) == 3 and {"descend", "polish", "spectrum", "group", "test_loss"} <= set(seconds)


def test_a_run_certified_after_descent_says_so_and_times_its_stages(tmp_path):
    """Training stopped far too early: the plain analysis says why nothing is
    certified and what to change; with analysis.descend = true the minima are found."""
    path = tmp_path / "early.toml"
    path.write_text(textwrap.dedent(XOR).replace("max_steps = ", "max_steps = 30  # ") + "\n")
    done = CliRunner().invoke(main, ["run", str(path), "--results", str(tmp_path / "r"), "-q"])
    assert done.exit_code == 0, done.output
    run_dir = done.output.strip().splitlines()[-1]
    shown = " ".join(CliRunner().invoke(main, ["show", run_dir]).output.split())
    assert "the analysis certified" in shown and "analysis.descend = true" in shown
    again = CliRunner().invoke(main, ["minima", run_dir, "--set", "analysis.descend=true"])
    assert again.exit_code == 0, again.output
    run = nnkit.load(run_dir)
    assert (run.runs["kind"] != "not converged").mean() > 0.5 and (run.runs["descend_steps"] > 0).all()
    stages = json.loads((run.path / "analysis.json").read_text())["stages_seconds"]
    assert len(stages) == run.points and {"descend", "polish", "spectrum"} <= set(stages[0])


def test_a_hessian_that_is_not_finite_or_does_not_converge_certifies_nothing_and_stops_nothing(monkeypatch):
    from nnkit.landscape import eigensteps

    class Broken(Quartic):
        def hessian(self, t):
            H = super().hessian(t)
            H[np.abs(t[:, 0] - 0.5) < 1e-9] = np.nan  # the first row's Hessian is not finite
            return H

    land = Broken(make_problem(activation="linear", widths=(1,), d=1, bias=False, output_bias=False)[0])
    start = np.array([[0.5, 1.0], [1.001, 1.0]])
    _, per_init, _ = analyse(land, start, AnalysisConfig(), [0, 1])
    assert list(per_init["kind"]) == ["not converged", "strict minimum"]
    assert list(per_init["why_not"]) == ["finite", ""]
    real = np.linalg.eigh

    def fussy(H):  # LAPACK failing on one matrix of a batch
        if (np.asarray(H)[..., 0, 0] == 42.0).any():
            raise np.linalg.LinAlgError("Eigenvalues did not converge")
        return real(H)

    monkeypatch.setattr(np.linalg, "eigh", fussy)
    H = np.stack([np.eye(2), np.diag([42.0, 1.0]), 2 * np.eye(2)])
    e, Q = eigensteps.eigh(H)
    assert np.isnan(e[1]).all() and np.isnan(Q[1]).all()
    np.testing.assert_array_equal(e[[0, 2]], [[1, 1], [2, 2]])


def test_a_descent_that_lowers_the_loss_without_a_critical_point_points_to_l2():
    """Every init still far after its descent budget, its loss lowered on the way: the
    paragraph says what to raise and that the minimum may lie at infinity."""
    from nnkit.report.tables import analysis_diagnosis

    runs = pd.DataFrame({"point": 0, "kind": "not converged", "why_not": "far", "loss": [0.02, 0.03, 0.01],
                         "polished_loss": [0.002, 0.003, 0.001], "grad_norm": 0.3,
                         "polished_grad_norm": 1e-5, "descend_steps": 200, "polish_move": 0.0})  # fmt: skip
    cfg = {"grad_tol": 1e-10, "polish_radius": 0.05, "descend": True, "descend_steps": 200}
    (text,) = analysis_diagnosis(runs, [cfg], [])
    assert "certified 0 of 3" in text and "analysis.descend_steps = 200" in text
    assert "objective.l2" in text and "median 0.02 where training ended, 0.002 after it" in text
    level = runs.assign(polished_loss=runs["loss"])
    assert "objective.l2" not in analysis_diagnosis(level, [cfg], [])[0]
