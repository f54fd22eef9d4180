"""Studies on a Dask cluster: the same run as on this machine, bit for bit, whatever
the workers; a worker killed mid-study; the client killed, then ``--resume``.

Skipped when the ``dask`` extra is not installed. The cluster is a ``LocalCluster`` of
two worker processes (the CPU backends, small sizes).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nnkit
from nnkit.pipeline import run_experiment
from nnkit.study import config

from conftest import assert_same_run, assert_user_error, invoke, nnkit_cmd

distributed = pytest.importorskip("distributed")

#: two sweep points of five chunks each (the last one short), with history and the analysis
EXPERIMENT = """
name = "{name}"
seed = 5
inits = 24

[data]
kind = "teacher_student"
d = 2
n = 30
n_test = 10
teacher_width = 2

[model]
hidden = [3]

[train]
lr = 0.1
max_steps = {steps}
history = 50

[analysis]
enabled = {analysis}
optimum = 0.0

[run]
chunk_size = 5
backend = "numpy"

[sweep]
"train.lr" = [0.1, 0.2]
"""


def write(folder: Path, name: str, steps: int, analysis: bool = True) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(EXPERIMENT.format(name=name, steps=steps, analysis=str(analysis).lower())))
    return path


def chunks_of(run: Path) -> int:
    """Chunks written (their tables mark them whole)."""
    return len(list((run / "chunks").glob("p*-c*.parquet"))) - len(list((run / "chunks").glob("*.history.parquet")))


def sessions(run: Path) -> list[dict]:
    return json.loads((run / "meta.json").read_text())["sessions"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The experiments, and their runs on this machine (no cluster) as references."""
    folder = tmp_path_factory.mktemp("cluster")
    results = folder / "res"
    exps = {"quick": write(folder, "quick", 300), "slow": write(folder, "slow", 6000, analysis=False)}
    refs = {name: run_experiment(config.load(path), results_dir=results, run_id="ref", progress=False)
            for name, path in exps.items()}  # fmt: skip
    return exps, refs, results


def test_a_run_on_a_cluster_is_the_local_run(studies, cluster):
    exps, refs, results = studies
    result = invoke("run", exps["quick"], "--results", results, "--run-id", "remote", "-q",
                    "--scheduler", cluster.scheduler_address)  # fmt: skip
    assert result.exit_code == 0, result.output
    run = results / "quick" / "remote"
    assert_same_run(run, refs["quick"], analysed=True)
    (session,) = sessions(run)
    workers = set(cluster.scheduler_info["workers"])
    assert session["cluster"]["scheduler"] == cluster.scheduler_address
    assert sorted(session["chunks"]) == sorted(f"{p}:{c}" for p in range(2) for c in range(5))
    assert set(session["chunks"].values()) <= workers
    assert {w["backend"] for w in session["cluster"]["workers"].values() if "backend" in w} == {"numpy"}
    assert nnkit.load(run).meta["backend"] == "numpy"


def test_a_local_cluster_from_the_command_line(studies):
    """``--workers 2`` in a real process: a LocalCluster trains and certifies."""
    exps, refs, results = studies
    run = results / "quick" / "workers"
    done = nnkit_cmd(0, run, "run", exps["quick"], "--results", results, "--run-id", "workers", "-q", "--workers", 2)
    assert done.returncode == 0, done.stderr
    assert_same_run(run, refs["quick"], analysed=True)
    (session,) = sessions(run)
    assert session["cluster"]["kind"] == "local" and len(session["cluster"]["workers"]) == 2
    again = nnkit_cmd(0, run, "minima", run, "-q", "--workers", 2, "--set", "analysis.distance_tol=1e-3")
    assert again.returncode == 0, again.stderr
    assert len(nnkit.load(run).minima) >= 1


def test_a_worker_killed_mid_study_loses_and_repeats_nothing(studies):
    exps, refs, results = studies
    killed = {}
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local,
        distributed.Client(local) as client,
    ):
        run = results / "slow" / "worker-killed"

        def kill_a_busy_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if (run / "chunks").is_dir() and chunks_of(run) >= 1 and busy:
                    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    killed["worker"], killed["chunks"] = busy[0], chunks_of(run)
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        run_experiment(config.load(exps["slow"]), results_dir=results, run_id=run.name, progress=False,
                       scheduler=local.scheduler_address)  # fmt: skip
        killer.join()
    assert killed and killed["chunks"] < 10, killed  # the kill came mid-study
    assert_same_run(run, refs["slow"])
    (session,) = sessions(run)
    assert len(session["chunks"]) == 10


