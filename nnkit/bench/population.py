"""The population cases of ``nnkit bench`` (``--case P14``): ``R`` ReLU students with
``k`` units and a fixed output of ones learn an orthonormal teacher of ``k`` units in
``d = k`` dimensions on the exact population loss (``half``: ``E[(f - y)^2] / 2``),
by plain gradient descent from ``W ~ N(0, 1/d)``, each init until its gradient norm is
at most ``grad_tol`` (or ``max_steps``). What is timed is the whole study: every init to
its end. Each implementation runs in a process of its own
(``python -m nnkit.bench.population``) and prints one JSON line: its median wall time,
the steps taken by all inits, and the mean final loss, which must agree between them.

The peers: a NumPy loop batched over the inits whose intermediates are ``(R, k, k)``
angle and norm matrices (cosines from the Gram matrix, as a researcher writes it), and
JAX ``vmap(grad(loss))`` of the same closed form under ``jit``; both stop an init as
nnkit does (its gradient norm at most ``grad_tol``, the loss at most 0, or divergence).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from dataclasses import dataclass

import numpy as np

from .rounds import timed_runs
from .worker import RSS_PER_MB


@dataclass(frozen=True)
class PopulationCase:
    name: str
    R: int
    k: int
    lr: float = 0.1
    grad_tol: float = 1e-9
    max_steps: int = 200_000
    #: the peers timed with ``--peers``
    peers: tuple[str, ...] = ("numpy-loop", "jax-vmap")

    def label(self) -> str:
        return f"{self.name} (R={self.R:,} k=d={self.k} lr={self.lr} to |g| <= {self.grad_tol:g})"


POPULATION_CASES = {
    "P14": PopulationCase("P14", 200, 14),
    # the research-scale study's largest k with 10,000 inits, sized for a GPU (the
    # NumPy loop took 44 s for 200 of them on a 2-core machine, some 35 minutes for
    # all: JAX is its peer)
    "P20g": PopulationCase("P20g", 10_000, 20, peers=("jax-vmap",)),
}


def problem(case: PopulationCase, seed: int = 0):
    """Teacher ``V (d, k)`` (orthonormal columns) and inits ``theta0 (R, d k)``."""
    rng = np.random.default_rng(seed)
    V = np.linalg.qr(rng.standard_normal((case.k, case.k)))[0]
    theta0 = rng.standard_normal((case.R, case.k * case.k)) / math.sqrt(case.k)
    return V, theta0


def nnkit_problem(case: PopulationCase, V):
    """The case as an nnkit :class:`~nnkit.objective.Problem`: the students' model, the
    half squared loss and the teacher ``V`` with output weights one."""
    from nnkit.core.layout import Layout
    from nnkit.core.losses import ObjectiveSpec
    from nnkit.core.model import Model
    from nnkit.data import Dataset
    from nnkit.objective import Problem, Teacher

    d = k = case.k
    model = Model(Layout(d, (k,), (False,), output_trained=False, output_value=1.0, output_bias=False), ("relu",))
    X = np.zeros((1, d))
    return Problem(model, ObjectiveSpec(half=True), Dataset(X, np.zeros(1), X, np.zeros(1)), Teacher(V, np.ones(k)))


def nnkit_impl(backend_name):
    """nnkit's trainer on the population objective of ``backend_name``."""

    def prepare(case, V):
        from nnkit import backends
        from nnkit.objective import make_objective
        from nnkit.training import TrainConfig, train

        objective = make_objective(nnkit_problem(case, V), backends.get(backend_name))
        cfg = TrainConfig(lr=case.lr, max_steps=case.max_steps, grad_tol=case.grad_tol)

        def run(theta0):
            res = train(objective, theta0, cfg)
            return res.loss, res.steps

        return run

    return prepare


def loop_loss_grad(W, V):
    """The NumPy peer's half population loss ``(R,)`` and gradient ``(R, d, k)`` of
    students ``W (R, d, k)`` with outputs one against the teacher ``V (d, m)``, with
    ``(R, k, k)`` and ``(R, k, m)`` intermediates only."""
    nv = np.sqrt(np.sum(V * V, axis=0))
    idx_m = np.arange(V.shape[1])
    Kvv = _kernel(V.T @ V, nv[:, None] * nv[None, :])[1]
    Kvv[idx_m, idx_m] = 0.5 * nv * nv
    teacher = Kvv.sum()
    Wt = np.transpose(W, (0, 2, 1))  # (R, k, d)
    nw = np.sqrt(np.sum(Wt * Wt, axis=-1))  # (R, k)
    idx = np.arange(W.shape[2])
    ts, Ks = _kernel(np.matmul(Wt, W), nw[:, :, None] * nw[:, None, :])
    tt, Kt = _kernel(np.matmul(Wt, V), nw[:, :, None] * nv[None, None, :])
    Ks[:, idx, idx] = 0.5 * nw * nw
    loss = 0.5 * (Ks.sum(axis=(1, 2)) - 2.0 * Kt.sum(axis=(1, 2)) + teacher)
    # grad_w k(w, u) = (|u| sin t w/|w| + (pi - t) u) / (2 pi); G(w, w) = w / 2
    ss = np.sin(ts) * nw[:, None, :]
    st = np.sin(tt) * nv[None, None, :]
    ss[:, idx, idx] = 0.0
    ps = np.pi - ts
    ps[:, idx, idx] = np.pi
    inv = np.where(nw > 0, 1.0 / np.where(nw > 0, nw, 1.0), 0.0)
    coef = (ss.sum(axis=2) - st.sum(axis=2)) * inv  # (R, k): times w_i
    D = coef[:, :, None] * Wt + np.matmul(ps, Wt) - np.matmul(np.pi - tt, V.T)
    return loss, np.transpose(D, (0, 2, 1)) / (2.0 * np.pi)


