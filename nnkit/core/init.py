"""Initial parameters: init ``i`` is always drawn from its own stream, on the CPU, in
float64, whatever the chunking or the backend.

Weights of a layer with fan-in ``a`` and fan-out ``b`` have standard deviation

* ``lecun``: ``gain / sqrt(a)``;  ``he``: ``gain * sqrt(2 / a)``;
* ``glorot``: ``gain * sqrt(2 / (a + b))``;  ``fixed``: ``std``;

drawn from a normal distribution or from the uniform one with the same standard
deviation (``U(-s sqrt(3), s sqrt(3))``). The output layer counts as fan-out 1.
Biases start at zero (``bias = "zeros"``) or are drawn like the weights of their
layer (``bias = "same"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import validate
from .layout import Layout
from .seeding import init_rng


@dataclass(frozen=True)
class InitSpec:
    """The ``[init]`` table: how initial parameters are drawn. The weights of a layer
    with fan-in ``a`` and fan-out ``b`` (1 for the output layer) have standard deviation
    ``gain / sqrt(a)`` (``lecun``), ``gain * sqrt(2 / a)`` (``he``),
    ``gain * sqrt(2 / (a + b))`` (``glorot``) or ``std`` (``fixed``)."""

    #: ``normal``, or ``uniform`` with the same standard deviation
    distribution: Literal["normal", "uniform"] = "normal"
    #: the rule for a layer's standard deviation
    scale: Literal["lecun", "he", "glorot", "fixed"] = "lecun"
    #: multiplier of the ``lecun``, ``he`` and ``glorot`` rules
    gain: float = 1.0
    #: the standard deviation of ``scale = "fixed"``
    std: float = 1.0
    #: ``zeros``, or ``same``: biases drawn like the weights of their layer
    bias: Literal["zeros", "same"] = "zeros"

    def check(self):
        validate.check(self, "init", gain="> 0", std="> 0")


def layer_std(spec: InitSpec, fan_in: int, fan_out: int) -> float:
    if spec.scale == "lecun":
        return spec.gain / np.sqrt(fan_in)
    if spec.scale == "he":
        return spec.gain * np.sqrt(2.0 / fan_in)
    if spec.scale == "glorot":
        return spec.gain * np.sqrt(2.0 / (fan_in + fan_out))
    return spec.std  # "fixed"


def _draw(rng, spec: InitSpec, std: float, shape) -> np.ndarray:
    if spec.distribution == "normal":
        return rng.normal(0.0, std, size=shape)
    bound = std * np.sqrt(3.0)
    return rng.uniform(-bound, bound, size=shape)


def init_one(layout: Layout, spec: InitSpec, seed: int, i: int) -> np.ndarray:
    """Parameters ``(P,)`` of init ``i`` of an experiment with seed ``seed``."""
    rng = init_rng(seed, i)
    theta = np.zeros(layout.size)
    for block in layout.blocks:
        if block.name.startswith("W"):
            fan_in = block.shape[0]
            fan_out = block.shape[1] if len(block.shape) == 2 else 1
            std = layer_std(spec, fan_in, fan_out)
        elif spec.bias == "zeros":
            continue
        else:  # a bias drawn like the weights of its layer
            weights = layout.block("W_out" if block.name == "b_out" else "W" + block.name[1:])
            fan_out = weights.shape[1] if len(weights.shape) == 2 else 1
            std = layer_std(spec, weights.shape[0], fan_out)
        theta[block.offset : block.offset + block.size] = _draw(rng, spec, std, block.size)
    return theta


def init_batch(layout: Layout, spec: InitSpec, seed: int, ids) -> np.ndarray:
    """Parameters ``(R, P)`` of the inits ``ids`` (any subset, any order)."""
    ids = np.asarray(ids, dtype=np.int64)
    theta = np.empty((ids.size, layout.size))
    for row, i in enumerate(ids):
        theta[row] = init_one(layout, spec, seed, int(i))
    return theta
