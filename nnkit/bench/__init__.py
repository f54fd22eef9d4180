"""``nnkit bench``: nnkit's backends against NumPy, PyTorch and JAX on the cases of
:mod:`nnkit.bench.cases`, each implementation in a process of its own, medians of
several runs after a warm-up, taken in rounds (:mod:`nnkit.bench.rounds`), with the
machine's own GEMM rate measured in the same run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from ..about import install_hint
from .cases import CASES, Case, custom
from .peers import NEEDS, ON_GPU, PEERS
from .rounds import run_rounds

__all__ = ["CASES", "Case", "custom", "implementations", "run_bench", "scaling", "write_table"]

#: relative agreement of the mean final loss required between implementations, per dtype
AGREEMENT = {"float64": 1e-9, "float32": 1e-3}


def implementations(backend_names, with_peers: bool) -> tuple[list[str], list[str]]:
    """``(impls to run, notes on what was left out and why)``."""
    from .. import backends

    impls, notes = [], []
    for name in backend_names:
        if name == "auto":
            name = backends.resolve("auto")
        info = backends.probe(name)
        if info.usable:
            impls.append(f"nnkit-{name}")
        else:
            notes.append(f"nnkit-{name}: {info.reason}")
    if with_peers:
        for peer in (peer for peer in PEERS if peer not in ON_GPU):
            if importlib.util.find_spec(NEEDS[peer]) is None:
                notes.append(f"{peer}: not installed ({install_hint('bench')})")
            else:
                impls.append(peer)
    return impls, notes


def run_worker(args, timeout, module="nnkit.bench.worker"):
    """The JSON line of ``python -m MODULE args``, or ``{"error": why}``."""
    cmd = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200]}
    return json.loads(lines[-1])


def gemm_rate(dtype: str = "float64") -> float:
    """GEMM rate of this machine in ``dtype`` in GFLOP/s, measured in a fresh process."""
    code = f"from nnkit.bench.worker import gemm_rate; print(gemm_rate(dtype={dtype!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def run_bench(case_list, impls, repeats=3, timeout=1800, echo=print, dtypes=("float64",)) -> pd.DataFrame:
    """One row per case, dtype and implementation: init-steps/s, ratios (within the
    case and dtype), the share of this machine's GEMM rate in that dtype, memory."""
    gemm = {dtype: gemm_rate(dtype) for dtype in dtypes}
    for dtype, rate in gemm.items():
        echo(f"{dtype} GEMM rate of this machine: {rate:.1f} GFLOP/s")
    rows = []
    for case in case_list:
        for dtype in dtypes:
            jobs = {impl: ["--case", _case_arg(case), "--impl", impl, "--dtype", dtype] for impl in impls}
            echo(f"  {case.name} {dtype}:")
            for impl, out in run_rounds(jobs, repeats, timeout, echo).items():
                rows.append({"case": case.name, "dtype": dtype, "impl": impl, "R": case.R, "n": case.n,
                             "d": case.d, "k": case.k, "steps": case.steps,
                             "wall_s": out.get("warmup_s", 0.0) + sum(out.get("times", [])), **out})  # fmt: skip
    table = pd.DataFrame(rows)
    for column in ("init_steps_per_s", "mean_final_loss", "error"):
        if column not in table:
            table[column] = float("nan") if column != "error" else ""
    table["gemm_gflops"] = table["dtype"].map(gemm)
    flops = {case.name: case.flops_per_init_step for case in case_list}
    table["gemm_share"] = table["init_steps_per_s"] * table["case"].map(flops) / (table["gemm_gflops"] * 1e9)
    for (name, dtype), group in table.groupby(["case", "dtype"], sort=False):
        peers = group[group["impl"].isin(list(PEERS))]
        best = peers["init_steps_per_s"].max() if len(peers) else float("nan")
        jax = group.loc[group["impl"] == "jax", "init_steps_per_s"]
        table.loc[group.index, "vs_best_peer"] = group["init_steps_per_s"] / best
        table.loc[group.index, "vs_jax"] = group["init_steps_per_s"] / (jax.iloc[0] if len(jax) else float("nan"))
        reference = group.loc[group["impl"].isin(["numpy-batched", "nnkit-numpy"]), "mean_final_loss"]
        reference = reference.dropna()
        if len(reference):
            ref = reference.iloc[0]
            table.loc[group.index, "loss_agrees"] = (
                (group["mean_final_loss"] - ref).abs() <= AGREEMENT[dtype] * abs(ref)
            )
    return table


def _case_arg(case: Case) -> str:
    if case.name in CASES and CASES[case.name] == case:
        return case.name
    return f"{case.R},{case.n},{case.d},{case.k},{case.steps},{case.lr}"


def scaling(impl="nnkit-numba", repeats=3, echo=print) -> pd.DataFrame:
    """How time and peak memory grow with R (n = 100) and with n (R = 1,000)."""
    rows = []
    grid = [custom(f"{R},100,10,10,20") for R in (100, 1_000, 10_000, 100_000)]
    grid += [custom(f"1000,{n},10,10,20") for n in (10, 100, 1_000, 10_000)]
    for case in grid:
        echo(f"  {case.name} {impl} ...")
        out = run_worker(["--case", _case_arg(case), "--impl", impl, "--repeats", str(repeats)], 1800)
        rows.append({"impl": impl, "R": case.R, "n": case.n, "d": case.d, "k": case.k,
                     "steps": case.steps, **out})  # fmt: skip
    table = pd.DataFrame(rows)
    table["us_per_init_step"] = 1e6 / table["init_steps_per_s"]
    return table


COLUMNS = {
    "case": "case", "dtype": "dtype", "impl": "implementation", "init_steps_per_s": "init-steps/s",
    "vs_best_peer": "x best peer", "vs_jax": "x JAX", "gemm_share": "share of GEMM (its dtype)",
    "peak_rss_mb": "peak MB", "compile_s": "compile s", "mean_final_loss": "mean final loss",
    "loss_agrees": "loss agrees", "error": "error",
}  # fmt: skip


def markdown(table: pd.DataFrame, columns=COLUMNS) -> str:
    cols = [c for c in columns if c in table]
    if "error" in cols and not table["error"].fillna("").astype(str).str.strip().any():
        cols.remove("error")  # a run in which nothing failed
    head = "| " + " | ".join(columns[c] for c in cols) + " |"
    rule = "|" + "---|" * len(cols)
    body = []
    for _, row in table.iterrows():
        body.append("| " + " | ".join(format_cell(c, row[c]) for c in cols) + " |")
    return "\n".join([head, rule, *body])


def format_cell(col, value):
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        if col in ("vs_best_peer", "vs_jax"):
            return f"{value:.2f}"
        if col == "gemm_share":
            return f"{100 * value:.0f}%"
        if col.endswith("_rel_diff"):
            return f"{value:.1e}"
        if col == "mean_final_loss":
            return f"{value:.10g}"
        if col == "init_steps_per_s":
            return f"{value:,.0f}"
        return f"{value:,.1f}"
    return str(value)


def write_table(table: pd.DataFrame, folder, stem: str, header: str, columns=COLUMNS) -> tuple[Path, Path]:
    """``folder/stem.parquet`` and ``folder/stem.md`` (with ``header`` above the table of
    ``columns``)."""
    from ..runs.store import write_parquet, write_text

    folder = Path(folder)
    write_parquet(folder / f"{stem}.parquet", table)
    write_text(folder / f"{stem}.md", header.rstrip() + "\n\n" + markdown(table, columns) + "\n")
    return folder / f"{stem}.parquet", folder / f"{stem}.md"