def numpy_loop(case, V):
    """The closed form batched over inits with NumPy, ``(R, k, k)`` intermediates."""

    def run(theta0):
        R, d, k = theta0.shape[0], V.shape[0], V.shape[1]
        W = theta0.reshape(R, d, k).copy()
        live = np.arange(R)
        loss_out, steps = np.full(R, np.nan), np.zeros(R, dtype=np.int64)
        for t in range(case.max_steps + 1):
            loss, g = loop_loss_grad(W, V)
            norm = np.sqrt(np.sum(g * g, axis=(1, 2)))
            done = (norm <= case.grad_tol) | (loss <= 0.0) | ~np.isfinite(loss) | (t == case.max_steps)
            if done.any():
                loss_out[live[done]], steps[live[done]] = loss[done], t
                keep = ~done
                live, W, g = live[keep], W[keep], g[keep]
                if live.size == 0:
                    break
            W -= case.lr * g
        return loss_out, steps

    return run


def _kernel(dot, norms):
    """Angles ``t`` and ``k = norms (sin t + (pi - t) cos t) / (2 pi)`` from dot products."""
    cos = np.clip(dot / np.where(norms > 0, norms, 1.0), -1.0, 1.0)
    t = np.arccos(cos)
    return t, norms * (np.sqrt(1.0 - cos * cos) + (np.pi - t) * cos) / (2.0 * np.pi)


