"""Argument checks shared by the public functions.

Every public entry point validates its inputs here *before* anything reaches a
Numba kernel, so that bad input gives a ``TypeError``/``ValueError`` naming the
argument and what was expected, instead of a crash or a silently wrong result.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: Image dtypes accepted everywhere (how their values are read: :mod:`nsa_augment.intensity`).
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.float32))


def check_image(image, name: str, *, min_size: int = 1) -> np.ndarray:
    """Check an image array and return it as an ``ndarray`` (never a copy).

    Parameters
    ----------
    image : array_like
        Candidate image, shape (H, W) or (H, W, C), dtype uint8, uint16, int16 or float32.
    name : str
        Argument name used in error messages.
    min_size : int
        Minimum height and width.

    Returns
    -------
    numpy.ndarray
        The same data (no copy is made).
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype not in IMAGE_DTYPES:
        raise TypeError(f"{name} must have dtype uint8, uint16, int16 or float32, got {image.dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got shape {image.shape}")
    if image.ndim == 3 and image.shape[2] < 1:
        raise ValueError(f"{name} must have at least one channel, got shape {image.shape}")
    if image.shape[0] < min_size or image.shape[1] < min_size:
        raise ValueError(
            f"{name} must be at least {min_size}x{min_size} pixels, got {image.shape[0]}x{image.shape[1]}"
        )
    if image.dtype == np.float32 and not np.isfinite(image).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return image


def as_hwc(image: np.ndarray) -> np.ndarray:
    """View an (H, W) or (H, W, C) image as (H, W, C) without copying."""
    return image[:, :, None] if image.ndim == 2 else image


def check_mask(mask, name: str, shape: tuple[int, int]) -> np.ndarray:
    """Check a 2-D mask of the given shape and return it as a boolean array.

    Accepts bool or any integer dtype (nonzero = set) and float masks holding only
    0 and 1.
    """
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(mask).__name__}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {mask.shape}")
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {mask.shape}")
    if mask.dtype == np.bool_:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask != 0
    if np.issubdtype(mask.dtype, np.floating):
        if not np.isin(mask, (0.0, 1.0)).all():
            raise ValueError(f"a floating-point {name} must contain only 0 and 1")
        return mask != 0
    raise TypeError(f"{name} must be boolean, integer or 0/1 floating point, got {mask.dtype}")


def check_generator(rng) -> np.random.Generator:
    """Return ``rng`` if it is a ``numpy.random.Generator``; reject anything else.

    Global RNG state is never used: an integer seed is *not* silently accepted
    here so that callers decide explicitly (``np.random.default_rng(seed)``).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


# --- checks for the fields of frozen configs (every method's config validates with these) -----------


def is_integer(v) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python, never a count here)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_finite(v) -> bool:
    """A finite real number that is not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_pair(value, name: str) -> tuple[float, float]:
    """``(a, b)`` of finite numbers, as floats; ``ValueError`` naming ``name`` otherwise."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    if not (is_finite(a) and is_finite(b)):
        raise ValueError(f"{name} must be a pair of finite numbers, got {value!r}")
    return float(a), float(b)


def check_range(value, name: str) -> tuple[float, float]:
    """``(lo, hi)`` of finite numbers with ``lo < hi``, as floats; ``ValueError`` naming ``name`` otherwise."""
    lo, hi = check_pair(value, name)
    if not lo < hi:
        raise ValueError(f"{name} must be a range (lo, hi) with lo < hi, got {(lo, hi)}")
    return lo, hi


def check_choice(value, options, name: str) -> None:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")


def freeze(value):
    """Lists (e.g. from JSON/YAML) as nested tuples, so that frozen configs hold hashable values."""
    return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def check_volume(volume, name: str, *, min_size: int = 1) -> np.ndarray:
    """Check a volume, shape (D, H, W) or (D, H, W, C), dtype as :data:`IMAGE_DTYPES`; return it (no copy).

    A volume is always passed to functions made for volumes, so its axes are
    never guessed: 3 axes are (D, H, W), 4 are (D, H, W, C).
    """
    if not isinstance(volume, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(volume).__name__}")
    if volume.dtype not in IMAGE_DTYPES:
        raise TypeError(f"{name} must have dtype uint8, uint16, int16 or float32, got {volume.dtype}")
    if volume.ndim not in (3, 4):
        raise ValueError(f"{name} must be a volume of shape (D, H, W) or (D, H, W, C), got shape {volume.shape}"
                         + (": for a 2-D image use the 2-D functions" if volume.ndim == 2 else ""))
    if volume.ndim == 4 and volume.shape[3] < 1:
        raise ValueError(f"{name} must have at least one channel, got shape {volume.shape}")
    if min(volume.shape[:3]) < min_size:
        raise ValueError(f"{name} must be at least {min_size} voxels along each axis, got {volume.shape[:3]}")
    if volume.dtype == np.float32 and not np.isfinite(volume).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return volume


def check_same_kind(source: np.ndarray, destination: np.ndarray) -> None:
    """A source that can be blended into ``destination``: the same dtype and, channels last, as many channels."""
    if source.dtype != destination.dtype:
        raise TypeError(f"source dtype {source.dtype} must match destination dtype {destination.dtype}")
    if source.shape[-1] != destination.shape[-1]:
        raise channel_mismatch(source.shape[-1], destination.shape[-1])


def channel_mismatch(source_channels: int, destination_channels: int) -> ValueError:
    """The error for a source whose channel count differs from the destination's (names the fix)."""
    n = source_channels
    return ValueError(f"source has {n} channel{'' if n == 1 else 's'} but destination has {destination_channels}: "
                      "give both the same channels (e.g. cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB) for a grey one)")


def as_dhwc(volume: np.ndarray) -> np.ndarray:
    """View a (D, H, W) or (D, H, W, C) volume as (D, H, W, C) without copying."""
    return volume[..., None] if volume.ndim == 3 else volume
