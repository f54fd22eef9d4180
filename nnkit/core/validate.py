"""Range checks for config values, with one message style:
``train.lr = 0.0 is not allowed (expected > 0)``."""

from __future__ import annotations

from ..errors import ConfigError


def check(obj, section: str, **rules: str) -> None:
    """Check attributes of ``obj`` against rules ``"> 0"``, ``">= 0"``, ``">= 1"`` or
    ``"in [0, 1)"``; NaN never passes."""
    for name, rule in rules.items():
        value = getattr(obj, name)
        if not _passes(value, rule):
            raise ConfigError(f"{section}.{name} = {value} is not allowed (expected {rule})")


def _passes(value, rule: str) -> bool:
    op, _, bound = rule.partition(" ")
    if op == "in":
        low, high = (float(b) for b in bound.strip("[]()").split(","))
        above = value >= low if bound.startswith("[") else value > low
        below = value <= high if bound.endswith("]") else value < high
        return above and below
    limit = float(bound)
    return value > limit if op == ">" else value >= limit
