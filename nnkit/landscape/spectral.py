"""Curvature of networks too large for the exact Hessian: its trace and its spectral
density from Hessian-vector products alone, batched over networks.

Every estimate here touches ``H`` only through :meth:`nnkit.objective.Objective.hvp`
(``H(theta_r) @ V_r`` for every row ``r`` at once; the sampled objective does it exactly
with the R-operator, at the cost of about two gradients, without forming ``H``).

**Trace** (Hutchinson 1990). For a Rademacher vector ``z`` (entries +-1 with equal
probability) ``E[z^T H z] = tr H``, and ``Var[z^T H z] = 2 sum_{i != j} H_ij^2``; the mean
of ``z^T H z`` over independent probes is unbiased, with the usual standard error.

**Lanczos.** From a unit vector ``q_1`` the recursion ``beta_j q_{j+1} = H q_j -
alpha_j q_j - beta_{j-1} q_{j-1}`` builds an orthonormal basis ``Q_m`` of the Krylov space
``span{q_1, H q_1, ..., H^{m-1} q_1}`` with ``Q_m^T H Q_m = T_m``, the tridiagonal matrix
of the ``alpha_j`` (diagonal) and ``beta_j`` (off-diagonal). Its eigenvalues, the Ritz
values, approach the extreme eigenvalues of ``H`` first, and at ``m = P`` they are all of
them. In floating point the basis loses orthogonality as Ritz values converge, so every
new vector is orthogonalised against the whole basis (twice: "twice is enough"), which is
affordable because ``P`` is small to moderate and keeps ``Q (R, m, P)``. When ``beta_j``
vanishes (``m >= P``, or ``q_1`` lies in an invariant subspace of ``H``, e.g. when ``H``
has repeated eigenvalues) the Krylov space is exhausted: ``T_j`` is then exact and that
network's recursion stops, so each network has its own effective size.

**Spectral density** (stochastic Lanczos quadrature: Ubaru, Chen & Saad 2017; used for
neural networks by Ghorbani, Krishnan & Xiao 2019 and in PyHessian, Yao et al. 2020).
The density ``phi(t) = (1/P) sum_i delta(t - lambda_i)`` satisfies ``int f dphi =
(1/P) tr f(H) = E[v^T f(H) v]`` for a random unit vector ``v`` (``E[v v^T] = I/P``). For
``T_m = U diag(theta) U^T`` from Lanczos started at ``v``, Gauss quadrature gives ``v^T
f(H) v ~ sum_k U_1k^2 f(theta_k)``, exact for polynomials of degree up to ``2m - 1`` and
for every ``f`` once the Krylov space is exhausted. Averaging over probes gives nodes
(Ritz values) and weights (squared first components of the eigenvectors of ``T``, divided
by the number of probes) that sum to 1; broadening each node by a Gaussian gives a smooth
density, drawn on a log axis as PyHessian does.

**Randomness** is passed in explicitly (``rng``): a :class:`numpy.random.Generator`
(default ``numpy.random.default_rng(0)``) that draws for all ``R`` networks at once, or a
sequence of ``R`` generators, one per network, so that a network's estimate does not
depend on which other networks share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: a Lanczos recursion stops when ``beta_j <= tol * max_i |H q_i|`` (``i <= j``); ``tol``
#: is this or 100 machine epsilons of the dtype, whichever is larger
BREAKDOWN_RTOL = 1e-10
#: networks drawn with a label in :func:`figure`'s legend, at most
LEGEND_ROWS = 10


# -- randomness --------------------------------------------------------------------------


def _streams(rng, R: int):
    """``rng`` as a Generator, or a list of ``R`` Generators (one per network)."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (list, tuple)):
        if len(rng) != R or not all(isinstance(g, np.random.Generator) for g in rng):
            raise ValueError(f"rng: a numpy.random.Generator or a sequence of {R} of them (one per network)")
        return list(rng)
    raise TypeError(f"rng must be a numpy.random.Generator or a sequence of them, not {type(rng).__name__}")


def _draw(streams, R: int, shape: tuple, kind: str) -> np.ndarray:
    """Host float64 ``(R, *shape)``: standard normal (``kind="normal"``) or Rademacher
    (``"rademacher"``) entries, row ``r`` from ``streams[r]`` when there is one stream per
    network."""

    def one(g, size):
        if kind == "rademacher":
            return g.integers(0, 2, size=size).astype(np.float64) * 2.0 - 1.0
        return g.standard_normal(size)

    if isinstance(streams, np.random.Generator):
        return one(streams, (R,) + shape)
    return np.stack([one(g, shape) for g in streams])


