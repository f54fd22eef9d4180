"""The ``nnkit`` command: parse options, call the library, print results.

A mistake in what the user asked for (missing file, unknown key, bad value, unknown or
unusable backend) ends with one line on stderr and exit status 2. What the library logs
(``logging.getLogger("nnkit")``: progress of the analysis, warnings when nnkit
overrides a choice) goes to stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import textwrap

import click

from .about import __version__
from .backends import names as backend_names

_BACKENDS = ", ".join(backend_names())


class _RunFolder(click.ParamType):
    """A run folder: its path, or a prefix of its id (``20261203-08``, or
    ``experiment/prefix``) among the runs under ``./results``; completes run ids."""

    name = "run"

    def convert(self, value, param, ctx):
        from .runs import catalog

        return str(catalog.find(value))

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        from .runs import catalog

        if "/" in incomplete or incomplete.startswith("."):
            return [CompletionItem(incomplete, type="dir")]
        ids = [path.name for path in catalog.folders("results")]
        return [CompletionItem(run_id) for run_id in ids if run_id.startswith(incomplete)]


RUN = _RunFolder()


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
        except BrokenPipeError:  # the reader of our output went away (nnkit show | head)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as exc:  # a folder that cannot be made or written, a full disk
            raise _UserFacing(_os_message(exc)) from None
        except MemoryError:
            raise _UserFacing(
                "out of memory: the data or the networks are too large for this machine "
                "(lower data.n, the widths, run.chunk_size or run.memory_mb)"
            ) from None


def _os_message(exc: OSError) -> str:
    """One line for an error of the file system: what failed, on which path."""
    what = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename
    if path is None:
        return what
    text = f"{path}: {what}"
    return f"{text} (and {exc.filename2})" if exc.filename2 else text


class _Stderr(logging.Handler):
    """nnkit's log records as lines on stderr (warnings marked as such)."""

    def emit(self, record):
        text = record.getMessage()
        click.echo(f"warning: {text}" if record.levelno >= logging.WARNING else text, err=True)


def _log_to_stderr(quiet: bool = False) -> None:
    """Show nnkit's log on stderr: warnings always, progress unless ``quiet``."""
    log = logging.getLogger("nnkit")
    for handler in [h for h in log.handlers if isinstance(h, _Stderr)]:
        log.removeHandler(handler)
    log.addHandler(_Stderr())
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnkit")
def main():
    """Map the minima of small neural networks by training many random inits at once.

    \b
    nnkit run experiments/quickstart.toml
    nnkit show results/quickstart/<run-id>      (or a prefix of the run id)
    nnkit plot results/quickstart/<run-id>
    nnkit report results/quickstart/<run-id>
    nnkit minima results/quickstart/<run-id>
    nnkit landscape results/quickstart/<run-id>
    nnkit ls
    nnkit backends
    nnkit bench

    \b
    Shell completion of commands, options and run ids (zsh_source, fish_source alike):
    eval "$(_NNKIT_COMPLETE=bash_source nnkit)"
    """


@main.command()
@click.argument("experiment_file", metavar="EXPERIMENT.toml")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.lr=0.5 (repeatable).")
@click.option("--inits", type=int, default=None, help="Number of random inits (overrides 'inits').")
@click.option("--backend", default=None, help=f"{_BACKENDS} (overrides run.backend).")
@click.option("--results", "results_dir", default="results", show_default=True,
              metavar="DIR", help="Folder that receives <experiment>/<run-id>/.")
@click.option("--run-id", default=None, help="Name of the run folder (default: time stamp).")
@click.option("--resume", is_flag=True,
              help="Continue the newest unfinished run of this experiment (or --run-id).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Train the chunks on the Dask cluster of this scheduler, e.g. tcp://host:8786 "
                   "(overrides run.scheduler; needs the dask extra).")
@click.option("--workers", type=click.IntRange(1), default=None, metavar="N",
              help="Train the chunks on a Dask LocalCluster of N worker processes on this machine "
                   "(overrides run.workers).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary table.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object (that of nnkit show --json) instead of tables.")
