"""Plain NumPy/SciPy reference for :func:`nsa_augment.poisson_blend`.

Builds the same discrete system explicitly as a sparse matrix over the masked
pixels and solves it exactly with ``scipy.sparse.linalg.spsolve``.  Slow, but
short enough to read against the maths; the tests hold the Numba solver to it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from ..validation import as_hwc


def poisson_blend_reference(destination, source, mask, *, offset=(0, 0), gradients="normal", factor=1.0):
    """Exact solve of the system :func:`~nsa_augment.poisson_blend` solves.

    Same arguments (inputs assumed valid); returns the *unrounded, unclipped*
    float64 result with shape (H, W, C).
    """
    dst = as_hwc(destination).astype(np.float64)
    src_small = as_hwc(source).astype(np.float64)
    H, W, C = dst.shape
    oy, ox = offset
    h, w = mask.shape
    # Everything in destination coordinates; `has_src` marks where a source value exists.
    src = np.zeros_like(dst)
    src[oy:oy + h, ox:ox + w] = src_small
    has_src = np.zeros((H, W), bool)
    has_src[oy:oy + h, ox:ox + w] = True
    omega = np.zeros((H, W), bool)
    omega[oy:oy + h, ox:ox + w] = mask != 0

    ys, xs = np.nonzero(omega)
    n = ys.size
    index = -np.ones((H, W), np.int64)
    index[ys, xs] = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros((n, C))
    rows, cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        in_img = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        p = np.nonzero(in_img)[0]
        qy, qx = qy[in_img], qx[in_img]
        py, px = ys[p], xs[p]
        diag[p] += 1.0
        gd = dst[py, px] - dst[qy, qx]
        gs = src[py, px] - src[qy, qx]
        if gradients == "normal":
            v = gs
        elif gradients == "mixed":
            v = np.where(np.abs(gs) > np.abs(gd), gs, gd)
        else:
            v = factor * gs + (1.0 - factor) * gd
        v = np.where(has_src[qy, qx][:, None], v, gd)
        q_in = omega[qy, qx]
        v = v + np.where(q_in[:, None], 0.0, dst[qy, qx])
        np.add.at(rhs, p, v)
        rows.append(p[q_in])
        cols.append(index[qy[q_in], qx[q_in]])
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals = np.concatenate([-np.ones(sum(r.size for r in rows[:-1])), diag])
    A = scipy.sparse.csc_matrix((vals, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    sol = scipy.sparse.linalg.spsolve(A, rhs)
    out = dst.copy()
    out[ys, xs] = sol.reshape(n, C)
    return out
