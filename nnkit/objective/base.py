"""The one interface every tool evaluates: the objective of a batch of networks on one
problem, on one backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np


class Objective(ABC):
    """The objective ``E(theta)`` of a batch of networks on one :class:`Problem`, on one
    :class:`~nnkit.backends.Backend`.

    Every method takes ``theta (R, P)``, one network per row, as an array of the
    backend (``backend.asarray``) in float64 or float32, and answers in the same kind
    and dtype: a band of 16 images between 100 pairs of minima is ``theta`` with 1,600
    rows, a 51 x 51 slice is 2,601 rows. Training (:func:`nnkit.training.train`),
    polishing, certification and the landscape tools take this object and nothing
    else. :func:`nnkit.objective.make_objective` makes one from a problem.

    Attributes
    ----------
    problem : the :class:`~nnkit.objective.Problem` (model, spec, data).
    backend : where the arrays live and the hot loops run.
    """

    def __init__(self, problem, backend):
        self.problem = problem
        self.backend = backend

    @property
    def model(self):
        return self.problem.model

    @property
    def spec(self):
        return self.problem.spec

    @cached_property
    def kernel(self):
        """The backend's :class:`~nnkit.backends.Kernel` for the problem's model and spec."""
        return self.backend.kernel(self.model, self.spec)

    @abstractmethod
    def value_and_grad(self, theta):
        """Objective ``(R,)`` and its gradient ``(R, P)``."""

    def value(self, theta):
        """Objective ``(R,)``."""
        return self.value_and_grad(theta)[0]

    @abstractmethod
    def hessian(self, theta):
        """Exact Hessians ``(R, P, P)`` (the L1 penalty contributes 0 where it is
        differentiable)."""

    def hvp(self, theta, V):
        """Hessian-vector products ``H(theta_r) @ V_r``: ``V (R, P)`` -> ``(R, P)``."""
        xp = self.backend.xp
        return xp.sum(self.hessian(theta) * V[:, None, :], axis=-1)

    def predict(self, theta, X):
        """Outputs ``(R, n)`` of every network on host inputs ``X (n, d)``."""
        return self.kernel.predict(theta, self.backend.asarray(X, theta.dtype))

    # -- what training asks for --------------------------------------------------
    @property
    def samples(self) -> int | None:
        """The number of samples the objective averages over; None for a population
        loss (it has no minibatches)."""
        return None

    def batch_value_and_grad(self, theta, rows):
        """Objective and gradient of each network on its own minibatch, the samples
        ``rows (R, b)`` (host integers) of the data (minibatch SGD)."""
        raise NotImplementedError(f"{type(self).__name__} has no samples to draw minibatches from")

    def fuses(self, cfg) -> bool:
        """Whether :meth:`train_fused` runs the whole of training with ``cfg``."""
        return False

    @abstractmethod
    def stored_per_init(self, cfg) -> int:
        """Numbers one init keeps, besides its parameters, gradient and buffers, during a
        step of training with ``cfg`` (what sizes the chunks of inits)."""

    def train_fused(self, theta0: np.ndarray, cfg):
        """All of training with ``cfg`` in one compiled loop, from host ``theta0 (R, P)``
        float64: a :class:`nnkit.backends.Fused`. Only where :meth:`fuses` says so."""
        raise NotImplementedError(f"{type(self).__name__} has no fused training")
