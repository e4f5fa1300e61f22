"""Cutting, resizing and blending one patch: the pixel work behind a :class:`PatchGeometry`."""

from __future__ import annotations

import numba as nb
import numpy as np

from ...poisson import kernels
from ...poisson.blend import blend_box_inplace
from ...poisson.opencv import blend_opencv_inplace, opencv_weights
from ...poisson.volume import blend_volume_inplace
from .sampling import Box, box_size, box_slices

#: OpenCV's blend leaves nothing to solve in a patch thinner than this (its 1-px mask ring
#: and the 1-px border of the solved rectangle both stay the destination's).
OPENCV_MIN_SIDE = 5
#: The reference skips patches whose OpenCV mask has fewer pixels (seamlessClone fails on them).
OPENCV_MIN_PIXELS = 50


def extract_patch(source: np.ndarray, src_box: Box, size: tuple[int, ...], margin: int = 1) -> np.ndarray:
    """Cut ``src_box`` from ``source`` and resize it to ``size`` by linear interpolation, with a margin.

    One definition for images and volumes, and the one the batched PyTorch renderer
    (:mod:`nsa_augment.torch`) reproduces: along each axis, output pixel ``i = -margin ..
    size + margin - 1`` samples source coordinate ``b0 + (i + 1/2) s - 1/2`` with ``s = box / size``
    (pixel centres aligned as in ``cv2.resize``), clipped to the source (edges replicated);
    separable linear interpolation in float64, then rounded half up and clipped for integer
    dtypes.  An axis the box is not resized along is an exact crop.

    Parameters
    ----------
    source : ndarray, (H, W, C) or a volume (D, H, W, C)
    src_box : (y0, y1, x0, x1), or (z0, z1, y0, y1, x0, x1)
    size : (h, w) or (d, h, w)
        Output size without the margin.
    margin : int
        Extra pixels on each side, sampled from around the box, so that the Poisson
        guidance has source gradients across the patch boundary as in ``cv2.seamlessClone``.

    Returns
    -------
    ndarray, size + 2 margin along each axis, channels last, same dtype
    """
    if len(size) == 2:
        (i0, i1, fy), (j0, j1, fx) = (_positions(src_box[2 * a], src_box[2 * a + 1], n, margin, source.shape[a])
                                      for a, n in enumerate(size))
        out = np.empty((i0.size, j0.size, source.shape[2]), source.dtype)
        kind = 1 if source.dtype.kind in "iu" else 0
        lo, hi, _ = kernels.output_range(source.dtype) if kind else (0.0, 0.0, 0)
        first, last = int(j0[0]), int(j1[-1]) + 1  # positions never decrease
        C = source.shape[2]
        # The images as flat rows, (H, W * C): views, reshaped here (in the kernel it costs compile time).
        _resample_2d(source.reshape(source.shape[0], -1), C, i0, i1, fy, j0, j1, fx, first, last,
                     out.reshape(i0.size, -1), kind, lo, hi, np.empty((last - first) * C))
        return out
    # Volumes: the same arithmetic in NumPy, on the part of the source the samples reach.
    axes = [sample_positions(src_box[2 * a], src_box[2 * a + 1], n, margin, source.shape[a]) for a, n in enumerate(size)]
    lows = [int(i0[0]) for i0, _, _ in axes]
    highs = [int(i1[-1]) + 1 for _, i1, _ in axes]
    out = source[tuple(slice(lo, hi) for lo, hi in zip(lows, highs))]
    for axis, ((i0, i1, frac), lo) in enumerate(zip(axes, lows)):
        w = frac.reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, i0 - lo, axis=axis) * (1.0 - w) + np.take(out, i1 - lo, axis=axis) * w
    if source.dtype.kind in "iu":
        low, high, _ = kernels.output_range(source.dtype)  # the dtype's limits, as the 2-D kernel gets them
        out = np.clip(np.floor(out + 0.5), low, high)
    return np.ascontiguousarray(out.astype(source.dtype))


def sample_positions(b0: int, b1: int, n: int, margin: int, length: int):
    """Per output index along one axis: the two source indices and the weight of the second (float64).

    Without a resize the samples are exact (second weight 0): ``v * 1.0 + v * 0.0`` is ``v``.
    """
    if b1 - b0 == n:
        i0 = np.clip(np.arange(b0 - margin, b1 + margin), 0, length - 1)
        return i0, i0, np.zeros(i0.size)
    coords = np.clip(b0 + (np.arange(-margin, n + margin) + 0.5) * ((b1 - b0) / n) - 0.5, 0.0, length - 1)
    i0 = np.floor(coords).astype(np.int64)
    return i0, np.minimum(i0 + 1, length - 1), coords - i0


def _positions(b0: int, b1: int, n: int, margin: int, length: int):
    """:func:`sample_positions` by one small kernel call instead of a dozen NumPy calls (identical values)."""
    index = np.empty((2, n + 2 * margin), np.int64)
    frac = np.empty(n + 2 * margin)
    _fill_positions(b0, b1, n, margin, length, index[0], index[1], frac)
    return index[0], index[1], frac


