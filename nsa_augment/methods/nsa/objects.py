"""Object (foreground) masks from background intensity levels."""

from __future__ import annotations

import cv2
import numba as nb
import numpy as np

from ...intensity import intensity_range
from ...validation import as_hwc

#: Reach of the 7x7 median that removes grain from the thresholded mask.
_MEDIAN = 7


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
        for x in range(W):
            acc = 0.0
            for c in range(C):
                acc += image[y, x, c]
            mean[y, x] = (acc / C - lo) * 255.0 / span
    for p in range(levels.shape[0]):  # pairs outermost keeps the pixel loop vectorisable
        level, threshold = levels[p], thresholds[p]
        for y in range(H):
            for x in range(W):
                out[y, x] &= abs(mean[y, x] - level) > threshold
    return out


def binary_median(mask: np.ndarray, size: int) -> np.ndarray:
    """Median filter of a 0/1 uint8 image with a ``size`` x ``size`` window, replicated borders.

    For binary data the median is 1 exactly when more than half of the window is
    1, so a box sum gives the same result as ``cv2.medianBlur`` several times faster.
    """
    counts = cv2.boxFilter(mask, cv2.CV_16U, (size, size), normalize=False, borderType=cv2.BORDER_REPLICATE)
    return (counts > (size * size) // 2).view(np.uint8)


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
    pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    image = as_hwc(image)
    lo, hi = intensity if intensity is not None else intensity_range(image)
    if box is not None:
        # The median sees 3 px around each pixel; beyond the image the full-image filter
        # replicates the border, which a crop that stops at the image border does too.
        H, W = image.shape[:2]
        r = _MEDIAN // 2
        y0, y1, x0, x1 = box
        gy0, gy1, gx0, gx1 = max(y0 - r, 0), min(y1 + r, H), max(x0 - r, 0), min(x1 + r, W)
        grown = object_mask(image[gy0:gy1, gx0:gx1], pairs, intensity=(lo, hi))
        return grown[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
    H, W = image.shape[:2]
    votes = _threshold_channel_mean(np.ascontiguousarray(image), pairs[:, 0].copy(), pairs[:, 1].copy(), float(lo),
                                    float(hi - lo), np.empty((H, W)), np.ones((H, W), np.uint8))
    return binary_median(votes, _MEDIAN).view(bool)
