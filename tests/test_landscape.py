"""The landscape survey of a run (``[landscape]``, ``nnkit landscape RUN``): its tables
against direct evaluation, the PATHSAMPLE files against the transition states, the
trajectories against the run, and the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnkit
from conftest import assert_user_error, invoke
from nnkit.landscape import barriers, pathsample
from nnkit.study import config

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(scope="module")
def surveyed(tmp_path_factory):
    """The shipped XOR landscape study, smaller: trained, analysed and surveyed by
    ``nnkit run``."""
    results = tmp_path_factory.mktemp("landscape")
    done = invoke("run", EXPERIMENTS / "xor_landscape.toml", "--inits", 60, "--results", results, "-q",
                  "--set", "landscape.max_pairs=12", "--set", "landscape.trajectory_inits=2")  # fmt: skip
    assert done.exit_code == 0, done.output
    return Path(done.output.strip().splitlines()[-1])


@pytest.fixture
def run_copy(surveyed, tmp_path):
    """A copy of the surveyed run to change."""
    target = tmp_path / "results" / "xor_landscape" / surveyed.name
    shutil.copytree(surveyed, target)
    return target


def _objective(run):
    exp = run.experiment
    return nnkit.make_objective(nnkit.study.problem(exp), nnkit.backends.get("numpy"))


def test_the_run_writes_every_table_and_figure(surveyed):
    """``landscape.enabled`` surveys after the analysis: every tool's table, the
    PATHSAMPLE files, the figures and landscape.json, read back by nnkit.load."""
    run = nnkit.load(surveyed)
    assert run.has_landscape
    assert set(run.landscape) == {"barriers", "transition_states", "paths", "minima", "slices", "trajectories",
                                  "density"}  # fmt: skip
    for name in ("barriers", "disconnectivity", "slice", "trajectory", "density"):
        assert (surveyed / "figures" / f"landscape-{name}.png").is_file(), name
    assert (surveyed / "landscape" / "min.data").is_file() and (surveyed / "landscape" / "ts.data").is_file()
    summary = json.loads((surveyed / "landscape" / "landscape.json").read_text())
    assert set(summary["points"][0]["seconds"]) == set(nnkit.landscape.survey.TOOLS)
    assert run.barriers is run.landscape["barriers"] and len(run.barriers) <= 12
    table = run.landscape_summary()
    assert {"pairs", "barrier_median", "bands", "transition_states", "joining"} <= set(table.columns)


def test_barriers_are_the_loss_on_the_aligned_straight_line(surveyed):
    """Each profile is the objective at the convex combinations of the first minimum
    and the second aligned onto it, and the heights follow from it."""
    run = nnkit.load(surveyed)
    objective = _objective(run)
    table = run.barriers
    minima = run.landscape["minima"]
    theta = np.array(minima["theta"].tolist())
    row = {m: r for r, m in enumerate(minima["minimum"])}
    for _, pair in table.head(3).iterrows():
        a, b = theta[row[pair["minimum_a"]]], theta[row[pair["minimum_b"]]]
        b = nnkit.landscape.symmetry.align(objective.model, a, b[None])[0]
        t = np.linspace(0, 1, len(pair["profile"]))
        direct = objective.value((1 - t)[:, None] * a + t[:, None] * b)
        np.testing.assert_allclose(pair["profile"], direct, rtol=1e-12, atol=1e-15)
        assert pair["barrier"] == pytest.approx(direct.max() - max(direct[0], direct[-1]), abs=1e-15)
        assert pair["distance"] == pytest.approx(np.linalg.norm(b - a), rel=1e-12)


def test_transition_states_are_certified_and_paths_never_above_the_lines(surveyed):
    """Every transition state has gradient norm <= 1e-10 and exactly one negative
    eigenvalue of the exact Hessian (checked again here); a relaxed band's highest
    point is never above the straight line's between the same minima."""
    run = nnkit.load(surveyed)
    objective = _objective(run)
    ts = run.transition_states
    assert len(ts) >= 1
    theta = np.array(ts["theta"].tolist())
    _, grad = objective.value_and_grad(theta)
    assert (np.linalg.norm(grad, axis=1) <= 1e-10).all()
    eigs = np.linalg.eigvalsh(objective.hessian(theta))
    tol = 1e-7 * np.abs(eigs).max(axis=1, keepdims=True)
    assert ((eigs < -tol).sum(axis=1) == 1).all() and (ts["index"] == 1).all()
    paths, lines = run.landscape["paths"], run.barriers
    line_top = {frozenset(k): v for k, v in zip(zip(lines["minimum_a"], lines["minimum_b"]), lines["loss_max"])}
    for _, band in paths.groupby("band"):
        if not band["neb_converged"].iloc[0]:
            continue
        key = frozenset((band["minimum_a"].iloc[0], band["minimum_b"].iloc[0]))
        if key in line_top:
            assert band["loss"].max() <= line_top[key] + 1e-12
    joined = ts[ts["minimum_a"] >= 0]
    losses = run.landscape["minima"].set_index("minimum")["loss"]
    assert (joined["loss"].to_numpy() > losses[joined["minimum_a"]].to_numpy()).all()


