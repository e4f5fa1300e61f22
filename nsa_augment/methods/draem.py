"""DRAEM-style anomalies (Zavrtanik, Kristan & Skočaj, ICCV 2021): Perlin-noise regions filled with a texture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numba as nb
import numpy as np

from ..intensity import check_intensity_range, intensity_range, to_unit
from ..poisson import kernels
from ..io import match_channels
from ..validation import as_hwc, check_generator, check_image, check_pair, freeze, is_finite, is_integer
from .perlin import perlin_noise
from .photometric import DRAEM_AUGMENTERS, AugmentStep, apply_draem_augment, draw_draem_augment
from .plan import Config, Plan, check_config, check_plan, resolve_config

#: Perlin noise (scaled by sqrt(2) as DRAEM does) lies in [-1, 1]: a threshold outside it selects nothing or all.
NOISE_RANGE = (-1.0, 1.0)


@dataclass(frozen=True)
class DraemConfig(Config):
    """DRAEM's anomaly settings (its values by default).

    Attributes
    ----------
    scale_exponents : (int, int)
        Lattice cells ``2**k`` per axis, ``k ~ U{lo, ..., hi - 1}``; ``0 <= lo < hi <= 10``.
    threshold : float
        Anomalous where the (rotated) noise exceeds it; strictly inside the noise range (-1, 1).
    rotation : (float, float)
        Noise rotation in degrees, ``U(*rotation)``.
    beta_range : (float, float)
        Opacity of the image over the texture, ``beta ~ U(*beta_range)``, ``0 <= lo <= hi <= 1``.
    augmenters : int
        How many distinct augmenters of :data:`~nsa_augment.methods.photometric.DRAEM_AUGMENTERS`
        change the texture (0..10).
    intensity_range : None, "dtype", "image" or (lo, hi)
        The scale texture and image are mixed in (:mod:`nsa_augment.intensity`); the
        texture is read through its own range and written in the image's.
    """

    scale_exponents: tuple[int, int] = (0, 6)
    threshold: float = 0.5
    rotation: tuple[float, float] = (-90.0, 90.0)
    beta_range: tuple[float, float] = (0.0, 0.8)
    augmenters: int = 3
    intensity_range: str | tuple[float, float] | None = None

    def __post_init__(self):
        check_intensity_range(freeze(self.intensity_range))
        for f in ("scale_exponents", "rotation", "beta_range", "intensity_range"):
            object.__setattr__(self, f, freeze(getattr(self, f)))
        se = self.scale_exponents
        if not (isinstance(se, tuple) and len(se) == 2 and all(is_integer(v) for v in se) and 0 <= se[0] < se[1] <= 10):
            raise ValueError(f"scale_exponents must be integers (lo, hi) with 0 <= lo < hi <= 10, got {se!r}")
        if not (is_finite(self.threshold) and NOISE_RANGE[0] < self.threshold < NOISE_RANGE[1]):
            raise ValueError(f"threshold must lie strictly inside the noise range (-1, 1) (DRAEM: 0.5), got "
                             f"{self.threshold!r}: outside it no pixel (or every pixel) would be anomalous")
        lo, hi = check_pair(self.rotation, "rotation")
        if lo > hi:
            raise ValueError(f"rotation must satisfy lo <= hi (degrees), got {self.rotation!r}")
        b0, b1 = check_pair(self.beta_range, "beta_range")
        if not 0 <= b0 <= b1 <= 1:
            raise ValueError(f"beta_range must satisfy 0 <= lo <= hi <= 1, got {self.beta_range!r}")
        if not (is_integer(self.augmenters) and 0 <= self.augmenters <= len(DRAEM_AUGMENTERS)):
            raise ValueError(f"augmenters must be an integer in 0..{len(DRAEM_AUGMENTERS)}, got {self.augmenters!r}")


@dataclass(frozen=True)
class DraemPlan(Plan):
    """One DRAEM-style anomaly: the noise lattice and its seed, rotation, texture augmentations and opacity."""

    cells: tuple[int, int]
    noise_seed: int
    angle: float
    augment: tuple[AugmentStep, ...]
    beta: float

    method: ClassVar[str] = "draem"
    nested: ClassVar[dict] = {"augment": (AugmentStep, True)}


@nb.njit(cache=True, nogil=True)
def _blend(image, texture, mask, beta, lo, span, out_lo, out_hi, rounding, out):
    """``out = image (1 - m) + (1 - beta) (lo + span texture) m + beta image m``, texture in unit scale.

    ``out`` starts as a copy of ``image`` (exactly unchanged where ``m = 0``);
    integer outputs are rounded half up and clipped to ``[out_lo, out_hi]``.
    """
    H, W, C = image.shape
    for y in range(H):
        for x in range(W):
            if mask[y, x] == 0:
                continue
            for c in range(C):
                v = (1.0 - beta) * (lo + span * texture[y, x, c]) + beta * image[y, x, c]
                if rounding == 1:
                    v = min(max(np.floor(v + 0.5), out_lo), out_hi)
                out[y, x, c] = v
    return out


def plan_draem(image: np.ndarray, config: DraemConfig, rng: np.random.Generator) -> DraemPlan:
    """Draw a DRAEM plan for ``image`` (only its size is used; the texture comes at rendering)."""
    image = check_image(image, "image", min_size=2)
    check_config(config, DraemConfig)
    check_generator(rng)
    intensity_range(image, config.intensity_range)  # e.g. float32 outside [0, 1] without a range: say so now
    lo, hi = config.scale_exponents
    cells = (2 ** int(rng.integers(lo, hi)), 2 ** int(rng.integers(lo, hi)))
    noise_seed = int(rng.integers(2**63))
    angle = float(rng.uniform(*config.rotation))
    augment = draw_draem_augment(rng, config.augmenters)
    beta = float(rng.uniform(*config.beta_range))
    return DraemPlan(image.shape[:2], cells, noise_seed, angle, augment, beta)


def anomaly_mask(plan: DraemPlan, threshold: float) -> np.ndarray:
    """The plan's anomalous region, float32 (H, W) in {0, 1}: rotated Perlin noise above ``threshold``."""
    H, W = plan.shape
    noise = perlin_noise((H, W), plan.cells, np.random.default_rng(plan.noise_seed))
    rot = cv2.getRotationMatrix2D((W / 2, H / 2), plan.angle, 1.0)
    noise = cv2.warpAffine(noise, rot, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return (noise > threshold).astype(np.float32)


def render_draem(image: np.ndarray, source: np.ndarray | None, config: DraemConfig, plan: DraemPlan):
    """Render a DRAEM plan: ``(image, label)``, the label the binary anomalous region.

    ``source`` (any size and dtype; converted to the image's channel layout,
    read through its own intensity range, resized to the image) is the
    texture; None uses the image itself.
    """
    image = check_image(image, "image", min_size=2)
    check_config(config, DraemConfig)
    check_plan(plan, DraemPlan, image)
    img3 = as_hwc(image)
    H, W, C = img3.shape
    source = image if source is None else check_image(source, "source", min_size=2)
    src3 = as_hwc(match_channels(source, image, keep_dtype=True))
    lo, hi = intensity_range(image, config.intensity_range)
    mask = anomaly_mask(plan, config.threshold)
    texture = cv2.resize(to_unit(src3, *intensity_range(src3, config.intensity_range)), (W, H),
                         interpolation=cv2.INTER_LINEAR).reshape(H, W, C)
    texture = apply_draem_augment(texture, plan.augment)
    out_lo, out_hi, rounding = kernels.output_range(image.dtype)
    img3 = np.ascontiguousarray(img3)
    result = _blend(img3, np.ascontiguousarray(texture), mask, plan.beta, lo, hi - lo, out_lo, out_hi, rounding,
                    img3.copy())
    return result.reshape(image.shape), mask


def draem_anomaly(image: np.ndarray, source: np.ndarray | None, rng: np.random.Generator,
                  config: DraemConfig | None = None, **overrides):
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
    config : DraemConfig, optional
    **overrides
        :class:`DraemConfig` fields, validated.

    Returns
    -------
    image, label (float32 (H, W) in {0, 1}), plan (:class:`DraemPlan`)
    """
    config = resolve_config(config, DraemConfig, overrides, "draem_anomaly()")
    plan = plan_draem(image, config, rng)
    return (*render_draem(image, source, config, plan), plan)
