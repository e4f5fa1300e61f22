"""CutPaste and CutPaste-Scar (Li, Sohn, Yoon & Pfister, CVPR 2021), with localisation labels.

Both cut a patch from the image itself, colour-jitter it and paste it elsewhere (hard paste); the
label is 1 where the patch was pasted.  Each is a validated frozen config, a frozen plan drawn by
``plan_*`` and a pure ``render_*``; ``cutpaste`` / ``cutpaste_scar`` do both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..intensity import check_intensity_range, from_unit, intensity_range, to_unit
from ..validation import as_hwc, check_generator, check_image, check_pair, freeze, is_finite, is_integer
from .photometric import JitterPlan, apply_jitter, draw_jitter
from .plan import Config, Plan, check_config, check_plan, resolve_config

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open


def _check_jitter(jitter) -> None:
    if not (is_finite(jitter) and 0.0 <= jitter <= 1.0):
        raise ValueError(f"jitter must be a number in [0, 1], got {jitter!r}")


@dataclass(frozen=True)
class CutPasteConfig(Config):
    """CutPaste's settings (the paper's values by default).

    Attributes
    ----------
    area_ratio : (float, float)
        The rectangle's area is ``U(*area_ratio)`` of the image; ``0 < lo <= hi <= 1``.
    aspect_ratio : ((float, float), (float, float))
        Height / width drawn from the first or the second range by a fair coin; ``0 < lo <= hi``.
    jitter : float
        ColorJitter strength for brightness, contrast, saturation and hue, in [0, 1] (0 disables).
    intensity_range : None, "dtype", "image" or (lo, hi)
        The scale the jitter works in (:mod:`nsa_augment.intensity`).
    """

    area_ratio: tuple[float, float] = (0.02, 0.15)
    aspect_ratio: tuple[tuple[float, float], tuple[float, float]] = ((0.3, 1.0), (1.0, 3.3))
    jitter: float = 0.1
    intensity_range: str | tuple[float, float] | None = None

    def __post_init__(self):
        check_intensity_range(freeze(self.intensity_range))
        object.__setattr__(self, "intensity_range", freeze(self.intensity_range))
        for f in ("area_ratio", "aspect_ratio"):
            object.__setattr__(self, f, freeze(getattr(self, f)))
        lo, hi = check_pair(self.area_ratio, "area_ratio")
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"area_ratio must satisfy 0 < lo <= hi <= 1 (fractions of the image), got {self.area_ratio!r}")
        if not isinstance(self.aspect_ratio, tuple) or len(self.aspect_ratio) != 2:
            raise ValueError(f"aspect_ratio must be two (lo, hi) ranges, got {self.aspect_ratio!r}")
        for pair in self.aspect_ratio:
            a, b = check_pair(pair, "aspect_ratio range")
            if not 0 < a <= b:
                raise ValueError(f"aspect_ratio ranges must satisfy 0 < lo <= hi, got {self.aspect_ratio!r}")
        _check_jitter(self.jitter)


@dataclass(frozen=True)
class CutPastePlan(Plan):
    """One CutPaste example: the rectangle cut, where it goes, and the jitter drawn for it."""

    src_box: Box
    dst_box: Box
    jitter: JitterPlan = JitterPlan()

    method: ClassVar[str] = "cutpaste"
    nested: ClassVar[dict] = {"jitter": (JitterPlan, False)}


def plan_cutpaste(image: np.ndarray, config: CutPasteConfig, rng: np.random.Generator) -> CutPastePlan:
    """Draw a CutPaste plan for ``image`` (only its size is used)."""
    H, W = _check(image, config, CutPasteConfig, rng)
    area = rng.uniform(*config.area_ratio) * H * W
    aspect = rng.uniform(*config.aspect_ratio[int(rng.integers(2))])
    h = int(np.clip(round(math.sqrt(area * aspect)), 1, H))
    w = int(np.clip(round(math.sqrt(area / aspect)), 1, W))
    sy, sx = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    dy, dx = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    return CutPastePlan((H, W), (sy, sy + h, sx, sx + w), (dy, dy + h, dx, dx + w), draw_jitter(rng, config.jitter))


def render_cutpaste(image: np.ndarray, config: CutPasteConfig, plan: CutPastePlan) -> tuple[np.ndarray, np.ndarray]:
    """Paste the plan's jittered rectangle: ``(image, label)``, label 1 on the pasted rectangle."""
    image = check_image(image, "image", min_size=2)
    check_config(config, CutPasteConfig)
    check_plan(plan, CutPastePlan, image)
    lo, hi = intensity_range(image, config.intensity_range)
    img3 = as_hwc(image)
    sy0, sy1, sx0, sx1 = plan.src_box
    dy0, dy1, dx0, dx1 = plan.dst_box
    patch = apply_jitter(to_unit(img3[sy0:sy1, sx0:sx1], lo, hi), plan.jitter)
    out = np.array(img3, order="C", copy=True)
    out[dy0:dy1, dx0:dx1] = from_unit(patch, image.dtype, lo, hi)
    label = np.zeros(plan.shape, np.float32)
    label[dy0:dy1, dx0:dx1] = 1.0
    return out.reshape(image.shape), label


