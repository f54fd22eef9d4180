"""What ``nnkit bench`` does with its options: pick the cases and implementations, time
them, print and write the tables."""

from __future__ import annotations

import platform
import time
from pathlib import Path

from ..backends.numpy_backend import cpu_device
from ..errors import UserError
from . import CASES, custom, implementations, markdown, run_bench, scaling, write_table


def bench(case_names, customs, backend_list, peers, repeats, scaling_too, gpu, results_dir, command,
          echo=print, echo_err=print, dtypes=("float64", "float32")) -> None:  # fmt: skip
    """``nnkit bench`` (see its ``--help``): tables on ``echo``, progress on ``echo_err``."""
    if gpu:
        from . import gpu as bg

        if customs or scaling_too:
            raise UserError("--gpu times the GPU cases only: --custom and --scaling are for the CPU bench")
        cases, names = bg.selection(case_names, backend_list)
        table, paths = bg.bench(cases, names, peers, repeats, Path(results_dir) / "gpu", command, echo=echo_err)
        echo(markdown(table, bg.COLUMNS))
        for line in bg.targets(table):
            echo(line)
        for path in paths:
            echo_err(str(path))
        return
    from . import analysis, population

    wanted = [n for n in case_names if n in analysis.ANALYSIS_CASES]
    if wanted:
        if len(wanted) != len(case_names) or customs or scaling_too:
            raise UserError("the analysis cases (A14) run on their own: no other --case, --custom or --scaling")
        _analysis(wanted, repeats, results_dir, command, echo, echo_err)
        return
    wanted = [n for n in case_names if n in population.POPULATION_CASES]
    if wanted:
        if len(wanted) != len(case_names) or customs or scaling_too:
            raise UserError("the population cases (P14, P20g) run on their own: no other --case, --custom or --scaling")
        _population(wanted, backend_list, peers, repeats, results_dir, command, echo, echo_err)
        return
    cases = []
    for name in case_names or (() if customs else tuple(CASES)):
        if name not in CASES:
            known = ", ".join([*CASES, *population.POPULATION_CASES, *analysis.ANALYSIS_CASES])
            raise UserError(f"unknown case {name!r} (expected one of {known})")
        cases.append(CASES[name])
    for spec in customs:
        try:
            cases.append(custom(spec))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    names = [b.strip() for b in (backend_list or "numba").split(",") if b.strip()]
    impls, notes = implementations(names, peers)
    for note in notes:
        echo_err(f"skipped {note}")
    if not impls:
        raise UserError("nothing to time: no usable backend or peer")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    machine = f"{cpu_device()}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    table = run_bench(cases, impls, repeats=repeats, echo=echo_err, dtypes=dtypes)
    rates = table.groupby("dtype", sort=False)["gemm_gflops"].first()
    header = (f"# nnkit bench, {time.strftime('%Y-%m-%d')}\n\nMachine: {machine}. "
              f"GEMM rates measured in the same run: "
              + ", ".join(f"{dtype} {rate:.1f} GFLOP/s" for dtype, rate in rates.items()) + ". "
              f"Command: `{command}`. Medians of {repeats} runs after a warm-up, "
              f"each implementation in its own process, timed in rounds of one run of each.")  # fmt: skip
    paths = list(write_table(table, Path(results_dir) / "bench", f"bench-{stamp}", header))
    echo(markdown(table))
    if scaling_too:
        grow = scaling(impls[0], repeats=repeats, echo=echo_err)
        cols = {"R": "R", "n": "n", "init_steps_per_s": "init-steps/s",
                "us_per_init_step": "us per init-step", "peak_rss_mb": "peak MB"}  # fmt: skip
        grow_paths = write_table(grow, Path(results_dir) / "bench", f"scaling-{stamp}",
                                 header.replace("# nnkit bench", "# nnkit bench --scaling"))  # fmt: skip
        echo(markdown(grow, cols))
        paths += grow_paths
    for path in paths:
        echo_err(str(path))


def _population(names, backend_list, peers, repeats, results_dir, command, echo, echo_err) -> None:
    """``nnkit bench --case P14``: whole population studies, nnkit against the peers."""
    from . import population

    case_peers = tuple(dict.fromkeys(p for n in names for p in population.POPULATION_CASES[n].peers))
    impls, notes = population.implementations(
        [b.strip() for b in (backend_list or "numba").split(",") if b.strip()], peers, case_peers
    )
    for note in notes:
        echo_err(f"skipped {note}")
    if not impls:
        raise UserError("nothing to time: no usable backend or peer")
    table = population.bench(names, impls, repeats=repeats, echo=echo_err)
    labels = "; ".join(population.POPULATION_CASES[n].label() for n in names)
    _publish(table, population.COLUMNS, "population", labels, command, results_dir, echo, echo_err,
             f"Seconds for the whole study (every init to its stop), medians of {repeats} runs after a warm-up, "
             "each implementation in its own process, timed in rounds of one run of each.")  # fmt: skip


def _analysis(names, repeats, results_dir, command, echo, echo_err) -> None:
    """``nnkit bench --case A14``: the analysis of a trained batch, in this process."""
    from . import analysis

    table = analysis.bench(names, repeats=repeats, echo=echo_err)
    labels = "; ".join(analysis.label(analysis.ANALYSIS_CASES[n]) for n in names)
    _publish(table, analysis.COLUMNS, "analysis", labels, command, results_dir, echo, echo_err,
             f"Seconds for the whole analysis (polish, spectra, grouping), median of {repeats} runs after a "
             "warm-up, in one process; the stages are those of the median run.")  # fmt: skip


def _publish(table, columns, kind, labels, command, results_dir, echo, echo_err, what) -> None:
    """``table`` as Markdown on ``echo``, and to ``results_dir/bench/KIND-STAMP.{md,parquet}``
    under a header naming the machine, the cases, the command and ``what`` was timed."""
    machine = f"{cpu_device()}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    header = (f"# nnkit bench ({kind}), {time.strftime('%Y-%m-%d')}\n\nMachine: {machine}. Cases: {labels}. "
              f"Command: `{command}`. {what}")  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    paths = write_table(table, Path(results_dir) / "bench", f"{kind}-{stamp}", header, columns)
    echo(markdown(table, columns))
    for path in paths:
        echo_err(str(path))