@click.option("--wide", is_flag=True, help="Print the summary tables with every column, however wide.")
@click.option("--report", "with_report", is_flag=True,
              help="Write RUN/report.html and RUN/report.md at the end (as nnkit report RUN).")
def run(experiment_file, overrides, inits, backend, results_dir, run_id, resume, scheduler, workers, quiet,
        as_json, wide, with_report):  # fmt: skip
    """Train every init of EXPERIMENT.toml and write results/<experiment>/<run-id>/."""
    from .pipeline import Interrupted, run_experiment
    from .runs import load
    from .study import config

    _log_to_stderr(quiet)
    settings = list(overrides)
    if inits is not None:
        settings.append(f"inits={inits}")
    experiment = config.load(experiment_file, settings)
    try:
        path = run_experiment(
            experiment,
            results_dir=results_dir,
            backend=backend,
            run_id=run_id,
            resume=resume,
            progress=False if quiet else None,
            **_cluster_options(scheduler, workers),
        )
    except Interrupted as exc:
        if exc.stage == "analysis":
            hint = f"training is finished and saved; analyse with nnkit minima {exc.run_dir}"
        elif exc.stage == "landscape":
            hint = f"training and the analysis are saved; survey the landscape with nnkit landscape {exc.run_dir}"
        else:
            again = _resume_command(experiment_file, overrides, inits, backend, results_dir, exc.run_dir,
                                    scheduler, workers)  # fmt: skip
            hint = f"finished chunks are kept; continue with {again}"
        click.echo(f"\ninterrupted: {hint}", err=True)
        sys.exit(130)
    result = load(path)
    if with_report:
        from .report.page import write_report

        write_report(result)
    if as_json:
        _print_json(result.to_dict())
        return
    if not quiet:
        _print_summary(result, wide)
    else:
        for paragraph in result.diagnosis():
            click.echo(f"warning: {paragraph}", err=True)
    if with_report and not quiet:
        click.echo(f"report: {path / 'report.html'}")
    click.echo(str(path))


def _cluster_options(scheduler, workers) -> dict:
    """``--scheduler`` or ``--workers``, which replace the config's pair when given."""
    if scheduler is not None and workers is not None:
        from .errors import UserError

        raise UserError("give --scheduler or --workers, not both")
    if scheduler is None and workers is None:
        return {}
    return {"scheduler": scheduler or "", "workers": workers or 0}


def _resume_command(experiment_file, overrides, inits, backend, results_dir, run_dir,
                    scheduler=None, workers=None) -> str:  # fmt: skip
    """The command that continues the interrupted run: the same experiment and
    overrides, the same results folder, ``--resume`` and the run's id."""
    words = ["nnkit", "run", str(experiment_file)]
    for item in overrides:
        words += ["--set", item]
    if inits is not None:
        words += ["--inits", str(inits)]
    if backend is not None:
        words += ["--backend", backend]
    if str(results_dir) != "results":
        words += ["--results", str(results_dir)]
    if scheduler is not None:
        words += ["--scheduler", scheduler]
    if workers is not None:
        words += ["--workers", str(workers)]
    words += ["--resume", "--run-id", run_dir.name]
    return shlex.join(words)


@main.command()
@click.argument("run_dir", metavar="RUN", type=RUN)
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: the run's meta.json, every table as a list of rows, the diagnosis.")
@click.option("--wide", is_flag=True, help="Every column of every table, however wide.")
def show(run_dir, as_json, wide):
    """Summarise the finished run folder RUN: status counts and loss quantiles, and,
    after an analysis, where the inits ended and the most frequent minima. Tables are
    cut to the terminal's width (100 columns when not a terminal); the files keep
    every column."""
    from .runs import load

    run = load(run_dir)
    if as_json:
        _print_json(run.to_dict())
    else:
        _print_summary(run, wide)


