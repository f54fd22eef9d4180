"""The ``[objective]`` table: loss functions and regularisers, written once against an
array namespace ``xp``, each loss with its first and second derivative.

The objective of one network with parameters ``w`` on data ``(x_i, y_i), i < n`` is::

    E(w) = c * reduce_i L(f(x_i; w), y_i) + l2 * sum(w**2) + l1 * sum(|w|)

with ``reduce`` the mean (``reduction = "mean"``, the default) or the sum over the
samples, and ``c = 1/2`` when ``half = true`` (default ``false``). Biases enter the
regulariser only when ``regularize_bias = true``.

Losses:

* ``squared``: ``L(f, y) = (f - y)**2``.
* ``logistic``: ``L(f, y) = log(1 + exp(-y f))`` with labels ``y`` in ``{-1, +1}``;
  labels in ``{0, 1}`` are mapped to ``{-1, +1}`` by :func:`prepare_targets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import validate
from .activations import sigmoid


@dataclass(frozen=True)
class ObjectiveSpec:
    """The ``[objective]`` table: loss, conventions and penalties,
    ``E(w) = c * reduce_i L(f(x_i; w), y_i) + l2 * sum(w**2) + l1 * sum(abs(w))``. It
    says what the objective is; :class:`nnkit.objective.Objective` evaluates it for a
    batch of networks on a problem."""

    #: ``squared``: ``L(f, y) = (f - y)**2``; ``logistic``: ``log(1 + exp(-y f))``
    #: with labels -1/+1 (labels 0/1 are mapped to them)
    loss: Literal["squared", "logistic"] = "squared"
    #: ``reduce``: the ``mean`` or the ``sum`` of the loss over the samples
    reduction: Literal["mean", "sum"] = "mean"
    #: ``c = 1/2`` when true, else ``c = 1``
    half: bool = False
    #: coefficient of the L2 penalty ``l2 * sum(w**2)``
    l2: float = 0.0
    #: coefficient of the L1 penalty ``l1 * sum(abs(w))``
    l1: float = 0.0
    #: whether the biases are penalised too (else only the weights)
    regularize_bias: bool = False

    def check(self):
        validate.check(self, "objective", l2=">= 0", l1=">= 0")

    def scale(self, n: int) -> float:
        """The factor ``c / n`` (mean) or ``c`` (sum) in front of the summed loss."""
        c = 0.5 if self.half else 1.0
        return c / n if self.reduction == "mean" else c

    def data_loss(self, xp, f, y):
        """Loss of outputs ``f (R, n)`` against targets ``y (n,)`` or ``(R, n)``.

        Returns ``(loss (R,), dloss_df (R, n))``.
        """
        s = self.scale(f.shape[-1])
        if self.loss == "squared":
            r = f - y
            return s * xp.sum(r * r, axis=-1), (2.0 * s) * r
        m = -y * f
        return s * xp.sum(xp.logaddexp(0.0, m), axis=-1), (-s) * y * sigmoid(xp, m)

    def curvature(self, xp, f, y):
        """``d^2 (scaled data loss) / df^2`` per sample: ``f (R, n)``, ``y (n,)`` or
        ``(R, n)`` -> ``(R, n)``: ``2 s`` (squared) or ``s y^2 sigmoid(m) (1 - sigmoid(m))``
        with ``m = -y f`` (logistic; ``y^2 = 1`` for labels +-1), ``s`` the loss scale."""
        s = self.scale(f.shape[-1])
        if self.loss == "squared":
            return xp.full_like(f, 2.0 * s)
        p = sigmoid(xp, -y * f)
        return s * (y * y) * p * (1.0 - p)

    def has_penalty(self) -> bool:
        return self.l2 != 0.0 or self.l1 != 0.0

    def penalty(self, xp, theta, mask):
        """Regulariser of every network: ``(value (R,), grad (R, P))``.

        ``mask`` (P,) is 1.0 where a parameter is regularised, 0.0 where not.
        """
        w = theta * mask
        value = xp.zeros(theta.shape[0], dtype=theta.dtype)
        grad = xp.zeros_like(theta)
        if self.l2:
            value = value + self.l2 * xp.sum(w * w, axis=1)
            grad = grad + (2.0 * self.l2) * w
        if self.l1:
            value = value + self.l1 * xp.sum(xp.abs(w), axis=1)
            grad = grad + self.l1 * xp.sign(w)
        return value, grad

    def penalty_mask(self, layout) -> np.ndarray:
        """Float mask (P,) of the regularised parameters of ``layout``."""
        if self.regularize_bias:
            return np.ones(layout.size)
        return (~layout.bias_mask()).astype(float)


def prepare_targets(objective: ObjectiveSpec, y: np.ndarray) -> np.ndarray:
    """Targets as the loss expects them: logistic labels in {0, 1} become {-1, +1}."""
    y = np.asarray(y, dtype=float)
    if objective.loss != "logistic":
        return y
    values = set(np.unique(y).tolist())
    if values <= {0.0, 1.0}:
        return 2.0 * y - 1.0
    if values <= {-1.0, 1.0}:
        return y
    raise ValueError(
        f"logistic loss needs labels in {{-1, +1}} or {{0, 1}}, got values such as {sorted(values)[:4]}"
    )