def test_pathsample_files_hold_the_minima_and_the_joined_transition_states(surveyed):
    """min.data has one line per landscape minimum, ts.data one per transition state
    whose both sides are known minima, with their line numbers."""
    run = nnkit.load(surveyed)
    minima, ts = run.landscape["minima"], run.transition_states
    m = pathsample.read_min_data(surveyed / "landscape" / "min.data")
    t = pathsample.read_ts_data(surveyed / "landscape" / "ts.data", n_minima=len(m))
    np.testing.assert_array_equal(m["energy"], minima["loss"])
    joined = ts[(ts["minimum_a"] >= 0) & (ts["minimum_b"] >= 0)]
    np.testing.assert_array_equal(t["energy"], joined["loss"])
    ids = minima["minimum"].to_numpy()
    np.testing.assert_array_equal(ids[t["min1"]], joined["minimum_a"])
    np.testing.assert_array_equal(ids[t["min2"]], joined["minimum_b"])


def test_trajectories_retrain_the_inits_as_the_run_did(surveyed):
    """The retrained paths end where the run's inits ended, and the PCA coordinates
    reproduce the path's share of variance."""
    run = nnkit.load(surveyed)
    traj = run.landscape["trajectories"]
    assert traj["init"].nunique() == 2
    finals = dict(zip(run.runs["init"], run.runs["loss"]))
    for init, path in traj.groupby("init"):
        assert path["loss"].iloc[-1] == pytest.approx(finals[init], rel=1e-9, abs=1e-14)
        share = path[["explained_1", "explained_2"]].iloc[0].sum()
        assert 0 < share <= 1 + 1e-12


def test_the_density_integrates_to_one_and_the_slice_is_the_loss(surveyed):
    """SLQ weights sum to one per minimum; the slice's centre is the minimum's loss."""
    run = nnkit.load(surveyed)
    density = run.landscape["density"]
    np.testing.assert_allclose(density.groupby("minimum")["weight"].sum(), 1.0, rtol=1e-12)
    slices = run.landscape["slices"]
    centre = slices[(slices["alpha"].abs() < 1e-12) & (slices["beta"].abs() < 1e-12)]
    minimum = int(slices["minimum"].iloc[0])
    loss = run.landscape["minima"].set_index("minimum").loc[minimum, "loss"]
    assert centre["loss"].iloc[0] == pytest.approx(loss, rel=1e-10)


