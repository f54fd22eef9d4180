"""Gradient descent on a batch of R networks at once, each stopping on its own.

Step ``t`` evaluates the objective and gradient of every still-running init, then

* stops it as ``diverged`` when a value is not finite or the loss exceeds ``max_loss``,
* stops it as ``converged`` when its gradient norm is at most ``grad_tol``,
* stops it as ``target`` when its loss is at most ``loss_target``,
* stops it as ``max_steps`` when ``t == max_steps``,

and otherwise takes one update. A stopped init leaves the batch (the working arrays are
compacted), so its values, finite or not, never enter another init's computation.
``steps`` counts the updates an init took; its final loss and gradient norm are those
of its final parameters.

Updates (``g`` the gradient, ``b`` a per-init buffer starting at zero)::

    gd:        w -= lr * g
    momentum:  b = mu * b + g;  w -= lr * b
    nesterov:  b = mu * b + g;  w -= lr * (g + mu * b)
    sgd:       w -= lr * g_batch, one minibatch per step, each init shuffling the
               data with its own stream; the stopping rules use the full-batch
               objective, evaluated at the end of every epoch and at history steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core import validate
from ..core.seeding import shuffle_rng
from ..core.stops import STATUSES, Stop, labels
from . import safeguards

#: the largest ``max_steps``: more than any run takes (a year at 3e7 steps per second),
#: and far from the integer overflow of the compiled loops
MAX_STEPS = 10**15
#: the most history points per init
MAX_HISTORY = 10**6


@dataclass(frozen=True)
class TrainConfig:
    """The ``[train]`` table: gradient descent and its stopping rules, applied to each
    init separately. At each step every running init is checked, then updated; it stops
    as ``diverged`` (a non-finite value, or a loss above ``max_loss``), ``converged``
    (gradient norm at most ``grad_tol``), ``target`` (loss at most ``loss_target``) or
    ``max_steps``."""

    #: ``gd``, ``momentum`` (``b = mu b + g; w -= lr b``), ``nesterov``
    #: (``w -= lr (g + mu b)``) or minibatch ``sgd``
    method: Literal["gd", "momentum", "nesterov", "sgd"] = "gd"
    #: the step size: a number, or "auto": each init's step from the curvature at its
    #: start point (:func:`nnkit.training.safeguards.auto_steps`: ``1 / lambda_max`` of
    #: the Hessian rounded down to a power of two, at most 1)
    lr: float | Literal["auto"] = 0.1
    #: ``mu`` of ``momentum`` and ``nesterov``
    momentum: float = 0.9
    #: the SGD minibatch; each init reshuffles every epoch with its own stream, and the
    #: stopping rules use the full-batch objective at the end of every epoch
    batch_size: int = 32
    #: the most updates of an init
    max_steps: int = 1000
    #: stop as ``converged`` at a gradient norm of at most this (0: never)
    grad_tol: float = 1e-8
    #: stop as ``target`` at a loss of at most this
    loss_target: float = 0.0
    #: stop as ``diverged`` at a loss above this
    max_loss: float = 1e10
    #: record the loss and gradient norm at about this many log-spaced steps (0: off)
    history: int = 0
    #: the precision of training (inits are always drawn in float64)
    dtype: Literal["float64", "float32"] = "float64"
    #: times an init that ends with a status in ``restart_on`` starts again from its
    #: start point with half its previous step (0: never)
    restarts: int = 0
    #: the statuses that restart an init
    restart_on: tuple[Literal["diverged", "max_steps"], ...] = ("diverged",)

    def check(self):
        validate.check(
            self, "train", momentum="in [0, 1)", batch_size=">= 1",
            max_steps=f"in [0, {MAX_STEPS:.0e}]", grad_tol=">= 0", max_loss="> 0",
            history=f"in [0, {MAX_HISTORY:.0e}]", restarts="in [0, 30]",
        )  # fmt: skip
        if self.lr != "auto":
            validate.check(self, "train", lr="> 0")

    def with_lr(self, lr: float) -> TrainConfig:
        return dataclasses.replace(self, lr=float(lr))


@dataclass
class TrainResult:
    """Per-init outcome, all on the host: ``theta (R, P)`` float64, ``status (R,)``,
    ``steps (R,)``, ``loss (R,)``, ``grad_norm (R,)``, ``history`` (a dict of
    equal-length arrays ``init, step, loss, grad_norm``) or None, and per init the
    step ``lr (R,)`` its last attempt trained with and its ``restarts (R,)``."""

    theta: np.ndarray
    status: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    history: dict | None = None
    lr: np.ndarray | None = None
    restarts: np.ndarray | None = None

    @classmethod
    def concat(cls, parts) -> TrainResult:
        """The results of consecutive slices of one batch of inits, as one."""
        join = lambda name: np.concatenate([getattr(part, name) for part in parts])  # noqa: E731
        histories = [part.history for part in parts if part.history is not None]
        history = None
        if histories:
            history = {key: np.concatenate([h[key] for h in histories]) for key in histories[0]}
        return cls(join("theta"), join("status"), join("steps"), join("loss"), join("grad_norm"), history,
                   join("lr"), join("restarts"))  # fmt: skip


def history_steps(max_steps: int, points: int) -> np.ndarray:
    """About ``points`` log-spaced steps in ``[0, max_steps]``, always with 0 and the end."""
    if points <= 0:
        return np.zeros(0, dtype=np.int64)
    if points > max_steps:
        return np.arange(max_steps + 1, dtype=np.int64)
    steps = np.geomspace(1, max(max_steps, 1), num=max(points - 1, 1)).round().astype(np.int64)
    return np.unique(np.concatenate([[0], steps, [max_steps]]))


def train(objective, theta0, cfg, *, seed=0, ids=None, on_finish=None, on_step=None, snapshots=False) -> TrainResult:
    """Train the networks ``theta0 (R, P)`` (host, float64) on ``objective`` (a
    :class:`nnkit.objective.Objective`) by ``cfg`` (a :class:`TrainConfig`).

    ``ids (R,)`` are the init ids (they pick each init's SGD stream); ``on_finish(k)``
    is called when ``k`` more inits stop, ``on_step(t, running)`` before every step with
    the number of inits still running. Where the objective's kernel fuses the whole
    loop (full-batch training without history on the ``numba`` backend and the
    ``cuda`` backend's small networks), it runs in one compiled call, calling neither
    back until it is done. ``snapshots``: the history (``cfg.history > 0``) also keeps
    the parameters, ``history["theta"] (N, P)`` (for trajectories of a few inits).

    The inits train in groups of one step size each (a single group unless
    ``cfg.lr = "auto"``, :mod:`.safeguards`); an init restarted after a failure
    (``cfg.restarts``) trains again from ``theta0`` (the history keeps its last attempt).
    """
    theta0 = np.asarray(theta0, dtype=np.float64)
    R = theta0.shape[0]
    ids = np.arange(R) if ids is None else np.asarray(ids)
    if cfg.method == "sgd" and objective.samples is None:
        raise ValueError(f"{type(objective).__name__} has no samples to draw minibatches from: "
                         "train it with method gd, momentum or nesterov")  # fmt: skip
    # overflow and NaN are expected from diverging inits, which the rules below flag
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lr = safeguards.auto_steps(objective, theta0, ids) if cfg.lr == "auto" else np.full(R, float(cfg.lr))
        restarts = np.zeros(R, dtype=np.int64)
        out, todo = None, np.arange(R)
        for attempt in range(cfg.restarts + 1):
            for step in np.unique(lr[todo]):  # one batch per step size
                rows = todo[lr[todo] == step]
                part = _train_one_step(objective, theta0[rows], cfg.with_lr(step), seed, ids[rows], on_finish, on_step,
                                       snapshots)  # fmt: skip
                out = _place(out, part, rows, R)
            failed = todo[np.isin(out.status[todo], cfg.restart_on) & (lr[todo] / 2 >= safeguards.LR_MIN)]
            if attempt == cfg.restarts or failed.size == 0:
                break
            lr[failed] /= 2
            restarts[failed] += 1
            if on_finish is not None:
                on_finish(-failed.size)  # they run again
            todo = failed
    out.status = out.status.astype(str)
    out.lr, out.restarts = lr, restarts
    return out


def _train_one_step(objective, theta0, cfg, seed, ids, on_finish, on_step, snapshots=False) -> TrainResult:
    """Every init of ``theta0`` with the one step ``cfg.lr``."""
    if objective.fuses(cfg):
        fused = objective.train_fused(theta0, cfg)  # the whole loop in one compiled call
        if on_finish is not None:
            on_finish(theta0.shape[0])
        return TrainResult(fused.theta, labels(fused.stop), fused.steps, fused.loss, fused.grad_norm)
    return _train(objective, theta0, cfg, seed, ids, on_finish, on_step, snapshots)


#: the dtype of an array of status labels: as wide as the longest
_LABEL = np.asarray(STATUSES).dtype


def _place(out: TrainResult | None, part: TrainResult, rows, R: int) -> TrainResult:
    """``part`` (the inits ``rows`` of a batch of ``R``) written into ``out``; the
    history of those inits replaced by theirs in ``part``."""
    if out is None:
        if len(rows) == R and (np.diff(rows) == 1).all() and (R == 0 or rows[0] == 0):
            # one batch of all the inits (the usual case): nothing to copy; the labels in
            # an array as wide as the longest, for the restarts to write into
            part.status = part.status.astype(_LABEL, copy=False)
            return part
        status = np.full(R, Stop.MAX_STEPS.label, dtype=_LABEL)  # (an object array is slow to fill)
        out = TrainResult(np.full((R, part.theta.shape[1]), np.nan), status, np.zeros(R, dtype=np.int64),
                          np.full(R, np.nan), np.full(R, np.nan))  # fmt: skip
    out.theta[rows], out.status[rows], out.steps[rows] = part.theta, part.status, part.steps
    out.loss[rows], out.grad_norm[rows] = part.loss, part.grad_norm
    if part.history is not None:
        again = np.isin(out.history["init"], part.history["init"]) if out.history is not None else None
        kept = {} if again is None else {key: value[~again] for key, value in out.history.items()}
        out.history = {key: np.concatenate([kept.get(key, value[:0]), value]) for key, value in part.history.items()}
    return out


def _train(objective, theta0, cfg, seed, ids, on_finish, on_step, snapshots=False):
    R, P = theta0.shape
    backend = objective.backend
    xp = backend.xp
    dtype = getattr(xp, cfg.dtype)

    out_theta = np.empty_like(theta0)  # every row is written when its init stops
    status = np.full(R, Stop.MAX_STEPS.label, dtype=object)
    steps = np.zeros(R, dtype=np.int64)
    loss_out = np.full(R, np.nan)
    gn_out = np.full(R, np.nan)
    log_at = set(history_steps(cfg.max_steps, cfg.history).tolist())
    hist = {"init": [], "step": [], "loss": [], "grad_norm": []} if log_at else None
    if hist is not None and snapshots:
        hist["theta"] = []

    rows = np.arange(R)  # which rows of the output the working arrays hold
    w = backend.asarray(theta0, dtype)
    buf = xp.zeros_like(w) if cfg.method in ("momentum", "nesterov") else None
    sgd = _MinibatchStream(ids, seed, objective.samples, cfg.batch_size) if cfg.method == "sgd" else None

    for t in range(cfg.max_steps + 1):
        if on_step is not None:
            on_step(t, rows.size)
        # SGD applies the stopping rules at epoch ends; history only records
        check = sgd is None or t == cfg.max_steps or t % sgd.per_epoch == 0
        if check or t in log_at:
            loss, g = objective.value_and_grad(w)
            loss_h = backend.to_numpy(loss).astype(np.float64)
            gn_h = backend.to_numpy(xp.sqrt(xp.sum(g * g, axis=1))).astype(np.float64)
            if hist is not None and t in log_at:
                for key, value in zip(hist, (ids[rows], np.full(rows.size, t), loss_h, gn_h)):
                    hist[key].append(np.asarray(value))
                if snapshots:
                    hist["theta"].append(backend.to_numpy(w).astype(np.float64))
            stop = _stopping(cfg, t, loss_h, gn_h) if check else np.zeros(rows.size, np.int8)
            done = stop > 0
            if done.any():
                where = rows[done]
                # all stopping at once (the last step) is common: no gather then
                stopped = w if done.all() else w[xp.asarray(np.flatnonzero(done))]
                out_theta[where] = backend.to_numpy(stopped)
                status[where] = labels(stop[done])
                steps[where] = t
                loss_out[where] = loss_h[done]
                gn_out[where] = gn_h[done]
                keep = np.flatnonzero(~done)
                rows = rows[keep]
                keep_d = xp.asarray(keep)
                w, g = w[keep_d], g[keep_d]
                if buf is not None:
                    buf = buf[keep_d]
                if sgd is not None:
                    sgd.keep(keep)
                if on_finish is not None:
                    on_finish(int(done.sum()))
                if rows.size == 0:
                    break
        if sgd is not None:
            _, g = objective.batch_value_and_grad(w, sgd.rows(t))
        if cfg.method == "momentum":
            buf = cfg.momentum * buf + g
            w = w - cfg.lr * buf
        elif cfg.method == "nesterov":
            buf = cfg.momentum * buf + g
            w = w - cfg.lr * (g + cfg.momentum * buf)
        else:
            w = w - cfg.lr * g

    history = None
    if hist is not None and hist["init"]:
        history = {key: np.concatenate(values) for key, values in hist.items()}
    return TrainResult(out_theta, status.astype(str), steps, loss_out, gn_out, history)


def _stopping(cfg, t, loss, grad_norm):
    """Per init: its :class:`~nnkit.core.stops.Stop` code (``RUNNING`` to go on)."""
    finite = np.isfinite(loss) & np.isfinite(grad_norm)
    code = np.full(loss.size, Stop.RUNNING, dtype=np.int8)
    if t == cfg.max_steps:
        code[:] = Stop.MAX_STEPS
    code[finite & (loss <= cfg.loss_target)] = Stop.TARGET
    if cfg.grad_tol > 0:
        code[finite & (grad_norm <= cfg.grad_tol)] = Stop.CONVERGED
    code[~finite | (loss > cfg.max_loss)] = Stop.DIVERGED
    return code


class _MinibatchStream:
    """Minibatches for SGD: each init draws a fresh permutation of the n samples every
    epoch from its own stream and walks through it ``batch_size`` samples at a time
    (the last incomplete batch of an epoch is dropped, so all batches have one shape)."""

    def __init__(self, ids, seed, n, batch_size):
        self.b = min(batch_size, n)
        self.per_epoch = n // self.b
        self.n = n
        self.rngs = [shuffle_rng(seed, int(i)) for i in ids]
        self.perm = None

    def keep(self, keep):
        self.rngs = [self.rngs[k] for k in keep]
        if self.perm is not None:
            self.perm = self.perm[keep]

    def rows(self, t):
        """The samples ``(R, b)`` of step ``t`` of every running init."""
        j = t % self.per_epoch
        if j == 0 or self.perm is None:
            self.perm = np.stack([rng.permutation(self.n) for rng in self.rngs])
        return self.perm[:, j * self.b : (j + 1) * self.b]
