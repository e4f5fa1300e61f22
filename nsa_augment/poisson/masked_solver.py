"""Solver for the Poisson equation on an arbitrary mask.

A full rectangle is solved exactly by :func:`solve_box`.  Any other 2-D mask is
solved by conjugate gradients preconditioned with geometric multigrid
(:mod:`nsa_augment.poisson.multigrid`: bilinear interpolation, Galerkin coarse
levels, V-cycles), in float32 inside an iterative refinement whose residuals
are computed in float64: 5-8 iterations for any shape and size to the estimated
error :func:`~nsa_augment.poisson_blend` asks for, 0.003 grey levels of a uint8
image (7-10 to 0.003 16-bit levels).  3-D masks use
conjugate gradients preconditioned with the exact box solver on the bounding box
(a fictitious-domain preconditioner; a few tens of iterations for compact
shapes).  Should either fail to reach the tolerance, we fall back to a sparse
direct solve rather than return a wrong answer.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .box_solver import solve_box_nd
from .kernels import apply_masked_laplacian_3d
from .multigrid import Hierarchy

#: Relative residual at which the 3-D CG stops.  With right-hand sides in 0..255 units this keeps
#: the error far below 0.01 intensity levels (tested against a sparse direct solve).
RTOL = 1e-7
MAX_ITER = 300
#: The 2-D multigrid solve stops at this relative residual, computed in float64: 7-10
#: iterations, and under 0.01 intensity levels from a sparse direct solve on ellipses, rings and
#: irregular masks from 64 to 2048 px, even for white-noise right-hand sides whose solutions reach
#: 60,000 (tests/test_poisson.py, benchmarks/bench_poisson.py).
MULTIGRID_RTOL = 1e-7
REFINEMENTS = 4


def solve_masked(rhs: np.ndarray, inside: np.ndarray, sides: tuple[bool, ...],
                 atol: float | None = None) -> tuple[np.ndarray, int]:
    """Solve ``A u = rhs`` where ``A`` is the 5-point (7-point) Laplacian restricted to ``inside``.

    Parameters
    ----------
    rhs : ndarray, float64, shape (C, h, w) or (C, d, h, w)
        Right-hand side on the bounding box, zero outside ``inside``.
    inside : ndarray, bool, shape (h, w) or (d, h, w)
        The region (its bounding box is the whole array).
    sides : (low, high) per axis, flat: (top, bottom, left, right) for images
        Which sides of the box lie on the border.
    atol : float, optional
        2-D masks: stop once the multigrid's estimate of the largest error is within ``atol``
        (in the solution's units, e.g. a small fraction of a grey level) instead of at the
        relative residual :data:`MULTIGRID_RTOL`, which is stricter than images need.

    Returns
    -------
    solution : ndarray, float32 or float64, shape (C, h, w), zero outside ``inside``
        A 2-D mask's multigrid solve returns float32 when one float32 pass reached the goal (no
        refinement: its float64 sum would hold the same values), float64 otherwise.
    iterations : int
        CG iterations used (0 for an exact rectangle solve, -1 for the direct
        fallback).
    """
    pairs = tuple(zip(sides[::2], sides[1::2]))
    if inside.all():
        return solve_box_nd(rhs, pairs), 0
    if inside.ndim == 2:
        return _solve_multigrid(rhs, inside, sides, atol)

    # Volumes: conjugate gradients preconditioned by the box solver (the multigrid is 2-D).
    outside = ~inside
    side_array = np.array(sides, dtype=np.bool_)

    def laplacian(x):
        return apply_masked_laplacian_3d(x, inside, side_array)

    def precondition(r):
        z = solve_box_nd(r, pairs, regularize=1e-2)
        z[:, outside] = 0.0
        return z

    # Independent CG per channel would need per-channel scalars; we run them
    # together with per-channel alpha/beta (shape (C, 1, 1)) to share the kernels.
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = precondition(r)
    p = z.copy()
    C = rhs.shape[0]

    def dot(a, b):  # per channel
        return np.einsum("ci,ci->c", a.reshape(C, -1), b.reshape(C, -1))

    expand = (slice(None),) + (None,) * inside.ndim
    rz = dot(r, z)
    norm_b = np.sqrt(dot(rhs, rhs))
    norm_b[norm_b == 0.0] = 1.0
    for it in range(1, MAX_ITER + 1):
        ap = laplacian(p)
        pap = dot(p, ap)
        pap[pap == 0.0] = 1.0
        alpha = (rz / pap)[expand]
        x += alpha * p
        r -= alpha * ap
        res = np.sqrt(dot(r, r)) / norm_b
        if (res < RTOL).all():
            return x, it
        z = precondition(r)
        rz_new = dot(r, z)
        rz_safe = np.where(rz == 0.0, 1.0, rz)
        beta = (rz_new / rz_safe)[expand]
        p = z + beta * p
        rz = rz_new
    return _solve_direct(rhs, inside, sides), -1


def _solve_multigrid(rhs, inside, sides, atol=None):
    """Multigrid-preconditioned CG in float32, refined in float64 to MULTIGRID_RTOL or the error estimate ``atol``."""
    x, iterations, converged = Hierarchy(inside, sides).solve(rhs, MULTIGRID_RTOL, MAX_ITER, REFINEMENTS, atol)
    if converged:
        return x, iterations
    return _solve_direct(rhs, inside, sides), -1


def _solve_direct(rhs, inside, sides):
    """Sparse direct solve of the same system (fallback; also used by the tests)."""
    A = masked_laplacian_matrix(inside, sides)
    lu = scipy.sparse.linalg.splu(A.tocsc())
    out = np.zeros_like(rhs)
    for c in range(rhs.shape[0]):
        out[c][inside] = lu.solve(rhs[c][inside])
    return out


def masked_laplacian_matrix(inside: np.ndarray, sides: tuple[bool, ...]) -> scipy.sparse.csr_matrix:
    """The masked Laplacian as a sparse matrix over ``inside``'s pixels (row-major order), any dimension."""
    shape = inside.shape
    index = -np.ones(shape, dtype=np.int64)
    coords = np.nonzero(inside)
    n = coords[0].size
    index[coords] = np.arange(n)
    deg = np.full(n, 2.0 * inside.ndim)
    for axis, c in enumerate(coords):
        deg -= (c == 0) & sides[2 * axis]
        deg -= (c == shape[axis] - 1) & sides[2 * axis + 1]
    rows, cols = [np.arange(n)], [np.arange(n)]
    vals = [deg]
    for axis in range(inside.ndim):
        for step in (-1, 1):
            q_coords = list(coords)
            q_coords[axis] = coords[axis] + step
            ok = (q_coords[axis] >= 0) & (q_coords[axis] < shape[axis])
            q = np.full(n, -1)
            q[ok] = index[tuple(qc[ok] for qc in q_coords)]
            ok = q >= 0
            rows.append(np.nonzero(ok)[0])
            cols.append(q[ok])
            vals.append(-np.ones(ok.sum()))
    return scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
