"""``nnkit bench``: cases, peers and the harness, on tiny sizes (no timing asserted)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nnkit.bench import cases, gpu, peers
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
    assert "| R9-n7-d3-k4 | float64 | nnkit-numpy |" in result.stdout
    assert "| R9-n7-d3-k4 | float32 | nnkit-numpy |" in result.stdout
    (parquet,) = (tmp_path / "bench").glob("bench-*.parquet")
    table = pd.read_parquet(parquet)
    assert (table["init_steps_per_s"] > 0).all() and (table["gemm_gflops"] > 0).all()
    assert list(table["dtype"]) == ["float64", "float32"]
    assert "float32" in next((tmp_path / "bench").glob("bench-*.md")).read_text().split("\n\n")[1]
    assert "Command: `nnkit" in next((tmp_path / "bench").glob("bench-*.md")).read_text()


def test_float32_agrees_with_the_float32_reference_to_its_own_tolerance():
    """In float32 the losses agree to 1e-3 (not float64's 1e-9) with the float32 NumPy
    reference; a bad --dtypes is one line."""
    from nnkit.bench import run_bench

    table = run_bench([TINY], ["numpy-batched", "nnkit-numpy"], repeats=1, echo=lambda m: None,
                      dtypes=("float32",))  # fmt: skip
    assert (table["dtype"] == "float32").all() and table["loss_agrees"].all()
    result = CliRunner().invoke(main, ["bench", "--dtypes", "float16"])
    assert result.exit_code == 2 and "--dtypes" in result.stderr


def test_cli_unknown_case_is_one_line():
    result = CliRunner().invoke(main, ["bench", "--case", "B9"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown case 'B9' (expected one of B1, B2, B3, P14, P20g, A14)"


def test_a_failing_implementation_is_reported_not_fatal():
    from nnkit.bench import run_bench

    table = run_bench([TINY], ["numpy-batched", "no-such-impl"], repeats=1, echo=lambda m: None)
    assert table.loc[table["impl"] == "numpy-batched", "init_steps_per_s"].iloc[0] > 0
    bad = table[table["impl"] == "no-such-impl"].iloc[0]
    assert bad["error"] and np.isnan(bad["init_steps_per_s"])
    table = run_bench([TINY], ["no-such-impl"], repeats=1, echo=lambda m: None)
    assert len(table) == 1 and table["error"].iloc[0]


# -- the GPU cases, checked as far as a machine without a GPU can -------------------

needs_no_cupy = pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="CuPy is installed: a GPU may be present"
)


def test_gpu_cases_match_the_benchmark_definitions():
    gpu_cases = cases.GPU_CASES
    assert [gpu_cases[name].R for name in ("B1g", "B2g", "B3g")] == [100_000, 100_000, 8_192]
    for name in ("B1", "B2", "B3"):
        ours, theirs = gpu_cases[f"{name}g"], cases.CASES[name]
        assert dataclasses.replace(ours, name=name, R=theirs.R, what=theirs.what) == theirs
    assert cases.named("B3g") is gpu_cases["B3g"] and cases.named("B1") is cases.CASES["B1"]
    assert cases.named("9,7,3,4,5").R == 9
    X32, *_ = cases.cast(cases.problem(TINY), "float32")
    assert X32.dtype == np.float32
    assert [case.R for case in gpu.scaled(gpu_cases.values(), 10)] == [10_000, 10_000, 819]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float32_training_follows_the_numpy_peer(backend):
    X64, y64, W64, v64 = cases.problem(TINY)
    X, y, W0, v0 = cases.cast((X64, y64, W64, v64), "float32")
    ref32 = peers.numpy_batched(TINY, X, y)(W0, v0)
    ref64 = peers.numpy_batched(TINY, X64, y64)(W64, v64)
    prepare, _ = nnkit_run(backend, "float32")
    losses = prepare(TINY, X, y)(W0, v0)
    np.testing.assert_allclose(losses, ref32, rtol=1e-5)
    np.testing.assert_allclose(losses, ref64, rtol=gpu.TOLERANCE["float32"])


@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_installed_peers_agree_in_float32(peer):
    pytest.importorskip(peers.NEEDS[peer])
    X, y, W0, v0 = cases.cast(cases.problem(TINY), "float32")
    ref = peers.numpy_batched(TINY, X, y)(W0, v0)
    np.testing.assert_allclose(peers.PEERS[peer](TINY, X, y)(W0, v0), ref, rtol=1e-5)


def test_worker_takes_a_dtype_and_the_first_inits():
    out = subprocess.run(
        [sys.executable, "-m", "nnkit.bench.worker", "--case", "B2g", "--impl", "nnkit-numpy",
         "--dtype", "float32", "--inits", "50", "--head", "20", "--repeats", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    row = json.loads(out.stdout.strip().splitlines()[-1])
    X, y, W0, v0 = cases.problem(cases.GPU_CASES["B2g"])
    case = dataclasses.replace(cases.GPU_CASES["B2g"], R=50)
    ref = peers.numpy_batched(case, X, y)(W0[:50], v0[:50])
    assert row["init_steps_per_s"] == pytest.approx(50 * 100 / row["seconds"])
    assert row["head_loss"] == pytest.approx(ref[:20].mean(), rel=1e-5)
    assert row["mean_final_loss"] == pytest.approx(ref.mean(), rel=1e-5)


def test_the_cpu_bench_leaves_the_gpu_peers_out():
    from nnkit.bench import implementations

    impls, notes = implementations(["numpy"], with_peers=True)
    assert not set(peers.ON_GPU) & set(impls) and not any(n.startswith(peers.ON_GPU) for n in notes)


def _gpu_row(impl, dtype, speed, loss, head, case="B3g"):
    spec = cases.GPU_CASES[case]
    return {"case": case, "dtype": dtype, "impl": impl, "R": spec.R, "init_steps_per_s": speed,
            "flops_per_init_step": spec.flops_per_init_step, "mean_final_loss": loss,
            "head_loss": head, "reference_loss": 2.0}  # fmt: skip


def test_gpu_scores_use_the_rate_and_tolerance_of_each_dtype():
    rows = [
        _gpu_row("nnkit-cuda", "float64", 300.0, 1.0, 2.0 * (1 + 1e-12)),
        _gpu_row("torch-cuda", "float64", 100.0, 1.0, 2.0),
        _gpu_row("jax-cuda", "float64", 150.0, 1.0 + 1e-6, 2.0),  # off in the mean over all
        _gpu_row("nnkit-cuda", "float32", 600.0, 1.0, 2.0 * (1 + 1e-4)),
        _gpu_row("jax-cuda", "float32", 200.0, 1.0, 2.0 * (1 + 1e-2)),  # off against NumPy
        {**_gpu_row("torch-cuda", "float32", float("nan"), float("nan"), float("nan")), "error": "boom"},
    ]
    table = gpu._score(pd.DataFrame(rows), {"gemm_float64": 50e3, "gemm_float32": 100e3, "copy": 3e3})
    flops = cases.GPU_CASES["B3g"].flops_per_init_step
    assert table["vs_best_peer"].tolist()[:5] == [2.0, pytest.approx(2 / 3), 1.0, 3.0, 1.0]
    assert table["gemm_share"].iloc[0] == pytest.approx(300 * flops / 50e12)
    assert table["gemm_share"].iloc[3] == pytest.approx(600 * flops / 100e12)
    assert table["loss_agrees"].tolist() == [True, True, False, True, False, None]
    lines = gpu.targets(table)
    assert "B3g float64 2.00, B3g float32 3.00" in lines[0]
    assert "float64 " in lines[1] and "3 of 6 rows" in lines[2]
    assert "| B3g | float32 | torch-cuda | - | - | - | - |" in gpu.short(table)


def test_gpu_bench_harness_runs_cpu_implementations():
    case_list = gpu.scaled([cases.GPU_CASES["B2g"]], 1000)
    table = gpu.run_gpu_bench(case_list, ["nnkit-numpy"], dtypes=("float32",), repeats=1, echo=lambda m: None)
    row = table.iloc[0]
    assert (row["case"], row["dtype"], row["R"]) == ("B2g", "float32", 100)
    assert row["init_steps_per_s"] > 0 and row["head_rel_diff"] < 1e-5 and row["loss_agrees"]
    assert np.isnan(row["gemm_share"])  # no card, no GEMM rate
    late = gpu.run_gpu_bench(case_list, ["nnkit-numpy"], repeats=1, deadline=0.0, echo=lambda m: None)
    assert late["error"].str.startswith("not run").all() and late["loss_agrees"].isna().all()


@needs_no_cupy
def test_cli_gpu_without_a_gpu_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--gpu", "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: no usable CUDA GPU: CuPy is not installed"
    assert not (tmp_path / "gpu").exists()


def test_cli_gpu_rejects_cpu_backends_and_cases():
    result = CliRunner().invoke(main, ["bench", "--gpu", "--backends", "numba"])
    assert result.exit_code == 2 and "GPU backends cuda and cupy" in result.stderr
    result = CliRunner().invoke(main, ["bench", "--gpu", "--case", "B1"])
    assert result.exit_code == 2 and "unknown GPU case 'B1'" in result.stderr


@needs_no_cupy
def test_gpu_check_stops_at_once_without_a_gpu(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.strip() == "gpu_check: no usable CUDA GPU: CuPy is not installed"
    assert not (tmp_path / "out").exists()


# -- the population cases -----------------------------------------------------------


def test_the_numpy_loop_peer_is_the_closed_form():
    from nnkit.bench.population import loop_loss_grad
    from nnkit.core.layout import Layout
    from nnkit.core.losses import ObjectiveSpec
    from nnkit.objective import TeacherStudentPopulation

    rng = np.random.default_rng(0)
    d = k = 6
    V = np.linalg.qr(rng.standard_normal((d, d)))[0]
    lay = Layout(d=d, widths=(k,), bias=(False,), output_trained=False, output_bias=False)
    theta = rng.standard_normal((4, d * k))
    value, grad = TeacherStudentPopulation(lay, V, np.ones(k), ObjectiveSpec(half=True)).value_and_grad(theta)
    got_value, got_grad = loop_loss_grad(theta.reshape(4, d, k), V)
    np.testing.assert_allclose(got_value, value, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got_grad.reshape(4, -1), grad, rtol=1e-10, atol=1e-13)


def test_population_bench_runs_nnkit_and_the_peers_to_the_same_loss():
    from nnkit.bench import population

    impls, notes = population.implementations(["numba", "cuda"], with_peers=True)
    assert "nnkit-numba" in impls and "numpy-loop" in impls
    assert any(note.startswith("nnkit-cuda") for note in notes)
    table = population.bench(["P14"], [i for i in impls if i != "jax-vmap"] + ["nnkit-numpy"], repeats=1, inits=5)
    assert set(table["impl"]) >= {"nnkit-numba", "nnkit-numpy", "numpy-loop"} and not table["error"].any()
    np.testing.assert_allclose(table["mean_final_loss"], table["mean_final_loss"].iloc[0], rtol=1e-8, atol=1e-12)
    assert (table["init_steps_per_s"] > 0).all()
    loop = table.set_index("impl").loc["numpy-loop"]
    assert loop["vs_numpy_loop"] == 1.0


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_the_jax_peer_agrees_with_the_numpy_loop():
    from nnkit.bench import population

    case = population.PopulationCase("tiny", 4, 5, max_steps=3000)
    V, theta0 = population.problem(case)
    want = population.numpy_loop(case, V)(theta0)[0]
    got = population.jax_vmap(case, V)(theta0)[0]
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


def test_the_population_case_runs_alone():
    result = CliRunner().invoke(main, ["bench", "--case", "P14", "--case", "B1"])
    assert result.exit_code == 2 and "on their own" in result.stderr
    result = CliRunner().invoke(main, ["bench", "--case", "A14", "--case", "P14"])
    assert result.exit_code == 2 and "on their own" in result.stderr


def test_the_analysis_case_certifies_trained_students():
    """A14 on a few students: trained, then analysed as a run would be; every one is
    certified, and the stages add up to about the whole."""
    from nnkit.bench import analysis

    table = analysis.bench(["A14"], repeats=1, echo=lambda m: None, inits=6)
    row = table.iloc[0]
    assert row["inits"] == 6 and row["parameters"] == 196
    assert row["certified"] == 6 and row["minima"] >= 1
    assert 0 < row["polish_s"] + row["spectrum_s"] + row["group_s"] <= row["seconds"] * 1.01


def test_rounds_time_every_implementation_in_turn():
    """Warm-ups first, then one timed run of each implementation per round; a worker
    that fails is reported and the others go on."""
    from nnkit.bench.rounds import run_rounds

    said = []
    tiny = ["--case", "9,7,3,4,5"]
    jobs = {"a": [*tiny, "--impl", "numpy-batched"], "b": [*tiny, "--impl", "nnkit-numpy"],
            "c": [*tiny, "--impl", "no-such-impl"]}  # fmt: skip
    out = run_rounds(jobs, 2, 600, said.append, pause=0.0)
    assert [len(out[key]["times"]) for key in "ab"] == [2, 2] and out["c"]["error"]
    assert said.index("  round 1 of 2: a, b") < said.index("  round 2 of 2: a, b")
    assert out["a"]["mean_final_loss"] == pytest.approx(out["b"]["mean_final_loss"], rel=1e-12)
