"""The ``cuda`` backend: Numba-CUDA kernels (the ``kernels/`` folder, installed as
``nnkit.kernels``) on CuPy arrays, which they read through ``__cuda_array_interface__``.

Three paths, picked per model:

* one hidden layer of up to a few dozen units on shared data: :mod:`small_mlp`, a
  group of threads per init with its parameters in registers; full-batch training runs
  to the end inside one kernel launch (``train_fused``);
* wider one-hidden-layer networks on shared data: the two products with ``X`` are
  cuBLAS GEMMs over all inits at once, and everything between them is one pass of
  :mod:`wide_epilogue` over the pre-activations;
* anything else (deeper networks, one minibatch per init): the ``cupy`` backend's kernel.

With ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run in Numba's CUDA simulator on NumPy
arrays: that is how they are tested without a GPU (slowly; ``auto`` never picks it).
"""

from __future__ import annotations

import time

import numpy as np

from . import gpu
from .base import Fused
from .cupy_backend import GpuBackend, SharedDataKernel
from .numpy_backend import NumpyBackend

SIMULATOR = "CUDA simulator on the CPU (NUMBA_ENABLE_CUDASIM=1; for testing the kernels)"


def probe():
    if gpu.simulated():
        try:
            import numba.cuda  # noqa: F401
        except Exception as exc:
            return False, "", f"Numba's CUDA simulator fails to import: {gpu.first_line(exc)}"
        return True, SIMULATOR, ""
    usable, device, reason = gpu.cupy_device()
    if not usable:
        return usable, device, reason
    try:
        from numba import cuda

        if not cuda.is_available():
            return False, "", "Numba-CUDA finds no usable GPU (is numba-cuda installed?)"
    except Exception as exc:
        return False, "", f"Numba-CUDA fails to import: {gpu.first_line(exc)}"
    clash = _numpy_clash()
    return (False, "", clash) if clash else (True, device, "")


def _numpy_clash() -> str:
    """Why this NumPy cannot compile kernels with this numba-cuda, or "" (numba-cuda
    0.30 calls ``numpy.row_stack``, which NumPy 2.5 removed)."""
    from importlib import metadata

    if hasattr(np, "row_stack"):
        return ""
    try:
        version = metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        return ""
    if version.startswith("0.30."):
        return f"numba-cuda {version} does not work with NumPy {np.__version__}: use NumPy < 2.5"
    return ""


def automatic() -> bool:
    """Whether ``auto`` may pick this backend: never the simulator."""
    return not gpu.simulated()


def make():
    return SimulatedCudaBackend() if gpu.simulated() else CudaBackend()


class _CudaPaths:
    """What both the real and the simulated ``cuda`` backend do: a kernel that picks a
    path per model, chunks sized for that path, and a record of the kernels launched
    (a first launch counts as compiling, see :meth:`launch`)."""

    def __init__(self):
        super().__init__()
        self.launched = set()  # kernels compiled in this process

    def kernel(self, model, spec):
        return CudaKernel(model, spec, self)

    def launch(self, kernel, geometry, *args):
        """``kernel[geometry](*args)``; the first launch of each kernel compiles it, and
        its time (waited for) counts as the backend's compile time."""
        if kernel in self.launched:
            kernel[geometry](*args)
            return
        started = time.perf_counter()
        kernel[geometry](*args)
        self.synchronize()
        self.compile_seconds += time.perf_counter() - started
        self.launched.add(kernel)

    def stored_per_sample(self, model, sgd):
        path = _path(model, sgd)
        if path == "small":
            return 0
        if path == "wide":
            return model.layout.widths[0] + 1  # Z (then dZ) and the per-tile partial sums
        return super().stored_per_sample(model, sgd)


class CudaBackend(_CudaPaths, GpuBackend):
    name = "cuda"

    def synchronize(self):
        self._cupy.cuda.Device().synchronize()


