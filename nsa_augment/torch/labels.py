"""Batched label maps and object masks: :mod:`nsa_augment.methods.nsa.labels` and ``objects`` in PyTorch.

The definitions are the CPU path's (see that module), computed over whole images — the CPU path
works on the patches' surroundings only, which its tests prove equal to the whole-image
definition.  Medians with a square window of a binary image are window counts (``> half``); the
disk median of the intensity labels is a ``kthvalue`` over the 81 pixels of the radius-5 disk,
taken a few images at a time to bound memory.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..intensity import dtype_range
from ..methods.nsa.labels import _BELOW_ONE, _FLOAT_QUANT, DISK_RADIUS, MEDIAN_SIZE, footprint
from ..methods.nsa.objects import OBJECT_MEDIAN

#: Pixels per median chunk (x 81 window values): about 128 MB of float32 and as much of indices.
_MEDIAN_CHUNK = 2**25 // 81


def fixed_range(dtype: torch.dtype, rule) -> tuple[float, float] | None:
    """The ``(lo, hi)`` that the ``intensity_range`` rule gives every image of ``dtype``, or None for ``"image"``.

    Known on the host, so decisions that follow from it need no copy back from the device.
    """
    if isinstance(rule, tuple):
        return float(rule[0]), float(rule[1])
    if rule == "image":
        return None
    return dtype_range({torch.uint8: "uint8", torch.float32: "float32"}[dtype])


def intensity_ranges(images: torch.Tensor, rule) -> torch.Tensor:
    """``(lo, hi)`` per image under the config's ``intensity_range`` rule: float64 (B, 2) on the images' device.

    ``None`` / ``"dtype"``: uint8 -> (0, 255), float32 -> (0, 1) (values outside [0, 1] are an error
    with ``None``, as on the CPU); ``"image"``: each image's min and max; ``(lo, hi)``: as given.
    A fixed range is filled on the device (no host-to-device copy, which would wait for the GPU).
    """
    B = images.shape[0]
    if rule == "image":
        flat = images.reshape(B, -1).to(torch.float64)
        lo, hi = flat.amin(1), flat.amax(1)
        return torch.stack([lo, torch.where(hi > lo, hi, lo + 1.0)], 1)
    if rule is None and images.dtype == torch.float32 and images.numel():
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float32 images are read as [0, 1] unless told otherwise, got values in [{lo:g}, {hi:g}]: "
                             "set intensity_range='image' or (lo, hi) in the config")
    lo, hi = fixed_range(images.dtype, rule)
    return torch.stack([torch.full((B,), lo, dtype=torch.float64, device=images.device),
                        torch.full((B,), hi, dtype=torch.float64, device=images.device)], 1)


def _window_count(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Number of set pixels in the ``size`` x ``size`` window of each pixel, borders replicated: (B, H, W)."""
    r = size // 2
    padded = F.pad(mask[:, None].to(torch.float32), (r, r, r, r), mode="replicate")
    return F.avg_pool2d(padded, size, stride=1)[:, 0] * (size * size)


