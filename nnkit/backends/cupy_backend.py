"""The ``cupy`` backend: the reference's math on CuPy arrays, with the shared-data
layer of all R networks as one cuBLAS GEMM.

When all inits share the data ``X (n, d)`` (full-batch training), the first layer's
products ``X @ W_r`` for every init ``r`` are one ``(n, d) @ (d, R*k)`` GEMM, and the
gradients ``X^T @ dZ_r`` one ``(d, n) @ (n, R*k)`` GEMM; CuPy's broadcast batched
``matmul`` would build pointer arrays for R small products instead. Element-wise work
runs as CuPy's element-wise kernels.
"""

from __future__ import annotations

from . import gpu
from .base import Backend
from .reference import ReferenceKernel


def probe():
    return gpu.cupy_device()


def make():
    return CupyBackend()


class GpuBackend(Backend):
    """Arrays on CUDA device 0 through CuPy; chunks sized from its free memory."""

    def __init__(self):
        import cupy
        from array_api_compat import array_namespace

        self._cupy = cupy
        self.device = gpu.cupy_device()[1]
        self.xp = array_namespace(cupy.zeros(0))

    def to_numpy(self, a):
        return self._cupy.asnumpy(a)

    def memory_budget(self, memory_mb):
        return int(gpu.MEMORY_SHARE * gpu.free_bytes())

    def is_out_of_memory(self, exc):
        return gpu.is_out_of_memory(exc)

    def release_memory(self):
        gpu.release_memory()


class CupyBackend(GpuBackend):
    name = "cupy"

    def kernel(self, model, spec):
        return SharedDataKernel(model, spec, self.xp)


class SharedDataKernel(ReferenceKernel):
    """The reference kernel with shared-data products done as one large GEMM."""

    def product(self, xp, H, W):
        if H.ndim != 2:
            return super().product(xp, H, W)
        R, a, b = W.shape
        wide = xp.reshape(xp.permute_dims(W, (1, 0, 2)), (a, R * b))
        return xp.permute_dims(xp.reshape(H @ wide, (H.shape[0], R, b)), (1, 0, 2))

    def weight_grad(self, xp, H, dZ):
        if H.ndim != 2:
            return super().weight_grad(xp, H, dZ)
        R, n, b = dZ.shape
        wide = xp.reshape(xp.permute_dims(dZ, (1, 0, 2)), (n, R * b))
        grad = xp.matrix_transpose(H) @ wide
        return xp.permute_dims(xp.reshape(grad, (H.shape[1], R, b)), (1, 0, 2))

