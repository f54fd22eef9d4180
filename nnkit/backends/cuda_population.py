"""The ``cuda`` backend's launches of the population kernels (``kernels/population.py``):
the exact teacher-student population loss, its gradient and full-batch training, a
block of threads per init. The objective that calls them is
:class:`nnkit.objective.population.PopulationObjective`.
"""

from __future__ import annotations

import numpy as np

from . import gpu
from .base import Fused


def shape(layout, m: int):
    """The kernels' :class:`Shape` of students of ``layout`` against ``m`` teacher units."""
    return gpu.kernels("population").Shape(
        d=layout.d, k=layout.widths[0], m=m, trained=layout.output_trained,
        out_value=float(layout.output_value or 0.0),
    )  # fmt: skip


def fits(layout, m: int) -> bool:
    """Whether an init of these students fits a block's shared memory."""
    kernels = gpu.kernels("population")
    return kernels.fits(shape(layout, m))


class DeviceTeacher:
    """The teacher and the objective's constants, on the device once."""

    def __init__(self, backend, closed_form):
        f8 = np.float64
        self.Vt = backend.asarray(np.ascontiguousarray(closed_form.V.T), f8)
        self.b = backend.asarray(np.ascontiguousarray(closed_form.b), f8)
        self.mask = backend.asarray(np.asarray(closed_form._mask, dtype=f8), f8)
        spec = closed_form.spec
        self.scalars = (f8(closed_form.teacher_norm), f8(closed_form.scale))
        self.penalty = (f8(spec.l2), f8(spec.l1))


def value_and_grad(backend, shp, teacher: DeviceTeacher, theta):
    """Objective ``(R,)`` and gradient ``(R, P)`` of the array ``theta (R, P)`` of the
    ``cuda`` ``backend`` (float64), as its arrays."""
    xp = backend.xp
    theta = xp.ascontiguousarray(backend.asarray(theta, np.float64))
    R = theta.shape[0]
    value = xp.empty(R, dtype=xp.float64)
    grad = xp.empty(theta.shape, dtype=xp.float64)
    if R == 0:
        return value, grad
    kernels = gpu.kernels("population")
    backend.launch(
        kernels.value_and_grad_kernel(shp), (R, kernels.threads(shp)), theta, teacher.Vt, teacher.b,
        *teacher.scalars, teacher.mask, *teacher.penalty, value, grad,
    )  # fmt: skip
    return value, grad


def train(backend, shp, teacher: DeviceTeacher, theta0, cfg) -> Fused:
    """All of training with ``cfg`` from host ``theta0 (R, P)``, one launch."""
    xp = backend.xp
    f8 = np.float64
    theta = backend.asarray(np.array(theta0, dtype=f8, order="C"), f8)
    R = theta.shape[0]
    status = xp.zeros(R, dtype=xp.int8)
    steps = xp.zeros(R, dtype=xp.int64)
    loss = xp.full(R, np.nan, dtype=xp.float64)
    norm = xp.full(R, np.nan, dtype=xp.float64)
    if R:
        kernels = gpu.kernels("population")
        backend.launch(
            kernels.train_kernel(shp, cfg.method), (R, kernels.threads(shp)), theta, teacher.Vt, teacher.b,
            *teacher.scalars, teacher.mask, *teacher.penalty, f8(cfg.lr), f8(cfg.momentum), cfg.max_steps,
            f8(cfg.grad_tol), f8(cfg.loss_target), f8(cfg.max_loss), status, steps, loss, norm,
        )  # fmt: skip
    return Fused(
        theta=np.asarray(backend.to_numpy(theta), dtype=f8),
        stop=backend.to_numpy(status).astype(np.int64),
        steps=backend.to_numpy(steps),
        loss=np.asarray(backend.to_numpy(loss), dtype=f8),
        grad_norm=np.asarray(backend.to_numpy(norm), dtype=f8),
    )