@nb.njit(cache=True, nogil=True)
def _fill_positions(b0, b1, n, margin, length, i0, i1, frac):
    """:func:`sample_positions`'s arithmetic, element by element in its order (float64, no fast-math)."""
    # Comparisons rather than min/max: the same values (no NaN here), without compiling their overloads
    # (0.1 s of the first call).
    top = length - 1
    if b1 - b0 == n:
        for k in range(n + 2 * margin):
            v = b0 - margin + k
            v = 0 if v < 0 else (top if v > top else v)
            i0[k] = i1[k] = v
            frac[k] = 0.0
        return
    step = (b1 - b0) / n
    ftop = np.float64(top)
    for k in range(n + 2 * margin):
        coord = b0 + (np.float64(k - margin) + 0.5) * step - 0.5
        coord = 0.0 if coord < 0.0 else (ftop if coord > ftop else coord)
        i0[k] = np.int64(np.floor(coord))
        i1[k] = i0[k] + 1 if i0[k] < top else top
        frac[k] = coord - i0[k]


@nb.njit(cache=True, nogil=True)
def _resample_2d(s2, C, i0, i1, fy, j0, j1, fx, first, last, o2, integer, lo, hi, row):
    """Separable linear interpolation, rows first, in float64; integer outputs rounded half up and clipped.

    ``s2``, ``o2``: the source ``(H, W, C)`` and the output ``(h, w, C)`` as flat rows,
    ``(H, W * C)`` and ``(h, w * C)`` (views, reshaped by the caller: a reshape here costs compile
    time).  ``first, last`` are the source columns the samples reach (``j0.min()``,
    ``j1.max() + 1``).  Flat rows and unsigned indices let the row pass vectorise: 2x faster than
    per-pixel channel loops, same arithmetic.  A flat row buffer and explicit clamps: the plain
    2-D form took LLVM twice as long to compile (1.5-1.9 s of the first call) and ran no faster;
    the column range and the row buffer (float64, ``(last - first) * C``) come from the caller
    because ``np.min``/``np.max`` inside would compile NumPy's generic reductions too (0.7 s more
    of a cold first call), and an allocation NumPy's array constructor.
    """
    n, base, Cu = np.uint64((last - first) * C), np.uint64(first * C), np.uint64(C)
    for a in range(i0.size):
        w1 = fy[a]
        w0 = 1.0 - w1
        ra, rb, oa = s2[i0[a]], s2[i1[a]], o2[a]
        for k in range(n):
            row[k] = float(ra[base + k]) * w0 + float(rb[base + k]) * w1
        for b in range(j0.size):
            v1 = fx[b]
            v0 = 1.0 - v1
            p, q, o = np.uint64(j0[b] - first) * Cu, np.uint64(j1[b] - first) * Cu, np.uint64(b) * Cu
            for c in range(Cu):
                v = row[p + c] * v0 + row[q + c] * v1
                oa[o + c] = min(max(np.floor(v + 0.5), lo), hi) if integer else v


