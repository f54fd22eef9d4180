"""Minima modulo the problem's symmetries: the permutations of an orthonormal
teacher's units (with the matching orthogonal map of the inputs)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from conftest import assert_user_error, invoke
from scipy.stats import ortho_group

import nnkit
from nnkit import study
from nnkit.landscape import problem_symmetry as ps
from nnkit.study import config

EXPERIMENT = """
name = "ps"
inits = 60
[data]
kind = "teacher_student"
d = {d}
teacher_width = {k}
teacher_weights = "orthonormal"
teacher_output = "ones"
population = true
n = 5
n_test = 20
[model]
hidden = [{h}]
activation = "relu"
bias = false
output = "{output}"
[objective]
half = true
[train]
lr = 0.1
max_steps = 20000
grad_tol = 1e-9
[analysis]
enabled = true
optimum = 0.0
problem_symmetry = "teacher_permutations"
[run]
backend = "numpy"
"""


def problem_of(tmp_path, d=6, k=5, h=5, output="fixed"):
    path = tmp_path / "ps.toml"
    path.write_text(textwrap.dedent(EXPERIMENT.format(d=d, k=k, h=h, output=output)))
    exp = config.load(path)
    return path, study.problems(config.expand_sweep(exp))[0]


def group_element(V, rng):
    """An orthogonal map that permutes the teacher's units and rotates the rest."""
    d, k = V.shape
    basis = np.linalg.qr(np.concatenate([V, rng.normal(size=(d, d - k))], axis=1))[0]
    basis[:, :k] = V  # the teacher's units, then an orthonormal complement
    inner = np.zeros((d, d))
    inner[:k, :k] = np.eye(k)[rng.permutation(k)]
    inner[k:, k:] = ortho_group.rvs(d - k, random_state=rng) if d - k > 1 else 1.0
    return basis @ inner @ basis.T


@pytest.mark.parametrize("output", ["fixed", "trained"])
def test_the_invariants_do_not_change_under_the_group_and_do_elsewhere(tmp_path, output):
    _, problem = problem_of(tmp_path, output=output)
    lay, V = problem.model.layout, problem.teacher.V
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(4, lay.size))
    keys = ps.invariants(problem, theta)
    for _ in range(3):
        O = group_element(V, rng)
        moved = theta.copy()
        W = lay.weights(moved, 1)  # (R, d, k): columns are units
        W[...] = O @ W
        perm = rng.permutation(lay.widths[0])  # and the network's own symmetry
        W[...] = W[:, :, perm]
        if lay.output_trained:
            lay.view(moved, "W_out")[...] = lay.view(moved, "W_out")[:, perm]
        np.testing.assert_allclose(ps.invariants(problem, moved), keys, atol=1e-10)
    objective = nnkit.objective.make_objective(problem, nnkit.backends.get("numpy"))
    np.testing.assert_allclose(objective.value(moved), objective.value(theta), rtol=1e-10)  # a symmetry indeed
    other = theta + 1e-3 * rng.normal(size=theta.shape)
    assert np.all(np.linalg.norm(ps.invariants(problem, other) - keys, axis=1) > 1e-5)


def test_where_the_group_does_not_apply(tmp_path):
    _, problem = problem_of(tmp_path)
    assert ps.why_not(problem, "teacher_permutations") is None
    import dataclasses

    skewed = dataclasses.replace(problem, teacher=dataclasses.replace(problem.teacher, b=np.arange(5.0)))
    assert "output weights" in ps.why_not(skewed, "teacher_permutations")
    sampled = dataclasses.replace(problem, teacher=None)
    assert "population" in ps.why_not(sampled, "teacher_permutations")
    path, _ = problem_of(tmp_path)
    result = invoke("run", path, "--results", tmp_path / "r", "-q", "--set", "data.population=false")
    assert_user_error(result, "analysis.problem_symmetry", "population")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("runs.parquet"))  # said before training


def test_a_study_counts_minima_modulo_both(tmp_path):
    path, _ = problem_of(tmp_path, d=7, k=7, h=7)
    done = invoke("run", path, "--results", tmp_path / "r", "-q")
    assert done.exit_code == 0, done.output
    run = nnkit.load(done.stdout.strip().splitlines()[-1])
    minima = run.minima
    assert "orbit" in minima and (minima["orbit"] >= 0).all()
    landing = run.landing().iloc[0]
    assert landing["spurious_orbits"] <= landing["spurious_minima"]
    # one orbit never mixes loss levels, and every minimum of a level lies in few orbits
    for _, orbit in minima.groupby("orbit"):
        assert orbit["level"].nunique() == 1
    assert minima["orbit"].nunique() <= minima["minimum"].nunique()
