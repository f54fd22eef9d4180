"""``nnkit bench --gpu``: the GPU cases (:data:`nnkit.bench.cases.GPU_CASES`) in float64
and float32 with nnkit's GPU backends and, with the peers, PyTorch and JAX on the same
card, each implementation in a process of its own; the card's GEMM rate per precision
and its device-to-device copy bandwidth are measured in the same run.

The NumPy reference is too slow at these sizes, so it trains only the first
:data:`HEAD` inits of each case (float64, on the CPU). Every implementation reports the
mean final loss of the same inits, which must agree with the reference to the relative
:data:`TOLERANCE` of its dtype, and its mean over all inits must agree likewise with the
median of those of all implementations of the case and dtype.

Nothing here imports CuPy, PyTorch or JAX: what needs them runs in a fresh process, so
this one never holds a CUDA context while the implementations run.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from ..errors import UserError
from . import format_cell, markdown, run_worker, write_table
from .cases import DTYPES, GPU_CASES
from .peers import NEEDS, ON_GPU

#: inits the NumPy reference trains; every implementation reports their mean final loss
HEAD = 128
#: relative agreement of the mean final losses required, per dtype
TOLERANCE = {"float64": 1e-9, "float32": 1e-3}
#: nnkit's backends that run on a CUDA GPU
BACKENDS = ("cuda", "cupy")
#: seconds one implementation may take on one case and dtype (warm-up and repeats)
TIMEOUT = 600
#: the B3 target: useful FLOP rate as a share of the card's GEMM rate
GEMM_TARGET = 0.7
#: the packages whose versions a GPU table records (CuPy's and JAX's CUDA builds by prefix)
PACKAGES = ("numpy", "cupy", "numba", "numba-cuda", "torch", "jax", "jaxlib", "array-api-compat")

COLUMNS = {
    "case": "case", "dtype": "dtype", "impl": "implementation", "R": "R",
    "init_steps_per_s": "init-steps/s", "vs_best_peer": "x best peer",
    "gemm_share": "share of GEMM rate", "compile_s": "compile s",
    "mean_final_loss": "mean final loss", "head_rel_diff": "vs NumPy", "loss_agrees": "loss agrees",
    "error": "error",
}  # fmt: skip
#: the columns of the short summary
SHORT = ("case", "dtype", "impl", "init_steps_per_s", "vs_best_peer", "gemm_share", "loss_agrees")


def describe(backend_names=BACKENDS, timeout: float = 120) -> dict:
    """The card and the software, found in a fresh process: ``{"device": {name,
    memory_gib, free_gib, compute_capability, count, driver, runtime}, "backends":
    {name: why it cannot run, or ""}, "versions": {package: version}, "python": ..}``.

    Raises :class:`UserError` with one line when there is no usable CUDA GPU.
    """
    code = (
        "import json, sys; from nnkit.bench.gpu import describe_here; "
        "print(json.dumps(describe_here(sys.argv[1:])))"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code, *backend_names], capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UserError(f"no usable CUDA GPU: looking for one took over {timeout:.0f} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"no usable CUDA GPU: looking for one failed ({tail[:200]})")
    info = json.loads(lines[-1])
    if "error" in info:
        raise UserError(f"no usable CUDA GPU: {info['error']}")
    return info


def describe_here(backend_names) -> dict:
    """:func:`describe`'s answer, in this process (it imports CuPy and the backends);
    ``{"error": why, ...}`` when there is no usable CUDA GPU."""
    info = {"versions": versions(), "python": platform.python_version(),
            "host": f"{platform.system()} {platform.machine()}"}  # fmt: skip
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return {**info, "error": "CUDA finds no device"}
        props = cupy.cuda.runtime.getDeviceProperties(0)
        free, total = cupy.cuda.Device(0).mem_info
        driver, runtime = cupy.cuda.runtime.driverGetVersion(), cupy.cuda.runtime.runtimeGetVersion()
    except ModuleNotFoundError as exc:
        return {**info, "error": "CuPy is not installed" if exc.name == "cupy" else str(exc)}
    except Exception as exc:  # no driver, no device, a broken install: say which
        return {**info, "error": f"{type(exc).__name__}: {first_line(exc)}"}
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info["device"] = {
        "name": name, "memory_gib": total / 2**30, "free_gib": free / 2**30,
        "compute_capability": f"{props['major']}.{props['minor']}", "count": count,
        "driver": _cuda_version(driver), "runtime": _cuda_version(runtime),
    }  # fmt: skip
    from .. import backends

    info["backends"] = {}
    for name in backend_names:
        probe = backends.probe(name)
        info["backends"][name] = "" if probe.usable else probe.reason
    return info


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _cuda_version(number: int) -> str:
    """``12040 -> "12.4"``."""
    return f"{number // 1000}.{number % 1000 // 10}"


def versions() -> dict:
    """``{distribution: version}`` of :data:`PACKAGES` (and ``cupy-cuda*``, ``jax-cuda*``)
    as installed for this Python, and nnkit's own."""
    from ..about import __version__

    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        wanted = name in PACKAGES or name.startswith(("cupy-", "jax-cuda"))
        if wanted and name not in found:  # the first on the path is the one imported
            found[name] = dist.version
    return {"nnkit": __version__, **dict(sorted(found.items()))}


