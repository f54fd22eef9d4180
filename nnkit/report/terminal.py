"""The tables of ``nnkit show`` cut to a terminal's width: the swept values printed once,
intervals in one column, and the least needed columns left out (named below the
table) until it fits. The files of the run keep every column."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

import pandas as pd

#: the width tables are fitted to when the output is not a terminal
WIDTH = 100

#: per table, the columns left out first when it is too wide, in order
DROP = {
    "training": ["test_loss_median", "target", "loss_max", "max_steps"],
    "landing": ["spurious_levels", "spurious_orbits", "saddle", "not_converged"],
    "minima": ["test_loss", "eig_min", "orbit", "nullity", "level"],
    "landscape": ["seconds", "bands_converged", "minima_found", "barrier_median", "joining"],
}

#: value columns with their interval bounds (``X_low``, ``X_high``) merged into ``X``
_INTERVALS = {"spurious_fraction": "spurious", "fraction": "fraction"}


def width() -> int:
    """The width to fit: ``COLUMNS`` when set, else the terminal's when the output is
    one, else :data:`WIDTH`; never below 60."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return max(60, int(columns))
    if sys.stdout.isatty():
        return max(60, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


def note(left_out, limit: int, where: str = "nnkit show --wide shows every column") -> str:
    """The line below a cut table naming the columns left out, wrapped to ``limit``."""
    return textwrap.fill(f"(left out to fit {limit} columns: {', '.join(left_out)}; {where})", limit)


def text(frame: pd.DataFrame, left=()) -> str:
    """``frame`` as plain text, without the index, numbers to 4 significant digits, the
    text columns ``left`` aligned to the left."""
    formatters = {}
    for column in left:
        if column in frame.columns:
            size = max([len(str(column)), *(len(str(v)) for v in frame[column])])
            formatters[column] = f"{{:<{size}}}".format
    with pd.option_context("display.width", 10_000, "display.max_columns", None,
                           "display.float_format", "{:.4g}".format):  # fmt: skip
        block = frame.to_string(index=False, formatters=formatters)
    if not left:
        return block
    header, _, rest = block.partition("\n")  # headers of left-aligned columns go left too
    for column in left:
        if column in frame.columns:
            size = max(len(str(v)) for v in frame[column]) if len(frame) else 0
            header = header.replace(" " * max(0, size - len(column)) + column, column.ljust(size), 1)
    return header + ("\n" + rest if rest else "")


def _widest(block: str) -> int:
    return max((len(line) for line in block.splitlines()), default=0)


def merge_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """``X`` with ``X_low``, ``X_high`` (or ``spurious_low``/``_high`` for
    ``spurious_fraction``) as one column of text ``value [low, high]``."""
    out = frame.copy()
    for column, stem in _INTERVALS.items():
        low, high = f"{stem}_low", f"{stem}_high"
        if not {column, low, high} <= set(out.columns):
            continue
        out[column] = [f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in zip(out[column], out[low], out[high])]
        out = out.drop(columns=[low, high])
    return out


def fit(frame: pd.DataFrame, limit: int, drop=(), left=()) -> tuple[str, list[str]]:
    """``frame`` as text (:func:`text`) at most ``limit`` wide where columns allow: the
    columns of ``drop`` left out in order, then the last ones, until it fits (the first
    two always stay). Returns the text and the columns left out."""
    block, left_out = text(frame, left), []
    order = [c for c in drop if c in frame.columns]
    zero = [c for c in order if pd.api.types.is_numeric_dtype(frame[c]) and (frame[c] == 0).all()]
    order = zero + [c for c in order if c not in zero]  # columns that say nothing go first
    while _widest(block) > limit and frame.shape[1] > 2:
        column = order.pop(0) if order else frame.columns[-1]
        frame = frame.drop(columns=column)
        left_out.append(f"{column} (all 0)" if column in zero else column)
        block = text(frame, left)
    return block, left_out


def tables(run, limit: int | None = None) -> list[tuple[str, str]]:
    """The tables of ``nnkit show`` for ``run`` as ``(heading, text)`` pairs, fitted to
    ``limit`` columns (None: :func:`width`; 0: not cut). With a sweep, the swept values
    come once, in a table of their own, and the other tables name the point only."""
    limit = width() if limit is None else limit
    frames = run.summary()
    keys = [k for k in run.sweep_keys if k in frames["training"].columns]
    out = []
    if keys and limit:
        out.append(("the sweep points:", text(frames["training"][["point", *keys]])))
    headings = {
        "training": "training:" if keys and limit else "",
        "landing": "where the inits ended ([low, high]: 95% Wilson interval):",
        "minima": f"distinct minima, most frequent first ({len(run.minima) if run.minima is not None else 0} "
                  "in all; minima.parquet has every one):",
        "landscape": "the landscape between the minima (RUN/landscape/ has every table):",
    }  # fmt: skip
    for name, frame in frames.items():
        if frame is None:
            continue
        if not limit:
            out.append((headings[name], text(frame)))
            continue
        shown = merge_intervals(frame.drop(columns=[k for k in keys if k in frame.columns]))
        block, left_out = fit(shown, limit, DROP.get(name, ()))
        if left_out:
            block += "\n" + note(left_out, limit)
        out.append((headings[name], block))
    return out