@pytest.mark.parametrize("where", ["cluster", "here"])
def test_the_client_killed_then_resumed(studies, cluster, where):
    """SIGKILL of ``nnkit run --scheduler`` once a few chunks are written; ``--resume``
    (on the cluster or on this machine) trains only the chunks that are missing."""
    exps, refs, results = studies
    run = results / "slow" / f"client-killed-{where}"
    args = ("run", exps["slow"], "--results", results, "--run-id", run.name, "-q")
    client = nnkit_cmd(0, run, *args, "--scheduler", cluster.scheduler_address, popen=True)
    deadline = time.monotonic() + 120
    while not ((run / "chunks").is_dir() and chunks_of(run) >= 3) and time.monotonic() < deadline:
        assert client.poll() is None, client.communicate()
        time.sleep(0.01)
    client.send_signal(signal.SIGKILL)
    client.communicate()
    left = chunks_of(run)
    assert 3 <= left < 10
    more = ("--scheduler", cluster.scheduler_address) if where == "cluster" else ()
    done = nnkit_cmd(0, run, *args, "--resume", *more)
    assert done.returncode == 0, done.stderr
    assert_same_run(run, refs["slow"])
    second = sessions(run)[-1]
    assert len(sessions(run)) == 2  # the killed one, the resumed one
    if where == "cluster":
        assert len(second["chunks"]) == 10 - left  # the finished chunks were not trained again
    else:
        assert "cluster" not in second


def test_a_backend_the_workers_cannot_run_is_one_line(studies, cluster):
    exps, _, results = studies
    if nnkit.backends.probe("cupy").usable:
        pytest.skip("CuPy runs here")
    result = invoke("run", exps["quick"], "--results", results, "--run-id", "no-cupy", "-q",
                    "--backend", "cupy", "--scheduler", cluster.scheduler_address)  # fmt: skip
    assert_user_error(result, "backend 'cupy' is unavailable")
    assert not (results / "quick" / "no-cupy").exists()


def test_cluster_mistakes_are_one_line(studies, monkeypatch):
    exps, _, results = studies
    common = ("run", exps["quick"], "--results", results, "-q")
    before = sorted((results / "quick").iterdir())
    assert_user_error(invoke(*common, "--scheduler", "tcp://h:1", "--workers", 2), "not both")
    assert_user_error(invoke(*common, "--scheduler", "no-port-here"), "cannot reach a Dask scheduler at no-port-here")
    assert_user_error(invoke(*common, "--set", "run.workers=2", "--set", "run.scheduler=tcp://h:1"), "exclusive")
    assert_user_error(invoke(*common, "--set", "run.workers=-1"), "run.workers")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the dask extra were not installed
    assert_user_error(invoke(*common, "--workers", 2), "pip install 'nnkit-landscape[dask]'")
    assert sorted((results / "quick").iterdir()) == before  # nothing made, nothing left


class _Reversed:
    """A stand-in for a cluster whose chunks finish in the reverse order, trained here."""

    def describe(self):
        return {"scheduler": "none", "kind": "test", "workers": {}}

    def train(self, jobs, problems, tasks, backend):
        from nnkit import backends
        from nnkit.objective import make_objective
        from nnkit.training import train_chunk

        be = backends.get(backend)
        for job in reversed(jobs):
            chunk = train_chunk(make_objective(problems[job.point], be), tasks[job.point], job.ids)
            yield job, chunk, {"worker": "w", "backend": be.name, "device": be.device}

    def certifier(self, problem):
        from nnkit.landscape.critical import certify

        return certify


def test_the_same_bits_whatever_order_the_chunks_finish_in(studies, monkeypatch):
    import contextlib

    from nnkit import pipeline

    exps, refs, results = studies
    monkeypatch.setattr(pipeline, "_cluster", lambda *a: contextlib.nullcontext(_Reversed()))
    path = run_experiment(config.load(exps["quick"]), results_dir=results, run_id="reversed",
                          progress=False, workers=2)  # fmt: skip
    assert_same_run(path, refs["quick"], analysed=True)
    assert list(sessions(path)[0]["chunks"]) == [f"{p}:{c}" for p in (1, 0) for c in range(4, -1, -1)]
