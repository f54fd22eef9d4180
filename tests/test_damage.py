"""Damaged run folders, bad paths and sizes beyond the machine: one line on stderr,
exit status 2, and nothing written into the folder.

The corpus: every file a run folder holds (and the chunks of an unfinished one) damaged
in each of the ways below, each met by ``show``, ``plot``, ``minima`` and ``--resume``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nnkit
from nnkit.backends import numba_codegen
from nnkit.runs import limits
from nnkit.runs.store import Damaged, npy_shape

from conftest import assert_user_error, held_elsewhere, invoke

EXPERIMENT = """
name = "dmg"
seed = 1
inits = 12

[data]
kind = "teacher_student"
d = 2
n = 20
n_test = 10
teacher_width = 2

[model]
hidden = [2]

[train]
lr = 0.2
max_steps = 3000
grad_tol = 1e-6
history = 4

[analysis]
optimum = 0.0

[run]
backend = "numpy"
chunk_size = 5

[sweep]
"train.lr" = [0.1, 0.2]
"""


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An analysed run and an unfinished one (its chunks kept), made once."""
    root = tmp_path_factory.mktemp("damage")
    exp = root / "dmg.toml"
    exp.write_text(textwrap.dedent(EXPERIMENT))
    results = root / "res"
    assert invoke("run", exp, "--results", results, "--run-id", "done", "-q").exit_code == 0
    assert invoke("minima", results / "dmg" / "done", "-q").exit_code == 0
    assert len(nnkit.load(results / "dmg" / "done").minima) >= 2
    original = nnkit.runs.store.RunFolder.gather
    nnkit.runs.store.RunFolder.gather = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    try:
        result = invoke("run", exp, "--results", results, "--run-id", "open", "-q")
    finally:
        nnkit.runs.store.RunFolder.gather = original
    assert result.exit_code == 130
    return exp, results


# -- ways to damage a file ------------------------------------------------------------------


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path: Path):
    path.write_bytes(b"")


def garbage(path: Path):
    path.write_bytes(os.urandom(300))


def missing(path: Path):
    path.unlink()


def folder_instead(path: Path):
    path.unlink()
    path.mkdir()


def json_list(path: Path):
    path.write_text("[1, 2]")


def json_wrong_types(path: Path):
    data = json.loads(path.read_text())
    for key in ("points", "inits", "seed"):
        if key in data:
            data[key] = "many"
    path.write_text(json.dumps(data))


def json_disagreeing(path: Path):
    data = json.loads(path.read_text())
    if "chunk_sizes" in data:
        data["chunk_sizes"] = data["chunk_sizes"][:1]
    else:
        data["inits"] = -3
    path.write_text(json.dumps(data))