def selection(case_names, backend_names: str | None) -> tuple[list, list[str]]:
    """The GPU cases named (all of them when none is) and the GPU backends in the
    comma-separated ``backend_names`` (both when None); :class:`UserError` for others."""
    names = [b.strip() for b in (backend_names or ",".join(BACKENDS)).split(",") if b.strip()]
    for name in names:
        if name not in BACKENDS:
            raise UserError(f"--gpu times the GPU backends {' and '.join(BACKENDS)}, not {name!r}")
    for name in case_names:
        if name not in GPU_CASES:
            raise UserError(f"unknown GPU case {name!r} (expected one of {', '.join(GPU_CASES)})")
    return [GPU_CASES[name] for name in case_names or GPU_CASES], names


def implementations(backend_names, with_peers: bool, info: dict) -> tuple[list[str], list[str]]:
    """``(impls to run, notes on what was left out and why)`` on the card :func:`describe`
    found."""
    impls, notes = [], []
    for name in backend_names:
        reason = info["backends"].get(name, "not probed")
        if reason:
            notes.append(f"nnkit-{name}: {reason}")
        else:
            impls.append(f"nnkit-{name}")
    for peer in ON_GPU if with_peers else ():
        if importlib.util.find_spec(NEEDS[peer]) is None:
            notes.append(f"{peer}: {NEEDS[peer]} is not installed")
        else:
            impls.append(peer)
    return impls, notes


def rates(timeout: float = 300) -> dict:
    """The card's ``gemm_float64``, ``gemm_float32`` (GFLOP/s) and ``copy`` (GB/s),
    measured in a fresh process (:func:`nnkit.bench.worker.gpu_rates`); ``{"error":
    why}`` when that fails."""
    if timeout < 5:
        return {"error": "not measured: the time allowed for the bench is used up"}
    code = "import json; from nnkit.bench.worker import gpu_rates; print(json.dumps(gpu_rates()))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": ((done.stderr.strip().splitlines() or ["no output"])[-1])[:200]}
    return json.loads(lines[-1])


