"""The ``nnkit`` command: parse options, call the library, print results.

A mistake in what the user asked for (missing file, unknown key, bad value, unknown or
unusable backend) ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__


class _UserFacing(click.ClickException):
    exit_code = 2


class _Group(click.Group):
    """Turns :class:`nnkit.UserError` into one line on stderr and exit status 2."""

    def invoke(self, ctx):
        from .errors import UserError

        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise _UserFacing(str(exc)) from None
        except MemoryError:
            raise _UserFacing(
                "out of memory: the data or the networks are too large for this machine "
                "(lower data.n, the widths, run.chunk_size or run.memory_mb)"
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnkit")
def main():
    """Map the minima of small neural networks by training many random inits at once.

    \b
    nnkit run experiments/quickstart.toml
    nnkit show results/quickstart/<run-id>
    nnkit plot results/quickstart/<run-id>
    nnkit minima results/quickstart/<run-id>
    nnkit backends
    """


@main.command()
@click.argument("experiment_file", metavar="EXPERIMENT.toml")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.lr=0.5 (repeatable).")
@click.option("--inits", type=int, default=None, help="Number of random inits (overrides 'inits').")
@click.option("--backend", default=None,
              help="numpy, numba, cupy, cuda or auto (overrides run.backend).")
@click.option("--results", "results_dir", default="results", show_default=True,
              metavar="DIR", help="Folder that receives <experiment>/<run-id>/.")
@click.option("--run-id", default=None, help="Name of the run folder (default: time stamp).")
@click.option("--resume", is_flag=True,
              help="Continue the newest unfinished run of this experiment (or --run-id).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary table.")
def run(experiment_file, overrides, inits, backend, results_dir, run_id, resume, quiet):
    """Train every init of EXPERIMENT.toml and write results/<experiment>/<run-id>/."""
    from . import config
    from .runner import run_experiment
    from .results import load

    overrides = list(overrides)
    if inits is not None:
        overrides.append(f"inits={inits}")
    experiment = config.load(experiment_file, overrides)
    try:
        path = run_experiment(
            experiment,
            results_dir=results_dir,
            backend=backend,
            run_id=run_id,
            resume=resume,
            progress=False if quiet else None,
        )
    except KeyboardInterrupt as exc:
        from .runner import AnalysisInterrupted

        if isinstance(exc, AnalysisInterrupted):
            hint = f"training is finished and saved; analyse with nnkit minima {exc.run_dir}"
        else:
            hint = f"finished chunks are kept; continue with nnkit run {experiment_file} --resume"
        click.echo(f"\ninterrupted: {hint}", err=True)
        sys.exit(130)
    result = load(path)
    if not quiet:
        _print_summary(result)
    click.echo(str(path))


@main.command()
@click.argument("run_dir", metavar="RUN")
def show(run_dir):
    """Summarise the finished run folder RUN: status counts and loss quantiles, and,
    after an analysis, where the inits ended and the most frequent minima."""
    from .results import load

    _print_summary(load(run_dir))


@main.command()
@click.argument("run_dir", metavar="RUN")
@click.option("--set", "overrides", multiple=True, metavar="analysis.KEY=VALUE",
              help="Change an [analysis] setting for this analysis (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the run folder.")
def minima(run_dir, overrides, quiet):
    """Map the minima of the finished run RUN: polish, Hessians, distinct minima modulo
    symmetry. Writes RUN/minima.parquet, the new runs.parquet columns and figures."""
    from .analysis import analyse_run
    from .results import load

    run = load(run_dir)
    table = analyse_run(run, overrides, echo=None if quiet else lambda m: click.echo(m, err=True))
    if not quiet:
        _print_minima(run, table)
    click.echo(str(run.path))


@main.command()
@click.argument("run_dir", metavar="RUN")
def plot(run_dir):
    """Draw the figures of the finished run RUN into RUN/figures/."""
    from .plots import plot_run
    from .results import load

    for path in plot_run(load(run_dir)):
        click.echo(str(path))


@main.command()
@click.option("--case", "case_names", multiple=True, metavar="NAME",
              help="B1, B2 or B3; with --gpu B1g, B2g or B3g (repeatable; default: all three, "
                   "or none with --custom).")
@click.option("--custom", "customs", multiple=True, metavar="R,n,d,k,steps[,lr]",
              help="A case of the same problem at another size (repeatable).")
@click.option("--backends", "backend_names", default=None,
              help="nnkit backends to time, comma-separated (auto allowed; with --gpu: cuda "
                   "and cupy only)  [default: numba; cuda,cupy with --gpu]")
@click.option("--peers", is_flag=True, help="Also time NumPy batched, PyTorch and JAX where installed "
                                            "(with --gpu: PyTorch and JAX on the GPU).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Timed runs per implementation; the median is reported (use at least 3 "
                   "for figures you quote).")
@click.option("--scaling", is_flag=True, help="Also time the first backend over R and n.")
@click.option("--gpu", is_flag=True,
              help="Time the GPU cases B1g, B2g, B3g in float64 and float32 on CUDA device 0, "
                   "against the card's GEMM rates and copy bandwidth; tables go to DIR/gpu/.")
@click.option("--results", "results_dir", default="results", show_default=True, metavar="DIR",
              help="Tables go to DIR/bench/ (DIR/gpu/ with --gpu).")
def bench(case_names, customs, backend_names, peers, repeats, scaling, gpu, results_dir):
    """Time training many networks against the peers (init-steps per second)."""
    import platform
    import time as _time

    from . import bench as bm
    from .backends.numpy_backend import cpu_device
    from .errors import UserError

    command = "nnkit " + " ".join(sys.argv[1:])
    echo_err = lambda m: click.echo(m, err=True)  # noqa: E731
    if gpu:
        from .bench import gpu as bg

        if customs or scaling:
            raise UserError("--gpu times the GPU cases only: --custom and --scaling are for the CPU bench")
        cases, names = bg.selection(case_names, backend_names)
        table, paths = bg.bench(cases, names, peers, repeats, Path(results_dir) / "gpu", command,
                                echo=echo_err)
        click.echo(bm.markdown(table, bg.COLUMNS))
        for line in bg.targets(table):
            click.echo(line)
        for path in paths:
            click.echo(str(path), err=True)
        return
    cases = []
    for name in case_names or (() if customs else tuple(bm.CASES)):
        if name not in bm.CASES:
            raise UserError(f"unknown case {name!r} (expected one of {', '.join(bm.CASES)})")
        cases.append(bm.CASES[name])
    for spec in customs:
        try:
            cases.append(bm.custom(spec))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    names = [b.strip() for b in (backend_names or "numba").split(",") if b.strip()]
    impls, notes = bm.implementations(names, peers)
    for note in notes:
        click.echo(f"skipped {note}", err=True)
    if not impls:
        raise UserError("nothing to time: no usable backend or peer")
    stamp = _time.strftime("%Y%m%d-%H%M%S")
    machine = f"{cpu_device()}, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    table = bm.run_bench(cases, impls, repeats=repeats, echo=echo_err)
    header = (f"# nnkit bench, {_time.strftime('%Y-%m-%d')}\n\nMachine: {machine}. "
              f"float64 GEMM rate measured in the same run: {table['gemm_gflops'].iloc[0]:.1f} GFLOP/s. "
              f"Command: `{command}`. Medians of {repeats} runs after a warm-up, "
              f"each implementation in its own process.")
    paths = bm.write_table(table, Path(results_dir) / "bench", f"bench-{stamp}", header)
    click.echo(bm.markdown(table))
    if scaling:
        grow = bm.scaling(impls[0], repeats=repeats, echo=echo_err)
        cols = {"R": "R", "n": "n", "init_steps_per_s": "init-steps/s",
                "us_per_init_step": "us per init-step", "peak_rss_mb": "peak MB"}
        grow_paths = bm.write_table(grow, Path(results_dir) / "bench", f"scaling-{stamp}",
                                    header.replace("# nnkit bench", "# nnkit bench --scaling"))
        click.echo(bm.markdown(grow, cols))
        paths += grow_paths
    for path in paths:
        click.echo(str(path), err=True)


@main.command(name="backends")
def backends_cmd():
    """List the backends, the device each would use here, or why it cannot run."""
    from . import backends

    auto = backends.resolve("auto")
    for info in backends.probe_all():
        mark = "yes" if info.usable else "no"
        where = info.device if info.usable else info.reason
        tag = "  <- auto" if info.name == auto else ""
        click.echo(f"{info.name:<7} {mark:<4} {where}{tag}")


def _print_summary(result):
    import pandas as pd

    meta = result.meta
    compiling = sum(session.get("compile_seconds", 0.0) for session in meta.get("sessions", []))
    click.echo(
        f"{meta['experiment']}: {meta['inits']} inits, {meta['points']} point(s), "
        f"backend {meta['backend']} ({meta['dtype']}), {meta.get('train_seconds', 0):.2f} s"
        + (f" ({compiling:.2f} s of it compiling kernels)" if compiling >= 0.5 else "")
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4g}".format):
        click.echo(result.summary().to_string(index=False))
    _print_minima(result)


def _print_minima(result, minima=None):
    """The minima table of a run that has one: the most frequent minima of each point."""
    import pandas as pd

    from .analysis import landing, load_minima, minima_summary

    minima = load_minima(result.path) if minima is None else minima
    if minima is None:
        return
    if minima.empty:
        click.echo("\nno init ended at a certified minimum (the column kind of runs.parquet says where they did)")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4g}".format):
        click.echo("\nwhere the inits ended:")
        click.echo(landing(result.runs, minima, result.sweep_keys).to_string(index=False))
        click.echo(f"\ndistinct minima, most frequent first ({len(minima)} in all; "
                   "minima.parquet has every one):")
        click.echo(minima_summary(minima, result.sweep_keys).to_string(index=False))


if __name__ == "__main__":  # pragma: no cover
    main()
