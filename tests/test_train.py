"""Training: update rules, per-init stopping, divergence isolation, reproducibility."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_problem, objective_of

from nnkit import backends, init_batch, load, run_experiment
from nnkit.core.init import InitSpec, init_one
from nnkit.core.layout import Layout
from nnkit.study import config
from nnkit.training import TrainConfig, history_steps, train

NUMPY = backends.get("numpy")


def run(problem, cfg, theta=None, **kw):
    model, obj, theta0, X, y = problem
    return train(objective_of(model, obj, X, y), theta0 if theta is None else theta, cfg, **kw)


def manual(problem, method, lr, mu, steps):
    """The update rules written out for one network at a time."""
    model, obj, theta, X, y = problem
    kernel = NUMPY.kernel(model, obj)
    w, b = theta.copy(), np.zeros_like(theta)
    for _ in range(steps):
        g = kernel.value_and_grad(w, X, y)[1]
        if method == "gd":
            w = w - lr * g
        elif method == "momentum":
            b = mu * b + g
            w = w - lr * b
        else:
            b = mu * b + g
            w = w - lr * (g + mu * b)
    return w


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
def test_update_rules(method):
    problem = make_problem(widths=(4, 3), R=5, seed=11)
    cfg = TrainConfig(method=method, lr=0.05, momentum=0.8, max_steps=7, grad_tol=0.0)
    res = run(problem, cfg)
    np.testing.assert_allclose(res.theta, manual(problem, method, 0.05, 0.8, 7), rtol=1e-13)
    assert (res.status == "max_steps").all() and (res.steps == 7).all()
    kernel = NUMPY.kernel(problem[0], problem[1])
    loss, grad = kernel.value_and_grad(res.theta, problem[3], problem[4])
    np.testing.assert_allclose(res.loss, loss, rtol=1e-13)
    np.testing.assert_allclose(res.grad_norm, np.linalg.norm(grad, axis=1), rtol=1e-13)


def test_convex_problem_converges_and_each_init_stops_on_its_own():
    """A linear unit with squared loss is convex: every init reaches the tolerance,
    and the final parameters equal those of training that init alone."""
    problem = make_problem(activation="linear", widths=(1,), R=6, bias=False, output_bias=False, seed=12)
    cfg = TrainConfig(lr=0.05, max_steps=20000, grad_tol=1e-9)
    res = run(problem, cfg)
    assert (res.status == "converged").all()
    assert (res.grad_norm <= 1e-9).all()
    assert len(set(res.steps.tolist())) > 1  # they stop at different steps
    model, obj, theta, X, y = problem
    for r in (0, 3):
        alone = run((model, obj, theta[r : r + 1], X, y), cfg)
        np.testing.assert_array_equal(alone.theta[0], res.theta[r])
        assert alone.steps[0] == res.steps[r]


def test_loss_target_stops():
    problem = make_problem(seed=13, R=3)
    res = run(problem, TrainConfig(lr=0.05, max_steps=5000, grad_tol=0.0, loss_target=0.5))
    assert set(res.status) == {"target"}
    assert (res.loss <= 0.5).all()


def test_divergence_is_isolated():
    model, obj, theta, X, y = make_problem(widths=(4,), R=4, seed=14)
    theta = theta.copy()
    theta[1] *= 1e6  # loss far above max_loss
    theta[2, 0] = np.nan
    cfg = TrainConfig(lr=0.05, max_steps=50, grad_tol=0.0, max_loss=1e6)
    res = run((model, obj, theta, X, y), cfg)
    assert list(res.status) == ["max_steps", "diverged", "diverged", "max_steps"]
    assert (res.steps[[1, 2]] == 0).all()
    clean = run((model, obj, theta[[0, 3]], X, y), cfg)
    np.testing.assert_array_equal(res.theta[[0, 3]], clean.theta)
    assert np.isfinite(res.theta[[0, 3]]).all()


def test_large_step_diverges_alone():
    problem = make_problem(activation="linear", widths=(2,), R=3, seed=15)
    model, obj, theta, X, y = problem
    cfg = TrainConfig(lr=50.0, max_steps=200, grad_tol=0.0, max_loss=1e30)
    res = run(problem, cfg)
    assert (res.status == "diverged").all()
    assert (res.steps > 0).all()


def test_history_is_log_spaced_and_complete():
    problem = make_problem(R=3, seed=16)
    res = run(problem, TrainConfig(lr=0.01, max_steps=100, grad_tol=0.0, history=8))
    steps = history_steps(100, 8)
    assert steps[0] == 0 and steps[-1] == 100 and np.all(np.diff(steps) > 0)
    assert sorted(set(res.history["step"].tolist())) == steps.tolist()
    last = res.history["step"] == 100
    np.testing.assert_allclose(res.history["loss"][last], res.loss)


def test_sgd_each_init_has_its_own_stream():
    model, obj, theta, X, y = make_problem(n=20, R=4, seed=17)
    cfg = TrainConfig(method="sgd", lr=0.05, batch_size=6, max_steps=30, grad_tol=0.0)
    ids = np.array([10, 11, 12, 13])
    res = run((model, obj, theta, X, y), cfg, seed=3, ids=ids)
    alone = run((model, obj, theta[2:3], X, y), cfg, seed=3, ids=ids[2:3])
    np.testing.assert_array_equal(alone.theta[0], res.theta[2])
    # the same start under two different streams ends elsewhere
    same = np.repeat(theta[:1], 2, axis=0)
    two = run((model, obj, same, X, y), cfg, seed=3, ids=np.array([0, 1]))
    assert not np.allclose(two.theta[0], two.theta[1])
    # the loss went down on the full data
    kernel = NUMPY.kernel(model, obj)
    assert (res.loss < kernel.value(theta, X, y)).all()


def test_float32_follows_float64():
    problem = make_problem(R=3, seed=18)
    r64 = run(problem, TrainConfig(lr=0.05, max_steps=50, grad_tol=0.0))
    r32 = run(problem, TrainConfig(lr=0.05, max_steps=50, grad_tol=0.0, dtype="float32"))
    assert r32.theta.dtype == np.float64
    np.testing.assert_allclose(r32.theta, r64.theta, rtol=1e-4, atol=1e-5)
    assert not np.array_equal(r32.theta, r64.theta)


def test_init_streams_do_not_depend_on_the_batch():
    layout = Layout(3, (4, 2), (True, False))
    spec = InitSpec(scale="glorot", bias="same", distribution="uniform")
    full = init_batch(layout, spec, 7, np.arange(10))
    np.testing.assert_array_equal(init_batch(layout, spec, 7, [8, 2]), full[[8, 2]])
    np.testing.assert_array_equal(init_one(layout, spec, 7, 5), full[5])
    assert not np.array_equal(init_batch(layout, spec, 8, [5])[0], full[5])


@pytest.mark.parametrize("scale,expected", [("lecun", 1 / 50**0.5), ("he", (2 / 50) ** 0.5),
                                            ("glorot", (2 / 150) ** 0.5), ("fixed", 0.3)])
def test_init_scales(scale, expected):
    layout = Layout(50, (100,), (False,), output_trained=False)
    spec = InitSpec(scale=scale, std=0.3)
    theta = init_batch(layout, spec, 0, range(20))
    assert abs(theta.std() / expected - 1) < 0.02
    uni = init_batch(layout, dataclasses.replace(spec, distribution="uniform"), 0, range(20))
    assert abs(uni.std() / expected - 1) < 0.02
    assert np.abs(uni).max() <= expected * 3**0.5


TINY = """
name = "tiny"
seed = 5
inits = 13
[data]
kind = "teacher_student"
d = 3
n = 20
n_test = 10
teacher_width = 2
[model]
hidden = [3]
activation = "tanh"
[train]
method = "{method}"
lr = 0.05
batch_size = 7
max_steps = 40
history = 5
"""


@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_same_seed_same_results_whatever_the_chunking(tmp_path, method):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(method=method))
    runs = []
    for chunk in (0, 4, 13):
        exp = config.load(path, [f"run.chunk_size={chunk}"])
        out = run_experiment(exp, results_dir=tmp_path / f"c{chunk}", progress=False)
        runs.append(load(out))
    base = runs[0].runs.drop(columns=["chunk", "chunk_time_s"])
    assert runs[1].runs["chunk"].nunique() == 4
    for other in runs[1:]:
        np.testing.assert_array_equal(other.params(), runs[0].params())
        other_runs = other.runs.drop(columns=["chunk", "chunk_time_s"])
        assert other_runs.equals(base)
        assert other.history.sort_values(["init", "step"]).reset_index(drop=True).equals(
            runs[0].history.sort_values(["init", "step"]).reset_index(drop=True)
        )


def test_history_does_not_change_sgd():
    model, obj, theta, X, y = make_problem(n=20, R=5, seed=19)
    base = TrainConfig(method="sgd", lr=0.05, batch_size=6, max_steps=300, grad_tol=0.05)
    plain = run((model, obj, theta, X, y), base, seed=1)
    logged = run((model, obj, theta, X, y), dataclasses.replace(base, history=50), seed=1)
    np.testing.assert_array_equal(plain.steps, logged.steps)
    np.testing.assert_array_equal(plain.theta, logged.theta)
    assert (plain.steps % 3 == 0).all()  # stops only at epoch ends (20 // 6 = 3 steps)


def test_zero_grad_tol_switches_the_rule_off():
    """A dead ReLU network has an exactly zero gradient: with grad_tol = 0 it runs on."""
    model, obj, theta, X, y = make_problem(
        activation="relu", bias=False, output_bias=False, R=2, seed=20
    )
    theta = np.abs(theta)
    layer1 = model.layout.weights(theta, 1)
    layer1 *= -1  # with positive inputs every pre-activation is negative: all units dead
    X = np.abs(X)
    res = run((model, obj, theta, X, y), TrainConfig(lr=0.1, max_steps=5, grad_tol=0.0))
    assert (res.grad_norm == 0).all() and (res.status == "max_steps").all()
    res = run((model, obj, theta, X, y), TrainConfig(lr=0.1, max_steps=5, grad_tol=1e-12))
    assert (res.status == "converged").all()


def test_history_points_are_capped_by_the_steps():
    assert history_steps(5, 10**20).tolist() == [0, 1, 2, 3, 4, 5]


def test_stop_codes_are_the_kernels_and_a_running_code_is_refused():
    from nnkit.core.stops import STATUSES, Stop, labels

    assert STATUSES == ("converged", "target", "max_steps", "diverged")
    assert [int(s) for s in Stop] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(labels([4, 1, 3]), ["diverged", "converged", "max_steps"])
    with pytest.raises(ValueError, match="stop codes"):
        labels([1, 0])  # an init a fused kernel left running
