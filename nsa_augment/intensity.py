"""Intensity scales: how each image dtype's values map to the unit range and back.

The peer methods do their photometric work (jitter, texture augmentation, blending) on float32
images in [0, 1]; these two functions are the only place that conversion is defined.
"""

from __future__ import annotations

import numpy as np


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 (0..255) or float32 ([0, 1]) as float32 in [0, 1] (a new array)."""
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def from_unit(unit: np.ndarray, dtype) -> np.ndarray:
    """Float values in [0, 1] back to ``dtype``: uint8 rounded and clipped, float32 clipped."""
    if np.dtype(dtype) == np.uint8:
        return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)
