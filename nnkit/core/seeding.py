"""Deterministic random streams derived from one experiment seed.

Every consumer gets its own ``SeedSequence`` child, addressed by a fixed domain number
and an index, so a stream never depends on how the work was chunked or ordered:

* ``data_rng(seed)``: the data generator.
* ``init_rng(seed, i)``: the initial parameters of init ``i``.
* ``shuffle_rng(seed, i)``: the minibatch order of init ``i`` (SGD).
"""

from __future__ import annotations

import numpy as np

_DATA, _INIT, _SHUFFLE = 0, 1, 2


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def data_rng(seed: int) -> np.random.Generator:
    return _rng(seed, _DATA)


def init_rng(seed: int, i: int) -> np.random.Generator:
    return _rng(seed, _INIT, int(i))


def shuffle_rng(seed: int, i: int) -> np.random.Generator:
    return _rng(seed, _SHUFFLE, int(i))
