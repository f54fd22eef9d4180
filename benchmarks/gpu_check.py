"""Check nnkit on an NVIDIA GPU from a source checkout, with no network access.

    python benchmarks/gpu_check.py [--out DIR] [--quick] [--budget SECONDS]

1. Stops at once, with exit status 2 and one line, when there is no usable CUDA GPU
   (CuPy must be installed and see a device).
2. Prints the card and the versions of the packages that matter.
3. Runs the GPU tests: ``NNKIT_TEST_GPU=1 python -m pytest -q tests/test_cuda_backend.py
   tests/test_gpu.py -m "not slow"`` (those of the two files that exist).
4. Runs what ``nnkit bench --gpu --peers`` runs: the cases B1g, B2g and B3g in float64
   and float32 with nnkit's ``cuda`` and ``cupy`` backends, PyTorch and JAX on the same
   card, and the card's GEMM rates and copy bandwidth; each implementation has a
   timeout and the whole script keeps to ``--budget`` (a late implementation becomes an
   error row). Then the population case P20g (k = d = 20, 10,000 inits trained to a
   gradient norm of 1e-9; target: under a minute) with the ``cuda`` backend, JAX on the
   card and the ``numba`` backend on the machine's cores, one run each.
5. Writes everything to ``DIR/gpu_check.log`` (default DIR: ``results/gpu/`` of the
   checkout) and the bench table to ``DIR/gpu-<stamp>.parquet`` and ``.md``.
6. Ends with a short table, the card's rates, the targets and the tests' summary line.

``--quick``: one timed run per implementation on a tenth of the inits of each case, for
a first smoke run.

nnkit need not be installed: the checkout goes first on the path of this script and of
every process it starts, and so do the wheels in the checkout's folder ``.whl/``,
unpacked into a temporary folder (for a package missing on the machine, such as
array-api-compat, or one in another version, such as a NumPy below 2.5 where the
machine's numba-cuda 0.30 needs it). Nothing is downloaded or installed for good. Exit status: 0 when everything ran
and agreed, 1 when a test, an implementation or a loss agreement failed, 2 without a
GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ("tests/test_cuda_backend.py", "tests/test_gpu.py", "tests/test_population_cuda.py")
#: wheels of ``.whl/`` that do not install here (made for another Python, say)
_LEFT_OUT: list[str] = []


def main(argv=None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    _put_checkout_on_path()
    from nnkit.bench import gpu
    from nnkit.errors import UserError

    try:
        info = gpu.describe()
    except UserError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu_check.log", "w") as handle:
        log = _Log(handle)
        command = "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
        log(f"{command}  ({time.strftime('%Y-%m-%d %H:%M:%S')}, commit {_commit()})")
        if _LEFT_OUT:
            log(f"wheels left out (they do not install here): {', '.join(_LEFT_OUT)}")
        for line in _device_lines(info):
            log(line)
        log("\n== GPU tests")
        tests_ok, tests = _run_tests(log, timeout=90 if args.quick else 150)
        log(tests)
        log("\n== bench")
        try:
            table, paths = _bench(gpu, info, args, command, started + args.budget - 10, log)
        except UserError as exc:
            log(f"bench: {exc}")
            log(tests)
            return 1
        log("\n== population case P20g")
        population = _population(log, args, started + args.budget - 5)
        log("\n== summary")
        log(gpu.short(table))
        for line in population:
            log(line)
        for line in gpu.targets(table):
            log(line)
        log(gpu.rates_line(gpu.table_rates(table)))
        log(tests)
        log(f"log: {out / 'gpu_check.log'}; tables: {', '.join(str(p) for p in paths)}")
        log(f"took {time.monotonic() - started:.0f} s")
    ran = table["error"].fillna("").eq("").all() and table["loss_agrees"].eq(True).all()
    return 0 if tests_ok and ran else 1


def _parse(argv):
    parser = argparse.ArgumentParser(description="Check nnkit on an NVIDIA GPU (tests and bench).")
    parser.add_argument("--out", default=str(ROOT / "results" / "gpu"),
                        help="folder for gpu_check.log and the tables (default: results/gpu/)")
    parser.add_argument("--quick", action="store_true",
                        help="one timed run per implementation on a tenth of the inits")
    parser.add_argument("--budget", type=float, default=450,
                        help="seconds the whole check may take (default: 450)")
    return parser.parse_args(argv)  # fmt: skip


def _put_checkout_on_path() -> None:
    """The checkout, and the packages of the wheels in its ``.whl/``, first on
    ``sys.path`` and on the ``PYTHONPATH`` of the processes started from here.

    The wheels are unpacked by pip (``--no-index``: nothing is downloaded) into a
    temporary folder, so that binary ones work too: a NumPy older than the machine's,
    say, where its numba-cuda needs one."""
    paths = [str(ROOT)]
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:
        import tempfile

        target = tempfile.mkdtemp(prefix="nnkit-wheels-")
        for wheel in wheels:  # one at a time: a wheel for another Python is left out
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                 "--no-compile", "--target", target, str(wheel)],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if done.returncode != 0:
                _LEFT_OUT.append(wheel.name)
        paths.insert(0, target)
    sys.path[:0] = paths
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])


def _commit() -> str:
    """The checkout's commit, marked when files differ from it ("unknown" without git)."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = _output([*git, "rev-parse", "--short", "HEAD"])
        changed = _output([*git, "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with local changes" if changed else "")


def _output(cmd) -> str:
    """What ``cmd`` prints (an exception when it fails)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout.strip()


class _Log:
    """Text to the log file and, unless ``screen=False``, to the screen."""

    def __init__(self, handle):
        self._handle = handle

    def __call__(self, text: str = "", screen: bool = True) -> None:
        self._handle.write(text + "\n")
        self._handle.flush()
        if screen:
            print(text, flush=True)


def _device_lines(info: dict) -> list[str]:
    """The card as ``nvidia-smi -L`` and CuPy see it, and the package versions."""
    dev = info["device"]
    lines = ["== device"]
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
        lines += smi.stdout.strip().splitlines() or [f"nvidia-smi -L: {smi.stderr.strip()}"]
    lines.append(
        f"CuPy: {dev['count']} device(s); device 0: {dev['name']}, {dev['memory_gib']:.1f} GiB "
        f"({dev['free_gib']:.1f} GiB free), compute capability {dev['compute_capability']}, "
        f"CUDA driver {dev['driver']}, runtime {dev['runtime']}"
    )
    from nnkit.bench.gpu import PACKAGES

    found = info["versions"]
    missing = [name for name in PACKAGES if name not in found and name != "cupy"]
    lines.append(f"Python {info['python']} on {info['host']}; "
                 + ", ".join(f"{name} {version}" for name, version in found.items())
                 + (f"; not installed: {', '.join(missing)}" if missing else ""))  # fmt: skip
    for name, reason in info["backends"].items():
        lines.append(f"nnkit backend {name}: " + (reason or "usable"))
    return lines


def _run_tests(log, timeout: float) -> tuple[bool, str]:
    """``(passed, summary line)`` of the GPU tests; their output goes to the log only."""
    present = [name for name in TESTS if (ROOT / name).is_file()]
    if not present:
        return True, f"tests: none of {', '.join(TESTS)} in this checkout"
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *present, "-m", "not slow"]
    env = {**os.environ, "NNKIT_TEST_GPU": "1"}
    log("NNKIT_TEST_GPU=1 " + " ".join(cmd[1:]))
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        log(_text(exc.stdout) + _text(exc.stderr), screen=False)
        return False, f"tests: stopped after {timeout:.0f} s without a result"
    log(done.stdout + done.stderr, screen=False)
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
    return done.returncode in (0, 5), f"tests ({' '.join(present)}): {last} (exit status {done.returncode})"


def _population(log, args, deadline) -> list[str]:
    """One run of each implementation of the population case P20g (a tenth of its
    inits with ``--quick``), each in its own process; a line per implementation."""
    import json

    lines = []
    for impl, limit in (("nnkit-cuda", 150), ("jax-vmap", 150), ("nnkit-numba", 120)):
        left = deadline - time.monotonic()
        if left < 20:
            lines.append(f"P20g {impl}: not run (the budget is spent)")
            continue
        cmd = [sys.executable, "-m", "nnkit.bench.population", "--case", "P20g", "--impl", impl]
        cmd += ["--inits", "1000"] if args.quick else []
        log(" ".join(cmd[1:]), screen=False)
        try:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=min(limit, left),
                                  check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            lines.append(f"P20g {impl}: stopped after {min(limit, left):.0f} s")
            continue
        log(done.stdout + done.stderr, screen=False)
        try:
            row = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            lines.append(f"P20g {impl}: failed (exit status {done.returncode}; see the log)")
            continue
        lines.append(f"P20g {impl}: {row['seconds']:.1f} s for {row['init_steps']:,} init-steps, mean final loss "
                     f"{row['mean_final_loss']:.10g}, {row['converged']} at loss < 1e-10 (target for cuda: < 60 s)")
    return lines


def _text(data) -> str:
    """Captured output of a process that was stopped (bytes or text, or None)."""
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _bench(gpu, info, args, command, deadline, log):
    """The GPU bench, all of it logged; returns the table and the paths it was written to."""
    cases = list(gpu.GPU_CASES.values())
    if args.quick:
        cases = gpu.scaled(cases, 10)
    return gpu.bench(
        cases, gpu.BACKENDS, True, 1 if args.quick else 3, args.out, command, info=info,
        timeout=60 if args.quick else 120, deadline=deadline, echo=log,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