@main.command()
@click.argument("run_dir", metavar="RUN", type=RUN)
@click.option("--out", default=None, metavar="DIR", type=click.Path(file_okay=False),
              help="Write the two files into DIR instead of RUN (report.md then links RUN's figures).")
def report(run_dir, out):
    """Write the report of the finished run RUN: RUN/report.html, one self-contained page
    (figures embedded, nothing fetched from a network) to open in a browser or send,
    and RUN/report.md, its Markdown twin. Both hold the experiment in words, where the
    inits ended, the minima, every figure (the landscape's when surveyed) and how to
    reproduce the run. Prints the paths of both."""
    from .report.page import write_report
    from .runs import load

    for path in write_report(load(run_dir), out):
        click.echo(str(path))


@main.command()
@click.argument("run_dir", metavar="RUN", type=RUN)
@click.option("--set", "overrides", multiple=True, metavar="analysis.KEY=VALUE",
              help="Change an [analysis] setting for this analysis (repeatable).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Polish and certify on the Dask cluster of this scheduler (overrides run.scheduler).")
@click.option("--workers", type=click.IntRange(1), default=None, metavar="N",
              help="Polish and certify on a Dask LocalCluster of N worker processes (overrides run.workers).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the run folder.")
def minima(run_dir, overrides, scheduler, workers, quiet):
    """Map the minima of the finished run RUN: polish, Hessians, distinct minima modulo
    symmetry. Writes RUN/minima.parquet, the new runs.parquet columns and figures."""
    from .pipeline import analyse_run
    from .runs import load

    _log_to_stderr(quiet)
    run = load(run_dir)
    analyse_run(run, overrides, progress=False if quiet else None, **_cluster_options(scheduler, workers))
    if not quiet:
        _print_minima(run)
    click.echo(str(run.path))


@main.command()
@click.argument("run_dir", metavar="RUN", type=RUN)
@click.option("--set", "overrides", multiple=True, metavar="landscape.KEY=VALUE",
              help="Change a [landscape] setting for this survey (repeatable), e.g. --set landscape.max_pairs=20.")
@click.option("--tools", default=None, metavar="NAME,...",
              help="The tools to run, comma-separated: barriers, paths, graph, slices, trajectories, density "
                   "(overrides landscape.tools).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the run folder.")
def landscape(run_dir, overrides, tools, quiet):
    """Map the landscape between the minima of the analysed run RUN: barriers on
    straight lines, minimum-energy paths and transition states, the disconnectivity
    graph (and PATHSAMPLE's min.data, ts.data), slices, trajectories, spectral densities.
    Writes RUN/landscape/ and RUN/figures/landscape-*.png."""
    from .pipeline import Interrupted, landscape_run
    from .runs import load

    _log_to_stderr(quiet)
    settings = list(overrides)
    if tools is not None:
        names = [name.strip() for name in tools.split(",") if name.strip()]
        settings.append("landscape.tools=[" + ", ".join(f'"{name}"' for name in names) + "]")
    run = load(run_dir)
    try:
        landscape_run(run, settings, progress=False if quiet else None)
    except Interrupted:
        click.echo(f"\ninterrupted while writing: the run reads as not surveyed; survey again with "
                   f"nnkit landscape {run.path}", err=True)  # fmt: skip
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: nothing was written; the survey before, if any, is as it was", err=True)
        sys.exit(130)
    if not quiet:
        _print_landscape(run)
    click.echo(str(run.path))


@main.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=RUN)
@click.option("--out", default=None, metavar="FILE.png",
              help="Draw the spurious fraction and the count of spurious minima of every RUN "
                   "against a swept key, one curve per run, into FILE.png.")
@click.option("--against", default=None, metavar="KEY",
              help="The swept key of --out's figure (default: the first numeric one).")
@click.option("--label", "labels", multiple=True, metavar="NAME",
              help="The name of each RUN's curve in --out's figure (repeatable, in order).")
