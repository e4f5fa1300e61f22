"""Public Poisson image editing entry point."""

from __future__ import annotations

import numbers

import numpy as np

from ..validation import as_hwc, check_image, check_mask, check_same_kind
from . import kernels
from .blas import single_threaded_blas
from .box_solver import solve_box_nd
from .masked_solver import solve_masked
from .opencv import blend_opencv_inplace, opencv_weights

GRADIENT_MODES = {"normal": kernels.NORMAL, "mixed": kernels.MIXED, "interpolated": kernels.INTERPOLATED}
FORMULATIONS = ("exact", "opencv")
#: The exact solve of a non-rectangular mask stops once its estimated error is within this many grey
#: levels.  A level is 1 for integer images, and for float images 1/65535 of the largest magnitude in
#: the blended region: float data may hold a 16-bit scan, so it gets 16-bit precision (1/255 would
#: leave 0.8 16-bit levels of error in a scan scaled to [0, 1]).  Measured against the sparse direct
#: solve: at most 0.005 levels on real and random images (tests/test_poisson.py,
#: benchmarks/bench_poisson.py), 100x inside half a level, where rounding to integers could change.
ERROR_LEVELS = 3e-3


def poisson_blend(
    destination: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    *,
    offset: tuple[int, int] = (0, 0),
    gradients: str = "normal",
    factor: float = 1.0,
    clip: bool = False,
    formulation: str = "exact",
) -> np.ndarray:
    """Seamlessly blend ``source`` into ``destination`` where ``mask`` is set.

    Solves the discrete Poisson equation (5-point Laplacian) ``Δf = div v`` on
    the masked pixels, with the destination as Dirichlet boundary, per channel
    (Pérez, Gangnet & Blake, 2003).  Only the mask's bounding box is touched.
    ``formulation="opencv"`` solves the system ``cv2.seamlessClone`` solves
    instead (:mod:`nsa_augment.poisson.opencv`).

    Parameters
    ----------
    destination : ndarray, shape (H, W) or (H, W, C), uint8 or float32
        Image to blend into.  Never modified.
    source : ndarray, shape (h, w) or (h, w, C), same dtype and channels
        Content to blend, placed with its top-left corner at ``offset`` in the
        destination; it must fit inside.  Defaults to the destination's own frame
        when it has the destination's size.
    mask : ndarray, shape (h, w), bool or integer (nonzero = blend)
        Region to solve for, in source coordinates.  Any shape: non-convex,
        with holes or disconnected.  Must not be empty and must leave at least
        one destination pixel outside it.
    offset : (int, int)
        ``(row, col)`` of ``source[0, 0]`` in the destination.
    gradients : {"normal", "mixed", "interpolated"}
        Guidance field ``v``: the source's gradients ("normal", seamless
        cloning), per edge and channel the stronger of source and destination
        gradient ("mixed"), or ``factor * ∇source + (1 - factor) * ∇destination``
        ("interpolated", as in Poisson image interpolation / PII).
    factor : float in [0, 1]
        Interpolation factor for ``gradients="interpolated"``; ignored otherwise.
    clip : bool
        Clip float32 results to [0, 1].  uint8 results are always rounded to the
        nearest integer and clipped to 0..255.
    formulation : {"exact", "opencv"}
        "exact": the masked system above, solved directly for a rectangle
        and iteratively for any other mask, to within :data:`ERROR_LEVELS`
        (0.003) grey levels of the exact solution (16-bit levels for float
        images).  "opencv": OpenCV's — the mask
        array's outer ring is dropped, the whole bounding rectangle of the rest
        is solved with its border fixed, source gradients count only where a
        7x7 erosion of the mask survives (destination gradients elsewhere), mixed
        gradients are chosen per pixel by ``|gx - gy|``, and uint8 results are
        truncated, not rounded.  One sine-transform solve for any mask shape.
        ``gradients="interpolated"`` weights the source by ``factor`` there.

    Returns
    -------
    ndarray
        New array, same shape and dtype as ``destination``; equal to it outside
        the mask.

    Notes
    -----
    *Image border.*  A masked pixel on the image border simply has fewer
    neighbours: nothing is assumed about pixels outside the image (zero-flux,
    Neumann condition), so a patch touching the border keeps its own gradients
    up to the edge instead of being pinned to invented values.

    *Source border.*  Where a masked pixel's neighbour lies outside the
    ``source`` array, no source gradient exists and the destination's gradient
    is used for that edge.  Pass a source with a one-pixel margin around the
    mask to have source gradients everywhere (``poisson_blend`` never needs more
    than that).

    Examples
    --------
    >>> import numpy as np
    >>> from nsa_augment import poisson_blend
    >>> dst = np.full((32, 32, 3), 100, np.uint8)
    >>> src = np.zeros((10, 10, 3), np.uint8); src[3:7, 3:7] = 200
    >>> mask = np.zeros((10, 10), bool); mask[1:9, 1:9] = True
    >>> out = poisson_blend(dst, src, mask, offset=(5, 5))
    >>> out.dtype, out.shape, bool((out[:5] == 100).all())
    (dtype('uint8'), (32, 32, 3), True)
    >>> int(out[10, 10, 0]) > 100  # the bright square shows through
    True
    """
    destination = check_image(destination, "destination")
    source = check_image(source, "source")
    dst3, src3 = as_hwc(destination), as_hwc(source)
    check_same_kind(src3, dst3)
    mask = check_mask(mask, "mask", source.shape[:2])
    oy, ox = _check_offset(offset, source.shape[:2], destination.shape[:2])
    check_guidance(gradients, factor)
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")

    if not mask.any():
        raise ValueError("mask is empty: nothing to blend")
    H, W = destination.shape[:2]
    out = np.array(destination, order="C", copy=True)
    # an overflow is reported below, as one error; one BLAS scope for all the solves (blas.py)
    with np.errstate(over="ignore", invalid="ignore"), single_threaded_blas():
        _solve(out, src3, mask, (oy, ox), gradients, float(factor), bool(clip), formulation)
    _check_finite(out)
    return out


