"""Object (foreground) masks from background intensity levels."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numba as nb
import numpy as np

from ...intensity import intensity_range
from ...validation import as_hwc, check_image, check_pair, check_range, is_integer

#: Reach of the 7x7 median that removes grain from the thresholded mask.
OBJECT_MEDIAN = 7


@nb.njit(cache=True, nogil=True)
def _threshold_channel_mean(image, levels, thresholds, lo, span, mean, out):
    """``out = 1`` where ``|(mean over channels - lo) * 255 / span - level| > threshold`` for every pair, else 0.

    The mean is ``sum / C`` in float64, exactly as ``numpy.mean`` computes it, and
    the division by ``span`` comes last: the products are exact for integer images,
    so an image and its exact rescaling (uint8 ``v``, uint16 ``257 v``) give the
    same values bit for bit, hence the same masks.
    ``mean`` (float64 (H, W)) is scratch; ``out`` (uint8 (H, W)) must hold ones.
    """
    H, W, C = image.shape
    for y in range(H):
        row, m = image[y], mean[y]
        if C == 3:  # spelled out, the same sums in the same order: LLVM vectorises this form (3x faster)
            for x in range(W):
                m[x] = (0.0 + row[x, 0] + row[x, 1] + row[x, 2]) / 3 - lo
        else:
            for x in range(W):
                acc = 0.0
                for c in range(C):
                    acc += row[x, c]
                m[x] = acc / C - lo
        for x in range(W):
            m[x] = m[x] * 255.0 / span
    for p in range(levels.shape[0]):  # pairs outermost keeps the pixel loop vectorisable
        level, threshold = levels[p], thresholds[p]
        for y in range(H):
            for x in range(W):
                out[y, x] &= abs(mean[y, x] - level) > threshold
    return out


@nb.njit(cache=True, nogil=True)
def _vote_by_channel_sum(image, lows, highs, sums, out):
    """``out[y, x] = 0`` where the channel sum of ``image[y, x]`` lies in one of ``[lows[k], highs[k]]``, else 1.

    The votes of an 8-bit image (H, W, C): ``lows``/``highs`` are the background intervals of
    :func:`_votes_by_sum`'s table (:func:`_vote_intervals`), of the dtype of ``sums``, a scratch
    row (W,) (uint16 up to 257 channels).  Comparisons instead of a table lookup: they vectorise
    (a 512 px RGB image 0.28 -> 0.10 ms).  ``out`` is uint8 (H, W).
    """
    H, W, C = image.shape
    for y in range(H):
        row, o = image[y], out[y]
        if C == 3:  # spelled out: the integer sum vectorises
            for x in range(W):
                sums[x] = row[x, 0] + row[x, 1] + row[x, 2]
        else:
            for x in range(W):
                acc = 0
                for c in range(C):
                    acc += row[x, c]
                sums[x] = acc
        for x in range(W):
            o[x] = 1
        for k in range(lows.shape[0]):  # intervals outermost keeps the pixel loop vectorisable
            a, b = lows[k], highs[k]
            for x in range(W):
                o[x] &= (sums[x] < a) | (sums[x] > b)
    return out


def _votes_by_sum(channels: int, levels: tuple, thresholds: tuple, lo: float, span: float) -> np.ndarray:
    """The vote of :func:`_threshold_channel_mean` for every channel sum ``0 .. 255 C`` of an 8-bit image (read-only).

    An 8-bit pixel's vote depends on its channel sum alone, so it is computed once per sum value
    with the kernel's float64 arithmetic in the kernel's order (``sum / C - lo``, then ``* 255 /
    span``, then ``|m - level| > threshold`` for every pair): the masks are bit-identical, and a
    512 px image costs an integer sum and a comparison or two per pixel instead of the arithmetic.
    Not cached itself: :func:`_vote_intervals`, its only caller on the hot path, is.
    """
    m = np.arange(255 * channels + 1, dtype=np.float64) / channels - lo
    m = m * 255.0 / span
    votes = np.ones(m.shape, bool)
    for level, threshold in zip(levels, thresholds):
        votes &= np.abs(m - level) > threshold
    table = votes.astype(np.uint8)
    table.setflags(write=False)
    return table


def _sum_dtype(channels: int):
    """The integer type that holds a sum of ``channels`` 8-bit values: uint16 (vectorises best) up to 257 channels."""
    return np.uint16 if 255 * channels <= 0xFFFF else np.int64


@lru_cache(maxsize=64)
def _vote_intervals(channels: int, levels: tuple, thresholds: tuple, lo: float, span: float):
    """The runs of zeros of :func:`_votes_by_sum`'s table as inclusive ``(lows, highs)`` (read-only, :func:`_sum_dtype`).

    Read off the table itself, so the votes they give are the table's, bit for bit (one
    interval per pair, fewer where they overlap).
    """
    table = _votes_by_sum(channels, levels, thresholds, lo, span)
    step = np.diff(np.concatenate(([1], table.astype(np.int8), [1])))
    lows, highs = np.flatnonzero(step == -1), np.flatnonzero(step == 1) - 1
    out = tuple(v.astype(_sum_dtype(channels)) for v in (lows, highs))
    for v in out:
        v.setflags(write=False)
    return out


@nb.njit(cache=True, nogil=True)
def _majority_5_or_7(votes, size, out, pad):
    """``out = 1`` where more than half of the ``size`` x ``size`` window (5 or 7) around a pixel is 1, borders replicated.

    ``votes`` and ``out`` are 0/1 uint8 (H, W); ``pad`` is uint8 scratch (W + size - 1,).  The
    window's column counts (``pad``'s middle, its ends replicated) slide down the image, one
    row in and one out, from row ``-r``, whose window is row 0 ``size`` times (the border
    replicated); each output row then adds ``size`` neighbouring counts.  Counts stay below
    50, so every sum is a byte, and unsigned indices let LLVM vectorise each pass over a row on
    bytes: a 512 px 7x7 mask in 0.03-0.05 ms, where ``cv2.boxFilter`` and the comparison take 0.3-0.4 ms.
    """
    H, W = votes.shape
    r = size // 2
    half = np.uint8(size * size // 2)
    n = np.uint64(W)
    col = pad[r:r + W]
    first = votes[0]
    for x in range(n):
        col[x] = first[x] * np.uint8(size)
    one, two, three, four, five, six = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4), np.uint64(5), np.uint64(6)
    for y in range(1 - r, H):
        enter, leave = votes[min(max(y + r, 0), H - 1)], votes[min(max(y - r - 1, 0), H - 1)]
        for x in range(n):
            col[x] = np.uint8(col[x] + enter[x]) - leave[x]
        if y < 0:
            continue
        for x in range(r):
            pad[x] = col[0]
            pad[W + r + x] = col[W - 1]
        o = out[y]
        if size == 5:  # the sums spelled out: a loop over the taps would not vectorise on bytes
            for x in range(n):
                o[x] = np.uint8(pad[x] + pad[x + one] + pad[x + two] + pad[x + three] + pad[x + four]) > half
        else:
            for x in range(n):
                o[x] = np.uint8(pad[x] + pad[x + one] + pad[x + two] + pad[x + three] + pad[x + four]
                                + pad[x + five] + pad[x + six]) > half
    return out


def binary_median(mask: np.ndarray, size: int) -> np.ndarray:
    """Median filter of a 0/1 uint8 image (or volume) with a ``size``-wide square (cube) window, replicated borders.

    For binary data the median is 1 exactly when more than half of the window is
    1, so a window count gives the same result as ``cv2.medianBlur``, several times faster:
    for images with the two windows NSA uses (5 and 7) by :func:`_majority_5_or_7`, other
    sizes by ``cv2.boxFilter``, and volumes by running sums along each axis.
    """
    if mask.ndim == 2 and size in (5, 7) and mask.size:  # (an empty mask: boxFilter's own error below)
        return _majority_5_or_7(np.ascontiguousarray(mask), size, np.empty(mask.shape, np.uint8),
                                np.empty(mask.shape[1] + size - 1, np.uint8))
    if mask.ndim == 2:
        counts = cv2.boxFilter(mask, cv2.CV_16U, (size, size), normalize=False, borderType=cv2.BORDER_REPLICATE)
        return (counts > (size * size) // 2).view(np.uint8)
    r = size // 2
    counts = np.pad(mask, r, mode="edge").astype(np.int32)
    for axis in range(mask.ndim):  # separable box sums: a running sum along each axis
        c = np.cumsum(counts, axis=axis)
        lead = [slice(None)] * mask.ndim
        lead[axis] = slice(size - 1, None)
        trail = [slice(None)] * mask.ndim
        trail[axis] = slice(None, -size)
        window = c[tuple(lead)].copy()
        window[tuple(slice(1, None) if a == axis else slice(None) for a in range(mask.ndim))] -= c[tuple(trail)]
        counts = window
    return (counts > size ** mask.ndim // 2).astype(np.uint8)


def object_mask(image: np.ndarray, pairs, box=None, intensity: tuple[float, float] | None = None) -> np.ndarray:
    """Where ``image`` shows the object rather than its plain background.

    A pixel is object where ``|mean over channels(image) - level| > threshold``
    for every ``(level, threshold)`` pair (0..255 scale: values are read through
    their intensity range, :mod:`nsa_augment.intensity`), then a 7x7 median
    filter removes grain, as in NSA.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), uint8, uint16, int16 or float32
    pairs : sequence of (float, float)
    box : (y0, y1, x0, x1), optional
        Compute only this part: the result equals ``object_mask(image,
        pairs)[y0:y1, x0:x1]`` exactly, from the box grown by the median's reach
        (renderers need the mask around a few patches, not over the image).
    intensity : (lo, hi), optional
        The image's intensity range (default: :func:`nsa_augment.intensity.intensity_range`
        of the whole image, also when only a box is computed).

    Returns
    -------
    ndarray, bool, (H, W), or the box's shape

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((32, 32), 230, np.uint8); img[8:24, 8:24] = 40   # dark object on white
    >>> m = object_mask(img, [(200, 60)])
    >>> bool(m[16, 16]), bool(m[0, 0]), int(m.sum())   # the 7x7 median rounds the 16x16 square's corners
    (True, False, 236)
    """
    image = check_image(image, "image")
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__len__") or len(pairs) == 0:
        raise ValueError(f"pairs must be a non-empty sequence of (level, threshold) pairs, got {pairs!r}")
    pairs = [check_pair(pair, "each of pairs") for pair in pairs]
    if box is not None:
        if not (hasattr(box, "__len__") and len(box) == 4 and all(is_integer(v) for v in box)):
            raise ValueError(f"box must be four integers (y0, y1, x0, x1), got {box!r}")
        y0, y1, x0, x1 = (int(v) for v in box)
        H, W = image.shape[:2]
        if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
            raise ValueError(f"box {tuple(box)} must be a non-empty part of the {H}x{W} image (0 <= y0 < y1 <= H, "
                             "0 <= x0 < x1 <= W)")
        box = (y0, y1, x0, x1)
    if intensity is not None:
        intensity = check_range(intensity, "intensity")
    return spatial_object_mask(as_hwc(image), pairs, box, intensity)


def spatial_object_mask(array: np.ndarray, pairs, box=None, intensity: tuple[float, float] | None = None) -> np.ndarray:
    """:func:`object_mask` of an image (H, W, C) or a volume (D, H, W, C) with channels last (7x7x7 median)."""
    pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    lo, hi = intensity if intensity is not None else intensity_range(array)
    spatial = array.shape[:-1]
    if box is not None:
        # The median sees 3 px around each pixel; beyond the image the full-image filter
        # replicates the border, which a crop that stops at the image border does too.
        r = OBJECT_MEDIAN // 2
        grown = [(max(box[2 * a] - r, 0), min(box[2 * a + 1] + r, n)) for a, n in enumerate(spatial)]
        mask = spatial_object_mask(array[tuple(slice(g0, g1) for g0, g1 in grown)], pairs, intensity=(lo, hi))
        return mask[tuple(slice(box[2 * a] - g0, box[2 * a + 1] - g0) for a, (g0, _) in enumerate(grown))]
    flat = np.ascontiguousarray(array).reshape(-1, spatial[-1], array.shape[-1])  # slices stacked as rows
    rows, cols = flat.shape[:2]
    if flat.dtype == np.uint8:
        channels = flat.shape[-1]
        intervals = _vote_intervals(channels, tuple(pairs[:, 0].tolist()), tuple(pairs[:, 1].tolist()), float(lo),
                                    float(hi - lo))
        votes = _vote_by_channel_sum(flat, *intervals, np.empty(cols, _sum_dtype(channels)),
                                     np.empty((rows, cols), np.uint8))
    else:
        votes = _threshold_channel_mean(flat, pairs[:, 0].copy(), pairs[:, 1].copy(), float(lo), float(hi - lo),
                                        np.empty((rows, cols)), np.ones((rows, cols), np.uint8))
    return binary_median(votes.reshape(spatial), OBJECT_MEDIAN).view(bool)
