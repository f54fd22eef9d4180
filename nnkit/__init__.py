"""nnkit: map the local minima and loss landscapes of small neural networks by
training many random initialisations at once.

The flow of a study, each stage a function of the ones before it::

    experiment file -> study (config, sweep points) -> problem (model, spec, data)
      -> objective (the problem on a backend) -> train (chunks of inits) -> run folder
      -> landscape (certify, dedupe the minima; then barriers, paths, transition
         states, graphs, slices between them) -> report (tables, figures)

:func:`run_experiment` runs all of it; :func:`load` reads a run back; :func:`write_report`
writes its report.
"""

from . import backends
from .about import __version__
from .core.init import InitSpec, init_batch
from .core.layout import Layout
from .core.losses import ObjectiveSpec
from .core.model import Model
from .core.stops import Stop
from .data import Dataset, make_dataset
from .errors import ConfigError, UserError
from .landscape import AnalysisConfig, LandscapeConfig, analyse, certify, polish
from .objective import Objective, Problem, make_objective
from .pipeline import analyse_run, landscape_run, run_experiment, write_figures
from .report.page import write_report
from .runs import Run, load
from .study import Experiment
from .study import load as load_experiment
from .training import Task, TrainConfig, TrainResult, train, train_chunk

__all__ = [
    "AnalysisConfig", "ConfigError", "Dataset", "Experiment", "InitSpec", "LandscapeConfig", "Layout", "Model",
    "Objective", "ObjectiveSpec", "Problem", "Run", "Stop", "Task", "TrainConfig", "TrainResult",
    "UserError", "__version__", "analyse", "analyse_run", "backends", "certify", "init_batch",
    "landscape_run", "load", "load_experiment", "make_dataset", "make_objective", "polish", "run_experiment",
    "train", "train_chunk", "write_figures", "write_report",
]  # fmt: skip
