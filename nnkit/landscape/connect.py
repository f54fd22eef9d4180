"""Connecting minima: for pairs of minima, a relaxed band (:mod:`.neb`), every top of
its profile (the climbing image among them) refined to a certified transition state
(:mod:`.transition`), and the descents from each transition state saying which minima
it joins; all pairs of a round in one batch.

A band whose profile dips between its ends (an interior image lower than both
neighbours) hints at a minimum on the way: that image is carried downhill and, when it
reaches a minimum not seen before, the minimum is added (``found_by = "path"``); so is
a new minimum reached from a transition state. In the next round (``rounds`` in all)
the pairs between such a minimum and the two ends of its band are connected too, as
double-ended searches do (OPTIM's ``NEWCONNECT``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import barriers, neb, transition
from .critical import classify
from .descent import descend
from .eigensteps import eigh
from .polishing import polish

MINIMUM_KINDS = ("strict minimum", "degenerate minimum")


@dataclass(frozen=True)
class PathSettings:
    """What :func:`connect` does: bands of ``images`` images (``spring``, FIRE to a
    largest force of ``neb_tol`` in at most ``neb_steps`` steps), transition states
    refined to a gradient norm of ``ts_tol`` (at most ``ts_steps`` steps), the minima
    found on the way to ``min_tol`` (the analysis' ``grad_tol``), eigenvalues within
    ``eig_tol`` of the largest counting as zero, minima told apart by ``loss_tol`` and
    ``distance_tol`` (as in the analysis), ``rounds`` rounds; the exact Hessians of at
    most ``rows`` points at a time (0: all)."""

    images: int = 16
    spring: float = 0.3
    neb_tol: float = 1e-6
    neb_steps: int = 5000
    ts_tol: float = 1e-10
    ts_steps: int = 100
    min_tol: float = 1e-10
    eig_tol: float = 1e-7
    loss_tol: float = 1e-8
    distance_tol: float = 1e-4
    rounds: int = 2
    rows: int = 0


@dataclass
class Connections:
    """What :func:`connect` found: the ``minima`` (the given ones, then those found on
    the way: columns ``minimum``, ``loss``, ``kind``, ``found_by``, ``theta``), their parameters
    ``theta (N', P)``, one row per distinct ``transition_states`` and one per image
    of every band (``paths``)."""

    minima: pd.DataFrame
    theta: np.ndarray
    transition_states: pd.DataFrame
    paths: pd.DataFrame


class _Minima:
    """The growing list of minima: parameters, losses, ids, kinds, how found."""

    def __init__(self, theta, loss, ids, kind, next_id=0):
        self.next_id = max(int(next_id), int(np.max(ids, initial=-1)) + 1)
        self.theta = list(np.asarray(theta, float))
        self.loss = list(np.asarray(loss, float))
        self.ids = list(np.asarray(ids, np.int64))
        self.kind = list(kind)
        self.found_by = ["analysis"] * len(self.ids)

    def find_or_add(self, model, theta, loss, kind, settings) -> int:
        """The row of the minimum ``theta (P,)`` is (added when new); -1 if it is none."""
        if kind not in MINIMUM_KINDS:
            return -1
        flat = np.array([k == "degenerate minimum" for k in self.kind])
        row = transition.match(model, np.array(self.theta), np.array(self.loss), theta[None], np.array([loss]),
                               settings.loss_tol, settings.distance_tol, flat,
                               np.array([kind == "degenerate minimum"]))[0]  # fmt: skip
        if row >= 0:
            return int(row)
        self.theta.append(np.asarray(theta, float))
        self.loss.append(float(loss))
        self.ids.append(self.next_id)
        self.next_id += 1
        self.kind.append(kind)
        self.found_by.append("path")
        return len(self.ids) - 1

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"minimum": self.ids, "loss": self.loss, "kind": self.kind, "found_by": self.found_by,
                             "theta": [t.tolist() for t in self.theta]})  # fmt: skip


def _settle(objective, theta, settings):
    """Carry ``theta (R, P)`` downhill to minima: ``(theta, loss, kind)``."""
    went = descend(objective, theta, 1e-8, 300)
    done = polish(objective, went.theta, settings.min_tol, 50)
    e = eigh(objective.hessian(done.theta), vectors=False)
    finite = np.isfinite(e).all(axis=1)
    kinds = classify(np.nan_to_num(e, nan=0.0), np.where(finite, done.grad_norm, np.inf), settings.min_tol,
                     settings.eig_tol)["kind"]  # fmt: skip
    return done.theta, done.loss, kinds


def connect(objective, theta, loss, ids, kind, pair, settings: PathSettings = PathSettings(),
            on_band=None, next_id=0) -> Connections:  # fmt: skip
    """Connect the pairs ``pair (M, 2)`` (rows of the minima ``theta (N, P)`` with
    losses ``loss (N,)``, ids ``ids (N,)`` and kinds ``kind (N,)``), host float64.

    Descents go down from the certified transition states only; a minimum they (or a
    dip) reach that is not among the known ones gets the id ``next_id`` or the next
    one up (at least one above ``ids``), and only such new minima are connected to the
    ends of their band in the next round. ``on_band(k)`` is called as ``k`` more bands
    are done (progress)."""
    model = objective.model
    known = _Minima(theta, loss, ids, kind, next_id)
    queue = [tuple(p) for p in np.asarray(pair, dtype=np.int64).reshape(-1, 2)]
    done_pairs = {frozenset(p) for p in queue}
    ts_rows, path_rows, saddles_found = [], [], []
    band_id = 0
    with np.errstate(all="ignore"):
        for round_ in range(settings.rounds):
            if not queue:
                break
            todo = np.array(queue, dtype=np.int64)
            queue = []
            a, b = barriers.align_pairs(model, np.array(known.theta), todo)
            bands = neb.autoneb(objective, a, b, settings.images, spring=settings.spring, tol=settings.neb_tol,
                                max_steps=settings.neb_steps)  # fmt: skip
            s = bands.arc_length()
            # every top of a profile is a transition state to be (the highest one climbed to it)
            tops = neb.interior_maxima(bands.loss)
            band_of = np.concatenate([np.full(t.size, r) for r, t in enumerate(tops)]).astype(np.int64)
            image_of = np.concatenate(tops).astype(np.int64)
            rows = settings.rows or None
            saddles = transition.refine(objective, bands.theta[band_of, image_of], settings.ts_tol,
                                        settings.ts_steps, settings.eig_tol, rows)  # fmt: skip
            sure = np.flatnonzero(saddles.certified)
            ends = transition.sides(objective, saddles.take(sure), grad_tol=settings.min_tol, eig_tol=settings.eig_tol,
                                    rows=rows)  # fmt: skip
            side_of = {int(c): z for z, c in enumerate(sure)}
            dips = neb.interior_minima(bands.loss)
            first_new = len(known.ids)  # the rows of minima found in this round start here
            for r, (i, j) in enumerate(todo):
                for m in range(bands.theta.shape[1]):
                    path_rows.append({
                        "band": band_id + r, "round": round_, "image": m, "arc_length": s[r, m],
                        "loss": bands.loss[r, m], "minimum_a": known.ids[i], "minimum_b": known.ids[j],
                        "neb_converged": bool(bands.converged[r]), "neb_force": bands.force[r],
                        "neb_steps": int(bands.steps[r]), "theta": bands.theta[r, m].tolist(),
                    })  # fmt: skip
                found = []
                for c in np.flatnonzero((band_of == r) & saddles.certified):
                    z = side_of[int(c)]
                    sides = [known.find_or_add(model, ends.theta[z, q], ends.loss[z, q], ends.kind[z, q], settings)
                             for q in (0, 1)]  # fmt: skip
                    ts_rows.append(_ts_row(saddles, c, band_id + r, known, sides, (i, j), s[r, -1]))
                    saddles_found.append(saddles.theta[c])
                    found += sides
                if dips[r].size:  # a dip in the profile: a minimum on the way?
                    th, lo, kd = _settle(objective, bands.theta[r, dips[r]], settings)
                    found += [known.find_or_add(model, th[z], lo[z], kd[z], settings) for z in range(len(dips[r]))]
                for q in dict.fromkeys(q for q in found if q >= first_new):  # new minima only
                    for p in ((i, q), (q, j)):
                        if frozenset(p) not in done_pairs and p[0] != p[1]:
                            done_pairs.add(frozenset(p))
                            queue.append(p)
            band_id += len(todo)
            if on_band is not None:
                on_band(len(todo))
    ts = _dedupe(model, pd.DataFrame(ts_rows, columns=_TS_COLUMNS), saddles_found, settings)
    return Connections(known.frame(), np.array(known.theta), ts, pd.DataFrame(path_rows, columns=_PATH_COLUMNS))


_TS_COLUMNS = [
    "transition_state", "band", "loss", "minimum_a", "minimum_b", "barrier_a", "barrier_b", "band_a", "band_b",
    "connects_ends", "grad_norm", "index", "eig_min", "refine_steps", "path_length", "eigenvalues", "theta",
]  # fmt: skip
_PATH_COLUMNS = [
    "band", "round", "image", "arc_length", "loss", "minimum_a", "minimum_b", "neb_converged", "neb_force",
    "neb_steps", "theta",
]  # fmt: skip


def _ts_row(saddles, r, band, known, sides, ends, length) -> dict:
    """One row of the transition-state table for the certified saddle ``r`` (of
    ``band``, between the minima of rows ``ends``, reached from its ``sides``)."""
    ids = [known.ids[q] if q >= 0 else -1 for q in sides]
    losses = [known.loss[q] if q >= 0 else np.nan for q in sides]
    return {
        "transition_state": -1, "band": band, "loss": saddles.loss[r], "minimum_a": ids[0], "minimum_b": ids[1],
        "barrier_a": saddles.loss[r] - losses[0], "barrier_b": saddles.loss[r] - losses[1],
        "band_a": known.ids[ends[0]], "band_b": known.ids[ends[1]],
        "connects_ends": set(sides) == set(ends), "grad_norm": saddles.grad_norm[r],
        "index": int(saddles.index[r]), "eig_min": saddles.eigenvalues[r, 0],
        "refine_steps": int(saddles.steps[r]), "path_length": length,
        "eigenvalues": saddles.eigenvalues[r].tolist(), "theta": saddles.theta[r].tolist(),
    }  # fmt: skip


def _dedupe(model, ts: pd.DataFrame, theta, settings) -> pd.DataFrame:
    """One row per distinct transition state (the same loss and, aligned, the same
    point), numbered from the lowest loss up; ``bands`` counts the bands that found it."""
    if ts.empty:
        ts.insert(len(ts.columns), "bands", pd.Series(dtype=np.int64))
        ts["transition_state"] = ts["transition_state"].astype(np.int64)
        return ts
    order = np.argsort(ts["loss"].to_numpy(), kind="stable")
    ts, theta = ts.iloc[order].reset_index(drop=True), np.asarray(theta)[order]
    keep, count = [], []
    for r in range(len(ts)):
        if keep:
            hit = transition.match(model, theta[keep], ts["loss"].to_numpy()[keep], theta[r : r + 1],
                                   ts["loss"].to_numpy()[r : r + 1], settings.loss_tol, settings.distance_tol)[0]  # fmt: skip
            if hit >= 0:
                count[hit] += 1
                continue
        keep.append(r)
        count.append(1)
    out = ts.iloc[keep].reset_index(drop=True)
    out["transition_state"] = np.arange(len(out))
    out["bands"] = count
    return out
