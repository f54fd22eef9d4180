"""Kills at every instant of a run's life, and two processes on one run.

``tests/kill_at.py`` ends the ``nnkit`` process (as SIGKILL would: no clean-up runs)
just before its N-th change to the run's files; the harness tries every N of a whole
run (training, gathering, the commit, the clean-up) and of an analysis, resumes, and
compares the result bit for bit with an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import nnkit
from nnkit.runs import lock

from conftest import assert_same_run, held_elsewhere, nnkit_cmd

#: two sweep points of two chunks each, with history: every kind of file a run writes
EXPERIMENT = """
name = "k"
seed = 3
inits = 20

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
max_steps = {steps}
history = 5

[analysis]
enabled = false
optimum = 0.0

[run]
chunk_size = 10

[sweep]
"train.lr" = [0.1, 0.2]
"""


def write_experiment(folder: Path, steps: int = 200) -> Path:
    path = folder / "k.toml"
    path.write_text(textwrap.dedent(EXPERIMENT.format(steps=steps)))
    return path


def changes(result) -> int:
    return int(result.stderr.rsplit("changes:", 1)[1].split()[0])


def run_args(exp, results, run_id, backend, *more):
    return ("run", exp, "--results", results, "--run-id", run_id, "--backend", backend, "-q", *more)


def finish(exp, results, run_id, backend):
    """Continue the run ``run_id`` to its end, as a user would after a kill: resume it,
    or start it again where the kill came before the run existed."""
    done = nnkit_cmd(0, results / "k" / run_id, *run_args(exp, results, run_id, backend, "--resume"))
    if done.returncode == 2 and "no run" in done.stderr:
        assert not (results / "k" / run_id).exists()
        done = nnkit_cmd(0, results / "k" / run_id, *run_args(exp, results, run_id, backend))
    if done.returncode == 2 and "already finished" in done.stderr:
        return results / "k" / run_id  # killed after the commit (the resume cleaned up)
    assert done.returncode == 0, done.stderr
    return results / "k" / run_id


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kills")
    exp = write_experiment(folder)
    results = folder / "res"
    refs, counts = {}, {}
    for backend in ("numpy", "numba"):
        done = nnkit_cmd(0, results / "k" / f"ref-{backend}", *run_args(exp, results, f"ref-{backend}", backend))
        assert done.returncode == 0, done.stderr
        refs[backend] = results / "k" / f"ref-{backend}"
        # the changes of a run whose results folder exists already, like the ones killed
        probe = nnkit_cmd(0, results / "k" / f"probe-{backend}", *run_args(exp, results, f"probe-{backend}", backend))
        counts[backend] = changes(probe)
    return exp, results, refs, counts


def instants(backend, count):
    """Every instant on numpy; on numba (whose store is the same code) a sample."""
    every = list(range(1, count + 1))
    return every if backend == "numpy" else sorted(random.Random(0).sample(every, min(8, count)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_kill_at_any_instant_then_resume_gives_the_same_run(harness, backend):
    exp, results, refs, counts = harness
    assert counts[backend] > 30  # the training, the gather, the commit and the clean-up

    def one(n):
        killed = nnkit_cmd(n, results / "k" / f"{backend}-{n}", *run_args(exp, results, f"{backend}-{n}", backend))
        assert killed.returncode == 137, (n, killed.stderr)
        assert_same_run(finish(exp, results, f"{backend}-{n}", backend), refs[backend])

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(one, instants(backend, counts[backend])))


def test_many_kill_and_resume_cycles(harness):
    exp, results, refs, counts = harness
    rng = random.Random(1)
    for trial in range(3):
        run_id, first = f"cycles-{trial}", True
        while True:
            args = run_args(exp, results, run_id, "numpy", *(() if first else ("--resume",)))
            done = nnkit_cmd(rng.randint(1, 8), results / "k" / run_id, *args)
            if done.returncode == 2 and "no run" in done.stderr:
                first = True  # killed before the run existed: start it again
                continue
            first = False
            if done.returncode == 0 or "already finished" in done.stderr:
                break
            assert done.returncode == 137, done.stderr
        assert_same_run(results / "k" / run_id, refs["numpy"])
        assert not list((results / "k").glob(f".{run_id}.*")), "a killed start was left behind"


def test_a_kill_at_any_instant_of_an_analysis(harness):
    exp, results, refs, _ = harness
    trained = results / "k" / "trained"
    shutil.copytree(refs["numpy"], trained)
    ref = results / "k" / "analysed"
    shutil.copytree(trained, ref)
    analysed = nnkit_cmd(0, ref, "minima", ref, "-q")
    assert analysed.returncode == 0, analysed.stderr
    count = changes(analysed)
    assert count > 5  # the polished points, the tables, analysis.json, the figures
    runs = []
    for n in range(1, count + 1):
        copy = results / "k" / f"analysis-{n}"
        shutil.copytree(trained, copy)
        runs.append((n, copy))

    def one(item):
        n, copy = item
        killed = nnkit_cmd(n, copy, "minima", copy, "-q")
        assert killed.returncode == 137, (n, killed.stderr)
        shown = nnkit_cmd(0, copy, "show", copy)
        assert shown.returncode == 0, shown.stderr  # whole: analysed, or not yet
        again = nnkit_cmd(0, copy, "minima", copy, "-q")
        assert again.returncode == 0, again.stderr
        assert_same_run(copy, ref, analysed=True)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(one, runs))


def test_sigkill_at_random_times(tmp_path):
    exp = write_experiment(tmp_path, steps=20000)
    results = tmp_path / "res"
    ref = nnkit_cmd(0, results / "k" / "ref", *run_args(exp, results, "ref", "numpy"))
    assert ref.returncode == 0, ref.stderr
    rng = random.Random(2)
    kills = 0
    for attempt in range(6):
        args = run_args(exp, results, "killed", "numpy", *(("--resume",) if attempt else ()))
        proc = nnkit_cmd(0, results / "k" / "killed", *args, popen=True)
        for _ in range(400):  # until the run exists: the kill then comes while it trains or gathers
            if (results / "k" / "killed" / "meta.json").exists() or proc.poll() is not None:
                break
            time.sleep(0.025)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=120)
        if proc.returncode == 0:
            break
    finish(exp, results, "killed", "numpy")
    assert kills >= 1
    assert_same_run(results / "k" / "killed", results / "k" / "ref")


# -- two processes on one run ------------------------------------------------------------


def test_two_runs_with_one_run_id_at_once(tmp_path):
    exp = write_experiment(tmp_path, steps=3000)
    results = tmp_path / "res"
    procs = [nnkit_cmd(0, results / "k" / "same", *run_args(exp, results, "same", "numpy"), popen=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "exists already" in loser or "being written" in loser, loser
    run = nnkit.load(results / "k" / "same")
    assert run.runs["init"].tolist() == list(range(20)) * 2


def test_a_resume_while_the_run_goes_on_is_refused(tmp_path):
    exp = write_experiment(tmp_path, steps=20000)
    results = tmp_path / "res"
    proc = nnkit_cmd(0, results / "k" / "busy", *run_args(exp, results, "busy", "numpy"), popen=True)
    meta = results / "k" / "busy" / "meta.json"
    for _ in range(600):
        if meta.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    checked = 0
    for extra in (("--resume", "--run-id", "busy"), ("--resume",)):
        other = nnkit_cmd(0, results / "k" / "busy", "run", exp, "--results", results, "-q", *extra)
        if proc.poll() is None:  # the run was going on all the while
            assert other.returncode == 2, other.stderr
            assert "being written by another nnkit process" in other.stderr
            checked += 1
    assert checked, "the run ended before a resume was tried: give it more steps"
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(nnkit.load(results / "k" / "busy").runs) == 40


def test_two_resumes_at_once(tmp_path):
    exp = write_experiment(tmp_path, steps=3000)
    results = tmp_path / "res"
    ref = nnkit_cmd(0, results / "k" / "ref", *run_args(exp, results, "ref", "numpy"))
    assert ref.returncode == 0
    killed = nnkit_cmd(12, results / "k" / "twice", *run_args(exp, results, "twice", "numpy"))
    assert killed.returncode == 137
    procs = [
        nnkit_cmd(0, results / "k" / "twice", *run_args(exp, results, "twice", "numpy", "--resume"), popen=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "being written" in loser or "already finished" in loser, loser
    assert_same_run(results / "k" / "twice", results / "k" / "ref")


def test_the_lock_is_exclusive_and_dies_with_its_process(tmp_path):
    with lock.hold(tmp_path), lock.hold(tmp_path):  # one process nests its own holds
        pass
    with held_elsewhere(tmp_path) as holder:
        with pytest.raises(lock.Busy, match="being written by another nnkit process"), lock.hold(tmp_path):
            pass
        holder.kill()  # killed, not let go: the lock dies with its process
        holder.wait()
        with lock.hold(tmp_path):
            pass
    with lock.hold(tmp_path):
        pass
