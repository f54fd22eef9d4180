"""A run on disk: the folder and its atomic writes (:mod:`.store`), the training stage
that fills it chunk by chunk (:mod:`.executor`), and reading it back (:mod:`.results`:
``nnkit.load``)."""

from .results import Run, load
from .store import RunFolder

__all__ = ["Run", "RunFolder", "load"]