def test_nnkit_landscape_with_tools_replaces_the_survey(run_copy):
    """``--tools`` runs those tools only; the tables, figures and files of the
    survey before go; ``nnkit show`` summarises what is there."""
    done = invoke("landscape", run_copy, "--tools", "barriers,slices", "--set", "landscape.slice=hessian", "-q")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == str(run_copy)
    run = nnkit.load(run_copy)
    assert set(run.landscape) == {"barriers", "slices"}
    assert not (run_copy / "landscape" / "min.data").exists()
    assert not (run_copy / "figures" / "landscape-disconnectivity.png").exists()
    assert (run_copy / "figures" / "landscape-slice.png").is_file()
    shown = invoke("show", run_copy)
    assert "the landscape between the minima" in shown.output and "barrier_median" in shown.output


def test_a_new_analysis_removes_the_survey(run_copy):
    """The survey is drawn between the minima of one analysis: a new one retires it."""
    done = invoke("minima", run_copy, "-q")
    assert done.exit_code == 0, done.output
    run = nnkit.load(run_copy)
    assert not run.has_landscape and run.landscape is None and run.landscape_summary() is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "train.lr=1"], "only landscape"),
        (["--tools", "barriers,hills"], "landscape.tools"),
        (["--tools", "graph"], "needs 'paths'"),
        (["--set", "landscape.images=2"], "landscape.images"),
        (["--set", "landscape.slice_minimum=99"], "slice_minimum"),
    ],
)
def test_mistakes_are_one_line(run_copy, args, fragment):
    assert_user_error(invoke("landscape", run_copy, *args), fragment)


def test_a_run_without_analysis_says_what_to_do(tmp_path):
    done = invoke("run", EXPERIMENTS / "xor.toml", "--inits", 4, "--results", tmp_path, "-q",
                  "--set", "train.max_steps=10")  # fmt: skip
    assert done.exit_code == 0, done.output
    run_dir = done.output.strip().splitlines()[-1]
    assert_user_error(invoke("landscape", run_dir), "nnkit minima")
    bad = tmp_path / "bad.toml"
    bad.write_text((EXPERIMENTS / "xor.toml").read_text() + "\n[landscape]\nenabled = true\n")
    assert_user_error(invoke("run", bad, "--results", tmp_path, "-q"), "analysis.enabled")


def test_landscape_config_round_trips_and_names_its_keys():
    exp = config.from_dict({"landscape": {"tools": ["barriers", "paths", "graph"], "top": float("inf")}})
    assert config.from_dict(exp.to_dict()).landscape == exp.landscape
    with pytest.raises(nnkit.ConfigError, match="allowed: enabled, tools"):
        config.from_dict({"landscape": {"hills": 1}})


