"""Plain NumPy/SciPy reference for :func:`nsa_augment.poisson_blend`.

Builds the same discrete system explicitly as a sparse matrix over the masked
pixels and solves it exactly with ``scipy.sparse.linalg.spsolve``.  Slow, but
short enough to read against the maths; the tests hold the Numba solver to it.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from ..validation import as_hwc, channel_mismatch
from .blend import check_guidance


def poisson_blend_reference(destination, source, mask, *, offset=(0, 0), gradients="normal", factor=1.0):
    """Exact solve of the system :func:`~nsa_augment.poisson_blend` solves.

    Same arguments, except that any real dtype is accepted (an oracle may be fed float64);
    returns the *unrounded, unclipped* float64 result with shape (H, W, C).
    """
    _check(destination, source, mask, offset, gradients, factor, dims=2)
    return _reference(as_hwc(destination), as_hwc(source), mask, offset, gradients, factor)


def poisson_blend_volume_reference(destination, source, mask, *, offset=(0, 0, 0), gradients="normal", factor=1.0):
    """Exact solve of the system :func:`~nsa_augment.poisson.poisson_blend_volume` solves (7-point Laplacian).

    Volumes (D, H, W) or (D, H, W, C); returns the unrounded float64 result (D, H, W, C).
    """
    _check(destination, source, mask, offset, gradients, factor, dims=3)
    as_c = lambda v: v[..., None] if v.ndim == 3 else v  # noqa: E731
    return _reference(as_c(destination), as_c(source), mask, offset, gradients, factor)


def _check(destination, source, mask, offset, gradients, factor, dims: int) -> None:
    """One-line errors for what the blend functions reject, but any real dtype (float64 included)."""
    spatial = []
    for name, a in (("destination", destination), ("source", source)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
        if a.dtype.kind not in "uif" or a.ndim not in (dims, dims + 1):
            raise ValueError(f"{name} must be a real {'image (H, W)' if dims == 2 else 'volume (D, H, W)'} "
                             f"or with channels last, got {a.dtype} of shape {a.shape}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        spatial.append(a.shape[:dims])
    channels = [a.shape[dims] if a.ndim > dims else 1 for a in (destination, source)]
    if channels[0] != channels[1]:
        raise channel_mismatch(channels[1], channels[0])
    if not isinstance(mask, np.ndarray) or mask.shape != spatial[1]:
        raise ValueError(f"mask must be an array of the source's shape {spatial[1]}, got "
                         + (f"{mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__))
    if not (isinstance(offset, (tuple, list)) and len(offset) == dims
            and all(isinstance(o, (numbers.Integral, np.integer)) and not isinstance(o, bool) for o in offset)):
        raise TypeError(f"offset must be {dims} integers, got {offset!r}")
    if any(o < 0 or o + n > N for o, n, N in zip(offset, spatial[1], spatial[0])):
        raise ValueError(f"source of shape {spatial[1]} at offset {tuple(offset)} does not fit inside the "
                         f"destination of shape {spatial[0]}")
    if not mask.any():
        raise ValueError("mask is empty: nothing to blend")
    if spatial[1] == spatial[0] and np.count_nonzero(mask) == mask.size:
        raise ValueError("mask covers the whole destination: a Poisson blend needs boundary pixels outside the mask")
    check_guidance(gradients, factor)


def _reference(destination, source, mask, offset, gradients, factor):
    """The system for any number of spatial axes: arrays (*spatial, C), ``mask`` (*spatial of source)."""
    dst = destination.astype(np.float64)
    src_small = source.astype(np.float64)
    shape, C = dst.shape[:-1], dst.shape[-1]
    place = tuple(slice(o, o + n) for o, n in zip(offset, mask.shape))
    # Everything in destination coordinates; `has_src` marks where a source value exists.
    src = np.zeros_like(dst)
    src[place] = src_small
    has_src = np.zeros(shape, bool)
    has_src[place] = True
    omega = np.zeros(shape, bool)
    omega[place] = mask != 0

    coords = np.nonzero(omega)
    n = coords[0].size
    index = -np.ones(shape, np.int64)
    index[coords] = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros((n, C))
    rows, cols = [], []
    for axis in range(len(shape)):
        for step in (-1, 1):
            q = list(coords)
            q[axis] = coords[axis] + step
            in_img = (q[axis] >= 0) & (q[axis] < shape[axis])
            p = np.nonzero(in_img)[0]
            q = tuple(c[in_img] for c in q)
            pp = tuple(c[p] for c in coords)
            diag[p] += 1.0
            gd = dst[pp] - dst[q]
            gs = src[pp] - src[q]
            if gradients == "normal":
                v = gs
            elif gradients == "mixed":
                v = np.where(np.abs(gs) > np.abs(gd), gs, gd)
            else:
                v = factor * gs + (1.0 - factor) * gd
            v = np.where(has_src[q][:, None], v, gd)
            q_in = omega[q]
            v = v + np.where(q_in[:, None], 0.0, dst[q])
            np.add.at(rhs, p, v)
            rows.append(p[q_in])
            cols.append(index[tuple(c[q_in] for c in q)])
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals = np.concatenate([-np.ones(sum(r.size for r in rows[:-1])), diag])
    A = scipy.sparse.csc_matrix((vals, (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    sol = scipy.sparse.linalg.spsolve(A, rhs)
    out = dst.copy()
    out[coords] = sol.reshape(n, C)
    return out


def opencv_clone_reference(destination, source, mask, *, offset=(0, 0), mixed=False, factor=1.0):
    """Exact solve of the system ``cv2.seamlessClone`` sets up, written the way OpenCV computes it.

    OpenCV's steps, in NumPy: zero the mask's outer ring, take the bounding
    rectangle ``R`` of the rest, erode the mask by a 7x7 square (zero outside),
    forward-difference gradients of destination and source on ``R``, guidance
    ``m * grad(src) + (1 - m) * grad(dst)`` with ``m = factor * eroded`` (mixed:
    the source pair only where ``|gx - gy|`` is larger than the destination's),
    backward differences for the divergence, ``R``'s border fixed to the
    destination.  Returns the *unrounded* float64 result (H, W, C).
    """
    dst = as_hwc(destination).astype(np.float64)
    src = as_hwc(source).astype(np.float64)
    H, W, C = dst.shape
    ring = np.zeros(mask.shape, bool)
    ring[1:-1, 1:-1] = mask[1:-1, 1:-1] != 0
    ys, xs = np.nonzero(ring)
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    k = 7 // 2
    padded = np.pad(ring, k)
    eroded = np.ones_like(ring)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            eroded &= padded[k + dy : k + dy + ring.shape[0], k + dx : k + dx + ring.shape[1]]
    oy, ox = offset
    y0, x0 = oy + r0, ox + c0
    h, w = r1 - r0, c1 - c0
    D = dst[y0 : y0 + h, x0 : x0 + w]
    S = src[r0:r1, c0:c1]
    m = (factor * eroded[r0:r1, c0:c1])[:, :, None]

    def forward(img):  # gradients at each pixel of R towards +x and +y (last column/row unused)
        gx, gy = np.zeros_like(img), np.zeros_like(img)
        gx[:, :-1] = img[:, 1:] - img[:, :-1]
        gy[:-1] = img[1:] - img[:-1]
        return gx, gy

    dx, dy = forward(D)
    sx, sy = forward(S)
    use_src = np.abs(sx - sy) > np.abs(dx - dy) if mixed else np.ones_like(sx, bool)
    vx = np.where(use_src, m * sx + (1 - m) * dx, dx)
    vy = np.where(use_src, m * sy + (1 - m) * dy, dy)
    div = np.zeros_like(D)
    div[1:-1, 1:-1] = (vx[1:-1, 1:-1] - vx[1:-1, :-2]) + (vy[1:-1, 1:-1] - vy[:-2, 1:-1])
    # unknowns: R's interior; L = 4 - neighbours, Dirichlet ring = destination
    n_y, n_x = h - 2, w - 2
    index = np.arange(n_y * n_x).reshape(n_y, n_x)
    rows, cols, vals = [index.ravel()], [index.ravel()], [np.full(n_y * n_x, 4.0)]
    for a, b in (((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                 ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))):
        for p, q in ((a, b), (b, a)):
            rows.append(index[p].ravel())
            cols.append(index[q].ravel())
            vals.append(-np.ones(index[p].size))
    A = scipy.sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(n_y * n_x, n_y * n_x))
    bound = D.copy()
    bound[1:-1, 1:-1] = 0.0
    ring_sum = bound[:-2, 1:-1] + bound[2:, 1:-1] + bound[1:-1, :-2] + bound[1:-1, 2:]
    rhs = (-div[1:-1, 1:-1] + ring_sum).reshape(-1, C)
    sol = scipy.sparse.linalg.spsolve(A, rhs).reshape(n_y, n_x, C)
    out = dst.copy()
    out[y0 + 1 : y0 + h - 1, x0 + 1 : x0 + w - 1] = sol
    return out