# -- the trace -------------------------------------------------------------------------


def hutchinson(objective, theta, probes: int = 100, rng=None, stderr: bool = False):
    """Hutchinson's estimate of ``tr H(theta_r)`` for every row of ``theta (R, P)``.

    Each network gets its own ``probes`` Rademacher vectors ``z (R, P)``; each probe is one
    :meth:`~nnkit.objective.Objective.hvp` call for all ``R`` networks. ``rng``: see the
    module docstring.

    Returns host float64 ``trace (R,)``, the mean of ``z^T H z`` over the probes, or with
    ``stderr=True`` the pair ``(trace (R,), stderr (R,))``, ``stderr`` the sample standard
    deviation of ``z^T H z`` over ``sqrt(probes)`` (NaN for one probe).
    """
    if probes < 1:
        raise ValueError(f"probes must be at least 1, not {probes}")
    backend = objective.backend
    xp = backend.xp
    R, P = theta.shape
    streams = _streams(rng, R)
    mean = xp.zeros((R,), dtype=theta.dtype)
    m2 = xp.zeros((R,), dtype=theta.dtype)
    for k in range(1, probes + 1):  # Welford's running mean and sum of squared deviations
        z = backend.asarray(_draw(streams, R, (P,), "rademacher"), theta.dtype)
        q = xp.sum(z * objective.hvp(theta, z), axis=-1)
        delta = q - mean
        mean = mean + delta / k
        m2 = m2 + delta * (q - mean)
    trace = backend.to_numpy(mean).astype(np.float64)
    if not stderr:
        return trace
    m2 = backend.to_numpy(m2).astype(np.float64)
    se = np.sqrt(m2 / (probes - 1) / probes) if probes > 1 else np.full(R, np.nan)
    return trace, se


# -- Lanczos -----------------------------------------------------------------------------


@dataclass
class Lanczos:
    """Lanczos tridiagonalisations, one per network and start vector (host float64).

    With one start vector per network (``vectors=1``) the shapes are ``alpha (R, m)``,
    ``beta (R, m - 1)``, ``size (R,)``, ``start (R, P)``; with ``vectors=k`` an axis of
    ``k`` follows ``R``: ``alpha (R, k, m)``, ``beta (R, k, m - 1)``, ``size (R, k)``,
    ``start (R, k, P)``.

    ``size`` is each recursion's effective size ``s <= m``: where the Krylov space was
    exhausted after ``s`` steps, only ``alpha[..., :s]`` and ``beta[..., :s - 1]`` count
    (the rest is 0, ``beta[..., s - 1]`` included). ``start`` holds the unit start vectors.
    Rows whose Hessian-vector products were not finite have non-finite coefficients.
    """

    alpha: np.ndarray
    beta: np.ndarray
    size: np.ndarray
    start: np.ndarray

    def ritz(self):
        """Ritz values (ascending) and Gauss weights (squared first components of the
        eigenvectors of ``T``), both shaped like ``alpha``: entries past ``size`` are NaN
        and 0; rows with non-finite coefficients are NaN throughout. Each recursion's
        weights sum to 1."""
        lead, m = self.alpha.shape[:-1], self.alpha.shape[-1]
        values, weights = _gauss(self.alpha.reshape(-1, m), self.beta.reshape(-1, max(m - 1, 0)), self.size.reshape(-1))
        return values.reshape(lead + (m,)), weights.reshape(lead + (m,))


def _gauss(alpha, beta, size):
    """Ritz values and weights of the tridiagonals ``alpha (N, m)``, ``beta (N, m - 1)`` of
    effective sizes ``size (N,)``: each row's leading ``size`` block, one batched ``eigh``
    per distinct size."""
    N, m = alpha.shape
    values = np.full((N, m), np.nan)
    weights = np.zeros((N, m))
    bad = ~(np.isfinite(alpha).all(axis=1) & np.isfinite(beta).all(axis=1)) | (size < 1)
    for s in np.unique(size[~bad]):
        rows = np.flatnonzero((size == s) & ~bad)
        T = np.zeros((rows.size, s, s))
        i = np.arange(s)
        T[:, i, i] = alpha[rows, :s]
        T[:, i[:-1], i[1:]] = T[:, i[1:], i[:-1]] = beta[rows, : s - 1]
        e, U = np.linalg.eigh(T)
        values[rows, :s] = e
        weights[rows, :s] = U[:, 0, :] ** 2
    weights[bad] = np.nan
    return values, weights