def test_nnkit_landscape_as_a_real_process(run_copy):
    """The installed command, in a fresh process."""
    done = subprocess.run([sys.executable, "-m", "nnkit", "landscape", str(run_copy), "--tools", "barriers", "-q"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_copy)
    assert pd.read_parquet(run_copy / "landscape" / "barriers.parquet")["barrier"].notna().all()


def test_pairs_are_nearest_first_without_repeats():
    """The pairs of the survey: i < j, each once, nearest first, at most the limit."""
    from conftest import make_problem

    model, _, theta, _, _ = make_problem(widths=(3,), R=6)
    for how in ("nearest", "all"):
        pair = barriers.pairs(model, theta, how, neighbours=2, limit=7)
        assert len(pair) <= 7 and (pair[:, 0] < pair[:, 1]).all()
        assert len({tuple(p) for p in pair}) == len(pair)
        D = barriers.aligned_distances(model, theta)
        d = D[pair[:, 0], pair[:, 1]]
        assert (np.diff(d) >= 0).all()
    assert len(barriers.pairs(model, theta, "all", limit=100)) == 15


def test_a_kill_at_any_instant_of_a_survey_leaves_a_whole_run(surveyed, tmp_path):
    """Killed before any one of its changes to the run folder, a survey leaves a run
    that reads whole (surveyed or not), and surveying again gives the same tables."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import nnkit_cmd

    args = ("--tools", "barriers,paths,graph", "--set", "landscape.max_pairs=3", "-q")
    ref = tmp_path / "results" / "xor_landscape" / "ref"
    shutil.copytree(surveyed, ref)
    done = nnkit_cmd(0, ref, "landscape", ref, *args)
    assert done.returncode == 0, done.stderr
    count = int(done.stderr.rsplit("changes:", 1)[1].split()[0])
    assert count > 5

    def one(n):
        copy = tmp_path / "results" / "xor_landscape" / f"kill-{n}"
        shutil.copytree(surveyed, copy)
        killed = nnkit_cmd(n, copy, "landscape", copy, *args)
        assert killed.returncode == 137, (n, killed.stderr)
        shown = nnkit_cmd(0, copy, "show", copy)
        assert shown.returncode == 0, (n, shown.stderr)
        again = nnkit_cmd(0, copy, "landscape", copy, *args)
        assert again.returncode == 0, (n, again.stderr)
        a, b = nnkit.load(copy), nnkit.load(ref)
        assert set(a.landscape) == set(b.landscape)
        for name in a.landscape:
            pd.testing.assert_frame_equal(a.landscape[name], b.landscape[name])

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, range(1, count + 1)))


def test_a_survey_runs_its_tools_in_order_and_without_minima_says_so(run_copy, tmp_path):
    """``--tools graph,paths`` draws the graph from the bands all the same; an empty
    list is a mistake; a point without minima is noted, not a traceback; a new analysis
    removes the survey's tables and figures."""
    done = invoke("landscape", run_copy, "--tools", "graph,paths", "--set", "landscape.max_pairs=12", "-q")
    assert done.exit_code == 0, done.output
    assert (run_copy / "figures" / "landscape-disconnectivity.png").is_file()
    assert (run_copy / "landscape" / "ts.data").is_file()
    assert_user_error(invoke("landscape", run_copy, "--tools", ""), "landscape.tools")
    assert invoke("minima", run_copy, "-q").exit_code == 0
    assert not (run_copy / "landscape").exists() and not list((run_copy / "figures").glob("landscape-*"))

    done = invoke("run", EXPERIMENTS / "xor.toml", "--inits", 4, "--results", tmp_path, "-q",
                  "--set", "train.max_steps=3", "--set", "analysis.enabled=true",
                  "--set", "analysis.polish_steps=0")  # fmt: skip
    assert done.exit_code == 0, done.output
    run_dir = done.output.strip().splitlines()[-1]
    assert nnkit.load(run_dir).minima.empty
    done = invoke("landscape", run_dir)
    assert done.exit_code == 0, done.output
    assert "no certified minima" in done.output


def test_a_sweep_is_surveyed_point_by_point(tmp_path):
    """Every sweep point gets its own tables (column ``point``), PATHSAMPLE files under
    ``landscape/point-NNN/`` and figures named for the point."""
    done = invoke("run", EXPERIMENTS / "xor_minima.toml", "--inits", 40, "--results", tmp_path, "-q",
                  "--set", "landscape.enabled=true", "--set", "landscape.max_pairs=4",
                  "--set", 'landscape.tools=["barriers", "paths", "graph"]')  # fmt: skip
    assert done.exit_code == 0, done.output
    run = nnkit.load(done.output.strip().splitlines()[-1])
    summary = run.landscape_summary()
    assert list(summary["point"]) == [0, 1, 2, 3] and "model.hidden" in summary.columns
    with_pairs = sorted(run.barriers["point"].unique())
    assert with_pairs  # XOR with L2 has several minima
    for p in with_pairs:
        assert (run.path / "landscape" / f"point-{p:03d}" / "min.data").is_file()
        assert (run.path / "figures" / f"landscape-barriers-point-{p:03d}.png").is_file()
    assert not (run.path / "landscape" / "min.data").exists()
