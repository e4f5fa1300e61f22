"""Anomaly label maps, computed only around the patches.

Definitions (NSA paper, section 3 of ``docs/algorithm.md``), with ``D = mean over
channels |before - after|`` on the 0..255 scale and ``region`` the union of the
patch masks:

* ``changed = median5(D > tol and region)`` (5x5 median; 5x5x5 for volumes);
* binary: ``changed``;
* continuous: ``changed * f``;
* intensity: ``L = median_disk5(D * changed)`` (disk of radius 5, 11x11 footprint;
  for volumes the ball of radius 5);
* logistic: ``changed / (1 + exp(-k (L - x0)))``.

Both medians see only zeros farther than their radius from the region, so they
are computed on the region's bounding box grown by 2 + 5 pixels: the result is
identical to filtering the whole image (borders replicate, as in the reference),
at a fraction of the cost.  Images are (H, W) or (H, W, C); volumes, passed as
``(D, H, W, C)`` by the volume functions, use the same code along one more axis.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numba as nb
import numpy as np

from ...intensity import intensity_range, level_scale
from ...validation import check_choice, check_image, check_pair, check_range, check_volume, is_finite
from .config import LABEL_MODES
from .objects import binary_median
from .sampling import box_size, box_slices

#: Intensity values are binned to 1/(QUANT * channels) of a level for the disk
#: median.  uint8 inputs read as 0..255 are exact (their channel means are
#: multiples of 1/channels); every other input is quantised to 1/4 of that.
_FLOAT_QUANT = 4

DISK_RADIUS = 5
#: Side of the binary median that decides which changed pixels count (5x5, 5x5x5 for volumes).
MEDIAN_SIZE = 5
_GROW = MEDIAN_SIZE // 2 + DISK_RADIUS


def median_keeps(size: tuple[int, ...]) -> bool:
    """Whether the label's binary median keeps anything of a box of ``size`` pixels placed anywhere.

    A median keeps a pixel where the box fills more than half of the window centred on it; inside
    the image the fullest window holds ``prod(min(side, 5))`` box pixels, so a 3x4 patch (12 of 25)
    or a 3x5x4 cuboid (60 of 125) loses its whole label, while 3x5 (15 of 25) keeps its centre.
    (At an image border the replicated edge can keep slightly smaller boxes; this test ignores
    that, so it errs towards skipping a tiny patch, never towards an unlabelled one.)

    Parameters
    ----------
    size : tuple of int
        The box's sides, one per axis (2 for images, 3 for volumes).

    Examples
    --------
    >>> median_keeps((3, 5)), median_keeps((3, 4)), median_keeps((3, 5, 5)), median_keeps((3, 5, 4))
    (True, False, True, False)
    """
    filled = math.prod(min(int(n), MEDIAN_SIZE) for n in size)  # math.prod: 10x cheaper than np.prod per patch
    return 2 * filled > MEDIAN_SIZE ** len(size)


def footprint(radius: int, dims: int) -> np.ndarray:
    """The disk (dims=2) or ball (dims=3) of ``radius`` as rows ``(dz, dy, half-width along x)``, int64 (R, 3).

    A pixel ``(dz, dy, dx)`` belongs where ``dz^2 + dy^2 + dx^2 <= radius^2``
    (skimage.morphology.disk / ball).
    """
    rows = []
    zs = range(-radius, radius + 1) if dims == 3 else (0,)
    for dz in zs:
        for dy in range(-radius, radius + 1):
            rest = radius * radius - dz * dz - dy * dy
            if rest >= 0:
                rows.append((dz, dy, int(np.floor(np.sqrt(rest)))))
    return np.array(rows, dtype=np.int64)


_FOOTPRINTS = {2: footprint(DISK_RADIUS, 2), 3: footprint(DISK_RADIUS, 3)}


@nb.njit(cache=True, nogil=True)
def median_footprint(values, shape, origin, rows, need, out, out_origin, hist, lo, hi, table):
    """Median filter with a disk or ball footprint over non-negative integer ``values``, mapped through ``table``.

    Huang's sliding histogram: moving one pixel right removes the left end of
    every footprint row and adds its right end (2 pixels per row), and the
    median bin is tracked incrementally.  No read is clamped: ``values`` must
    hold every pixel a needed pixel's footprint reaches, so borders replicate
    (scipy's ``mode="nearest"``) through the padding :func:`pad_replicated`
    adds where the values end at an image border; elsewhere the label's box
    already reaches that far (checked per run: a footprint that would leave
    ``values`` raises instead of reading outside).  Only pixels where ``need``
    is set are computed; the others are 0.  Each row slides over runs of
    needed pixels, and across a gap between them only while that is cheaper
    than emptying the histogram and filling it again after the gap (e.g.
    between two patches).

    Parameters
    ----------
    values : uint16 (or int64) array (Dv * Hv * Wv,), 0 <= values < len(hist)
        The values as a flat view; an image is Dv = 1.
    shape : (Dv, Hv, Wv) int
    origin : (oz, oy, ox) int
        Where ``need``'s first pixel lies in ``values``.
    rows : int64 array (R, 3), the footprint as ``(dz, dy, half-width)`` (:func:`footprint`)
    need : bool array (D, H, W)
        Also gives the shape of the part of ``out`` written.
    out : float32 array (Do, Ho, Wo), zeros where ``need`` is not set
        Its part at ``out_origin`` (``D x H x W``, inside ``out``: checked) receives ``table[median]``
        where ``need`` is set; nothing else is written.  The label's value of each median bin is
        looked up here, so no integer median map is written and read back, and the label writes
        into its whole map (no box-sized output to allocate and copy: 22nd session).
    out_origin : (qz, qy, qx) int
        Where ``need``'s first pixel lies in ``out``.
    hist : int64 array (nbins,), zeros
        Scratch histogram (left zeroed).
    lo, hi : int64 arrays (R,)
        Scratch: per footprint row, where the value leaving and the value entering the window
        lie in ``values`` at x = 0.  Passing the arrays in keeps allocation code out of the
        compiled kernel (a shorter first compile).
    table : float32 array (nbins,)
        The value written for each median bin (e.g. the logistic of its intensity).

    Returns
    -------
    ``out``
    """
    D, H, W = need.shape
    Dv, Hv, Wv = shape
    oz, oy, ox = origin
    R = rows.shape[0]
    qz, qy, qx = out_origin
    if values.size != Dv * Hv * Wv:
        raise ValueError("median_footprint: values must have the given shape")
    if (qz < 0 or qy < 0 or qx < 0 or qz + D > out.shape[0] or qy + H > out.shape[1]
            or qx + W > out.shape[2]):
        raise ValueError("median_footprint: need placed at out_origin must lie inside out")
    n = 0
    rz = ry = rx = 0  # the footprint's reach along each axis
    for f in range(R):
        n += 2 * rows[f, 2] + 1
        rz, ry, rx = max(rz, abs(rows[f, 0])), max(ry, abs(rows[f, 1])), max(rx, rows[f, 2])
    half = n // 2  # the median is the (half)-th smallest, 0-based
    # Sliding one pixel costs 2 R updates, emptying and refilling 2 n: restart after longer gaps.
    gap = n // R
    for z in range(D):
        for y in range(H):
            # The footprint rows' image rows once per row, not per pixel.
            for f in range(R):
                b = ((z + oz + rows[f, 0]) * Hv + y + oy + rows[f, 1]) * Wv + ox
                lo[f] = b - rows[f, 2] - 1
                hi[f] = b + rows[f, 2]
            x = 0
            while True:
                while x < W and not need[z, y, x]:
                    x += 1
                if x == W:
                    break
                first = last = x  # a run of needed pixels, gaps up to ``gap`` included
                x += 1
                while x < W and x - last <= gap:
                    if need[z, y, x]:
                        last = x
                    x += 1
                if (z + oz - rz < 0 or z + oz + rz >= Dv or y + oy - ry < 0 or y + oy + ry >= Hv
                        or first + ox - rx < 0 or last + ox + rx >= Wv):
                    raise ValueError("median_footprint: a needed pixel's footprint leaves the values (pad them)")
                for f in range(R):
                    for k in range(lo[f] + 1 + first, hi[f] + 1 + first):
                        hist[values[k]] += 1
                m = 0
                below = 0
                while below + hist[m] <= half:
                    below += hist[m]
                    m += 1
                out[z + qz, y + qy, first + qx] = table[m]
                for xx in range(first + 1, last + 1):
                    for f in range(R):
                        # Unsigned indices (>= 0: the check above), so no negative-index wraparound
                        # test per read: 12-15% faster on captured carpet and hazelnut labels.
                        v_out, v_in = values[np.uint64(lo[f] + xx)], values[np.uint64(hi[f] + xx)]
                        hist[v_out] -= 1
                        hist[v_in] += 1
                        below += np.int64(v_in < m) - np.int64(v_out < m)
                    while below > half:
                        m -= 1
                        below -= hist[m]
                    while below + hist[m] <= half:
                        below += hist[m]
                        m += 1
                    if need[z, y, xx]:
                        out[z + qz, y + qy, xx + qx] = table[m]
                # empty the histogram by removing the last window (cheaper than clearing all bins)
                for f in range(R):
                    for k in range(lo[f] + 1 + last, hi[f] + 1 + last):
                        hist[values[k]] -= 1
    return out


def pad_replicated(values: np.ndarray, widths, mask: np.ndarray | None = None) -> np.ndarray:
    """``values`` (times ``mask``) padded by ``widths[a] = (before, after)`` along each axis ``a``, edges replicated.

    ``np.pad(values * mask, widths, mode="edge")`` in one pass over the values: the product is
    written straight into the padded array, then the edges are copied axis by axis.  Reading the
    padding is reading the clamped index (scipy's ``mode="nearest"``).  Without padding the
    product is computed in place of ``values``, which must then be the caller's scratch.
    """
    if not any(w0 or w1 for w0, w1 in widths):
        return values if mask is None else np.multiply(values, mask, out=values)
    dims = values.ndim
    padded = np.empty(tuple(n + w0 + w1 for n, (w0, w1) in zip(values.shape, widths)), values.dtype)
    inner = tuple(slice(w0, w0 + n) for n, (w0, _) in zip(values.shape, widths))
    if mask is None:
        padded[inner] = values
    else:
        np.multiply(values, mask, out=padded[inner])
    for axis in reversed(range(dims)):  # innermost first; an axis filled earlier is copied whole
        (w0, w1), n = widths[axis], values.shape[axis]
        lead = inner[:axis]
        if w0:
            padded[lead + (slice(0, w0),)] = padded[lead + (slice(w0, w0 + 1),)]
        if w1:
            padded[lead + (slice(w0 + n, None),)] = padded[lead + (slice(w0 + n - 1, w0 + n),)]
    return padded


@nb.njit(cache=True, nogil=True)
def _measure_change(before, after, region, box, scale, tol, quant, cap, raw, bins):
    """Per pixel of ``box`` the change ``d = scale * mean over channels |before - after|`` (float64), read twice.

    ``before``, ``after`` (D, H, W, C) and ``region`` (D, H, W) are whole volumes (an image is
    ``D = 1``), C-ordered; ``box = (z0, z1, y0, y1, x0, x1)`` the part to measure, read in place
    (until the 20th session the caller copied each box: the kernel's reads now cost what the copies
    did, without three fresh box-sized arrays per label group).
    ``raw = (d > tol) & region`` (uint8 0/1) and ``bins = min(rint(d * quant), cap)`` (:func:`bin_dtype`),
    both ``((z1 - z0) (y1 - y0), x1 - x0)``: the label's two uses of ``d`` in one pass, without a
    float64 map and NumPy's temporaries (1.6 ms of a 512 px example's 7 ms label did that in three
    NumPy passes).  A change larger than the whole intensity range (a CT window narrower than the
    image's values) saturates at ``cap`` (255 levels): the histogram of :func:`median_footprint` ends there.
    """
    C = before.shape[3]
    z0, z1, y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    inv = scale / C
    for z in range(z0, z1):
        for y in range(y0, y1):
            b, a, r = before[z, y, x0:x1], after[z, y, x0:x1], region[z, y, x0:x1]
            rw, bn = raw[(z - z0) * h + y - y0], bins[(z - z0) * h + y - y0]
            for x in range(w):
                acc = 0.0
                for c in range(C):
                    acc += abs(np.float64(b[x, c]) - np.float64(a[x, c]))
                d = acc * inv
                rw[x] = (d > tol) & r[x]  # branch-free: about a third faster than a conditional here
                bn[x] = np.int64(min(np.rint(d * quant), cap))
    return raw, bins


@nb.njit(cache=True, nogil=True)
def _measure_change_8bit(before, after, region, box, raw_table, bin_table, raw, bins):
    """:func:`_measure_change` for 8-bit images: ``raw`` and ``bins`` looked up by the channels' summed difference.

    ``acc = sum over channels |before - after|`` is an integer in ``0 .. 255 C``; the tables
    (:func:`_change_tables`) hold what :func:`_measure_change` computes from it, so the outputs are
    bit-identical and each pixel costs an integer sum and two lookups.
    """
    C = before.shape[3]
    z0, z1, y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    for z in range(z0, z1):
        for y in range(y0, y1):
            b, a, r = before[z, y, x0:x1], after[z, y, x0:x1], region[z, y, x0:x1]
            rw, bn = raw[(z - z0) * h + y - y0], bins[(z - z0) * h + y - y0]
            if C == 3:  # spelled out: the integer sums vectorise
                for x in range(w):
                    acc = (abs(np.int64(b[x, 0]) - np.int64(a[x, 0])) + abs(np.int64(b[x, 1]) - np.int64(a[x, 1]))
                           + abs(np.int64(b[x, 2]) - np.int64(a[x, 2])))
                    rw[x] = raw_table[acc] & np.uint8(r[x])
                    bn[x] = bin_table[acc]
            else:
                for x in range(w):
                    acc = np.int64(0)
                    for c in range(C):
                        acc += abs(np.int64(b[x, c]) - np.int64(a[x, c]))
                    rw[x] = raw_table[acc] & np.uint8(r[x])
                    bn[x] = bin_table[acc]
    return raw, bins


def bin_dtype(cap: float):
    """The integer type of the label's intensity bins ``0 .. cap``: uint16 (65,536 bins: up to 64 channels), else int64.

    The disk median reads 22 bins per pixel it slides over; 2-byte bins make it 15% faster than
    8-byte ones (captured inputs from 150 carpet examples at 256 and 512 px).
    """
    return np.uint16 if cap <= 0xFFFF else np.int64  # a literal: np.iinfo costs 1 us per call


@lru_cache(maxsize=64)
def _change_tables(channels: int, scale: float, tol: float, quant: float, cap: float):
    """:func:`_measure_change`'s two results for every summed difference ``0 .. 255 C`` of 8-bit channels (read-only).

    The kernel's float64 arithmetic in its order: ``d = acc * (scale / C)``, ``d > tol``,
    ``min(rint(d * quant), cap)``.
    """
    d = np.arange(255 * channels + 1, dtype=np.float64) * (scale / channels)
    raw = (d > tol).astype(np.uint8)
    bins = np.minimum(np.rint(d * quant), cap).astype(bin_dtype(cap))
    for v in (raw, bins):
        v.setflags(write=False)
    return raw, bins


#: The logistic never reaches 1; float32 rounding would make it 1 for large changes.
_BELOW_ONE = np.float32(1.0) - np.float32(2.0**-24)


@lru_cache(maxsize=64)
def _logistic_table(bins: int, quant: float, k: float, x0: float) -> np.ndarray:
    """``1 / (1 + exp(-k (b / quant - x0)))`` for every bin ``b < bins``, float32, kept below 1 (read-only, cached).

    The label's intensities are whole bins, so the logistic of each is looked up: one
    ``exp`` per bin instead of per labelled pixel, the same float64 arithmetic.
    """
    v = np.minimum((1.0 / (1.0 + np.exp(-k * (np.arange(bins) / quant - x0)))).astype(np.float32), _BELOW_ONE)
    v.setflags(write=False)
    return v


@lru_cache(maxsize=16)
def _intensity_table(bins: int, quant: float) -> np.ndarray:
    """``b / quant`` for every bin ``b < bins``, float32 (read-only, cached): the intensity label's levels."""
    v = (np.arange(bins) / quant).astype(np.float32)
    v.setflags(write=False)
    return v


def _bbox(mask: np.ndarray, grow: int):
    """Bounding box of ``mask`` grown by ``grow`` on every side (clipped), flat per axis; None if empty."""
    box = []
    for axis, n in enumerate(mask.shape):
        span = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if span.size == 0:
            return None
        box += [max(int(span[0]) - grow, 0), min(int(span[-1]) + 1 + grow, n)]
    return tuple(box)


def make_label(
    before: np.ndarray,
    after: np.ndarray,
    region: np.ndarray,
    mode: str,
    *,
    tol: float = 1.0,
    factor: float = 1.0,
    logistic: tuple[float, float] = (1 / 6, 20.0),
    intensity: tuple[float, float] | None = None,
) -> np.ndarray:
    """The anomaly label of one synthesised example.

    Parameters
    ----------
    before, after : ndarray, (H, W) or (H, W, C), uint8, uint16, int16 or float32
        The destination and the synthesised image.
    region : ndarray, bool, (H, W)
        Union of the patch masks (where a label may start).  For a volume
        (``before`` and ``after`` (D, H, W, C)) it is (D, H, W).
    mode : {"binary", "continuous", "intensity", "logistic"}
    tol : float
        Change threshold on the 0..255 scale.
    factor : float
        ``f`` for continuous labels.
    logistic : (k, x0)
    intensity : (lo, hi), optional
        The destination's intensity range (:mod:`nsa_augment.intensity`; default:
        the dtype's default rule for ``before`` as a whole).

    Returns
    -------
    ndarray, float32, (H, W)
        binary in {0, 1}; continuous in {0, f}; logistic in [0, 1); intensity
        in 0..255 (levels of the 0..255 scale, trained with MSE).

    Raises
    ------
    TypeError, ValueError
        For arrays that are not images (volumes) of the same shape and dtype, a region of
        another size, non-finite values, an unknown mode or an empty intensity range.

    Examples
    --------
    >>> import numpy as np
    >>> before = np.zeros((32, 32), np.uint8)
    >>> after = before.copy(); after[8:24, 8:24] = 90          # a 16x16 patch, 90 levels brighter
    >>> region = np.zeros((32, 32), bool); region[8:24, 8:24] = True
    >>> label = make_label(before, after, region, "logistic", logistic=(1 / 12, 24))
    >>> round(float(label[16, 16]), 3), float(label[0, 0])   # 1 / (1 + exp(-(90 - 24) / 12))
    (0.996, 0.0)
    """
    check_choice(mode, LABEL_MODES, "label mode")
    if not isinstance(region, np.ndarray) or region.ndim not in (2, 3):
        raise ValueError("region must be a boolean array (H, W), or (D, H, W) for a volume, got "
                         + (f"shape {region.shape}" if isinstance(region, np.ndarray) else type(region).__name__))
    volume = region.ndim == 3
    check = check_volume if volume else check_image
    before, after = check(before, "before"), check(after, "after")
    if after.shape != before.shape or after.dtype != before.dtype:
        raise ValueError(f"after must have the shape and dtype of before ({before.shape}, {before.dtype}), "
                         f"got {after.shape}, {after.dtype}")
    spatial = before.shape[:3] if volume else before.shape[:2]
    if region.shape != spatial:
        raise ValueError(f"region must have the {'volume' if volume else 'image'}'s shape {spatial}, got {region.shape}"
                         + (" (a 3-D region makes before and after volumes)" if volume else ""))
    if region.dtype != np.bool_:
        raise TypeError(f"region must be boolean, got {region.dtype} (use region != 0)")
    for name, value in (("tol", tol), ("factor", factor)):
        if not is_finite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    logistic = check_pair(logistic, "logistic")
    if intensity is not None:
        intensity = check_range(intensity, "intensity")
    return _label(before, after, region, mode, tol=tol, factor=factor, logistic=logistic, intensity=intensity)


def _groups(boxes, shape, grow: int) -> list[tuple[int, ...]]:
    """The boxes grown by ``grow``, merged wherever they come within ``grow`` of each other (flat per axis).

    A label pixel depends on the images within ``grow`` of it, so boxes whose grown boxes stay
    ``grow`` apart can be labelled alone (a conservative margin: no region lies within ``2 grow``
    of another group's grown box).  NSA's patches lie spread over the image; their common bounding
    box holds about 1.8x the area of their grown boxes.
    """
    dims = len(shape)
    grown = [tuple(max(b[2 * a] - grow, 0) if i == 0 else min(b[2 * a + 1] + grow, shape[a])
                   for a in range(dims) for i in (0, 1)) for b in boxes]

    def near(a, b):
        return all(a[2 * k] < b[2 * k + 1] + grow and b[2 * k] < a[2 * k + 1] + grow for k in range(dims))

    while True:  # a few boxes: merge a near pair until none is left
        pair = next(((i, j) for i, j in itertools.combinations(range(len(grown)), 2) if near(grown[i], grown[j])), None)
        if pair is None:
            return grown
        i, j = pair
        a, b = grown[i], grown.pop(j)
        grown[i] = tuple(min(a[m], b[m]) if m % 2 == 0 else max(a[m], b[m]) for m in range(2 * dims))


def _label(before, after, region, mode, *, tol, factor, logistic, intensity, boxes=None):
    """:func:`make_label` for checked arguments (synthesis calls this on arrays it made itself).

    ``boxes``: the patch boxes (flat per axis) whose union holds ``region``; each group of nearby
    boxes is labelled on its own grown box (:func:`_groups`), not their common bounding box.
    """
    dims = region.ndim
    label = np.zeros(region.shape, dtype=np.float32)
    groups = [_bbox(region, _GROW)] if boxes is None else _groups(boxes, region.shape, _GROW)
    if groups == [None]:
        return label
    before = before if before.ndim > dims else before[..., None]
    after = after if after.ndim > dims else after[..., None]
    lo, hi = intensity if intensity is not None else intensity_range(before)
    # The change map reads its boxes from the whole arrays, as volumes (an image is one slice), C-ordered
    # whatever the caller's strides: the kernel then compiles once per dtype (a view typed 'A' here
    # and 'C' there compiled it again in the middle of a run).  Ours (synthesis) are C-ordered already.
    as4 = lambda v: np.ascontiguousarray(v if dims == 3 else v[None])  # noqa: E731
    whole = as4(before), as4(after), as4(region)
    label3 = label if dims == 3 else label[None]  # a view: each group is written into the label in place
    for box in groups:
        borders = tuple((box[2 * i] == 0, box[2 * i + 1] == region.shape[i]) for i in range(dims))
        _label_box(*whole, (0, 1) * (3 - dims) + tuple(box), mode, tol=tol, factor=factor, logistic=logistic,
                   lo=lo, hi=hi, borders=borders, label=label3)
    return label


def _label_box(before, after, region, box, mode, *, tol, factor, logistic, lo, hi, borders, label):
    """The label on one box of the whole arrays (volumes, channels last; an image is one slice), written into ``label``.

    ``box = (z0, z1, y0, y1, x0, x1)``; ``label`` is the whole label map (D, H, W), zeros in the
    box.  ``borders``: per axis of the label (an image's two), whether
    the box's low and high sides lie on the border.  The box reaches ``_GROW`` pixels beyond every
    region pixel, so a logistic label's needed pixels lie at least the disk's radius inside every
    other side; only the border sides are padded for the disk median (the intensity label needs
    every pixel of the box: all sides).
    """
    dims = len(borders)
    shape = box_size(box)
    spatial = shape[3 - dims:]
    channels = before.shape[-1]
    exact = before.dtype == np.uint8 and (lo, hi) == (0.0, 255.0)  # channel means are multiples of 1/C
    quant = channels * (1 if exact else _FLOAT_QUANT)
    rows = (shape[0] * shape[1], shape[2])  # volumes: slices stacked as rows
    scale, cap = level_scale(lo, hi), float(255 * quant)
    outputs = np.empty(rows, np.uint8), np.empty(rows, bin_dtype(cap))
    if before.dtype == np.uint8:
        tables = _change_tables(channels, scale, float(tol), float(quant), cap)
        raw, bins = _measure_change_8bit(before, after, region, box, *tables, *outputs)
    else:
        raw, bins = _measure_change(before, after, region, box, scale, float(tol), float(quant), cap, *outputs)
    changed = binary_median(raw.reshape(spatial), MEDIAN_SIZE)  # = cv2.medianBlur(raw, 5), as the reference
    if mode == "binary":
        label[box_slices(box)] = changed.reshape(shape)
    elif mode == "continuous":
        label[box_slices(box)] = changed.reshape(shape).astype(np.float32) * np.float32(factor)
    elif mode in ("intensity", "logistic"):
        need = changed.view(bool) if mode == "logistic" else np.ones(spatial, bool)
        as3 = lambda v: v if dims == 3 else v[None]  # noqa: E731 - an image is a volume of one slice
        rows_ = _FOOTPRINTS[dims]
        if mode == "intensity":
            table = _intensity_table(255 * quant + 1, float(quant))
        else:  # the logistic of each bin; where the label is not set, need is not either: 0
            k, x0_ = logistic
            table = _logistic_table(255 * quant + 1, float(quant), float(k), float(x0_))
        # The intensity median sees the change only where the label is set (bins times changed).
        widths = tuple(tuple(DISK_RADIUS if edge or mode == "intensity" else 0 for edge in sides) for sides in borders)
        values = pad_replicated(bins.reshape(spatial), widths, changed)
        median_footprint(values.reshape(-1), (1,) * (3 - dims) + values.shape,
                         (0,) * (3 - dims) + tuple(w0 for w0, _ in widths), rows_, as3(need), label, box[::2],
                         np.zeros(255 * quant + 1, np.int64), np.empty(len(rows_), np.int64),
                         np.empty(len(rows_), np.int64), table)
    else:  # pragma: no cover - make_label checked the mode
        raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")


def image_label(mask: np.ndarray, threshold: float = 0.0) -> int:
    """Image-level label from a (possibly transformed) label map: 1 if any value exceeds ``threshold``."""
    values = np.asarray(mask)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"mask must be a numeric label map, got {type(mask).__name__} of dtype {values.dtype}")
    if not is_finite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return int(values.max(initial=0) > threshold)
