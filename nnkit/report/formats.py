"""The text formats of a report: a run's config as TOML, and tables as Markdown pipe
tables and HTML tables, their cells written alike by :func:`cell`."""

from __future__ import annotations

import html
import json
import math
import re

import numpy as np
import pandas as pd

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml(config: dict, comment: str = "") -> str:
    """The nested dict ``config`` (plain values, lists and dicts: what
    ``config.json`` holds) as a TOML document that :mod:`tomllib` reads back to an
    equal dict: top-level values first, then one table per dict (``[a]``, ``[a.b]``),
    dicts inside lists as inline tables. ``comment`` (lines) goes on top as ``#``
    comments. :class:`ValueError` for a value TOML cannot hold (None)."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    _table(config, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: dict, path: list[str], lines: list[str]) -> None:
    plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
    nested = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (plain or not nested):
        lines += ["", "[" + ".".join(_key(k) for k in path) + "]"]
    lines += [f"{_key(k)} = {value(v)}" for k, v in plain.items()]
    for k, v in nested.items():
        _table(v, [*path, k], lines)


def _key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else json.dumps(key)


def value(v) -> str:
    """One TOML value: a boolean, integer, float (``inf``, ``-inf``, ``nan``
    included), string, list or inline table."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(item) for item in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {value(item)}" for k, item in v.items()) + "}"
    raise ValueError(f"TOML cannot hold {v!r} ({type(v).__name__})")


def cell(v) -> str:
    """A table cell as text: floats to four significant digits, booleans as yes and
    no, a missing value as a dash."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(cell(item) for item in v) + "]"
    return str(v)


def _numeric(frame: pd.DataFrame) -> list[bool]:
    """Per column, whether it holds numbers (drawn right-aligned)."""
    return [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame]


def pipe_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown pipe table, numbers right-aligned (no index)."""
    right = _numeric(frame)

    def row(cells):
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = "|" + "|".join("---:" if r else ":---" for r in right) + "|"
    body = [row([cell(v) for v in values]) for values in frame.itertuples(index=False)]
    return "\n".join([row([str(c) for c in frame.columns]), rule, *body])


def html_table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table, every cell escaped, number columns marked
    ``class="num"`` (no index)."""
    right = _numeric(frame)

    def attr(r):
        return ' class="num"' if r else ""

    # long names may break after an underscore or a dot
    names = [re.sub(r"([_.])", r"\1<wbr>", html.escape(str(c))) for c in frame.columns]
    head = "".join(f"<th{attr(r)}>{name}</th>" for name, r in zip(names, right))
    rows = [
        "<tr>" + "".join(f"<td{attr(r)}>{html.escape(cell(v))}</td>" for v, r in zip(values, right)) + "</tr>"
        for values in frame.itertuples(index=False)
    ]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
