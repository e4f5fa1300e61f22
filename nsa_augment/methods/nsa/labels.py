"""Anomaly label maps, computed only around the patches.

Definitions (NSA paper, section 3 of ``docs/algorithm.md``), with ``D = mean over
channels |before - after|`` on the 0..255 scale and ``region`` the union of the
patch masks:

* ``changed = median5(D > tol and region)`` (5x5 median);
* binary: ``changed``;
* continuous: ``changed * f``;
* intensity: ``L = median_disk5(D * changed)`` (disk of radius 5, 11x11 footprint);
* logistic: ``changed / (1 + exp(-k (L - x0)))``.

Both medians see only zeros farther than their radius from the region, so they
are computed on the region's bounding box grown by 2 + 5 pixels: the result is
identical to filtering the whole image (borders replicate, as in the reference),
at a fraction of the cost.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ...intensity import intensity_range, level_scale
from ...validation import as_hwc
from .objects import binary_median

#: Intensity values are binned to 1/(QUANT * channels) of a level for the disk
#: median.  uint8 inputs read as 0..255 are exact (their channel means are
#: multiples of 1/channels); every other input is quantised to 1/4 of that.
_FLOAT_QUANT = 4

DISK_RADIUS = 5
_GROW = 2 + DISK_RADIUS


def _disk_offsets(radius: int) -> np.ndarray:
    """Half-widths of the disk footprint per row offset -radius..radius (skimage.morphology.disk)."""
    dy = np.arange(-radius, radius + 1)
    return np.floor(np.sqrt(radius * radius - dy * dy)).astype(np.int64)


_DISK = _disk_offsets(DISK_RADIUS)


@nb.njit(cache=True, nogil=True)
def median_disk(values, half_widths, need, out, hist):
    """Median filter with a disk footprint over non-negative integer ``values``.

    Huang's sliding histogram: moving one pixel right removes the left edge of
    the disk and adds the right edge (2 pixels per footprint row), and the
    median bin is tracked incrementally.  Borders replicate the edge pixels
    (scipy's ``mode="nearest"``).  Only pixels where ``need`` is set are
    computed (each row slides from its first to its last needed pixel); the
    others are 0.

    Parameters
    ----------
    values : int64 array (H, W), 0 <= values < len(hist)
    half_widths : int64 array (2r+1,), disk half-width per row offset
    need : bool array (H, W)
    out : int64 array (H, W), zeros
        Receives the medians where ``need`` is set.
    hist : int64 array (nbins,), zeros
        Scratch histogram (left zeroed).  Passing the arrays in keeps
        allocation code out of the compiled kernel (a shorter first compile).

    Returns
    -------
    ``out``
    """
    H, W = values.shape
    r = (half_widths.shape[0] - 1) // 2
    n = 0
    for d in range(2 * r + 1):
        n += 2 * half_widths[d] + 1
    half = n // 2  # the median is the (half)-th smallest, 0-based
    for y in range(H):
        first, last = -1, -1
        for x in range(W):
            if need[y, x]:
                if first < 0:
                    first = x
                last = x
        if first < 0:
            continue
        for d in range(2 * r + 1):
            yy = min(max(y + d - r, 0), H - 1)
            hw = half_widths[d]
            for dx in range(first - hw, first + hw + 1):
                hist[values[yy, min(max(dx, 0), W - 1)]] += 1
        m = 0
        below = 0
        while below + hist[m] <= half:
            below += hist[m]
            m += 1
        out[y, first] = m
        for x in range(first + 1, last + 1):
            for d in range(2 * r + 1):
                yy = min(max(y + d - r, 0), H - 1)
                hw = half_widths[d]
                v_out = values[yy, min(max(x - hw - 1, 0), W - 1)]
                v_in = values[yy, min(x + hw, W - 1)]
                hist[v_out] -= 1
                if v_out < m:
                    below -= 1
                hist[v_in] += 1
                if v_in < m:
                    below += 1
            while below > half:
                m -= 1
                below -= hist[m]
            while below + hist[m] <= half:
                below += hist[m]
                m += 1
            if need[y, x]:
                out[y, x] = m
        # empty the histogram by removing the last window (cheaper than clearing all bins)
        for d in range(2 * r + 1):
            yy = min(max(y + d - r, 0), H - 1)
            hw = half_widths[d]
            for dx in range(last - hw, last + hw + 1):
                hist[values[yy, min(max(dx, 0), W - 1)]] -= 1
    return out


@nb.njit(cache=True, nogil=True)
def _change_magnitude(before, after, scale, out):
    """``out = scale * mean over channels |before - after|`` (float64); NumPy's reduction over a 3-long axis is slow."""
    H, W, C = before.shape
    inv = scale / C
    for y in range(H):
        for x in range(W):
            acc = 0.0
            for c in range(C):
                acc += abs(np.float64(before[y, x, c]) - np.float64(after[y, x, c]))
            out[y, x] = acc * inv
    return out


def _quantize(diff: np.ndarray, changed: np.ndarray, quant: float) -> np.ndarray:
    """Integer bins of ``diff * changed`` (1/quant of a level), int64, saturating at 255 levels.

    A change larger than the whole intensity range (a CT window narrower than the
    image's values) counts as 255 levels: the histogram of :func:`median_disk` ends there.
    """
    return np.where(changed.view(bool), np.minimum(np.rint(diff * quant), 255 * quant), 0.0).astype(np.int64)


#: The logistic never reaches 1; float32 rounding would make it 1 for large changes.
_BELOW_ONE = np.float32(1.0) - np.float32(2.0**-24)


def _logistic(binned: np.ndarray, changed: np.ndarray, quant: float, k: float, x0: float) -> np.ndarray:
    """``changed / (1 + exp(-k (L - x0)))`` as float32, kept below 1."""
    out = np.zeros(binned.shape, np.float32)
    m = changed.view(bool)
    v = (1.0 / (1.0 + np.exp(-k * (binned[m] / quant - x0)))).astype(np.float32)
    out[m] = np.minimum(v, _BELOW_ONE)
    return out


def _bbox(mask: np.ndarray, grow: int):
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    H, W = mask.shape
    return (max(rows[0] - grow, 0), min(rows[-1] + 1 + grow, H), max(cols[0] - grow, 0), min(cols[-1] + 1 + grow, W))


def change_magnitude(before: np.ndarray, after: np.ndarray, intensity: tuple[float, float] | None = None) -> np.ndarray:
    """``mean over channels |before - after|`` on the 0..255 scale, float64 (H, W).

    ``intensity``: the images' intensity range (default: :func:`~nsa_augment.intensity.intensity_range`
    of ``before``); differences count ``255 / (hi - lo)`` levels per unit.
    """
    b, a = as_hwc(before), as_hwc(after)
    lo, hi = intensity if intensity is not None else intensity_range(b)
    return _change_magnitude(b, a, level_scale(lo, hi), np.empty(b.shape[:2]))


def make_label(
    before: np.ndarray,
    after: np.ndarray,
    region: np.ndarray,
    mode: str,
    *,
    tol: float = 1.0,
    factor: float = 1.0,
    logistic: tuple[float, float] = (1 / 6, 20.0),
    intensity: tuple[float, float] | None = None,
) -> np.ndarray:
    """The anomaly label of one synthesised example.

    Parameters
    ----------
    before, after : ndarray, (H, W) or (H, W, C), uint8, uint16, int16 or float32
        The destination and the synthesised image.
    region : ndarray, bool, (H, W)
        Union of the patch masks (where a label may start).
    mode : {"binary", "continuous", "intensity", "logistic"}
    tol : float
        Change threshold on the 0..255 scale.
    factor : float
        ``f`` for continuous labels.
    logistic : (k, x0)
    intensity : (lo, hi), optional
        The destination's intensity range (:mod:`nsa_augment.intensity`; default:
        the dtype's default rule for ``before`` as a whole).

    Returns
    -------
    ndarray, float32, (H, W)
        binary in {0, 1}; continuous in {0, f}; logistic in [0, 1); intensity
        in 0..255 (levels of the 0..255 scale, trained with MSE).

    Examples
    --------
    >>> import numpy as np
    >>> before = np.zeros((32, 32), np.uint8)
    >>> after = before.copy(); after[8:24, 8:24] = 90          # a 16x16 patch, 90 levels brighter
    >>> region = np.zeros((32, 32), bool); region[8:24, 8:24] = True
    >>> label = make_label(before, after, region, "logistic", logistic=(1 / 12, 24))
    >>> round(float(label[16, 16]), 3), float(label[0, 0])   # 1 / (1 + exp(-(90 - 24) / 12))
    (0.996, 0.0)
    """
    H, W = region.shape
    label = np.zeros((H, W), dtype=np.float32)
    box = _bbox(region, _GROW)
    if box is None:
        return label
    lo, hi = intensity if intensity is not None else intensity_range(as_hwc(before))
    y0, y1, x0, x1 = box
    b, a, reg = before[y0:y1, x0:x1], after[y0:y1, x0:x1], region[y0:y1, x0:x1]
    diff = change_magnitude(b, a, (lo, hi))
    raw = ((diff > tol) & reg).view(np.uint8)
    changed = binary_median(raw, 5)  # = cv2.medianBlur(raw, 5), replicated borders as the reference
    if mode == "binary":
        out = changed.astype(np.float32)
    elif mode == "continuous":
        out = changed.astype(np.float32) * np.float32(factor)
    elif mode in ("intensity", "logistic"):
        channels = 1 if before.ndim == 2 else before.shape[2]
        exact = before.dtype == np.uint8 and (lo, hi) == (0.0, 255.0)  # channel means are multiples of 1/C
        quant = channels * (1 if exact else _FLOAT_QUANT)
        q = _quantize(diff, changed, float(quant))
        need = changed.view(bool) if mode == "logistic" else np.ones(q.shape, bool)
        binned = median_disk(q, _DISK, need, np.zeros(q.shape, np.int64), np.zeros(255 * quant + 1, np.int64))
        if mode == "intensity":
            out = (binned / quant).astype(np.float32)
        else:
            k, x0_ = logistic
            out = _logistic(binned, changed, float(quant), float(k), float(x0_))
    else:
        raise ValueError(f"label mode must be binary, continuous, intensity or logistic, got {mode!r}")
    label[y0:y1, x0:x1] = out
    return label


def image_label(mask: np.ndarray, threshold: float = 0.0) -> int:
    """Image-level label from a (possibly transformed) label map: 1 if any value exceeds ``threshold``."""
    return int(np.asarray(mask).max(initial=0) > threshold)
