"""Cutting, resizing and blending one patch: the pixel work behind a :class:`PatchGeometry`."""

from __future__ import annotations

import cv2
import numpy as np

from .poisson.blend import blend_inplace
from .sampling import Box


def _affine(src_box: Box, size: tuple[int, int], margin: int) -> np.ndarray:
    """Inverse map from output pixels (with ``margin``) to source coordinates.

    Pixel centres are aligned as in ``cv2.resize``: output pixel ``i`` samples
    source coordinate ``y0 + (i + 0.5) * sh - 0.5`` with ``sh = box_h / out_h``.
    """
    y0, y1, x0, x1 = src_box
    h, w = size
    sy, sx = (y1 - y0) / h, (x1 - x0) / w
    return np.array(
        [[sx, 0.0, x0 + 0.5 * sx - 0.5 - sx * margin], [0.0, sy, y0 + 0.5 * sy - 0.5 - sy * margin]], dtype=np.float64
    )


def extract_patch(source: np.ndarray, src_box: Box, size: tuple[int, int], margin: int = 1) -> np.ndarray:
    """Cut ``src_box`` from ``source`` and resize it (bilinear) to ``size``, with a margin.

    Parameters
    ----------
    source : ndarray, (H, W, C), uint8 or float32
    src_box : (y0, y1, x0, x1)
    size : (h, w)
        Output size without the margin.
    margin : int
        Extra pixels on each side, sampled from around the box (edge-replicated
        beyond the source image), so that the Poisson guidance has source
        gradients across the patch boundary as in ``cv2.seamlessClone``.

    Returns
    -------
    ndarray, (h + 2 margin, w + 2 margin, C), same dtype
    """
    h, w = size
    y0, y1, x0, x1 = src_box
    if (y1 - y0, x1 - x0) == (h, w):
        # No rescale: an exact crop (bilinear at integer positions is exact anyway).
        return _crop_replicate(source, (y0 - margin, y1 + margin, x0 - margin, x1 + margin))
    out = cv2.warpAffine(
        source, _affine(src_box, size, margin), (w + 2 * margin, h + 2 * margin),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(h + 2 * margin, w + 2 * margin, source.shape[2])


def extract_mask(mask: np.ndarray, src_box: Box, size: tuple[int, int]) -> np.ndarray:
    """Cut ``src_box`` from a boolean mask and resize it to ``size`` (nearest neighbour)."""
    y0, y1, x0, x1 = src_box
    if (y1 - y0, x1 - x0) == tuple(size):
        return mask[y0:y1, x0:x1]
    h, w = size
    out = cv2.warpAffine(
        mask.view(np.uint8), _affine(src_box, size, 0), (w, h),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
    )
    return out.astype(bool)


def _crop_replicate(image: np.ndarray, box: Box) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` where the box may extend past the image (edges replicated)."""
    H, W = image.shape[:2]
    y0, y1, x0, x1 = box
    if y0 >= 0 and y1 <= H and x0 >= 0 and x1 <= W:
        return np.ascontiguousarray(image[y0:y1, x0:x1])
    ys = np.clip(np.arange(y0, y1), 0, H - 1)
    xs = np.clip(np.arange(x0, x1), 0, W - 1)
    return np.ascontiguousarray(image[ys[:, None], xs[None, :]])


def blend_patch(
    image: np.ndarray,
    patch: np.ndarray,
    dst_box: Box,
    *,
    blend: str,
    gradients: str,
    factor: float,
    paste_mask: np.ndarray | None = None,
    margin: int = 1,
) -> None:
    """Blend ``patch`` into ``image`` at ``dst_box``, in place.

    Parameters
    ----------
    image : ndarray, (H, W, C), C-contiguous
        Modified in place (only inside ``dst_box``).
    patch : ndarray, (h + 2 margin, w + 2 margin, C), same dtype
        From :func:`extract_patch`.
    dst_box : (y0, y1, x0, x1)
        Size ``h x w``.
    blend : {"poisson", "paste", "alpha"}
        "poisson" solves on the whole box (NSA's solver region is always the
        full rectangle, see ``docs/algorithm.md``); "paste" copies the patch
        where ``paste_mask`` is set; "alpha" mixes ``factor * patch + (1 -
        factor) * image`` there (uint8 rounded).
    gradients : {"normal", "mixed", "interpolated"}
    factor : float
        Alpha for "alpha", gradient interpolation factor for "interpolated".
    paste_mask : ndarray, bool, (h, w), optional
        Where "paste"/"alpha" act (default: the whole box).
    """
    y0, y1, x0, x1 = dst_box
    H, W = image.shape[:2]
    inner = patch[margin : patch.shape[0] - margin, margin : patch.shape[1] - margin]
    if blend == "poisson":
        # Keep the margin only where it lies inside the image.
        top, left = min(margin, y0), min(margin, x0)
        bottom, right = min(margin, H - y1), min(margin, W - x1)
        src = np.ascontiguousarray(patch[margin - top : patch.shape[0] - margin + bottom, margin - left : patch.shape[1] - margin + right])
        mask = np.zeros(src.shape[:2], dtype=bool)
        mask[top : top + (y1 - y0), left : left + (x1 - x0)] = True
        # Synthesised images stay in the input's range: 0..255 for uint8 (always), [0, 1] for float32.
        blend_inplace(image, src, mask, (y0 - top, x0 - left), gradients, factor, clip=True)
        return
    region = image[y0:y1, x0:x1]
    pm = np.ones((y1 - y0, x1 - x0), bool) if paste_mask is None else paste_mask
    if blend == "paste":
        region[pm] = inner[pm]
    elif blend == "alpha":
        mixed = factor * inner[pm].astype(np.float32) + (1.0 - factor) * region[pm].astype(np.float32)
        region[pm] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8) if image.dtype == np.uint8 else mixed
    else:
        raise ValueError(f"blend must be 'poisson', 'paste' or 'alpha', got {blend!r}")
