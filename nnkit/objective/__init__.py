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
    "TeacherStudentPopulation", "make_objective",
]  # fmt: skip


def make_objective(problem: Problem, backend) -> Objective:
    """The objective of ``problem`` on ``backend`` (a :class:`~nnkit.backends.Backend`).

    A population loss is computed by its closed form on the host with NumPy, whatever
    the backend: its objective runs on the ``numpy`` backend (``objective.backend``
    says so).
    """
    if problem.population:
        numpy = backend if backend.name == "numpy" else backends.get("numpy")
        return PopulationObjective(problem, numpy)
    return SampledObjective(problem, backend)
