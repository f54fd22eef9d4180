"""The peers nnkit is measured against, each written the way its users would write it.

Every function ``prepare(case, X, y)`` returns ``run(W0, v0)``, which trains all R
networks of a case for ``steps`` plain gradient-descent steps and returns the final loss
of every network, ``(R,)`` float64; what can be built once (a compiled function) is
built in ``prepare`` or on the first, untimed call. Each peer runs in a process of its
own (see :mod:`nnkit.bench.worker`).
"""

from __future__ import annotations

import numpy as np


def numpy_batched(case, X, y):
    """Batched ``matmul`` over the R networks, gradients written out by hand."""

    def run(W0, v0):
        W, v = W0.copy(), v0.copy()
        for _ in range(case.steps):
            Z = np.matmul(X, W)  # (R, n, k)
            H = np.maximum(Z, 0.0)
            r = np.matmul(H, v[:, :, None])[..., 0] - y  # (R, n)
            g = (2.0 / case.n) * r
            gv = np.matmul(H.transpose(0, 2, 1), g[:, :, None])[..., 0]
            dZ = g[:, :, None] * v[:, None, :] * (Z > 0)
            gW = np.matmul(X.T, dZ)
            W -= case.lr * gW
            v -= case.lr * gv
        H = np.maximum(np.matmul(X, W), 0.0)
        r = np.matmul(H, v[:, :, None])[..., 0] - y
        return (r * r).mean(axis=1)

    return run


def torch_autograd(case, X, y):
    """PyTorch with autograd on stacked weights."""
    import torch

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def losses(W, v):
        H = torch.relu(torch.matmul(Xt, W))
        f = torch.matmul(H, v.unsqueeze(-1)).squeeze(-1)
        return ((f - yt) ** 2).mean(dim=1)

    def run(W0, v0):
        W = torch.from_numpy(W0.copy()).requires_grad_(True)
        v = torch.from_numpy(v0.copy()).requires_grad_(True)
        for _ in range(case.steps):
            gW, gv = torch.autograd.grad(losses(W, v).sum(), (W, v))
            with torch.no_grad():
                W -= case.lr * gW
                v -= case.lr * gv
        with torch.no_grad():
            return losses(W, v).numpy().astype(np.float64)

    return run


def jax_vmap(case, X, y):
    """JAX: ``vmap(grad(loss))`` inside ``jit`` with a ``fori_loop`` over the steps."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def loss(W, v):
        f = jnp.maximum(Xj @ W, 0.0) @ v
        return jnp.mean((f - yj) ** 2)

    grad = jax.vmap(jax.grad(loss, argnums=(0, 1)))

    @jax.jit
    def run(W, v):
        def step(_, wv):
            gW, gv = grad(*wv)
            return wv[0] - case.lr * gW, wv[1] - case.lr * gv

        W, v = jax.lax.fori_loop(0, case.steps, step, (W, v))
        return jax.vmap(loss)(W, v)

    def call(W0, v0):
        out = run(jnp.asarray(W0), jnp.asarray(v0))
        return np.asarray(out.block_until_ready(), dtype=np.float64)

    return call


PEERS = {"numpy-batched": numpy_batched, "torch": torch_autograd, "jax": jax_vmap}
#: the module each peer needs, to tell which are installed without importing them
NEEDS = {"numpy-batched": "numpy", "torch": "torch", "jax": "jax"}
