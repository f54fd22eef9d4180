"""The command line for scripts and terminals: tables cut to 100 columns, ``--json``,
``nnkit ls``, a run found by a prefix of its id, shell completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import nnkit
from nnkit.runs import catalog

from conftest import assert_user_error, held_elsewhere, invoke

EXPERIMENT = """
name = "wide"
seed = 1
inits = 12

[data]
kind = "xor"

[model]
hidden = [2]
activation = "sigmoid"

[train]
lr = 2.0
max_steps = 1500

[run]
backend = "numpy"

[sweep]
objective.l2 = [0.0, 0.001]
"""


@pytest.fixture(autouse=True)
def no_columns(monkeypatch):
    """Tables fitted to 100 columns, whatever the shell running the tests says."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """An analysed sweep of two points under ``ROOT/results``: (root, run folder)."""
    root = tmp_path_factory.mktemp("terminal")
    path = root / "wide.toml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    ran = invoke("run", path, "--results", root / "results", "--run-id", "20261203-101010-abcd", "-q")
    assert ran.exit_code == 0, ran.output
    run_dir = root / "results" / "wide" / "20261203-101010-abcd"
    assert invoke("minima", run_dir, "-q").exit_code == 0
    return root, run_dir


def test_show_fits_100_columns_and_says_what_it_left_out(analysed):
    _, run_dir = analysed
    result = invoke("show", run_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert "the sweep points:" in lines
    # the swept key is printed once, in the sweep table, and intervals are one column
    headers = [line for line in lines if line.startswith(" point")]
    assert len(headers) == 4 and sum("objective.l2" in line for line in headers) == 1
    assert any("spurious_fraction" in line for line in lines) and not any("spurious_low" in line for line in lines)


def test_columns_sets_the_width(analysed, monkeypatch):
    _, run_dir = analysed
    monkeypatch.setenv("COLUMNS", "80")
    lines = invoke("show", run_dir).stdout.splitlines()
    assert max(map(len, lines)) <= 80, max(lines, key=len)
    monkeypatch.setenv("COLUMNS", "300")
    assert "left out" not in invoke("show", run_dir).stdout


def test_show_wide_has_every_column(analysed):
    _, run_dir = analysed
    wide = invoke("show", run_dir, "--wide").stdout
    for column in ("test_loss_median", "spurious_low", "spurious_high", "eig_min", "fraction_low", "nullity"):
        assert column in wide
    assert "left out" not in wide


def test_fit_leaves_out_the_named_columns_first():
    from nnkit.report import terminal

    frame = pd.DataFrame({"point": [0], "a" * 30: [1.0], "b" * 30: [2.0], "c" * 30: [3.0]})
    block, left_out = terminal.fit(frame, 60, drop=["b" * 30])
    assert left_out == ["b" * 30, "c" * 30] and max(map(len, block.splitlines())) <= 60
    block, left_out = terminal.fit(frame, 200)
    assert left_out == [] and "c" * 30 in block
    frame = pd.DataFrame({"point": [0], "a" * 30: [1.0], "b" * 30: [2.0], "z": [0]})
    limit = len(terminal.text(frame.drop(columns="z")).splitlines()[0])
    block, left_out = terminal.fit(frame, limit, drop=["b" * 30, "z"])  # zeros say nothing: they go first
    assert left_out == ["z (all 0)"], left_out


def test_show_json_holds_every_table_in_full(analysed):
    _, run_dir = analysed
    result = invoke("show", run_dir, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    run = nnkit.load(run_dir)
    assert out["path"] == str(run_dir) and out["run_id"] == run_dir.name and out["analysed"] is True
    assert set(out["tables"]) == {"training", "landing", "minima"}
    landing = pd.DataFrame(out["tables"]["landing"])
    pd.testing.assert_frame_equal(landing, run.landing(), check_dtype=False)
    assert out["meta"]["inits"] == 24 and out["diagnosis"] == run.diagnosis()


def test_run_json_prints_only_the_summary(tmp_path):
    path = tmp_path / "wide.toml"
    path.write_text(textwrap.dedent(EXPERIMENT).replace("max_steps = 1500", "max_steps = 20"))
    result = invoke("run", path, "--results", tmp_path / "results", "--json", "--set", "inits=3")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["experiment"] == "wide" and len(out["tables"]["training"]) == 2
    assert os.path.isdir(out["path"])


def test_backends_json():
    result = invoke("backends", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_name = {row["name"]: row for row in rows}
    assert set(nnkit.backends.REGISTRY) <= set(by_name)
    assert by_name["numpy"]["usable"] is True and by_name["numpy"]["reason"] is None
    assert sum(row["auto"] for row in rows) == 1
    assert all(row["usable"] or row["reason"] for row in rows)


def test_a_run_is_found_by_a_prefix_of_its_id(analysed, monkeypatch):
    root, run_dir = analysed
    monkeypatch.chdir(root)
    for name in ("20261203-1010", "wide/2026", "20261203-101010-abcd"):
        result = invoke("show", name)
        assert result.exit_code == 0, (name, result.output)
        assert result.stdout.startswith("wide: 24 inits")
    assert_user_error(invoke("show", "1999"), "1999", "no run id under results starts with '1999'")
    assert_user_error(invoke("show", "other/2026"), "results/other")


def test_an_ambiguous_prefix_names_the_matches(tmp_path, monkeypatch):
    for run_id in ("20261203-0001-aaaa", "20261203-0002-bbbb"):
        (tmp_path / "results" / "e" / run_id).mkdir(parents=True)
        (tmp_path / "results" / "e" / run_id / "meta.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    line = assert_user_error(invoke("show", "20261203"), "2 runs match")
    assert "e/20261203-0001-aaaa" in line and "e/20261203-0002-bbbb" in line
    assert catalog.find("20261203-0002").name == "20261203-0002-bbbb"


def test_ls_lists_every_run_with_its_status(analysed, tmp_path):
    root, run_dir = analysed
    results = tmp_path / "results"
    finished = results / "wide" / run_dir.name
    shutil.copytree(run_dir, finished)
    unfinished = results / "wide" / "20261203-111111-beef"
    shutil.copytree(run_dir, unfinished)
    meta = json.loads((unfinished / "meta.json").read_text())
    meta["finished"] = None
    (unfinished / "meta.json").write_text(json.dumps(meta))
    damaged = results / "other" / "20261203-121212-0000"
    damaged.mkdir(parents=True)
    (damaged / "meta.json").write_text("{not json")
    (results / "bench").mkdir()  # a folder of other files is not a run

    rows = {row["run"]: row for row in json.loads(invoke("ls", results, "--json").stdout)}
    assert rows[f"wide/{run_dir.name}"]["status"] == "finished"
    assert rows[f"wide/{run_dir.name}"]["stages"] == "minima"
    assert rows["wide/20261203-111111-beef"]["status"] == "interrupted"
    assert rows["other/20261203-121212-0000"]["status"] == "damaged"
    assert len(rows) == 3
    with held_elsewhere(unfinished):
        assert catalog.status(nnkit.runs.RunFolder(unfinished))[0] == "running"

    text = invoke("ls", results).stdout.splitlines()
    assert text[0].split()[:3] == ["run", "status", "stages"] and len(text) in (4, 5)
    assert max(map(len, text)) <= 100 and "<NA>" not in "".join(text)
    assert_user_error(invoke("ls", tmp_path / "nothing"), "no such folder")
    assert "no runs under" in invoke("ls", tmp_path).stdout


def test_run_ids_complete_in_the_shell(analysed):
    root, run_dir = analysed
    env = {**os.environ, "_NNKIT_COMPLETE": "bash_complete", "COMP_WORDS": "nnkit show 2026", "COMP_CWORD": "2"}
    out = subprocess.run([sys.executable, "-m", "nnkit"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=60).stdout  # fmt: skip
    assert f"plain,{run_dir.name}" in out.splitlines()


def test_ls_and_show_json_as_real_commands(analysed):
    root, run_dir = analysed
    out = subprocess.run([sys.executable, "-m", "nnkit", "ls", "--json"], cwd=root, capture_output=True,
                         text=True, timeout=120, check=True).stdout  # fmt: skip
    assert [row["run"] for row in json.loads(out)] == [f"wide/{run_dir.name}"]
    out = subprocess.run([sys.executable, "-m", "nnkit", "show", "2026", "--json"], cwd=root,
                         capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    assert json.loads(out)["run_id"] == run_dir.name
