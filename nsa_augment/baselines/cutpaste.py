"""CutPaste and CutPaste-Scar (Li, Sohn, Yoon & Pfister, CVPR 2021), with localisation labels.

Both cut a patch from the image itself, colour-jitter it and paste it elsewhere
(hard paste).  The label is 1 where the patch was pasted (binary).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..sampling import PatchGeometry
from ..synthesis import SynthesisInfo
from ..validation import as_hwc, check_generator, check_image
from .photometric import color_jitter


def _to_unit(img3: np.ndarray) -> np.ndarray:
    return img3.astype(np.float32) / 255.0 if img3.dtype == np.uint8 else img3.astype(np.float32)


def _from_unit(unit: np.ndarray, dtype) -> np.ndarray:
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8) if dtype == np.uint8 else unit.astype(np.float32)


def cutpaste(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    area_ratio: tuple[float, float] = (0.02, 0.15),
    aspect_ratio: tuple[tuple[float, float], tuple[float, float]] = ((0.3, 1.0), (1.0, 3.3)),
    jitter: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, SynthesisInfo]:
    """CutPaste: a jittered rectangle of the image pasted at another place.

    The rectangle's area is ``U(*area_ratio)`` of the image, its aspect ratio
    (height / width) ``U(*aspect_ratio[0])`` or ``U(*aspect_ratio[1])`` by a fair coin;
    source and destination top-left corners are uniform over valid positions.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), uint8 or float32 in [0, 1], at least 2x2
    rng : numpy.random.Generator
    area_ratio, aspect_ratio : see above (the CutPaste paper's values by default)
    jitter : float
        ColorJitter strength for brightness, contrast, saturation and hue (0 disables).

    Returns
    -------
    image, label (float32 (H, W), 1 on the pasted rectangle), info
    """
    image = check_image(image, "image", unit_range=True, min_size=2)
    rng = check_generator(rng)
    img3 = as_hwc(image)
    H, W = img3.shape[:2]
    area = rng.uniform(*area_ratio) * H * W
    aspect = rng.uniform(*aspect_ratio[int(rng.integers(2))])
    h = int(np.clip(round(math.sqrt(area * aspect)), 1, H))
    w = int(np.clip(round(math.sqrt(area / aspect)), 1, W))
    sy, sx = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    dy, dx = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    patch, factors = color_jitter(_to_unit(img3[sy : sy + h, sx : sx + w]), rng, jitter)
    out = np.array(img3, order="C", copy=True)
    out[dy : dy + h, dx : dx + w] = _from_unit(patch, image.dtype)
    label = np.zeros((H, W), np.float32)
    label[dy : dy + h, dx : dx + w] = 1.0
    info = SynthesisInfo(
        patches=[PatchGeometry(src_box=(sy, sy + h, sx, sx + w), dst_box=(dy, dy + h, dx, dx + w), scale=1.0, attempts=1)],
        num_attempted=1, details={"method": "cutpaste", "jitter": factors, "aspect": float(aspect)},
    )
    return out.reshape(image.shape), label, info


def cutpaste_scar(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    width: tuple[int, int] = (2, 16),
    height: tuple[int, int] = (10, 25),
    rotation: tuple[float, float] = (-45.0, 45.0),
    jitter: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, SynthesisInfo]:
    """CutPaste-Scar: a thin jittered rectangle (width 2-16, height 10-25 px), rotated, pasted elsewhere.

    Sizes are clipped to the image.  The label is the rotated rectangle's
    footprint (pixels more than half covered).

    Returns
    -------
    image, label (float32 (H, W)), info (``details["angle"]`` in degrees)
    """
    image = check_image(image, "image", unit_range=True, min_size=2)
    rng = check_generator(rng)
    img3 = as_hwc(image)
    H, W, C = img3.shape
    w = int(min(rng.integers(width[0], width[1] + 1), W))
    h = int(min(rng.integers(height[0], height[1] + 1), H))
    angle = float(rng.uniform(*rotation))
    sy, sx = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    patch, factors = color_jitter(_to_unit(img3[sy : sy + h, sx : sx + w]), rng, jitter)
    # Rotate patch and its footprint about the patch centre onto a canvas that holds the rotated rectangle.
    rad = math.radians(angle)
    cw = int(math.ceil(abs(w * math.cos(rad)) + abs(h * math.sin(rad))))
    ch = int(math.ceil(abs(w * math.sin(rad)) + abs(h * math.cos(rad))))
    cw, ch = min(max(cw, 1), W), min(max(ch, 1), H)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += ((cw - w) / 2, (ch - h) / 2)
    rotated = cv2.warpAffine(patch, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(ch, cw, C)
    footprint = cv2.warpAffine(np.ones((h, w), np.float32), m, (cw, ch), flags=cv2.INTER_LINEAR) > 0.5
    dy, dx = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    out = np.array(img3, order="C", copy=True)
    region = out[dy : dy + ch, dx : dx + cw]
    region[footprint] = _from_unit(rotated, image.dtype)[footprint]
    label = np.zeros((H, W), np.float32)
    label[dy : dy + ch, dx : dx + cw] = footprint
    info = SynthesisInfo(
        patches=[PatchGeometry(src_box=(sy, sy + h, sx, sx + w), dst_box=(dy, dy + ch, dx, dx + cw), scale=1.0, attempts=1, region=footprint)],
        num_attempted=1, details={"method": "cutpaste-scar", "angle": angle, "jitter": factors},
    )
    return out.reshape(image.shape), label, info
