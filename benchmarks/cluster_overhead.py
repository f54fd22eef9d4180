"""What a Dask cluster costs: one study of many small chunks, run by ``nnkit run`` on
this machine and on LocalClusters of N worker processes, whole commands timed (the
cluster's start and stop included), the median of ``--repeats``.

    python benchmarks/cluster_overhead.py --workers 2 --repeats 3

Each configuration is run once untimed first (Numba's cache, the imports). The table
goes to stdout and, with the machine and the command, to
``RESULTS/bench/cluster-DATE.md``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = """
name = "cluster-overhead"
seed = 1
inits = {inits}

[data]
kind = "teacher_student"
d = 10
n = 500
n_test = 0
teacher_width = 10

[model]
hidden = [10]
activation = "relu"
bias = false

[train]
lr = 0.05
max_steps = {steps}
grad_tol = 0.0

[run]
chunk_size = {chunk}
"""


def timed(args, folder: Path, label: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nnkit", *args, "--results", str(folder), "--run-id", label, "-q"],
                   check=True, capture_output=True, text=True)  # fmt: skip
    return time.perf_counter() - started


def _arguments(results: str) -> str:
    """This command's arguments, a results folder other than the default as DIR."""
    args = sys.argv[1:]
    return " ".join("DIR" if i and args[i - 1] == "--results" and a != "results" else a for i, a in enumerate(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="2", help="comma-separated worker counts")
    parser.add_argument("--inits", type=int, default=2560)
    parser.add_argument("--chunk", type=int, default=128, help="inits per chunk")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default="results")
    opts = parser.parse_args()
    counts = [int(w) for w in opts.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        exp = tmp / "exp.toml"
        exp.write_text(EXPERIMENT.format(inits=opts.inits, chunk=opts.chunk, steps=opts.steps))
        base = ["run", str(exp), "--backend", opts.backend]
        configs = [("here", base)] + [(f"{n} workers", [*base, "--workers", str(n)]) for n in counts]
        seconds = {}
        for label, args in configs:
            timed(args, tmp, f"warm-{label.replace(' ', '-')}")
            runs = [timed(args, tmp, f"{label.replace(' ', '-')}-{i}") for i in range(opts.repeats)]
            seconds[label] = statistics.median(runs)
            print(f"{label}: {', '.join(f'{s:.2f}' for s in runs)} s", file=sys.stderr)
    from nnkit.backends.numpy_backend import cpu_device

    chunks = -(-opts.inits // opts.chunk)
    here = seconds["here"]
    lines = [
        f"# Cluster overhead, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {cpu_device()}. Study: {opts.inits:,} inits in {chunks} chunks of {opts.chunk}, "
        f"d = k = 10 ReLU, n = 500, {opts.steps:,} steps, backend {opts.backend}; whole `nnkit run` "
        f"commands, median of {opts.repeats}.",
        "",
        f"Command: `python benchmarks/cluster_overhead.py {_arguments(opts.results)}`",
        "",
        "| where | wall s | vs here | init-steps/s |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for label, s in seconds.items():
        lines.append(f"| {label} | {s:.2f} | {s / here:.3f} | {opts.inits * opts.steps / s:,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(opts.results) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text)


if __name__ == "__main__":
    main()
