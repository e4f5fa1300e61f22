"""Poisson image editing for volumes: the 7-point Laplacian, same definitions as the 2-D solver."""

from __future__ import annotations

import numpy as np

from ..validation import as_dhwc, check_same_kind, check_volume
from . import kernels
from .blas import single_threaded_blas
from .blend import GRADIENT_MODES, _check_finite, check_guidance
from .masked_solver import solve_masked


def poisson_blend_volume(
    destination: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    *,
    offset: tuple[int, int, int] = (0, 0, 0),
    gradients: str = "normal",
    factor: float = 1.0,
    clip: bool = False,
) -> np.ndarray:
    """Seamlessly blend a source volume into a destination volume where ``mask`` is set.

    The 3-D counterpart of :func:`~nsa_augment.poisson_blend`: ``Δf = div v`` with
    the 7-point Laplacian on the masked voxels, the destination as Dirichlet
    boundary, zero flux across the volume's border; an exact sine-transform
    solve on a full box, box-preconditioned conjugate gradients on any other
    mask.

    Parameters
    ----------
    destination : ndarray, (D, H, W) or (D, H, W, C), uint8, uint16, int16 or float32
        Never modified.
    source : ndarray, (d, h, w[, C]), same dtype and channels, placed at ``offset``
    mask : ndarray, bool or integer, (d, h, w)
    offset : (int, int, int)
        Position of ``source[0, 0, 0]`` in the destination.
    gradients : {"normal", "mixed", "interpolated"}
    factor : float in [0, 1]
    clip : bool
        Clip float results to [0, 1] (integer results are always rounded and
        clipped to their dtype's limits).

    Returns
    -------
    ndarray, same shape and dtype as ``destination``

    Examples
    --------
    >>> import numpy as np
    >>> dst = np.full((20, 24, 24), 100, np.uint16)
    >>> src = np.full((8, 10, 10), 300, np.uint16); src[3:5, 4:6, 4:6] = 900
    >>> out = poisson_blend_volume(dst, src, np.ones((8, 10, 10), bool), offset=(6, 7, 7))
    >>> out.dtype, int(out[10, 12, 12]) > 100, bool((out[:6] == 100).all())
    (dtype('uint16'), True, True)
    """
    destination = check_volume(destination, "destination")
    source = check_volume(source, "source")
    dst4, src4 = as_dhwc(destination), as_dhwc(source)
    check_same_kind(src4, dst4)
    if not isinstance(mask, np.ndarray) or mask.shape != src4.shape[:3]:
        raise ValueError(f"mask must be an array of the source's shape {src4.shape[:3]}, got "
                         f"{getattr(mask, 'shape', type(mask).__name__)}")
    mask = mask.astype(bool) if mask.dtype != np.bool_ else mask
    try:
        oz, oy, ox = (int(v) for v in offset)
    except (TypeError, ValueError):
        raise TypeError(f"offset must be a (depth, row, col) triple of integers, got {offset!r}") from None
    if any(o < 0 or o + n > N for o, n, N in zip((oz, oy, ox), src4.shape[:3], dst4.shape[:3])):
        raise ValueError(f"source of size {src4.shape[:3]} at offset {offset} does not fit inside the "
                         f"{dst4.shape[:3]} destination")
    check_guidance(gradients, factor)
    if not mask.any():
        raise ValueError("mask is empty: nothing to blend")
    if mask.shape == dst4.shape[:3] and mask.all():
        raise ValueError("mask covers the whole destination: a Poisson blend needs boundary voxels outside the mask")
    out = np.array(destination, order="C", copy=True)
    with np.errstate(over="ignore", invalid="ignore"), single_threaded_blas():
        blend_volume_inplace(as_dhwc(out), np.ascontiguousarray(src4), np.ascontiguousarray(mask), (oz, oy, ox),
                             gradients, float(factor), bool(clip))
    _check_finite(out)
    return out


def blend_volume_inplace(volume, source, mask, offset, gradients, factor, clip=False):
    """Unchecked core of :func:`poisson_blend_volume`: solve and write into ``volume`` (D, H, W, C)."""
    oz, oy, ox = offset
    D, H, W = volume.shape[:3]
    spans = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    (z0, z1), (y0, y1), (x0, x1) = ((o + int(s[0]), o + int(s[-1]) + 1) for o, s in zip((oz, oy, ox), spans))
    sides = (z0 == 0, z1 == D, y0 == 0, y1 == H, x0 == 0, x1 == W)
    rhs, inside = kernels.assemble_rhs_3d(volume, source, mask, oz, oy, ox, z0, z1, y0, y1, x0, x1,
                                          GRADIENT_MODES[gradients], factor)
    solution, _ = solve_masked(rhs, inside, sides)
    lo, hi, rounding = kernels.output_range(volume.dtype, clip=clip)
    kernels.write_solution_3d(volume, solution, inside, z0, y0, x0, lo, hi, rounding)
