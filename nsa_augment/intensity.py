"""Intensity scales: one rule that maps any image's values to the 0..255 scale NSA's settings are written in.

The presets' thresholds (object-mask background levels, the label's ``tol`` and logistic ``(k,
x0)``) are grey levels of 8-bit images, as in the NSA paper.  An image of another bit depth or
range is mapped by its *intensity range* ``(lo, hi)``: a value ``v`` counts as ``(v - lo) * 255 /
(hi - lo)`` levels.  The range comes from the config's ``intensity_range``:

* ``None`` (default): uint8 -> ``(0, 255)`` (the paper's scale, unchanged); float32 -> ``(0, 1)``,
  and values outside [0, 1] are an error that names this setting; uint16 and int16 -> the image's
  own minimum and maximum (12-bit data in 16-bit files, CT numbers: whatever the scanner wrote).
* ``"dtype"``: the dtype's full range (uint16: 0..65535, int16: -32768..32767, float32: [0, 1]).
* ``"image"``: the image's minimum and maximum (a constant image gets ``(v, v + 1)``).
* ``(lo, hi)``: given numbers, e.g. a CT window ``(-1000, 1000)``: the same scale for every image
  of a dataset, which per-image ranges cannot promise.

Only the *interpretation* uses the range: pixels are blended in their own units, and results keep
the input's dtype (integers rounded and clipped to the dtype's limits; float32 clipped to [0, 1]
when that is its range).  An image and its exact rescaling (uint8 ``v`` and uint16 ``257 v`` with
``"dtype"`` or ``"image"``) give the same plan and the same label.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .validation import is_finite

#: Dtypes every method accepts.
DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.float32))
RULES = ("dtype", "image")


def check_intensity_range(value) -> None:
    """``ValueError`` unless ``value`` is None, ``"dtype"``, ``"image"`` or a pair ``lo < hi`` of finite numbers."""
    if value is None or (isinstance(value, str) and value in RULES):
        return
    ok = isinstance(value, tuple) and len(value) == 2 and all(is_finite(v) for v in value) and value[0] < value[1]
    if not ok:
        raise ValueError(f"intensity_range must be None, 'dtype', 'image' or (lo, hi) with lo < hi, got {value!r}")


def dtype_range(dtype) -> tuple[float, float]:
    """The full range of an image dtype (float32: [0, 1])."""
    return _dtype_range(np.dtype(dtype))


@lru_cache(maxsize=16)
def _dtype_range(dtype: np.dtype) -> tuple[float, float]:
    # Cached: every synthesis asks for its images' ranges, and np.iinfo costs a few microseconds a call.
    if dtype == np.float32:
        return 0.0, 1.0
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def intensity_range(image: np.ndarray, rule=None) -> tuple[float, float]:
    """``(lo, hi)`` of ``image`` under ``rule`` (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> ct = np.array([[-1000, 40], [80, 1200]], np.int16)
    >>> intensity_range(ct), intensity_range(ct, (-160, 240)), intensity_range(ct, "dtype")
    ((-1000.0, 1200.0), (-160.0, 240.0), (-32768.0, 32767.0))
    """
    if isinstance(rule, tuple):
        return float(rule[0]), float(rule[1])
    if rule == "image" or (rule is None and image.dtype in (np.uint16, np.int16)):
        if image.size == 0:
            return 0.0, 1.0
        lo, hi = float(image.min()), float(image.max())
        return (lo, hi) if hi > lo else (lo, lo + 1.0)
    if rule is None and image.dtype == np.float32 and image.size and (image.min() < 0.0 or image.max() > 1.0):
        raise ValueError(
            f"float32 images are read as [0, 1] unless told otherwise, got values in [{image.min():g}, "
            f"{image.max():g}]: set intensity_range='image' (each image's min..max) or (lo, hi) (e.g. a CT window)"
        )
    return dtype_range(image.dtype)


def level_scale(lo: float, hi: float) -> float:
    """Factor that turns a difference of values into 8-bit grey levels: ``255 / (hi - lo)``."""
    return 255.0 / (hi - lo)


def to_unit(image: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``(image - lo) / (hi - lo)`` as float32 (a new array); the range defaults to the dtype's."""
    if lo is None:
        lo, hi = dtype_range(image.dtype)
    return ((image.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def from_unit(unit: np.ndarray, dtype, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Unit values back to ``dtype``: ``lo + u (hi - lo)``, integers rounded and clipped to the dtype's limits."""
    dtype = np.dtype(dtype)
    if lo is None:
        lo, hi = dtype_range(dtype)
    values = lo + unit.astype(np.float64) * (hi - lo)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)
