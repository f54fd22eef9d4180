"""Bands between minima of the k = 8 teacher-student study (n = k, the exact
population loss), relaxed and refined to certified transition states, timed.

    python benchmarks/landscape_bands.py --bands 100 --images 16

The study (``experiments/teacher_student_table.toml`` at k = 8, ``--inits`` inits) is
trained and analysed first, untimed. Its 9 distinct minima give only 36 pairs, so the
bands join the polished end points of inits at different minima (each a symmetric
copy of its minimum, aligned onto the other end as the survey does): ``--bands``
distinct pairs of end points, drawn with a fixed seed. Timed: the whole of one round
of :func:`nnkit.landscape.connect.connect` (alignment, AutoNEB, refining every top of
every profile, the descents on both sides, matching), the median of ``--repeats``.
The table goes to stdout and, with the machine and the command, to
``RESULTS/bench/landscape-DATE.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nnkit
from nnkit.landscape import connect
from nnkit.study import config


def cpu() -> str:
    """The processor's name (Linux), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def study(inits: int, k: int, results: Path):
    exp = config.load(
        Path(__file__).resolve().parent.parent / "experiments" / "teacher_student_table.toml",
        ["sweep={}", f"data.d={k}", f"data.teacher_width={k}", f"model.hidden=[{k}]", f"inits={inits}"],
    )
    return nnkit.load(nnkit.run_experiment(exp, results_dir=results, progress=False))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bands", type=int, default=100)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--inits", type=int, default=400)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="numba", help="numba (what nnkit landscape uses) or numpy")
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        run = study(args.inits, args.k, Path(tmp))
        runs = run.runs
        at_min = np.flatnonzero(runs["minimum"].to_numpy() >= 0)
        theta = run.params(0, polished=True)[at_min]
        problem = nnkit.study.problem(run.experiment)
    objective = nnkit.make_objective(problem, nnkit.backends.get(args.backend))
    objective.value_and_grad(theta[:2])  # compiled before the clock starts
    ids = runs["minimum"].to_numpy()[at_min]
    loss = runs["polished_loss"].to_numpy()[at_min]
    kind = runs["kind"].to_numpy()[at_min]
    rng = np.random.default_rng(0)
    distinct = np.unique(ids, return_counts=True)[1]
    possible = (len(ids) ** 2 - int(np.sum(distinct**2))) // 2  # pairs of end points at different minima
    if possible < args.bands:
        sys.exit(f"the study gives only {possible} pairs of end points at different minima; ask for fewer --bands")
    pairs = set()
    while len(pairs) < args.bands:
        i, j = sorted(rng.choice(len(at_min), 2, replace=False))
        if ids[i] != ids[j]:
            pairs.add((int(i), int(j)))
    pair = np.array(sorted(pairs))
    settings = dataclasses.replace(connect.PathSettings(), images=args.images, rounds=1)
    times, found = [], None
    for _ in range(args.repeats):
        started = time.perf_counter()
        found = connect.connect(objective, theta, loss, np.arange(len(theta)), kind, pair, settings)
        times.append(time.perf_counter() - started)
    paths, ts = found.paths, found.transition_states
    converged = int(paths.groupby("band")["neb_converged"].first().sum())
    rows = [
        ("bands (pairs of minima)", f"{args.bands}"),
        ("images per band", f"{args.images}"),
        ("bands converged (largest force <= 1e-6)", f"{converged}"),
        ("transition states (distinct, certified: index 1, gradient norm <= 1e-10)", f"{len(ts)}"),
        ("seconds, median of " + str(args.repeats), f"{statistics.median(times):.2f}"),
        ("seconds, all runs", ", ".join(f"{t:.2f}" for t in times)),
    ]
    command = "python benchmarks/landscape_bands.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"# Landscape bands, k = {args.k} teacher-student (n = k), {time.strftime('%Y-%m-%d')}", "",
             f"Machine: {cpu()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}, NumPy {np.__version__}, nnkit {nnkit.__version__}; "
             f"backend {args.backend} (float64). Command: `{command.strip()}`", "",
             "| | |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.results) / "bench" / f"landscape-{time.strftime('%Y%m%d-%H%M%S')}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(out)


if __name__ == "__main__":
    main()
