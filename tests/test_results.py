"""Reading runs back with ``nnkit.load``: runs, params, history and sweeps."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

import nnkit
from nnkit import backends, run_experiment
from nnkit.core.losses import prepare_targets
from nnkit.core.seeding import data_rng
from nnkit.data import make_dataset
from nnkit.errors import UserError
from nnkit.runs.executor import RUN_COLUMNS
from nnkit.study import config
from nnkit.training import STATUSES

EXPERIMENT = """
name = "tiny"
seed = 4
inits = 6

[data]
kind = "teacher_student"
d = 2
n = 24
n_test = 12
teacher_width = 2

[model]
hidden = [3]
activation = "tanh"

[train]
lr = 0.1
max_steps = 60
history = 6

[run]
backend = "numpy"
chunk_size = 4
"""


def make_run(root, *overrides, text=EXPERIMENT, run_id="r"):
    root.mkdir(parents=True, exist_ok=True)
    path = root / "exp.toml"
    path.write_text(textwrap.dedent(text))
    exp = config.load(path, list(overrides))
    run_dir = run_experiment(exp, results_dir=root / "results", run_id=run_id, progress=False)
    return exp, run_dir


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("swept"), "sweep.train.lr=[0.05, 0.2]", "train.history=0")


def recompute(exp, theta):
    """The objective and test loss of ``theta`` for ``exp``, from scratch."""
    ds = make_dataset(exp.data_kind, exp.data, data_rng(exp.seed))
    model, objective = exp.build_model(ds.d), exp.objective
    kernel = backends.get("numpy").kernel(model, objective)
    y, y_test = prepare_targets(objective, ds.y), prepare_targets(objective, ds.y_test)
    return kernel.value(theta, ds.X, y), kernel.value(theta, ds.X_test, y_test), model


def test_run_folder_layout(plain):
    _, run_dir = plain
    assert run_dir.name == "r" and run_dir.parent.name == "tiny"
    for name in ("config.json", "meta.json", "runs.parquet", "history.parquet", "params/point-000.npy"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "chunks").exists()


def test_runs_frame_one_row_per_init(plain):
    exp, run_dir = plain
    run = nnkit.load(run_dir)
    assert isinstance(run, nnkit.Run)
    runs = run.runs
    assert list(runs.columns) == list(RUN_COLUMNS)
    assert len(runs) == 6
    assert runs["point"].tolist() == [0] * 6
    assert runs["init"].tolist() == list(range(6))
    assert (runs["seed"] == 4).all()
    assert set(runs["status"]) <= set(STATUSES)
    assert (runs["steps"] >= 0).all() and (runs["steps"] <= 60).all()
    assert (runs.loc[runs["status"] == "max_steps", "steps"] == 60).all()
    assert runs["chunk"].tolist() == [0, 0, 0, 0, 1, 1]  # chunk_size = 4
    assert (runs["chunk_time_s"] >= 0).all()
    for col in ("loss", "grad_norm", "train_loss", "test_loss"):
        assert np.isfinite(runs[col]).all(), col
    # squared loss: no error rate
    assert runs["train_error"].isna().all() and runs["test_error"].isna().all()


def test_params_match_model_and_losses(plain):
    exp, run_dir = plain
    run = nnkit.load(run_dir)
    theta = run.params()
    loss, test_loss, model = recompute(exp, theta)
    # d=2 -> 3 tanh units with bias -> trained output weights, no output bias
    assert model.layout.size == 2 * 3 + 3 + 3
    assert theta.shape == (6, model.layout.size)
    assert theta.dtype == np.float64
    np.testing.assert_array_equal(run.params(0), theta)
    np.testing.assert_allclose(run.runs["loss"], loss, rtol=1e-10)
    # no penalty: the data loss on the train set is the objective
    np.testing.assert_allclose(run.runs["train_loss"], loss, rtol=1e-10)
    np.testing.assert_allclose(run.runs["test_loss"], test_loss, rtol=1e-10)
    # training did something: every init is below its starting loss
    theta0 = nnkit.init_batch(model.layout, exp.init, exp.seed, np.arange(6))
    start, _, _ = recompute(exp, theta0)
    assert (loss < start).all()


def test_config_and_meta(plain):
    exp, run_dir = plain
    run = nnkit.load(run_dir)
    assert run.config == exp.to_dict()
    assert run.experiment == exp
    meta = run.meta
    assert meta["experiment"] == "tiny"
    assert meta["inits"] == 6 and meta["points"] == 1
    assert meta["backend"] == "numpy" and meta["dtype"] == "float64"
    assert meta["finished"]
    assert meta["versions"]["nnkit"] == nnkit.__version__


def test_a_run_shows_its_tables_in_a_notebook(plain):
    run = nnkit.load(plain[1])
    page = run._repr_html_()
    assert run.headline() in page and page.count("<table") == 1  # training only: not analysed
    assert "converged" in page and str(run.path) in page
    with pytest.raises(UserError, match="analyse it first"):
        run.params(0, polished=True)


def test_history_present(plain):
    _, run_dir = plain
    hist = nnkit.load(run_dir).history
    assert isinstance(hist, pd.DataFrame)
    assert {"point", "init", "step", "loss", "grad_norm"} <= set(hist.columns)
    assert set(hist["init"]) == set(range(6))
    assert (hist["point"] == 0).all()
    assert hist["step"].min() == 0 and hist["step"].max() <= 60
    runs = nnkit.load(run_dir).runs.set_index("init")
    for init, group in hist.groupby("init"):
        steps = group["step"].to_numpy()
        assert (np.diff(steps) > 0).all()
        assert steps[-1] <= runs.loc[init, "steps"]
        if steps[-1] == runs.loc[init, "steps"]:
            assert group["loss"].iloc[-1] == pytest.approx(runs.loc[init, "loss"], rel=1e-12)
        # gradient descent with a small step lowers the loss from the first record
        assert group["loss"].iloc[-1] < group["loss"].iloc[0]


def test_no_history_without_train_history(swept):
    _, run_dir = swept
    assert not (run_dir / "history.parquet").exists()
    assert nnkit.load(run_dir).history is None


def test_sweep_points_and_columns(swept):
    exp, run_dir = swept
    run = nnkit.load(run_dir)
    runs = run.runs
    assert list(runs.columns) == ["point", "train.lr", *RUN_COLUMNS[1:]]
    assert len(runs) == 2 * 6
    assert runs.groupby("point")["init"].apply(list).to_dict() == {0: list(range(6)), 1: list(range(6))}
    assert runs.groupby("point")["train.lr"].unique().apply(list).to_dict() == {0: [0.05], 1: [0.2]}
    assert run.meta["points"] == 2
    points = config.expand_sweep(exp)
    for p, (_, point) in enumerate(points):
        theta = run.params(p)
        loss, _, model = recompute(point, theta)
        assert theta.shape == (6, model.layout.size)
        np.testing.assert_allclose(runs.loc[runs["point"] == p, "loss"], loss, rtol=1e-10)
    assert not np.array_equal(run.params(0), run.params(1))
    with pytest.raises(UserError, match="point 2"):
        run.params(2)


def test_summary_per_point(swept):
    _, run_dir = swept
    run = nnkit.load(run_dir)
    tables = run.summary()
    assert list(tables) == ["training"]  # no analysis: no landing or minima tables
    assert run.minima is None and run.landing() is None and run.top_minima() is None
    summary = tables["training"]
    pd.testing.assert_frame_equal(summary, run.training())
    assert summary["point"].tolist() == [0, 1]
    assert summary["train.lr"].tolist() == [0.05, 0.2]
    assert summary["inits"].tolist() == [6, 6]
    counts = summary[["converged", "target", "max_steps", "diverged"]].sum(axis=1)
    assert counts.tolist() == [6, 6]


def test_sweep_over_widths_gives_per_point_sizes(tmp_path):
    exp, run_dir = make_run(
        tmp_path, "sweep.model.hidden=[[2], [3, 2]]", "inits=3", "train.max_steps=10", "train.history=0"
    )
    run = nnkit.load(run_dir)
    assert run.params(0).shape == (3, 2 * 2 + 2 + 2)
    assert run.params(1).shape == (3, (2 * 3 + 3) + (3 * 2 + 2) + 2)
    assert sorted(set(run.runs["model.hidden"])) == ["[2]", "[3, 2]"]


def test_loading_an_unfinished_run_is_user_error(tmp_path, monkeypatch):
    import nnkit.training.chunk

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nnkit.training.chunk, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_run(tmp_path)
    run_dir = tmp_path / "results" / "tiny" / "r"
    assert (run_dir / "meta.json").is_file()
    assert not (run_dir / "runs.parquet").exists()
    with pytest.raises(UserError, match="not finished"):
        nnkit.load(run_dir)


def test_loading_folder_with_only_meta_is_user_error(tmp_path):
    (tmp_path / "meta.json").write_text('{"experiment": "x", "finished": null}\n')
    with pytest.raises(UserError):
        nnkit.load(tmp_path)


def test_loading_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="not an nnkit run folder"):
        nnkit.load(tmp_path)
    with pytest.raises(UserError, match="not an nnkit run folder"):
        nnkit.load(tmp_path / "missing")


def test_logistic_run_has_error_rates(tmp_path):
    text = EXPERIMENT.replace('kind = "teacher_student"', 'kind = "blobs"').replace(
        "teacher_width = 2", "separation = 4.0"
    )
    exp, run_dir = make_run(tmp_path, "objective.loss=logistic", "train.history=0", "inits=3", text=text)
    runs = nnkit.load(run_dir).runs
    for col in ("train_error", "test_error"):
        assert runs[col].between(0, 1).all()
    # well separated blobs: after training most samples are on the right side
    assert (runs["train_error"] < 0.25).all()
