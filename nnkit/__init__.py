"""nnkit: map the local minima and loss landscapes of small neural networks by
training many random initialisations at once."""

from . import backends
from .config import Experiment
from .config import load as load_experiment
from .data import Dataset, make_dataset
from .errors import ConfigError, UserError
from .init import init_batch
from .layout import Layout
from .model import Model
from .objective import Objective
from .results import Run, load
from .runner import run_experiment, summary
from .train import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Dataset",
    "Experiment",
    "Layout",
    "Model",
    "Objective",
    "Run",
    "TrainResult",
    "UserError",
    "__version__",
    "backends",
    "init_batch",
    "load",
    "load_experiment",
    "make_dataset",
    "run_experiment",
    "summary",
    "train",
]
