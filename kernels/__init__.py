"""Numba-CUDA kernels of nnkit's ``cuda`` backend, installed as ``nnkit.kernels``.

* :mod:`.small_mlp`: one-hidden-layer networks of up to a few dozen units on shared
  data, whole training runs fused into one kernel (a group of threads per init).
* :mod:`.wide_epilogue`: the element-wise middle of a wide one-hidden-layer step between
  two cuBLAS GEMMs (a block of threads per init and tile of samples).
* :mod:`.population`: the exact teacher-student population loss and whole training
  runs on it (a block of threads per init).

Each kernel is tested against the NumPy reference (``nnkit/backends/reference.py``) on
the GPU and, without one, in the CUDA simulator. Importing this package imports Numba.
"""