def table_rows_lost(path: Path):
    frame = pd.read_parquet(path)
    frame.iloc[: len(frame) // 2].to_parquet(path)


def table_columns_lost(path: Path):
    pd.read_parquet(path).iloc[:, :1].to_parquet(path)


def array_rows_lost(path: Path):
    np.save(path, np.load(path)[:-1])


def array_of_ints(path: Path):
    np.save(path, np.load(path).astype(np.int64))


def array_of_objects(path: Path):
    np.save(path, np.array([{"code": 1}], dtype=object), allow_pickle=True)


JSON_DAMAGE = [truncate, empty, garbage, missing, folder_instead, json_list, json_wrong_types, json_disagreeing]
TABLE_DAMAGE = [truncate, empty, garbage, missing, table_rows_lost, table_columns_lost]
ARRAY_DAMAGE = [truncate, empty, garbage, missing, array_rows_lost, array_of_ints, array_of_objects]

FINISHED_FILES = {
    "meta.json": JSON_DAMAGE,
    "config.json": [truncate, empty, garbage, missing, json_list, json_wrong_types, json_disagreeing],
    "analysis.json": [truncate, garbage, json_list],
    "runs.parquet": TABLE_DAMAGE,
    "minima.parquet": TABLE_DAMAGE,
    "history.parquet": [truncate, garbage, table_columns_lost],
    "params/point-000.npy": ARRAY_DAMAGE,
    "params/point-001.npy": ARRAY_DAMAGE,
    "params/point-001-polished.npy": ARRAY_DAMAGE,
}

CHUNK_FILES = {
    "meta.json": JSON_DAMAGE,
    "config.json": [truncate, garbage, json_list, json_wrong_types],
    "chunks/p000-c00000.parquet": [truncate, empty, garbage, table_rows_lost, table_columns_lost],
    "chunks/p000-c00000.npy": ARRAY_DAMAGE,
    "chunks/p001-c00001.npy": [truncate, array_rows_lost],
    "chunks/p000-c00001.history.parquet": [missing, truncate, garbage],
}

FINISHED_CASES = [(f, d) for f, ways in FINISHED_FILES.items() for d in ways]
CHUNK_CASES = [(f, d) for f, ways in CHUNK_FILES.items() for d in ways]


def damaged_copy(source: Path, tmp_path: Path, name: str, damage) -> Path:
    copy = tmp_path / "res" / "dmg" / source.name
    shutil.copytree(source, copy)
    damage(copy / name)
    return copy


@pytest.mark.parametrize("command", ["show", "plot", "minima"])
@pytest.mark.parametrize(("name", "damage"), FINISHED_CASES, ids=[f"{f}-{d.__name__}" for f, d in FINISHED_CASES])
def test_a_damaged_finished_run_is_one_line_and_left_alone(made, tmp_path, command, name, damage):
    _, results = made
    run = damaged_copy(results / "dmg" / "done", tmp_path, name, damage)
    before = snapshot(run)
    result = invoke(command, run)
    assert_user_error(result, Path(name).name)
    assert snapshot(run) == before


@pytest.mark.parametrize(("name", "damage"), CHUNK_CASES, ids=[f"{f}-{d.__name__}" for f, d in CHUNK_CASES])
def test_a_damaged_unfinished_run_is_not_resumed(made, tmp_path, name, damage):
    exp, results = made
    run = damaged_copy(results / "dmg" / "open", tmp_path, name, damage)
    before = snapshot(run)
    result = invoke("run", exp, "--results", tmp_path / "res", "--resume", "--run-id", "open", "-q")
    assert_user_error(result, Path(name).name, "damaged")
    assert snapshot(run) == before


def test_the_damage_is_named_precisely(made, tmp_path):
    _, results = made
    run = damaged_copy(results / "dmg" / "done", tmp_path, "params/point-001.npy", array_rows_lost)
    with pytest.raises(Damaged, match=r"point-001.npy is damaged: the array has shape \(11, \d+\), expected \(12"):
        nnkit.load(run)
    with pytest.raises(Damaged, match="truncated"):
        path = run / "params" / "point-000.npy"
        truncate(path)
        npy_shape(path)


def test_a_killed_analysis_reads_as_not_analysed(made, tmp_path):
    _, results = made
    run = damaged_copy(results / "dmg" / "done", tmp_path, "analysis.json", missing)
    loaded = nnkit.load(run)
    assert loaded.minima is None
    assert "minimum" not in loaded.runs.columns
    with pytest.raises(nnkit.UserError, match="no polished parameters"):
        loaded.params(0, polished=True)
    assert invoke("show", run).exit_code == 0


# -- bad paths --------------------------------------------------------------------------


@pytest.fixture
def exp_file(tmp_path):
    path = tmp_path / "dmg.toml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    return path


def test_results_under_proc_or_a_file(exp_file, tmp_path):
    assert_user_error(invoke("run", exp_file, "--results", "/proc/nnkit-results", "-q"), "/proc")
    (tmp_path / "file").write_text("")
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / "file", "-q"), "is a file")
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / "file" / "below", "-q"), "file")


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() == 0, reason="permissions do not bind root")
def test_results_folder_not_writable(exp_file, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_user_error(invoke("run", exp_file, "--results", locked, "-q"), "Permission denied")
    finally:
        locked.chmod(0o700)


def test_read_only_file_system_is_one_line(exp_file, tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / "ro", "-q"), "Read-only file system")


def test_names_too_long_or_with_control_characters(exp_file, tmp_path):
    assert_user_error(invoke("run", exp_file, "--results", tmp_path, "--run-id", "a" * 300, "-q"), "run id", "at most")
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / ("b" * 300), "-q"), "File name too long")
    assert_user_error(invoke("run", exp_file, "--results", tmp_path, "--run-id", "tab\there", "-q"), "run id")
    text = exp_file.read_text().replace('name = "dmg"', 'name = "nul\\u0000byte"')
    exp_file.write_text(text)
    assert_user_error(invoke("run", exp_file, "--results", tmp_path, "-q"), "name")
    with pytest.raises(nnkit.UserError, match="NUL"):
        nnkit.run_experiment(_exp(), results_dir="a\0b")


def _exp():
    from nnkit.study import config

    return config.from_dict(
        {"name": "plain", "data": {"kind": "xor"}, "model": {"hidden": [2]}, "run": {"backend": "numpy"}}
    )


def test_nothing_written_for_a_bad_path(exp_file, tmp_path):
    assert_user_error(invoke("run", exp_file, "--results", "/proc/self/nope", "-q"))
    assert list(tmp_path.iterdir()) == [exp_file]


# -- sizes beyond the machine -----------------------------------------------------------


def test_inits_that_cannot_fit(exp_file, tmp_path):
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--inits", 10**12, "-q")
    assert_user_error(result, "of memory", "lower inits")
    assert not (tmp_path / "res").exists()


def test_history_beyond_the_limit(exp_file, tmp_path):
    assert_user_error(invoke("run", exp_file, "--results", tmp_path, "--set", f"train.history={10**7}", "-q"),
                    "train.history")  # fmt: skip


