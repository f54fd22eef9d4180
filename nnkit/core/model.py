"""The model: an MLP ``x -> w_out . a_L(W_L ... a_1(W_1 x + b_1) ... + b_L) + b_out``."""

from __future__ import annotations

from dataclasses import dataclass

from . import activations
from .layout import Layout


@dataclass(frozen=True)
class Model:
    """A parameter :class:`Layout` plus one activation name per hidden layer."""

    layout: Layout
    activations: tuple[str, ...]
    leaky_slope: float = 0.01

    def __post_init__(self):
        if len(self.activations) != self.layout.depth:
            raise ValueError("activations needs one name per hidden layer")
        for name in self.activations:
            activations.get(name)

    def activation(self, layer: int) -> activations.Activation:
        """Activation of hidden layer ``layer`` (1-based)."""
        return activations.get(self.activations[layer - 1], self.leaky_slope)

    @property
    def size(self) -> int:
        return self.layout.size