def plot(run_dirs, out, against, labels):
    """Draw the figures of the finished run RUN into RUN/figures/, or, with --out,
    one figure comparing the analysed runs RUN... ."""
    from .errors import UserError
    from .pipeline import write_figures
    from .report.figures import spurious_against
    from .runs import load
    from .runs.store import write_figure

    runs = [load(run_dir) for run_dir in run_dirs]
    if out is None:
        if len(runs) > 1 or against or labels:
            raise UserError("several runs, --against and --label go with --out FILE.png")
        for path in write_figures(runs[0]):
            click.echo(str(path))
        return
    if labels and len(labels) != len(runs):
        raise UserError(f"{len(labels)} --label for {len(runs)} runs")
    for run in runs:
        if against is not None and against not in run.sweep_keys:
            raise UserError(f"{run.path} does not sweep {against} (it sweeps: {', '.join(run.sweep_keys) or 'nothing'})")
    figure = spurious_against(runs, against, list(labels) or None)
    if figure is None:
        raise UserError("none of the runs was analysed with a numeric swept key to draw against")
    click.echo(str(write_figure(out, figure)))


@main.command()
@click.option("--case", "case_names", multiple=True, metavar="NAME",
              help="B1, B2 or B3; with --gpu B1g, B2g or B3g (repeatable; default: all three, "
                   "or none with --custom); or the population studies P14 and P20g (k = 20, 10,000 inits: "
                   "for a GPU, --backends cuda), or the analysis case A14 (each on its own).")
@click.option("--custom", "customs", multiple=True, metavar="R,n,d,k,steps[,lr]",
              help="A case of the same problem at another size (repeatable).")
@click.option("--backends", "backend_list", default=None,
              help=f"nnkit backends to time, comma-separated ({_BACKENDS}; with --gpu: cuda "
                   "and cupy only)  [default: numba; cuda,cupy with --gpu]")
@click.option("--peers", is_flag=True, help="Also time NumPy batched, PyTorch and JAX where installed "
                                            "(with --gpu: PyTorch and JAX on the GPU).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Timed runs per implementation, taken in rounds of one run of each (CPU and "
                   "population cases); the median is reported (use at least 3 for figures you quote).")
@click.option("--scaling", is_flag=True, help="Also time the first backend over R and n.")
@click.option("--gpu", is_flag=True,
              help="Time the GPU cases B1g, B2g, B3g in float64 and float32 on CUDA device 0, "
                   "against the card's GEMM rates and copy bandwidth; tables go to DIR/gpu/.")
@click.option("--dtypes", "dtype_list", default="float64,float32", show_default=True, metavar="NAME,...",
              help="The precisions of the CPU cases, comma-separated: float64, float32.")
@click.option("--results", "results_dir", default="results", show_default=True, metavar="DIR",
              help="Tables go to DIR/bench/ (DIR/gpu/ with --gpu).")
def bench(case_names, customs, backend_list, peers, repeats, scaling, gpu, dtype_list, results_dir):
    """Time training many networks against the peers (init-steps per second), a
    population study (P14) or the analysis of trained students (A14)."""
    from .bench.command import bench as run_bench

    command = "nnkit " + " ".join(sys.argv[1:])
    from .errors import UserError

    dtypes = tuple(d.strip() for d in dtype_list.split(",") if d.strip())
    if not dtypes or any(d not in ("float64", "float32") for d in dtypes):
        raise UserError(f"--dtypes {dtype_list!r}: expected float64, float32 or both, comma-separated")
    run_bench(case_names, customs, backend_list, peers, repeats, scaling, gpu, results_dir,
              command, echo=click.echo, echo_err=lambda m: click.echo(m, err=True), dtypes=dtypes)  # fmt: skip


@main.command(name="backends")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON list: name, usable, device, reason and auto (whether run.backend = 'auto' picks it).")
def backends_cmd(as_json):
    """List the backends, the device each would use here, or why it cannot run."""
    from . import backends

    auto = backends.resolve("auto")
    if as_json:
        _print_json([
            {"name": i.name, "usable": bool(i.usable), "device": i.device if i.usable else None,
             "reason": None if i.usable else i.reason, "auto": i.name == auto}
            for i in backends.probe_all()
        ])  # fmt: skip
        return
    for info in backends.probe_all():
        mark = "yes" if info.usable else "no"
        where = info.device if info.usable else info.reason
        tag = "  <- auto" if info.name == auto else ""
        click.echo(f"{info.name:<7} {mark:<4} {where}{tag}")


