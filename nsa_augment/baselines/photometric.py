"""Photometric changes for the baselines: CutPaste's colour jitter and DRAEM's source augmentations.

All take and return float32 images in [0, 1] with shape (H, W, C) and draw from
an explicit generator.
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray(img: np.ndarray) -> np.ndarray:
    if img.shape[2] != 3:
        return img.mean(axis=2, keepdims=True)
    return (0.299 * img[..., 0:1] + 0.587 * img[..., 1:2] + 0.114 * img[..., 2:3]).astype(np.float32)


def _hue_shift(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of an RGB image by ``shift`` turns (-0.5..0.5)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float32: H in degrees 0..360
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def color_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.1) -> tuple[np.ndarray, dict]:
    """torchvision-style ``ColorJitter(brightness=s, contrast=s, saturation=s, hue=s)``, in random order.

    Saturation and hue apply to RGB images only.  Returns the image and the drawn factors.
    """
    if strength == 0:
        return img, {}
    ops = ["brightness", "contrast"] + (["saturation", "hue"] if img.shape[2] == 3 else [])
    factors = {}
    out = img
    for name in rng.permutation(ops):
        if name == "hue":
            f = float(rng.uniform(-strength, strength))
            out = _hue_shift(np.clip(out, 0, 1).astype(np.float32), f)
        else:
            f = float(rng.uniform(max(0.0, 1 - strength), 1 + strength))
            if name == "brightness":
                out = out * f
            elif name == "contrast":
                out = out * f + float(_gray(out).mean()) * (1 - f)
            else:
                out = out * f + _gray(out) * (1 - f)
        factors[str(name)] = f
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out, factors


def _gamma(img, rng):
    return np.power(img, rng.uniform(0.5, 2.0)).astype(np.float32)


def _brightness(img, rng):
    return np.clip(img * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30) / 255.0, 0, 1).astype(np.float32)


def _sharpness(img, rng):
    blurred = cv2.GaussianBlur(img, (0, 0), 1.0).reshape(img.shape)
    return np.clip(img + rng.uniform(0.0, 2.0) * (img - blurred), 0, 1).astype(np.float32)


def _hue_saturation(img, rng):
    if img.shape[2] != 3:
        return img
    out = _hue_shift(img, rng.uniform(-50, 50) / 360.0)
    s = 1 + rng.uniform(-50, 50) / 255.0
    return np.clip(out * s + _gray(out) * (1 - s), 0, 1).astype(np.float32)


def _solarize(img, rng):
    t = rng.uniform(32, 128) / 255.0
    return np.where(img >= t, 1.0 - img, img).astype(np.float32)


def _posterize(img, rng):
    bits = int(rng.integers(4, 9))
    levels = 2**bits
    return (np.floor(img * (levels - 1e-6)) / (levels - 1)).astype(np.float32)


def _invert(img, rng):
    return (1.0 - img).astype(np.float32)


def _autocontrast(img, rng):
    lo = img.min(axis=(0, 1), keepdims=True)
    hi = img.max(axis=(0, 1), keepdims=True)
    return ((img - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def _equalize(img, rng):
    u8 = np.rint(img * 255).astype(np.uint8)
    out = np.stack([cv2.equalizeHist(np.ascontiguousarray(u8[..., c])) for c in range(img.shape[2])], axis=2)
    return (out / 255.0).astype(np.float32)


def _rotate(img, rng):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-45, 45), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(img.shape)


#: DRAEM's anomaly-source augmenters (its imgaug list, in numpy/OpenCV).
DRAEM_AUGMENTERS = {
    "gamma_contrast": _gamma,
    "brightness": _brightness,
    "sharpness": _sharpness,
    "hue_saturation": _hue_saturation,
    "solarize": _solarize,
    "posterize": _posterize,
    "invert": _invert,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "rotate": _rotate,
}


def draem_augment(img: np.ndarray, rng: np.random.Generator, count: int = 3) -> tuple[np.ndarray, list[str]]:
    """Apply ``count`` distinct augmenters from :data:`DRAEM_AUGMENTERS`, chosen at random, as DRAEM does."""
    names = list(DRAEM_AUGMENTERS)
    chosen = [names[i] for i in rng.choice(len(names), size=count, replace=False)]
    for name in chosen:
        img = DRAEM_AUGMENTERS[name](img, rng)
    return img, chosen