def jax_vmap(case, V):
    """JAX ``vmap(value_and_grad(loss))`` of the closed form under ``jit``, float64, the
    angles from the residuals (from the cosines, ``arccos`` has no derivative where a
    student unit meets a teacher unit, and the gradient turns NaN there)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    Vj = jnp.asarray(V)
    d, k = V.shape[0], V.shape[1]
    eye = jnp.eye(k, dtype=bool)
    tiny = 1e-300  # keeps the derivative of a norm finite where the vector is 0
    teacher = float(loop_loss_grad(np.zeros((1, d, k)), V)[0][0]) * 2.0  # E[y^2]

    def loss(w):  # one student, w (d k,); angles from the residuals u - (u . wh) wh
        W = w.reshape(d, k)
        nw = jnp.sqrt(jnp.sum(W * W, axis=0) + tiny)
        wh = W / nw

        def kernel(U):  # (d, m) -> K(w_i, u_j) (k, m)
            proj = wh.T @ U
            rest = U[None, :, :] - proj[:, None, :] * wh.T[:, :, None]
            npp = jnp.sqrt(jnp.sum(rest * rest, axis=1) + tiny)
            t = jnp.arctan2(npp, proj)
            return nw[:, None] * (npp + (jnp.pi - t) * proj) / (2.0 * jnp.pi)

        Ks = jnp.where(eye, 0.5 * nw[:, None] ** 2, kernel(W))
        return 0.5 * (jnp.sum(Ks) - 2.0 * jnp.sum(kernel(Vj)) + teacher)

    value_and_grad = jax.vmap(jax.value_and_grad(loss))

    @jax.jit
    def study(w0):
        """Every init to its stop in one ``lax.while_loop`` on the device."""
        R = w0.shape[0]

        def body(state):
            t, w, running, loss_out, steps = state
            value, g = value_and_grad(w)
            norm = jnp.sqrt(jnp.sum(g * g, axis=1))
            stop = (norm <= case.grad_tol) | (value <= 0.0) | ~jnp.isfinite(value) | (t == case.max_steps)
            done = running & stop
            loss_out = jnp.where(done, value, loss_out)
            steps = jnp.where(done, t, steps)
            running = running & ~stop
            w = jnp.where(running[:, None], w - case.lr * g, w)
            return t + 1, w, running, loss_out, steps

        state = (0, w0, jnp.ones(R, dtype=bool), jnp.full(R, jnp.nan), jnp.zeros(R, dtype=jnp.int64))
        _, _, _, loss_out, steps = jax.lax.while_loop(lambda s: s[2].any(), body, state)
        return loss_out, steps

    def run(theta0):
        loss_out, steps = study(jnp.asarray(theta0))
        return np.asarray(loss_out), np.asarray(steps)

    return run


IMPLS = {"nnkit-cuda": nnkit_impl("cuda"), "nnkit-numba": nnkit_impl("numba"), "nnkit-numpy": nnkit_impl("numpy"),
         "numpy-loop": numpy_loop, "jax-vmap": jax_vmap}  # fmt: skip
#: the module each peer needs
NEEDS = {"numpy-loop": "numpy", "jax-vmap": "jax"}


#: the columns of the population table
COLUMNS = {
    "case": "case", "impl": "implementation", "seconds": "seconds", "init_steps_per_s": "init-steps/s",
    "vs_numpy_loop": "x NumPy loop", "vs_jax": "x JAX", "mean_final_loss": "mean final loss",
    "converged": "at loss < 1e-10", "peak_rss_mb": "peak MB", "error": "error",
}  # fmt: skip


def implementations(backend_names, with_peers: bool, peers=tuple(NEEDS)) -> tuple[list[str], list[str]]:
    """``(impls to run, notes on what was left out and why)`` for population cases
    whose peers are ``peers``."""
    import importlib.util

    from ..about import install_hint

    from .. import backends

    impls, notes = [], []
    for name in backend_names:
        if f"nnkit-{name}" not in IMPLS:
            notes.append(f"nnkit-{name}: the population loss runs on cuda, numba and numpy only")
        elif not backends.pickable(name):  # (the CUDA simulator is no place for timings)
            notes.append(f"nnkit-{name}: {backends.probe(name).reason or 'only a simulator here'}")
        else:
            impls.append(f"nnkit-{name}")
    if with_peers:
        for peer in peers:
            module = NEEDS[peer]
            if importlib.util.find_spec(module) is None:
                notes.append(f"{peer}: not installed ({install_hint('bench')})")
            else:
                impls.append(peer)
    return impls, notes


def bench(names, impls, repeats=3, timeout=3600, echo=print, inits=0):
    """One row per population case and implementation, each run in a process of its
    own, timed in rounds: seconds for the whole study (median of ``repeats``) and the speed ratios
    (``inits``: only the first inits of each case, for a quick check)."""
    import pandas as pd

    from .rounds import run_rounds

    rows = []
    for name in names:
        jobs = {impl: ["--case", name, "--impl", impl, "--inits", str(inits)] for impl in impls}
        echo(f"  {name}:")
        for impl, out in run_rounds(jobs, max(repeats, 1), timeout, echo, module="nnkit.bench.population").items():
            rows.append({"case": name, "impl": impl, **out})
    table = pd.DataFrame(rows)
    for column in ("seconds", "init_steps_per_s", "mean_final_loss", "error"):
        if column not in table:
            table[column] = "" if column == "error" else float("nan")
    for _, group in table.groupby("case"):
        for peer, column in (("numpy-loop", "vs_numpy_loop"), ("jax-vmap", "vs_jax")):
            ref = group.loc[group["impl"] == peer, "seconds"]
            table.loc[group.index, column] = (ref.iloc[0] if len(ref) else float("nan")) / group["seconds"]
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True, choices=sorted(POPULATION_CASES))
    parser.add_argument("--impl", required=True, choices=sorted(IMPLS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--inits", type=int, default=0, help="only the first INITS inits (0: all)")
    parser.add_argument("--serve", action="store_true", help="time one run per line 'run' on stdin")
    args = parser.parse_args(argv)
    case = POPULATION_CASES[args.case]
    if args.inits:
        case = PopulationCase(case.name, args.inits, case.k, case.lr, case.grad_tol, case.max_steps)
    V, theta0 = problem(case)
    theta0 = theta0[: case.R]
    t0 = time.perf_counter()
    run = IMPLS[args.impl](case, V)
    run(theta0[: min(case.R, 4)])  # warm-up: compilation, caches, thread pools
    warm = time.perf_counter() - t0
    times, last = timed_runs(lambda: run(theta0), args.serve, max(args.repeats, 1), warm)
    if not times:
        raise SystemExit("no timed run")
    loss, steps = last
    seconds = statistics.median(times)
    row = {
        "case": case.name, "impl": args.impl, "seconds": seconds, "times": times, "warmup_s": warm,
        "init_steps": int(np.sum(steps)), "init_steps_per_s": float(np.sum(steps)) / seconds,
        "mean_final_loss": float(np.mean(loss)),
        "converged": int(np.sum(np.asarray(loss) < 1e-10)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / RSS_PER_MB,
    }  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
