"""Object (foreground) masks from background intensity levels."""

from __future__ import annotations

import cv2
import numba as nb
import numpy as np

from .validation import as_hwc


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


def object_mask(image: np.ndarray, pairs) -> np.ndarray:
    """Where ``image`` shows the object rather than its plain background.

    A pixel is object where ``|mean over channels(image) - level| > threshold``
    for every ``(level, threshold)`` pair (0..255 scale; float32 images in
    [0, 1] are scaled), then a 7x7 median filter removes grain, as in NSA.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), uint8 or float32 in [0, 1]
    pairs : sequence of (float, float)

    Returns
    -------
    ndarray, bool, (H, W)

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
    votes = _threshold_channel_mean(np.ascontiguousarray(as_hwc(image)), pairs[:, 0].copy(), pairs[:, 1].copy(), scale)
    return binary_median(votes, 7).view(bool)
