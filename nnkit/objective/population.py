"""The exact population loss of one-hidden-layer ReLU students against a ReLU teacher.

Student ``f(x) = sum_j a_j relu(w_j . x)`` (``w_j`` the columns of ``W1 (d, k)``, ``a``
the trained ``W_out (k,)`` or the layout's fixed ``output_value``), teacher
``y(x) = sum_m b_m relu(v_m . x)`` (``V (d, k*)``, ``b (k*,)``), inputs ``x ~ N(0, I_d)``.
With the degree-1 arc-cosine kernel, for vectors ``w, u`` at angle ``t``::

    k(w, u) = E[relu(w.x) relu(u.x)] = |w||u| (sin t + (pi - t) cos t) / (2 pi)
            = (|w| |P_w u| + (pi - t) w.u) / (2 pi),   P_w = I - w w^T / |w|^2

the loss is a quadratic form in the output weights::

    E_x[(f - y)^2] = a^T K(W, W) a - 2 a^T K(W, V) b + b^T K(V, V) b

times the objective's factor ``c`` (1, or 1/2 with ``half = true``; ``reduction`` does
not apply: there are no samples), plus the objective's L2/L1 penalty.

Derivatives (``t`` the angle of ``w`` and ``u``, ``s = sin t``, ``c = cos t``,
``wh = w/|w|``, ``e`` the unit vector perpendicular to ``w`` in the plane of ``w`` and
``u``, pointing toward ``u``, so ``u = |u| (c wh + s e)``)::

    d t / d w = -e / |w|                           (from cos t = w.u / (|w||u|))
    d (|w||u| s) / d w = |u| s wh + |w||u| c dt/dw
    d ((pi - t) w.u) / d w = (pi - t) u - w.u dt/dw = (pi - t) u - |w||u| c dt/dw
    => G(w, u) = grad_w k(w, u) = (|u| s wh + (pi - t) u) / (2 pi)     (dt/dw cancels)

    d wh / d w = P_w / |w|,  d(|u| s)/d w = |u| c dt/dw = -|u| c e / |w|,
    d(pi - t)/d w = e / |w|, and u e^T - |u| c wh e^T = |u| s e e^T give
    J_ww(w, u) = d G / d w = |u| s / (2 pi |w|) (I - wh wh^T + e e^T)

    d(|u| s)/d u = d|P_w u|/d u = e,  d t / d u = -f / |u| (f: unit, perpendicular to u,
    toward w), and wh e^T + uh f^T = s (c (wh wh^T - e e^T) + s (wh e^T + e wh^T)) give
    J_wu(w, u) = d G / d u = ((pi - t) I + s c (wh wh^T - e e^T) + s^2 (wh e^T + e wh^T)) / (2 pi)

None of these divides by ``s``: at ``t = 0`` (``J_ww = 0``, ``J_wu = I/2``) and
``t = pi`` (both 0) they are the continuous limits (``k`` is C^2 there: ``k = w.u/2 +
O(t^3)`` near 0, ``O((pi - t)^3)`` near pi). A pair with ``w_i = w_j`` (the diagonal of
``K(W, W)``) uses ``k(w, w) = |w|^2/2`` exactly. Where ``|w| = 0`` (or ``|u| = 0``) ``k``
is not differentiable; the gradient and the second derivatives of that pair are set to 0,
as back-propagation with ``relu'(0) = 0`` gives.

The loss ``L = a^T K a - 2 a^T T b + const`` (``K = K(W, W)``, ``T = K(W, V)``) then has::

    D_i        = 2 (sum_j a_j G(w_i, w_j) - sum_m b_m G(w_i, v_m))            (d,)
    dL/dw_i    = a_i D_i                 dL/da_i = 2 (K a - T b)_i
    d2L/dw_i dw_j = 2 a_i a_j J_wu(w_i, w_j)
                    + [i = j] 2 a_i (sum_l a_l J_ww(w_i, w_l) - sum_m b_m J_ww(w_i, v_m))
    d2L/dw_i da_j = 2 a_i G(w_i, w_j) + [i = j] D_i
    d2L/da_i da_j = 2 K_ij
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, is_numpy_array

from ..backends import host_threads
from ..core.layout import Layout
from ..core.losses import ObjectiveSpec
from .base import Objective
from .hessian import SLICE_BYTES

_TWO_PI = 2.0 * math.pi


def _pairs(xp, A, U, order, same=False, jwu=True):
    """Kernel quantities of every pair ``(a_i, u_m)`` of the columns of ``A`` and ``U``.

    ``A (R, d, k)``, ``U (R or 1, d, m)``. Returns a dict with ``K (R, k, m)``; with
    ``order >= 1`` also ``G (R, k, m, d)`` (``grad_a k``); with ``order >= 2`` also
    ``alpha (R, k, m)`` (``J_ww = alpha (I - ah ah^T + e e^T)``), ``e (R, k, m, d)``,
    ``ah (R, k, d)`` and ``Jwu (R, k, m, d, d)`` (unless ``jwu`` is false: the Hessian
    needs it of the student pairs only). ``same``: ``A is U`` (the diagonal pairs then
    take the exact values for ``t = 0``).
    """
    At = xp.permute_dims(A, (0, 2, 1))  # (R, k, d) rows a_i
    Ut = xp.permute_dims(U, (0, 2, 1))  # (R, m, d) rows u_m
    na = xp.sqrt(xp.sum(At * At, axis=-1))  # (R, k)
    nu = xp.sqrt(xp.sum(Ut * Ut, axis=-1))  # (R, m)
    live_a = na > 0
    ah = At / xp.where(live_a, na, 1.0)[..., None]  # 0 where a_i = 0
    dot = xp.matmul(At, U)  # (R, k, m): a_i . u_m
    proj = xp.matmul(ah, U)  # u_m . ah_i = |u| cos t
    p = Ut[:, None, :, :] - proj[..., None] * ah[:, :, None, :]  # P_a u (R, k, m, d)
    npp = xp.sqrt(xp.sum(p * p, axis=-1))  # |P_a u| = |u| sin t
    t = xp.atan2(npp, proj)  # the angle, accurate near 0 and pi
    K = (na[..., None] * npp + (math.pi - t) * dot) / _TWO_PI
    k = K.shape[-2]
    diag = None
    if same:
        diag = xp.eye(k, dtype=xp.bool)
        K = xp.where(diag, (0.5 * na * na)[..., None], K)
    out = {"K": K}
    if order < 1:
        return out
    G = npp[..., None] * ah[:, :, None, :] + (math.pi - t)[..., None] * Ut[:, None, :, :]
    G = G / _TWO_PI
    G = G * xp.astype(live_a, G.dtype)[:, :, None, None]
    if same:
        G = xp.where(diag[..., None], 0.5 * At[:, :, None, :], G)
    out["G"] = G
    if order < 2:
        return out
    live = xp.astype(live_a[:, :, None] & (nu > 0)[:, None, :], K.dtype)  # (R, k, m)
    alpha = npp / (_TWO_PI * xp.where(live_a, na, 1.0)[..., None]) * live
    live_p = npp > 0
    e = p / xp.where(live_p, npp, 1.0)[..., None]  # 0 where u is parallel to a
    if same:
        alpha = xp.where(diag, 0.0, alpha)
    out.update(alpha=alpha, e=e, ah=ah)
    if not jwu:
        return out
    s, c = xp.sin(t), xp.cos(t)
    eye = xp.eye(A.shape[1], dtype=K.dtype)
    aa = ah[:, :, None, :, None] * ah[:, :, None, None, :]  # (R, k, 1, d, d)
    ee = e[..., :, None] * e[..., None, :]  # (R, k, m, d, d)
    ae = ah[:, :, None, :, None] * e[..., None, :]  # ah e^T
    Jwu = (
        (math.pi - t)[..., None, None] * eye
        + (s * c)[..., None, None] * (aa - ee)
        + (s * s)[..., None, None] * (ae + xp.permute_dims(ae, (0, 1, 2, 4, 3)))
    ) / _TWO_PI
    Jwu = Jwu * live[..., None, None]
    if same:
        Jwu = xp.where(diag[..., None, None], 0.5 * eye, Jwu)
    out["Jwu"] = Jwu
    return out


class TeacherStudentPopulation:
    """Exact population objective of a batch of ReLU students against one ReLU teacher.

    Parameters
    ----------
    layout : a :class:`Layout` (or a :class:`Model`, whose activation must be relu) of
        depth 1 with no hidden bias and no output bias.
    V : teacher weights ``(d, k*)``, one teacher unit per column.
    b : teacher output weights ``(k*,)`` (default ones).
    spec : an :class:`~nnkit.core.losses.ObjectiveSpec` (squared loss); its ``half``
        sets the factor ``c`` and its ``l2``/``l1``/``regularize_bias`` the penalty.
        Default: none.
    scale : overrides ``c``.
    xp : array namespace (default: the namespace of ``theta``).

    Methods take ``theta (R, P)``. :class:`PopulationObjective` is this closed form as
    the :class:`~nnkit.objective.Objective` of a problem.
    """

    def __init__(self, layout, V, b=None, spec=None, scale=None, xp=None):
        if not isinstance(layout, Layout):  # a Model
            acts = tuple(layout.activations)
            if acts != ("relu",):
                raise ValueError(f"the population loss needs relu units, got activations {acts}")
            layout = layout.layout
        if layout.depth != 1 or layout.bias[0] or layout.output_bias:
            raise ValueError(
                "the teacher-student population loss needs one hidden layer with no hidden "
                f"bias and no output bias, got widths={layout.widths}, bias={layout.bias}, "
                f"output_bias={layout.output_bias}"
            )
        spec = ObjectiveSpec() if spec is None else spec
        if spec.loss != "squared":
            raise ValueError(f"the population loss is the squared loss, got {spec.loss!r}")
        V = np.asarray(V, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] != layout.d:
            raise ValueError(f"teacher weights V must have shape (d={layout.d}, k*), got {V.shape}")
        b = np.ones(V.shape[1]) if b is None else np.asarray(b, dtype=np.float64)
        if b.shape != (V.shape[1],):
            raise ValueError(f"teacher output weights b need shape ({V.shape[1]},), got {b.shape}")
        self.layout, self.V, self.b = layout, V, b
        self.spec = spec
        self.scale = (0.5 if spec.half else 1.0) if scale is None else float(scale)
        self._xp = xp
        self._mask = spec.penalty_mask(layout)
        self._cache = {}
        KV = _pairs(array_namespace(V), V[None], V[None], 0, same=True)["K"][0]
        self.teacher_norm = float(b @ KV @ b)  #: b^T K(V, V) b = E[y(x)^2]

    def _namespace(self, theta):
        return self._xp if self._xp is not None else array_namespace(theta)

    def _consts(self, xp, theta):
        """Teacher ``V (1, d, k*)``, ``b (k*,)`` and the penalty mask, in theta's kind."""
        key = (type(theta), theta.dtype)
        if key not in self._cache:
            dt = theta.dtype
            self._cache[key] = (
                xp.asarray(self.V[None], dtype=dt),
                xp.asarray(self.b, dtype=dt),
                xp.asarray(self._mask, dtype=dt),
            )
        return self._cache[key]

    def _split(self, xp, theta):
        """``W (R, d, k)`` and output weights ``a (R, k)``."""
        lay = self.layout
        W = lay.weights(theta, 1)
        if lay.output_trained:
            a = lay.view(theta, "W_out")
        else:
            a = xp.full((theta.shape[0], lay.widths[0]), lay.output_value, dtype=theta.dtype)
        return W, a

    def _quantities(self, xp, theta, order):
        """Everything the loss and its derivatives need, as a dict."""
        V, b, mask = self._consts(xp, theta)
        W, a = self._split(xp, theta)
        S = _pairs(xp, W, W, order, same=True)  # student-student pairs
        T = _pairs(xp, W, V, order, jwu=False)  # student-teacher pairs
        Ka = xp.sum(S["K"] * a[:, None, :], axis=-1)  # (K a)_i
        Tb = xp.sum(T["K"] * b, axis=-1)  # (T b)_i
        loss = xp.sum(a * (Ka - 2.0 * Tb), axis=-1) + self.teacher_norm
        q = {"W": W, "a": a, "b": b, "mask": mask, "S": S, "T": T}
        return q | {"Ka": Ka, "Tb": Tb, "loss": loss}

    def _with_penalty(self, xp, theta, mask, loss, grad=None):
        if self.spec.has_penalty():
            pv, pg = self.spec.penalty(xp, theta, mask)
            loss = loss + pv
            grad = None if grad is None else grad + pg
        return loss, grad

    def value(self, theta):
        """Objective of every student, shape ``(R,)``: ``c E_x[(f - y)^2] + penalty``."""
        return self.value_and_grad(theta)[0]

    def _grad_parts(self, xp, q):
        """``D (R, k, d)``, ``dL/dw (R, k, d)`` (rows w_i), ``dL/da (R, k)``."""
        a, b = q["a"], q["b"]
        Ga = xp.sum(q["S"]["G"] * a[:, None, :, None], axis=2)  # sum_j a_j G(w_i, w_j)
        D = 2.0 * (Ga - xp.sum(q["T"]["G"] * b[:, None], axis=2))
        return D, a[..., None] * D, 2.0 * (q["Ka"] - q["Tb"])

    def _flat(self, xp, gw, ga):
        R = gw.shape[0]
        gW = xp.reshape(xp.permute_dims(gw, (0, 2, 1)), (R, -1))  # W1 is (d, k) row-major
        return xp.concat([gW, ga], axis=1) if self.layout.output_trained else gW

    def value_and_grad(self, theta):
        """Objective ``(R,)`` and its exact gradient ``(R, P)``, from ``(R, k, k + k*)``
        angle and norm matrices (:meth:`_lean`): no ``(R, k, m, d)`` arrays."""
        xp = self._namespace(theta)
        V, b, mask = self._consts(xp, theta)
        loss, gw, ga = self._lean(xp, theta, V[0], b)
        grad = self.scale * self._flat(xp, gw, ga)
        return self._with_penalty(xp, theta, mask, self.scale * loss, grad)

    def _lean(self, xp, theta, V, b):
        """Loss ``(R,)``, ``dL/dw (R, k, d)`` and ``dL/da (R, k)`` by matrix products over
        the pairs: with ``N_ij = |u_j| sin t_ij``, ``sum_j c_j G(w_i, u_j) = (wh_i sum_j
        c_j N_ij + sum_j c_j (pi - t_ij) u_j) / (2 pi)``. The angles come from the
        cosines; where that loses digits (``t`` near 0 or pi) the two terms of ``G``
        cancel the error to rounding (the formulas above agree to ~1e-14)."""
        lay = self.layout
        W = lay.weights(theta, 1)
        # a fixed output layer is one number: the sums over units need no products then
        trained = lay.output_trained
        a = lay.view(theta, "W_out") if trained else float(lay.output_value)

        # sums over the last axis as products with a vector (several times faster)
        def over_units(M):  # sum_j a_j M_ij
            if trained:
                return xp.matmul(M, a[:, :, None])[..., 0]
            return a * xp.matmul(M, xp.ones(M.shape[-1], dtype=M.dtype))

        Wt = xp.permute_dims(W, (0, 2, 1))  # (R, k, d)
        nw = xp.sqrt(xp.sum(Wt * Wt, axis=-1))  # (R, k)
        nv = xp.sqrt(xp.sum(V * V, axis=0))  # (m,)
        dead = xp.astype(nw == 0, theta.dtype)
        k = W.shape[2]
        # the diagonal (a unit with itself) and the rest, as factors: products and sums
        # are several times faster than `where` on these (R, k, k) arrays
        on = xp.eye(k, dtype=theta.dtype)
        off = 1.0 - on

        def angles(dot, norms):
            cos = xp.clip(dot / (norms + xp.astype(norms == 0, theta.dtype)), -1.0, 1.0)
            t = xp.acos(cos)
            sin = xp.sqrt((1.0 - cos) * (1.0 + cos))  # sin t, for t in [0, pi]
            return t, sin, (norms * sin + (math.pi - t) * dot) / _TWO_PI

        ts, ss, Ks = angles(xp.matmul(Wt, W), nw[:, :, None] * nw[:, None, :])
        tt, st, Kt = angles(xp.matmul(Wt, V), nw[:, :, None] * nv)
        Ks = Ks * off + (0.5 * nw * nw)[:, :, None] * on  # k(w, w) = |w|^2 / 2
        Ka = over_units(Ks)
        Tb = xp.matmul(Kt, b)
        loss = xp.sum(a * (Ka - 2.0 * Tb), axis=-1) + self.teacher_norm
        Ns = ss * nw[:, None, :] * off  # G(w, w) = w / 2: no sine term,
        Ps = math.pi - ts * off  # and pi - t = pi
        inv = (1.0 - dead) / (nw + dead)
        coef = (over_units(Ns) - xp.matmul(st, nv * b)) * inv  # times w_i
        PsW = xp.matmul(Ps * a[:, None, :], Wt) if trained else a * xp.matmul(Ps, Wt)
        Dsum = coef[..., None] * Wt + PsW - xp.matmul((math.pi - tt) * b, xp.permute_dims(V, (1, 0)))
        D = (2.0 / _TWO_PI) * (1.0 - dead)[..., None] * Dsum  # G = 0 for a unit w = 0
        return loss, (a[..., None] if trained else a) * D, 2.0 * (Ka - Tb)

    def hessian(self, theta):
        """Exact Hessian of the objective, ``(R, P, P)`` (L1 contributes 0 a.e.); NumPy
        arrays in slices of students that stay in the cache, one range per core."""
        xp = self._namespace(theta)
        if not is_numpy_array(theta):
            return self._hessian(xp, theta)
        R, (d, k) = theta.shape[0], (self.layout.d, self.layout.widths[0])
        step = max(1, SLICE_BYTES // (8 * 8 * k * k * d * d))  # ~8 (k, k, d, d) arrays each

        def part(first, last):
            return [self._hessian(xp, theta[a : min(last, a + step)]) for a in range(first, last, step)]

        parts = [h for chunk in host_threads.map_slices(part, R, step) for h in chunk]
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)

    def _hessian(self, xp, theta):
        q = self._quantities(xp, theta, 2)
        a, b, S, T = q["a"], q["b"], q["S"], q["T"]
        R, d, k = q["W"].shape
        D, _, _ = self._grad_parts(xp, q)
        # sum_l beta_il J_ww(w_i, *_l) with beta = a_l (students), -b_m (teacher)
        beta_s = S["alpha"] * a[:, None, :]
        beta_t = -T["alpha"] * b
        ah = S["ah"]
        eye = xp.eye(d, dtype=theta.dtype)
        proj_perp = eye - ah[..., :, None] * ah[..., None, :]  # (R, k, d, d)

        def ee_sum(beta, e):  # sum_l beta_il e_il e_il^T -> (R, k, d, d)
            return xp.matmul(xp.permute_dims(e * beta[..., None], (0, 1, 3, 2)), e)

        Sww = (xp.sum(beta_s, axis=-1) + xp.sum(beta_t, axis=-1))[..., None, None] * proj_perp
        Sww = Sww + ee_sum(beta_s, S["e"]) + ee_sum(beta_t, T["e"])
        # d2L/dw_i dw_j as (R, i, j, a, b)
        Hww = 2.0 * (a[:, :, None] * a[:, None, :])[..., None, None] * S["Jwu"]
        dk = xp.eye(k, dtype=theta.dtype)
        Hww = Hww + dk[:, :, None, None] * (2.0 * a[..., None, None] * Sww)[:, :, None, :, :]
        # parameter order: W1[a, i] at a*k + i  -> (R, a, i, b, j)
        H = xp.reshape(xp.permute_dims(Hww, (0, 3, 1, 4, 2)), (R, d * k, d * k))
        if self.layout.output_trained:
            # d2L/dw_i[a] da_j as (R, i, j, a) -> (R, a, i, j)
            Hwa = 2.0 * a[:, :, None, None] * S["G"] + dk[:, :, None] * D[:, :, None, :]
            Hwa = xp.reshape(xp.permute_dims(Hwa, (0, 3, 1, 2)), (R, d * k, k))
            Haa = 2.0 * S["K"]
            top = xp.concat([H, Hwa], axis=2)
            bottom = xp.concat([xp.permute_dims(Hwa, (0, 2, 1)), Haa], axis=2)
            H = xp.concat([top, bottom], axis=1)
        H = self.scale * H
        if self.spec.l2:
            diag = q["mask"][:, None] * xp.eye(H.shape[-1], dtype=H.dtype)
            H = H + (2.0 * self.spec.l2) * diag
        return H

    def predict(self, theta, X):
        """Student outputs ``f (R, n)`` on ``X (n, d)`` or ``(R, n, d)``."""
        xp = self._namespace(theta)
        W, a = self._split(xp, theta)
        if X.ndim == 3:
            H = xp.maximum(xp.matmul(X, W), 0.0)  # (R, n, k)
            return xp.sum(H * a[:, None, :], axis=-1)
        R, d, k = W.shape
        # shared X: one GEMM for all students, (n, d) @ (d, R k)
        Z = xp.matmul(X, xp.reshape(xp.permute_dims(W, (1, 0, 2)), (d, R * k)))
        H = xp.maximum(xp.reshape(Z, (X.shape[0], R, k)), 0.0)
        return xp.permute_dims(xp.sum(H * a, axis=-1), (1, 0))

    def teacher(self, X):
        """Teacher outputs ``y (n,)`` on host ``X (n, d)``."""
        X = np.asarray(X, dtype=np.float64)
        return np.maximum(X @ self.V, 0.0) @ self.b