def cutpaste(image: np.ndarray, rng: np.random.Generator, config: CutPasteConfig | None = None, **overrides):
    """CutPaste: a jittered rectangle of the image pasted at another place.

    The rectangle's area is ``U(*area_ratio)`` of the image, its aspect ratio
    (height / width) ``U(*aspect_ratio[0])`` or ``U(*aspect_ratio[1])`` by a fair coin;
    source and destination top-left corners are uniform over valid positions.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), uint8 or float32 in [0, 1], at least 2x2
    rng : numpy.random.Generator
    config : CutPasteConfig, optional
    **overrides
        :class:`CutPasteConfig` fields (``area_ratio``, ``aspect_ratio``, ``jitter``), validated.

    Returns
    -------
    image, label (float32 (H, W), 1 on the pasted rectangle), plan (:class:`CutPastePlan`)

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> out, label, plan = cutpaste(img, np.random.default_rng(1))
    >>> out.shape, float(label.max()), plan.shape
    ((64, 64, 3), 1.0, (64, 64))
    """
    config = resolve_config(config, CutPasteConfig, overrides, "cutpaste()")
    plan = plan_cutpaste(image, config, rng)
    return (*render_cutpaste(image, config, plan), plan)


@dataclass(frozen=True)
class ScarConfig(Config):
    """CutPaste-Scar's settings (the paper's values by default).

    Attributes
    ----------
    width, height : (int, int)
        Scar width and height in pixels, uniform integers within the bounds (``1 <= lo <= hi``), clipped to the image.
    rotation : (float, float)
        Rotation in degrees, ``U(*rotation)``.
    jitter : float
        ColorJitter strength in [0, 1].
    intensity_range : None, "dtype", "image" or (lo, hi)
        The scale the jitter works in (:mod:`nsa_augment.intensity`).
    """

    width: tuple[int, int] = (2, 16)
    height: tuple[int, int] = (10, 25)
    rotation: tuple[float, float] = (-45.0, 45.0)
    jitter: float = 0.1
    intensity_range: str | tuple[float, float] | None = None

    def __post_init__(self):
        check_intensity_range(freeze(self.intensity_range))
        object.__setattr__(self, "intensity_range", freeze(self.intensity_range))
        for f in ("width", "height", "rotation"):
            object.__setattr__(self, f, freeze(getattr(self, f)))
        for f in ("width", "height"):
            value = getattr(self, f)
            if not (isinstance(value, tuple) and len(value) == 2 and all(is_integer(v) for v in value)
                    and 1 <= value[0] <= value[1]):
                raise ValueError(f"{f} must be integers (lo, hi) with 1 <= lo <= hi, got {value!r}")
        lo, hi = check_pair(self.rotation, "rotation")
        if lo > hi:
            raise ValueError(f"rotation must satisfy lo <= hi (degrees), got {self.rotation!r}")
        _check_jitter(self.jitter)


@dataclass(frozen=True)
class ScarPlan(Plan):
    """One scar: the thin rectangle cut, its rotation, the box its rotated footprint lands in, and the jitter."""

    src_box: Box
    angle: float
    dst_box: Box
    jitter: JitterPlan = JitterPlan()

    method: ClassVar[str] = "cutpaste-scar"
    nested: ClassVar[dict] = {"jitter": (JitterPlan, False)}