def _solve(out, src3, mask, offset, gradients, factor, clip, formulation):
    oy, ox = offset
    H, W = out.shape[:2]
    if formulation == "opencv":
        weights, rect = opencv_weights(mask, factor if gradients == "interpolated" else 1.0)
        if rect is None or rect[1] - rect[0] < 3 or rect[3] - rect[2] < 3:
            raise ValueError("mask has no pixel to solve once its outer one-pixel ring is removed (formulation="
                             "'opencv' drops it, as OpenCV does): use a mask at least 3 pixels thick inside the array")
        lo, hi, rounding = kernels.output_range(out.dtype, truncate=True, clip=clip)
        rect = (oy + rect[0], oy + rect[1], ox + rect[2], ox + rect[3])
        blend_opencv_inplace(as_hwc(out), np.ascontiguousarray(src3), weights, (oy, ox), rect, gradients == "mixed",
                             lo, hi, rounding)
    else:
        if mask.shape == (H, W) and mask.all():
            raise ValueError("mask covers the whole destination: a Poisson blend needs boundary pixels outside the mask")
        blend_inplace(as_hwc(out), np.ascontiguousarray(src3), np.ascontiguousarray(mask), (oy, ox), gradients,
                      factor, clip)


def check_guidance(gradients, factor) -> None:
    """The guidance arguments every blend takes: a :data:`GRADIENT_MODES` name and a factor in [0, 1]."""
    if gradients not in GRADIENT_MODES:
        raise ValueError(f"gradients must be one of {sorted(GRADIENT_MODES)}, got {gradients!r}")
    if not isinstance(factor, numbers.Real) or isinstance(factor, bool) or not 0.0 <= float(factor) <= 1.0:
        raise ValueError(f"factor must be a number in [0, 1], got {factor!r}")


def _check_finite(out: np.ndarray) -> None:
    """Float results that overflowed are an error, never NaNs handed back."""
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise ValueError("the blend overflowed (non-finite result): the image values are too large for a float32 "
                         "solve; rescale the images (e.g. to [0, 1]) first")


