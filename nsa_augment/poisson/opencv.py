"""The system ``cv2.seamlessClone`` solves, solved with the exact box solver.

OpenCV's seamless cloning (``modules/photo/src/seamless_cloning*.cpp``) does not solve on the mask.
It zeroes the mask's outer one-pixel ring, takes the bounding rectangle of what is left, erodes
the mask with a 7x7 square (a 3x3 kernel, 3 iterations) and solves Poisson's equation on the
rectangle's interior with the rectangle's border fixed to the destination: the guidance is the
source's gradients where the eroded mask is set (times its value / 255) and the destination's
gradients everywhere else, so the pixels of the rectangle outside the mask change too.  With
``MIXED_CLONE`` it keeps, per pixel and channel, the source's gradient pair where ``|gx - gy|``
is larger than the destination's.  The result is clipped and truncated to 8 bits.

Because the region is always a full rectangle, one fast sine-transform solve does it exactly
(:func:`~nsa_augment.poisson.box_solver.solve_box`), for any mask shape, with no iterations.
:func:`seamless_clone` is a drop-in for ``cv2.seamlessClone`` (same placement rule); the NSA
generator uses the same core for ``poisson="opencv"`` (the reference implementation's blend).
"""

from __future__ import annotations

import numbers

import cv2
import numpy as np

from ..validation import as_hwc, check_image, check_mask, check_same_kind
from . import kernels
from .box_solver import solve_box

#: 3 iterations of a 3x3 erosion, which OpenCV folds into one 7x7 rectangle.
ERODE = 7
MODES = ("normal", "mixed")


def opencv_weights(mask: np.ndarray, factor: float = 1.0) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """OpenCV's guidance weights for a mask, and the rectangle it solves on.

    Parameters
    ----------
    mask : ndarray, bool, (h, w)
    factor : float in [0, 1]
        Weight of the source gradients inside the eroded mask (1 for normal and
        mixed cloning; the interpolation factor for a scaled mask, as the NSA
        reference passes ``ceil(f * 255)``).

    Returns
    -------
    weights : float64 (h, w)
        ``factor`` where the ring-zeroed mask survives a 7x7 erosion (zero
        outside the array), else 0.
    rect : (y0, y1, x0, x1) or None
        Bounding rectangle of the ring-zeroed mask, None when nothing is left.
    """
    ring = np.zeros(mask.shape, np.uint8)
    ring[1:-1, 1:-1] = mask[1:-1, 1:-1]
    rows = np.flatnonzero(ring.any(axis=1))
    if rows.size == 0:
        return np.zeros(mask.shape), None
    cols = np.flatnonzero(ring.any(axis=0))
    eroded = cv2.erode(ring, np.ones((ERODE, ERODE), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    weights = eroded.astype(np.float64) * float(factor)
    return weights, (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def blend_opencv_inplace(image, source, weights, offset, rect, mixed: bool, lo: float, hi: float, rounding: int) -> None:
    """Unchecked core: solve OpenCV's system on ``rect`` (destination coordinates) and write its interior.

    ``image`` (H, W, C) and ``source`` (h, w, C) are C-contiguous with the same
    dtype; ``weights`` (h, w) from :func:`opencv_weights`; ``offset`` places the
    source; ``rect`` lies inside the image with at least 3 rows and columns.
    """
    oy, ox = offset
    y0, y1, x0, x1 = rect
    rhs = kernels.assemble_rhs_opencv(image, source, weights, oy, ox, y0, y1, x0, x1, mixed)
    solution = solve_box(rhs, False, False, False, False, overwrite=True)  # rhs: ours, float32
    inside = np.ones(solution.shape[1:], dtype=np.bool_)
    kernels.write_solution(image, solution, inside, y0 + 1, x0 + 1, lo, hi, rounding)


def seamless_clone(source: np.ndarray, destination: np.ndarray, mask: np.ndarray, center: tuple[int, int],
                   mode: str = "normal") -> np.ndarray:
    """``cv2.seamlessClone(source, destination, mask, center, flags)``, several times faster.

    Same system, same placement (the rectangle ``rect`` of the ring-zeroed mask
    goes to ``(center[0] - width // 2, center[1] - height // 2)`` in (x, y)), the
    same result within one grey level (float solves differ in the last bits
    before truncation).  Unlike OpenCV it takes any channel count, float32
    images (not truncated) and a mask whose nonzero pixels all count fully (OpenCV
    weights the guidance by ``mask / 255``, which silently weakens a 0/1 mask).

    Parameters
    ----------
    source : ndarray (h, w) or (h, w, C), uint8 or float32
    destination : ndarray (H, W) or (H, W, C), same dtype and channels
    mask : ndarray (h, w), bool or integer (nonzero = clone)
    center : (x, y)
        Where the centre of the mask's bounding rectangle lands, as in OpenCV.
    mode : {"normal", "mixed"}
        ``cv2.NORMAL_CLONE`` or ``cv2.MIXED_CLONE``.

    Returns
    -------
    ndarray, same shape and dtype as ``destination``

    Examples
    --------
    >>> import numpy as np
    >>> dst = np.full((64, 64, 3), 90, np.uint8)
    >>> src = np.full((20, 20, 3), 200, np.uint8); src[5:15, 5:15] = 250
    >>> out = seamless_clone(src, dst, np.full((20, 20), 255, np.uint8), (32, 32))
    >>> out.shape, int(out[32, 32, 0]) > 90, bool((out[:20] == 90).all())
    ((64, 64, 3), True, True)
    """
    destination = check_image(destination, "destination")
    source = check_image(source, "source")
    dst3, src3 = as_hwc(destination), as_hwc(source)
    check_same_kind(src3, dst3)
    mask = check_mask(mask, "mask", source.shape[:2])
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    try:
        cx, cy = center
    except (TypeError, ValueError):
        raise TypeError(f"center must be an (x, y) pair of integers, got {center!r}") from None
    if not all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in (cx, cy)):
        raise TypeError(f"center must be an (x, y) pair of integers, got {center!r}")
    weights, rect = opencv_weights(mask)
    if rect is None or rect[1] - rect[0] < 3 or rect[3] - rect[2] < 3:
        raise ValueError("mask has no pixel to solve once its outer one-pixel ring is removed (as OpenCV does): "
                         "give a mask whose inside is at least 3x3 pixels away from the mask array's border")
    ry0, ry1, rx0, rx1 = rect
    dy0, dx0 = int(cy) - (ry1 - ry0) // 2, int(cx) - (rx1 - rx0) // 2
    H, W = destination.shape[:2]
    if dy0 < 0 or dx0 < 0 or dy0 + ry1 - ry0 > H or dx0 + rx1 - rx0 > W:
        raise ValueError(f"the mask's {ry1 - ry0}x{rx1 - rx0} bounding rectangle centred at {center} does not "
                         f"fit inside the {H}x{W} destination")
    out = np.array(destination, order="C", copy=True)
    offset = (dy0 - ry0, dx0 - rx0)  # where source[0, 0] lands
    lo, hi, rounding = kernels.output_range(destination.dtype, truncate=True, clip=False)
    blend_opencv_inplace(as_hwc(out), np.ascontiguousarray(src3), weights, offset,
                         (dy0, dy0 + ry1 - ry0, dx0, dx0 + rx1 - rx0), mode == "mixed", lo, hi, rounding)
    return out

