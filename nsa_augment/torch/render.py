"""NSA on the accelerator: render a whole batch of plans at once in PyTorch.

Plans come from :func:`nsa_augment.plan_anomaly` on the CPU (cheap, seeded, in DataLoader
workers); :func:`render_batch` renders all of them with batched tensor operations on the
images' device — no Python loop over pixels, one over the (at most ``num_patches``) patch
rounds.  It computes what :func:`nsa_augment.render_anomaly` computes, in float32:

1. **Patches**: each plan's source box, resampled to its destination size with a 1-px margin by
   separable linear interpolation (:func:`nsa_augment.methods.nsa.blending.extract_patch`'s
   definition), as two gathers over the padded batch.
2. **Poisson**: the exact 5-point system on each patch's rectangle (destination as Dirichlet
   boundary, no neighbour beyond the image border), solved by diagonalisation: ``U = Q_h [(Q_h^T R
   Q_w) / (lambda_i + mu_j)] Q_w^T`` with the closed-form 1-D eigenbases of
   :mod:`nsa_augment.poisson.box_solver`.  Boxes of different sizes share one batched product: each
   basis is padded with an identity block, whose modes see a zero right-hand side.
3. **Object masks** and **labels** (binary, continuous, intensity, logistic) as in
   :mod:`nsa_augment.methods.nsa.labels`, over whole images (:mod:`nsa_augment.torch.labels`).

Patches are blended one after another, as on the CPU: round ``k`` renders every example's
``k``-th patch into the image left by round ``k - 1``.  Matrix products run at full float32
precision (TF32 is switched off inside the call).  Supported: 2-D images, ``blend`` "poisson"
(``poisson="exact"``), "paste" and "alpha"; ``poisson="opencv"`` and volumes render on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ..methods.nsa import presets
from ..methods.nsa.config import NSAConfig
from ..methods.nsa.sampling import box_size
from ..methods.nsa.synthesis import NSAPlan
from ..poisson.box_solver import eigenbasis, eigenvalues
from .labels import batch_labels, batch_object_mask, fixed_range, intensity_ranges

__all__ = ["NSABatchRenderer", "render_batch"]

DTYPES = (torch.uint8, torch.float32)


def render_batch(images: torch.Tensor, sources: torch.Tensor | None, plans: Sequence[NSAPlan],
                 config: NSAConfig | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one plan per image, for the whole batch at once, on the images' device.

    Parameters
    ----------
    images : Tensor, (B, C, H, W), uint8 or float32
        Normal images (float32 in [0, 1] unless ``config.intensity_range`` says otherwise), on any
        device.  Never modified.
    sources : Tensor (B, C, Hs, Ws) or None
        The images the patches are cut from (same dtype and device), or None to cut from
        ``images`` themselves (``config.same_source``, or plans drawn with ``source=None``).
    plans : sequence of B :class:`~nsa_augment.NSAPlan`
        From :func:`nsa_augment.plan_anomaly`, drawn for these images' sizes (and their object
        masks, which are recomputed here from the tensors).
    config : NSAConfig or str
        The config (or preset name) the plans were drawn with.

    Returns
    -------
    images : Tensor, (B, C, H, W), same dtype and device
    labels : Tensor, float32 (B, H, W)

    Examples
    --------
    >>> import numpy as np, torch
    >>> from nsa_augment import plan_anomaly, render_anomaly
    >>> rng = np.random.default_rng(0)
    >>> dst = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    >>> src = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    >>> plans = [plan_anomaly(d, s, "mvtec/carpet", rng) for d, s in zip(dst, src)]
    >>> to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
    >>> images, labels = render_batch(to_tensor(dst), to_tensor(src), plans, "mvtec/carpet")
    >>> ref_image, ref_label = render_anomaly(dst[0], src[0], "mvtec/carpet", plans[0])
    >>> int((images[0].permute(1, 2, 0).numpy().astype(int) - ref_image).__abs__().max()) <= 1
    True
    """
    cfg = _check(images, sources, plans, config)
    same = sources is None or cfg.same_source
    src_images = images if same else sources
    B, C, H, W = images.shape
    with _full_precision_matmul():
        before = images.to(torch.float32)
        dst_range = intensity_ranges(images, cfg.intensity_range)
        src_range = dst_range if same else intensity_ranges(src_images, cfg.intensity_range)
        source = before if same else src_images.to(torch.float32)
        work = before.clone()
        integer = images.dtype == torch.uint8
        fixed = fixed_range(images.dtype, cfg.intensity_range)  # None: each image's own (read from the device)
        clip = (not integer) and (fixed == (0.0, 1.0) if fixed is not None
                                  else bool(((dst_range[:, 0] == 0) & (dst_range[:, 1] == 1)).all()))
        region = torch.zeros(B, H, W, dtype=torch.bool, device=images.device)
        dst_object = src_object = None
        if cfg.object_masks is not None:
            dst_object = batch_object_mask(before, cfg.object_masks, dst_range)
            src_object = dst_object if same else batch_object_mask(source, cfg.object_masks, src_range)
        rounds = max((len(p.patches) for p in plans), default=0)
        for k in range(rounds):
            members = [b for b, p in enumerate(plans) if len(p.patches) > k]
            modes = [plans[b].gradients or "normal" for b in members]
            geometry = _Geometry([plans[b].patches[k] for b in members], (H, W), source.shape[2:], images.device,
                                 members=np.array(members), factors=np.array([plans[b].factor for b in members]),
                                 mixed=np.array([m == "mixed" for m in modes]),
                                 interpolated=np.array([m == "interpolated" for m in modes]))
            index = geometry.members
            patch = geometry.resample(source.index_select(0, index), integer)
            patch_region = None
            if dst_object is not None:
                patch_region = geometry.source_mask(src_object.index_select(0, index)) \
                    | geometry.destination_region(dst_object.index_select(0, index))
            current = work.index_select(0, index)
            if cfg.blend == "poisson":
                values = _solve_boxes(current, patch, geometry)
                write = geometry.box_mask
            else:
                inner = patch[:, :, 1:-1, 1:-1]
                values = inner if cfg.blend == "paste" else None
                if cfg.blend == "alpha":
                    f = geometry.factors.view(-1, 1, 1, 1)
                    values = f * inner + (1.0 - f) * geometry.gather_box(current).to(torch.float64)
                write = geometry.box_mask if patch_region is None else geometry.box_mask & patch_region
            values = values.to(torch.float64)
            if integer:
                values = torch.floor(values + 0.5).clamp_(0.0, 255.0)
            elif clip:
                values = values.clamp(0.0, 1.0)
            work.index_copy_(0, index, geometry.scatter_box(current, values.to(torch.float32), write))
            patch_mask = geometry.box_mask if patch_region is None else geometry.box_mask & patch_region
            region.index_copy_(0, index, geometry.scatter_box(region.index_select(0, index)[:, None].float(),
                                                              torch.ones_like(values[:, :1], dtype=torch.float32),
                                                              patch_mask)[:, 0] > 0.5)
        factors = upload({"f": (np.array([p.factor for p in plans]), torch.float32)}, images.device)["f"]
        labels = batch_labels(before, work, region, cfg, factors, dst_range, integer, fixed)
        out = work.to(images.dtype) if integer else work
    return out, labels


