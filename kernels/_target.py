"""The one place the kernels import their CUDA target from.

``numba.cuda`` is provided by NVIDIA's ``numba-cuda`` package when it is installed and
by Numba itself otherwise; both run the kernels on a GPU or, with
``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported, in the CUDA simulator on the
CPU (with warp shuffles added, see :mod:`._simulator`). Moving to another Numba-CUDA
front end is a change to this file alone.
"""

from numba import config, cuda

if config.ENABLE_CUDASIM:
    from ._simulator import install

    install()

__all__ = ["cuda"]
