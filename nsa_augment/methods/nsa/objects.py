"""Object (foreground) masks from background intensity levels."""

from __future__ import annotations

import cv2
import numba as nb
import numpy as np

from ...validation import as_hwc

#: Reach of the 7x7 median that removes grain from the thresholded mask.
_MEDIAN = 7


@nb.njit(cache=True, nogil=True)
def _threshold_channel_mean(image, levels, thresholds, scale):
    """1 where ``|mean over channels * scale - level| > threshold`` for every pair, else 0.

    The mean is ``sum / C`` in float64, exactly as ``numpy.mean`` computes it.
    """
    H, W, C = image.shape
    flat = image.reshape(H * W, C)
    mean = np.empty(H * W)
    for i in range(H * W):
        acc = 0.0
        for c in range(C):
            acc += flat[i, c]
        mean[i] = acc / C * scale
    out = np.ones(H * W, dtype=np.uint8)
    for p in range(levels.shape[0]):  # pairs outermost keeps the pixel loop vectorisable
        level, threshold = levels[p], thresholds[p]
        for i in range(H * W):
            out[i] &= abs(mean[i] - level) > threshold
    return out.reshape(H, W)


def binary_median(mask: np.ndarray, size: int) -> np.ndarray:
    """Median filter of a 0/1 uint8 image with a ``size`` x ``size`` window, replicated borders.

    For binary data the median is 1 exactly when more than half of the window is
    1, so a box sum gives the same result as ``cv2.medianBlur`` several times faster.
    """
    counts = cv2.boxFilter(mask, cv2.CV_16U, (size, size), normalize=False, borderType=cv2.BORDER_REPLICATE)
    return (counts > (size * size) // 2).view(np.uint8)


def object_mask(image: np.ndarray, pairs, box=None) -> np.ndarray:
    """Where ``image`` shows the object rather than its plain background.

    A pixel is object where ``|mean over channels(image) - level| > threshold``
    for every ``(level, threshold)`` pair (0..255 scale; float32 images in
    [0, 1] are scaled), then a 7x7 median filter removes grain, as in NSA.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), uint8 or float32 in [0, 1]
    pairs : sequence of (float, float)
    box : (y0, y1, x0, x1), optional
        Compute only this part: the result equals ``object_mask(image,
        pairs)[y0:y1, x0:x1]`` exactly, from the box grown by the median's reach
        (renderers need the mask around a few patches, not over the image).

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
    scale = 1.0 if image.dtype == np.uint8 else 255.0
    image = as_hwc(image)
    if box is not None:
        # The median sees 3 px around each pixel; beyond the image the full-image filter
        # replicates the border, which a crop that stops at the image border does too.
        H, W = image.shape[:2]
        r = _MEDIAN // 2
        y0, y1, x0, x1 = box
        gy0, gy1, gx0, gx1 = max(y0 - r, 0), min(y1 + r, H), max(x0 - r, 0), min(x1 + r, W)
        grown = object_mask(image[gy0:gy1, gx0:gx1], pairs)
        return grown[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
    votes = _threshold_channel_mean(np.ascontiguousarray(image), pairs[:, 0].copy(), pairs[:, 1].copy(), scale)
    return binary_median(votes, _MEDIAN).view(bool)
