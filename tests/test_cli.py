"""The ``nnkit`` command: runs, summaries, user mistakes and resuming."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnkit
import nnkit.study.build
import nnkit.training.chunk
from nnkit.errors import UserError
from nnkit.study import config

from conftest import assert_user_error, invoke

EXPERIMENT = """
name = "tiny"
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

[run]
backend = "numpy"
"""


@pytest.fixture
def exp_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    return path




def run_dirs(results):
    return sorted(p.parent for p in Path(results).glob("*/*/meta.json"))


def assert_run_folder(run_dir, inits=8, points=1):
    run_dir = Path(run_dir)
    for name in ("runs.parquet", "config.json", "meta.json"):
        assert (run_dir / name).is_file(), name
    for p in range(points):
        assert (run_dir / "params" / f"point-{p:03d}.npy").is_file()
    run = nnkit.load(run_dir)
    assert len(run.runs) == inits * points
    assert run.params(0).shape[0] == inits
    return run


# -- basics ----------------------------------------------------------------------


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nnkit, version {nnkit.__version__}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    result = invoke(flag)
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:")[1].split()
    for command in ("run", "show", "minima", "plot", "bench", "backends"):
        assert command in listed, command
    result = invoke("run", flag)
    assert result.exit_code == 0
    for option in ("--set", "--inits", "--backend", "--results", "--run-id", "--resume", "--quiet"):
        assert option in result.stdout
    backend_help = " ".join(result.stdout.split("--backend")[1].split("--results")[0].split())
    for name in nnkit.backends.names():  # the help is made from the registry
        assert name in backend_help, name


def test_backends_lists_numpy_as_usable():
    result = invoke("backends")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    by_name = {line.split()[0]: line.split()[1] for line in lines if line.strip()}
    assert by_name["numpy"] == "yes"
    assert set(nnkit.backends.REGISTRY) <= set(by_name)
    assert sum("<- auto" in line for line in lines) == 1


# -- run -------------------------------------------------------------------------


def test_run_quiet(tmp_path, exp_file):
    results = tmp_path / "res"
    result = invoke("run", exp_file, "--results", results, "-q")
    assert result.exit_code == 0, result.output
    [run_dir] = run_dirs(results)
    assert run_dir.parent == results / "tiny"
    # quiet: only the run folder on stdout
    assert result.stdout.strip() == str(run_dir)
    # on stderr only the diagnosis (50 steps are too few for any init of this experiment)
    assert result.stderr.startswith("warning: point 0: only 0 of 8 inits converged") and result.stderr.count("\n") == 1
    run = assert_run_folder(run_dir)
    assert run.meta["backend"] == "numpy"
    assert run.config == config.load(exp_file).to_dict()


def test_run_with_summary(tmp_path, exp_file):
    results = tmp_path / "res"
    result = invoke("run", exp_file, "--results", results, "--run-id", "first")
    assert result.exit_code == 0, result.output
    run_dir = results / "tiny" / "first"
    assert_run_folder(run_dir)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == str(run_dir)
    assert lines[0].startswith("tiny: 8 inits, 1 point(s), backend numpy (float64)")
    header = lines[1].split()
    for column in ("point", "inits", "converged", "max_steps", "diverged", "loss_median"):
        assert column in header
    assert lines[2].split()[:2] == ["0", "8"]
    assert "Traceback" not in result.output


def test_run_options_override_file(tmp_path, exp_file):
    results = tmp_path / "res"
    result = invoke(
        "run", exp_file, "--results", results, "--inits", 3, "--set", "train.max_steps=7",
        "--set", "model.hidden=5", "--backend", "numpy", "--run-id", "x", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = assert_run_folder(results / "tiny" / "x", inits=3)
    assert run.config["train"]["max_steps"] == 7
    assert run.config["model"]["hidden"] == [5]
    assert run.params().shape == (3, 2 * 5 + 5 + 5)
    assert (run.runs["steps"] <= 7).all()


def test_run_sweep(tmp_path, exp_file):
    results = tmp_path / "res"
    result = invoke("run", exp_file, "--results", results, "--set", "sweep.train.lr=[0.05, 0.1]", "-q",
                    "--inits", 4)
    assert result.exit_code == 0, result.output
    [run_dir] = run_dirs(results)
    run = assert_run_folder(run_dir, inits=4, points=2)
    assert "train.lr" in run.runs.columns


def test_show(tmp_path, exp_file):
    results = tmp_path / "res"
    ran = invoke("run", exp_file, "--results", results, "-q", "--run-id", "a")
    assert ran.exit_code == 0, ran.output
    result = invoke("show", results / "tiny" / "a", "--wide")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("tiny: 8 inits, 1 point(s), backend numpy")
    assert "loss_median" in lines[1]
    assert lines[3] == "" and lines[4].startswith("point 0: only 0 of 8 inits converged")  # the diagnosis
    # the numbers are those of the stored run
    summary = nnkit.load(results / "tiny" / "a").training()
    assert lines[2].split()[2:6] == [str(summary.loc[0, c]) for c in ("converged", "target", "max_steps", "diverged")]


def test_same_run_id_twice_is_user_error(tmp_path, exp_file):
    results = tmp_path / "res"
    assert invoke("run", exp_file, "--results", results, "-q", "--run-id", "a").exit_code == 0
    result = invoke("run", exp_file, "--results", results, "-q", "--run-id", "a")
    assert_user_error(result, "exists already")


def test_run_with_data_file_relative_to_experiment(tmp_path, monkeypatch):
    study = tmp_path / "study"
    (study / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    pd.DataFrame({"u": X[:, 0], "v": X[:, 1], "y": X[:, 0] - X[:, 1]}).to_csv(study / "data" / "t.csv", index=False)
    text = EXPERIMENT.replace(
        'kind = "teacher_student"\nd = 2\nn = 20\nn_test = 10\nteacher_width = 2',
        'kind = "file"\npath = "data/t.csv"\ntarget = "y"\ntest_fraction = 0.2',
    )
    (study / "own.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "study/own.toml", "--results", "res", "-q", "--inits", 2)
    assert result.exit_code == 0, result.output
    [run_dir] = run_dirs(tmp_path / "res")
    run = assert_run_folder(run_dir, inits=2)
    assert run.config["data"]["path"] == str((study / "data" / "t.csv").resolve())
    assert run.runs["test_loss"].notna().all()


# -- user mistakes ---------------------------------------------------------------


def test_missing_experiment_file(tmp_path):
    result = invoke("run", tmp_path / "nope.toml", "--results", tmp_path / "res")
    assert_user_error(result, "not found", "nope.toml")
    assert not (tmp_path / "res").exists()


def test_unknown_key(tmp_path, exp_file):
    exp_file.write_text(exp_file.read_text().replace("max_steps = 50", "max_steps = 50\nsteps = 3"))
    result = invoke("run", exp_file, "--results", tmp_path / "res")
    assert_user_error(result, "train.steps", "allowed")
    assert not (tmp_path / "res").exists()


def test_unknown_key_from_set(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--set", "model.depth=3")
    assert_user_error(result, "model.depth")


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("train.lr=-1", ["train.lr"]),
        ("train.method=adam", ["train.method", "'adam'", "'sgd'"]),
        ("train.max_steps='many'", ["train.max_steps", "integer"]),
        ("data.kind=spiral", ["data.kind", "'spiral'"]),
    ],
)
def test_bad_value(tmp_path, exp_file, override, fragments):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--set", override)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "res").exists()


def test_bad_inits_option(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--inits", 0)
    assert_user_error(result, "inits")


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\ninits = \n')
    result = invoke("run", path, "--results", tmp_path / "res")
    assert_user_error(result, "not valid TOML")


def test_binary_experiment_file(tmp_path):
    path = tmp_path / "runs.parquet"
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(path)
    result = invoke("run", path, "--results", tmp_path / "res")
    assert_user_error(result, str(path))


def test_unknown_backend(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--backend", "nope")
    assert_user_error(result, "'nope'", "numpy")
    assert run_dirs(tmp_path / "res") == []


def test_set_without_equals(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--set", "train.lr")
    assert_user_error(result, "key=value", "train.lr")


def test_show_on_folder_that_is_not_a_run(tmp_path):
    assert_user_error(invoke("show", tmp_path), "not an nnkit run folder")
    assert_user_error(invoke("show", tmp_path / "missing"), "not an nnkit run folder")


def test_unknown_command_and_missing_argument():
    result = invoke("fly")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    result = invoke("run")
    assert result.exit_code == 2
    assert "EXPERIMENT.toml" in result.stderr


# -- as a real process -----------------------------------------------------------


def _console_script():
    name = "nnkit.exe" if os.name == "nt" else "nnkit"
    return str(Path(sys.executable).parent / name)


@pytest.mark.parametrize("command", [[sys.executable, "-m", "nnkit"], [_console_script()]], ids=["module", "script"])
def test_subprocess_run_and_user_error(tmp_path, exp_file, command):
    results = tmp_path / "res"
    done = subprocess.run(
        [*command, "run", str(exp_file), "--results", str(results), "-q", "--inits", "4"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(results)
    assert done.stdout.strip() == str(run_dir)
    assert_run_folder(run_dir, inits=4)

    bad = subprocess.run(
        [*command, "run", str(exp_file), "--results", str(results), "--set", "train.lr=-2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stdout == ""
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.lr" in lines[0]
    assert "Traceback" not in bad.stderr


# -- interrupting and resuming ---------------------------------------------------


class CountingTrain:
    """Stands in for the ``train`` that a chunk calls: records the init ids of every
    call and raises KeyboardInterrupt on call number ``fail_on`` (when set)."""

    def __init__(self, fail_on=None):
        self.real = nnkit.training.chunk.train
        self.fail_on = fail_on
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append(np.asarray(kwargs["ids"]).tolist())
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


CHUNKED = ["--set", "run.chunk_size=3", "--set", "train.history=4"]


def interrupt_run(exp_file, results, run_id, monkeypatch, *overrides):
    exp = config.load(exp_file, ["run.chunk_size=3", "train.history=4", *overrides])
    counter = CountingTrain(fail_on=2)
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)
    with pytest.raises(KeyboardInterrupt):
        nnkit.run_experiment(exp, results_dir=results, run_id=run_id, progress=False)
    assert counter.calls == [[0, 1, 2], [3, 4, 5]]
    run_dir = Path(results) / "tiny" / run_id
    assert not (run_dir / "runs.parquet").exists()
    assert (run_dir / "meta.json").is_file()
    return run_dir


def test_resume_finishes_the_run_as_if_uninterrupted(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    run_dir = interrupt_run(exp_file, results, "a", monkeypatch)
    with pytest.raises(UserError, match="not finished"):
        nnkit.load(run_dir)
    show = invoke("show", run_dir)
    assert_user_error(show, "not finished", "--resume")

    counter = CountingTrain()
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run_dir)
    # the finished chunk (inits 0-2) was not trained again
    assert counter.calls == [[3, 4, 5], [6, 7]]
    resumed = assert_run_folder(run_dir)
    assert not (run_dir / "chunks").exists()

    counter.calls.clear()
    result = invoke("run", exp_file, "--results", results, "--run-id", "b", "-q", *CHUNKED)
    assert result.exit_code == 0, result.output
    assert counter.calls == [[0, 1, 2], [3, 4, 5], [6, 7]]
    straight = assert_run_folder(results / "tiny" / "b")

    pd.testing.assert_frame_equal(
        resumed.runs.drop(columns="chunk_time_s"), straight.runs.drop(columns="chunk_time_s")
    )
    np.testing.assert_array_equal(resumed.params(0), straight.params(0))
    pd.testing.assert_frame_equal(resumed.history, straight.history)
    assert resumed.runs["chunk"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert resumed.config == straight.config
    assert resumed.meta["finished"]

    # a finished run is not resumed again
    result = invoke("run", exp_file, "--results", results, "--resume", "--run-id", "a", "-q", *CHUNKED)
    assert_user_error(result, "already finished")
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED)
    assert_user_error(result, "no unfinished run")


def test_resume_through_run_experiment(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    run_dir = interrupt_run(exp_file, results, "a", monkeypatch)
    counter = CountingTrain()
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)
    exp = config.load(exp_file, ["run.chunk_size=3", "train.history=4"])
    path = nnkit.run_experiment(exp, results_dir=results, resume=True, run_id="a", progress=False)
    assert Path(path) == run_dir
    assert counter.calls == [[3, 4, 5], [6, 7]]
    assert nnkit.load(run_dir).runs["init"].tolist() == list(range(8))


def test_resume_picks_newest_unfinished_run(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    interrupt_run(exp_file, results, "zz-named-first", monkeypatch)
    time.sleep(1.1)  # creation times have a resolution of one second
    newer = interrupt_run(exp_file, results, "20200102-000000-aaaa", monkeypatch)
    monkeypatch.setattr(nnkit.training.chunk, "train", CountingTrain())
    (results / "tiny" / "broken").mkdir()
    (results / "tiny" / "broken" / "meta.json").write_text("{not json")
    # the newest folder is damaged: it may be the run meant, so nnkit says so
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED)
    assert_user_error(result, "broken/meta.json is damaged", "--run-id")
    os.utime(results / "tiny" / "broken" / "meta.json", (0, 0))  # older than the others
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(newer)
    assert (newer / "runs.parquet").is_file()
    assert not (results / "tiny" / "zz-named-first" / "runs.parquet").exists()


def test_resume_with_changed_config_is_user_error(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    run_dir = interrupt_run(exp_file, results, "a", monkeypatch)
    counter = CountingTrain()
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)

    changed = config.load(exp_file, ["run.chunk_size=3", "train.history=4", "train.lr=0.3"])
    with pytest.raises(UserError, match=r"train\.lr"):
        nnkit.run_experiment(changed, results_dir=results, resume=True, progress=False)

    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED, "--inits", 9)
    line = assert_user_error(result, "inits")
    assert "train.lr" not in line
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED,
                    "--set", "model.hidden=[4]", "--set", "data.n=21")
    assert_user_error(result, "model.hidden", "data.n")
    assert counter.calls == []
    assert not (run_dir / "runs.parquet").exists()

    # the run section (how the work is cut) may change: the stored chunk size is kept
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", "--set", "train.history=4",
                    "--set", "run.chunk_size=5")
    assert result.exit_code == 0, result.output
    assert counter.calls == [[3, 4, 5], [6, 7]]


def test_resume_without_unfinished_run_is_user_error(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--resume")
    assert_user_error(result, "no unfinished run")
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--resume", "--run-id", "zz")
    assert_user_error(result, "'zz'")


def test_interrupt_in_cli_keeps_chunks_and_says_how_to_resume(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    counter = CountingTrain(fail_on=2)
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)
    result = invoke("run", exp_file, "--results", results, "--run-id", "a", "-q", *CHUNKED)
    assert result.exit_code == 130
    assert "--resume" in result.stderr
    assert "Traceback" not in result.output
    run_dir = results / "tiny" / "a"
    assert sorted(p.name for p in (run_dir / "chunks").glob("*.npy")) == ["p000-c00000.npy"]

    counter = CountingTrain()
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED)
    assert result.exit_code == 0, result.output
    assert counter.calls == [[3, 4, 5], [6, 7]]
    assert_run_folder(run_dir)


def test_the_printed_command_continues_a_run_started_with_overrides(tmp_path, exp_file, monkeypatch):
    """Interrupted, a run started with --inits and --set prints the one command that
    continues it; that command finishes it as if it had never stopped."""
    results = tmp_path / "res"
    monkeypatch.setattr(nnkit.training.chunk, "train", CountingTrain(fail_on=2))
    started = ["run", exp_file, "--inits", 7, "--set", "train.lr=0.2", "--results", results, "-q", *CHUNKED]
    result = invoke(*started)
    assert result.exit_code == 130, result.output
    command = result.stderr.split("continue with ", 1)[1].strip()
    words = shlex.split(command)
    assert words[:3] == ["nnkit", "run", str(exp_file)] and "--resume" in words
    counter = CountingTrain()
    monkeypatch.setattr(nnkit.training.chunk, "train", counter)
    resumed = invoke(*words[1:])
    assert resumed.exit_code == 0, resumed.output
    assert counter.calls == [[3, 4, 5], [6]]
    straight = invoke(*started, "--run-id", "straight")
    assert straight.exit_code == 0, straight.output
    a, b = (nnkit.load(r.stdout.strip().splitlines()[-1]) for r in (resumed, straight))
    pd.testing.assert_frame_equal(a.runs.drop(columns="chunk_time_s"), b.runs.drop(columns="chunk_time_s"))
    assert a.config["inits"] == 7 and a.config["train"]["lr"] == 0.2


def test_resumed_run_records_both_sessions(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    run_dir = interrupt_run(exp_file, results, "a", monkeypatch)
    monkeypatch.setattr(nnkit.training.chunk, "train", CountingTrain())
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED)
    assert result.exit_code == 0, result.output
    meta = nnkit.load(run_dir).meta
    assert len(meta["sessions"]) == 2
    assert all(session["backend"] == "numpy" for session in meta["sessions"])
    assert all(session["seconds"] > 0 for session in meta["sessions"])
    assert meta["train_seconds"] == pytest.approx(sum(s["seconds"] for s in meta["sessions"]), abs=2e-3)


def test_bad_input_found_while_running_leaves_no_run_folder(tmp_path):
    path = tmp_path / "missing.toml"
    path.write_text(
        'name = "missing"\ninits = 2\n[data]\nkind = "file"\npath = "nowhere.csv"\ntarget = "y"\n'
    )
    result = invoke("run", path, "--results", tmp_path / "res", "-q")
    assert_user_error(result, "data file not found", "nowhere.csv")
    assert run_dirs(tmp_path / "res") == []


@pytest.mark.parametrize("run_id", [".", "..", "a/b", "/tmp/x", " a"])
def test_run_id_must_be_a_plain_name(tmp_path, exp_file, run_id):
    keep = tmp_path / "res" / "tiny" / "earlier"
    keep.mkdir(parents=True)
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--run-id", run_id, "-q")
    assert_user_error(result, "run id")
    assert keep.is_dir()


def test_existing_folder_is_never_reused_or_deleted(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[data]\nkind = "file"\npath = "no.csv"\ntarget = "y"\n')
    mine = tmp_path / "res" / "bad" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    result = invoke("run", path, "--results", tmp_path / "res", "--run-id", "mine", "-q")
    assert_user_error(result, "exists already")
    assert (mine / "notes.txt").read_text() == "keep me"


def test_results_folder_that_is_a_file(tmp_path, exp_file):
    target = tmp_path / "file"
    target.write_text("")
    assert_user_error(invoke("run", exp_file, "--results", target, "-q"), "is a file")


def test_out_of_memory_is_one_line(tmp_path, exp_file, monkeypatch):
    def too_big(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nnkit.study.build, "make_dataset", too_big)
    result = invoke("run", exp_file, "--results", tmp_path / "res", "-q")
    assert_user_error(result, "out of memory")


def test_mixed_sweep_values_are_stored_as_text(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "-q",
                    "--set", "sweep.model.hidden=[[2], 3]", "--set", "sweep.train.lr=[0.1, 1]")
    assert result.exit_code == 0, result.output
    run = nnkit.load(result.stdout.strip())
    assert sorted(set(run.runs["model.hidden"])) == ["3", "[2]"]
    assert run.runs["train.lr"].dtype == float
    assert run.training().shape[0] == 4


def test_swept_seed_and_inits_are_counted_and_shown(tmp_path, exp_file):
    result = invoke("run", exp_file, "--results", tmp_path / "res",
                    "--set", "sweep.inits=[2, 7]", "--set", "sweep.seed=[1, 2]")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("tiny: 18 inits, 4 point(s)")
    run = nnkit.load(result.stdout.strip().splitlines()[-1])
    assert run.meta["inits"] == 18 and len(run.runs) == 18
    table = run.training()
    assert list(table["seed"]) == [1, 2, 1, 2]
    assert list(table["inits"]) == [2, 2, 7, 7]


@pytest.mark.parametrize("key", ["run.backend", "data.kind"])
def test_keys_that_cannot_be_swept(tmp_path, exp_file, key):
    value = '["numpy", "numpy"]' if key == "run.backend" else '["xor", "sine"]'
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--set", f"sweep.{key}={value}")
    assert_user_error(result, key, "cannot be swept")


def test_data_file_with_only_the_target(tmp_path):
    (tmp_path / "only.csv").write_text("y\n1\n2\n3\n")
    path = tmp_path / "only.toml"
    path.write_text('[data]\nkind = "file"\npath = "only.csv"\ntarget = "y"\n')
    result = invoke("run", path, "--results", tmp_path / "res", "-q")
    assert_user_error(result, "no feature columns")
    assert run_dirs(tmp_path / "res") == []


def test_resume_may_change_the_analysis_settings(tmp_path, exp_file, monkeypatch):
    results = tmp_path / "res"
    run_dir = interrupt_run(exp_file, results, "a", monkeypatch)
    monkeypatch.setattr(nnkit.training.chunk, "train", CountingTrain())
    result = invoke("run", exp_file, "--results", results, "--resume", "-q", *CHUNKED,
                    "--set", "analysis.grad_tol=1e-9")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run_dir)


def test_a_closed_pipe_ends_quietly(tmp_path, exp_file):
    """``nnkit show RUN | head -1``: no traceback and no error line when the reader
    goes away."""
    done = invoke("run", exp_file, "--results", tmp_path / "res", "-q")
    assert done.exit_code == 0, done.output
    run_dir = done.stdout.strip()
    cmd = f"{shlex.quote(sys.executable)} -m nnkit show {shlex.quote(run_dir)} | true"  # gone before nnkit writes
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.stderr == ""
    assert out.returncode in (0, 141)


def test_a_run_where_most_inits_fail_says_why_and_what_to_change(tmp_path, exp_file):
    diverging = invoke("run", exp_file, "--results", tmp_path / "res", "--set", "train.lr=500")
    assert diverging.exit_code == 0, diverging.output
    text = " ".join(diverging.stdout.split())
    assert "only 0 of 8 inits converged" in text and "8 diverged" in text and "lower train.lr, now 500" in text
    shown = invoke("show", diverging.stdout.strip().splitlines()[-1])
    assert "lower train.lr" in " ".join(shown.stdout.split())

    capped = invoke("run", exp_file, "--results", tmp_path / "res", "--set", "train.max_steps=2", "-q")
    assert capped.exit_code == 0, capped.output
    warning = " ".join(capped.stderr.split())
    assert warning.startswith("warning: point 0: only 0 of 8") and "8 stopped at train.max_steps = 2" in warning
    assert "final gradient norms: median" in warning and "raise train.max_steps" in warning

    fine = invoke("run", exp_file, "--results", tmp_path / "res", "--set", "train.max_steps=5000",
                  "--set", "train.grad_tol=1e-3")  # fmt: skip
    assert fine.exit_code == 0 and "inits converged" not in fine.stdout
    assert nnkit.load(fine.stdout.strip().splitlines()[-1]).diagnosis() == []
