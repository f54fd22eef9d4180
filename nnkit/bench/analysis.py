"""The analysis cases of ``nnkit bench`` (``--case A14``): what mapping the minima of a
trained batch costs. ``R`` ReLU students of the ``P14`` problem (``k = d = 14``, a
fixed output of ones, 196 parameters, the exact population loss) are trained by
nnkit on ``numba`` to a gradient norm of ``1e-9`` (not timed); what is timed is the
analysis of their end points as a run does it (:func:`nnkit.landscape.analyse` with
the settings of ``experiments/teacher_student_table.toml``): polishing to ``1e-10``,
the Hessian spectra, the canonical forms and the grouping into distinct minima, modulo
the teacher's unit permutations too. One process; ``--repeats`` runs after a warm-up.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from .population import PopulationCase, nnkit_problem, problem


def label(case) -> str:
    """What an analysis case (a :class:`~.population.PopulationCase`) analyses."""
    return (f"{case.name} (analysis of R={case.R:,} P14 students, k=d={case.k}, {case.k * case.k} "
            f"parameters, trained to |g| <= {case.grad_tol:g})")  # fmt: skip


#: the students each case trains, then analyses
ANALYSIS_CASES = {"A14": PopulationCase("A14", 1000, 14)}

#: the columns of the analysis table
COLUMNS = {
    "case": "case", "inits": "inits", "parameters": "parameters", "seconds": "seconds",
    "polish_s": "polish s", "spectrum_s": "spectrum s", "group_s": "group s",
    "certified": "certified", "minima": "distinct minima", "train_s": "training s (not timed)",
}  # fmt: skip


def _objective(case: PopulationCase):
    """The problem, the inits and ``backend name -> objective`` of ``case``."""
    from nnkit import backends
    from nnkit.objective import make_objective

    V, theta0 = problem(case)
    prob = nnkit_problem(case, V)
    return prob, theta0, (lambda name: make_objective(prob, backends.get(name)))


def bench(names, repeats=3, echo=print, inits=0):
    """One row per analysis case: the median seconds of ``repeats`` analyses of the
    same trained batch, and the seconds of each stage of the median run (``inits``:
    only that many students, for a quick check)."""
    import functools

    import pandas as pd

    from nnkit.landscape import problem_symmetry
    from nnkit.landscape.minima import AnalysisConfig, analyse, rows_per_slice
    from nnkit.training import TrainConfig, train

    rows = []
    for name in names:
        case = ANALYSIS_CASES[name]
        if inits:
            case = dataclasses.replace(case, R=inits)
        prob, theta0, objective_on = _objective(case)
        echo(f"  {label(case)}: training (not timed)")
        started = time.perf_counter()
        trained = train(objective_on("numba"), theta0, TrainConfig(lr=case.lr, max_steps=200_000, grad_tol=case.grad_tol))
        train_s = time.perf_counter() - started
        host = objective_on("numpy")
        cfg = AnalysisConfig(enabled=True, grad_tol=1e-10, polish_steps=100, optimum=0.0, global_tol=1e-8,
                             problem_symmetry="teacher_permutations")  # fmt: skip
        keys = functools.partial(problem_symmetry.invariants, prob)
        slice_rows = rows_per_slice(prob.model, prob.data.n, 512)
        runs = []
        for i in range(max(repeats, 1) + 1):  # the first is the warm-up
            seconds = {}
            started = time.perf_counter()
            _, per_init, minima = analyse(host, trained.theta, cfg, np.arange(case.R), None, slice_rows,
                                          seconds=seconds, orbit_keys=keys)  # fmt: skip
            total = time.perf_counter() - started
            if i:
                runs.append((total, seconds, per_init, minima))
                echo(f"    {total:.2f} s")
        total, seconds, per_init, minima = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        rows.append({
            "case": name, "inits": case.R, "parameters": case.k * case.k,
            "seconds": statistics.median(r[0] for r in runs), "times": [round(r[0], 3) for r in runs],
            **{f"{stage}_s": seconds.get(stage, 0.0) for stage in ("polish", "spectrum", "group")},
            "certified": int((per_init["kind"] != "not converged").sum()), "minima": len(minima),
            "train_s": train_s,
        })  # fmt: skip
    return pd.DataFrame(rows)