def extract_mask(mask: np.ndarray, src_box: Box, size: tuple[int, ...]) -> np.ndarray:
    """Cut ``src_box`` from a boolean mask (image or volume) and resize it to ``size`` (nearest neighbour).

    Output pixel ``i`` takes the box pixel whose extent holds its centre,
    ``floor((i + 1/2) * box / size)`` per axis, in exact integer arithmetic;
    samples never leave the box, so the mask of the box alone gives the same result.
    """
    out = mask[box_slices(src_box)]
    for a, (n, b) in enumerate(zip(size, out.shape)):
        # The box first, then one take per axis it is resized along, in box coordinates: fewer
        # rows copied and three small NumPy calls per axis (0.77-0.80x the time of taking rows of
        # the whole width for 45-90 px patches of a 256 px mask). One take per axis is 4x faster
        # than one np.ix_ index (300 -> 75 us at 512 px).
        if n != b:
            out = out.take(np.arange(1, 2 * n, 2) * b // (2 * n), axis=a)
    return out


def _crop_replicate(image: np.ndarray, box: Box) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` where the box may extend past the image (edges replicated)."""
    H, W = image.shape[:2]
    y0, y1, x0, x1 = box
    if y0 >= 0 and y1 <= H and x0 >= 0 and x1 <= W:
        return np.ascontiguousarray(image[y0:y1, x0:x1])
    ys = np.clip(np.arange(y0, y1), 0, H - 1)
    xs = np.clip(np.arange(x0, x1), 0, W - 1)
    return np.ascontiguousarray(image[ys[:, None], xs[None, :]])


def opencv_skip_reason(size: tuple[int, int]) -> str | None:
    """Why ``poisson="opencv"`` (the reference's seamlessClone call) cannot blend a patch of ``size``, or None."""
    h, w = size
    if (h - 2) * (w - 2) < OPENCV_MIN_PIXELS:
        return f"patch {h}x{w} under the reference's {OPENCV_MIN_PIXELS}-pixel minimum for seamlessClone"
    if min(h, w) < OPENCV_MIN_SIDE:
        return f"patch {h}x{w} too thin for seamlessClone's system (needs {OPENCV_MIN_SIDE} px on each side)"
    return None


def blend_patch_opencv(image: np.ndarray, patch: np.ndarray, dst_box: Box, *, gradients: str, factor: float,
                       truncate: bool, clip: bool) -> None:
    """Blend ``patch`` into ``image`` at ``dst_box`` as the NSA reference's ``cv2.seamlessClone`` call does, in place.

    The reference passes the whole box as mask with its outer ring zeroed, so
    OpenCV solves the box shrunk by 2 px with source gradients only where a 7x7
    erosion of that mask survives (4 px inside the box) and destination
    gradients elsewhere; ``"interpolated"`` weights the source by ``ceil(255 f) /
    255`` as the reference's scaled mask does.  Unlike the reference, the content
    lands exactly on ``dst_box`` (OpenCV centres odd widths 1 px off).

    Parameters
    ----------
    image : ndarray (H, W, C), C-contiguous; modified inside ``dst_box``
    patch : ndarray (h, w, C), the resized source patch (no margin)
    dst_box : (y0, y1, x0, x1), size h x w, at least 5 px each side
    gradients : {"normal", "mixed", "interpolated"}
    factor : float
    truncate : bool
        Truncate integer results (OpenCV's uint8 conversion) instead of rounding.
    clip : bool
        Clip float results to [0, 1].
    """
    y0, y1, x0, x1 = dst_box
    weight = np.ceil(factor * 255.0) / 255.0 if gradients == "interpolated" else 1.0
    weights, rect = opencv_weights(np.ones((y1 - y0, x1 - x0), bool), weight)
    lo, hi, rounding = kernels.output_range(image.dtype, truncate=truncate, clip=clip)
    blend_opencv_inplace(image, np.ascontiguousarray(patch), weights, (y0, x0),
                         (y0 + rect[0], y0 + rect[1], x0 + rect[2], x0 + rect[3]), gradients == "mixed", lo, hi, rounding)


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
    clip: bool = True,
) -> None:
    """Blend ``patch`` into ``image`` at ``dst_box``, in place.

    Parameters
    ----------
    image : ndarray, (H, W, C) or a volume (D, H, W, C), C-contiguous
        Modified in place (only inside ``dst_box``).
    patch : ndarray, (h + 2 margin, w + 2 margin, C) (volumes: one more axis), same dtype
        From :func:`extract_patch`.
    dst_box : (y0, y1, x0, x1) (volumes: (z0, z1, y0, y1, x0, x1))
        Size ``h x w``.
    blend : {"poisson", "paste", "alpha"}
        "poisson" solves on the whole box (NSA's solver region is always the
        full rectangle, see ``docs/algorithm.md``); "paste" copies the patch
        where ``paste_mask`` is set; "alpha" mixes ``factor * patch + (1 -
        factor) * image`` there.
    gradients : {"normal", "mixed", "interpolated"}
    factor : float
        Alpha for "alpha", gradient interpolation factor for "interpolated".
    paste_mask : ndarray, bool, (h, w), optional
        Where "paste"/"alpha" act (default: the whole box).
    clip : bool
        Clip float results to [0, 1].  Integer results are always rounded and
        clipped to their dtype's limits.
    """
    dims = image.ndim - 1  # an image (H, W, C) or a volume (D, H, W, C)
    spatial = image.shape[:-1]
    inner = patch[tuple(slice(margin, n - margin) for n in patch.shape[:-1])]
    if blend == "poisson":
        # Keep the margin only where it lies inside the image.
        low = [min(margin, dst_box[2 * a]) for a in range(dims)]
        high = [min(margin, spatial[a] - dst_box[2 * a + 1]) for a in range(dims)]
        src = np.ascontiguousarray(patch[tuple(slice(margin - lo, n - margin + hi)
                                               for lo, hi, n in zip(low, high, patch.shape[:-1]))])
        offset = tuple(dst_box[2 * a] - low[a] for a in range(dims))
        if dims == 2:
            blend_box_inplace(image, src, offset, dst_box, gradients, factor, clip=clip)
            return
        mask = np.zeros(src.shape[:-1], dtype=bool)
        mask[tuple(slice(lo, lo + n) for lo, n in zip(low, box_size(dst_box)))] = True
        blend_volume_inplace(image, src, mask, offset, gradients, factor, clip=clip)
        return
    region = image[box_slices(dst_box)]
    pm = np.ones(box_size(dst_box), bool) if paste_mask is None else paste_mask
    if blend == "paste":
        region[pm] = inner[pm]
    elif blend == "alpha":
        mixed = factor * inner[pm].astype(np.float64) + (1.0 - factor) * region[pm].astype(np.float64)
        lo, hi, rounding = kernels.output_range(image.dtype, clip=clip)
        region[pm] = np.clip(np.floor(mixed + 0.5) if rounding == kernels.ROUND_HALF_UP else mixed, lo, hi)
    else:
        raise ValueError(f"blend must be 'poisson', 'paste' or 'alpha', got {blend!r}")