def test_a_disk_too_small(exp_file, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "free_disk", lambda path: 1000)
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / "res", "-q"), "on disk", "free")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_max_steps_at_the_integer_limit(exp_file, tmp_path, backend):
    result = invoke("run", exp_file, "--results", tmp_path, "--backend", backend,
                    "--set", f"train.max_steps={2**63 - 1}", "-q")  # fmt: skip
    assert_user_error(result, "train.max_steps")
    result = invoke("run", exp_file, "--results", tmp_path, "--backend", backend, "--set", "train.history=0",
                    "--set", f"train.max_steps={10**15}", "--set", "train.grad_tol=1e-2", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = nnkit.load(result.stdout.strip()).runs
    assert (runs["status"] == "converged").all() and (runs["steps"] > 0).all()


@pytest.mark.parametrize("spec", ["0,10,2,2,5", "10,-1,2,2,5", "10,10,2,2,0", "10,10,2,2,5,nan", "10,10,2,2,5,-1",
                                  "1e12,10,2,2,5", "100000000,1000000,10,10,5", "a,b,c,d,e"])  # fmt: skip
def test_bench_refuses_sizes_that_mean_nothing(spec, tmp_path):
    assert_user_error(invoke("bench", "--custom", spec, "--results", tmp_path))
    assert not (tmp_path / "bench").exists()


def test_a_run_that_fails_before_its_first_chunk_leaves_nothing(exp_file, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nnkit.training.chunk, "train", out_of_memory)
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / "res", "-q"), "out of memory")
    assert list((tmp_path / "res" / "dmg").iterdir()) == []
    monkeypatch.undo()
    assert_user_error(invoke("run", exp_file, "--results", tmp_path / "res", "--resume", "-q"), "no unfinished run")


def test_a_resume_on_another_backend_records_it(made, tmp_path):
    exp, results = made
    shutil.copytree(results / "dmg" / "open", tmp_path / "res" / "dmg" / "open")
    result = invoke("run", exp, "--results", tmp_path / "res", "--resume", "--backend", "numba", "-q")
    assert result.exit_code == 0, result.output
    meta = nnkit.load(tmp_path / "res" / "dmg" / "open").meta
    assert meta["backend"] == "numba"
    assert [s["backend"] for s in meta["sessions"]] == ["numpy", "numba"]


# -- the kernel cache -------------------------------------------------------------------


@pytest.fixture
def fresh_fallback(monkeypatch):
    monkeypatch.setattr(numba_codegen, "_FALLBACK", None)


def test_the_kernel_cache_is_made_private(tmp_path, fresh_fallback):
    folder = tmp_path / "cache" / "kernels"
    assert numba_codegen._usable(folder) == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_kernel_cache_others_can_write_is_not_used(tmp_path, fresh_fallback, caplog):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    used = numba_codegen._usable(folder)
    assert used != folder
    assert stat.S_IMODE(used.stat().st_mode) == 0o700 and used.stat().st_uid == os.getuid()
    assert "can be written by other users" in caplog.text
    planted = folder / "__pycache__"
    folder.chmod(0o700)
    planted.mkdir()
    planted.chmod(0o777)
    assert numba_codegen._not_private(folder) is not None


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to give a folder away")
def test_a_kernel_cache_of_another_user_is_not_used(tmp_path, fresh_fallback):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    assert "another user" in numba_codegen._not_private(folder)
    assert numba_codegen._usable(folder) != folder


def test_the_numba_backend_runs_with_a_refused_cache(exp_file, tmp_path, monkeypatch, fresh_fallback):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("NNKIT_CACHE_DIR", str(shared))
    result = invoke("run", exp_file, "--results", tmp_path / "res", "--backend", "numba", "-q")
    assert result.exit_code == 0, result.output
    assert "kernel cache" in result.stderr
    assert not (shared / "kernels" / "__pycache__").exists()


# -- a run held by another writer, and a long run -------------------------------------


def test_plot_and_minima_wait_for_no_one(made, tmp_path):
    from nnkit.runs import lock

    _, results = made
    run = tmp_path / "res" / "dmg" / "done"
    shutil.copytree(results / "dmg" / "done", run)
    before = snapshot(run)
    with held_elsewhere(run):
        for command in ("plot", "minima"):
            assert_user_error(invoke(command, run), "being written by another nnkit process")
    assert snapshot(run) == before
    with lock.hold(run), lock.hold(run):  # one process nests its own holds
        assert invoke("plot", run).exit_code == 0


def test_a_run_that_would_take_days_says_so(exp_file, tmp_path, monkeypatch):
    from nnkit.runs import executor

    monkeypatch.setattr(executor, "LONG_RUN_S", 0.0)
    result = invoke("run", exp_file, "--results", tmp_path / "res", "-q")
    assert result.exit_code == 0, result.output
    assert "at the speed of the first chunk the rest of this run takes about" in result.stderr
