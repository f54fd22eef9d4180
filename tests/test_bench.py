"""``nnkit bench``: cases, peers and the harness, on tiny sizes (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nnkit.bench import cases, peers
from nnkit.bench.worker import nnkit_run
from nnkit.cli import main

TINY = cases.custom("9,7,3,4,5,0.05")


def test_cases_match_the_benchmark_definitions():
    assert (cases.CASES["B1"].R, cases.CASES["B1"].n, cases.CASES["B1"].steps) == (1000, 1000, 100)
    assert (cases.CASES["B2"].R, cases.CASES["B2"].d, cases.CASES["B2"].k) == (100_000, 2, 3)
    assert (cases.CASES["B3"].k, cases.CASES["B3"].lr) == (100, 0.01)
    X, y, W0, v0 = cases.problem(TINY)
    assert X.shape == (7, 3) and y.shape == (7,) and W0.shape == (9, 3, 4) and v0.shape == (9, 4)
    np.testing.assert_array_equal(cases.problem(TINY)[2], W0)
    with pytest.raises(ValueError, match="R,n,d,k,steps"):
        cases.custom("1,2,3")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_nnkit_and_the_numpy_peer_end_at_the_same_loss(backend):
    X, y, W0, v0 = cases.problem(TINY)
    ref = peers.numpy_batched(TINY, X, y)(W0, v0)
    prepare, _ = nnkit_run(backend)
    np.testing.assert_allclose(prepare(TINY, X, y)(W0, v0), ref, rtol=1e-12)


@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_installed_peers_agree(peer):
    pytest.importorskip(peers.NEEDS[peer])
    X, y, W0, v0 = cases.problem(TINY)
    ref = peers.numpy_batched(TINY, X, y)(W0, v0)
    np.testing.assert_allclose(peers.PEERS[peer](TINY, X, y)(W0, v0), ref, rtol=1e-10)


def test_worker_prints_one_json_line():
    out = subprocess.run(
        [sys.executable, "-m", "nnkit.bench.worker", "--case", "9,7,3,4,5", "--impl", "numpy-batched",
         "--repeats", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(row["times"]) == 2 and row["init_steps_per_s"] > 0 and row["peak_rss_mb"] > 0


def test_cli_writes_parquet_and_markdown(tmp_path):
    result = CliRunner().invoke(
        main, ["bench", "--custom", "9,7,3,4,5", "--backends", "numpy", "--repeats", "1",
               "--results", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| R9-n7-d3-k4 | nnkit-numpy |" in result.stdout
    (parquet,) = (tmp_path / "bench").glob("bench-*.parquet")
    table = pd.read_parquet(parquet)
    assert table["init_steps_per_s"].iloc[0] > 0 and table["gemm_gflops"].iloc[0] > 0
    assert "Command: `nnkit" in next((tmp_path / "bench").glob("bench-*.md")).read_text()


def test_cli_unknown_case_is_one_line():
    result = CliRunner().invoke(main, ["bench", "--case", "B9"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown case 'B9' (expected one of B1, B2, B3)"


def test_a_failing_implementation_is_reported_not_fatal():
    from nnkit.bench import run_bench

    table = run_bench([TINY], ["numpy-batched", "no-such-impl"], repeats=1, echo=lambda m: None)
    assert table.loc[table["impl"] == "numpy-batched", "init_steps_per_s"].iloc[0] > 0
    bad = table[table["impl"] == "no-such-impl"].iloc[0]
    assert bad["error"] and np.isnan(bad["init_steps_per_s"])
    table = run_bench([TINY], ["no-such-impl"], repeats=1, echo=lambda m: None)
    assert len(table) == 1 and table["error"].iloc[0]
