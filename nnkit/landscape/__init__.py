"""Where the inits landed and what lies between: certify each final point as a critical
point (:mod:`.polishing`, :mod:`.critical`), identify it modulo the network's symmetries
(:mod:`.symmetry`), and group the minima (:mod:`.minima`); then the landscape between
the minima (:mod:`.survey` runs the tools): straight-line barriers (:mod:`.barriers`),
nudged elastic bands (:mod:`.neb`), transition states (:mod:`.transition`,
:mod:`.connect`), disconnectivity graphs (:mod:`.disconnectivity`) and the PATHSAMPLE
files (:mod:`.pathsample`), slices (:mod:`.slices`), training paths
(:mod:`.trajectory`) and spectral densities (:mod:`.spectral`). Every tool here takes
an :class:`nnkit.objective.Objective` and parameter vectors."""

from . import symmetry
from .critical import certify, classify, spectrum
from .minima import AnalysisConfig, analyse, group, rows_per_slice, table, wilson
from .polishing import PolishResult, polish
from .survey import LandscapeConfig

__all__ = [
    "AnalysisConfig", "LandscapeConfig", "PolishResult", "analyse", "certify", "classify", "group", "polish",
    "rows_per_slice", "spectrum", "symmetry", "table", "wilson",
]  # fmt: skip