class PopulationObjective(Objective):
    """The exact population loss of a problem with a teacher (:class:`Teacher`): the
    closed form above, batched over the rows of ``theta``. On the ``numba`` backend its
    value, gradient and full-batch training run in compiled kernels
    (:mod:`nnkit.backends.numba_population`), on the ``cuda`` backend in Numba-CUDA
    kernels, a block per init (:mod:`nnkit.backends.cuda_population`; students too
    large for a block's shared memory are computed on the host), elsewhere with NumPy on
    the host. Hessians are the closed form's on the host."""

    #: the backends the closed form runs on, fastest first (others train it on numpy)
    BACKENDS = ("cuda", "numba", "numpy")
    #: the training methods the kernels run whole
    FUSED_METHODS = ("gd", "momentum", "nesterov")
    #: training hands each thread about this many ranges of inits, one at a time
    RANGES_PER_THREAD = 32

    def __init__(self, problem, backend):
        super().__init__(problem, backend)
        teacher = problem.teacher
        self.closed_form = TeacherStudentPopulation(problem.model, teacher.V, teacher.b, problem.spec)
        self._compiled = backend.name == "numba"
        # the cuda backend's arrays live on the GPU: what its kernels do not compute,
        # the closed form computes on a host copy
        self._on_device = backend.name == "cuda"
        self._gpu = None
        if self._on_device:
            from ..backends import cuda_population

            m = teacher.V.shape[1]
            if cuda_population.fits(self.closed_form.layout, m):
                self._gpu = cuda_population
                self._shape = cuda_population.shape(self.closed_form.layout, m)
                self._teacher = cuda_population.DeviceTeacher(backend, self.closed_form)

    def _consts(self):
        cf, lay = self.closed_form, self.closed_form.layout
        return (
            lay.d, lay.widths[0], lay.output_trained, float(lay.output_value or 0.0),
            np.ascontiguousarray(cf.V.T), np.ascontiguousarray(cf.b), cf.teacher_norm, cf.scale,
            np.asarray(cf._mask, dtype=np.float64), float(cf.spec.l2), float(cf.spec.l1),
        )  # fmt: skip

    def value_and_grad(self, theta):
        if self._gpu is not None and theta.dtype == np.float64:
            return self._gpu.value_and_grad(self.backend, self._shape, self._teacher, theta)
        if self._on_device:
            return self._on_host(self.closed_form.value_and_grad, theta)
        if not self._compiled or theta.dtype != np.float64:
            return self.closed_form.value_and_grad(theta)
        from ..backends import numba_population as kernels

        theta = np.ascontiguousarray(theta)
        R = theta.shape[0]
        grad, value = np.empty_like(theta), np.empty(R)
        self.backend.run_threads(kernels.value_and_grad, (theta, grad, value, *self._consts()), self.backend.split(R))
        return value, grad

    def hessian(self, theta):
        if self._on_device:
            return self._on_host(self.closed_form.hessian, theta)
        return self.closed_form.hessian(theta)

    def _on_host(self, fn, theta):
        """``fn`` of the host copy of a device ``theta``, its results as device arrays."""
        out = fn(np.asarray(self.backend.to_numpy(theta)))
        if isinstance(out, tuple):
            return tuple(self.backend.asarray(a, theta.dtype) for a in out)
        return self.backend.asarray(out, theta.dtype)

    def predict(self, theta, X):
        if self._on_device:
            return self._on_host(lambda th: self.closed_form.predict(th, np.asarray(X, th.dtype)), theta)
        return self.closed_form.predict(theta, self.backend.asarray(X, theta.dtype))

    def fuses(self, cfg) -> bool:
        fused = self._compiled or self._gpu is not None
        return fused and cfg.method in self.FUSED_METHODS and cfg.history == 0 and cfg.dtype == "float64"

    def train_fused(self, theta0, cfg):
        if self._gpu is not None:
            return self._gpu.train(self.backend, self._shape, self._teacher, theta0, cfg)
        from ..backends import Fused
        from ..backends import numba_population as kernels

        theta = np.array(theta0, dtype=np.float64, order="C")
        R = theta.shape[0]
        status = np.zeros(R, dtype=np.int8)
        steps = np.zeros(R, dtype=np.int64)
        loss, norm = np.full(R, np.nan), np.full(R, np.nan)
        args = (
            theta, *self._consts(), cfg.lr, cfg.momentum, self.FUSED_METHODS.index(cfg.method), cfg.max_steps,
            cfg.grad_tol, cfg.loss_target, cfg.max_loss, status, steps, loss, norm,
        )  # fmt: skip
        # small ranges, which the pool hands to whichever thread is free: inits stop at
        # very different steps, and a thread left with a long range would run alone
        step = max(1, R // (self.RANGES_PER_THREAD * self.backend.threads))
        self.backend.run_threads(kernels.train, args, [(a, min(a + step, R)) for a in range(0, R, step)])
        return Fused(theta, status, steps, loss, norm)

    def stored_per_init(self, cfg) -> int:
        if self.fuses(cfg):
            return 0  # the kernel keeps a gradient and a buffer per thread, not per init
        # the (k, k + k*, d) pair quantities of the gradient, a few of them at once
        lay, m = self.model.layout, self.problem.teacher.V.shape[1]
        k = lay.widths[0]
        return 4 * k * (k + m) * (lay.d + 1)

