"""The one interface every tool evaluates: :class:`Objective`, the objective of a batch
of networks on one :class:`Problem` (sampled data or an exact population loss), on one
backend, with value, gradient, Hessian-vector products, Hessians and predictions, all
batched over the rows of ``theta (R, P)``.

:func:`make_objective` is where the choice between the loss on samples
(:class:`SampledObjective`) and the exact population loss (:class:`PopulationObjective`)
is made, once.
"""

from __future__ import annotations

from .. import backends
from .base import Objective
from .population import PopulationObjective, TeacherStudentPopulation
from .problem import Problem, Teacher
from .sampled import SampledObjective

__all__ = [
    "Objective", "PopulationObjective", "Problem", "SampledObjective", "Teacher",
    "TeacherStudentPopulation", "make_objective", "runs_on",
]  # fmt: skip


def runs_on(problem: Problem, name: str) -> str:
    """The backend the objective of ``problem`` runs on when backend ``name`` is asked
    for: a population loss runs on the backends of its closed form
    (:attr:`PopulationObjective.BACKENDS`; ``auto`` picks the first usable, others
    get NumPy on the host); the loss on samples runs where it is asked to."""
    if not problem.population or name in PopulationObjective.BACKENDS:
        return name
    if name == "auto":
        return next(b for b in PopulationObjective.BACKENDS if backends.pickable(b))
    return "numpy"


def make_objective(problem: Problem, backend) -> Objective:
    """The objective of ``problem`` on ``backend`` (a :class:`~nnkit.backends.Backend`),
    or on the backend :func:`runs_on` names instead (``objective.backend`` says which)."""
    name = runs_on(problem, backend.name)
    if name != backend.name:
        backend = backends.get(name)
    if problem.population:
        return PopulationObjective(problem, backend)
    return SampledObjective(problem, backend)