def binary_median(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Median of a binary (B, H, W) mask over a square window (replicated borders): more than half set."""
    return _window_count(mask, size) > (size * size) // 2 + 0.5


def batch_object_mask(images: torch.Tensor, pairs, ranges: torch.Tensor) -> torch.Tensor:
    """:func:`nsa_augment.object_mask` of each image (B, C, H, W) with its intensity range: (B, H, W) bool.

    The channel mean is taken in float64, like the CPU path, so a pixel exactly at a threshold
    falls on the same side.
    """
    lo, hi = ranges[:, 0, None, None], ranges[:, 1, None, None]
    mean = (images.to(torch.float64).sum(1) / images.shape[1] - lo) * 255.0 / (hi - lo)
    votes = torch.ones_like(mean, dtype=torch.bool)
    for level, threshold in pairs:
        votes &= (mean - float(level)).abs() > float(threshold)
    return binary_median(votes, OBJECT_MEDIAN)


@functools.lru_cache(maxsize=8)
def _disk_on(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The radius-5 disk's ``(dy, dx)`` offsets (int64, 81 each) on ``device``: copied there once per process,
    since a host-to-device copy in every batch would wait for the GPU's queue."""
    rows = footprint(DISK_RADIUS, 2)
    pairs = [(int(dy), dx) for _, dy, hw in rows for dx in range(-int(hw), int(hw) + 1)]
    return tuple(torch.tensor(column, dtype=torch.int64).to(device) for column in zip(*pairs))


def _disk_median(values: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
    """Median over the radius-5 disk of integer-valued (B, H, W) values where ``need`` is set (0 elsewhere).

    Borders replicate.  The 81 window values of each needed pixel are gathered from the padded
    images (a few hundred thousand pixels at a time) and their 41st smallest taken.
    """
    R = DISK_RADIUS
    B, H, W = values.shape
    Hp, Wp = H + 2 * R, W + 2 * R
    padded = F.pad(values[:, None], (R, R, R, R), mode="replicate").reshape(-1)
    dy, dx = _disk_on(values.device)
    offsets = (R + dy) * Wp + R + dx
    b, y, x = need.nonzero(as_tuple=True)
    corner = b * (Hp * Wp) + y * Wp + x  # the window's top-left corner in the padded images
    target = (b * H + y) * W + x
    out = torch.zeros(B * H * W, dtype=values.dtype, device=values.device)
    k = offsets.numel() // 2 + 1
    for start in range(0, corner.numel(), _MEDIAN_CHUNK):
        windows = padded[corner[start : start + _MEDIAN_CHUNK, None] + offsets[None, :]]
        out[target[start : start + _MEDIAN_CHUNK]] = windows.kthvalue(k, dim=1).values
    return out.view(B, H, W)


def batch_labels(before: torch.Tensor, after: torch.Tensor, region: torch.Tensor, cfg, factors: torch.Tensor,
                 ranges: torch.Tensor, exact_uint8: bool, fixed: tuple[float, float] | None = None) -> torch.Tensor:
    """:func:`nsa_augment.methods.nsa.labels.make_label` for a batch: float32 (B, H, W).

    ``before``/``after`` are float32 (B, C, H, W) in the images' own units, ``region`` the union of
    the patch regions, ``factors`` each example's ``f``, ``ranges`` each destination's (lo, hi),
    ``fixed`` that range when every image has it (:func:`fixed_range`; None: read ``ranges``).
    """
    C = before.shape[1]
    # float64 from here, as on the CPU: a change of exactly ``tol`` must fall on the same side.
    scale = (255.0 / (ranges[:, 1] - ranges[:, 0])).view(-1, 1, 1) / C
    diff = (before.to(torch.float64) - after.to(torch.float64)).abs().sum(1) * scale
    changed = binary_median((diff > cfg.tol) & region, MEDIAN_SIZE)
    if cfg.label == "binary":
        return changed.to(torch.float32)
    if cfg.label == "continuous":
        return changed.to(torch.float32) * factors.to(torch.float32).view(-1, 1, 1)
    if fixed is not None:  # decided on the host: no wait for the device
        exact = exact_uint8 and fixed == (0.0, 255.0)
    else:
        exact = exact_uint8 and bool(((ranges[:, 0] == 0) & (ranges[:, 1] == 255)).all())
    quant = C * (1 if exact else _FLOAT_QUANT)
    binned = torch.where(changed, torch.round(diff * quant).clamp(max=255 * quant), torch.zeros_like(diff))
    # Logistic labels need the median only where a pixel changed; intensity labels wherever the
    # disk reaches a changed pixel (elsewhere it is 0).
    need = changed if cfg.label == "logistic" else F.max_pool2d(changed[:, None].float(), 2 * DISK_RADIUS + 1,
                                                                stride=1, padding=DISK_RADIUS)[:, 0] > 0
    median = _disk_median(binned.to(torch.float32), need).to(torch.float64) / quant
    if cfg.label == "intensity":
        return median.to(torch.float32)
    k, x0 = cfg.logistic
    logistic = (1.0 / (1.0 + torch.exp(-k * (median - x0)))).to(torch.float32).clamp(max=float(_BELOW_ONE))
    return torch.where(changed, logistic, torch.zeros_like(logistic))
