"""From a resolved experiment to what the stages below work on: its :class:`Problem`
(model, objective spec, data with targets ready for the loss, and the teacher of an
exact population loss) and its training :class:`Task`."""

from __future__ import annotations

import dataclasses

from ..core.losses import prepare_targets
from ..core.seeding import data_rng
from ..data import make_dataset
from ..errors import UserError
from ..objective import Problem, Teacher, TeacherStudentPopulation
from ..training import Task
from .config import Experiment


def problems(points) -> list[Problem]:
    """The :class:`Problem` of every sweep point ``(values, experiment)``; points with the
    same data share one data set. Every point is checked before any is used, so a bad
    input stops a run before it writes anything."""
    made, out = {}, []
    for _, exp in points:
        key = (exp.data_kind, exp.data, exp.seed)
        if key not in made:
            made[key] = make_dataset(exp.data_kind, exp.data, data_rng(exp.seed))
        out.append(problem(exp, made[key]))
    return out


def problem(exp: Experiment, ds=None) -> Problem:
    """The :class:`Problem` of one resolved experiment (``ds``: its data set, if made)."""
    if ds is None:
        ds = make_dataset(exp.data_kind, exp.data, data_rng(exp.seed))
    try:
        ds = dataclasses.replace(ds, y=prepare_targets(exp.objective, ds.y),
                                 y_test=prepare_targets(exp.objective, ds.y_test))  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model = exp.build_model(ds.d)
    teacher = _teacher(exp, model, ds) if getattr(exp.data, "population", False) else None
    return Problem(model, exp.objective, ds, teacher)


def task(exp: Experiment) -> Task:
    """How the inits of ``exp`` are trained."""
    return Task(exp.init, exp.train, exp.seed, exp.run.memory_mb)


def _teacher(exp: Experiment, model, ds) -> Teacher:
    """The teacher of a ``teacher_student`` experiment with ``data.population = true``,
    once the student has been checked against what the closed form covers."""
    if exp.train.method == "sgd":
        raise UserError("data.population = true trains on the exact loss: there are no "
                        "minibatches (use train.method = 'gd', 'momentum' or 'nesterov')")
    if len(exp.model.hidden) != 1:
        raise UserError(
            f"data.population = true needs one hidden layer (model.hidden = [k]), got {list(exp.model.hidden)}"
        )
    if exp.model.per_layer("activation") != ("relu",):
        raise UserError(
            "data.population = true needs a one-hidden-layer ReLU student "
            f"(model.activation = 'relu', model.hidden = [k]), got {list(exp.model.per_layer('activation'))}"
        )
    teacher = Teacher(ds.info["teacher_W"], ds.info["teacher_a"])
    try:
        TeacherStudentPopulation(model.layout, teacher.V, teacher.b, exp.objective)
    except ValueError as exc:
        raise UserError(f"data.population = true: {exc}") from None
    return teacher