class NSABatchRenderer(torch.nn.Module):
    """:func:`render_batch` as a module for training loops: ``renderer(images, sources, plans)``.

    It holds the config and no parameters; move the images, not the module, to the device.

    Examples
    --------
    >>> renderer = NSABatchRenderer("mvtec/carpet")
    >>> renderer
    NSABatchRenderer(config=mvtec/carpet)
    """

    def __init__(self, config: NSAConfig | str):
        super().__init__()
        self.config = presets.resolve(config)

    def forward(self, images: torch.Tensor, sources: torch.Tensor | None, plans: Sequence[NSAPlan]):
        return render_batch(images, sources, plans, self.config)

    def extra_repr(self) -> str:
        return f"config={self.config.name}"


# --- checks ----------------------------------------------------------------------------------------


def _check(images, sources, plans, config) -> NSAConfig:
    cfg = presets.resolve(config)
    if cfg.dims != 2:
        raise ValueError("render_batch renders images; volumes render on the CPU with render_volume_anomaly")
    if cfg.blend == "poisson" and cfg.poisson != "exact":
        raise ValueError("render_batch solves the exact formulation; poisson='opencv' renders on the CPU with "
                         "render_anomaly")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise TypeError(f"images must be a (B, C, H, W) tensor, got {type(images).__name__} "
                        f"{tuple(getattr(images, 'shape', ()))}")
    if images.dtype not in DTYPES:
        raise TypeError(f"images must be uint8 or float32 tensors, got {images.dtype}: convert other dtypes to "
                        "float32 and set the config's intensity_range")
    B, C, H, W = images.shape
    if sources is not None:
        if not isinstance(sources, torch.Tensor) or sources.ndim != 4:
            raise TypeError("sources must be a (B, C, Hs, Ws) tensor or None")
        if sources.dtype != images.dtype or sources.device != images.device:
            raise TypeError(f"sources ({sources.dtype} on {sources.device}) must match images ({images.dtype} on "
                            f"{images.device})")
        if sources.shape[:2] != images.shape[:2]:
            raise ValueError(f"sources have shape {tuple(sources.shape)}: need {B} images with {C} channels")
    if isinstance(plans, NSAPlan) or len(plans) != B:
        raise ValueError(f"give one plan per image: {B} images, "
                         f"{'one plan' if isinstance(plans, NSAPlan) else f'{len(plans)} plans'}")
    src_shape = (H, W) if sources is None or cfg.same_source else tuple(sources.shape[2:])
    for i, plan in enumerate(plans):
        if not isinstance(plan, NSAPlan):
            raise TypeError(f"plans[{i}] is a {type(plan).__name__}, not an NSAPlan from plan_anomaly")
        if tuple(plan.shape) != (H, W):
            raise ValueError(f"plans[{i}] was drawn for a {plan.shape[0]}x{plan.shape[1]} image, these are {H}x{W}")
        if plan.patches and tuple(plan.source_shape) != src_shape:
            raise ValueError(f"plans[{i}] was drawn for a {plan.source_shape[0]}x{plan.source_shape[1]} source, the "
                             f"sources are {src_shape[0]}x{src_shape[1]}")
    return cfg


