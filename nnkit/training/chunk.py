"""Training a chunk of inits: a pure function from the objective, the training setup
and the init ids to arrays, which the run store writes (and which a distributed
runner can compute anywhere: no files, no global state, no printing here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..core.init import InitSpec, init_batch
from .loop import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class Task:
    """How the inits of one sweep point are trained: drawn by ``init`` from the streams
    of ``seed``, trained by ``train``; evaluated ``memory_mb`` at a time."""

    init: InitSpec
    train: TrainConfig
    seed: int = 0
    memory_mb: int = 512


@dataclass
class Chunk:
    """What training a chunk gives: per init (rows in the order of ``ids``) the final
    ``theta (R, P)`` and the ``columns`` of ``runs.parquet`` (``init``, ``seed``,
    ``status``, ``steps``, ``loss``, ``grad_norm``, ``lr``, ``restarts``, ``train_loss``, ``test_loss``,
    ``train_error``, ``test_error``), the ``history`` (a dict of equal-length arrays
    ``init, step, loss, grad_norm``) or None, and the wall ``seconds`` training took
    (evaluation aside)."""

    theta: np.ndarray
    columns: dict
    history: dict | None
    seconds: float


def train_chunk(objective, task: Task, ids, *, on_finish=None, on_step=None) -> Chunk:
    """Train the inits ``ids`` of ``task`` on ``objective`` and evaluate them.

    When the device runs out of memory the chunk is trained in halves (and so on down to
    single inits); the results are the same. ``on_finish`` and ``on_step`` are passed to
    :func:`nnkit.training.train` (progress only).
    """
    ids = np.asarray(ids, dtype=np.int64)
    theta0 = init_batch(objective.model.layout, task.init, task.seed, ids)
    started = time.perf_counter()
    res = _train_fitting(objective, theta0, task, ids, on_finish, on_step)
    seconds = time.perf_counter() - started
    columns = {
        "init": ids,
        "seed": task.seed,
        "status": res.status,
        "steps": res.steps,
        "loss": res.loss,
        "grad_norm": res.grad_norm,
        "lr": res.lr,
        "restarts": res.restarts,
        **evaluate(objective, res.theta, task.train.dtype, task.memory_mb),
    }
    return Chunk(res.theta, columns, res.history, seconds)


def _train_fitting(objective, theta0, task, ids, on_finish, on_step) -> TrainResult:
    """:func:`train` on the chunk, or, when the device runs out of memory, on each half
    of it in turn."""
    be = objective.backend
    try:
        return train(objective, theta0, task.train, seed=task.seed, ids=ids,
                     on_finish=on_finish, on_step=on_step)  # fmt: skip
    except Exception as exc:
        if ids.size < 2 or not be.is_out_of_memory(exc):
            raise
    be.release_memory()
    half = ids.size // 2
    parts = [
        _train_fitting(objective, theta0[part], task, ids[part], on_finish, on_step)
        for part in (slice(0, half), slice(half, None))
    ]
    return TrainResult.concat(parts)


def evaluate(objective, theta, dtype: str = "float64", memory_mb: int = 512, splits=("train", "test")) -> dict:
    """Data loss (no penalty) of every network of ``theta (R, P)`` (host) on the
    problem's train and test samples (those of ``splits``), and error rates for the
    logistic loss: ``{train_loss, test_loss, train_error, test_error}``, each ``(R,)``
    float64 (NaN where a split is empty or the loss has no error rate).

    Predictions store ``(rows, n, width)`` activations, so the networks are taken a
    slice at a time that fits in ``memory_mb``, whatever the chunk size."""
    data = objective.problem.data
    per_row = 8 * max(data.n, data.X_test.shape[0]) * (3 * sum(objective.model.layout.widths) + 4)
    step = max(1, memory_mb * 2**20 // per_row)
    parts = [_evaluate_rows(objective, dtype, theta[a : a + step], splits) for a in range(0, theta.shape[0], step)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _evaluate_rows(objective, dtype, theta, splits):
    be, spec, data = objective.backend, objective.spec, objective.problem.data
    xp = be.xp
    th = be.asarray(theta, getattr(xp, dtype))
    out = {}
    for split, X, target in (("train", data.X, data.y), ("test", data.X_test, data.y_test)):
        if split not in splits:
            continue
        if X.shape[0] == 0:
            out[f"{split}_loss"] = np.full(theta.shape[0], np.nan)
            out[f"{split}_error"] = np.full(theta.shape[0], np.nan)
            continue
        with np.errstate(all="ignore"):
            f = objective.predict(th, X)
            t = be.asarray(target, th.dtype)
            out[f"{split}_loss"] = be.to_numpy(spec.data_loss(xp, f, t)[0]).astype(float)
            if spec.loss == "logistic":
                wrong = be.to_numpy(f * t <= 0).astype(float)
                out[f"{split}_error"] = wrong.mean(axis=1)
            else:
                out[f"{split}_error"] = np.full(theta.shape[0], np.nan)
    return out


def chunk_size(objective, cfg: TrainConfig, inits: int, memory_mb: int) -> int:
    """Inits per chunk: as many as fit in the backend's memory budget (``memory_mb`` on
    the CPU, a share of the free memory on a GPU), at most ``inits``.

    Each init needs room for its parameters, gradient and buffers, and for what the
    objective keeps per init in a step (:meth:`Objective.stored_per_init`: nothing for
    fused kernels). The result is rounded down to a multiple of
    ``backend.chunk_multiple`` when larger.
    """
    backend = objective.backend
    words = 8 * objective.model.size + objective.stored_per_init(cfg)
    itemsize = 4 if cfg.dtype == "float32" else 8
    chunk = int(max(1, min(inits, backend.memory_budget(memory_mb) // (words * itemsize))))
    multiple = backend.chunk_multiple
    return chunk - chunk % multiple if chunk < inits and chunk > multiple else chunk
