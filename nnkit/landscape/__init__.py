"""Where the inits landed and what lies between: certify each final point as a critical
point (:mod:`.polishing`, :mod:`.critical`), identify it modulo the network's symmetries
(:mod:`.symmetry`), and group the minima (:mod:`.minima`). Every tool here takes an
:class:`nnkit.objective.Objective` and parameter vectors."""

from . import symmetry
from .critical import certify, classify, spectrum
from .minima import AnalysisConfig, analyse, group, rows_per_slice, table, wilson
from .polishing import PolishResult, polish

__all__ = [
    "AnalysisConfig", "PolishResult", "analyse", "certify", "classify", "group", "polish",
    "rows_per_slice", "spectrum", "symmetry", "table", "wilson",
]  # fmt: skip
