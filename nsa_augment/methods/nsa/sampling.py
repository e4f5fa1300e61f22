"""Patch geometry sampling: *what* to cut and where to put it, no pixels touched.

Each function draws from an explicit ``numpy.random.Generator`` and returns
plain numbers or a :class:`PatchGeometry`; the pixel work lives in
:mod:`nsa_augment.methods.nsa.blending`.  The formulas follow the NSA paper and
its reference implementation (``docs/algorithm.md`` lists where and why we
differ).  Every function works on any number of axes — images (rows, cols) and
volumes (depth, rows, cols) — drawing axis by axis in that order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .config import NSAConfig

#: Half-open box, flat per axis: (y0, y1, x0, x1) for images, (z0, z1, y0, y1, x0, x1) for volumes.
Box = tuple[int, ...]


def box_slices(box: Box) -> tuple[slice, ...]:
    """``array[box_slices(box)]`` is the box's part of an array."""
    return tuple(slice(box[2 * a], box[2 * a + 1]) for a in range(len(box) // 2))


def box_size(box: Box) -> tuple[int, ...]:
    return tuple(box[2 * a + 1] - box[2 * a] for a in range(len(box) // 2))


@dataclass(frozen=True)
class PatchGeometry:
    """One placed patch: plain numbers, no pixels.

    Attributes
    ----------
    src_box : (y0, y1, x0, x1)
        Region cut from the source image.
    dst_box : (y0, y1, x0, x1)
        Region it covers in the destination (its size is the rescaled size).
    scale : float
        Rescale factor drawn (1.0 without rescaling).
    attempts : int
        Position draws used (source and destination together).

    With object masks, where in ``dst_box`` the patch may be labelled (and
    pasted, for the paste/alpha modes) is ``source object | destination object``;
    rendering recomputes it from the images, so the plan holds no masks.
    """

    src_box: Box
    dst_box: Box
    scale: float
    attempts: int

    @property
    def dst_size(self) -> tuple[int, ...]:
        return box_size(self.dst_box)


def pixel_bounds(dim: int, bounds: tuple[float, float]) -> tuple[int, int]:
    """Half-width bounds in pixels for an axis of length ``dim`` (NumPy rounding, as the reference)."""
    # Python's round() rounds half to even, like np.round, and is much cheaper on scalars.
    return round(bounds[0] * dim), round(bounds[1] * dim)


def sample_num_patches(rng: np.random.Generator, num_patches: int) -> int:
    """1 + the number of heads in ``num_patches - 1`` fair coin flips.

    One scalar draw per flip: the values of ``rng.integers(0, 2, size=num_patches - 1)`` (either way
    each flip takes the bit generator's next 32-bit value, in order), without NumPy's array path for
    random integers, which cost 0.02-0.03 ms of a 256 px synthesis that follows other work (its code
    cold; an ad hoc paired measurement: docs/performance-log.md, *Example by example or in a row*).
    """
    return 1 + sum(int(rng.integers(0, 2)) for _ in range(num_patches - 1))


def sample_half_width(rng: np.random.Generator, dim: int, bounds: tuple[float, float], gamma) -> int:
    """Patch half-width in pixels along one axis.

    With ``gamma = (shape, scale, lower_bound)``: ``int((lower_bound +
    Gamma(shape, scale)) * dim)`` clipped to the pixel bounds (clipping, not
    rejection, as in the paper).  Without: uniform integer within the bounds.
    """
    lo, hi = pixel_bounds(dim, bounds)
    if gamma is None:
        return int(rng.integers(lo, hi + 1))
    shape, scale, lower = gamma
    return min(max(int((lower + rng.gamma(shape, scale)) * dim), lo), hi)


def sample_rescale(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """``clip(N(1, 0.5), *bounds)``."""
    return min(max(float(rng.normal(1.0, 0.5)), bounds[0]), bounds[1])


def rescaled_size(
    size: tuple[int, ...], scale: float, dst_shape: tuple[int, ...], config: NSAConfig
) -> tuple[int, ...]:
    """Size of the patch after rescaling, aspect ratio kept, within the bounds.

    The first axis is scaled, the others follow its ratio, then the first is
    derived again from the last (in case clipping changed it), as the reference
    does for rows and cols.  ``config.rescale_clip == "full"`` bounds the full
    size by twice the destination's half-width pixel bounds; ``"reference"``
    reproduces the reference code, which bounds the full size by the half-width
    bounds.  The result always fits in the destination.
    """
    mult = 2 if config.rescale_clip == "full" else 1
    bounds = []
    for dim, b in zip(dst_shape, config.width_bounds):
        lo, hi = pixel_bounds(dim, b)
        bounds.append((max(1, min(mult * lo, dim)), max(1, min(mult * hi, dim))))
    (lo0, hi0), first = bounds[0], size[0]
    new_first = min(max(scale * first, lo0), hi0)
    others = [min(max(int(new_first / first * s), lo), hi) for s, (lo, hi) in zip(size[1:], bounds[1:])]
    new_first = min(max(int(others[-1] / size[-1] * first), lo0), hi0)
    return (new_first, *others)


def integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table of a boolean mask, shape (H+1, W+1) (or (D+1, H+1, W+1)), for O(1) box counts."""
    if mask.ndim == 2:
        return cv2.integral(mask.view(np.uint8), sdepth=cv2.CV_32S)
    table = np.zeros(tuple(n + 1 for n in mask.shape), np.int64)
    inner = mask.astype(np.int64)
    for axis in range(mask.ndim):
        inner = np.cumsum(inner, axis=axis)
    table[(slice(1, None),) * mask.ndim] = inner
    return table


def box_count(table: np.ndarray, box: Box) -> int:
    """Set pixels of the mask inside ``box``, from its :func:`integral` (inclusion-exclusion over the corners)."""
    if len(box) == 4:
        y0, y1, x0, x1 = box
        return int(table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0])
    total = 0
    for corner in itertools.product((0, 1), repeat=len(box) // 2):
        index = tuple(box[2 * a + c] for a, c in enumerate(corner))
        total += (-1) ** (len(corner) - sum(corner)) * int(table[index])
    return total


class ObjectCounts:
    """Object pixels of a boolean mask inside boxes, for rejection sampling.

    The first ``direct`` boxes are counted on the mask itself; a sampling loop that asks for more
    gets a summed-area table (:func:`integral`, built once) and O(1) counts.  Most examples ask for
    a handful of boxes, fewer pixels than the table (a fresh (H+1) x (W+1) int32 array for every
    example): 2% of a hazelnut example at 256 and 512 px.  The counts are the same integers.
    """

    def __init__(self, mask: np.ndarray, direct: int = 8):
        self.mask = mask
        self.direct = direct
        self.table = None
        self.asked = 0

    def __call__(self, box: Box) -> int:
        self.asked += 1
        if self.table is None and self.asked > self.direct:
            self.table = integral(self.mask)
        if self.table is not None:
            return box_count(self.table, box)
        return int(np.count_nonzero(self.mask[box_slices(box)]))


def sample_source_box(
    rng: np.random.Generator,
    src_shape: tuple[int, ...],
    half_widths: tuple[int, ...],
    min_half_widths: tuple[int, ...],
    object_counts: ObjectCounts | None,
    min_object: float,
    max_attempts: int,
) -> tuple[Box | None, int]:
    """Where to cut: centre uniform in ``[min_hw, dim - min_hw)`` per axis, box
    ``[c - hw, c + hw)`` clipped to the image.

    With an object mask (its :class:`ObjectCounts`), the box must be more than
    ``min_object`` object; up to ``max_attempts`` centre draws.

    Returns
    -------
    box or None, attempts
    """
    lows = [min(m, n - 1) for n, m in zip(src_shape, min_half_widths)]
    highs = [max(n - m, lo + 1) for n, m, lo in zip(src_shape, min_half_widths, lows)]
    for attempt in range(1, max_attempts + 1):
        centre = [int(rng.integers(lo, hi)) for lo, hi in zip(lows, highs)]
        box = tuple(v for c, h, n in zip(centre, half_widths, src_shape) for v in (max(c - h, 0), min(c + h, n)))
        area = math.prod(box_size(box))
        if area == 0:
            return None, attempt
        if object_counts is None or object_counts(box) / area > min_object:
            return box, attempt
    return None, max_attempts


def _mostly_object_area(src_object_patch: np.ndarray, min_object: float) -> int | None:
    """Object pixels of the (rescaled) source patch, or None when it is not more than ``min_object`` object."""
    area = int(src_object_patch.sum())
    return area if area / src_object_patch.size > min_object else None


def _overlap_accepted(dst_object: np.ndarray, box: Box, src_object_patch: np.ndarray, src_area: int, min_overlap: float) -> bool:
    """Destination and source object overlap by more than ``min_overlap`` of the source object."""
    return np.count_nonzero(dst_object[box_slices(box)] & src_object_patch) / src_area > min_overlap


def sample_destination_box(
    rng: np.random.Generator,
    size: tuple[int, ...],
    dst_shape: tuple[int, ...],
    dst_object: np.ndarray | None,
    src_object_patch: np.ndarray | None,
    min_object: float,
    min_overlap: float,
    max_attempts: int,
) -> tuple[Box | None, int]:
    """Where to put a patch of ``size``: entirely inside the destination, corner
    uniform over all valid positions (image border included).

    With object masks: the (rescaled) source patch must be more than
    ``min_object`` object, and the overlap of destination and source object more
    than ``min_overlap`` of the source object area; up to ``max_attempts`` draws.
    """
    if src_object_patch is not None:
        src_area = _mostly_object_area(src_object_patch, min_object)
        if src_area is None:
            return None, 1  # independent of the position: no draw can succeed
    for attempt in range(1, max_attempts + 1):
        corner = [int(rng.integers(0, n - s + 1)) for n, s in zip(dst_shape, size)]
        box = tuple(v for c, s in zip(corner, size) for v in (c, c + s))
        if dst_object is None or _overlap_accepted(dst_object, box, src_object_patch, src_area, min_overlap):
            return box, attempt
    return None, max_attempts


def unshifted_destination_box(
    src_box: Box,
    size: tuple[int, ...],
    dst_shape: tuple[int, ...],
    dst_object: np.ndarray | None,
    src_object_patch: np.ndarray | None,
    min_object: float,
    min_overlap: float,
) -> tuple[Box | None, int]:
    """``shift=False``: the patch keeps its centre (clamped so it fits); the same acceptance rules, no draw."""
    box = []
    for a, (s, n) in enumerate(zip(size, dst_shape)):
        c = (src_box[2 * a] + src_box[2 * a + 1]) // 2
        lo = min(max(c - s // 2, 0), n - s)
        box += [lo, lo + s]
    box = tuple(box)
    if dst_object is not None:
        src_area = _mostly_object_area(src_object_patch, min_object)
        if src_area is None or not _overlap_accepted(dst_object, box, src_object_patch, src_area, min_overlap):
            return None, 1
    return box, 1