class SimulatedCudaBackend(_CudaPaths, NumpyBackend):
    """The ``cuda`` backend's kernels in the simulator, on NumPy arrays."""

    name = "cuda"

    def __init__(self):
        super().__init__()
        self.device = SIMULATOR

    def synchronize(self):
        pass  # the simulator runs kernels to the end before returning


def _path(model, sgd: bool = False):
    """``"small"``, ``"wide"`` or None (the cupy kernel) for a model trained on shared data."""
    lay = model.layout
    if sgd or lay.depth != 1:
        return None
    net = _net(model)
    return "small" if gpu.kernels("small_mlp").fits(net) else "wide"


def _net(model, spec=None):
    lay = model.layout
    small = gpu.kernels("small_mlp")
    return small.Net(
        d=lay.d, k=lay.widths[0], activation=model.activations[0],
        slope=model.leaky_slope, hidden_bias=lay.bias[0], out_trained=lay.output_trained,
        out_value=lay.output_value, out_bias=lay.output_bias,
        loss=spec.loss if spec is not None else "squared",
        regularize_bias=spec.regularize_bias if spec is not None else False,
    )  # fmt: skip


class CudaKernel(SharedDataKernel):
    """``value_and_grad`` (and, for small networks, ``train_fused``) from the kernels of
    the model's path; ``predict`` and the other paths from :class:`SharedDataKernel`."""

    def __init__(self, model, spec, backend):
        super().__init__(model, spec, backend.xp)
        self._backend = backend
        self._path = _path(model)
        self._net = _net(model, spec) if self._path else None

    def value(self, theta, X, y):
        return self.value_and_grad(theta, X, y)[0]

    def _dtype(self, theta):
        return "float32" if theta.dtype == self._xp.float32 else "float64"

    def value_and_grad(self, theta, X, y):
        if self._path is None or X.ndim != 2:
            return super().value_and_grad(theta, X, y)
        xp = self._xp
        dtype = self._dtype(theta)
        theta = xp.asarray(theta, dtype=getattr(xp, dtype), copy=None)
        X = xp.asarray(X, dtype=theta.dtype)
        y = xp.asarray(y, dtype=theta.dtype)
        scale = np.dtype(dtype).type(self.spec.scale(X.shape[0]))
        if self._path == "small":
            loss, grad = self._small_value_and_grad(theta, X, y, scale, dtype)
        else:
            loss, grad = self._wide_value_and_grad(theta, X, y, scale, dtype)
        if self.spec.has_penalty():
            value, pgrad = self.spec.penalty(xp, theta, self.penalty_mask(xp, theta))
            loss, grad = loss + value, grad + pgrad
        return loss, grad

    def _small_value_and_grad(self, theta, X, y, scale, dtype):
        xp, small = self._xp, gpu.kernels("small_mlp")
        R = theta.shape[0]
        loss = xp.empty(R, dtype=theta.dtype)
        grad = xp.empty(theta.shape, dtype=theta.dtype)  # every column is written
        kernel = small.value_and_grad_kernel(self._net, dtype)
        self._backend.launch(kernel, small.grid(R, self._net), _c(xp, theta), _c(xp, X), _c(xp, y), scale, loss, grad)
        return loss, grad

    def _wide_value_and_grad(self, theta, X, y, scale, dtype):
        """GEMM, one epilogue pass over the pre-activations, GEMM (see the module doc)."""
        xp, wide = self._xp, gpu.kernels("wide_epilogue")
        lay, net = self.layout, self._net
        R, (n, d), k = theta.shape[0], X.shape, net.k
        W = xp.permute_dims(lay.weights(theta, 1), (1, 0, 2))  # (d, R, k)
        Xa = X
        if net.hidden_bias:  # the bias is one more input, fixed at 1
            Xa = xp.concat([X, xp.ones((n, 1), dtype=X.dtype)], axis=1)
            W = xp.concat([W, lay.biases(theta, 1)[None]], axis=0)
        Z = Xa @ xp.reshape(W, (Xa.shape[1], R * k))  # (n, R*k), one GEMM for all inits
        if net.out_trained:
            v = _c(xp, lay.view(theta, "W_out"))
        else:
            v = xp.full((R, k), net.out_value, dtype=theta.dtype)
        if net.out_bias:
            c = _c(xp, lay.view(theta, "b_out"))
        else:
            c = xp.zeros(R, dtype=theta.dtype)
        T = wide.tiles(n)
        loss_part = xp.empty((T, R), dtype=theta.dtype)
        gc_part = xp.empty((T, R), dtype=theta.dtype)
        gv_part = xp.empty((T, R, k), dtype=theta.dtype)
        kernel = wide.kernel(k, net.activation, net.slope, net.loss == "logistic", dtype)
        self._backend.launch(
            kernel, wide.grid(R, n, k), xp.reshape(Z, (n, R, k)), v, c, _c(xp, y), scale,
            loss_part, gc_part, gv_part,
        )  # fmt: skip  (Z now holds dZ)
        # a contiguous X^T: cuBLAS's float32 GEMM took twice as long on the transposed view
        gW = xp.reshape(xp.ascontiguousarray(xp.matrix_transpose(Xa)) @ Z, (Xa.shape[1], R, k))
        grads = {"W1": xp.reshape(xp.permute_dims(gW[:d], (1, 0, 2)), (R, d * k))}
        if net.hidden_bias:
            grads["b1"] = gW[d]
        if net.out_trained:
            grads["W_out"] = xp.sum(gv_part, axis=0)
        if net.out_bias:
            grads["b_out"] = xp.reshape(xp.sum(gc_part, axis=0), (R, 1))
        grad = xp.concat([grads[b.name] for b in lay.blocks], axis=1)
        return scale * xp.sum(loss_part, axis=0), grad

    def fuses(self, cfg) -> bool:
        """Full-batch training in one launch, for the small-network path only."""
        small = gpu.kernels("small_mlp")
        return self._path == "small" and cfg.method in small.METHODS and cfg.history == 0

    def train_fused(self, theta0, X, y, cfg):
        xp, be, small = self._xp, self._backend, gpu.kernels("small_mlp")
        dt = np.dtype(cfg.dtype).type
        R = theta0.shape[0]
        theta = be.asarray(theta0, getattr(xp, cfg.dtype))
        if isinstance(theta, np.ndarray) and np.shares_memory(theta, theta0):
            theta = theta.copy()  # the kernel trains in place
        status = xp.zeros(R, dtype=xp.int8)
        steps = xp.zeros(R, dtype=xp.int64)
        loss = xp.full(R, np.nan, dtype=theta.dtype)
        norm = xp.full(R, np.nan, dtype=theta.dtype)
        obj = self.spec
        kernel = small.train_kernel(self._net, cfg.dtype, cfg.method)
        self._backend.launch(
            kernel, small.grid(R, self._net), theta, be.asarray(X, theta.dtype), be.asarray(y, theta.dtype),
            dt(obj.scale(X.shape[0])), dt(obj.l2), dt(obj.l1), dt(cfg.lr), dt(cfg.momentum),
            cfg.max_steps, dt(cfg.grad_tol), dt(cfg.loss_target), dt(cfg.max_loss),
            status, steps, loss, norm,
        )  # fmt: skip
        return Fused(
            theta=np.asarray(be.to_numpy(theta), dtype=np.float64),
            stop=be.to_numpy(status).astype(np.int64),
            steps=be.to_numpy(steps),
            loss=np.asarray(be.to_numpy(loss), dtype=np.float64),
            grad_norm=np.asarray(be.to_numpy(norm), dtype=np.float64),
        )


def _c(xp, a):
    """``a`` C-contiguous, copied only when it is not (the kernels read it densely)."""
    return xp.ascontiguousarray(a)
