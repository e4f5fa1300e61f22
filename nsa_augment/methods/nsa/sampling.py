"""Patch geometry sampling: *what* to cut and where to put it, no pixels touched.

Each function draws from an explicit ``numpy.random.Generator`` and returns
plain numbers or a :class:`PatchGeometry`; the pixel work lives in
:mod:`nsa_augment.blending`.  The formulas follow the NSA paper and its reference
implementation (``docs/algorithm.md`` lists where and why we differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import NSAConfig

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


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
    def dst_size(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.dst_box
        return y1 - y0, x1 - x0


def pixel_bounds(dim: int, bounds: tuple[float, float]) -> tuple[int, int]:
    """Half-width bounds in pixels for an axis of length ``dim`` (NumPy rounding, as the reference)."""
    # Python's round() rounds half to even, like np.round, and is much cheaper on scalars.
    return round(bounds[0] * dim), round(bounds[1] * dim)


def sample_num_patches(rng: np.random.Generator, num_patches: int) -> int:
    """1 + the number of heads in ``num_patches - 1`` fair coin flips."""
    return 1 + int(rng.integers(0, 2, size=num_patches - 1).sum()) if num_patches > 1 else 1


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
    size: tuple[int, int], scale: float, dst_shape: tuple[int, int], config: NSAConfig
) -> tuple[int, int]:
    """Size of the patch after rescaling, aspect ratio kept, within the bounds.

    ``config.rescale_clip == "full"`` bounds the full size by twice the
    destination's half-width pixel bounds; ``"reference"`` reproduces the
    reference code, which bounds the full size by the half-width bounds.  The
    result always fits in the destination.
    """
    h, w = size
    H, W = dst_shape
    mult = 2 if config.rescale_clip == "full" else 1
    (rlo, rhi), (clo, chi) = (pixel_bounds(H, config.width_bounds[0]), pixel_bounds(W, config.width_bounds[1]))
    rlo, rhi = max(1, min(mult * rlo, H)), max(1, min(mult * rhi, H))
    clo, chi = max(1, min(mult * clo, W)), max(1, min(mult * chi, W))
    new_h = min(max(scale * h, rlo), rhi)
    new_w = min(max(int(new_h / h * w), clo), chi)
    new_h = min(max(int(new_w / w * h), rlo), rhi)
    return new_h, new_w


def integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table of a boolean mask, shape (H+1, W+1), for O(1) box counts."""
    return cv2.integral(mask.view(np.uint8), sdepth=cv2.CV_32S)


def box_count(table: np.ndarray, box: Box) -> int:
    y0, y1, x0, x1 = box
    return int(table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0])


def sample_source_box(
    rng: np.random.Generator,
    src_shape: tuple[int, int],
    half_widths: tuple[int, int],
    min_half_widths: tuple[int, int],
    object_table: np.ndarray | None,
    min_object: float,
    max_attempts: int,
) -> tuple[Box | None, int]:
    """Where to cut: centre uniform in ``[min_hw, dim - min_hw)`` per axis, box
    ``[c - hw, c + hw)`` clipped to the image.

    With an object mask (as a summed-area table), the box must be more than
    ``min_object`` object; up to ``max_attempts`` centre draws.

    Returns
    -------
    box or None, attempts
    """
    (H, W), (hh, hw), (mh, mw) = src_shape, half_widths, min_half_widths
    ylo, xlo = min(mh, H - 1), min(mw, W - 1)
    yhi, xhi = max(H - mh, ylo + 1), max(W - mw, xlo + 1)
    for attempt in range(1, max_attempts + 1):
        cy, cx = int(rng.integers(ylo, yhi)), int(rng.integers(xlo, xhi))
        box = (max(cy - hh, 0), min(cy + hh, H), max(cx - hw, 0), min(cx + hw, W))
        area = (box[1] - box[0]) * (box[3] - box[2])
        if area == 0:
            return None, attempt
        if object_table is None or box_count(object_table, box) / area > min_object:
            return box, attempt
    return None, max_attempts


def _mostly_object_area(src_object_patch: np.ndarray, min_object: float) -> int | None:
    """Object pixels of the (rescaled) source patch, or None when it is not more than ``min_object`` object."""
    area = int(src_object_patch.sum())
    return area if area / src_object_patch.size > min_object else None


def _overlap_accepted(dst_object: np.ndarray, box: Box, src_object_patch: np.ndarray, src_area: int, min_overlap: float) -> bool:
    """Destination and source object overlap by more than ``min_overlap`` of the source object."""
    y0, y1, x0, x1 = box
    return np.count_nonzero(dst_object[y0:y1, x0:x1] & src_object_patch) / src_area > min_overlap


def sample_destination_box(
    rng: np.random.Generator,
    size: tuple[int, int],
    dst_shape: tuple[int, int],
    dst_object: np.ndarray | None,
    src_object_patch: np.ndarray | None,
    min_object: float,
    min_overlap: float,
    max_attempts: int,
) -> tuple[Box | None, int]:
    """Where to put a patch of ``size``: entirely inside the destination, top-left
    uniform over all valid positions (image border included).

    With object masks: the (rescaled) source patch must be more than
    ``min_object`` object, and the overlap of destination and source object more
    than ``min_overlap`` of the source object area; up to ``max_attempts`` draws.
    """
    (h, w), (H, W) = size, dst_shape
    if src_object_patch is not None:
        src_area = _mostly_object_area(src_object_patch, min_object)
        if src_area is None:
            return None, 1  # independent of the position: no draw can succeed
    for attempt in range(1, max_attempts + 1):
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        box = (y0, y0 + h, x0, x0 + w)
        if dst_object is None or _overlap_accepted(dst_object, box, src_object_patch, src_area, min_overlap):
            return box, attempt
    return None, max_attempts


def unshifted_destination_box(
    src_box: Box,
    size: tuple[int, int],
    dst_shape: tuple[int, int],
    dst_object: np.ndarray | None,
    src_object_patch: np.ndarray | None,
    min_object: float,
    min_overlap: float,
) -> tuple[Box | None, int]:
    """``shift=False``: the patch keeps its centre (clamped so it fits); the same acceptance rules, no draw."""
    (h, w), (H, W) = size, dst_shape
    cy, cx = (src_box[0] + src_box[1]) // 2, (src_box[2] + src_box[3]) // 2
    y0 = min(max(cy - h // 2, 0), H - h)
    x0 = min(max(cx - w // 2, 0), W - w)
    box = (y0, y0 + h, x0, x0 + w)
    if dst_object is not None:
        src_area = _mostly_object_area(src_object_patch, min_object)
        if src_area is None or not _overlap_accepted(dst_object, box, src_object_patch, src_area, min_overlap):
            return None, 1
    return box, 1
