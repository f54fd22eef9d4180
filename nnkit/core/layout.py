"""Flat parameter vectors for a batch of MLPs.

A batch of R networks is one array ``theta`` of shape ``(R, P)``. A :class:`Layout`
says where each layer's weights and biases live in a row, and hands out views:
``W`` of shape ``(R, fan_in, fan_out)`` and ``b`` of shape ``(R, fan_out)``.

Parameter order in a row: ``W1, b1, W2, b2, ..., W_out, b_out`` with every weight
matrix stored row-major as ``(fan_in, fan_out)``. Blocks that are switched off
(a bias that is not used, a fixed output layer) take no room.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple


class Block(NamedTuple):
    """One trained array of one network: its name, shape and offset in a row."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        size = 1
        for s in self.shape:
            size *= s
        return size


@dataclass(frozen=True)
class Layout:
    """Where the parameters of an MLP ``d -> widths[0] -> ... -> widths[-1] -> 1`` live.

    Parameters
    ----------
    d : input dimension.
    widths : hidden-layer widths, one per hidden layer (at least one).
    bias : per hidden layer, whether it has a bias.
    output_trained : whether the output weights are parameters; when False the
        output weights are the constant ``output_value`` for every unit.
    output_bias : whether the output layer has a (trained) bias.
    output_value : the fixed output weight used when ``output_trained`` is False.
    """

    d: int
    widths: tuple[int, ...]
    bias: tuple[bool, ...]
    output_trained: bool = True
    output_bias: bool = False
    output_value: float = 1.0

    def __post_init__(self):
        if self.d < 1 or not self.widths or min(self.widths) < 1:
            raise ValueError(f"layer sizes must be positive, got d={self.d}, widths={self.widths}")
        if len(self.bias) != len(self.widths):
            raise ValueError("bias needs one flag per hidden layer")
        if self.output_bias and not self.output_trained:
            raise ValueError("a fixed output layer has no trained bias")

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    @cached_property
    def blocks(self) -> tuple[Block, ...]:
        blocks = []
        offset = 0
        fan_in = self.d
        for layer, (width, has_bias) in enumerate(zip(self.widths, self.bias), start=1):
            blocks.append(Block(f"W{layer}", (fan_in, width), offset))
            offset += fan_in * width
            if has_bias:
                blocks.append(Block(f"b{layer}", (width,), offset))
                offset += width
            fan_in = width
        if self.output_trained:
            blocks.append(Block("W_out", (fan_in,), offset))
            offset += fan_in
        if self.output_bias:
            blocks.append(Block("b_out", (), offset))
        return tuple(blocks)

    @property
    def size(self) -> int:
        """P, the number of trained parameters of one network."""
        last = self.blocks[-1]
        return last.offset + last.size

    @cached_property
    def _by_name(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks}

    def block(self, name: str) -> Block:
        """The block called ``name`` (``W1``, ``b1``, ..., ``W_out``, ``b_out``)."""
        return self._by_name[name]

    def view(self, theta, name: str):
        """View of block ``name`` of every network: shape ``(R, *block.shape)``."""
        b = self.block(name)
        return theta[:, b.offset : b.offset + b.size].reshape((theta.shape[0],) + b.shape)

    def weights(self, theta, layer: int):
        """``W`` of hidden layer ``layer`` (1-based): shape ``(R, fan_in, fan_out)``."""
        return self.view(theta, f"W{layer}")

    def biases(self, theta, layer: int):
        """``b`` of hidden layer ``layer`` (1-based), shape ``(R, fan_out)``, or None."""
        return self.view(theta, f"b{layer}") if self.bias[layer - 1] else None

    def bias_mask(self):
        """Boolean mask of length P, True where the parameter is a bias."""
        import numpy as np

        mask = np.zeros(self.size, dtype=bool)
        for b in self.blocks:
            if b.name.startswith("b"):
                mask[b.offset : b.offset + b.size] = True
        return mask
