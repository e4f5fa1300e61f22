"""The NSA generator: one synthetic anomaly example from a destination and a source image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import presets
from .blending import blend_patch, extract_mask, extract_patch
from .config import NSAConfig
from .labels import make_label
from .objects import object_mask
from .sampling import (
    PatchGeometry,
    integral,
    pixel_bounds,
    rescaled_size,
    sample_destination_box,
    sample_half_width,
    sample_num_patches,
    sample_rescale,
    sample_source_box,
    unshifted_destination_box,
)
from .validation import as_hwc, check_generator, check_image


@dataclass
class SynthesisInfo:
    """What :func:`synthesize` did.

    Attributes
    ----------
    patches : list of PatchGeometry
        Patches placed, in order.
    skipped : list of str
        One reason per attempted patch that was not placed.
    num_attempted : int
        Patches attempted (1 + coin flips).
    gradients : str or None
        Guidance actually used ("mix" resolved), None unless blending with Poisson.
    factor : float
        The interpolation factor ``f`` drawn for this example.
    details : dict
        Method-specific numbers (e.g. CutPaste's jitter factors, DRAEM's opacity).
    """

    patches: list[PatchGeometry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    num_attempted: int = 0
    gradients: str | None = None
    factor: float = 1.0
    details: dict = field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        """True if anything was blended in (a patch placed, or a non-empty DRAEM-style region)."""
        return bool(self.patches) or self.details.get("anomalous_fraction", 0.0) > 0


def synthesize(
    destination: np.ndarray,
    source: np.ndarray | None,
    config: NSAConfig | str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, SynthesisInfo]:
    """Make one NSA training example: :func:`plan_anomaly` then :func:`render_anomaly`.

    Cuts up to ``config.num_patches`` patches from ``source``, rescales them and
    blends them one after another into ``destination`` (the source stays the
    original image), then computes the label map.

    Parameters
    ----------
    destination : ndarray, (H, W) or (H, W, C), uint8 or float32 in [0, 1]
        A normal image, at least 2x2.  Never modified.
    source : ndarray or None
        Another normal image with the same dtype and channel count (any size),
        or None to cut from ``destination`` itself (also forced by
        ``config.same_source``).
    config : NSAConfig or str
        Generator settings, or a preset name (``"mvtec/carpet"``).
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    image : ndarray, same shape and dtype as ``destination``
    label : ndarray, float32, (H, W)
        See :func:`nsa_augment.labels.make_label`.
    info : SynthesisInfo
        The plan that was rendered: patches placed, reasons for skipped ones.

    Examples
    --------
    >>> import numpy as np
    >>> from nsa_augment import synthesize
    >>> rng = np.random.default_rng(0)
    >>> dst = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> src = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    >>> image, label, info = synthesize(dst, src, "mvtec/carpet", rng)
    >>> image.shape, label.dtype, info.is_anomalous
    ((64, 64, 3), dtype('float32'), True)
    """
    cfg, dst3, src3 = _check_inputs(destination, source, config)
    info = _plan(dst3, src3, cfg, check_generator(rng))
    image, label = _render(dst3, src3, cfg, info)
    return image.reshape(destination.shape), label, info


def plan_anomaly(destination, source, config, rng) -> SynthesisInfo:
    """Sample everything random about one example, touching no pixels of the result.

    Same arguments as :func:`synthesize`.  The plan depends on the images only
    through their sizes and object masks, so it can be drawn first and
    rendered later (:func:`render_anomaly`), e.g. in an Albumentations
    transform's parameter sampling.
    """
    cfg, dst3, src3 = _check_inputs(destination, source, config)
    return _plan(dst3, src3, cfg, check_generator(rng))


def render_anomaly(destination, source, config, plan: SynthesisInfo) -> tuple[np.ndarray, np.ndarray]:
    """Apply a plan from :func:`plan_anomaly`: deterministic, no randomness.

    Returns ``(image, label)`` as :func:`synthesize` does.
    """
    cfg, dst3, src3 = _check_inputs(destination, source, config)
    if not isinstance(plan, SynthesisInfo):
        raise TypeError(f"plan must be a SynthesisInfo from plan_anomaly, got {type(plan).__name__}")
    image, label = _render(dst3, src3, cfg, plan)
    return image.reshape(destination.shape), label


def _check_inputs(destination, source, config):
    cfg = presets.get(config) if isinstance(config, str) else config
    if not isinstance(cfg, NSAConfig):
        raise TypeError(f"config must be an NSAConfig or a preset name, got {type(config).__name__}")
    destination = check_image(destination, "destination", unit_range=True, min_size=2)
    if source is None or cfg.same_source:
        source = destination
    else:
        source = check_image(source, "source", unit_range=True, min_size=2)
        if source.dtype != destination.dtype:
            raise TypeError(f"source dtype {source.dtype} must match destination dtype {destination.dtype}")
        if as_hwc(source).shape[2] != as_hwc(destination).shape[2]:
            raise ValueError(
                f"source has {as_hwc(source).shape[2]} channels but destination has {as_hwc(destination).shape[2]}"
            )
    return cfg, as_hwc(destination), np.ascontiguousarray(as_hwc(source))


def _plan(dst3, src3, cfg: NSAConfig, rng) -> SynthesisInfo:
    H, W = dst3.shape[:2]
    info = SynthesisInfo()
    # Fixed draw order: factor, gradient coin, patch count, then per patch.
    info.factor = float(rng.uniform(*cfg.factor_range))
    gradients = cfg.gradients
    if gradients == "mix":
        gradients = ("normal", "mixed")[int(rng.integers(2))]
    info.gradients = gradients if cfg.blend == "poisson" else None
    info.num_attempted = sample_num_patches(rng, cfg.num_patches)

    too_small = [
        axis for axis, dim, b in (("rows", H, cfg.width_bounds[0]), ("cols", W, cfg.width_bounds[1]))
        if pixel_bounds(dim, b)[1] < 1
    ]
    if too_small:
        reason = f"image {H}x{W} too small: maximum patch half-width is 0 px along {' and '.join(too_small)}"
        info.skipped = [reason] * info.num_attempted
        return info

    dst_object = src_object = src_table = None
    if cfg.object_masks is not None:
        dst_object = object_mask(dst3, cfg.object_masks)
        src_object = dst_object if src3 is dst3 or np.shares_memory(src3, dst3) else object_mask(src3, cfg.object_masks)
        src_table = integral(src_object)

    Hs, Ws = src3.shape[:2]
    min_hw = (pixel_bounds(Hs, cfg.width_bounds[0])[0], pixel_bounds(Ws, cfg.width_bounds[1])[0])
    for _ in range(info.num_attempted):
        half = (sample_half_width(rng, Hs, cfg.width_bounds[0], cfg.gamma), sample_half_width(rng, Ws, cfg.width_bounds[1], cfg.gamma))
        if min(half) < 1:
            info.skipped.append(f"source {Hs}x{Ws} too small for this patch: its half-width {half} px rounds to zero")
            continue
        src_box, attempts = sample_source_box(rng, (Hs, Ws), half, min_hw, src_table, cfg.min_object, cfg.max_attempts)
        if src_box is None:
            info.skipped.append(f"no source position with more than {cfg.min_object:.0%} object in {attempts} draws")
            continue
        box_size = (src_box[1] - src_box[0], src_box[3] - src_box[2])
        scale = 1.0
        if cfg.rescale:
            scale = sample_rescale(rng, cfg.rescale_bounds)
            size = rescaled_size(box_size, scale, (H, W), cfg)
        else:
            size = (min(box_size[0], H), min(box_size[1], W))
        if cfg.blend == "poisson" and size == (H, W):
            size = (H - 1, W)  # the solver needs at least one boundary pixel
        src_obj_patch = extract_mask(src_object, src_box, size) if src_object is not None else None
        if cfg.shift:
            dst_box, more = sample_destination_box(
                rng, size, (H, W), dst_object, src_obj_patch, cfg.min_object, cfg.min_overlap, cfg.max_attempts
            )
        else:
            dst_box, more = unshifted_destination_box(
                src_box, size, (H, W), dst_object, src_obj_patch, cfg.min_object, cfg.min_overlap
            )
        if dst_box is None:
            info.skipped.append(
                f"no destination position with object overlap above {cfg.min_overlap:.0%} in {more} draws"
            )
            continue
        region = None
        if dst_object is not None:
            dy0, dy1, dx0, dx1 = dst_box
            region = src_obj_patch | dst_object[dy0:dy1, dx0:dx1]
        info.patches.append(PatchGeometry(src_box=src_box, dst_box=dst_box, scale=scale, attempts=attempts + more, region=region))
    return info


def _render(dst3, src3, cfg: NSAConfig, info: SynthesisInfo) -> tuple[np.ndarray, np.ndarray]:
    H, W = dst3.shape[:2]
    image = np.array(dst3, order="C", copy=True)
    region = np.zeros((H, W), dtype=bool)
    for p in info.patches:
        dy0, dy1, dx0, dx1 = p.dst_box
        patch = extract_patch(src3, p.src_box, p.dst_size, margin=1)
        blend_patch(image, patch, p.dst_box, blend=cfg.blend, gradients=info.gradients or "normal",
                    factor=info.factor, paste_mask=p.region)
        if p.region is None:
            region[dy0:dy1, dx0:dx1] = True
        else:
            region[dy0:dy1, dx0:dx1] |= p.region
    if not info.patches:
        return image, np.zeros((H, W), np.float32)
    label = make_label(dst3, image, region, cfg.label, tol=cfg.tol, factor=info.factor, logistic=cfg.logistic)
    return image, label
