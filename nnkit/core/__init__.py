"""The ground floor: what one network is and how a batch of them is laid out.

:mod:`.layout` (flat parameter vectors ``theta (R, P)`` and their per-layer views),
:mod:`.model` (a layout plus activations), :mod:`.activations` (one record per
activation), :mod:`.losses` (the ``[objective]`` table: losses and penalties),
:mod:`.init` and :mod:`.seeding` (initial parameters from per-init random streams),
:mod:`.stops` (the status codes of training), :mod:`.validate` (range checks of
config values). Nothing here imports another part of nnkit but :mod:`nnkit.errors`.
"""