def plan_scar(image: np.ndarray, config: ScarConfig, rng: np.random.Generator) -> ScarPlan:
    """Draw a CutPaste-Scar plan for ``image`` (only its size is used)."""
    H, W = _check(image, config, ScarConfig, rng)
    w = int(min(rng.integers(config.width[0], config.width[1] + 1), W))
    h = int(min(rng.integers(config.height[0], config.height[1] + 1), H))
    angle = float(rng.uniform(*config.rotation))
    sy, sx = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    jitter = draw_jitter(rng, config.jitter)
    ch, cw = _rotated_size(h, w, angle, (H, W))
    dy, dx = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    return ScarPlan((H, W), (sy, sy + h, sx, sx + w), angle, (dy, dy + ch, dx, dx + cw), jitter)


def _rotated_size(h: int, w: int, angle: float, shape) -> tuple[int, int]:
    """Size of the canvas that holds an ``h x w`` rectangle rotated by ``angle`` degrees, within the image."""
    rad = math.radians(angle)
    cw = int(math.ceil(abs(w * math.cos(rad)) + abs(h * math.sin(rad))))
    ch = int(math.ceil(abs(w * math.sin(rad)) + abs(h * math.cos(rad))))
    return min(max(ch, 1), shape[0]), min(max(cw, 1), shape[1])


def render_scar(image: np.ndarray, config: ScarConfig, plan: ScarPlan) -> tuple[np.ndarray, np.ndarray]:
    """Paste the plan's rotated jittered scar: ``(image, label)``, label on its footprint (pixels more than half covered)."""
    image = check_image(image, "image", min_size=2)
    check_config(config, ScarConfig)
    check_plan(plan, ScarPlan, image)
    lo, hi = intensity_range(image, config.intensity_range)
    img3 = as_hwc(image)
    C = img3.shape[2]
    sy0, sy1, sx0, sx1 = plan.src_box
    dy0, dy1, dx0, dx1 = plan.dst_box
    h, w, ch, cw = sy1 - sy0, sx1 - sx0, dy1 - dy0, dx1 - dx0
    patch = apply_jitter(to_unit(img3[sy0:sy1, sx0:sx1], lo, hi), plan.jitter)
    # Rotate patch and its footprint about the patch centre onto the canvas that holds the rotated rectangle.
    m = cv2.getRotationMatrix2D((w / 2, h / 2), plan.angle, 1.0)
    m[:, 2] += ((cw - w) / 2, (ch - h) / 2)
    rotated = cv2.warpAffine(patch, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(ch, cw, C)
    footprint = cv2.warpAffine(np.ones((h, w), np.float32), m, (cw, ch), flags=cv2.INTER_LINEAR) > 0.5
    out = np.array(img3, order="C", copy=True)
    region = out[dy0:dy1, dx0:dx1]
    region[footprint] = from_unit(rotated, image.dtype, lo, hi)[footprint]
    label = np.zeros(plan.shape, np.float32)
    label[dy0:dy1, dx0:dx1] = footprint
    return out.reshape(image.shape), label


def cutpaste_scar(image: np.ndarray, rng: np.random.Generator, config: ScarConfig | None = None, **overrides):
    """CutPaste-Scar: a thin jittered rectangle (width 2-16, height 10-25 px), rotated, pasted elsewhere.

    Sizes are clipped to the image.  ``**overrides`` are :class:`ScarConfig`
    fields.  Returns ``image, label, plan`` (label: the rotated rectangle's footprint).
    """
    config = resolve_config(config, ScarConfig, overrides, "cutpaste_scar()")
    plan = plan_scar(image, config, rng)
    return (*render_scar(image, config, plan), plan)



def _check(image, config, config_type, rng) -> tuple[int, int]:
    image = check_image(image, "image", min_size=2)
    check_config(config, config_type)
    check_generator(rng)
    intensity_range(image, config.intensity_range)  # e.g. float32 outside [0, 1] without a range: say so now
    return image.shape[:2]
