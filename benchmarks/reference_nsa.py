"""A transcription of the NSA reference generator's *work*, for side-by-side timing only.

It performs the steps the authors' reference implementation performs, with the
same library calls (``docs/algorithm.md``; ``../shared/reference/nsa-reference.md``
sections 1-3 and 7): object masks by a channel mean and a 7x7 ``cv2.medianBlur``
over the whole image; one ``cv2.seamlessClone`` on the full image per patch;
the change mask by a whole-image 5x5 median; the intensity label by a
whole-image ``skimage.filters.median`` with a disk of radius 5.  Sampling uses
the same formulas as ours.  It is not used by the package and makes no claim
to reproduce the reference's outputs bit for bit; it exists so that
``bench_synthesis.py`` can time "the reference way" and ours in one run.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import median as sk_median
from skimage.morphology import disk

from nsa_augment.methods.nsa.sampling import pixel_bounds, sample_half_width

_DISK5 = disk(5)


def _object_mask(img, pairs):
    obj = np.ones(img.shape[:2] + (1,), np.uint8)
    for level, thr in pairs:
        obj &= np.uint8(np.abs(img.mean(axis=-1, keepdims=True) - level) > thr)
    obj[..., 0] = cv2.medianBlur(obj[..., 0], 7)
    return obj


def reference_nsa(dst, src, cfg, rng, with_region: bool = False):
    """One example the reference way; RGB uint8 only (as the reference).

    Returns ``(image, label)``, and with ``with_region`` also the blended patches' boxes
    (a list of ``(y0, y1, x0, x1)``), for strength measurements.
    """
    H, W = dst.shape[:2]
    src_obj = dst_obj = None
    if cfg.object_masks is not None:
        src_obj, dst_obj = _object_mask(src, cfg.object_masks), _object_mask(dst, cfg.object_masks)
    mask = np.zeros((H, W, 1), np.uint8)
    boxes = []
    out = dst.copy()
    (rlo, rhi), (clo, chi) = pixel_bounds(H, cfg.width_bounds[0]), pixel_bounds(W, cfg.width_bounds[1])
    flag = cv2.MIXED_CLONE if cfg.gradients == "mixed" else cv2.NORMAL_CLONE
    for i in range(cfg.num_patches):
        if i > 0 and rng.integers(2) == 0:
            continue
        hh = sample_half_width(rng, H, cfg.width_bounds[0], cfg.gamma)
        hw = sample_half_width(rng, W, cfg.width_bounds[1], cfg.gamma)
        for _ in range(cfg.max_attempts):
            cy, cx = rng.integers(rlo, H - rlo), rng.integers(clo, W - clo)
            y0, y1, x0, x1 = max(cy - hh, 0), min(cy + hh, H), max(cx - hw, 0), min(cx + hw, W)
            if src_obj is None or src_obj[y0:y1, x0:x1].mean() > cfg.min_object:
                break
        else:
            continue
        patch = src[y0:y1, x0:x1]
        h, w = patch.shape[:2]
        scale = np.clip(rng.normal(1, 0.5), *cfg.rescale_bounds)
        nh = int(np.clip(scale * h, rlo, rhi))
        nw = int(np.clip(int(nh / h * w), clo, chi))
        nh = int(np.clip(int(nw / w * h), rlo, rhi))
        patch = cv2.resize(patch, (nw, nh))
        pmask = np.ones((nh, nw, 1), np.uint8)
        sobj = cv2.resize(src_obj[y0:y1, x0:x1, 0], (nw, nh))[..., None] if src_obj is not None else None
        for _ in range(cfg.max_attempts):
            if nh + 2 >= H or nw + 2 >= W:
                break
            cy = rng.integers(nh // 2 + 1, H - nh // 2 - 1)
            cx = rng.integers(nw // 2 + 1, W - nw // 2 - 1)
            dy0, dx0 = cy - nh // 2, cx - nw // 2
            dy1, dx1 = dy0 + nh, dx0 + nw
            if sobj is None:
                break
            both = dst_obj[dy0:dy1, dx0:dx1] & sobj
            if sobj.mean() > cfg.min_object and both.sum() / max(sobj.sum(), 1) > cfg.min_overlap:
                break
        else:
            continue
        if sobj is not None:
            pmask &= sobj | dst_obj[dy0:dy1, dx0:dx1]
            solve = 255 * (pmask | ((1 - sobj) & (1 - dst_obj[dy0:dy1, dx0:dx1])))
        else:
            solve = 255 * pmask
        solve[0], solve[-1], solve[:, 0], solve[:, -1] = 0, 0, 0, 0
        if (solve > 0).sum() < 50:
            continue
        center = (dx1 - (dx1 - dx0) // 2, dy0 + (dy1 - dy0) // 2)
        try:
            out = cv2.seamlessClone(patch, out, solve, center, flag)
        except cv2.error:  # very thin masks (e.g. 4 px wide) fail inside OpenCV: the reference skips the patch
            continue
        mask[dy0:dy1, dx0:dx1] = pmask
        boxes.append((dy0, dy1, dx0, dx1))
    diff = np.mean(np.abs(1.0 * mask * dst - 1.0 * mask * out), axis=-1, keepdims=True)
    changed = np.uint8(diff > cfg.tol)
    changed[..., 0] = cv2.medianBlur(changed[..., 0], 5)
    if cfg.label == "binary":
        label = changed[..., 0].astype(np.float32)
    else:
        intensity = sk_median(np.mean(np.abs(changed * dst * 1.0 - changed * out * 1.0), axis=-1), _DISK5)
        k, x0 = cfg.logistic
        label = (changed[..., 0] / (1 + np.exp(-k * (intensity - x0)))).astype(np.float32)
    return (out, label, boxes) if with_region else (out, label)