@contextmanager
def _full_precision_matmul():
    """float32 products at full precision: TF32 (a 10-bit mantissa) would cost the solve a few grey levels."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


# --- one round of patches: geometry, resampling, the box solve -------------------------------------


#: Host buffer dtype -> the dtypes travelling in it, each dtype's arrays side by side (one cast per dtype).
_BUFFERS = ((torch.float32, (torch.float32,)), (torch.float64, (torch.float64, torch.int64, torch.bool)))


def upload(arrays: dict[str, tuple[np.ndarray, torch.dtype]], device) -> dict[str, torch.Tensor]:
    """Host arrays on ``device`` without waiting for the GPU: ``{name: (array, dtype)}`` -> ``{name: tensor}``.

    A blocking host-to-device copy (``torch.tensor(..., device=)``, ``.to(device)``) makes the host
    wait until the GPU has finished all the work queued before it, so a round of a dozen small
    copies would drain the GPU's queue a dozen times.  Here the arrays are packed into a float32
    buffer (float32 arrays) and a float64 buffer (everything else: exact for the int64 indices and
    bools used here), each sent with ``non_blocking=True``, cut into views on the device and cast
    there.  For a CUDA device the buffers are pinned: a non-blocking copy from pageable memory may
    still wait for the queue (the driver stages it through its own pinned buffer), and PyTorch's
    pinned-memory cache keeps a buffer alive until its copy has run.
    """
    unsupported = {str(t) for _, t in arrays.values()} - {str(t) for _, ts in _BUFFERS for t in ts}
    if unsupported:
        raise TypeError(f"upload carries float32, float64, int64 and bool arrays, not {', '.join(unsupported)}")
    device = torch.device(device)
    out = {}
    for host_dtype, dtypes in _BUFFERS:
        runs = [(t, [(name, np.asarray(a)) for name, (a, u) in arrays.items() if u == t]) for t in dtypes]
        runs = [(t, items) for t, items in runs if items]
        if not runs:
            continue
        buffer = torch.empty(sum(a.size for _, items in runs for _, a in items), dtype=host_dtype,
                             pin_memory=device.type == "cuda")
        host, start, layout = buffer.numpy(), 0, []
        for dtype, items in runs:
            layout.append((dtype, start, items))
            for _, a in items:
                host[start : start + a.size] = a.ravel()
                start += a.size
        buffer = buffer.to(device, non_blocking=True)
        for dtype, start, items in layout:
            run = buffer[start : start + sum(a.size for _, a in items)].to(dtype)
            offset = 0
            for name, a in items:
                out[name] = run[offset : offset + a.size].view(a.shape)
                offset += a.size
    return out


def eigenbases(m: torch.Tensor, low: torch.Tensor, high: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~nsa_augment.poisson.box_solver.eigenbasis` and ``eigenvalues`` of n boxes, padded, on their device.

    Parameters
    ----------
    m : Tensor, int64 (n,), each box's length along the axis (1 <= m <= size)
    low, high : Tensor, bool (n,), whether the box's first / last pixel lies on the image border (Neumann)
    size : int, the padded length

    Returns
    -------
    q : Tensor, float32 (n, size, size)
        Orthonormal eigenvectors as columns (the same closed forms and float64 arithmetic as the
        NumPy function, then rounded to float32), an identity block in the padding.
    lam : Tensor, float32 (n, size)
        Eigenvalues ``2 - 2 cos(theta)``, 1 in the padding.
    """
    k = torch.arange(size, dtype=torch.float64, device=m.device)[None]
    n_ = m.to(torch.float64)[:, None]
    lo, hi = low[:, None], high[:, None]
    theta = torch.where(~lo & ~hi, math.pi * (k + 1) / (n_ + 1),
                        torch.where(lo & hi, math.pi * k / n_, math.pi * (2 * k + 1) / (2 * n_ + 1)))  # (n, modes)
    j = k[:, :, None]  # rows
    t = theta[:, None, :]
    both = (lo & hi)[:, :, None]
    arg = torch.where(both, t * (j + 0.5), torch.where(lo[:, :, None], t * (n_[:, :, None] - j), t * (j + 1)))
    q = torch.where(both, torch.cos(arg), torch.sin(arg))
    valid = (j < n_[:, :, None]) & (k[:, None, :] < n_[:, :, None])
    q = torch.where(valid, q, 0.0)
    q = q / torch.sqrt((q * q).sum(1, keepdim=True)).clamp(min=1e-300)
    eye = torch.eye(size, dtype=torch.float32, device=m.device)
    q = torch.where(valid, q.to(torch.float32), eye)
    lam = torch.where(k < n_, 2.0 - 2.0 * torch.cos(theta), 1.0).to(torch.float32)
    return q, lam


