"""Vectorised 2-D Perlin (gradient) noise, as used for DRAEM's anomaly masks."""

from __future__ import annotations

import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Perlin noise of ``shape`` with ``cells = (rows, cols)`` lattice cells, values in [-1, 1].

    Random unit gradients sit on the ``(rows + 1) x (cols + 1)`` lattice; each
    pixel blends the four corner dot products with the quintic fade
    ``6t^5 - 15t^4 + 10t^3``, scaled by sqrt(2) as in DRAEM (so that its 0.5
    threshold means the same).  Fully vectorised (no Python loop over pixels);
    any shape, not only multiples of the lattice.

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
    gy, gx = np.sin(angles), np.cos(angles)
    y = (np.arange(H) + 0.5) * (ry / H)
    x = (np.arange(W) + 0.5) * (rx / W)
    iy, ix = np.minimum(y.astype(int), ry - 1), np.minimum(x.astype(int), rx - 1)
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]
    iy, ix = iy[:, None], ix[None, :]

    def corner(dy, dx):
        return gy[iy + dy, ix + dx] * (fy - dy) + gx[iy + dy, ix + dx] * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return (np.sqrt(2.0) * (top * (1 - uy) + bottom * uy)).astype(np.float32)