@main.command(name="ls")
@click.argument("results_dir", metavar="[RESULTS]", default="results", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per run.")
def ls_cmd(results_dir, as_json):
    """List the runs under RESULTS (default: results), oldest first: status (finished,
    running, interrupted: resume it, damaged), the stages done after training (minima,
    landscape), size, backend, start and training time."""
    import json

    from .errors import UserError
    from .runs import catalog

    if not os.path.isdir(results_dir):
        raise UserError(f"{results_dir}: no such folder")
    table = catalog.listing(results_dir)
    if as_json:
        _print_json(json.loads(table.to_json(orient="records")))
    elif table.empty:
        click.echo(f"no runs under {results_dir}")
    else:
        from .report import terminal

        shown = table.astype(object).where(table.notna(), "-")
        block, left_out = terminal.fit(shown, terminal.width(), drop=["created", "seconds", "backend", "points"],
                                       left=("run", "status", "stages", "backend", "created"))  # fmt: skip
        click.echo(block)
        if left_out:
            click.echo(terminal.note(left_out, terminal.width(), "--json has every column"))


def _print_json(value) -> None:
    import json

    click.echo(json.dumps(value, indent=2, allow_nan=False, default=str))


def _print_summary(run, wide: bool = False):
    """The headline and every table of ``run`` (cut to the terminal unless ``wide``),
    each with the paragraphs that go with it."""
    from .report import terminal

    click.echo(run.headline())
    limit = 0 if wide else terminal.width()
    for i, (heading, block) in enumerate(_blocks(run, limit)):
        if heading:
            click.echo(("\n" if i else "") + heading)
        click.echo(block)
        for paragraph in _paragraphs(run, heading):
            click.echo(paragraph)


def _blocks(run, limit):
    from .report import terminal

    blocks = terminal.tables(run, limit)
    if run.minima is not None and run.minima.empty:
        blocks = [b for b in blocks if not b[0].startswith(("where the inits", "distinct minima"))]
        at = next((i for i, b in enumerate(blocks) if b[0].startswith("the landscape")), len(blocks))
        none = "no init ended at a certified minimum (the column kind of runs.parquet says where they did)"
        blocks.insert(at, (none, ""))
    return blocks


def _paragraphs(run, heading) -> list[str]:
    from .report import terminal

    def fill(text):
        return "\n" + textwrap.fill(text, min(100, terminal.width()))

    if heading in ("", "training:"):
        return [fill(p) for p in run.training_diagnosis()]
    if heading.startswith(("distinct minima", "no init ended")):
        return [fill(p) for p in run.analysis_diagnosis()]
    if heading.startswith("the landscape"):
        return [f"  {note}" for note in run.landscape_notes()]
    return []


def _print_minima(run):
    """The minima tables of a run that has been analysed."""
    if run.minima is None:
        return
    from .report import terminal

    for heading, block in _blocks(run, terminal.width()):
        if heading.startswith(("the sweep", "where the inits", "distinct minima", "no init ended")):
            click.echo("\n" + heading)
            if block:
                click.echo(block)
            for paragraph in _paragraphs(run, heading):
                click.echo(paragraph)


def _print_landscape(run):
    """The landscape summary of a run that has one."""
    if run.landscape_summary() is None:
        return
    from .report import terminal

    for heading, block in _blocks(run, terminal.width()):
        if heading.startswith(("the sweep", "the landscape")):
            click.echo("\n" + heading)
            click.echo(block)
            for paragraph in _paragraphs(run, heading):
                click.echo(paragraph)


if __name__ == "__main__":  # pragma: no cover
    main()