def lanczos(objective, theta, steps: int, rng=None, vectors: int = 1, start=None) -> Lanczos:
    """Batched Lanczos with full reorthogonalisation of ``H(theta_r)`` for every row of
    ``theta (R, P)``, ``m = min(steps, P)`` steps from ``vectors`` random unit vectors per
    network (standard normal, normalised; drawn from ``rng``, see the module docstring),
    or from the host ``start`` vectors ``(R, P)`` (``vectors=1``) or ``(R, vectors, P)``,
    normalised here.

    All networks and start vectors advance together, one
    :meth:`~nnkit.objective.Objective.hvp` call per step on ``R * vectors`` rows (``theta``
    repeated ``vectors`` times; only the rows still running are evaluated); the basis
    ``(R * vectors, m, P)`` stays on the objective's backend. A recursion whose ``beta``
    falls to ``BREAKDOWN_RTOL`` of the largest ``|H q_j|`` so far has exhausted its Krylov
    space and stops there (its ``size``). That scale only sees the Krylov space: a start
    vector exactly in the null space of ``H`` has ``H q_1 ~ 0`` and runs on through rounding
    noise, whose quadrature weights are at the level of that noise squared.

    Returns a :class:`Lanczos` (host float64 coefficients, shapes there).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    if vectors < 1:
        raise ValueError(f"vectors must be at least 1, not {vectors}")
    backend = objective.backend
    xp = backend.xp
    R, P = theta.shape
    if start is None:
        V0 = _draw(_streams(rng, R), R, (vectors, P), "normal")
    else:
        V0 = np.asarray(start, dtype=np.float64).reshape(R, vectors, P)
    norms = np.linalg.norm(V0, axis=-1, keepdims=True)
    if not np.all(np.isfinite(norms) & (norms > 0)):
        raise ValueError("the start vectors must be finite and non-zero")
    V0 = V0 / norms
    rows = theta if vectors == 1 else xp.reshape(xp.repeat(theta[:, None, :], vectors, axis=1), (R * vectors, P))
    alpha, beta, size = _recursion(objective, rows, backend.asarray(V0.reshape(R * vectors, P), theta.dtype),
                                   min(steps, P))  # fmt: skip
    lead = (R,) if vectors == 1 else (R, vectors)
    m = alpha.shape[-1]
    return Lanczos(
        alpha.reshape(lead + (m,)),
        beta.reshape(lead + (m - 1,)),
        size.reshape(lead),
        V0.reshape(lead + (P,)),
    )


def _recursion(objective, theta, v, m: int):
    """The Lanczos recursion of ``H(theta_n)`` from the unit vectors ``v (N, P)`` (backend
    arrays): host ``alpha (N, m)``, ``beta (N, m - 1)``, ``size (N,)``."""
    backend = objective.backend
    xp = backend.xp
    N, P = theta.shape
    tol = max(BREAKDOWN_RTOL, 100 * float(np.finfo(np.dtype(theta.dtype)).eps))
    alpha, beta = np.zeros((N, m)), np.zeros((N, max(m - 1, 0)))
    size = np.zeros(N, dtype=np.int64)
    scale = np.zeros(N)  # the largest |H q_j| so far: a lower bound on |H|
    active = np.ones(N, dtype=bool)
    Q = xp.zeros((N, m, P), dtype=theta.dtype)
    prev = xp.zeros_like(v)
    b_prev = xp.zeros((N,), dtype=theta.dtype)
    for j in range(m):
        Q[:, j, :] = v
        w = _hvp_rows(objective, theta, v, np.flatnonzero(active))
        a = xp.sum(v * w, axis=-1)
        hv = xp.linalg.vector_norm(w, axis=-1)
        w = w - a[:, None] * v - b_prev[:, None] * prev
        basis = Q[:, : j + 1, :]
        for _ in range(2):  # full reorthogonalisation, twice
            c = xp.matmul(basis, w[:, :, None])[:, :, 0]
            w = w - xp.matmul(c[:, None, :], basis)[:, 0, :]
        b = xp.linalg.vector_norm(w, axis=-1)
        a_host = backend.to_numpy(a).astype(np.float64)
        alpha[active, j] = a_host[active]
        size[active] = j + 1
        if j == m - 1:
            break
        b_host = backend.to_numpy(b).astype(np.float64)
        scale = np.fmax(scale, backend.to_numpy(hv).astype(np.float64))
        go = active & np.isfinite(a_host) & np.isfinite(b_host) & (b_host > tol * scale)
        beta[go, j] = b_host[go]
        beta[active & ~np.isfinite(b_host), j] = np.nan  # a failed product, kept visible
        active = go
        if not active.any():
            break
        mask = backend.asarray(go, xp.bool)
        safe = xp.where(mask, b, xp.ones_like(b))
        prev, b_prev = v, xp.where(mask, b, xp.zeros_like(b))
        v = xp.where(mask[:, None], w / safe[:, None], xp.zeros_like(w))
    return alpha, beta, size


def _hvp_rows(objective, theta, v, rows):
    """``H(theta_n) @ v_n`` for the host row indices ``rows`` (0 elsewhere), ``(N, P)``."""
    xp = objective.backend.xp
    if rows.size == theta.shape[0]:
        return objective.hvp(theta, v)
    out = xp.zeros_like(v)
    if rows.size:
        idx = objective.backend.asarray(rows, xp.int64)
        out[idx] = objective.hvp(xp.take(theta, idx, axis=0), xp.take(v, idx, axis=0))
    return out


# -- the spectral density ----------------------------------------------------------------


@dataclass
class SpectralDensity:
    """A discrete spectral density per network (host float64): ``nodes (R, K)`` carrying
    ``weights (R, K)`` that sum to 1 per row, standing for the ``size`` (``P``) eigenvalues
    of each Hessian; ``int f dphi ~ sum_k weights * f(nodes)`` ``~ (1/P) tr f(H)``.

    Entries of weight 0 pad the rows of a shorter Lanczos recursion (their node repeats one
    of the row's Ritz values); a row whose products were not finite is NaN.
    """

    nodes: np.ndarray
    weights: np.ndarray
    size: int

    def moment(self, k: int) -> np.ndarray:
        """``sum_k weights * nodes**k (R,)``, the estimate of ``(1/P) tr H^k``."""
        return np.sum(self.weights * self.nodes**k, axis=-1)

    def trace(self) -> np.ndarray:
        """``P * sum_k weights * nodes (R,)``, the estimate of ``tr H``."""
        return self.size * self.moment(1)

    def default_sigma(self) -> float:
        """The Gaussian width of :meth:`density` by default: 1% of the range of all
        nodes of positive weight (of their largest magnitude when they coincide)."""
        live = self.nodes[(self.weights > 0) & np.isfinite(self.nodes)]
        if not live.size:
            return 0.01
        spread = float(live.max() - live.min())
        return 0.01 * (spread or float(np.abs(live).max()) or 1.0)

    def default_grid(self, points: int = 2001, sigma=None) -> np.ndarray:
        """``points`` values from 8 widths below the lowest node of positive weight to 8
        above the highest (``sigma``: the width, default :meth:`default_sigma`)."""
        sigma = float(np.max(self.default_sigma() if sigma is None else sigma))
        live = self.nodes[(self.weights > 0) & np.isfinite(self.nodes)]
        lo, hi = (float(live.min()), float(live.max())) if live.size else (0.0, 0.0)
        return np.linspace(lo - 8 * sigma, hi + 8 * sigma, points)

    def density(self, grid, sigma=None) -> np.ndarray:
        """The density broadened by Gaussians of width ``sigma`` (a number or ``(R,)``;
        default :meth:`default_sigma`) on ``grid (G,)``: ``(R, G)``, integrating to the
        weights' total (1) over a grid that covers the nodes with a few widths to spare."""
        grid = np.asarray(grid, dtype=np.float64)
        sigma = self.default_sigma() if sigma is None else sigma
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (self.nodes.shape[0],))[:, None, None]
        out = np.zeros((self.nodes.shape[0], grid.size))
        for k in range(0, self.nodes.shape[1], 64):  # (R, 64, G) at a time
            x = (grid[None, None, :] - self.nodes[:, k : k + 64, None]) / sigma
            kernel = np.exp(-0.5 * x**2) / (np.sqrt(2 * np.pi) * sigma)
            out += np.sum(self.weights[:, k : k + 64, None] * kernel, axis=1)
        return out