def blend_inplace(image, source, mask, offset, gradients, factor, clip=False):
    """Unchecked core of :func:`poisson_blend`: solve and write into ``image``.

    ``image`` (H, W, C) and ``source`` (h, w, C) are C-contiguous with the same
    dtype, ``mask`` (h, w) bool is non-empty and leaves a pixel of ``image``
    unmasked, ``offset`` places the source inside the image.  The region is
    read before it is written, so ``image`` may be the destination itself.
    """
    oy, ox = offset
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    H, W = image.shape[:2]
    y0, y1 = oy + int(rows[0]), oy + int(rows[-1]) + 1
    x0, x1 = ox + int(cols[0]), ox + int(cols[-1]) + 1
    if (y1 - y0) * (x1 - x0) == int(np.count_nonzero(mask)):  # a full rectangle: the lean kernel, a direct solve
        blend_box_inplace(image, source, offset, (y0, y1, x0, x1), gradients, factor, clip)
        return
    sides = (y0 == 0, y1 == H, x0 == 0, x1 == W)
    # iterative: stop on the error in grey levels
    rhs, inside = kernels.assemble_rhs(image, source, mask, oy, ox, y0, y1, x0, x1, GRADIENT_MODES[gradients], factor)
    solution, _ = solve_masked(rhs, inside, sides, ERROR_LEVELS * _level(image, source, (y0, y1, x0, x1)))
    lo, hi, rounding = kernels.output_range(image.dtype, clip=clip)
    kernels.write_solution(image, solution, inside, y0, x0, lo, hi, rounding)


def blend_box_inplace(image, source, offset, box, gradients, factor, clip=False):
    """:func:`blend_inplace` for a mask that is the whole rectangle ``box = (y0, y1, x0, x1)`` of ``image``.

    NSA's patches always are: no mask to build or scan, the rectangle kernel and one direct solve.
    ``source`` (placed at ``offset``) covers the box; its pixels beyond the box, where present,
    give the guidance across the box's edges.
    """
    oy, ox = offset
    y0, y1, x0, x1 = box
    H, W, C = image.shape
    # The right-hand side is summed in float64 (float32 where that is exact: integer images) and stored
    # as float32, what the solver transforms: one rounding, as converting a float64 array would do,
    # without the extra pass over it; the row scratch is float32 too (it rounds as the result does).
    rhs = kernels.assemble_rhs_box(image, source, image.reshape(H, -1), source.reshape(source.shape[0], -1),
                                   oy, ox, y0, y1, x0, x1, GRADIENT_MODES[gradients], factor,
                                   np.empty((C, y1 - y0, x1 - x0), np.float32), np.empty((x1 - x0) * C, np.float32))
    solution = solve_box_nd(rhs, ((y0 == 0, y1 == H), (x0 == 0, x1 == W)), overwrite=True)
    lo, hi, rounding = kernels.output_range(image.dtype, clip=clip)
    kernels.write_box(image, solution, y0, x0, lo, hi, rounding)


def _level(image: np.ndarray, source: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """One grey level in the images' units: 1 for integers, the blended region's peak / 65535 for floats."""
    if image.dtype.kind in "iu":
        return 1.0
    y0, y1, x0, x1 = box
    region = image[y0:y1, x0:x1]  # max |v| from min and max: no full-size temporary
    peak = float(np.max([-region.min(), region.max(), -source.min(), source.max()]))  # NaN stays NaN
    return peak / 65535.0 if np.isfinite(peak) and peak > 0.0 else 1.0


def _check_offset(offset, src_shape, dst_shape) -> tuple[int, int]:
    try:
        oy, ox = offset
    except (TypeError, ValueError):
        raise TypeError(f"offset must be a (row, col) pair of integers, got {offset!r}") from None
    if not all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in (oy, ox)):
        raise TypeError(f"offset must be a (row, col) pair of integers, got {offset!r}")
    oy, ox = int(oy), int(ox)
    h, w = src_shape
    H, W = dst_shape
    if oy < 0 or ox < 0 or oy + h > H or ox + w > W:
        raise ValueError(
            f"source of size {h}x{w} at offset ({oy}, {ox}) does not fit inside the {H}x{W} destination"
        )
    return oy, ox
