"""Solver for the Poisson equation on an arbitrary mask.

A full rectangle is solved exactly by :func:`solve_box`.  Any other mask is
solved by conjugate gradients on the masked system, preconditioned with the
exact box solver on the mask's bounding box (a fictitious-domain
preconditioner): a rectangle converges in one step, compact shapes such as
ellipses and object cut-outs in a few tens.  Should CG ever fail to reach the
tolerance, we fall back to a sparse direct solve rather than return a wrong
answer.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .box_solver import solve_box
from .kernels import apply_masked_laplacian

#: Relative residual at which CG stops.  With right-hand sides in 0..255 units
#: this keeps the error far below 0.01 intensity levels (tested against spsolve).
RTOL = 1e-7
MAX_ITER = 300


def solve_masked(rhs: np.ndarray, inside: np.ndarray, sides: tuple[bool, bool, bool, bool]) -> tuple[np.ndarray, int]:
    """Solve ``A u = rhs`` where ``A`` is the 5-point Laplacian restricted to ``inside``.

    Parameters
    ----------
    rhs : ndarray, float64, shape (C, h, w)
        Right-hand side on the bounding box, zero outside ``inside``.
    inside : ndarray, bool, shape (h, w)
        The region (its bounding box is the whole array).
    sides : (top, bottom, left, right)
        Which sides of the box lie on the image border.

    Returns
    -------
    solution : ndarray, float64, shape (C, h, w), zero outside ``inside``
    iterations : int
        CG iterations used (0 for an exact rectangle solve, -1 for the direct
        fallback).
    """
    top, bottom, left, right = sides
    if inside.all():
        return solve_box(rhs, top, bottom, left, right), 0

    outside = ~inside

    def precondition(r):
        z = solve_box(r, top, bottom, left, right, regularize=1e-2)
        z[:, outside] = 0.0
        return z

    # Independent CG per channel would need per-channel scalars; we run them
    # together with per-channel alpha/beta (shape (C, 1, 1)) to share the kernels.
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = precondition(r)
    p = z.copy()
    rz = np.einsum("cij,cij->c", r, z)
    norm_b = np.sqrt(np.einsum("cij,cij->c", rhs, rhs))
    norm_b[norm_b == 0.0] = 1.0
    for it in range(1, MAX_ITER + 1):
        ap = apply_masked_laplacian(p, inside, top, bottom, left, right)
        pap = np.einsum("cij,cij->c", p, ap)
        pap[pap == 0.0] = 1.0
        alpha = (rz / pap)[:, None, None]
        x += alpha * p
        r -= alpha * ap
        res = np.sqrt(np.einsum("cij,cij->c", r, r)) / norm_b
        if (res < RTOL).all():
            return x, it
        z = precondition(r)
        rz_new = np.einsum("cij,cij->c", r, z)
        rz_safe = np.where(rz == 0.0, 1.0, rz)
        beta = (rz_new / rz_safe)[:, None, None]
        p = z + beta * p
        rz = rz_new
    return _solve_direct(rhs, inside, sides), -1


def _solve_direct(rhs, inside, sides):
    """Sparse direct solve of the same system (fallback; also used by the tests)."""
    A = masked_laplacian_matrix(inside, sides)
    lu = scipy.sparse.linalg.splu(A.tocsc())
    out = np.zeros_like(rhs)
    for c in range(rhs.shape[0]):
        out[c][inside] = lu.solve(rhs[c][inside])
    return out


def masked_laplacian_matrix(inside: np.ndarray, sides: tuple[bool, bool, bool, bool]) -> scipy.sparse.csr_matrix:
    """The masked 5-point Laplacian as a sparse matrix over ``inside``'s pixels (row-major order)."""
    top, bottom, left, right = sides
    h, w = inside.shape
    index = -np.ones((h, w), dtype=np.int64)
    ys, xs = np.nonzero(inside)
    n = ys.size
    index[ys, xs] = np.arange(n)
    deg = np.full(n, 4.0)
    deg -= (ys == 0) & top
    deg -= (ys == h - 1) & bottom
    deg -= (xs == 0) & left
    deg -= (xs == w - 1) & right
    rows, cols = [np.arange(n)], [np.arange(n)]
    vals = [deg]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        q = np.full(n, -1)
        q[ok] = index[qy[ok], qx[ok]]
        ok = q >= 0
        rows.append(np.nonzero(ok)[0])
        cols.append(q[ok])
        vals.append(-np.ones(ok.sum()))
    return scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
