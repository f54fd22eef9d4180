"""A study: the experiment file validated into frozen dataclasses, its sweep expanded
into resolved points (:mod:`.config`), and each point turned into a problem and a
training task (:mod:`.build`)."""

from .build import problem, problems, task
from .config import Experiment, expand_sweep, from_dict, load

__all__ = ["Experiment", "expand_sweep", "from_dict", "load", "problem", "problems", "task"]
