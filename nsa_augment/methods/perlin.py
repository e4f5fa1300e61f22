"""Vectorised 2-D Perlin (gradient) noise, as used for DRAEM's anomaly masks."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, inline="always")
def _fade(t):
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


@nb.njit(cache=True, nogil=True)
def _perlin(H, W, gy, gx):
    ry, rx = gy.shape[0] - 1, gy.shape[1] - 1
    out = np.empty((H, W), dtype=np.float32)
    for y in range(H):
        py = (y + 0.5) * ry / H
        iy = min(int(py), ry - 1)
        fy = py - iy
        uy = _fade(fy)
        for x in range(W):
            px = (x + 0.5) * rx / W
            ix = min(int(px), rx - 1)
            fx = px - ix
            ux = _fade(fx)
            n00 = gy[iy, ix] * fy + gx[iy, ix] * fx
            n01 = gy[iy, ix + 1] * fy + gx[iy, ix + 1] * (fx - 1.0)
            n10 = gy[iy + 1, ix] * (fy - 1.0) + gx[iy + 1, ix] * fx
            n11 = gy[iy + 1, ix + 1] * (fy - 1.0) + gx[iy + 1, ix + 1] * (fx - 1.0)
            top = n00 + ux * (n01 - n00)
            bottom = n10 + ux * (n11 - n10)
            out[y, x] = np.sqrt(2.0) * (top + uy * (bottom - top))
    return out


def perlin_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Perlin noise of ``shape`` with ``cells = (rows, cols)`` lattice cells, values in [-1, 1].

    Random unit gradients sit on the ``(rows + 1) x (cols + 1)`` lattice; each
    pixel blends the four corner dot products with the quintic fade
    ``6t^5 - 15t^4 + 10t^3``, scaled by sqrt(2) as in DRAEM (so that its 0.5
    threshold means the same).  A Numba kernel (one pass, no temporaries); any
    shape, not only multiples of the lattice.

    Examples
    --------
    >>> import numpy as np
    >>> n = perlin_noise((64, 48), (4, 3), np.random.default_rng(0))
    >>> n.shape, n.dtype, bool(np.abs(n).max() <= 1.0)
    ((64, 48), dtype('float32'), True)
    """
    H, W = shape
    ry, rx = cells
    if ry < 1 or rx < 1 or H < 1 or W < 1:
        raise ValueError(f"shape and cells must be positive, got shape {shape}, cells {cells}")
    angles = rng.uniform(0.0, 2 * np.pi, size=(ry + 1, rx + 1))
    return _perlin(int(H), int(W), np.sin(angles), np.cos(angles))
