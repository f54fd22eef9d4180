"""The objective on the samples of a data set: the backend's kernel on the problem's
data, with the exact Hessian of :mod:`.hessian`."""

from __future__ import annotations

from . import hessian as hess
from .base import Objective


class SampledObjective(Objective):
    """``E(theta) = c reduce_i L(f(x_i; theta), y_i) + penalty`` over the problem's
    training samples (see :class:`nnkit.core.losses.ObjectiveSpec`). The data are
    moved to the backend once per dtype."""

    def __init__(self, problem, backend):
        super().__init__(problem, backend)
        self._data = {}

    def _on_device(self, theta):
        """The training data ``X (n, d)``, ``y (n,)`` as arrays of ``theta``'s dtype."""
        key = str(theta.dtype)
        if key not in self._data:
            data = self.problem.data
            self._data[key] = (self.backend.asarray(data.X, theta.dtype),
                               self.backend.asarray(data.y, theta.dtype))  # fmt: skip
        return self._data[key]

    def value_and_grad(self, theta):
        return self.kernel.value_and_grad(theta, *self._on_device(theta))

    def value(self, theta):
        return self.kernel.value(theta, *self._on_device(theta))

    def hvp(self, theta, V):
        X, y = self._on_device(theta)
        return hess.hvp(self.model, self.spec, theta, V, X, y)

    def hessian(self, theta):
        X, y = self._on_device(theta)
        return hess.hessian(self.model, self.spec, theta, X, y)

    @property
    def samples(self) -> int:
        return self.problem.data.n

    def batch_value_and_grad(self, theta, rows):
        data, be = self.problem.data, self.backend
        X, y = be.asarray(data.X[rows], theta.dtype), be.asarray(data.y[rows], theta.dtype)
        return self.kernel.value_and_grad(theta, X, y)

    def fuses(self, cfg) -> bool:
        return self.kernel.fuses(cfg)

    def stored_per_init(self, cfg) -> int:
        sgd = cfg.method == "sgd"
        rows = min(self.samples, cfg.batch_size) if sgd else self.samples
        per_sample = self.backend.stored_per_sample(self.model, sgd)
        # with SGD each init also has its own (rows, d) batch
        return rows * per_sample + (rows * self.model.layout.d if sgd else 0)

    def train_fused(self, theta0, cfg):
        return self.kernel.train_fused(theta0, self.problem.data.X, self.problem.data.y, cfg)
