"""The box solver's matrix products, on one BLAS thread whatever the user's BLAS is set to.

The box solver multiplies by a cached eigenbasis up to 512 px wherever that is faster than pocketfft
(``box_solver.transform_path``): small products (a few hundred rows by a few hundred columns) that
a multi-threaded BLAS splits across threads, then waits on them.  With default settings on a busy
machine that made one 256 px example up to 6.5 times slower, and DataLoader workers multiply the
threads again (N processes x N BLAS threads).  Single-threaded BLAS is also 2.5-4 times faster than
the best loop we could write in Numba for these products, so the solver keeps BLAS and runs it on
one thread: :func:`single_threaded_blas` limits NumPy's BLAS pool to one thread while any solve
runs and restores the caller's setting after the last one ends.  The pool is process-wide, so
another thread of the caller's that multiplies NumPy matrices during that window runs
single-threaded too (slower, never wrong); nested and concurrent solves share one limit through a
reference count.

`threadpoolctl` (joblib's and scikit-learn's) finds and sets the BLAS libraries actually loaded
(OpenBLAS, MKL, BLIS, ...); without one it changes nothing.  Only the one NumPy ships with (a
library in NumPy's own folders, as pip's wheels install it) is limited: our products run on it,
and the others (OpenCV's and SciPy's OpenBLAS in pip's wheels) keep the caller's setting.  Each
library limited costs a read and two settings of its pool per example: limiting two fewer saved
0.015-0.020 ms of a 256 px synthesis that follows other work (an ad hoc paired measurement:
docs/performance-log.md).  When no
loaded library lies in NumPy's folders (a NumPy built against the system's or conda's BLAS), every
BLAS library is limited.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[object, int]] = []
_controllers: list | None = None


def _blas_controllers() -> list:
    global _controllers
    if _controllers is None:
        from threadpoolctl import ThreadpoolController

        _controllers = numpys_blas([lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"])
    return _controllers


def numpys_blas(libraries: list) -> list:
    """Those of threadpoolctl's BLAS ``libraries`` that lie in NumPy's folders (``numpy/``, ``numpy.libs/``), or all."""
    package = Path(np.__file__).resolve().parent
    folders = (package, package.with_name(package.name + ".libs"))
    own = [lib for lib in libraries if any(folder in Path(lib.filepath).resolve().parents for folder in folders)]
    return own or libraries


class _SingleThreadedBlas:
    """The context manager :func:`single_threaded_blas` returns (one object: the state is the process's)."""

    def __enter__(self):
        global _depth
        with _lock:
            if _depth == 0:
                _saved[:] = [(lib, lib.num_threads) for lib in _blas_controllers()]
                for lib, threads in _saved:
                    if threads != 1:
                        lib.set_num_threads(1)
            _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lib, threads in _saved:
                    if threads != 1:
                        lib.set_num_threads(threads)
                _saved.clear()
        return False


_SCOPE = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """Run the enclosed BLAS calls on one thread (see the module docstring); nests and is thread-safe.

    A plain class rather than ``contextlib.contextmanager``: every solve enters it, and the
    generator-based form cost ~10 us per solve (3% of a 256 px example, cProfile).
    """
    return _SCOPE
