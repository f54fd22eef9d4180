"""Steps that cannot silently blow up: ``lr = "auto"`` from the curvature at the start
point, and restarts of failed inits with half the step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import assert_user_error, invoke, make_problem, objective_of

import nnkit
from nnkit import backends
from nnkit.study import config
from nnkit.training import TrainConfig, safeguards, train


def _objective(backend="numpy", **kw):
    model, spec, theta, X, y = make_problem(**kw)
    return objective_of(model, spec, X, y, backends.get(backend)), theta


def test_the_curvature_is_the_largest_hessian_eigenvalue():
    objective, theta = _objective(activation="tanh", widths=(4,), d=3, n=15, R=6)
    exact = np.abs(np.linalg.eigvalsh(objective.hessian(theta))).max(axis=1)
    close = safeguards.curvature(objective, theta, np.arange(6), steps=300)
    np.testing.assert_allclose(close, exact, rtol=1e-4)
    rough = safeguards.curvature(objective, theta, np.arange(6))  # the default: a bound within a factor 2
    assert np.all(rough <= exact * (1 + 1e-6)) and np.all(rough >= 0.5 * exact)


def test_start_vectors_follow_the_init_not_the_chunk():
    ids = np.arange(10, 20)
    np.testing.assert_array_equal(safeguards.start_vectors(ids[3:7], 9), safeguards.start_vectors(ids, 9)[3:7])
    np.testing.assert_allclose(np.linalg.norm(safeguards.start_vectors(ids, 9), axis=1), 1.0)


def test_auto_steps_are_powers_of_two_below_the_inverse_curvature():
    objective, theta = _objective(activation="tanh", widths=(4,), d=3, n=15, R=8)
    lam = safeguards.curvature(objective, theta, np.arange(8))
    lr = safeguards.auto_steps(objective, theta, np.arange(8))
    assert np.all(np.log2(lr) == np.round(np.log2(lr)))
    assert np.all(lr <= np.minimum(1 / lam, safeguards.AUTO_LR_MAX)) and np.all(lr > 0.5 / lam)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_diverging_init_restarts_with_half_the_step(backend):
    objective, theta = _objective(backend, activation="tanh", widths=(3,), d=2, n=20, R=5, output_trained=True)
    lam = safeguards.curvature(objective, theta, np.arange(5))
    lr0 = 16 * 2.0 ** np.ceil(np.log2(2 / lam.min()))  # diverges at once for every init
    cfg = TrainConfig(lr=lr0, max_steps=300, grad_tol=0.0, restarts=12)
    res = train(objective, theta, cfg)
    assert set(res.status) == {"max_steps"}
    assert np.all(res.restarts >= 4) and np.all(res.lr == lr0 / 2.0**res.restarts)
    for r in range(5):  # each init ends as training from its start with its last step
        alone = train(objective, theta[r : r + 1], dataclasses.replace(cfg, lr=float(res.lr[r]), restarts=0))
        np.testing.assert_array_equal(alone.theta[0], res.theta[r])
        assert alone.status[0] == res.status[r] and alone.steps[0] == res.steps[r]
    plain = train(objective, theta, dataclasses.replace(cfg, restarts=0))
    assert set(plain.status) == {"diverged"} and np.all(plain.restarts == 0)


def test_restarts_on_max_steps_and_the_progress_and_history():
    objective, theta = _objective(activation="tanh", widths=(3,), d=2, n=20, R=6)
    finished = []
    cfg = TrainConfig(lr=4.0, max_steps=200, grad_tol=1e-6, restarts=6, restart_on=("diverged", "max_steps"),
                      history=10)  # fmt: skip
    res = train(objective, theta, cfg, on_finish=finished.append)
    assert sum(finished) == 6  # a restarted init counts once it is done for good
    assert np.all((res.status == "converged") | (res.restarts == 6))
    h = res.history
    for i in range(6):  # the history holds the last attempt of each init only
        steps = h["step"][h["init"] == i]
        assert steps[0] == 0 and np.all(np.diff(steps) > 0) and steps[-1] == res.steps[i]


def test_lr_auto_trains_and_is_recorded(tmp_path):
    exp = tmp_path / "auto.toml"
    exp.write_text(
        'name = "auto"\ninits = 12\n[data]\nkind = "teacher_student"\nd = 2\nn = 30\nteacher_width = 2\n'
        '[model]\nhidden = [3]\n[train]\nlr = "auto"\nmax_steps = 4000\ngrad_tol = 1e-7\nrestarts = 2\n'
        '[run]\nbackend = "numpy"\nchunk_size = 5\n'
    )
    path = nnkit.run_experiment(config.load(exp), results_dir=tmp_path / "res", progress=False)
    runs = nnkit.load(path).runs
    assert np.all(np.log2(runs["lr"]) == np.round(np.log2(runs["lr"]))) and (runs["lr"] <= 1).all()
    assert (runs["status"] == "converged").mean() >= 0.5 and (runs["restarts"] >= 0).all()
    again = nnkit.run_experiment(config.load(exp, ["run.chunk_size=12"]), results_dir=tmp_path / "res", progress=False)
    np.testing.assert_array_equal(nnkit.load(again).runs["lr"], runs["lr"])  # whatever the chunks


def test_safeguard_settings_are_checked(tmp_path):
    exp = tmp_path / "x.toml"
    exp.write_text('name = "x"\ninits = 2\n[data]\nkind = "xor"\n')
    for item, fragment in [("train.lr=fast", "train.lr"), ("train.restarts=-1", "train.restarts"),
                           ("train.restarts=31", "train.restarts"), ("train.restart_on=['oops']", "train.restart_on")]:  # fmt: skip
        assert_user_error(invoke("run", exp, "--results", tmp_path, "--set", item), fragment)