def _host_bases(sizes: np.ndarray, low: np.ndarray, high: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`eigenbases` from the host's cached NumPy bases (box_solver): on the CPU they need no copy at all."""
    n = sizes.shape[0]
    q = np.zeros((n, size, size), np.float32)
    q[:] = np.eye(size, dtype=np.float32)  # the padding: identity modes, which see a zero right-hand side
    lam = np.ones((n, size), np.float32)
    for e in range(n):
        m = int(sizes[e])
        q[e, :m, :m] = eigenbasis(m, bool(low[e]), bool(high[e]))
        lam[e, :m] = eigenvalues(m, bool(low[e]), bool(high[e]))
    return torch.from_numpy(q), torch.from_numpy(lam)


def _positions(b0: np.ndarray, b1: np.ndarray, m: np.ndarray, size: int, length: int):
    """:func:`~nsa_augment.methods.nsa.blending.sample_positions` with a 1-px margin for n boxes at once.

    Row ``e`` holds box ``e``'s ``m[e] + 2`` samples (the same float64 arithmetic, so the same
    values) and index 0 / weight 0 in the padding up to ``size + 2``: ``(i0, i1, weight)``, each (n, size + 2).
    """
    k = np.arange(-1, size + 1)[None]
    b0, b1, m = b0[:, None], b1[:, None], m[:, None]
    coords = np.clip(b0 + (k + 0.5) * ((b1 - b0) / m) - 0.5, 0.0, length - 1)
    i0 = np.floor(coords).astype(np.int64)
    i1 = np.minimum(i0 + 1, length - 1)
    weight = coords - i0
    same = b1 - b0 == m  # no resize: exact copies, second weight 0
    copy = np.clip(b0 + k, 0, length - 1)
    i0, i1, weight = np.where(same, copy, i0), np.where(same, copy, i1), np.where(same, 0.0, weight)
    pad = k + 1 >= m + 2
    return np.where(pad, 0, i0), np.where(pad, 0, i1), np.where(pad, 0.0, weight)


def _bases_on_device(device) -> bool:
    """Whether the eigenbases are built on ``device`` (an accelerator) rather than taken from the host's cache."""
    return torch.device(device).type != "cpu"


class _Geometry:
    """Index tensors of one round's patches (n of them), padded to the largest box ``(hp, wp)``.

    The per-patch arrays are computed on the host with array operations over the n patches and
    reach the device in one :func:`upload`, with ``extra`` per-patch arrays
    (``name=array``; floats become float64, bools bool, integers int64), which become attributes.
    The dense per-box arrays (the box masks, and on an accelerator the eigenbases) are built on
    the device from each box's size.
    """

    def __init__(self, patches, shape, source_shape, device, **extra):
        H, W = shape
        n = len(patches)
        sizes = np.array([p.dst_size for p in patches], np.int64).reshape(n, 2)
        src_boxes = np.array([p.src_box for p in patches], np.int64).reshape(n, 4)
        boxes = np.array([p.dst_box for p in patches], np.int64).reshape(n, 4)
        self.hp, self.wp = hp, wp = int(sizes[:, 0].max()), int(sizes[:, 1].max())
        f32, f64, i64 = torch.float32, torch.float64, torch.int64
        host = {}
        for axis, size, name in ((0, hp, "rows"), (1, wp, "cols")):
            b0, b1, m = src_boxes[:, 2 * axis], src_boxes[:, 2 * axis + 1], sizes[:, axis]
            # Resampling positions with the 1-px margin (padding: index 0, weight 0).
            i0, i1, weight = _positions(b0, b1, m, size, source_shape[axis])
            host[name + "0"], host[name + "1"], host[name + "_w"] = (i0, i64), (i1, i64), (weight, f64)
            # Nearest-neighbour positions of the source object mask (no margin).
            a = np.arange(size)[None]
            near = b0[:, None] + (2 * a + 1) * (b1 - b0)[:, None] // (2 * m[:, None])
            host[name + "_near"] = (np.where(a < m[:, None], near, 0), i64)
        # Destination coordinates of the box with a 1-px ring, clamped, and which lie in the image.
        ys = boxes[:, 0, None] - 1 + np.arange(hp + 2)[None]
        xs = boxes[:, 2, None] - 1 + np.arange(wp + 2)[None]
        host["ring_rows"], host["ring_cols"] = (np.clip(ys, 0, H - 1), i64), (np.clip(xs, 0, W - 1), i64)
        host["rows_in"], host["cols_in"] = ((ys >= 0) & (ys < H), f32), ((xs >= 0) & (xs < W), f32)
        # Which ring positions lie outside the box (then their value is a Dirichlet boundary value).
        host["rows_out"] = ((np.arange(hp + 2)[None] == 0) | (np.arange(hp + 2)[None] > sizes[:, 0, None]), f32)
        host["cols_out"] = ((np.arange(wp + 2)[None] == 0) | (np.arange(wp + 2)[None] > sizes[:, 1, None]), f32)
        # Each box's size and which of its ends lie on the image border (Neumann) along each axis.
        for axis, name in ((0, "h"), (1, "w")):
            host["size_" + name] = (sizes[:, axis], i64)
            host["low_" + name] = (boxes[:, 2 * axis] == 0, torch.bool)
            host["high_" + name] = (boxes[:, 2 * axis + 1] == (H, W)[axis], torch.bool)
        for name, array in extra.items():
            host[name] = (array, torch.bool if array.dtype == bool else f64 if array.dtype.kind == "f" else i64)
        on_device = upload(host, device)
        self.rows = (on_device["rows0"], on_device["rows1"], on_device["rows_w"])
        self.cols = (on_device["cols0"], on_device["cols1"], on_device["cols_w"])
        self.nearest = (on_device["rows_near"], on_device["cols_near"])
        for name in ("ring_rows", "ring_cols", "rows_in", "cols_in", "rows_out", "cols_out", *extra):
            setattr(self, name, on_device[name])
        # Which positions of the padded (hp, wp) grid belong to each box: (n, hp, wp), built on the device.
        size_h, size_w = on_device["size_h"], on_device["size_w"]
        self.box_mask = (torch.arange(hp, device=size_h.device)[None, :, None] < size_h[:, None, None]) \
            & (torch.arange(wp, device=size_w.device)[None, None, :] < size_w[:, None, None])
        # The dense padded eigenbases (n x hp x hp and n x wp x wp): on an accelerator they are built
        # there, from each box's size and border sides (on the host they were most of a round's
        # preparation, about 0.5 ms per example at 256 px, and their copy the largest); on the CPU
        # the host's cached NumPy bases are used as they are.
        self._bases = []
        for size, name in ((hp, "h"), (wp, "w")):
            if _bases_on_device(device):
                self._bases += eigenbases(on_device["size_" + name], on_device["low_" + name],
                                          on_device["high_" + name], size)
            else:
                self._bases += [t.to(device) for t in _host_bases(host["size_" + name][0], host["low_" + name][0],
                                                                    host["high_" + name][0], size)]

    def resample(self, source: torch.Tensor, integer: bool) -> torch.Tensor:
        """Each source box resized to its destination size with a 1-px margin: (n, C, hp + 2, wp + 2), float64.

        In float64 like the CPU path: mixed gradients compare the patch's gradients with the
        image's, and a patch pixel rounded the other way can flip that choice.
        """
        source = source.to(torch.float64)
        n, C, Hs, Ws = source.shape
        i0, i1, fy = self.rows
        j0, j1, fx = self.cols
        expand = lambda idx: idx[:, None, :, None].expand(n, C, idx.shape[1], Ws)  # noqa: E731
        w = fy[:, None, :, None]
        rows = source.gather(2, expand(i0)) * (1.0 - w) + source.gather(2, expand(i1)) * w
        expand = lambda idx: idx[:, None, None, :].expand(n, C, rows.shape[2], idx.shape[1])  # noqa: E731
        w = fx[:, None, None, :]
        out = rows.gather(3, expand(j0)) * (1.0 - w) + rows.gather(3, expand(j1)) * w
        return torch.floor(out + 0.5).clamp_(0.0, 255.0) if integer else out

    def source_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The source object mask on each source box, resized (nearest) to the box: (n, hp, wp) bool."""
        rows, cols = self.nearest
        n = mask.shape[0]
        picked = mask.gather(1, rows[:, :, None].expand(n, rows.shape[1], mask.shape[2]))
        return picked.gather(2, cols[:, None, :].expand(n, rows.shape[1], cols.shape[1])) & self.box_mask

    def destination_region(self, mask: torch.Tensor) -> torch.Tensor:
        """A (n, H, W) mask on each destination box: (n, hp, wp) bool."""
        return self._ring(mask[:, None].float())[:, 0, 1:-1, 1:-1] > 0.5

    def _ring(self, image: torch.Tensor) -> torch.Tensor:
        """Each box with its 1-px ring cut from ``image`` (n, C, H, W): (n, C, hp + 2, wp + 2), clamped."""
        n, C, H, W = image.shape
        rows = image.gather(2, self.ring_rows[:, None, :, None].expand(n, C, self.hp + 2, W))
        return rows.gather(3, self.ring_cols[:, None, None, :].expand(n, C, self.hp + 2, self.wp + 2))

    def gather_box(self, image: torch.Tensor) -> torch.Tensor:
        return self._ring(image)[:, :, 1:-1, 1:-1]

    def scatter_box(self, image: torch.Tensor, values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """``image`` (n, C, H, W) with ``values`` (n, C, hp, wp) written into each box where ``where``.

        Positions outside ``where`` keep their pixel; the padding of smaller boxes goes to a scratch
        element past the image, so it never races a real write for the same pixel.
        """
        n, C, H, W = image.shape
        rows = self.ring_rows[:, 1:-1]
        cols = self.ring_cols[:, 1:-1]
        flat = rows[:, :, None] * W + cols[:, None, :]
        flat = torch.where(self.box_mask, flat, torch.full_like(flat, H * W)).reshape(n, 1, -1).expand(n, C, -1)
        out = torch.cat([image.reshape(n, C, H * W), image.new_zeros(n, C, 1)], dim=2)
        keep = out.gather(2, flat)
        merged = torch.where(where[:, None].reshape(n, 1, -1), values.reshape(n, C, -1), keep)
        return out.scatter_(2, flat, merged)[:, :, : H * W].reshape(n, C, H, W)

    def bases(self):
        """Each box's padded 1-D eigenbases and eigenvalues, rows then columns: ``(qh, lambda_h, qw, lambda_w)``."""
        return self._bases


def _solve_boxes(image: torch.Tensor, patch: torch.Tensor, g: _Geometry) -> torch.Tensor:
    """The exact Poisson solution on every box: (n, C, hp, wp) (zero in the padding).

    ``g`` carries each patch's gradient rule (``mixed``, ``interpolated``) and factor.
    """
    D = g._ring(image).to(torch.float64)  # the guidance in float64 (mixed gradients compare magnitudes)
    S = patch
    valid_y = g.rows_in[:, None, :, None]
    valid_x = g.cols_in[:, None, None, :]
    out_y = g.rows_out[:, None, :, None]
    out_x = g.cols_out[:, None, None, :]
    mixed = g.mixed.view(-1, 1, 1, 1)
    interpolated = g.interpolated.view(-1, 1, 1, 1)
    f = g.factors.view(-1, 1, 1, 1)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    dp, sp = D[inner], S[inner]
    rhs = torch.zeros_like(dp)
    # The four neighbours q of each box pixel p: (shift of the padded arrays, in-image weight, outside-box weight).
    neighbours = (
        ((slice(0, -2), slice(1, -1)), valid_y[:, :, :-2], out_y[:, :, :-2]),
        ((slice(2, None), slice(1, -1)), valid_y[:, :, 2:], out_y[:, :, 2:]),
        ((slice(1, -1), slice(0, -2)), valid_x[:, :, :, :-2], out_x[:, :, :, :-2]),
        ((slice(1, -1), slice(2, None)), valid_x[:, :, :, 2:], out_x[:, :, :, 2:]),
    )
    for (ys, xs), valid, outside in neighbours:
        dq, sq = D[:, :, ys, xs], S[:, :, ys, xs]
        gd, gs = dp - dq, sp - sq
        v = torch.where(mixed, torch.where(gs.abs() > gd.abs(), gs, gd), gs)
        v = torch.where(interpolated, f * gs + (1.0 - f) * gd, v)
        rhs = rhs + valid * (v + outside * dq)
    rhs = (rhs * g.box_mask[:, None].to(rhs.dtype)).to(torch.float32)
    qh, lh, qw, lw = g.bases()
    spectrum = qh.transpose(1, 2)[:, None] @ rhs @ qw[:, None]
    spectrum = spectrum / (lh[:, None, :, None] + lw[:, None, None, :])
    return qh[:, None] @ spectrum @ qw.transpose(1, 2)[:, None]


def box_sizes(plan: NSAPlan) -> list[tuple[int, ...]]:
    """The destination box sizes of a plan's patches (for grouping or logging)."""
    return [box_size(p.dst_box) for p in plan.patches]