def scaled(case_list, divisor: int) -> list:
    """The cases with ``R / divisor`` inits each (their first ones), for a quick run."""
    return [dataclasses.replace(case, R=max(1, case.R // divisor)) for case in case_list]


def run_gpu_bench(case_list, impls, dtypes=DTYPES, repeats=3, timeout=TIMEOUT, deadline=None,
                  echo=print) -> pd.DataFrame:  # fmt: skip
    """One row per case, dtype and implementation: init-steps/s, the ratio to the best
    GPU peer, the share of the card's GEMM rate of that dtype, and the loss agreement.

    ``case_list`` holds GPU cases, possibly :func:`scaled`; ``deadline`` (a
    ``time.monotonic()`` value) turns what would start after it into error rows, and
    shortens the ``timeout`` of each implementation to the time left.
    """
    measured = rates(_time_left(timeout, deadline))
    echo(rates_line(measured))
    rows = []
    for case in case_list:
        head = min(HEAD, case.R)
        reference = _run(case, "numpy-batched", "float64", 0, head, timeout, deadline)
        echo(f"  {case.name} NumPy reference on the first {head} inits: "
             f"{reference.get('error') or format(reference['mean_final_loss'], '.10g')}")  # fmt: skip
        for dtype in dtypes:
            for impl in impls:
                started = time.perf_counter()
                out = _run(case, impl, dtype, repeats, case.R, timeout, deadline)
                wall = time.perf_counter() - started
                echo(f"  {case.name} {dtype} {impl}: "
                     + (f"failed: {out['error']}" if "error" in out else f"{wall:.1f} s"))
                rows.append({**out, "case": case.name, "dtype": dtype, "impl": impl, "R": case.R,
                             "n": case.n, "d": case.d, "k": case.k, "steps": case.steps,
                             "flops_per_init_step": case.flops_per_init_step, "wall_s": wall,
                             "reference_loss": reference.get("mean_final_loss", float("nan"))})  # fmt: skip
    return _score(pd.DataFrame(rows), measured)


def _run(case, impl, dtype, repeats, inits, timeout, deadline) -> dict:
    """The worker's row for ``impl`` on the first ``inits`` inits of ``case``."""
    timeout = _time_left(timeout, deadline)
    if timeout < 5:
        return {"error": "not run: the time allowed for the bench is used up"}
    args = ["--case", case.name, "--impl", impl, "--repeats", str(repeats), "--dtype", dtype,
            "--inits", str(inits), "--head", str(HEAD)]  # fmt: skip
    return run_worker(args, timeout)


def _time_left(timeout: float, deadline: float | None) -> float:
    """``timeout``, or less when ``deadline`` (a ``time.monotonic()`` value) comes sooner."""
    return timeout if deadline is None else min(timeout, deadline - time.monotonic())


def _score(table: pd.DataFrame, measured: dict) -> pd.DataFrame:
    """Adds the rates, the ratios and the loss agreement to the rows of :func:`run_gpu_bench`."""
    for column in ("init_steps_per_s", "mean_final_loss", "head_loss", "compile_s"):
        if column not in table:
            table[column] = float("nan")
    if "error" not in table:
        table["error"] = ""
    table["gemm_gflops"] = table["dtype"].map(lambda d: measured.get(f"gemm_{d}", float("nan")))
    table["copy_gbps"] = measured.get("copy", float("nan"))
    useful = table["init_steps_per_s"] * table["flops_per_init_step"]
    table["gemm_share"] = useful / (table["gemm_gflops"] * 1e9)
    table["head_rel_diff"] = (table["head_loss"] - table["reference_loss"]).abs() / table[
        "reference_loss"
    ].abs()
    table["loss_agrees"] = None
    for (_, dtype), group in table.groupby(["case", "dtype"], sort=False):
        best = group.loc[group["impl"].isin(ON_GPU), "init_steps_per_s"].max()
        table.loc[group.index, "vs_best_peer"] = group["init_steps_per_s"] / best
        typical = group["mean_final_loss"].median()
        spread = (group["mean_final_loss"] - typical).abs() / abs(typical)
        agrees = (group["head_rel_diff"] <= TOLERANCE[dtype]) & (spread <= TOLERANCE[dtype])
        ran = group["mean_final_loss"].notna()
        table.loc[group.index[ran], "loss_agrees"] = agrees[ran]
    return table


def rates_line(measured: dict) -> str:
    """One line with the card's GEMM rates and copy bandwidth, or why they are missing."""
    if "error" in measured or measured["copy"] != measured["copy"]:
        return f"card rates: not measured ({measured.get('error', 'see the log')})"
    return (
        f"card, measured in the same run: float64 GEMM {measured['gemm_float64'] / 1e3:,.1f} "
        f"TFLOP/s, float32 GEMM {measured['gemm_float32'] / 1e3:,.1f} TFLOP/s (CuPy matmul, "
        f"8192^3, no TF32), device-to-device copy {measured['copy']:,.0f} GB/s (read + written)"
    )


def table_rates(table: pd.DataFrame) -> dict:
    """The rates :func:`run_gpu_bench` measured, back from its table (NaN if it could not)."""
    out = {"copy": float(table["copy_gbps"].iloc[0])}
    for dtype in DTYPES:
        column = table.loc[table["dtype"] == dtype, "gemm_gflops"]
        out[f"gemm_{dtype}"] = float(column.iloc[0]) if len(column) else float("nan")
    return out


def targets(table: pd.DataFrame) -> list[str]:
    """Lines that say how the run stands against the GPU targets: nnkit ahead of both
    peers on every case and dtype, B3g at :data:`GEMM_TARGET` of the GEMM rate or more,
    and every loss in agreement."""
    nnkit = table[table["impl"].str.startswith("nnkit-")]
    ahead = [
        f"{case} {dtype} {format_cell('vs_best_peer', group['vs_best_peer'].max())}"
        for (case, dtype), group in nnkit.groupby(["case", "dtype"], sort=False)
    ]
    wide = nnkit[nnkit["case"] == "B3g"].groupby("dtype", sort=False)["gemm_share"].max()
    share = [f"{dtype} {format_cell('gemm_share', value)}" for dtype, value in wide.items()]
    agreed = table["loss_agrees"].eq(True).sum()
    return [
        "best nnkit against the best GPU peer (target > 1): " + (", ".join(ahead) or "-"),
        f"B3g useful FLOP rate as a share of the GEMM rate (target >= {GEMM_TARGET:.0%}): "
        + (", ".join(share) or "-"),
        (f"losses agree (float64 to {TOLERANCE['float64']:g}, float32 to "
         f"{TOLERANCE['float32']:g}, relative): {agreed} of {len(table)} rows"),
    ]


def header(info: dict, table: pd.DataFrame, command: str, repeats: int) -> str:
    """The Markdown text above a GPU table: card, date, software, rates, command, targets."""
    dev = info["device"]
    software = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    measured = table_rates(table)
    lines = [
        f"# nnkit bench --gpu, {time.strftime('%Y-%m-%d')}",
        "",
        (f"Card: {dev['name']} ({dev['memory_gib']:.0f} GiB, compute capability "
         f"{dev['compute_capability']}), CUDA driver {dev['driver']}, runtime {dev['runtime']}; "
         f"{info['host']}, Python {info['python']}; {software}."),
        "",
        rates_line(measured) + ".",
        "",
        (f"Command: `{command}`. Medians of {repeats} runs after a warm-up, each implementation "
         f"in its own process. \"vs NumPy\": relative difference of the mean final loss of the "
         f"first {HEAD} inits from NumPy's (float64, CPU); \"loss agrees\": that difference and "
         f"the one of the mean over all inits from the median of the implementations are at "
         f"most {TOLERANCE['float64']:g} (float64) or {TOLERANCE['float32']:g} (float32)."),
        "",
        *(f"- {line}" for line in targets(table)),
    ]  # fmt: skip
    return "\n".join(lines)


def bench(case_list, backend_names, with_peers, repeats, folder, command, *, info=None,
          timeout=TIMEOUT, deadline=None, echo=print) -> tuple[pd.DataFrame, tuple[Path, Path]]:  # fmt: skip
    """What ``nnkit bench --gpu`` does: find the card (or raise :class:`UserError`), time
    every implementation, write ``folder/gpu-<stamp>.parquet`` and ``.md``; returns the
    table and the two paths."""
    info = info or describe(backend_names)
    impls, notes = implementations(backend_names, with_peers, info)
    for note in notes:
        echo(f"skipped {note}")
    if not impls:
        raise UserError("nothing to time on the GPU: no usable GPU backend or peer")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    table = run_gpu_bench(case_list, impls, repeats=repeats, timeout=timeout, deadline=deadline,
                          echo=echo)  # fmt: skip
    paths = write_table(table, folder, f"gpu-{stamp}", header(info, table, command, repeats), COLUMNS)
    return table, paths


def short(table: pd.DataFrame) -> str:
    """The summary table: case, dtype, implementation, speed, ratio, GEMM share, agreement."""
    return markdown(table, {column: COLUMNS[column] for column in SHORT})
