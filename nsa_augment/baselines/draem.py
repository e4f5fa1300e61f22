"""DRAEM-style anomalies (Zavrtanik, Kristan & Skočaj, ICCV 2021): Perlin-noise regions filled with a texture."""

from __future__ import annotations

import cv2
import numba as nb
import numpy as np

from ..image_files import match_channels
from ..synthesis import SynthesisInfo
from ..validation import as_hwc, check_generator, check_image
from .cutpaste import _to_unit
from .perlin import perlin_noise
from .photometric import draem_augment


@nb.njit(cache=True, nogil=True)
def _blend(image, texture, mask, beta, is_uint8):
    """``image (1 - m) + (1 - beta) texture m + beta image m``; texture in [0, 1], image uint8 or [0, 1]."""
    H, W, C = image.shape
    out = image.copy()  # exactly unchanged where m = 0
    scale = 255.0 if is_uint8 else 1.0
    for y in range(H):
        for x in range(W):
            if mask[y, x] == 0:
                continue
            for c in range(C):
                v = (1.0 - beta) * texture[y, x, c] * scale + beta * image[y, x, c]
                if is_uint8:
                    out[y, x, c] = min(max(np.floor(v + 0.5), 0.0), 255.0)
                else:
                    out[y, x, c] = v
    return out


def draem_anomaly(
    image: np.ndarray,
    source: np.ndarray | None,
    rng: np.random.Generator,
    *,
    scale_exponents: tuple[int, int] = (0, 6),
    threshold: float = 0.5,
    rotation: tuple[float, float] = (-90.0, 90.0),
    beta_range: tuple[float, float] = (0.0, 0.8),
    augmenters: int = 3,
) -> tuple[np.ndarray, np.ndarray, SynthesisInfo]:
    """A DRAEM anomaly: where rotated Perlin noise exceeds ``threshold``, blend in an augmented texture.

    Following DRAEM: lattice cells ``2**k`` per axis with ``k ~ U{scale_exponents}``
    (upper bound exclusive), noise rotated by ``U(*rotation)`` degrees, mask
    ``noise > threshold``; the anomaly source (``source``, resized to the image,
    e.g. a texture image; the image itself when None) gets ``augmenters`` random
    photometric/geometric augmentations; then
    ``out = image (1 - m) + (1 - beta) source m + beta image m`` with opacity
    ``beta ~ U(*beta_range)``.  The label is the binary mask ``m``.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), uint8 or float32 in [0, 1], at least 2x2
    source : ndarray or None
        Any size; converted to the image's channel layout and dtype.
    rng : numpy.random.Generator

    Returns
    -------
    image, label (float32 (H, W) in {0, 1}), info (``details``: scales, angle, beta, augmenters)
    """
    image = check_image(image, "image", unit_range=True, min_size=2)
    rng = check_generator(rng)
    img3 = as_hwc(image)
    H, W, C = img3.shape
    if source is None:
        source = image
    source = check_image(source, "source", unit_range=True, min_size=2)
    src3 = as_hwc(match_channels(source, image))
    lo, hi = scale_exponents
    cells = (2 ** int(rng.integers(lo, hi)), 2 ** int(rng.integers(lo, hi)))
    noise = perlin_noise((H, W), cells, rng)
    angle = float(rng.uniform(*rotation))
    rot = cv2.getRotationMatrix2D((W / 2, H / 2), angle, 1.0)
    noise = cv2.warpAffine(noise, rot, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = (noise > threshold).astype(np.float32)
    texture = cv2.resize(_to_unit(src3), (W, H), interpolation=cv2.INTER_LINEAR).reshape(H, W, C)
    texture, applied = draem_augment(texture, rng, augmenters)
    beta = float(rng.uniform(*beta_range))
    result = _blend(np.ascontiguousarray(img3), np.ascontiguousarray(texture), mask, beta, image.dtype == np.uint8)
    info = SynthesisInfo(num_attempted=1, factor=beta, details={
        "method": "draem", "cells": cells, "angle": angle, "beta": beta, "augmenters": applied,
        "anomalous_fraction": float(mask.mean()),
    })
    return result.reshape(image.shape), mask, info
