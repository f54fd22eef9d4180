"""The peers nnkit is measured against, each written the way its users would write it.

Every function ``prepare(case, X, y)`` returns ``run(W0, v0)``, which trains all R
networks of a case for ``steps`` plain gradient-descent steps and returns the final loss
of every network, ``(R,)`` float64; what can be built once (a compiled function) is
built in ``prepare`` or on the first, untimed call. Each computes in the dtype of the
arrays it is given (float64 or float32). Each peer runs in a process of its own (see
:mod:`nnkit.bench.worker`).
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
    return _torch(case, X, y, "cpu")


def torch_cuda(case, X, y):
    """PyTorch with autograd on stacked weights, on the CUDA GPU."""
    return _torch(case, X, y, "cuda")


def _torch(case, X, y, device):
    """Training on ``device`` in the dtype of ``X`` (TF32 stays off, PyTorch's default)."""
    import torch

    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)

    def losses(W, v):
        H = torch.relu(torch.matmul(Xt, W))
        f = torch.matmul(H, v.unsqueeze(-1)).squeeze(-1)
        return ((f - yt) ** 2).mean(dim=1)

    def run(W0, v0):
        W = torch.tensor(W0, device=device).requires_grad_(True)
        v = torch.tensor(v0, device=device).requires_grad_(True)
        for _ in range(case.steps):
            gW, gv = torch.autograd.grad(losses(W, v).sum(), (W, v))
            with torch.no_grad():
                W -= case.lr * gW
                v -= case.lr * gv
        with torch.no_grad():
            out = losses(W, v)
        if device == "cuda":
            torch.cuda.synchronize()
        return out.cpu().numpy().astype(np.float64)

    return run


def jax_vmap(case, X, y):
    """JAX: ``vmap(grad(loss))`` inside ``jit`` with a ``fori_loop`` over the steps."""
    return _jax(case, X, y, "cpu")


def jax_cuda(case, X, y):
    """JAX: ``vmap(grad(loss))`` inside ``jit`` with a ``fori_loop``, on the GPU."""
    return _jax(case, X, y, "gpu")


def _jax(case, X, y, platform):
    """Training on the first ``platform`` device in the dtype of ``X``: 64-bit types
    are switched on for float64 only, and float32 products are full float32 (JAX's
    default on a GPU would be TF32)."""
    import jax

    jax.config.update("jax_enable_x64", X.dtype == np.float64)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jax.numpy as jnp

    device = jax.devices(platform)[0]
    Xj, yj = jax.device_put(X, device), jax.device_put(y, device)

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
        out = run(jax.device_put(W0, device), jax.device_put(v0, device))
        return np.asarray(out.block_until_ready(), dtype=np.float64)

    return call


PEERS = {
    "numpy-batched": numpy_batched, "torch": torch_autograd, "jax": jax_vmap,
    "torch-cuda": torch_cuda, "jax-cuda": jax_cuda,
}  # fmt: skip
#: the module each peer needs, to tell which are installed without importing them
NEEDS = {"numpy-batched": "numpy", "torch": "torch", "jax": "jax", "torch-cuda": "torch", "jax-cuda": "jax"}
#: the peers of ``nnkit bench --gpu``; the others run on the CPU
ON_GPU = ("torch-cuda", "jax-cuda")