def slq(objective, theta, steps: int = 30, probes: int = 10, rng=None) -> SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian spectrum of every row of ``theta
    (R, P)``: for each of ``probes`` random unit start vectors per network, a Lanczos
    recursion of ``min(steps, P)`` steps (:func:`lanczos`, drawing from ``rng``), whose Ritz
    values are the nodes and whose Gauss weights, over ``probes``, the weights.

    Returns a :class:`SpectralDensity` with ``nodes, weights (R, probes * m)``. A recursion
    that exhausted its Krylov space early contributes its exact quadrature with fewer
    nodes (the others weigh 0).
    """
    if probes < 1:
        raise ValueError(f"probes must be at least 1, not {probes}")
    R, P = theta.shape
    streams = _streams(rng, R)
    nodes, weights = [], []
    for _ in range(probes):
        values, w = lanczos(objective, theta, steps, rng=streams).ritz()
        fill = np.max(np.where(np.isnan(values), -np.inf, values), axis=-1, keepdims=True)
        good = np.isfinite(w).all(axis=-1, keepdims=True)
        nodes.append(np.where(np.isnan(values) & good, fill, values))
        weights.append(w / probes)
    return SpectralDensity(np.concatenate(nodes, axis=1), np.concatenate(weights, axis=1), P)


def exact_density(eigs) -> SpectralDensity:
    """The exact spectral density of eigenvalues ``eigs (R, P)`` (e.g. of
    :func:`nnkit.landscape.critical.spectrum`): weight ``1/P`` at each."""
    eigs = np.asarray(eigs, dtype=np.float64)
    if eigs.ndim == 1:
        eigs = eigs[None]
    P = eigs.shape[1]
    return SpectralDensity(eigs.copy(), np.full(eigs.shape, 1.0 / P), P)


# -- the figure --------------------------------------------------------------------------


def figure(density: SpectralDensity, grid=None, sigma=None, ax=None, exact=None, rows=None):
    """The spectral density of each network (``rows``: which, default all) on a log y
    axis, as PyHessian draws it, broadened by ``sigma`` on ``grid`` (defaults: the
    density's :meth:`~SpectralDensity.default_sigma` and
    :meth:`~SpectralDensity.default_grid`); ``exact`` (eigenvalues ``(R, P)`` or ``(P,)``,
    or a :class:`SpectralDensity`) adds each network's eigenvalues as a normalised histogram
    and a rug. Returns a :class:`matplotlib.figure.Figure` (pyplot is never touched); with
    ``ax`` given, draws into it and returns ``ax.figure``."""
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(5.2, 3.4), layout="constrained")
        ax = fig.add_subplot()
    sigma = density.default_sigma() if sigma is None else sigma
    grid = density.default_grid(sigma=sigma) if grid is None else np.asarray(grid, dtype=np.float64)
    rows = range(density.nodes.shape[0]) if rows is None else list(rows)
    values = density.density(grid, sigma)
    peak = np.nanmax(values[list(rows)]) if len(rows) and np.isfinite(values[list(rows)]).any() else 1.0
    floor = 1e-7 * peak if peak > 0 else 1e-7
    if exact is not None:
        eigs = exact.nodes if isinstance(exact, SpectralDensity) else np.atleast_2d(np.asarray(exact, dtype=float))
    labelled = len(rows) > 1
    for i, r in enumerate(rows):
        colour = f"C{i % 10}"
        label = f"network {r}" if labelled and i < LEGEND_ROWS else None
        ax.plot(grid, np.clip(values[r], floor, None), color=colour, lw=1.0, label=label)
        if exact is not None and r < eigs.shape[0]:
            e = eigs[r][np.isfinite(eigs[r])]
            if e.size:
                bins = np.linspace(min(grid[0], e.min()), max(grid[-1], e.max()), 61)
                ax.hist(e, bins=bins, density=True, histtype="stepfilled", color=colour, alpha=0.2,
                        label="exact eigenvalues" if i == 0 else None)  # fmt: skip
                ax.plot(e, np.full(e.size, 0.02), "|", color=colour, ms=6, transform=ax.get_xaxis_transform())
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("Hessian eigenvalue", fontsize=8)
    ax.set_ylabel("spectral density", fontsize=8)
    ax.tick_params(labelsize=7)
    if labelled or exact is not None:
        ax.legend(fontsize=6)
    return ax.figure
