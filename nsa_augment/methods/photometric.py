"""Photometric changes for the peer methods: CutPaste's colour jitter and DRAEM's source augmentations.

Each change is split in two, as the methods are: ``draw_*`` takes an explicit generator and returns
a small frozen record of the drawn numbers; ``apply_*`` applies such a record, deterministically.
Images are float32 in [0, 1] with shape (H, W, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class JitterPlan:
    """torchvision-style ColorJitter draws: the order the operations run in and each one's factor.

    ``hue`` is a shift in turns (-0.5..0.5); the others multiply.  Saturation and
    hue are drawn always and applied to 3-channel images only, so one plan fits
    any channel count.
    """

    order: tuple[str, ...] = ()
    factors: tuple[float, ...] = ()


def draw_jitter(rng: np.random.Generator, strength: float) -> JitterPlan:
    """``ColorJitter(brightness=s, contrast=s, saturation=s, hue=s)``'s random order and factors."""
    if strength == 0:
        return JitterPlan()
    order = tuple(str(JITTER_OPS[i]) for i in rng.permutation(len(JITTER_OPS)))
    factors = tuple(
        float(rng.uniform(-strength, strength)) if name == "hue" else float(rng.uniform(max(0.0, 1 - strength), 1 + strength))
        for name in order
    )
    return JitterPlan(order, factors)


def apply_jitter(img: np.ndarray, plan: JitterPlan) -> np.ndarray:
    """Apply a :class:`JitterPlan` to a float32 [0, 1] (H, W, C) image."""
    out = img
    rgb = img.shape[2] == 3
    for name, f in zip(plan.order, plan.factors):
        if name in ("saturation", "hue") and not rgb:
            continue
        if name == "hue":
            out = _hue_shift(np.clip(out, 0, 1).astype(np.float32), f)
        elif name == "brightness":
            out = out * f
        elif name == "contrast":
            out = out * f + float(_gray(out).mean()) * (1 - f)
        else:
            out = out * f + _gray(out) * (1 - f)
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out


def _gray(img: np.ndarray) -> np.ndarray:
    if img.shape[2] != 3:
        return img.mean(axis=2, keepdims=True)
    return (0.299 * img[..., 0:1] + 0.587 * img[..., 1:2] + 0.114 * img[..., 2:3]).astype(np.float32)


def _hue_shift(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of an RGB image by ``shift`` turns (-0.5..0.5)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float32: H in degrees 0..360
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# --- DRAEM's anomaly-source augmenters (its imgaug list, in NumPy/OpenCV): draw and apply -----------


def _gamma(img, p):
    return np.power(img, p[0]).astype(np.float32)


def _brightness(img, p):
    return np.clip(img * p[0] + p[1], 0, 1).astype(np.float32)


def _sharpness(img, p):
    blurred = cv2.GaussianBlur(img, (0, 0), 1.0).reshape(img.shape)
    return np.clip(img + p[0] * (img - blurred), 0, 1).astype(np.float32)


def _hue_saturation(img, p):
    if img.shape[2] != 3:
        return img
    out = _hue_shift(img, p[0])
    return np.clip(out * p[1] + _gray(out) * (1 - p[1]), 0, 1).astype(np.float32)


def _solarize(img, p):
    return np.where(img >= p[0], 1.0 - img, img).astype(np.float32)


def _posterize(img, p):
    levels = 2 ** int(p[0])
    return (np.floor(img * (levels - 1e-6)) / (levels - 1)).astype(np.float32)


def _invert(img, p):
    return (1.0 - img).astype(np.float32)


def _autocontrast(img, p):
    lo = img.min(axis=(0, 1), keepdims=True)
    hi = img.max(axis=(0, 1), keepdims=True)
    return ((img - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def _equalize(img, p):
    u8 = np.rint(img * 255).astype(np.uint8)
    out = np.stack([cv2.equalizeHist(np.ascontiguousarray(u8[..., c])) for c in range(img.shape[2])], axis=2)
    return (out / 255.0).astype(np.float32)


def _rotate(img, p):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), p[0], 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(img.shape)


#: name -> (draw(rng) -> parameters, apply(img, parameters)).
DRAEM_AUGMENTERS = {
    "gamma_contrast": (lambda rng: (float(rng.uniform(0.5, 2.0)),), _gamma),
    "brightness": (lambda rng: (float(rng.uniform(0.8, 1.2)), float(rng.uniform(-30, 30)) / 255.0), _brightness),
    "sharpness": (lambda rng: (float(rng.uniform(0.0, 2.0)),), _sharpness),
    "hue_saturation": (lambda rng: (float(rng.uniform(-50, 50)) / 360.0, 1 + float(rng.uniform(-50, 50)) / 255.0),
                       _hue_saturation),
    "solarize": (lambda rng: (float(rng.uniform(32, 128)) / 255.0,), _solarize),
    "posterize": (lambda rng: (int(rng.integers(4, 9)),), _posterize),
    "invert": (lambda rng: (), _invert),
    "autocontrast": (lambda rng: (), _autocontrast),
    "equalize": (lambda rng: (), _equalize),
    "rotate": (lambda rng: (float(rng.uniform(-45, 45)),), _rotate),
}


@dataclass(frozen=True)
class AugmentStep:
    """One drawn DRAEM augmentation: its name and parameters."""

    name: str
    params: tuple[float, ...] = ()


def draw_draem_augment(rng: np.random.Generator, count: int) -> tuple[AugmentStep, ...]:
    """``count`` distinct augmenters from :data:`DRAEM_AUGMENTERS`, chosen at random as DRAEM does, with their draws."""
    names = list(DRAEM_AUGMENTERS)
    chosen = [names[i] for i in rng.choice(len(names), size=count, replace=False)]
    return tuple(AugmentStep(name, DRAEM_AUGMENTERS[name][0](rng)) for name in chosen)


def apply_draem_augment(img: np.ndarray, steps: tuple[AugmentStep, ...]) -> np.ndarray:
    """Apply drawn :class:`AugmentStep` records in order."""
    for step in steps:
        img = DRAEM_AUGMENTERS[step.name][1](img, step.params)
    return img
